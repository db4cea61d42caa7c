//! `anonstats-bench`: measures a built `anonstats` collector (see
//! docs/performance.md). Without a command it runs the full benchmark.

use clap::{Parser, Subcommand};

use anonstats_bench::erasure::ErasureArgs;
use anonstats_bench::{BaselineArgs, BenchArgs, DriveArgs};

/// Measure the anonstats collector: ingest rate, latency, overload, stats
/// endpoints and disk use (see docs/performance.md).
#[derive(Debug, Parser)]
#[command(
    name = "anonstats-bench",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of `run`, for running the benchmark without naming it.
    #[command(flatten)]
    run: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The full benchmark (the default): baseline, then SQLite and
    /// PostgreSQL collectors.
    Run(BenchArgs),
    /// One load phase against a running collector, result as JSON (for
    /// profiling it).
    Drive(DriveArgs),
    /// Erasure latency, stored against unknown ids.
    Erasure(ErasureArgs),
    /// The baseline server (started by `run`): the collector built with a
    /// writer that discards, with the flags of `anonstats serve`.
    #[command(hide = true)]
    Baseline(Box<BaselineArgs>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => anonstats_bench::run(cli.run),
        Some(Command::Run(args)) => anonstats_bench::run(args),
        Some(Command::Drive(args)) => anonstats_bench::drive(args),
        Some(Command::Erasure(args)) => anonstats_bench::erasure::run(args),
        Some(Command::Baseline(args)) => anonstats_bench::serve_baseline(*args),
    }
}
