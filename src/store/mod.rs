//! Every write, and every difference between the backends, in one place.
//!
//! The write path is a pure [`plan`]ner and the code that runs its plans:
//! [`plan`] decides, from a batch and the stored snapshots, which reports
//! count, what the snapshots become and how the aggregates move; `write`,
//! `forget` and `prune` ask the database what the planner needs and write
//! what it planned, all through `backend`, the only module that tells
//! SQLite from PostgreSQL. `statements` holds the hand-written upserts,
//! `rows` the rows they write, `durability` when commits are on disk.
//!
//! Functions take a [`DbConn`](crate::db::DbConn) and return
//! `diesel::QueryResult`.

#[macro_use]
mod backend;
mod durability;
mod forget;
pub mod plan;
mod prune;
mod pseudonyms;
pub mod releases;
mod rows;
mod settings;
mod statements;
mod write;

use diesel::QueryResult;

pub use backend::{is_busy, is_retryable};
pub use durability::{check_storage, checkpoint, CommitSync, SyncError};
pub use forget::forget_instance;
pub use plan::{bucket_of, DedupeWindow, DEFAULT_DEDUPE_DAYS, ROW_KEYS};
pub use prune::{prune, PruneStats};
pub use pseudonyms::{count_pseudonyms, has_pseudonyms, replace_secret, scrub_deleted, Pseudonyms};
pub use settings::{
    delete_setting, get_or_insert_setting, get_setting, has_reports, ping, set_setting,
    ERASURES_SETTING, FINGERPRINT_SETTING, SECRET_SETTING, SYNTHETIC_SETTING,
};
pub use write::{write_batch, write_batch_and_forget, write_batch_unsynced};

/// What happened to one report of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and counted.
    Accepted,
    /// Its `report_id` was already stored in the dedupe window: not counted again.
    Duplicate,
}

/// Attempts in all that erasures and retention give a transaction that
/// lost a race with a concurrent writer.
const ATTEMPTS: u32 = 3;

/// Runs `f` again, up to `attempts` times in all, while it fails with an
/// error [`is_retryable`] says is a lost race with another writer: the
/// writer, erasures and retention retry their transactions alike.
pub fn retry_conflicts<T>(attempts: u32, mut f: impl FnMut() -> QueryResult<T>) -> QueryResult<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if is_retryable(&e) && attempt < attempts => {
                tracing::debug!(error = %e, attempt, "retrying a transaction after a conflict");
                attempt += 1;
            }
            other => return other,
        }
    }
}
