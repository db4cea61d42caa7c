//! `migrate`, `release`, `prune`, `token` and `rotate-secret`: one-shot
//! operations on the database, for the administrator.

use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;

use super::serve::{ReleaseArgs, RetentionArgs};
use super::DatabaseArgs;
use crate::access;
use crate::catalog::Catalog;
use crate::clock::{Clock, TODAY_ENV};
use crate::config;
use crate::db::{self, prepare_database, Need};
use crate::publication;
use crate::release;
use crate::retention::Retention;
use crate::secret::{self, Kind};

/// Runs `migrate`.
pub fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let url = args.url(Need::CreateIfMissing)?;
    prepare_database(&url, 1)?;
    eprintln!("migrations applied to {}", db::redact_url(&url));
    Ok(())
}

/// Flags of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Pins "today" (UTC) for tests of the binary, as `serve --today`.
    #[arg(long, env = TODAY_ENV, value_name = "YYYY-MM-DD", hide = true)]
    pub today: Option<NaiveDate>,
}

/// Runs `prune`.
pub fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let url = args.db.url(Need::Existing)?;
    let retention = Retention::try_from(&args.retention).map_err(anyhow::Error::msg)?;
    let pool = prepare_database(&url, 1)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let stats = retention
        .prune(&mut conn, Clock::pinned(args.today).today())
        .context("retention run failed")?;
    println!(
        "pruned {} instances, {} dedupe keys, {} empty aggregate rows",
        stats.instances, stats.report_keys, stats.aggregate_rows
    );
    Ok(())
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
    #[arg(long, env = TODAY_ENV, value_name = "YYYY-MM-DD", hide = true)]
    pub today: Option<NaiveDate>,
}

/// Runs `release`.
pub fn release_now(args: ReleaseCommandArgs) -> anyhow::Result<()> {
    let url = args.db.url(Need::Existing)?;
    let settings = args.release.settings(false)?;
    let catalog = match &args.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::builtin(),
    };
    let pool = prepare_database(&url, 1)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let today = Clock::pinned(args.today).today();
    let stored = publication::publish(
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
    #[arg(long, env = "ANONSTATS_BIND", default_value = config::DEFAULT_BIND, value_name = "ADDR")]
    pub bind: String,
}

/// Runs `token`.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let url = args.db.url(Need::Existing)?;
    let pool = prepare_database(&url, 1)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let token = access::rotate_token(&mut conn).context("cannot store the token")?;
    println!("{token}");
    eprintln!(
        "anonstats: sign in at http://{}/signin?token={token} (or send Authorization: Bearer <token>). Collectors on this database accept it within {} s; the old token and its sessions stop working.",
        args.bind,
        access::REFRESH.as_secs()
    );
    if std::env::var("ANONSTATS_STATS_TOKEN").is_ok_and(|t| !t.is_empty()) {
        eprintln!("anonstats: ANONSTATS_STATS_TOKEN is set here: a collector started with it uses that token instead of the stored one.");
    }
    Ok(())
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

/// Runs `rotate-secret`.
pub fn rotate_secret(args: RotateSecretArgs) -> anyhow::Result<()> {
    let url = args.db.url(Need::Existing)?;
    let database = db::redact_url(&url);
    let pool = prepare_database(&url, 1)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let secret = super::configured_secret();
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
