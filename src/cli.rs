//! Command-line interface.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::catalog::Catalog;
use crate::config::{Config, DEFAULT_BIND, DEFAULT_DATABASE};
use crate::db::{self, Need};
use crate::ratelimit::LimitArgs;
use crate::release::{self, Cadence};
use crate::reporting::cli::{ReportingArgs, StatsCommand};
use crate::retention::{RetentionArgs, DEFAULT_PRUNE_INTERVAL_HOURS};
use crate::secret::{self, Kind};
use crate::startup::{self, Application};
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
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Send this install's report to a collector, if the administrator opted in.
    Send(Box<crate::client::command::SendArgs>),
    /// Post realistic synthetic reports to a running collector (demo data).
    Simulate(crate::simulate::SimulateArgs),
    /// Print a k-anonymous report read directly from the database.
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Publish a differentially private public release now (`serve` also
    /// publishes on the release cadence). Refused when the privacy budget
    /// left over the last 365 days is too small, or a release of today
    /// exists.
    Release(ReleaseCommandArgs),
    /// Delete instance snapshots and dedupe keys older than the retention
    /// period, once, and exit (`serve` also does this periodically).
    Prune(PruneArgs),
    /// Make a new stats token for the live statistics, the dashboard and
    /// /metrics, replacing the stored one (and ending every session).
    Token(TokenArgs),
    /// Replace the pseudonymisation secret: with ANONSTATS_SECRET set, move
    /// to it; without, generate a new one. Deletes the instance snapshots,
    /// their aggregates and the dedupe keys; keeps the daily event counts
    /// (see docs/retention.md). Stop every collector first.
    RotateSecret(RotateSecretArgs),
}

/// Flags of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Pins "today" (UTC) for tests of the binary, as `serve --today`.
    #[arg(long, env = crate::clock::TODAY_ENV, value_name = "YYYY-MM-DD", hide = true)]
    pub today: Option<chrono::NaiveDate>,
}

/// The public release flags shared by `serve` and `release`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// Privacy budget of the public releases: zCDP rho per 365 days, split
    /// evenly over the releases of the cadence and the histograms of each
    /// (see docs/privacy.md).
    #[arg(long, env = "ANONSTATS_PRIVACY_BUDGET", default_value_t = release::DEFAULT_BUDGET, value_name = "RHO")]
    pub privacy_budget: f64,
    /// How often `serve` publishes a public release: daily, weekly or
    /// monthly.
    #[arg(long, env = "ANONSTATS_RELEASE_CADENCE", default_value = "weekly", value_parser = ["daily", "weekly", "monthly"], value_name = "CADENCE")]
    pub release_cadence: String,
}

impl ReleaseArgs {
    /// The validated release settings.
    pub fn settings(&self, scheduled: bool) -> anyhow::Result<release::Settings> {
        anyhow::ensure!(
            self.privacy_budget.is_finite() && self.privacy_budget > 0.0,
            "--privacy-budget must be a positive number (zCDP rho per 365 days)"
        );
        let cadence = Cadence::parse(&self.release_cadence)
            .context("--release-cadence must be daily, weekly or monthly")?;
        Ok(release::Settings {
            budget: self.privacy_budget,
            cadence,
            scheduled,
        })
    }
}

/// Flags of `release`.
#[derive(Debug, Args)]
pub struct ReleaseCommandArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Catalog file replacing the built-in passbolt catalog (the release's
    /// histograms are the catalog's).
    #[arg(long, env = "ANONSTATS_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Pins "today" (UTC) for tests of the binary, as `serve --today`.
    #[arg(long, env = crate::clock::TODAY_ENV, value_name = "YYYY-MM-DD", hide = true)]
    pub today: Option<chrono::NaiveDate>,
}

/// Runs `release`.
fn release_now(args: ReleaseCommandArgs) -> anyhow::Result<()> {
    let url = args.db.url(Need::Existing)?;
    let settings = args.release.settings(false)?;
    let catalog = match &args.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::builtin(),
    };
    let pool = startup::prepare_database(&url, 1)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let today = crate::clock::Clock::pinned(args.today).today();
    let stored = release::publish(
        &mut conn,
        &catalog,
        &settings,
        today,
        &mut release::Mechanism::from_os(),
    )
    .context("no release was published")?;
    println!(
        "published the release of {} (rho {:.6}, sha256 {})",
        stored.date, stored.rho, stored.sha256
    );
    Ok(())
}

/// Flags of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address of the collector, for the printed sign-in link.
    #[arg(long, env = "ANONSTATS_BIND", default_value = DEFAULT_BIND, value_name = "ADDR")]
    pub bind: String,
}

/// Flags of `rotate-secret`.
#[derive(Debug, Args)]
pub struct RotateSecretArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Do it. Without this flag, say what would be deleted and change nothing.
    #[arg(long)]
    pub yes: bool,
}

/// `ANONSTATS_SECRET`, if set and not empty. Read from the environment only:
/// a flag would show in process listings.
fn configured_secret() -> Option<String> {
    std::env::var("ANONSTATS_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Runs `rotate-secret`.
fn rotate_secret(args: RotateSecretArgs) -> anyhow::Result<()> {
    let url = args.db.url(Need::Existing)?;
    let database = db::redact_url(&url);
    let pool = startup::prepare_database(&url, 1)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let secret = configured_secret();
    let target = match secret {
        Some(_) => "ANONSTATS_SECRET",
        None => "a newly generated secret (kept in the database)",
    };
    if !args.yes {
        let n = secret::pending(&mut conn)?;
        anyhow::bail!(
            "nothing changed: rotating the secret of {database} to {target} would delete {} \
             instance snapshots, {} aggregate rows and {} dedupe keys (daily event counts are \
             kept). Stop every collector using this database, then run again with --yes.",
            n.instances,
            n.aggregate_rows,
            n.report_keys
        );
    }
    let rotation = secret::rotate(&mut conn, secret.as_deref())
        .with_context(|| format!("the secret of {database} was not rotated"))?;
    let from = match rotation.from {
        Kind::Generated => "the generated secret (deleted)",
        Kind::Configured => "the previous ANONSTATS_SECRET (its fingerprint deleted)",
        Kind::Unrecorded => "an unrecorded secret",
    };
    println!(
        "rotated the secret of {database} from {from} to {target}: deleted {} instance \
         snapshots, {} aggregate rows and {} dedupe keys; daily event counts kept",
        rotation.deleted.instances, rotation.deleted.aggregate_rows, rotation.deleted.report_keys
    );
    if let Some(why) = rotation.scrub_failed {
        eprintln!(
            "anonstats: warning: the deleted rows, the old secret among them, may still be \
             readable in the database files ({why}); with every collector stopped, run \
             VACUUM on the database"
        );
    }
    Ok(())
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "ANONSTATS_BIND", default_value = DEFAULT_BIND, value_name = "ADDR")]
    pub bind: String,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Catalog file replacing the built-in passbolt catalog (see docs/catalog.md).
    #[arg(long, env = "ANONSTATS_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long, env = "ANONSTATS_WORKERS")]
    pub workers: Option<usize>,
    /// Reports that may wait for the writer; beyond that, 503.
    #[arg(long, env = "ANONSTATS_QUEUE_CAPACITY", default_value_t = 2048)]
    pub queue_capacity: usize,
    /// Most reports committed in one transaction.
    #[arg(long, env = "ANONSTATS_MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,
    /// Database connections in the pool.
    #[arg(long, env = "ANONSTATS_POOL_SIZE", default_value_t = 8)]
    pub pool_size: u32,
    /// Seconds allowed for in-flight requests on SIGTERM/SIGINT.
    #[arg(long, env = "ANONSTATS_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    #[command(flatten)]
    pub reporting: ReportingArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Hours between retention runs (the first runs at start-up); 0 disables
    /// them (run `anonstats prune` from a timer instead).
    #[arg(long, env = "ANONSTATS_PRUNE_INTERVAL_HOURS", default_value_t = DEFAULT_PRUNE_INTERVAL_HOURS, value_name = "HOURS")]
    pub prune_interval_hours: u64,
    #[command(flatten)]
    pub releases: ReleaseArgs,
    /// Publish public releases only on demand (`anonstats release`), never
    /// on the cadence.
    #[arg(long, env = "ANONSTATS_NO_RELEASE_SCHEDULE")]
    pub no_release_schedule: bool,
}

impl ServeArgs {
    /// The runtime configuration these flags describe. The secret comes from
    /// `ANONSTATS_SECRET` only: a flag would show in process listings.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.db.url(Need::CreateIfMissing)?);
        config.bind = self.bind.clone();
        if let Some(path) = &self.catalog {
            config.catalog = Arc::new(Catalog::from_file(path)?);
        }
        config.secret = configured_secret();
        config.workers = self.workers;
        anyhow::ensure!(
            self.queue_capacity > 0,
            "--queue-capacity must be at least 1"
        );
        anyhow::ensure!(self.max_batch > 0, "--max-batch must be at least 1");
        config.writer.queue_capacity = self.queue_capacity;
        config.writer.max_batch = self.max_batch;
        config.pool_size = self.pool_size.max(2);
        config.shutdown_timeout = self.shutdown_timeout;
        config.stats = self.reporting.settings();
        config.limits = self.limits.limits().map_err(anyhow::Error::msg)?;
        config.retention = self.retention.retention().map_err(anyhow::Error::msg)?;
        config.prune_interval_hours = self.prune_interval_hours;
        config.clock = self.reporting.clock();
        config.releases = self.releases.settings(!self.no_release_schedule)?;
        Ok(config)
    }
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let config = args.config()?;
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(config)?;
                actix_web::rt::spawn(startup::stop_on_signal(app.handle()));
                app.run_until_stopped().await.context("server failed")
            })
        }
        Command::Migrate(args) => {
            let url = args.url(Need::CreateIfMissing)?;
            startup::prepare_database(&url, 1)?;
            eprintln!("migrations applied to {}", db::redact_url(&url));
            Ok(())
        }
        Command::Send(args) => crate::client::command::run(*args),
        Command::Simulate(args) => crate::simulate::run(args),
        Command::Stats(command) => crate::reporting::cli::run(command),
        Command::Token(args) => {
            let url = args.db.url(Need::Existing)?;
            let pool = startup::prepare_database(&url, 1)?;
            let mut conn = pool.get().context("cannot connect to database")?;
            let token = crate::access::rotate_token(&mut conn).context("cannot store the token")?;
            println!("{token}");
            eprintln!(
                "anonstats: sign in at http://{}/signin?token={token} (or send Authorization: Bearer <token>). Collectors on this database accept it within {} s; the old token and its sessions stop working.",
                args.bind,
                crate::access::REFRESH.as_secs()
            );
            if std::env::var("ANONSTATS_STATS_TOKEN").is_ok_and(|t| !t.is_empty()) {
                eprintln!("anonstats: ANONSTATS_STATS_TOKEN is set here: a collector started with it uses that token instead of the stored one.");
            }
            Ok(())
        }
        Command::Prune(args) => {
            let url = args.db.url(Need::Existing)?;
            let retention = args.retention.retention().map_err(anyhow::Error::msg)?;
            let pool = startup::prepare_database(&url, 1)?;
            let mut conn = pool.get().context("cannot connect to database")?;
            let stats = retention
                .prune(&mut conn, crate::clock::Clock::pinned(args.today).today())
                .context("retention run failed")?;
            println!(
                "pruned {} instances, {} dedupe keys, {} empty aggregate rows",
                stats.instances, stats.report_keys, stats.aggregate_rows
            );
            Ok(())
        }
        Command::RotateSecret(args) => rotate_secret(args),
        Command::Release(args) => release_now(args),
    }
}
