//! The write path: runs the [`plan`](super::plan) of a batch in one
//! transaction, asking the database only what the planner cannot know
//! (which keys and instances are already stored), and applies aggregate
//! deltas for writes, erasures and retention alike.

use std::collections::{HashMap, HashSet};

use diesel::QueryResult;

use super::backend::{self, Mode, Tx};
use super::forget::forget_in;
use super::plan::{self, DedupeWindow, Deltas, Instance, Stored, Zeros};
use super::rows::{
    CounterRow, CounterTotalRow, EventRow, InstanceRow, ReportKey, ValueRow, ValueTotalRow,
};
use super::Outcome;
use crate::anonymize::{InstanceHash, Record, ReportHash};
use crate::db::DbConn;

/// Writes a batch of anonymised records in one transaction and says, for
/// each, whether it was counted or recognised as a duplicate, with the
/// default dedupe window. Nothing of the batch is visible, and no outcome
/// is returned, unless the whole transaction committed.
pub fn write_batch(conn: &mut DbConn, records: &[Record]) -> QueryResult<Vec<Outcome>> {
    write_batch_and_forget(conn, records, &[], DedupeWindow::default())
}

/// Writes a batch like [`write_batch`], with the dedupe window `window`,
/// and, in the same transaction after it, forgets the installs whose
/// pseudonyms are in `erasures`, each as [`super::forget_instance`] does.
/// The outcomes hold one entry per record, then one ([`Outcome::Accepted`])
/// per erasure, found or not.
pub fn write_batch_and_forget(
    conn: &mut DbConn,
    records: &[Record],
    erasures: &[InstanceHash],
    window: DedupeWindow,
) -> QueryResult<Vec<Outcome>> {
    backend::transaction(conn, Mode::Durable, |tx| {
        write_and_forget_in(tx, records, erasures, window)
    })
}

/// Writes a batch like [`write_batch_and_forget`], but returns as soon as it
/// is committed, before the commit is known to be on disk; the caller must
/// run [`super::CommitSync::sync`] before it tells anyone the reports are
/// stored.
///
/// This lets the writer prepare and commit the next batch while the disk
/// flushes the previous one, instead of waiting for every flush in turn.
/// Other connections may read the batch before it is durable; if the
/// machine fails before the sync, the batch is lost, but nothing was
/// acknowledged, and the clients send the same reports again.
pub fn write_batch_unsynced(
    conn: &mut DbConn,
    records: &[Record],
    erasures: &[InstanceHash],
    window: DedupeWindow,
) -> QueryResult<Vec<Outcome>> {
    backend::transaction(conn, Mode::Unsynced, |tx| {
        write_and_forget_in(tx, records, erasures, window)
    })
}

fn write_and_forget_in(
    tx: &mut Tx<'_>,
    records: &[Record],
    erasures: &[InstanceHash],
    window: DedupeWindow,
) -> QueryResult<Vec<Outcome>> {
    let mut outcomes = if records.is_empty() {
        Vec::new()
    } else {
        write_in(tx, records, window)?
    };
    for hash in erasures {
        // Whether anything was found is deliberately dropped here.
        forget_in(tx, hash)?;
        outcomes.push(Outcome::Accepted);
    }
    Ok(outcomes)
}

/// Plans and writes one batch inside `tx`.
fn write_in(
    tx: &mut Tx<'_>,
    records: &[Record],
    window: DedupeWindow,
) -> QueryResult<Vec<Outcome>> {
    let instances = load_instances(tx, &plan::instances_of(records))?;
    let keys = plan::store_keys(records, &instances, window);
    let fresh = insert_report_keys(tx, &keys)?;
    let stored = Stored {
        keys: keys
            .iter()
            .map(|(h, _)| *h)
            .filter(|h| !fresh.contains(h))
            .collect(),
        instances,
    };
    let plan = plan::plan(records, &stored, window);
    insert_instances(tx, &plan.inserted)?;
    let events: Vec<EventRow<'_>> = plan
        .events
        .iter()
        .map(|(key, n)| EventRow::of(key, *n))
        .collect();
    backend::upsert(tx, &events)?;
    let updated: Vec<InstanceRow> = plan.updated.iter().map(InstanceRow::from).collect();
    backend::upsert(tx, &updated)?;
    insert_report_keys(tx, &plan.spilled)?;
    apply_deltas(tx, &plan.deltas, Zeros::Skip)?;
    Ok(plan.outcomes)
}

/// Inserts the dedupe keys not stored yet; returns the ones it inserted.
fn insert_report_keys(
    tx: &mut Tx<'_>,
    keys: &[(ReportHash, chrono::NaiveDate)],
) -> QueryResult<HashSet<ReportHash>> {
    let rows: Vec<ReportKey> = keys
        .iter()
        .map(|(report_hash, day)| ReportKey {
            report_hash: *report_hash,
            day: *day,
        })
        .collect();
    let inserted = backend::insert_new(tx, &rows, |k| k.report_hash.as_slice())?;
    Ok(inserted
        .iter()
        .filter_map(|h| ReportHash::from_stored(h))
        .collect())
}

/// Reads, and on PostgreSQL locks, the stored rows of these instances.
fn load_instances(
    tx: &mut Tx<'_>,
    hashes: &[InstanceHash],
) -> QueryResult<HashMap<InstanceHash, Instance>> {
    let keys: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
    let mut stored = HashMap::with_capacity(keys.len());
    for row in backend::lock_instances(tx, &keys)? {
        let instance = Instance::try_from(row)?;
        stored.insert(instance.hash, instance);
    }
    Ok(stored)
}

/// Inserts the instances the batch found unknown. If another collector
/// inserted one of them meanwhile (PostgreSQL), the batch was planned on a
/// snapshot that is no longer true: the transaction fails as a lost race,
/// and the writer runs it again.
fn insert_instances(tx: &mut Tx<'_>, news: &[Instance]) -> QueryResult<()> {
    let rows: Vec<InstanceRow> = news.iter().map(InstanceRow::from).collect();
    let created = backend::insert_new(tx, &rows, |r| &r.instance_hash)?;
    if created.len() == rows.len() {
        return Ok(());
    }
    Err(backend::lost_race(
        "an instance of the batch was stored by another writer meanwhile",
    ))
}

/// Adds `deltas` to the per-day aggregates and their all-days totals.
pub(super) fn apply_deltas(tx: &mut Tx<'_>, deltas: &Deltas, zeros: Zeros) -> QueryResult<()> {
    let values: Vec<ValueRow<'_>> = deltas
        .values
        .iter()
        .map(|(key, n)| ValueRow::of(key, *n))
        .collect();
    backend::upsert(tx, &values)?;
    let totals: Vec<ValueTotalRow<'_>> = deltas
        .value_totals(zeros)
        .into_iter()
        .map(|(key, n)| ValueTotalRow::of(key, n))
        .collect();
    backend::upsert(tx, &totals)?;
    let counters: Vec<CounterRow<'_>> = deltas
        .counters
        .iter()
        .map(|(key, sums)| CounterRow::of(key, *sums))
        .collect();
    backend::upsert(tx, &counters)?;
    let totals: Vec<CounterTotalRow<'_>> = deltas
        .counter_totals(zeros)
        .into_iter()
        .map(|(key, sums)| CounterTotalRow::of(key, sums))
        .collect();
    backend::upsert(tx, &totals)?;
    Ok(())
}
