//! Seeding a database with a large population and years of history,
//! through the real write path (`store::write_batch`) but without HTTP.
//!
//! Instance `i` is the benchmark population's instance `i`
//! ([`super::generator::instance_id`]), hashed with the same secret the
//! collector is started with, so that load reports sent afterwards update
//! these instances. Each instance is installed on a day of the history and,
//! unless that day is recent, last updated on a day of the active window
//! (so every seeded instance is active); one more update per instance, of
//! an earlier release, adds to the daily event history without touching an
//! instance.

use std::time::Instant;

use anyhow::Context;
use chrono::{Duration as Days, NaiveDate, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::generator::{instance_id, release, release_index, Sample};
use anonstats::anonymize::{self, Pseudonymizer, Record};
use anonstats::db::{self, DbConn};
use anonstats::store;
use anonstats::validation::Event;

/// Instances written per transaction: large enough that reports of one day
/// and key aggregate into one upsert, small enough to keep memory flat.
const INSTANCES_PER_BATCH: u64 = 5000;
/// Days in the active window of the stats API's default.
pub const ACTIVE_DAYS: i64 = 365;

/// What seeding wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seeded {
    pub instances: u64,
    pub event_reports: u64,
    pub seconds: f64,
}

/// Writes `instances` instances and `days` of history into the database
/// at `url` (migrated already).
pub fn seed(
    url: &str,
    secret: &str,
    instances: u64,
    days: i64,
    progress: impl Fn(u64),
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut conn = connect(url)?;
    let pseudonymizer = Pseudonymizer::new(secret.as_bytes());
    let today = Utc::now().date_naive();
    let days = days.max(1);
    let start = today - Days::days(days);
    let active = ACTIVE_DAYS.min(days);
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut event_reports = 0;
    let mut records: Vec<Record> = Vec::with_capacity(3 * INSTANCES_PER_BATCH as usize);
    let mut first = 0;
    while first < instances {
        let last = (first + INSTANCES_PER_BATCH).min(instances);
        records.clear();
        for i in first..last {
            instance_records(
                &mut rng,
                &pseudonymizer,
                i,
                start,
                today,
                days,
                active,
                &mut records,
            );
        }
        event_reports += records.len() as u64;
        store::write_batch(&mut conn, &records)
            .with_context(|| format!("seeding instances {first}..{last}"))?;
        first = last;
        progress(first);
    }
    Ok(Seeded {
        instances,
        event_reports,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::too_many_arguments)]
fn instance_records(
    rng: &mut SmallRng,
    pseudonymizer: &Pseudonymizer,
    i: u64,
    start: NaiveDate,
    today: NaiveDate,
    days: i64,
    active: i64,
    out: &mut Vec<Record>,
) {
    let last_seen = today - Days::days(rng.random_range(0..active));
    let last_age = (today - last_seen).num_days();
    let mut first_seen = today - Days::days(rng.random_range(last_age..=days.max(last_age)));
    let (installed, now) = (
        release_index(start, first_seen),
        release_index(start, last_seen),
    );
    if installed == now {
        // No release in between to update to: installed when last seen.
        first_seen = last_seen;
    }
    let id = Some(instance_id(i));
    let sample = Sample::random(rng, id, Event::Install, release(installed), None);
    // Install first, then the latest update: the batch keeps the first
    // day as first_seen and the last report as the snapshot.
    out.push(anonymize::anonymize(
        sample.to_report(),
        pseudonymizer,
        first_seen,
    ));
    if installed < now {
        let mut update = sample;
        update.event = Event::Update;
        update.version = release(now);
        update.previous_version = Some(release(installed.max(now - 3)));
        out.push(anonymize::anonymize(
            update.to_report(),
            pseudonymizer,
            last_seen,
        ));
        // An earlier update, as history only (no instance).
        let span = (last_seen - first_seen).num_days();
        let between = first_seen + Days::days(rng.random_range(0..=span));
        let mid = release_index(start, between).max(1);
        let mut history = Sample::random(rng, None, Event::Update, release(mid), None);
        history.previous_version = Some(release(mid - 1));
        out.push(anonymize::anonymize(
            history.to_report(),
            pseudonymizer,
            between,
        ));
    }
}

/// Bytes the database takes on disk. SQLite: the file plus its WAL after a
/// checkpoint; PostgreSQL: `pg_database_size`.
pub fn database_bytes(url: &str) -> anyhow::Result<u64> {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let mut conn = connect(url)?;
    match &mut conn {
        DbConn::Sqlite(c) => {
            c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let mut total = 0;
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(m) = std::fs::metadata(format!("{path}{suffix}")) {
                    total += m.len();
                }
            }
            Ok(total)
        }
        DbConn::Pg(c) => {
            c.batch_execute("CHECKPOINT").ok();
            let size: Size =
                diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
                    .get_result(c)?;
            Ok(size.bytes as u64)
        }
    }
}

/// Reports counted in the daily event counts: the difference over a phase
/// is the number of reports it stored.
pub fn reports_stored(url: &str) -> anyhow::Result<u64> {
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = BigInt)]
        reports: i64,
    }
    let mut conn = connect(url)?;
    let query = diesel::sql_query(
        "SELECT CAST(COALESCE(SUM(reports), 0) AS BIGINT) AS reports FROM daily_events",
    );
    let sum: Sum = match &mut conn {
        DbConn::Sqlite(c) => query.get_result(c)?,
        DbConn::Pg(c) => query.get_result(c)?,
    };
    Ok(sum.reports.max(0) as u64)
}

/// A connection to the benchmark's database at `url`.
fn connect(url: &str) -> anyhow::Result<DbConn> {
    db::Manager::new(url)
        .establish()
        .with_context(|| format!("cannot connect to {}", db::redact_url(url)))
}
