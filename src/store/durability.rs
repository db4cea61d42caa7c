//! When commits are on disk: flushing the commits of
//! [`super::write_batch_unsynced`] later ([`CommitSync`]), checkpoints, and
//! checking the storage again after it failed ([`check_storage`]).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::QueryResult;

use super::backend::{self, Storage};
use crate::db::{DbConn, Fault, Faults};

/// Makes the commits of [`super::write_batch_unsynced`] durable, one flush
/// for all the batches committed before it was called.
#[derive(Debug, Clone)]
pub enum CommitSync {
    /// SQLite: flush the write-ahead log file (`fdatasync`), as a commit
    /// with `synchronous = FULL` does.
    SqliteWal(std::path::PathBuf),
    /// PostgreSQL: commit, with `synchronous_commit = on`, a transaction of
    /// its own that writes a WAL record; its commit record comes after every
    /// earlier commit in the WAL, and the server flushes the WAL up to it
    /// before answering.
    Postgres,
}

/// Why [`CommitSync::sync`] or [`check_storage`] could not confirm that
/// commits are on disk.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot flush the write-ahead log: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Database(#[from] DieselError),
    #[error("the database failed its check: {0}")]
    Damaged(String),
}

impl SyncError {
    /// Whether the storage itself failed (an I/O error), rather than the
    /// connection to it.
    pub fn is_io(&self) -> bool {
        match self {
            SyncError::Io(_) | SyncError::Damaged(_) => true,
            SyncError::Database(e) => crate::db::is_io_error(e),
        }
    }
}

impl CommitSync {
    /// How commits on this database are made durable later, or `None` when
    /// they cannot be (an SQLite database without a file, or not in WAL
    /// mode): the writer then uses [`super::write_batch`].
    pub fn of(conn: &mut DbConn) -> QueryResult<Option<CommitSync>> {
        Ok(match backend::storage(conn)? {
            Storage::Postgres => Some(CommitSync::Postgres),
            Storage::Sqlite { file, wal } => (wal && !file.is_empty())
                .then(|| CommitSync::SqliteWal(format!("{file}-wal").into())),
        })
    }

    /// Returns once every batch committed before the call is on disk. On
    /// PostgreSQL it takes a connection from `pool`, waiting at most `wait`.
    ///
    /// Success says nothing of commits that an earlier failure of the
    /// storage may have lost: after any failed flush or checkpoint, the
    /// caller reopens the database ([`check_storage`]) before it trusts a
    /// flush again.
    pub fn sync(
        &self,
        pool: &crate::db::Pool,
        wait: std::time::Duration,
        faults: &Faults,
    ) -> Result<(), SyncError> {
        faults.check(Fault::Flush)?;
        match self {
            // Opened by name each time: SQLite may replace the file, and
            // only ever after everything in it reached the database file.
            CommitSync::SqliteWal(path) => match std::fs::OpenOptions::new().write(true).open(path)
            {
                Ok(file) => Ok(file.sync_data()?),
                // No log: every commit was checkpointed and synced.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
            CommitSync::Postgres => {
                let mut conn = pool.get_timeout(wait).map_err(|e| {
                    DieselError::DatabaseError(
                        DatabaseErrorKind::UnableToSendCommand,
                        Box::new(format!("no connection for the commit flush: {e}")),
                    )
                })?;
                Ok(backend::flush_postgres(&mut conn)?)
            }
        }
    }
}

/// Copies committed WAL pages back into the SQLite database file without
/// blocking the writer (`wal_checkpoint(PASSIVE)`), so that the writer's own
/// automatic checkpoint after a commit finds little left to copy. Returns
/// `false` on PostgreSQL, which needs nothing of the kind.
///
/// An error other than [`super::is_busy`] may mean that the checkpoint's
/// flush of the WAL failed: Linux reports a failed write-back to one flush
/// only, so the next flush of the WAL may succeed although the commits in
/// it never reached the disk. The caller must treat it as a failure of the
/// storage.
pub fn checkpoint(conn: &mut DbConn, faults: &Faults) -> QueryResult<bool> {
    backend::checkpoint(conn, faults)
}

/// Checks a connection opened after a storage failure (and after every
/// connection opened before it was closed) before the writer acknowledges
/// reports again.
///
/// SQLite: flushes the database file and the WAL (an error still pending
/// fails here), drops their pages from the kernel's cache so that what is
/// read next comes from the disk, then runs `PRAGMA quick_check` (which
/// reads every page of the database) and a checkpoint. The connection
/// opened the WAL anew: SQLite rebuilt its index from the file, so a commit
/// that did not reach the disk is not found there, and a report retried
/// after the failure is stored again instead of being taken for a
/// duplicate. `quick_check` reads the whole database: on a large one,
/// recovery takes as long as reading it.
///
/// PostgreSQL: a new connection (the caller guarantees it) and a commit
/// flush; whether a batch whose commit or flush failed was stored is then
/// decided by what the server has.
pub fn check_storage(conn: &mut DbConn, faults: &Faults) -> Result<(), SyncError> {
    faults.check(Fault::Flush)?;
    match backend::storage(conn)? {
        Storage::Sqlite { file, .. } => {
            if !file.is_empty() {
                sync_and_forget(&file)?;
                sync_and_forget(&format!("{file}-wal"))?;
            }
            let problems = backend::quick_check(conn)?;
            if !problems.is_empty() {
                return Err(SyncError::Damaged(problems.join("; ")));
            }
        }
        Storage::Postgres => backend::flush_postgres(conn)?,
    }
    checkpoint(conn, faults)?;
    Ok(())
}

/// Flushes a file, if it exists, and drops its cached pages.
fn sync_and_forget(path: &str) -> Result<(), SyncError> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => {
            f.sync_all()?;
            drop_cached_pages(&f);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Asks the kernel to forget the cached pages of a flushed file: after a
/// failed write-back, Linux may keep serving pages that never reached the
/// disk until they are evicted.
fn drop_cached_pages(file: &std::fs::File) {
    crate::os::drop_cached_pages(file);
}
