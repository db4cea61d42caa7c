//! The command line: every flag, environment variable and default of the
//! binary, and nothing else. Each command's flags are turned into the plain
//! settings of the module that does the work (`TryFrom<&ServeArgs> for
//! Config`, ...); defaults are that module's constants.

mod client;
mod ops;
mod serve;
mod stats;

pub use client::{SendArgs, SimulateArgs};
pub use serve::{
    ClientIpHeaderArg, LimitArgs, ReleaseArgs, ReportingArgs, RetentionArgs, ServeArgs,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::command::SendOptions;
use crate::config::{Config, DEFAULT_DATABASE};
use crate::db::{self, Need};
use crate::simulate::SimulateOptions;
use crate::startup;
use crate::telemetry::{self, LogFormat};

/// anonstats: collect opt-in, anonymous usage statistics and keep only
/// anonymised counts.
#[derive(Debug, Parser)]
#[command(name = "anonstats", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ANONSTATS_LOG_FORMAT"
    )]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`: the values of [`LogFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> LogFormat {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector (applies pending migrations first).
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Send this install's report to a collector, if the administrator opted in.
    Send(Box<client::SendArgs>),
    /// Post realistic synthetic reports to a running collector (demo data).
    Simulate(client::SimulateArgs),
    /// Print a k-anonymous report read directly from the database.
    #[command(subcommand)]
    Stats(stats::StatsCommand),
    /// Publish a differentially private public release now (`serve` also
    /// publishes on the release cadence). Refused when the privacy budget
    /// left over the last 365 days is too small, or a release of today
    /// exists.
    Release(ops::ReleaseCommandArgs),
    /// Delete instance snapshots and dedupe keys older than the retention
    /// period, once, and exit (`serve` also does this periodically).
    Prune(ops::PruneArgs),
    /// Make a new stats token for the live statistics, the dashboard and
    /// /metrics, replacing the stored one (and ending every session).
    Token(ops::TokenArgs),
    /// Replace the pseudonymisation secret: with ANONSTATS_SECRET set, move
    /// to it; without, generate a new one. Deletes the instance snapshots,
    /// their aggregates and the dedupe keys; keeps the daily event counts
    /// (see docs/retention.md). Stop every collector first.
    RotateSecret(ops::RotateSecretArgs),
}

/// Where the data lives.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// SQLite file path (or sqlite://PATH), or a postgres:// or postgresql://
    /// URL. Falls back to DATABASE_URL, then to anonstats.db in the working
    /// directory.
    #[arg(long = "database", env = "ANONSTATS_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
}

impl DatabaseArgs {
    /// The URL to use, after the fallbacks, checked for what the command
    /// needs (see [`db::check`]) before anything connects.
    pub fn url(&self, need: Need) -> anyhow::Result<String> {
        let url = self
            .database
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        db::check(&url, need)?;
        Ok(url)
    }
}

/// `ANONSTATS_SECRET`, if set and not empty. Read from the environment only:
/// a flag would show in process listings.
fn configured_secret() -> Option<String> {
    std::env::var("ANONSTATS_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format.into());
    match cli.command {
        Command::Serve(args) => startup::serve(Config::try_from(&args)?),
        Command::Migrate(args) => ops::migrate(args),
        Command::Send(args) => crate::client::command::run(SendOptions::from(&*args)),
        Command::Simulate(args) => crate::simulate::run(SimulateOptions::from(&args)),
        Command::Stats(command) => stats::run(command),
        Command::Token(args) => ops::token(args),
        Command::Prune(args) => ops::prune(args),
        Command::RotateSecret(args) => ops::rotate_secret(args),
        Command::Release(args) => ops::release_now(args),
    }
}
