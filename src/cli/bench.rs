//! The benchmark's commands, kept apart from the others.

use clap::Subcommand;

/// `bench` and its hidden helpers.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure ingest rate, latency, overload, stats endpoints and disk use
    /// (see docs/performance.md).
    Bench(crate::bench::BenchArgs),
    /// The benchmark's baseline server (started by `bench`).
    #[command(hide = true)]
    BenchBaseline(crate::bench::baseline::BaselineArgs),
    /// One load phase against a running collector (for profiling).
    #[command(hide = true)]
    BenchDrive(crate::bench::DriveArgs),
    /// Erasure latency, stored against unknown ids (docs/performance.md).
    #[command(hide = true)]
    BenchErasure(crate::bench::erasure::ErasureArgs),
}

/// Runs one of the benchmark's commands.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Bench(args) => crate::bench::run(args),
        BenchCommand::BenchBaseline(args) => crate::bench::baseline::run(args),
        BenchCommand::BenchDrive(args) => crate::bench::drive(args),
        BenchCommand::BenchErasure(args) => crate::bench::erasure::run(args),
    }
}
