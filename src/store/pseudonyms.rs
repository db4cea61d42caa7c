//! The rows that hold pseudonyms, counted and deleted together when the
//! pseudonymisation secret is replaced.

use diesel::prelude::*;

use super::backend::{self, Mode};
use super::settings::{FINGERPRINT_SETTING, SECRET_SETTING};
use crate::db::DbConn;
use crate::schema::{
    instance_counter_totals, instance_counters, instance_value_totals, instance_values, instances,
    seen_reports, settings,
};

/// The rows that hold pseudonyms, or aggregates that only pseudonyms keep
/// consistent: what rotating the secret deletes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pseudonyms {
    /// Instance snapshots (`instances`).
    pub instances: u64,
    /// Dedupe keys (`seen_reports`, and those kept in instance rows).
    pub report_keys: u64,
    /// Rows of the aggregates of instance values and counters.
    pub aggregate_rows: u64,
}

/// The dedupe keys kept in instance rows (36 bytes each).
fn row_keys_query() -> diesel::query_builder::SqlQuery {
    diesel::sql_query(
        "SELECT CAST(COALESCE(SUM(LENGTH(report_keys)), 0) / 36 AS BIGINT) AS n FROM instances",
    )
}

#[derive(QueryableByName)]
struct RowKeyCount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
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
        report_keys: count(conn, "seen_reports")?
            + with_conn!(&mut *conn, |c| row_keys_query()
                .get_result::<RowKeyCount>(c))?
            .n as u64,
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
    backend::transaction(conn, Mode::Durable, |tx| {
        let row_keys = with_tx!(&mut *tx, |c| row_keys_query().get_result::<RowKeyCount>(c))?.n;
        let mut deleted = Pseudonyms {
            instances: with_tx!(&mut *tx, |c| diesel::delete(instances::table).execute(c))? as u64,
            report_keys: with_tx!(&mut *tx, |c| diesel::delete(seen_reports::table).execute(c))?
                as u64
                + row_keys as u64,
            aggregate_rows: 0,
        };
        deleted.aggregate_rows = (with_tx!(&mut *tx, |c| diesel::delete(instance_values::table)
            .execute(c))?
            + with_tx!(&mut *tx, |c| diesel::delete(instance_counters::table)
                .execute(c))?
            + with_tx!(&mut *tx, |c| diesel::delete(instance_value_totals::table)
                .execute(c))?
            + with_tx!(&mut *tx, |c| diesel::delete(instance_counter_totals::table)
                .execute(c))?) as u64;
        with_tx!(&mut *tx, |c| diesel::delete(settings::table.filter(
            settings::name.eq_any([SECRET_SETTING, FINGERPRINT_SETTING])
        ))
        .execute(c))?;
        with_tx!(&mut *tx, |c| diesel::insert_into(settings::table)
            .values((settings::name.eq(setting.0), settings::value.eq(setting.1)))
            .execute(c))?;
        Ok(deleted)
    })
}

/// After [`replace_secret`]: makes the deleted rows, the old secret among
/// them, unrecoverable from the database files. SQLite leaves deleted
/// content in free pages and in the WAL: `VACUUM` rebuilds the file and a
/// truncating checkpoint empties the WAL. PostgreSQL leaves dead tuples in
/// place until they are vacuumed: `VACUUM FULL` rewrites the tables (they
/// are small or empty by then). Needs no other connection to the database.
pub fn scrub_deleted(conn: &mut DbConn) -> QueryResult<()> {
    backend::scrub(conn)
}
