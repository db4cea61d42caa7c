//! The only place in the store where SQLite and PostgreSQL differ:
//! transaction modes, row locks, how a set of rows is upserted, and the
//! few statements that exist on one backend only (checkpoints, flushes,
//! integrity checks, vacuum). Everything else is written once and
//! expanded for both by [`with_conn!`] or [`with_tx!`].

use diesel::connection::SimpleConnection;
use diesel::expression::{AppearsOnTable, Expression, ValidGrouping};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::Sqlite;

use super::rows::InstanceRow;
use super::statements::{self, Bulk, Columns, New, Row, Upsert};
use crate::db::{DbConn, Fault, Faults};
use crate::schema::instances;

/// Expands one diesel statement for each backend's concrete connection.
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            DbConn::Pg($c) => $body,
            DbConn::Sqlite($c) => $body,
        }
    };
}

/// Like [`with_conn!`], for the connection inside a transaction ([`Tx`]).
macro_rules! with_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::store::backend::Tx::Pg(conn) => {
                let $c: &mut diesel::PgConnection = &mut **conn;
                $body
            }
            $crate::store::backend::Tx::Sqlite(conn) => {
                let $c: &mut diesel::SqliteConnection = &mut **conn;
                $body
            }
        }
    };
}

/// Rows per statement with a list of keys: well inside SQLite's 32,766
/// and PostgreSQL's 65,535 bind parameters.
pub(super) const CHUNK_ROWS: usize = 1000;

/// The connection inside a write transaction.
pub(super) enum Tx<'a> {
    Pg(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// How a write transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Returns once the commit is on disk.
    Durable,
    /// Returns before the commit is known to be on disk (see
    /// [`super::write_batch_unsynced`]).
    Unsynced,
}

/// Runs `f` in a write transaction. On SQLite it is `IMMEDIATE`: it takes
/// the write lock up front, so that a read and the write that depends on
/// it cannot interleave with another writer, and no reader-turned-writer
/// (e.g. `anonstats prune`) deadlocks on the lock upgrade. On PostgreSQL
/// the rows read to be changed are locked instead ([`lock_instances`]).
pub(super) fn transaction<T>(
    conn: &mut DbConn,
    mode: Mode,
    f: impl FnOnce(&mut Tx<'_>) -> QueryResult<T>,
) -> QueryResult<T> {
    match (conn, mode) {
        (DbConn::Sqlite(c), Mode::Durable) => c.immediate_transaction(|c| f(&mut Tx::Sqlite(c))),
        (DbConn::Sqlite(c), Mode::Unsynced) => {
            // In WAL mode NORMAL writes the commit to the WAL without
            // flushing it; every other use of the connection keeps FULL.
            c.batch_execute("PRAGMA synchronous = NORMAL")?;
            let result = c.immediate_transaction(|c| f(&mut Tx::Sqlite(c)));
            c.batch_execute("PRAGMA synchronous = FULL")?;
            result
        }
        (DbConn::Pg(c), Mode::Durable) => c.transaction(|c| f(&mut Tx::Pg(c))),
        (DbConn::Pg(c), Mode::Unsynced) => c.transaction(|c| {
            // For this transaction only: the commit does not wait for the
            // WAL flush, which the next synchronous commit performs.
            c.batch_execute("SET LOCAL synchronous_commit = off")?;
            f(&mut Tx::Pg(c))
        }),
    }
}

/// Runs the upsert of `rows`: once for the whole set on PostgreSQL, once per
/// row on SQLite (whose diesel backend has no multi-row upsert; inside one
/// transaction, with the statement kept prepared, that costs microseconds
/// per row).
pub(super) fn upsert<R: Row + Columns>(tx: &mut Tx<'_>, rows: &[R]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(c) => {
            Bulk::<R>::new(R::columns(rows)).execute(&mut **c)?;
        }
        Tx::Sqlite(c) => {
            for row in rows {
                Upsert(row).execute(&mut **c)?;
            }
        }
    }
    Ok(())
}

/// Inserts the rows whose key is not stored yet and returns the keys it
/// inserted, so that concurrent collectors agree on which copy counts:
/// `RETURNING key` on PostgreSQL; on SQLite, one row changed means inserted.
pub(super) fn insert_new<R>(
    tx: &mut Tx<'_>,
    rows: &[R],
    key: impl Fn(&R) -> &[u8],
) -> QueryResult<Vec<Vec<u8>>>
where
    R: Columns + 'static,
    for<'a> New<'a, R>: Row,
{
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match tx {
        Tx::Pg(c) => {
            Bulk::<statements::New<'static, R>>::new(R::columns(rows)).load::<Vec<u8>>(&mut **c)
        }
        Tx::Sqlite(c) => {
            let mut inserted = Vec::new();
            for row in rows {
                if Upsert(&New(row)).execute(&mut **c)? == 1 {
                    inserted.push(key(row).to_vec());
                }
            }
            Ok(inserted)
        }
    }
}

/// Loads the stored rows of these instances, in key order, and on
/// PostgreSQL locks them: two collectors changing one instance must not
/// both read the old snapshot, the second waits for the first to commit.
/// SQLite's write transaction holds the database's write lock already.
pub(super) fn lock_instances(tx: &mut Tx<'_>, hashes: &[Vec<u8>]) -> QueryResult<Vec<InstanceRow>> {
    let mut out = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(CHUNK_ROWS) {
        out.extend(match tx {
            Tx::Pg(c) => PlannedEachTime(
                instances::table
                    .filter(instances::instance_hash.eq_any(chunk))
                    .order(instances::instance_hash)
                    .select(InstanceRow::as_select())
                    .for_update(),
            )
            .load(&mut **c)?,
            Tx::Sqlite(c) => instances::table
                .filter(HashIn(chunk))
                .order(instances::instance_hash)
                .select(InstanceRow::as_select())
                .load(&mut **c)?,
        });
    }
    Ok(out)
}

/// The error of a transaction that lost a race with another writer: the
/// writer, erasures and retention run it again ([`is_retryable`]).
pub(super) fn lost_race(what: &str) -> DieselError {
    DieselError::DatabaseError(
        DatabaseErrorKind::SerializationFailure,
        Box::new(what.to_owned()),
    )
}

/// Like [`lock_instances`], only those last seen before `before`.
pub(super) fn lock_instances_before(
    tx: &mut Tx<'_>,
    hashes: &[Vec<u8>],
    before: chrono::NaiveDate,
) -> QueryResult<Vec<InstanceRow>> {
    let query = instances::table
        .filter(instances::instance_hash.eq_any(hashes))
        .filter(instances::last_seen.lt(before))
        .order(instances::instance_hash);
    match tx {
        Tx::Pg(c) => {
            PlannedEachTime(query.select(InstanceRow::as_select()).for_update()).load(&mut **c)
        }
        Tx::Sqlite(c) => query.select(InstanceRow::as_select()).load(&mut **c),
    }
}

/// A PostgreSQL query that is planned for the values of each execution
/// instead of being kept prepared. A prepared statement first run on a
/// near-empty table settles on a generic plan that scans it, and keeps that
/// plan while the table grows until the next `ANALYZE`: the lock of a
/// batch's instances went from 0.07 ms to over 2 ms that way (see
/// docs/performance.md). Planning with the keys at hand always picks the
/// primary key, for a fraction of that.
struct PlannedEachTime<Q>(Q);

impl<Q> QueryId for PlannedEachTime<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for PlannedEachTime<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for PlannedEachTime<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> RunQueryDsl<PgConnection> for PlannedEachTime<Q> {}

/// `instance_hash IN (..)` for SQLite, written so that diesel keeps the
/// statement prepared: its own `eq_any` makes SQLite parse and plan the
/// query again at every execution, which cost a batch about 65,000
/// instructions (see docs/performance.md). The list is padded to a power
/// of two by repeating its last key, so that a connection keeps one
/// statement per power of two instead of one per list length.
#[derive(Debug, Clone, Copy)]
struct HashIn<'a>(&'a [Vec<u8>]);

impl Expression for HashIn<'_> {
    type SqlType = diesel::sql_types::Bool;
}

impl<QS> AppearsOnTable<QS> for HashIn<'_> {}

impl ValidGrouping<()> for HashIn<'_> {
    type IsAggregate = diesel::expression::is_aggregate::No;
}

impl QueryId for HashIn<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Sqlite> for HashIn<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        let Some(last) = self.0.last() else {
            out.push_sql("0");
            return Ok(());
        };
        out.push_sql("\"instances\".\"instance_hash\" IN (");
        for i in 0..self.0.len().next_power_of_two() {
            if i > 0 {
                out.push_sql(", ");
            }
            let key = self.0.get(i).unwrap_or(last);
            out.push_bind_param::<diesel::sql_types::Binary, _>(key)?;
        }
        out.push_sql(")");
        Ok(())
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

/// Whether an error is worth retrying the whole transaction for (lost a
/// race with another collector on PostgreSQL).
pub fn is_retryable(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
    ) || matches!(e, DieselError::DatabaseError(_, info) if info.message().contains("deadlock"))
}

/// An I/O error as SQLite reports it, so that [`crate::db::is_io_error`]
/// recognises it.
pub(super) fn io_error(e: std::io::Error) -> DieselError {
    DieselError::DatabaseError(
        DatabaseErrorKind::Unknown,
        Box::new(format!("disk I/O error ({e})")),
    )
}

/// What the durability code needs to know of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Storage {
    Postgres,
    Sqlite {
        /// The main database file ('' for an in-memory database).
        file: String,
        /// Whether the journal is a write-ahead log.
        wal: bool,
    },
}

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// Which backend, and on SQLite its file and journal mode.
pub(super) fn storage(conn: &mut DbConn) -> QueryResult<Storage> {
    match conn {
        DbConn::Pg(_) => Ok(Storage::Postgres),
        DbConn::Sqlite(c) => {
            let mode = diesel::sql_query("SELECT journal_mode AS value FROM pragma_journal_mode")
                .get_result::<TextValue>(c)?;
            let file = diesel::sql_query(
                "SELECT file AS value FROM pragma_database_list WHERE name = 'main'",
            )
            .get_result::<TextValue>(c)?;
            Ok(Storage::Sqlite {
                file: file.value,
                wal: mode.value.eq_ignore_ascii_case("wal"),
            })
        }
    }
}

/// PostgreSQL: commits a transaction that writes a WAL record, with
/// `synchronous_commit = on`: the server answers once its WAL is flushed up
/// to it. SQLite: nothing (its commits flush themselves, or the caller
/// flushes the WAL file).
pub(super) fn flush_postgres(conn: &mut DbConn) -> QueryResult<()> {
    match conn {
        // A transaction that writes no WAL of its own commits without a
        // flush, even with a transaction id: this one writes a tiny record
        // (a logical message, callable by any role, ignored unless a
        // logical decoding consumer asks for the prefix). One statement,
        // one round trip.
        DbConn::Pg(c) => diesel::sql_query("SELECT pg_logical_emit_message(true, 'anonstats', '')")
            .execute(c)
            .map(|_| ()),
        DbConn::Sqlite(_) => Ok(()),
    }
}

/// SQLite: the problems `PRAGMA quick_check` finds (none when it says
/// `ok`). PostgreSQL: none.
pub(super) fn quick_check(conn: &mut DbConn) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        quick_check: String,
    }
    match conn {
        DbConn::Sqlite(c) => {
            let found: Vec<Check> = diesel::sql_query("PRAGMA quick_check").load(c)?;
            Ok(found
                .into_iter()
                .map(|r| r.quick_check)
                .filter(|r| r != "ok")
                .collect())
        }
        DbConn::Pg(_) => Ok(Vec::new()),
    }
}

/// SQLite: `wal_checkpoint(PASSIVE)`, returning `true`. PostgreSQL: nothing,
/// `false`.
pub(super) fn checkpoint(conn: &mut DbConn, faults: &Faults) -> QueryResult<bool> {
    match conn {
        DbConn::Sqlite(c) => {
            faults.check(Fault::Checkpoint).map_err(io_error)?;
            c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
                .map(|_| true)
        }
        DbConn::Pg(_) => Ok(false),
    }
}

/// Rewrites the database so that deleted rows are gone from its files:
/// SQLite leaves deleted content in free pages and in the WAL (`VACUUM`
/// rebuilds the file and a truncating checkpoint empties the WAL);
/// PostgreSQL leaves dead tuples in place until they are vacuumed (`VACUUM
/// FULL` rewrites the tables that hold pseudonyms).
pub(super) fn scrub(conn: &mut DbConn) -> QueryResult<()> {
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
    use chrono::NaiveDate;
    use diesel::r2d2::ManageConnection;

    use super::*;

    fn row(hash: Vec<u8>) -> InstanceRow {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        InstanceRow {
            instance_hash: hash,
            product: "passbolt".into(),
            version: "4.9.0".into(),
            first_seen: day,
            last_seen: day,
            state: "{}".into(),
            upgraded_from: String::new(),
            upgraded_to: String::new(),
            upgraded_on: None,
            report_keys: Vec::new(),
            report_keys_since: None,
            report_keys_spilled: None,
        }
    }

    fn key(n: u32) -> Vec<u8> {
        let mut k = vec![0u8; 32];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    }

    /// The SQLite read pads its list of keys; whatever the list's length,
    /// the rows read are exactly the stored ones among its keys, once
    /// each, and in key order within a chunk.
    #[test]
    fn lock_instances_reads_exactly_the_stored_keys_of_any_list() {
        let mut conn = crate::db::Manager::new(":memory:").connect().unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        // Even keys are stored, odd ones are not.
        let stored: Vec<InstanceRow> = (0..3000).step_by(2).map(|n| row(key(n))).collect();
        with_conn!(&mut conn, |c| diesel::insert_into(instances::table)
            .values(&stored)
            .execute(c))
        .unwrap();
        for len in [1u32, 2, 3, 5, 17, 999, 1000, 1001, 2500] {
            // Descending, so that any order in the answer is the database's,
            // and without key 0, which a wrong padding would add.
            let asked: Vec<Vec<u8>> = (7..7 + len).rev().map(key).collect();
            let read =
                transaction(&mut conn, Mode::Durable, |tx| lock_instances(tx, &asked)).unwrap();
            let mut got: Vec<Vec<u8>> = read.into_iter().map(|r| r.instance_hash).collect();
            if asked.len() <= CHUNK_ROWS {
                assert!(got.is_sorted(), "{len} keys: not in key order");
            }
            got.sort();
            let want: Vec<Vec<u8>> = (7..7 + len).filter(|n| n % 2 == 0).map(key).collect();
            assert_eq!(got, want, "{len} keys");
        }
    }
}
