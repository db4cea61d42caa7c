//! `send` and `simulate`: the client side of the protocol.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;
use uuid::Uuid;

use crate::client::command::{self, SendOptions};
use crate::client::optin;
use crate::clock::TODAY_ENV;
use crate::simulate::{self, SimulateOptions};

/// Flags of `anonstats send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Opt-in file (JSON, or passbolt-style PHP when it ends in .php)
    /// [default: $XDG_CONFIG_HOME/anonstats/client.json or ~/.config/anonstats/client.json].
    #[arg(long, env = optin::CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Collector base URL [default: the opt-in file's "collector", else https://stats.example.org].
    // The doc comment is the flag's help, where a bare URL reads best.
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "ANONSTATS_COLLECTOR", value_name = "URL")]
    pub collector: Option<String>,

    /// Record the administrator's agreement (and generate the instance id once); sends nothing.
    #[arg(long, conflicts_with_all = ["opt_out", "forget", "dry_run", "explain"])]
    pub opt_in: bool,
    /// Record that nothing may be sent any more; sends nothing.
    #[arg(long, conflicts_with_all = ["forget", "dry_run", "explain"])]
    pub opt_out: bool,
    /// Ask the collector to erase this install's stored state, then opt out
    /// and drop the instance id.
    #[arg(long, conflicts_with_all = ["dry_run", "explain"])]
    pub forget: bool,

    /// Print on stdout the exact JSON that would be sent; no connection is made.
    #[arg(long, conflicts_with = "explain")]
    pub dry_run: bool,
    /// Explain field by field what would be sent and why it cannot identify anyone; no connection is made.
    #[arg(long)]
    pub explain: bool,

    /// Product [default: the catalog's first product].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// What happened: install or update.
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// Version now installed.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Version updated from (update only).
    #[arg(long, value_name = "VERSION")]
    pub previous_version: Option<String>,
    /// A catalog attribute, repeatable: --attribute edition=ce.
    #[arg(long = "attribute", value_name = "NAME=VALUE")]
    pub attributes: Vec<String>,
    /// A catalog counter, repeatable: --counter users=42.
    #[arg(long = "counter", value_name = "NAME=N")]
    pub counters: Vec<String>,
    /// A catalog feature, repeatable: --feature mfa=true.
    #[arg(long = "feature", value_name = "NAME=true|false")]
    pub features: Vec<String>,
    /// JSON file with any of product, event, version, previous_version,
    /// attributes, counters and features; flags override it.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Check against this catalog file instead of the collector's GET
    /// /api/v1/catalog when sending, or the built-in catalog with
    /// --dry-run and --explain (which never connect).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Report id to use instead of a fresh one (to resend a report without
    /// counting it twice).
    #[arg(long, value_name = "UUID")]
    pub report_id: Option<Uuid>,

    /// Connect and total timeout of each request, in seconds.
    #[arg(long, default_value_t = command::DEFAULT_TIMEOUT_SECS, value_name = "SECONDS")]
    pub timeout: u64,
    /// Retries after the first attempt (network errors, 429, 502, 503, 504).
    #[arg(long, default_value_t = command::DEFAULT_RETRIES, value_name = "N")]
    pub retries: u32,
    /// Exit non-zero when the report could not be built or sent.
    #[arg(long)]
    pub strict: bool,
}

impl From<&SendArgs> for SendOptions {
    fn from(a: &SendArgs) -> SendOptions {
        SendOptions {
            config: a.config.clone(),
            collector: a.collector.clone(),
            opt_in: a.opt_in,
            opt_out: a.opt_out,
            forget: a.forget,
            dry_run: a.dry_run,
            explain: a.explain,
            product: a.product.clone(),
            event: a.event.clone(),
            version: a.version.clone(),
            previous_version: a.previous_version.clone(),
            attributes: a.attributes.clone(),
            counters: a.counters.clone(),
            features: a.features.clone(),
            from_file: a.from_file.clone(),
            catalog: a.catalog.clone(),
            report_id: a.report_id,
            timeout: a.timeout,
            retries: a.retries,
            strict: a.strict,
        }
    }
}

/// Flags of `anonstats simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Installs to simulate.
    #[arg(long, default_value_t = simulate::DEFAULT_INSTANCES, value_name = "N")]
    pub instances: usize,
    /// Days of history to simulate, ending today.
    #[arg(long, default_value_t = simulate::DEFAULT_DAYS, value_name = "D")]
    pub days: u32,
    /// Seed of the random generator; the same seed plans the same reports
    /// [default: a random seed, printed].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Write the reports straight into this database (SQLite file or
    /// postgres:// URL), each on its simulated day, instead of posting them
    /// to a collector. The database must hold no real reports.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Catalog file of the collector, with --database [default: the
    /// built-in catalog].
    #[arg(long, env = "ANONSTATS_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Collector base URL, without --database.
    #[arg(
        long,
        env = "ANONSTATS_COLLECTOR",
        default_value = simulate::DEFAULT_COLLECTOR,
        value_name = "URL"
    )]
    pub collector: String,
    /// Reports in flight at once, without --database.
    #[arg(long, default_value_t = simulate::DEFAULT_CONCURRENCY, value_name = "C")]
    pub concurrency: usize,
    /// Product to simulate [default: the catalog's first product].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
    /// Pins "today" for tests of the binary, as `serve --today`.
    #[arg(long, env = TODAY_ENV, value_name = "YYYY-MM-DD", hide = true)]
    pub today: Option<NaiveDate>,
}

impl From<&SimulateArgs> for SimulateOptions {
    fn from(a: &SimulateArgs) -> SimulateOptions {
        SimulateOptions {
            instances: a.instances,
            days: a.days,
            seed: a.seed,
            database: a.database.clone(),
            catalog: a.catalog.clone(),
            collector: a.collector.clone(),
            concurrency: a.concurrency,
            product: a.product.clone(),
            today: a.today,
        }
    }
}
