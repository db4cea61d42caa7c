//! Retention: how long pseudonymous data is kept, and the runs that delete
//! what is older (`anonstats prune`, and a periodic run inside `serve`).
//!
//! Instance snapshots not seen for `--retain-days` are deleted together with
//! their share of the aggregates; dedupe keys are deleted once older than
//! `--dedupe-days`. Daily event counts carry no pseudonym and are kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{Days, NaiveDate};

use crate::clock::Clock;
use crate::db::{DbConn, Pool};
use crate::store::{self, PruneStats};

/// Default `--retain-days`.
pub const DEFAULT_RETAIN_DAYS: u32 = 400;
/// Default `--dedupe-days`: the store's, which writes without a window
/// given.
pub use crate::store::DEFAULT_DEDUPE_DAYS;
/// Shortest dedupe window: clients retry for up to a week.
pub const MIN_DEDUPE_DAYS: u32 = 7;
/// Default `--prune-interval-hours`.
pub const DEFAULT_PRUNE_INTERVAL_HOURS: u64 = 24;

/// How long data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Instances not seen for this many days are deleted.
    pub retain_days: u32,
    /// Dedupe keys are kept this many days.
    pub dedupe_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            retain_days: DEFAULT_RETAIN_DAYS,
            dedupe_days: DEFAULT_DEDUPE_DAYS,
        }
    }
}

impl Retention {
    /// The window in which a report's dedupe key counts.
    pub fn dedupe_window(&self) -> store::DedupeWindow {
        store::DedupeWindow {
            days: self.dedupe_days,
        }
    }

    /// Runs one retention pass as of `today`.
    pub fn prune(&self, conn: &mut DbConn, today: NaiveDate) -> diesel::QueryResult<PruneStats> {
        let instances_before = today
            .checked_sub_days(Days::new(u64::from(self.retain_days)))
            .unwrap_or(NaiveDate::MIN);
        let keys_before = self.dedupe_window().start(today);
        store::prune(conn, instances_before, keys_before)
    }
}

/// The periodic retention run inside `serve`; stops when dropped.
pub struct Pruner {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pruner {
    /// Runs retention now and then every `interval`, on its own thread.
    /// Several collectors on one database may all do so: a run finds
    /// nothing left to delete after another.
    pub fn start(
        pool: Pool,
        retention: Retention,
        interval: Duration,
        pruned: Arc<AtomicU64>,
        clock: Clock,
    ) -> Pruner {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("anonstats-retention".into())
            .spawn(move || loop {
                run_once(&pool, &retention, &pruned, clock);
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .expect("spawn retention thread");
        Pruner {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_once(pool: &Pool, retention: &Retention, pruned: &AtomicU64, clock: Clock) {
    let result = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
        retention
            .prune(&mut conn, clock.today())
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(stats) => {
            pruned.fetch_add(stats.instances, Ordering::Relaxed);
            tracing::info!(
                instances = stats.instances,
                report_keys = stats.report_keys,
                aggregate_rows = stats.aggregate_rows,
                "retention run finished"
            );
        }
        // The next run retries; nothing is half-deleted (one transaction
        // per chunk of instances).
        Err(error) => tracing::warn!(%error, "retention run failed"),
    }
}
