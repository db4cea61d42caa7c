//! `anonstats stats ...`: the reports on the command line, read directly
//! from the database with the same functions (and the same JSON) as the
//! HTTP stats API.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use super::serve::ReportingArgs;
use super::DatabaseArgs;
use crate::catalog::Catalog;
use crate::db::{self, Need};
use crate::reporting::{self, output, params, Params, Query, Report};

/// Output formats of `anonstats stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// CSV with a header line (what k hid goes to stderr).
    Csv,
    /// The same JSON as the HTTP stats API.
    Json,
}

/// Options of every report.
#[derive(Debug, Args)]
pub struct StatsOptions {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub reporting: ReportingArgs,
    /// Catalog file, when the collector uses one (see docs/catalog.md).
    #[arg(long, env = "ANONSTATS_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Product [default: the only or first one of the catalog].
    #[arg(long)]
    pub product: Option<String>,
    /// First day of event counts, YYYY-MM-DD [default: a year before --to].
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day of event counts, YYYY-MM-DD [default: today, UTC].
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Event counts per day, week (from Monday) or month.
    #[arg(long, value_name = "day|week|month")]
    pub interval: Option<String>,
    /// Split event counts by version or edition.
    #[arg(long, value_name = "version|edition")]
    pub by: Option<String>,
}

/// The reports.
#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Active instances and install/update reports.
    Summary(StatsOptions),
    /// Install and update reports per period.
    Events(StatsOptions),
    /// Active instances per version.
    Versions(StatsOptions),
    /// Active instances per value of one attribute (e.g. php_version).
    Attributes {
        /// Attribute name from the catalog.
        name: String,
        #[command(flatten)]
        options: StatsOptions,
    },
    /// Size statistics (users, resources, ...) over active instances.
    Counters(StatsOptions),
    /// Feature adoption over active instances.
    Features(StatsOptions),
    /// Update reports per upgrade path.
    Upgrades(StatsOptions),
}

/// Runs a report and prints it.
pub fn run(command: StatsCommand) -> anyhow::Result<()> {
    let (report, options) = match command {
        StatsCommand::Summary(o) => (Report::Summary, o),
        StatsCommand::Events(o) => (Report::Events, o),
        StatsCommand::Versions(o) => (Report::Versions, o),
        StatsCommand::Attributes { name, options } => (Report::Attribute(name), options),
        StatsCommand::Counters(o) => (Report::Counters, o),
        StatsCommand::Features(o) => (Report::Features, o),
        StatsCommand::Upgrades(o) => (Report::Upgrades, o),
    };
    let catalog = match &options.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::builtin(),
    };
    let params = Params {
        product: options.product.clone(),
        from: options.from.clone(),
        to: options.to.clone(),
        active_days: None,
        interval: options.interval.clone(),
        by: options.by.clone(),
    };
    let query = Query::resolve(
        &params,
        &catalog,
        options.reporting.k,
        options.reporting.active_days,
        options.reporting.clock().today(),
    )
    .map_err(|e| anyhow::anyhow!("--{}", e.to_string().replace('_', "-")))?;
    if let Report::Attribute(name) = &report {
        params::check_attribute(&catalog, &query.product, name)
            .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    }

    let url = options.db.url(Need::Existing)?;
    let mut conn = db::Manager::new(&url)
        .establish()
        .with_context(|| format!("cannot connect to database {}", db::redact_url(&url)))?;
    let out = reporting::run(&mut conn, &catalog, &report, &query).with_context(|| {
        format!(
            "cannot read the reports from {} (run `anonstats migrate` first?)",
            db::redact_url(&url)
        )
    })?;

    let text = match options.format {
        Format::Json => format!("{}\n", serde_json::to_string(&out)?),
        Format::Csv => output::csv(&out),
        Format::Table => output::table(&out),
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // `anonstats stats ... | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    if options.format == Format::Csv {
        eprintln!("{}", output::note(&out));
    }
    Ok(())
}
