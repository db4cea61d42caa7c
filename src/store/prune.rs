//! Retention: instances not seen for long are deleted with their
//! contribution to the aggregates, old dedupe keys are deleted, and so are
//! aggregate rows whose counts reached zero.

use chrono::NaiveDate;
use diesel::prelude::*;

use super::backend::{self, Mode, Tx, CHUNK_ROWS};
use super::plan::{self, Instance, RowKeys, Zeros};
use super::rows::{decode_keys, encode_keys};
use super::write::apply_deltas;
use super::{retry_conflicts, ATTEMPTS};
use crate::db::DbConn;
use crate::schema::{
    instance_counter_totals, instance_counters, instance_value_totals, instance_values, instances,
    seen_reports,
};

/// What one retention run deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneStats {
    /// Instance snapshots not seen since the cutoff.
    pub instances: u64,
    /// Dedupe keys older than the dedupe window, in `seen_reports` and in
    /// instance rows.
    pub report_keys: u64,
    /// Aggregate rows whose counts had reached zero.
    pub aggregate_rows: u64,
}

/// Instances deleted per transaction by [`prune`], so that a large backlog
/// never holds locks for long.
const PRUNE_CHUNK: usize = 1000;

/// The next [`PRUNE_CHUNK`] keys of the instances `$filter` selects, after
/// the key `$after`, in key order.
macro_rules! next_candidates {
    ($conn:expr, $after:expr, $filter:expr) => {
        with_conn!($conn, |c| instances::table
            .filter(instances::instance_hash.gt($after))
            .filter($filter)
            .order(instances::instance_hash)
            .select(instances::instance_hash)
            .limit(PRUNE_CHUNK as i64)
            .load::<Vec<u8>>(c))
    };
}

/// Retention: deletes the snapshots of instances last seen before
/// `instances_before` and takes their contribution out of the aggregates in
/// the same transaction, deletes dedupe keys of days before `keys_before`
/// (from `seen_reports` and from the instance rows, whose spill marks of
/// those days go too), then aggregate rows whose counts are all zero. Daily event counts hold no
/// pseudonym and are kept.
pub fn prune(
    conn: &mut DbConn,
    instances_before: NaiveDate,
    keys_before: NaiveDate,
) -> QueryResult<PruneStats> {
    let (instances, their_keys) = prune_instances(conn, instances_before)?;
    let stored_keys = retry_conflicts(ATTEMPTS, || {
        with_conn!(&mut *conn, |c| diesel::delete(
            seen_reports::table.filter(seen_reports::day.lt(keys_before))
        )
        .execute(c))
    })? as u64;
    let report_keys = stored_keys + their_keys + prune_row_keys(conn, keys_before)?;
    let aggregate_rows = retry_conflicts(ATTEMPTS, || delete_zero_rows(&mut *conn))? as u64;
    Ok(PruneStats {
        instances,
        report_keys,
        aggregate_rows,
    })
}

/// Deletes the instances last seen before `before`, chunk by chunk;
/// returns how many, and how many dedupe keys their rows held.
fn prune_instances(conn: &mut DbConn, before: NaiveDate) -> QueryResult<(u64, u64)> {
    // There is no index on `last_seen`: it would cost every report that
    // moves an instance to a new day two more random page writes.
    let (mut deleted, mut keys) = (0, 0);
    in_chunks(
        conn,
        |conn, after| next_candidates!(conn, after, instances::last_seen.lt(before)),
        |tx, candidates| delete_stale(tx, candidates, before),
        |(n, k)| (deleted, keys) = (deleted + n as u64, keys + k),
    )?;
    Ok((deleted, keys))
}

/// Walks the instances `find` selects in key order, [`PRUNE_CHUNK`] at a
/// time. The candidates are found by a read that takes no write lock; then
/// `change` runs on each chunk in a short transaction of its own, which must
/// check them again, and `done` gets what it returned.
fn in_chunks<T>(
    conn: &mut DbConn,
    find: impl Fn(&mut DbConn, &[u8]) -> QueryResult<Vec<Vec<u8>>>,
    change: impl Fn(&mut Tx<'_>, &[Vec<u8>]) -> QueryResult<T>,
    mut done: impl FnMut(T),
) -> QueryResult<()> {
    let mut after: Vec<u8> = Vec::new();
    loop {
        let candidates = find(&mut *conn, &after)?;
        let Some(last) = candidates.last() else {
            return Ok(());
        };
        after = last.clone();
        done(retry_conflicts(ATTEMPTS, || {
            backend::transaction(&mut *conn, Mode::Durable, |tx| change(tx, &candidates))
        })?);
        if candidates.len() < PRUNE_CHUNK {
            return Ok(());
        }
    }
}

/// Deletes those of `candidates` still last seen before `before`, and
/// takes their contribution out of the aggregates; returns how many, and
/// the dedupe keys their rows held.
fn delete_stale(
    tx: &mut Tx<'_>,
    candidates: &[Vec<u8>],
    before: NaiveDate,
) -> QueryResult<(usize, u64)> {
    // Locked so that a report arriving now either waits for the delete
    // (and finds the instance gone) or updated it first (and the row no
    // longer matches).
    let rows = backend::lock_instances_before(tx, candidates, before)?;
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let hashes: Vec<Vec<u8>> = rows.iter().map(|r| r.instance_hash.clone()).collect();
    let gone = rows
        .into_iter()
        .map(Instance::try_from)
        .collect::<QueryResult<Vec<Instance>>>()?;
    let keys: usize = gone.iter().map(|i| i.keys.keys.len()).sum();
    apply_deltas(
        tx,
        &plan::removal(gone.iter().map(|i| &i.snapshot)),
        Zeros::Skip,
    )?;
    let mut deleted = 0;
    for chunk in hashes.chunks(CHUNK_ROWS) {
        let target = instances::table.filter(instances::instance_hash.eq_any(chunk));
        deleted += with_tx!(&mut *tx, |c| diesel::delete(target).execute(c))?;
    }
    Ok((deleted, keys as u64))
}

/// Drops the keys of days before `before` from the instance rows, and
/// their spill marks of those days, chunk by chunk; returns the keys
/// dropped.
fn prune_row_keys(conn: &mut DbConn, before: NaiveDate) -> QueryResult<u64> {
    let mut dropped = 0;
    in_chunks(
        conn,
        |conn, after| {
            next_candidates!(
                conn,
                after,
                instances::report_keys_since
                    .lt(before)
                    .or(instances::report_keys_spilled.lt(before))
            )
        },
        |tx, candidates| expire_row_keys(tx, candidates, before),
        |n| dropped += n,
    )?;
    Ok(dropped)
}

/// Drops the expired keys of these rows, locked so that a batch writing
/// one of them either comes first (and its keys are judged as it left
/// them) or after.
fn expire_row_keys(tx: &mut Tx<'_>, candidates: &[Vec<u8>], before: NaiveDate) -> QueryResult<u64> {
    let mut dropped = 0;
    for row in backend::lock_instances(tx, candidates)? {
        let mut keys = RowKeys {
            keys: decode_keys(&row.report_keys),
            spilled: row.report_keys_spilled,
        };
        dropped += keys.expire(before) as u64;
        let target = instances::table.filter(instances::instance_hash.eq(&row.instance_hash));
        let change = (
            instances::report_keys.eq(encode_keys(&keys)),
            instances::report_keys_since.eq(keys.since()),
            instances::report_keys_spilled.eq(keys.spilled),
        );
        with_tx!(&mut *tx, |c| diesel::update(target).set(change).execute(c))?;
    }
    Ok(dropped)
}

/// Deletes the aggregate rows whose counts are all zero.
fn delete_zero_rows(conn: &mut DbConn) -> QueryResult<usize> {
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
}
