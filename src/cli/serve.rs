//! `serve`: the collector's flags, and the flag groups it shares with
//! other commands, each turned into its domain settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use super::DatabaseArgs;
use crate::catalog::Catalog;
use crate::client_ip::{Cidr, ClientIpHeader};
use crate::clock::{Clock, TODAY_ENV};
use crate::config::{self, Config};
use crate::db::Need;
use crate::ingest;
use crate::limits::{self, Limits, RateLimit};
use crate::release::{self, Cadence};
use crate::reporting::{self, params, StatsToken};
use crate::retention::{self, Retention};

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "ANONSTATS_BIND", default_value = config::DEFAULT_BIND, value_name = "ADDR")]
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
    #[arg(long, env = "ANONSTATS_QUEUE_CAPACITY", default_value_t = ingest::DEFAULT_QUEUE_CAPACITY)]
    pub queue_capacity: usize,
    /// Most reports committed in one transaction.
    #[arg(long, env = "ANONSTATS_MAX_BATCH", default_value_t = ingest::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Database connections in the pool.
    #[arg(long, env = "ANONSTATS_POOL_SIZE", default_value_t = config::DEFAULT_POOL_SIZE)]
    pub pool_size: u32,
    /// Seconds allowed for in-flight requests on SIGTERM/SIGINT.
    #[arg(long, env = "ANONSTATS_SHUTDOWN_TIMEOUT", default_value_t = config::DEFAULT_SHUTDOWN_TIMEOUT)]
    pub shutdown_timeout: u64,
    #[command(flatten)]
    pub reporting: ReportingArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Hours between retention runs (the first runs at start-up); 0 disables
    /// them (run `anonstats prune` from a timer instead).
    #[arg(long, env = "ANONSTATS_PRUNE_INTERVAL_HOURS", default_value_t = retention::DEFAULT_PRUNE_INTERVAL_HOURS, value_name = "HOURS")]
    pub prune_interval_hours: u64,
    #[command(flatten)]
    pub releases: ReleaseArgs,
    /// Publish public releases only on demand (`anonstats release`), never
    /// on the cadence.
    #[arg(long, env = "ANONSTATS_NO_RELEASE_SCHEDULE")]
    pub no_release_schedule: bool,
}

impl TryFrom<&ServeArgs> for Config {
    type Error = anyhow::Error;

    /// The runtime configuration these flags describe. The secret comes from
    /// `ANONSTATS_SECRET` only: a flag would show in process listings.
    fn try_from(args: &ServeArgs) -> anyhow::Result<Config> {
        let mut config = Config::new(args.db.url(Need::CreateIfMissing)?);
        config.bind = args.bind.clone();
        if let Some(path) = &args.catalog {
            config.catalog = Arc::new(Catalog::from_file(path)?);
        }
        config.secret = super::configured_secret();
        config.workers = args.workers;
        anyhow::ensure!(
            args.queue_capacity > 0,
            "--queue-capacity must be at least 1"
        );
        anyhow::ensure!(args.max_batch > 0, "--max-batch must be at least 1");
        config.writer.queue_capacity = args.queue_capacity;
        config.writer.max_batch = args.max_batch;
        config.pool_size = args.pool_size.max(2);
        config.shutdown_timeout = args.shutdown_timeout;
        config.stats = args.reporting.settings();
        config.limits = Limits::try_from(&args.limits).map_err(anyhow::Error::msg)?;
        config.retention = Retention::try_from(&args.retention).map_err(anyhow::Error::msg)?;
        config.writer.dedupe = config.retention.dedupe_window();
        config.prune_interval_hours = args.prune_interval_hours;
        config.clock = args.reporting.clock();
        config.releases = args.releases.settings(!args.no_release_schedule)?;
        Ok(config)
    }
}

/// The flags of `serve` that set [`Limits`] (see docs/operations.md).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Reports per minute per source address, with an optional burst:
    /// `60` (60 per minute, bursts of 60), `60,burst=20`, or `0` to disable.
    /// IPv4 sources are counted per address, IPv6 per /64.
    #[arg(long, env = "ANONSTATS_RATE_LIMIT", default_value = limits::DEFAULT_RATE_LIMIT, value_name = "N[,burst=B]")]
    pub rate_limit: RateLimit,
    /// Requests per minute per source to every other route that does work
    /// (stats, erasures, sign-in, readiness, metrics, the dashboard page),
    /// with an optional burst; `0` disables.
    #[arg(long, env = "ANONSTATS_READ_RATE_LIMIT", default_value = limits::DEFAULT_READ_RATE_LIMIT, value_name = "N[,burst=B]")]
    pub read_rate_limit: RateLimit,
    /// Reverse proxies (addresses or CIDR ranges, comma separated) whose
    /// --client-ip-header names the client for rate limiting. Other peers'
    /// forwarding headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "ANONSTATS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// The one header the trusted proxies set to name the client; every other
    /// forwarding header is ignored. Required with --trusted-proxy.
    #[arg(
        long,
        env = "ANONSTATS_CLIENT_IP_HEADER",
        value_enum,
        value_name = "HEADER"
    )]
    pub client_ip_header: Option<ClientIpHeaderArg>,
    /// Reports taken per instance and UTC day, per collector; more get 429
    /// until the next day. 0 disables.
    #[arg(long, env = "ANONSTATS_INSTANCE_DAILY_LIMIT", default_value_t = limits::DEFAULT_INSTANCE_DAILY_LIMIT, value_name = "N")]
    pub instance_daily_limit: u32,
    /// Seconds a client has to send its request head, and again its body.
    #[arg(long, env = "ANONSTATS_REQUEST_TIMEOUT", default_value_t = limits::DEFAULT_REQUEST_TIMEOUT, value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Seconds an idle kept-alive connection stays open; 0 disables keep-alive.
    #[arg(long, env = "ANONSTATS_KEEP_ALIVE", default_value_t = limits::DEFAULT_KEEP_ALIVE, value_name = "SECONDS")]
    pub keep_alive: u64,
    /// Most simultaneous client connections; beyond that, new connections
    /// wait in the listen backlog.
    #[arg(long, env = "ANONSTATS_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a request refused by a per-source limit waits for its 429
    /// (a client that sends its next request only after an answer then
    /// costs almost nothing); 0 answers at once.
    #[arg(long, env = "ANONSTATS_REFUSAL_PAUSE", default_value_t = limits::DEFAULT_REFUSAL_PAUSE, value_name = "SECONDS")]
    pub refusal_pause: u64,
}

impl TryFrom<&LimitArgs> for Limits {
    type Error = String;

    /// The limits these flags describe.
    fn try_from(args: &LimitArgs) -> Result<Limits, String> {
        if args.request_timeout == 0 {
            return Err("--request-timeout must be at least 1 second".to_owned());
        }
        if args.max_connections == 0 {
            return Err("--max-connections must be at least 1".to_owned());
        }
        match (args.trusted_proxies.is_empty(), args.client_ip_header) {
            (false, None) => {
                return Err("--trusted-proxy needs --client-ip-header: the one header your proxies set (x-forwarded-for, forwarded or x-real-ip)".to_owned())
            }
            (true, Some(_)) => {
                return Err("--client-ip-header is read only from --trusted-proxy peers: give their addresses too".to_owned())
            }
            _ => {}
        }
        Ok(Limits {
            rate_limit: args.rate_limit,
            read_rate_limit: args.read_rate_limit,
            trusted_proxies: args.trusted_proxies.clone(),
            client_ip_header: args.client_ip_header.map(ClientIpHeader::from),
            instance_daily_limit: args.instance_daily_limit,
            max_sources: limits::DEFAULT_MAX_SOURCES,
            request_timeout: Duration::from_secs(args.request_timeout),
            keep_alive: Duration::from_secs(args.keep_alive),
            max_connections: args.max_connections,
            refusal_pause: Duration::from_secs(args.refusal_pause),
        })
    }
}

/// `--client-ip-header`: the values of [`ClientIpHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientIpHeaderArg {
    /// `X-Forwarded-For: client, proxy1, ...`
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, ...` (RFC 7239)
    #[value(name = "forwarded")]
    Forwarded,
    /// `X-Real-IP: client` (one address)
    #[value(name = "x-real-ip")]
    XRealIp,
}

impl From<ClientIpHeaderArg> for ClientIpHeader {
    fn from(arg: ClientIpHeaderArg) -> ClientIpHeader {
        match arg {
            ClientIpHeaderArg::XForwardedFor => ClientIpHeader::XForwardedFor,
            ClientIpHeaderArg::Forwarded => ClientIpHeader::Forwarded,
            ClientIpHeaderArg::XRealIp => ClientIpHeader::XRealIp,
        }
    }
}

/// The retention flags shared by `serve` and `prune`.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Delete the snapshot of an instance not seen for this many days (its
    /// share of the aggregates goes with it; event counts are kept).
    #[arg(long, env = "ANONSTATS_RETAIN_DAYS", default_value_t = retention::DEFAULT_RETAIN_DAYS, value_name = "DAYS")]
    pub retain_days: u32,
    /// Keep report ids (as keyed hashes) this many days to recognise retried
    /// reports; at least 7.
    #[arg(long, env = "ANONSTATS_DEDUPE_DAYS", default_value_t = retention::DEFAULT_DEDUPE_DAYS, value_name = "DAYS")]
    pub dedupe_days: u32,
}

impl TryFrom<&RetentionArgs> for Retention {
    type Error = String;

    /// The validated retention.
    fn try_from(args: &RetentionArgs) -> Result<Retention, String> {
        if args.retain_days == 0 {
            return Err("--retain-days must be at least 1".to_owned());
        }
        if args.dedupe_days < retention::MIN_DEDUPE_DAYS {
            return Err(format!(
                "--dedupe-days must be at least {}",
                retention::MIN_DEDUPE_DAYS
            ));
        }
        Ok(Retention {
            retain_days: args.retain_days,
            dedupe_days: args.dedupe_days,
        })
    }
}

/// Reporting settings shared by `serve` and `stats`.
#[derive(Debug, Clone, Args)]
pub struct ReportingArgs {
    /// Smallest group (distinct instances, or reports for event counts)
    /// shown as such; smaller ones are folded into "other" or left out.
    #[arg(
        long = "k",
        env = "ANONSTATS_K",
        default_value_t = params::DEFAULT_K,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub k: u32,
    /// Days since its last report within which an instance counts as
    /// active (default for queries that give no active_days).
    #[arg(
        long,
        env = "ANONSTATS_ACTIVE_DAYS",
        default_value_t = params::DEFAULT_ACTIVE_DAYS,
        value_name = "DAYS",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(params::MAX_ACTIVE_DAYS))
    )]
    pub active_days: u32,
    /// Pins "today" (UTC) instead of reading the system clock: for tests of
    /// the binary only, hence hidden.
    #[arg(long, env = TODAY_ENV, value_name = "YYYY-MM-DD", hide = true)]
    pub today: Option<NaiveDate>,
}

impl ReportingArgs {
    /// Where "today" comes from.
    pub fn clock(&self) -> Clock {
        Clock::pinned(self.today)
    }

    /// The server settings these flags describe. The stats token comes from
    /// `ANONSTATS_STATS_TOKEN` only: a flag would show in process listings.
    pub fn settings(&self) -> reporting::Settings {
        reporting::Settings {
            k: self.k,
            active_days: self.active_days,
            token: std::env::var("ANONSTATS_STATS_TOKEN")
                .ok()
                .and_then(|t| StatsToken::new(&t)),
        }
    }
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
    #[arg(long, env = "ANONSTATS_RELEASE_CADENCE", default_value = release::DEFAULT_CADENCE.as_str(), value_parser = ["daily", "weekly", "monthly"], value_name = "CADENCE")]
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
