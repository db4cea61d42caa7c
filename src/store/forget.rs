//! Erasure of one install: its snapshot is deleted and its contribution
//! taken out of the aggregates, with the same statements whether or not it
//! was stored.

use diesel::prelude::*;

use super::backend::{self, Mode, Tx};
use super::plan::{Deltas, Instance, Zeros};
use super::rows::InstanceRow;
use super::settings::ERASURES_SETTING;
use super::write::apply_deltas;
use crate::anonymize::InstanceHash;
use crate::db::DbConn;
use crate::schema::instances;

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
pub fn forget_instance(conn: &mut DbConn, instance_hash: &InstanceHash) -> QueryResult<bool> {
    super::retry_conflicts(super::ATTEMPTS, || {
        backend::transaction(&mut *conn, Mode::Durable, |tx| forget_in(tx, instance_hash))
    })
}

/// Forgets one instance inside a write transaction; returns whether it was
/// stored.
pub(super) fn forget_in(tx: &mut Tx<'_>, hash: &InstanceHash) -> QueryResult<bool> {
    // First, so that both paths take the same locks in the same order.
    count_erasure(tx)?;
    // Locked on PostgreSQL: a batch updating this instance finishes first,
    // and the contribution removed is the one it left.
    let found = backend::lock_instances(tx, &[hash.to_vec()])?
        .into_iter()
        .next();
    let stored = found.is_some();
    // An unknown id runs the same statements on as many rows: those of
    // another install's contribution, adding zero. Without it, the unknown
    // id's erasure skips half a dozen statements and is answered sooner.
    let (row, sign) = match found {
        Some(row) => (row, -1),
        None => match decoy(tx, hash)? {
            Some(row) => (row, 0),
            // Nothing stored at all: there is no id to tell apart.
            None => return Ok(false),
        },
    };
    let target = instances::table.filter(instances::instance_hash.eq(hash.as_slice()));
    with_tx!(&mut *tx, |c| diesel::delete(target).execute(c))?;
    let mut deltas = Deltas::default();
    deltas.contribute(&Instance::try_from(row)?.snapshot, sign);
    apply_deltas(tx, &deltas, Zeros::Write)?;
    Ok(stored)
}

/// Raises the erasure counter by one (created at 1).
fn count_erasure(tx: &mut Tx<'_>) -> QueryResult<()> {
    // The same SQL on both backends: settings hold text.
    let query = diesel::sql_query(format!(
        "INSERT INTO settings (name, value) VALUES ('{ERASURES_SETTING}', '1') \
         ON CONFLICT (name) DO UPDATE \
         SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)"
    ));
    with_tx!(tx, |c| query.execute(c))?;
    Ok(())
}

/// The stored install next to `hash` in key order (wrapping around), whose
/// aggregate rows an erasure of an unknown id updates by zero. Not locked:
/// adding zero is right whatever a concurrent batch does to them.
fn decoy(tx: &mut Tx<'_>, hash: &InstanceHash) -> QueryResult<Option<InstanceRow>> {
    let after = instances::table
        .filter(instances::instance_hash.gt(hash.as_slice()))
        .order(instances::instance_hash);
    let next = with_tx!(&mut *tx, |c| after
        .select(InstanceRow::as_select())
        .first(c)
        .optional())?;
    if next.is_some() {
        return Ok(next);
    }
    let first = instances::table.order(instances::instance_hash);
    with_tx!(tx, |c| first
        .select(InstanceRow::as_select())
        .first(c)
        .optional())
}
