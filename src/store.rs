//! Every write and every backend difference, in one place.
//!
//! Functions take a [`DbConn`] and return `diesel::QueryResult`. Statements
//! that read the same on both backends are written once and expanded for
//! each by [`with_conn!`]; the few that differ (row locks, transaction modes)
//! match on the variant here and nowhere else.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::anonymize::{InstanceState, Record};
use crate::db::{DbConn, Fault, Faults};
use crate::schema::{
    daily_events, instance_counter_totals, instance_counters, instance_value_totals,
    instance_values, instances, seen_reports, settings,
};
use crate::validation::Event;

/// Expands one diesel statement for each backend's concrete connection.
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            DbConn::Pg($c) => $body,
            DbConn::Sqlite($c) => $body,
        }
    };
}

pub mod releases;

/// Rows per multi-row statement: well inside SQLite's 32,766 and
/// PostgreSQL's 65,535 bind parameters for our widest table (9 columns).
const CHUNK_ROWS: usize = 1000;

/// Name of the setting holding the generated pseudonymisation secret.
pub const SECRET_SETTING: &str = "pseudonym_secret";

/// Name of the setting holding a keyed fingerprint of `ANONSTATS_SECRET`
/// (never the secret), recording that the database's pseudonyms were made
/// with it.
pub const FINGERPRINT_SETTING: &str = "pseudonym_secret_fingerprint";

/// Name of the setting that marks a database holding synthetic demo data
/// (`anonstats simulate --database`); its value is the day it was first
/// written.
pub const SYNTHETIC_SETTING: &str = "synthetic_data";

/// Name of the setting counting erasure requests, stored or not. Every
/// erasure raises it, so that each one writes (and flushes) the same, and so
/// that every collector sharing the database sees that results cached
/// before it may count an erased install (see `reporting::cache`).
pub const ERASURES_SETTING: &str = "erasures";

/// What happened to one report of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and counted.
    Accepted,
    /// Its `report_id` was already stored in the dedupe window: not counted again.
    Duplicate,
}

/// Reads a setting.
pub fn get_setting(conn: &mut DbConn, name: &str) -> QueryResult<Option<String>> {
    with_conn!(conn, |c| settings::table
        .filter(settings::name.eq(name))
        .select(settings::value)
        .first::<String>(c)
        .optional())
}

/// Stores `value` under `name`, replacing what was there.
pub fn set_setting(conn: &mut DbConn, name: &str, value: &str) -> QueryResult<()> {
    with_conn!(conn, |c| diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value)))
        .on_conflict(settings::name)
        .do_update()
        .set(settings::value.eq(value))
        .execute(c))?;
    Ok(())
}

/// Stores `value` under `name` unless a value is already there, and returns
/// the stored value: collectors starting together agree on the first one.
pub fn get_or_insert_setting(conn: &mut DbConn, name: &str, value: &str) -> QueryResult<String> {
    with_conn!(conn, |c| diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value)))
        .on_conflict_do_nothing()
        .execute(c))?;
    get_setting(conn, name)?.ok_or(DieselError::NotFound)
}

/// Deletes a setting; returns whether it was there.
pub fn delete_setting(conn: &mut DbConn, name: &str) -> QueryResult<bool> {
    let n = with_conn!(conn, |c| diesel::delete(
        settings::table.filter(settings::name.eq(name))
    )
    .execute(c))?;
    Ok(n > 0)
}

/// Whether any report was ever counted (one row of `daily_events`).
pub fn has_reports(conn: &mut DbConn) -> QueryResult<bool> {
    with_conn!(conn, |c| diesel::select(diesel::dsl::exists(
        daily_events::table.select(daily_events::reports)
    ))
    .get_result::<bool>(c))
}

/// Checks that the database answers.
pub fn ping(conn: &mut DbConn) -> QueryResult<()> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute("SELECT 1")
}

/// Copies committed WAL pages back into the SQLite database file without
/// blocking the writer (`wal_checkpoint(PASSIVE)`), so that the writer's own
/// automatic checkpoint after a commit finds little left to copy. Returns
/// `false` on PostgreSQL, which needs nothing of the kind.
///
/// An error other than [`is_busy`] may mean that the checkpoint's flush of
/// the WAL failed: Linux reports a failed write-back to one flush only, so
/// the next flush of the WAL may succeed although the commits in it never
/// reached the disk. The caller must treat it as a failure of the storage.
pub fn checkpoint(conn: &mut DbConn, faults: &Faults) -> QueryResult<bool> {
    use diesel::connection::SimpleConnection;
    match conn {
        DbConn::Sqlite(c) => {
            faults.check(Fault::Checkpoint).map_err(io_error)?;
            c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
                .map(|_| true)
        }
        DbConn::Pg(_) => Ok(false),
    }
}

/// Whether a SQLite error only says that another connection held a lock
/// (`SQLITE_BUSY`, `SQLITE_LOCKED`): the operation did nothing, and can be
/// tried again.
pub fn is_busy(e: &DieselError) -> bool {
    matches!(e, DieselError::DatabaseError(_, info)
        if info.message().starts_with("database is locked")
            || info.message().starts_with("database table is locked"))
}

/// An I/O error as SQLite reports it, so that [`crate::db::is_io_error`]
/// recognises it.
fn io_error(e: std::io::Error) -> DieselError {
    DieselError::DatabaseError(
        DatabaseErrorKind::Unknown,
        Box::new(format!("disk I/O error ({e})")),
    )
}

/// Whether an error is worth retrying the whole transaction for (lost a
/// race with another collector on PostgreSQL).
pub fn is_retryable(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
    ) || matches!(e, DieselError::DatabaseError(_, info) if info.message().contains("deadlock"))
}

/// Writes a batch of anonymised records in one transaction and says, for
/// each, whether it was counted or recognised as a duplicate. Nothing of the
/// batch is visible, and no outcome is returned, unless the whole transaction
/// committed.
pub fn write_batch(conn: &mut DbConn, records: &[Record]) -> QueryResult<Vec<Outcome>> {
    write_batch_and_forget(conn, records, &[])
}

/// Writes a batch like [`write_batch`] and, in the same transaction after
/// it, forgets the installs whose pseudonyms are in `erasures`, each as
/// [`forget_instance`] does. The outcomes hold one entry per record, then
/// one ([`Outcome::Accepted`]) per erasure, found or not.
pub fn write_batch_and_forget(
    conn: &mut DbConn,
    records: &[Record],
    erasures: &[[u8; 32]],
) -> QueryResult<Vec<Outcome>> {
    match conn {
        // IMMEDIATE takes the write lock up front: no upgrade deadlock with a
        // concurrent reader-turned-writer (e.g. `anonstats prune`).
        DbConn::Sqlite(c) => c.immediate_transaction(|c| {
            let mut conn = BatchConn::Sqlite(c);
            write_and_forget_in(&mut conn, records, erasures)
        }),
        DbConn::Pg(c) => c.transaction(|c| {
            let mut conn = BatchConn::Pg(c);
            write_and_forget_in(&mut conn, records, erasures)
        }),
    }
}

fn write_and_forget_in(
    conn: &mut BatchConn<'_>,
    records: &[Record],
    erasures: &[[u8; 32]],
) -> QueryResult<Vec<Outcome>> {
    let mut outcomes = if records.is_empty() {
        Vec::new()
    } else {
        write_batch_in(conn, records)?
    };
    for hash in erasures {
        // Whether anything was found is deliberately dropped here.
        forget_instance_in(conn, hash.to_vec())?;
        outcomes.push(Outcome::Accepted);
    }
    Ok(outcomes)
}

/// Writes a batch like [`write_batch_and_forget`], but returns as soon as it
/// is committed, before the commit is known to be on disk; the caller must
/// run [`CommitSync::sync`] before it tells anyone the reports are stored.
///
/// This lets the writer prepare and commit the next batch while the disk
/// flushes the previous one, instead of waiting for every flush in turn.
/// Other connections may read the batch before it is durable; if the
/// machine fails before the sync, the batch is lost, but nothing was
/// acknowledged, and the clients send the same reports again.
pub fn write_batch_unsynced(
    conn: &mut DbConn,
    records: &[Record],
    erasures: &[[u8; 32]],
) -> QueryResult<Vec<Outcome>> {
    use diesel::connection::SimpleConnection;
    match conn {
        DbConn::Sqlite(c) => {
            // In WAL mode NORMAL writes the commit to the WAL without
            // flushing it; every other use of the connection keeps FULL.
            c.batch_execute("PRAGMA synchronous = NORMAL")?;
            let result = c.immediate_transaction(|c| {
                let mut conn = BatchConn::Sqlite(c);
                write_and_forget_in(&mut conn, records, erasures)
            });
            c.batch_execute("PRAGMA synchronous = FULL")?;
            result
        }
        DbConn::Pg(c) => c.transaction(|c| {
            // For this transaction only: the commit does not wait for the
            // WAL flush, which the next synchronous commit performs.
            c.batch_execute("SET LOCAL synchronous_commit = off")?;
            let mut conn = BatchConn::Pg(c);
            write_and_forget_in(&mut conn, records, erasures)
        }),
    }
}

/// Makes the commits of [`write_batch_unsynced`] durable, one flush for all
/// the batches committed before it was called.
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

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// The file of SQLite's main database (empty for an in-memory one).
fn sqlite_main_file(c: &mut SqliteConnection) -> QueryResult<String> {
    diesel::sql_query("SELECT file AS value FROM pragma_database_list WHERE name = 'main'")
        .get_result::<TextValue>(c)
        .map(|t| t.value)
}

impl CommitSync {
    /// How commits on this database are made durable later, or `None` when
    /// they cannot be (an SQLite database without a file, or not in WAL
    /// mode): the writer then uses [`write_batch`].
    pub fn of(conn: &mut DbConn) -> QueryResult<Option<CommitSync>> {
        match conn {
            DbConn::Pg(_) => Ok(Some(CommitSync::Postgres)),
            DbConn::Sqlite(c) => {
                let mode =
                    diesel::sql_query("SELECT journal_mode AS value FROM pragma_journal_mode")
                        .get_result::<TextValue>(c)?;
                let file = sqlite_main_file(c)?;
                Ok((mode.value.eq_ignore_ascii_case("wal") && !file.is_empty())
                    .then(|| CommitSync::SqliteWal(format!("{file}-wal").into())))
            }
        }
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
            CommitSync::SqliteWal(path) => {
                // Opened by name each time: SQLite may replace the file, and
                // only ever after everything in it reached the database file.
                match std::fs::OpenOptions::new().write(true).open(path) {
                    Ok(file) => file.sync_data()?,
                    // No log: every commit was checkpointed and synced.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            }
            CommitSync::Postgres => {
                let mut conn = pool.get_timeout(wait).map_err(|e| {
                    DieselError::DatabaseError(
                        DatabaseErrorKind::UnableToSendCommand,
                        Box::new(format!("no connection for the commit flush: {e}")),
                    )
                })?;
                if let DbConn::Pg(c) = &mut *conn {
                    flush_postgres(c)?;
                }
                Ok(())
            }
        }
    }
}

/// Commits a transaction that writes a WAL record, with `synchronous_commit
/// = on`: the server answers once its WAL is flushed up to it.
fn flush_postgres(c: &mut PgConnection) -> QueryResult<()> {
    // A transaction that writes no WAL of its own commits without a flush,
    // even with a transaction id: this one writes a tiny record (a logical
    // message, callable by any role, ignored unless a logical decoding
    // consumer asks for the prefix). One statement, one round trip.
    diesel::sql_query("SELECT pg_logical_emit_message(true, 'anonstats', '')")
        .execute(c)
        .map(|_| ())
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
    match conn {
        DbConn::Sqlite(c) => {
            let file = sqlite_main_file(c)?;
            if !file.is_empty() {
                for path in [file.clone(), format!("{file}-wal")] {
                    match std::fs::OpenOptions::new().write(true).open(&path) {
                        Ok(f) => {
                            f.sync_all()?;
                            drop_cached_pages(&f);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            #[derive(QueryableByName)]
            struct Check {
                #[diesel(sql_type = diesel::sql_types::Text)]
                quick_check: String,
            }
            let found: Vec<Check> = diesel::sql_query("PRAGMA quick_check").load(c)?;
            let problems: Vec<String> = found
                .into_iter()
                .map(|r| r.quick_check)
                .filter(|r| r != "ok")
                .collect();
            if !problems.is_empty() {
                return Err(SyncError::Damaged(problems.join("; ")));
            }
        }
        DbConn::Pg(c) => flush_postgres(c)?,
    }
    checkpoint(conn, faults)?;
    Ok(())
}

/// Asks the kernel to forget the cached pages of a flushed file: after a
/// failed write-back, Linux may keep serving pages that never reached the
/// disk until they are evicted.
fn drop_cached_pages(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: the descriptor is open for the whole call; no memory is
        // passed.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// The connection inside a batch transaction.
enum BatchConn<'a> {
    Pg(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// The batch statements written out as fixed SQL with a static query id, so
/// that diesel prepares each once per connection instead of for every use.
/// Diesel's query builder marks every `ON CONFLICT .. DO UPDATE` as not
/// cacheable, which made SQLite parse and plan the statement again for
/// every row (over 40% of the collector's instructions under load), and a
/// multi-row `VALUES` list is a new statement for PostgreSQL whenever the
/// row count changes (see docs/performance.md).
///
/// The same SQL serves both backends, one row at a time on SQLite
/// ([`Upsert`]), and on PostgreSQL the whole set at once with one array per
/// column (`INSERT .. SELECT * FROM unnest($1, $2, ..)`, [`Bulk`]).
mod statements {
    use std::marker::PhantomData;

    use chrono::NaiveDate;
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::serialize::ToSql;
    use diesel::sql_types::{Array, BigInt, Binary, Date, HasSqlType, Nullable, Text};
    use diesel::sqlite::Sqlite;
    use diesel::{PgConnection, QueryResult, RunQueryDsl, SqliteConnection};

    use super::{
        CounterRow, CounterTotalRow, EventRow, InstanceRow, ReportKey, ValueRow, ValueTotalRow,
    };

    /// A row with its statement: `INTO`, the values, then `CONFLICT`.
    pub(super) trait Row {
        /// `INSERT INTO table (columns)`.
        const INTO: &'static str;
        /// The `ON CONFLICT` clause.
        const CONFLICT: &'static str;
        /// The key returned by PostgreSQL for rows actually inserted, when
        /// the statement only inserts new rows.
        const RETURNING: Option<&'static str> = None;
        /// Identifies the statement in diesel's cache.
        type Id: 'static;
        /// Binds this row's values (SQLite).
        fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()>;
    }

    /// Rows turned into one array per column, in the order of `Row::INTO`.
    pub(super) trait Columns: Sized {
        fn columns(rows: &[Self]) -> Vec<Column<'_>>;
    }

    /// One column of a set of rows, bound as a PostgreSQL array.
    pub(super) enum Column<'a> {
        Bytes(Vec<&'a [u8]>),
        Text(Vec<&'a str>),
        Date(Vec<NaiveDate>),
        OptDate(Vec<Option<NaiveDate>>),
        BigInt(Vec<i64>),
    }

    /// Pushes bound values separated by commas.
    pub(super) struct Values<'p, 'a, 'b> {
        out: &'p mut AstPass<'a, 'b, Sqlite>,
        first: bool,
    }

    impl<'b> Values<'_, '_, 'b> {
        fn push<T, U>(&mut self, value: &'b U) -> QueryResult<&mut Self>
        where
            Sqlite: HasSqlType<T>,
            U: ToSql<T, Sqlite> + ?Sized,
        {
            if !std::mem::take(&mut self.first) {
                self.out.push_sql(", ");
            }
            self.out.push_bind_param::<T, U>(value)?;
            Ok(self)
        }
    }

    /// The statement for one row (SQLite).
    pub(super) struct Upsert<'a, R>(pub &'a R);

    impl<R: Row> QueryId for Upsert<'_, R> {
        type QueryId = R::Id;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl<R: Row> QueryFragment<Sqlite> for Upsert<'_, R> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
            out.push_sql(R::INTO);
            out.push_sql(" VALUES (");
            self.0.bind(&mut Values {
                out: &mut out,
                first: true,
            })?;
            out.push_sql(") ");
            out.push_sql(R::CONFLICT);
            Ok(())
        }
    }

    impl<R> RunQueryDsl<SqliteConnection> for Upsert<'_, R> {}

    /// The statement for a set of rows (PostgreSQL).
    pub(super) struct Bulk<'a, R> {
        columns: Vec<Column<'a>>,
        row: PhantomData<R>,
    }

    impl<'a, R: Row> Bulk<'a, R> {
        pub(super) fn new(columns: Vec<Column<'a>>) -> Self {
            Bulk {
                columns,
                row: PhantomData,
            }
        }
    }

    impl<R: Row> QueryId for Bulk<'_, R> {
        type QueryId = R::Id;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    /// Only loaded from when `R::RETURNING` names the key column.
    impl<R: Row> Query for Bulk<'_, R> {
        type SqlType = Binary;
    }

    impl<R: Row> QueryFragment<Pg> for Bulk<'_, R> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            out.push_sql(R::INTO);
            out.push_sql(" SELECT * FROM unnest(");
            for (i, column) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.push_sql(", ");
                }
                match column {
                    Column::Bytes(v) => out.push_bind_param::<Array<Binary>, _>(v)?,
                    Column::Text(v) => out.push_bind_param::<Array<Text>, _>(v)?,
                    Column::Date(v) => out.push_bind_param::<Array<Date>, _>(v)?,
                    Column::OptDate(v) => out.push_bind_param::<Array<Nullable<Date>>, _>(v)?,
                    Column::BigInt(v) => out.push_bind_param::<Array<BigInt>, _>(v)?,
                }
            }
            out.push_sql(") ");
            out.push_sql(R::CONFLICT);
            if let Some(key) = R::RETURNING {
                out.push_sql(" RETURNING ");
                out.push_sql(key);
            }
            Ok(())
        }
    }

    impl<R> RunQueryDsl<PgConnection> for Bulk<'_, R> {}

    /// A row inserted only if its key is new (`ON CONFLICT DO NOTHING`).
    pub(super) struct New<'a, R>(pub &'a R);

    /// Implements [`Row`] and [`Columns`] for a row type from one list of
    /// its fields, named as their columns, so that the statement's column
    /// list, the values bound on SQLite and the arrays bound on PostgreSQL
    /// cannot disagree on the order.
    macro_rules! statement {
        ($row:ty, $id:ty, $table:literal, [$($field:ident: $kind:ident),+], $conflict:literal) => {
            impl Row for $row {
                const INTO: &'static str =
                    concat!("INSERT INTO ", $table, " (", stringify!($($field),+), ")");
                const CONFLICT: &'static str = $conflict;
                type Id = $id;
                fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
                    $(statement!(@bind out, self.$field, $kind);)+
                    Ok(())
                }
            }

            impl Columns for $row {
                fn columns(rows: &[Self]) -> Vec<Column<'_>> {
                    vec![$(statement!(@column rows, $field, $kind)),+]
                }
            }
        };
        (@bind $out:ident, $value:expr, Bytes) => {
            $out.push::<Binary, [u8]>(AsRef::<[u8]>::as_ref(&$value))?;
        };
        (@bind $out:ident, $value:expr, Text) => {
            $out.push::<Text, str>(AsRef::<str>::as_ref(&$value))?;
        };
        (@bind $out:ident, $value:expr, Date) => {
            $out.push::<Date, _>(&$value)?;
        };
        (@bind $out:ident, $value:expr, OptDate) => {
            $out.push::<Nullable<Date>, _>(&$value)?;
        };
        (@bind $out:ident, $value:expr, BigInt) => {
            $out.push::<BigInt, _>(&$value)?;
        };
        (@column $rows:ident, $field:ident, Bytes) => {
            Column::Bytes($rows.iter().map(|r| AsRef::<[u8]>::as_ref(&r.$field)).collect())
        };
        (@column $rows:ident, $field:ident, Text) => {
            Column::Text($rows.iter().map(|r| AsRef::<str>::as_ref(&r.$field)).collect())
        };
        (@column $rows:ident, $field:ident, Date) => {
            Column::Date($rows.iter().map(|r| r.$field).collect())
        };
        (@column $rows:ident, $field:ident, OptDate) => {
            Column::OptDate($rows.iter().map(|r| r.$field).collect())
        };
        (@column $rows:ident, $field:ident, BigInt) => {
            Column::BigInt($rows.iter().map(|r| r.$field).collect())
        };
    }

    statement!(
        InstanceRow,
        InstanceRow,
        "instances",
        [instance_hash: Bytes, product: Text, version: Text, first_seen: Date, last_seen: Date, state: Text,
         upgraded_from: Text, upgraded_to: Text, upgraded_on: OptDate],
        "ON CONFLICT (instance_hash) DO UPDATE SET \
         version = excluded.version, last_seen = excluded.last_seen, state = excluded.state, \
         upgraded_from = excluded.upgraded_from, upgraded_to = excluded.upgraded_to, \
         upgraded_on = excluded.upgraded_on"
    );

    statement!(
        EventRow<'_>,
        EventRow<'static>,
        "daily_events",
        [day: Date, product: Text, event: Text, version: Text, previous_version: Text, edition: Text, reports: BigInt],
        "ON CONFLICT (day, product, event, version, previous_version, edition) \
         DO UPDATE SET reports = daily_events.reports + excluded.reports"
    );

    statement!(
        ValueRow<'_>,
        ValueRow<'static>,
        "instance_values",
        [product: Text, last_seen: Date, kind: Text, name: Text, value: Text, instances: BigInt],
        "ON CONFLICT (product, last_seen, kind, name, value) \
         DO UPDATE SET instances = instance_values.instances + excluded.instances"
    );

    statement!(
        CounterRow<'_>,
        CounterRow<'static>,
        "instance_counters",
        [product: Text, last_seen: Date, counter: Text, bucket: BigInt, instances: BigInt, total: BigInt],
        "ON CONFLICT (product, last_seen, counter, bucket) DO UPDATE SET \
         instances = instance_counters.instances + excluded.instances, \
         total = instance_counters.total + excluded.total"
    );

    statement!(
        ValueTotalRow<'_>,
        ValueTotalRow<'static>,
        "instance_value_totals",
        [product: Text, kind: Text, name: Text, value: Text, instances: BigInt],
        "ON CONFLICT (product, kind, name, value) \
         DO UPDATE SET instances = instance_value_totals.instances + excluded.instances"
    );

    statement!(
        CounterTotalRow<'_>,
        CounterTotalRow<'static>,
        "instance_counter_totals",
        [product: Text, counter: Text, bucket: BigInt, instances: BigInt, total: BigInt],
        "ON CONFLICT (product, counter, bucket) DO UPDATE SET \
         instances = instance_counter_totals.instances + excluded.instances, \
         total = instance_counter_totals.total + excluded.total"
    );

    impl Row for New<'_, InstanceRow> {
        const INTO: &'static str = <InstanceRow as Row>::INTO;
        const CONFLICT: &'static str = "ON CONFLICT DO NOTHING";
        const RETURNING: Option<&'static str> = Some("instance_hash");
        type Id = New<'static, InstanceRow>;
        fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
            self.0.bind(out)
        }
    }

    impl Row for New<'_, ReportKey> {
        const INTO: &'static str = "INSERT INTO seen_reports (report_hash, day)";
        const CONFLICT: &'static str = "ON CONFLICT DO NOTHING";
        const RETURNING: Option<&'static str> = Some("report_hash");
        type Id = New<'static, ReportKey>;
        fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
            out.push::<Binary, _>(&self.0 .0)?
                .push::<Date, _>(&self.0 .1)?;
            Ok(())
        }
    }

    impl Columns for ReportKey {
        fn columns(rows: &[Self]) -> Vec<Column<'_>> {
            vec![
                Column::Bytes(rows.iter().map(|r| r.0.as_slice()).collect()),
                Column::Date(rows.iter().map(|r| r.1).collect()),
            ]
        }
    }
}

/// Runs the upsert of `rows`: once for the whole set on PostgreSQL, once per
/// row on SQLite (whose diesel backend has no multi-row upsert; inside one
/// transaction, with the statement kept prepared, that costs microseconds
/// per row).
fn upsert<R: statements::Row + statements::Columns>(
    conn: &mut BatchConn<'_>,
    rows: &[R],
) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        BatchConn::Pg(c) => {
            statements::Bulk::<R>::new(R::columns(rows)).execute(&mut **c)?;
        }
        BatchConn::Sqlite(c) => {
            for row in rows {
                statements::Upsert(row).execute(&mut **c)?;
            }
        }
    }
    Ok(())
}

/// Inserts the rows whose key is not stored yet and returns the keys it
/// inserted, so that concurrent collectors agree on which copy counts:
/// `RETURNING key` on PostgreSQL; on SQLite, one row changed means inserted.
fn insert_new<R>(
    conn: &mut BatchConn<'_>,
    rows: &[R],
    key: impl Fn(&R) -> &[u8],
) -> QueryResult<HashSet<Vec<u8>>>
where
    R: statements::Columns + 'static,
    for<'a> statements::New<'a, R>: statements::Row,
{
    let mut inserted = HashSet::new();
    if rows.is_empty() {
        return Ok(inserted);
    }
    match conn {
        BatchConn::Pg(c) => {
            let keys = statements::Bulk::<statements::New<'static, R>>::new(R::columns(rows))
                .load::<Vec<u8>>(&mut **c)?;
            inserted.extend(keys);
        }
        BatchConn::Sqlite(c) => {
            for row in rows {
                if statements::Upsert(&statements::New(row)).execute(&mut **c)? == 1 {
                    inserted.insert(key(row).to_vec());
                }
            }
        }
    }
    Ok(inserted)
}

/// An instance row as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = instances)]
struct InstanceRow {
    instance_hash: Vec<u8>,
    product: String,
    version: String,
    first_seen: NaiveDate,
    last_seen: NaiveDate,
    state: String,
    /// The install's latest update: from, to ('' when none), and its day.
    upgraded_from: String,
    upgraded_to: String,
    upgraded_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = daily_events)]
struct EventRow<'a> {
    day: NaiveDate,
    product: &'a str,
    event: &'a str,
    version: &'a str,
    previous_version: &'a str,
    edition: &'a str,
    reports: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_values)]
struct ValueRow<'a> {
    product: &'a str,
    last_seen: NaiveDate,
    kind: &'a str,
    name: &'a str,
    value: &'a str,
    instances: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_counters)]
struct CounterRow<'a> {
    product: &'a str,
    last_seen: NaiveDate,
    counter: &'a str,
    bucket: i64,
    instances: i64,
    total: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_value_totals)]
struct ValueTotalRow<'a> {
    product: &'a str,
    kind: &'a str,
    name: &'a str,
    value: &'a str,
    instances: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_counter_totals)]
struct CounterTotalRow<'a> {
    product: &'a str,
    counter: &'a str,
    bucket: i64,
    instances: i64,
    total: i64,
}

/// Key of a daily event count.
type EventKey = (NaiveDate, String, Event, String, String, String);
/// Key of an instance value aggregate: product, day, kind, name, value.
type ValueKey = (String, NaiveDate, &'static str, String, String);
/// Key of a counter aggregate: product, day, counter, bucket.
type CounterKey = (String, NaiveDate, String, i64);

/// The latest known state of an instance during a batch.
#[derive(Debug, Clone)]
struct Snapshot {
    product: String,
    version: String,
    last_seen: NaiveDate,
    state: InstanceState,
}

fn write_batch_in(conn: &mut BatchConn<'_>, records: &[Record]) -> QueryResult<Vec<Outcome>> {
    let mut outcomes = vec![Outcome::Accepted; records.len()];

    // 1. Dedupe: first within the batch, then against stored keys. The insert
    // returns only the keys it added, so concurrent collectors agree on which
    // copy counts.
    let mut batch_keys: HashSet<[u8; 32]> = HashSet::new();
    let mut new_keys: Vec<(Vec<u8>, NaiveDate)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(h) = r.report_hash {
            if !batch_keys.insert(h) {
                outcomes[i] = Outcome::Duplicate;
            } else {
                new_keys.push((h.to_vec(), r.day));
            }
        }
    }
    if !new_keys.is_empty() {
        new_keys.sort();
        let inserted = insert_report_keys(conn, &new_keys)?;
        for (i, r) in records.iter().enumerate() {
            if let (Some(h), Outcome::Accepted) = (r.report_hash, outcomes[i]) {
                if !inserted.contains(h.as_slice()) {
                    outcomes[i] = Outcome::Duplicate;
                }
            }
        }
    }
    let accepted: Vec<&Record> = records
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == Outcome::Accepted)
        .map(|(r, _)| r)
        .collect();

    // 2. Final state per instance (the last report of the batch wins) and the
    // day it was first seen in this batch.
    let mut finals: BTreeMap<[u8; 32], (&Record, NaiveDate)> = BTreeMap::new();
    for r in &accepted {
        if let Some(inst) = &r.instance {
            finals
                .entry(inst.hash)
                .and_modify(|e| e.0 = r)
                .or_insert((r, r.day));
        }
    }
    let final_rows: Vec<InstanceRow> = finals
        .iter()
        .map(|(hash, (r, first))| InstanceRow {
            instance_hash: hash.to_vec(),
            product: r.product.clone(),
            version: r.version.clone(),
            first_seen: *first,
            last_seen: r.day,
            state: serde_json::to_string(&r.instance.as_ref().expect("has instance").state)
                .expect("state serialises"),
            upgraded_from: String::new(),
            upgraded_to: String::new(),
            upgraded_on: None,
        })
        .collect();

    // 3. Insert instances not yet known; the ones that were already there
    // are then read (and locked on PostgreSQL) to compute the change.
    let mut created = insert_new_instances(conn, &final_rows)?;
    let existing: Vec<Vec<u8>> = final_rows
        .iter()
        .map(|r| r.instance_hash.clone())
        .filter(|h| !created.contains(h))
        .collect();
    let mut stored: HashMap<Vec<u8>, InstanceRow> = load_instances(conn, &existing)?
        .into_iter()
        .map(|r| (r.instance_hash.clone(), r))
        .collect();
    // A retention run on another connection may have deleted an instance
    // between the insert and the read: it is new again.
    let vanished: Vec<InstanceRow> = final_rows
        .iter()
        .filter(|r| !created.contains(&r.instance_hash) && !stored.contains_key(&r.instance_hash))
        .cloned()
        .collect();
    if !vanished.is_empty() {
        created.extend(insert_new_instances(conn, &vanished)?);
        let still: Vec<Vec<u8>> = vanished
            .iter()
            .map(|r| r.instance_hash.clone())
            .filter(|h| !created.contains(h))
            .collect();
        stored.extend(
            load_instances(conn, &still)?
                .into_iter()
                .map(|r| (r.instance_hash.clone(), r)),
        );
    }

    // 4. Walk the reports in order to classify events (legacy reports say
    // "install" even after an update) and count them per day. Each
    // install's latest update is kept for its snapshot: the releases count
    // one update per install, however many update reports it sent.
    let mut running: HashMap<[u8; 32], String> = stored
        .iter()
        .map(|(h, r)| (to_key(h), r.version.clone()))
        .collect();
    let mut events: BTreeMap<EventKey, i64> = BTreeMap::new();
    let mut upgrades: HashMap<[u8; 32], (String, String, NaiveDate)> = HashMap::new();
    for r in &accepted {
        let (mut event, mut previous) = (r.event, r.previous_version.clone());
        if let Some(inst) = &r.instance {
            if r.infer_update {
                if let Some(v) = running.get(&inst.hash) {
                    if *v != r.version {
                        event = Event::Update;
                        previous = Some(v.clone());
                    }
                }
            }
            running.insert(inst.hash, r.version.clone());
            if event == Event::Update {
                let from = previous.clone().unwrap_or_default();
                upgrades.insert(inst.hash, (from, r.version.clone(), r.day));
            }
        }
        let key = (
            r.day,
            r.product.clone(),
            event,
            r.version.clone(),
            previous.unwrap_or_default(),
            r.edition.clone().unwrap_or_default(),
        );
        *events.entry(key).or_default() += 1;
    }
    upsert_events(conn, &events)?;

    // 5. Replace the snapshots of known instances, and of new ones that
    // updated in this batch (inserted above before their events were
    // classified). An install that did not update now keeps its last one.
    let updated: Vec<InstanceRow> = final_rows
        .iter()
        .filter_map(|r| {
            let old = stored.get(&r.instance_hash);
            let upgrade = upgrades.get(&to_key(&r.instance_hash)).cloned();
            let (upgraded_from, upgraded_to, upgraded_on) = match (upgrade, old) {
                (Some((from, to, day)), _) => (from, to, Some(day)),
                (None, Some(o)) => (
                    o.upgraded_from.clone(),
                    o.upgraded_to.clone(),
                    o.upgraded_on,
                ),
                (None, None) => return None,
            };
            Some(InstanceRow {
                first_seen: old.map_or(r.first_seen, |o| o.first_seen),
                upgraded_from,
                upgraded_to,
                upgraded_on,
                ..r.clone()
            })
        })
        .collect();
    update_instances(conn, &updated)?;

    // 6. Move each instance's contribution in the aggregates from its old
    // snapshot to its new one.
    let mut values: BTreeMap<ValueKey, i64> = BTreeMap::new();
    let mut counters: BTreeMap<CounterKey, (i64, i64)> = BTreeMap::new();
    for row in &final_rows {
        if let Some(old) = stored.get(&row.instance_hash) {
            let old_state = serde_json::from_str(&old.state).unwrap_or_default();
            contribute(
                &Snapshot {
                    product: old.product.clone(),
                    version: old.version.clone(),
                    last_seen: old.last_seen,
                    state: old_state,
                },
                -1,
                &mut values,
                &mut counters,
            );
        }
        let (r, _) = finals[&to_key(&row.instance_hash)];
        let state = &r.instance.as_ref().expect("has instance").state;
        contribute(
            &Snapshot {
                product: row.product.clone(),
                version: row.version.clone(),
                last_seen: row.last_seen,
                state: state.clone(),
            },
            1,
            &mut values,
            &mut counters,
        );
    }
    values.retain(|_, d| *d != 0);
    counters.retain(|_, (n, t)| *n != 0 || *t != 0);
    apply_value_deltas(conn, &values, Zeros::Skip)?;
    apply_counter_deltas(conn, &counters, Zeros::Skip)?;

    Ok(outcomes)
}

fn to_key(h: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(h);
    k
}

/// Adds `sign` times a snapshot's contribution to the aggregate deltas.
fn contribute(
    s: &Snapshot,
    sign: i64,
    values: &mut BTreeMap<ValueKey, i64>,
    counters: &mut BTreeMap<CounterKey, (i64, i64)>,
) {
    let mut add = |kind: &'static str, name: &str, value: &str| {
        *values
            .entry((
                s.product.clone(),
                s.last_seen,
                kind,
                name.to_owned(),
                value.to_owned(),
            ))
            .or_default() += sign;
    };
    add("version", "", &s.version);
    for (name, value) in &s.state.attributes {
        add("attribute", name, value);
    }
    for (name, on) in &s.state.features {
        add("feature", name, if *on { "true" } else { "false" });
    }
    for (name, n) in &s.state.counters {
        let e = counters
            .entry((s.product.clone(), s.last_seen, name.clone(), bucket_of(*n)))
            .or_default();
        e.0 += sign;
        e.1 += sign * n;
    }
}

/// Lower bound of the fine bucket a counter value is aggregated in: exact
/// below 100, then two significant digits (at most 10% wide), so that
/// percentiles are close and every coarse histogram bound (a power of ten
/// times 1, 2.5 or 5) falls on a bucket bound.
pub fn bucket_of(n: i64) -> i64 {
    if n < 100 {
        return n.max(0);
    }
    let mut scale = 1;
    while n / scale >= 100 {
        scale *= 10;
    }
    n / scale * scale
}

/// A dedupe key: the keyed hash of a `report_id` and the day it arrived.
type ReportKey = (Vec<u8>, NaiveDate);

fn insert_report_keys(
    conn: &mut BatchConn<'_>,
    keys: &[ReportKey],
) -> QueryResult<HashSet<Vec<u8>>> {
    insert_new(conn, keys, |k| &k.0)
}

fn insert_new_instances(
    conn: &mut BatchConn<'_>,
    rows: &[InstanceRow],
) -> QueryResult<HashSet<Vec<u8>>> {
    insert_new(conn, rows, |r| &r.instance_hash)
}

fn load_instances(conn: &mut BatchConn<'_>, hashes: &[Vec<u8>]) -> QueryResult<Vec<InstanceRow>> {
    let mut out = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(CHUNK_ROWS) {
        let query = instances::table
            .filter(instances::instance_hash.eq_any(chunk))
            .order(instances::instance_hash);
        let rows = match conn {
            // Two collectors updating one instance must not both read the old
            // snapshot: the second waits for the first to commit.
            BatchConn::Pg(c) => query
                .select(InstanceRow::as_select())
                .for_update()
                .load(&mut **c)?,
            // SQLite transactions hold the database write lock already.
            BatchConn::Sqlite(c) => query.select(InstanceRow::as_select()).load(&mut **c)?,
        };
        out.extend(rows);
    }
    Ok(out)
}

fn update_instances(conn: &mut BatchConn<'_>, rows: &[InstanceRow]) -> QueryResult<()> {
    upsert(conn, rows)
}

fn upsert_events(conn: &mut BatchConn<'_>, events: &BTreeMap<EventKey, i64>) -> QueryResult<()> {
    let rows: Vec<EventRow<'_>> = events
        .iter()
        .map(
            |((day, product, event, version, previous, edition), n)| EventRow {
                day: *day,
                product,
                event: event.as_str(),
                version,
                previous_version: previous,
                edition,
                reports: *n,
            },
        )
        .collect();
    upsert(conn, &rows)?;
    Ok(())
}

/// Whether the all-days totals whose delta came to zero are written anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zeros {
    /// Left out: they would change nothing.
    Skip,
    /// Written (adding zero): an erasure of an unknown id must do the same
    /// work as one of a stored id.
    Write,
}

fn apply_value_deltas(
    conn: &mut BatchConn<'_>,
    deltas: &BTreeMap<ValueKey, i64>,
    zeros: Zeros,
) -> QueryResult<()> {
    let rows: Vec<ValueRow<'_>> = deltas
        .iter()
        .map(|((product, day, kind, name, value), n)| ValueRow {
            product,
            last_seen: *day,
            kind,
            name,
            value,
            instances: *n,
        })
        .collect();
    upsert(conn, &rows)?;

    // The all-days totals: an instance that only moved to a later day
    // changes no total, so most of its deltas cancel out here.
    let mut totals: BTreeMap<(&str, &str, &str, &str), i64> = BTreeMap::new();
    for ((product, _, kind, name, value), n) in deltas {
        *totals.entry((product, kind, name, value)).or_default() += n;
    }
    let rows: Vec<ValueTotalRow<'_>> = totals
        .into_iter()
        .filter(|(_, n)| zeros == Zeros::Write || *n != 0)
        .map(|((product, kind, name, value), instances)| ValueTotalRow {
            product,
            kind,
            name,
            value,
            instances,
        })
        .collect();
    upsert(conn, &rows)?;
    Ok(())
}

fn apply_counter_deltas(
    conn: &mut BatchConn<'_>,
    deltas: &BTreeMap<CounterKey, (i64, i64)>,
    zeros: Zeros,
) -> QueryResult<()> {
    let rows: Vec<CounterRow<'_>> = deltas
        .iter()
        .map(|((product, day, counter, bucket), (n, total))| CounterRow {
            product,
            last_seen: *day,
            counter,
            bucket: *bucket,
            instances: *n,
            total: *total,
        })
        .collect();
    upsert(conn, &rows)?;

    let mut totals: BTreeMap<(&str, &str, i64), (i64, i64)> = BTreeMap::new();
    for ((product, _, counter, bucket), (n, total)) in deltas {
        let e = totals.entry((product, counter, *bucket)).or_default();
        e.0 += n;
        e.1 += total;
    }
    let rows: Vec<CounterTotalRow<'_>> = totals
        .into_iter()
        .filter(|(_, (n, t))| zeros == Zeros::Write || *n != 0 || *t != 0)
        .map(
            |((product, counter, bucket), (instances, total))| CounterTotalRow {
                product,
                counter,
                bucket,
                instances,
                total,
            },
        )
        .collect();
    upsert(conn, &rows)?;
    Ok(())
}

/// Erases one instance: deletes its snapshot and takes its contribution out
/// of the aggregates (`instance_values`, `instance_counters`), in one
/// transaction. Daily event counts hold no pseudonym and stay. Returns
/// whether there was anything to erase, which callers must not reveal to
/// the requester (the answer would tell whether an id ever reported).
///
/// The transaction always writes, found or not: it raises the
/// [`ERASURES_SETTING`] counter. A transaction that changes nothing commits
/// without touching the disk on both backends, so an unknown id would be
/// answered in a fraction of the time a stored one takes; with the counter
/// both pay one durable commit (SQLite `synchronous = FULL`, PostgreSQL
/// `synchronous_commit = on`), which is most of the cost.
pub fn forget_instance(conn: &mut DbConn, instance_hash: &[u8]) -> QueryResult<bool> {
    let hash = instance_hash.to_vec();
    match conn {
        // IMMEDIATE, like the writer: the read and the decrement cannot
        // interleave with a batch changing the same instance.
        DbConn::Sqlite(c) => {
            c.immediate_transaction(|c| forget_instance_in(&mut BatchConn::Sqlite(c), hash.clone()))
        }
        DbConn::Pg(c) => c.transaction(|c| forget_instance_in(&mut BatchConn::Pg(c), hash.clone())),
    }
}

/// Raises the erasure counter by one (created at 1).
fn count_erasure(conn: &mut BatchConn<'_>) -> QueryResult<()> {
    // The same SQL on both backends: settings hold text.
    let query = diesel::sql_query(format!(
        "INSERT INTO settings (name, value) VALUES ('{ERASURES_SETTING}', '1') \
         ON CONFLICT (name) DO UPDATE \
         SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)"
    ));
    match conn {
        BatchConn::Pg(c) => query.execute(&mut **c)?,
        BatchConn::Sqlite(c) => query.execute(&mut **c)?,
    };
    Ok(())
}

fn forget_instance_in(conn: &mut BatchConn<'_>, hash: Vec<u8>) -> QueryResult<bool> {
    // First, so that both paths take the same locks in the same order.
    count_erasure(conn)?;
    // Locked on PostgreSQL: a batch updating this instance finishes first,
    // and the contribution removed is the one it left.
    let found = load_instances(conn, std::slice::from_ref(&hash))?
        .into_iter()
        .next();
    let stored = found.is_some();
    // An unknown id runs the same statements on as many rows: those of
    // another install's contribution, adding zero. Without it, the unknown
    // id's erasure skips half a dozen statements and is answered in about
    // two thirds of the time (see docs/performance.md).
    let (row, sign) = match found {
        Some(row) => (row, -1),
        None => match decoy(conn, &hash)? {
            Some(row) => (row, 0),
            // Nothing stored at all: there is no id to tell apart.
            None => return Ok(false),
        },
    };
    let query = instances::table.filter(instances::instance_hash.eq(&hash));
    match conn {
        BatchConn::Pg(c) => diesel::delete(query).execute(&mut **c)?,
        BatchConn::Sqlite(c) => diesel::delete(query).execute(&mut **c)?,
    };
    let mut values: BTreeMap<ValueKey, i64> = BTreeMap::new();
    let mut counters: BTreeMap<CounterKey, (i64, i64)> = BTreeMap::new();
    contribute(
        &Snapshot {
            product: row.product,
            version: row.version,
            last_seen: row.last_seen,
            state: serde_json::from_str(&row.state).unwrap_or_default(),
        },
        sign,
        &mut values,
        &mut counters,
    );
    apply_value_deltas(conn, &values, Zeros::Write)?;
    apply_counter_deltas(conn, &counters, Zeros::Write)?;
    Ok(stored)
}

/// The stored install next to `hash` in key order (wrapping around), whose
/// aggregate rows an erasure of an unknown id updates by zero. Not locked:
/// adding zero is right whatever a concurrent batch does to them.
fn decoy(conn: &mut BatchConn<'_>, hash: &[u8]) -> QueryResult<Option<InstanceRow>> {
    let after = instances::table
        .filter(instances::instance_hash.gt(hash))
        .order(instances::instance_hash);
    let next = match conn {
        BatchConn::Pg(c) => after
            .select(InstanceRow::as_select())
            .first(&mut **c)
            .optional()?,
        BatchConn::Sqlite(c) => after
            .select(InstanceRow::as_select())
            .first(&mut **c)
            .optional()?,
    };
    if next.is_some() {
        return Ok(next);
    }
    let first = instances::table.order(instances::instance_hash);
    match conn {
        BatchConn::Pg(c) => first
            .select(InstanceRow::as_select())
            .first(&mut **c)
            .optional(),
        BatchConn::Sqlite(c) => first
            .select(InstanceRow::as_select())
            .first(&mut **c)
            .optional(),
    }
}

/// What one retention run deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneStats {
    /// Instance snapshots not seen since the cutoff.
    pub instances: u64,
    /// Dedupe keys older than the dedupe window.
    pub report_keys: u64,
    /// Aggregate rows whose counts had reached zero.
    pub aggregate_rows: u64,
}

/// Instances deleted per transaction by [`prune`], so that a large backlog
/// never holds locks for long.
const PRUNE_CHUNK: usize = 1000;

/// Retention: deletes the snapshots of instances last seen before
/// `instances_before` and takes their contribution out of the aggregates in
/// the same transaction, deletes dedupe keys of days before `keys_before`,
/// then aggregate rows whose counts are all zero. Daily event counts hold no
/// pseudonym and are kept.
pub fn prune(
    conn: &mut DbConn,
    instances_before: NaiveDate,
    keys_before: NaiveDate,
) -> QueryResult<PruneStats> {
    let mut stats = PruneStats::default();
    // Candidates are found in key order by a read that takes no write
    // lock (there is no index on `last_seen`: it would cost every report
    // that moves an instance to a new day two more random page writes),
    // then deleted in a short transaction that checks them again.
    let mut after: Vec<u8> = Vec::new();
    loop {
        let candidates: Vec<Vec<u8>> = with_conn!(&mut *conn, |c| instances::table
            .filter(instances::instance_hash.gt(&after))
            .filter(instances::last_seen.lt(instances_before))
            .order(instances::instance_hash)
            .select(instances::instance_hash)
            .limit(PRUNE_CHUNK as i64)
            .load::<Vec<u8>>(c))?;
        let Some(last) = candidates.last() else {
            break;
        };
        after = last.clone();
        let deleted = retry_conflicts(|| match &mut *conn {
            DbConn::Sqlite(c) => c.immediate_transaction(|c| {
                prune_instances(&mut BatchConn::Sqlite(c), &candidates, instances_before)
            }),
            DbConn::Pg(c) => c.transaction(|c| {
                prune_instances(&mut BatchConn::Pg(c), &candidates, instances_before)
            }),
        })?;
        stats.instances += deleted as u64;
        if candidates.len() < PRUNE_CHUNK {
            break;
        }
    }
    stats.report_keys = retry_conflicts(|| {
        with_conn!(&mut *conn, |c| diesel::delete(
            seen_reports::table.filter(seen_reports::day.lt(keys_before))
        )
        .execute(c))
    })? as u64;
    stats.aggregate_rows = retry_conflicts(|| {
        let values = with_conn!(&mut *conn, |c| diesel::delete(
            instance_values::table.filter(instance_values::instances.eq(0))
        )
        .execute(c))?;
        let counters = with_conn!(&mut *conn, |c| diesel::delete(
            instance_counters::table
                .filter(instance_counters::instances.eq(0))
                .filter(instance_counters::total.eq(0))
        )
        .execute(c))?;
        let value_totals = with_conn!(&mut *conn, |c| diesel::delete(
            instance_value_totals::table.filter(instance_value_totals::instances.eq(0))
        )
        .execute(c))?;
        let counter_totals = with_conn!(&mut *conn, |c| diesel::delete(
            instance_counter_totals::table
                .filter(instance_counter_totals::instances.eq(0))
                .filter(instance_counter_totals::total.eq(0))
        )
        .execute(c))?;
        Ok(values + counters + value_totals + counter_totals)
    })? as u64;
    Ok(stats)
}

/// Runs `f` again (up to three times in all) when it lost a race with a
/// concurrent writer.
fn retry_conflicts<T>(mut f: impl FnMut() -> QueryResult<T>) -> QueryResult<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if is_retryable(&e) && attempt < 3 => attempt += 1,
            other => return other,
        }
    }
}

/// Deletes those of `candidates` still last seen before `before`.
fn prune_instances(
    conn: &mut BatchConn<'_>,
    candidates: &[Vec<u8>],
    before: NaiveDate,
) -> QueryResult<usize> {
    let query = instances::table
        .filter(instances::instance_hash.eq_any(candidates))
        .filter(instances::last_seen.lt(before))
        .order(instances::instance_hash);
    let rows: Vec<InstanceRow> = match conn {
        // Locked so that a report arriving now either waits for the delete
        // (and finds the instance gone) or updated it first (and the row no
        // longer matches).
        BatchConn::Pg(c) => query
            .select(InstanceRow::as_select())
            .for_update()
            .load(&mut **c)?,
        BatchConn::Sqlite(c) => query.select(InstanceRow::as_select()).load(&mut **c)?,
    };
    if rows.is_empty() {
        return Ok(0);
    }
    let mut values: BTreeMap<ValueKey, i64> = BTreeMap::new();
    let mut counters: BTreeMap<CounterKey, (i64, i64)> = BTreeMap::new();
    for row in &rows {
        contribute(
            &Snapshot {
                product: row.product.clone(),
                version: row.version.clone(),
                last_seen: row.last_seen,
                state: serde_json::from_str(&row.state).unwrap_or_default(),
            },
            -1,
            &mut values,
            &mut counters,
        );
    }
    values.retain(|_, d| *d != 0);
    counters.retain(|_, (n, t)| *n != 0 || *t != 0);
    apply_value_deltas(conn, &values, Zeros::Skip)?;
    apply_counter_deltas(conn, &counters, Zeros::Skip)?;
    let hashes: Vec<Vec<u8>> = rows.into_iter().map(|r| r.instance_hash).collect();
    let mut deleted = 0;
    for chunk in hashes.chunks(CHUNK_ROWS) {
        let target = instances::table.filter(instances::instance_hash.eq_any(chunk));
        deleted += match conn {
            BatchConn::Pg(c) => diesel::delete(target).execute(&mut **c)?,
            BatchConn::Sqlite(c) => diesel::delete(target).execute(&mut **c)?,
        };
    }
    Ok(deleted)
}

/// The rows that hold pseudonyms, or aggregates that only pseudonyms keep
/// consistent: what rotating the secret deletes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pseudonyms {
    /// Instance snapshots (`instances`).
    pub instances: u64,
    /// Dedupe keys (`seen_reports`).
    pub report_keys: u64,
    /// Rows of the aggregates of instance values and counters.
    pub aggregate_rows: u64,
}

/// Whether any pseudonym is stored: an instance snapshot or a dedupe key.
pub fn has_pseudonyms(conn: &mut DbConn) -> QueryResult<bool> {
    let instances = with_conn!(&mut *conn, |c| diesel::select(diesel::dsl::exists(
        instances::table.select(instances::product)
    ))
    .get_result::<bool>(c))?;
    if instances {
        return Ok(true);
    }
    with_conn!(conn, |c| diesel::select(diesel::dsl::exists(
        seen_reports::table.select(seen_reports::day)
    ))
    .get_result::<bool>(c))
}

/// Counts what [`replace_secret`] would delete.
pub fn count_pseudonyms(conn: &mut DbConn) -> QueryResult<Pseudonyms> {
    let count = |conn: &mut DbConn, table: &str| -> QueryResult<u64> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<N>(conn)?
            .n;
        Ok(n as u64)
    };
    Ok(Pseudonyms {
        instances: count(conn, "instances")?,
        report_keys: count(conn, "seen_reports")?,
        aggregate_rows: count(conn, "instance_values")?
            + count(conn, "instance_counters")?
            + count(conn, "instance_value_totals")?
            + count(conn, "instance_counter_totals")?,
    })
}

/// Rotates the pseudonymisation secret in one transaction: deletes every
/// instance snapshot, the aggregates built from them and every dedupe key
/// (none of them could be linked to a new pseudonym), deletes the stored
/// secret and fingerprint, and stores `setting` (name, value) in their
/// place. Daily event counts hold no pseudonym and stay. Either all of it
/// happens or none.
pub fn replace_secret(conn: &mut DbConn, setting: (&str, &str)) -> QueryResult<Pseudonyms> {
    let run = |conn: &mut DbConn| -> QueryResult<Pseudonyms> {
        let mut deleted = Pseudonyms {
            instances: with_conn!(&mut *conn, |c| diesel::delete(instances::table).execute(c))?
                as u64,
            report_keys: with_conn!(&mut *conn, |c| diesel::delete(seen_reports::table)
                .execute(c))? as u64,
            aggregate_rows: 0,
        };
        deleted.aggregate_rows =
            (with_conn!(&mut *conn, |c| diesel::delete(instance_values::table)
                .execute(c))?
                + with_conn!(&mut *conn, |c| diesel::delete(instance_counters::table)
                    .execute(c))?
                + with_conn!(&mut *conn, |c| diesel::delete(instance_value_totals::table)
                    .execute(c))?
                + with_conn!(&mut *conn, |c| diesel::delete(
                    instance_counter_totals::table
                )
                .execute(c))?) as u64;
        with_conn!(&mut *conn, |c| diesel::delete(settings::table.filter(
            settings::name.eq_any([SECRET_SETTING, FINGERPRINT_SETTING])
        ))
        .execute(c))?;
        with_conn!(&mut *conn, |c| diesel::insert_into(settings::table)
            .values((settings::name.eq(setting.0), settings::value.eq(setting.1)))
            .execute(c))?;
        Ok(deleted)
    };
    // On SQLite the first statement is a write, so the transaction takes the
    // write lock at once (waiting out a writer) and cannot fail later for
    // having read an old snapshot.
    conn.transaction(run)
}

/// After [`replace_secret`]: makes the deleted rows, the old secret among
/// them, unrecoverable from the database files. SQLite leaves deleted
/// content in free pages and in the WAL: `VACUUM` rebuilds the file and a
/// truncating checkpoint empties the WAL. PostgreSQL leaves dead tuples in
/// place until they are vacuumed: `VACUUM FULL` rewrites the tables (they
/// are small or empty by then). Needs no other connection to the database.
pub fn scrub_deleted(conn: &mut DbConn) -> QueryResult<()> {
    use diesel::connection::SimpleConnection;
    match conn {
        DbConn::Sqlite(c) => c.batch_execute("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);"),
        DbConn::Pg(c) => c.batch_execute(
            "VACUUM FULL settings, instances, seen_reports, instance_values, \
             instance_counters, instance_value_totals, instance_counter_totals",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_of;

    #[test]
    fn buckets_are_exact_below_100_then_two_digits() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(99), 99);
        assert_eq!(bucket_of(100), 100);
        assert_eq!(bucket_of(109), 100);
        assert_eq!(bucket_of(110), 110);
        assert_eq!(bucket_of(2499), 2400);
        assert_eq!(bucket_of(2500), 2500);
        assert_eq!(bucket_of(123_456_789), 120_000_000);
    }
}
