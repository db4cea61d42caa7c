//! Recent report results, so that a dashboard asking the same questions
//! again does not aggregate the same rows again.
//!
//! A result is reused only while the database has not changed: before each
//! lookup one cheap primary-key read of `daily_events` on recent days
//! ([`query::change_marker`]) tells whether reports were stored since. Every
//! write adds reports there, so a reused result is never older than the last
//! stored report. Entries also expire after [`MAX_AGE`], for changes made
//! outside the collector (an operator's SQL).
//!
//! An erasure may take out an install whose last report is older than the
//! marker's days, so it invalidates explicitly: [`Cache::invalidate`] after
//! it committed, for this process, and the erasure counter in the marker,
//! for every other collector on the same database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Duration as Days;
use diesel::QueryResult;

use super::{query, Output, Query, Report};
use crate::catalog::Catalog;
use crate::db::DbConn;

/// Longest time a result is reused.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Most results kept (a few hundred kilobytes at most).
const MAX_ENTRIES: usize = 256;

struct Entry {
    marker: (i64, i64, i64),
    generation: u64,
    stored: Instant,
    output: Arc<Output>,
}

/// Results by report and query.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<(Report, Query), Entry>>,
    /// Raised by [`Cache::invalidate`]: an entry computed under an older
    /// generation is never reused.
    generation: AtomicU64,
}

impl Cache {
    /// Makes every result computed so far stale, including one being
    /// computed now. Call it after the change committed: a result computed
    /// before the call is then never reused.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The report's result: reused when nothing changed, else computed.
    pub fn run(
        &self,
        conn: &mut DbConn,
        catalog: &Catalog,
        report: &Report,
        query: &Query,
    ) -> QueryResult<Arc<Output>> {
        // Read before computing: a write landing in between makes the entry
        // look older than it is, never newer.
        let generation = self.generation.load(Ordering::SeqCst);
        let marker = query::change_marker(conn, query.today - Days::days(1))?;
        let key = (report.clone(), query.clone());
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = entries.get(&key) {
                if e.marker == marker && e.generation == generation && e.stored.elapsed() < MAX_AGE
                {
                    return Ok(e.output.clone());
                }
            }
        }
        let output = Arc::new(super::run(conn, catalog, report, query)?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| {
                e.marker == marker && e.generation == generation && e.stored.elapsed() < MAX_AGE
            });
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                marker,
                generation,
                stored: Instant::now(),
                output: output.clone(),
            },
        );
        Ok(output)
    }
}
