//! The planner against an in-memory model of the store: instances, dedupe
//! keys and aggregates held in maps, changed only by applying plans.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::anonymize::InstanceRecord;

fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 1).unwrap() + chrono::Duration::days(n.into())
}

fn instance(n: u8) -> InstanceHash {
    InstanceHash::from_bytes([n; 32])
}

fn report_id(n: u8) -> ReportHash {
    ReportHash::from_bytes([n; 32])
}

/// A report of instance `inst` at `version` on day `d`, with a state that
/// depends on both (so that moving it changes rows).
fn report(inst: u8, d: u32, version: &str) -> Record {
    let state = InstanceState {
        attributes: [("edition".to_owned(), format!("e{}", inst % 2))].into(),
        counters: [("users".to_owned(), i64::from(inst) * 37 + i64::from(d))].into(),
        features: [("mfa".to_owned(), d.is_multiple_of(2))].into(),
    };
    Record {
        day: day(d),
        product: "passbolt".into(),
        event: Event::Install,
        version: version.into(),
        previous_version: None,
        edition: state.attributes.get("edition").cloned(),
        infer_update: false,
        report_hash: None,
        instance: Some(InstanceRecord {
            hash: instance(inst),
            state,
        }),
    }
}

/// The store as plans leave it.
#[derive(Debug, Default)]
struct Model {
    instances: HashMap<InstanceHash, Instance>,
    keys: HashSet<ReportHash>,
    events: BTreeMap<EventKey, i64>,
    values: BTreeMap<ValueKey, i64>,
    counters: BTreeMap<CounterKey, Sums>,
    value_totals: BTreeMap<(String, String, String, String), i64>,
    counter_totals: BTreeMap<(String, String, i64), Sums>,
}

impl Model {
    /// Writes a batch as the store does: keys without an instance, the
    /// stored rows, the spill lookups, then the plan.
    fn write(&mut self, records: &[Record]) -> Plan {
        self.write_in(records, DedupeWindow::default())
    }

    fn write_in(&mut self, records: &[Record], window: DedupeWindow) -> Plan {
        let mut stored = Stored::default();
        for h in instances_of(records) {
            if let Some(i) = self.instances.get(&h) {
                stored.instances.insert(h, i.clone());
            }
        }
        for (h, _) in store_keys(records, &stored.instances, window) {
            if !self.keys.insert(h) {
                stored.keys.insert(h);
            }
        }
        let plan = plan(records, &stored, window);
        for (key, n) in &plan.events {
            *self.events.entry(key.clone()).or_default() += n;
        }
        for i in &plan.inserted {
            assert!(self.instances.insert(i.hash, i.clone()).is_none());
        }
        for i in &plan.updated {
            assert!(self.instances.insert(i.hash, i.clone()).is_some());
        }
        self.keys.extend(plan.spilled.iter().map(|(h, _)| *h));
        self.apply(&plan.deltas, Zeros::Skip);
        plan
    }

    /// Forgets an instance as the store does.
    fn forget(&mut self, hash: &InstanceHash) {
        if let Some(old) = self.instances.remove(hash) {
            let mut deltas = Deltas::default();
            deltas.contribute(&old.snapshot, -1);
            self.apply(&deltas, Zeros::Write);
        }
    }

    /// Prunes instances last seen before `before`, as the store does.
    fn prune(&mut self, before: NaiveDate) {
        let gone: Vec<Instance> = self
            .instances
            .values()
            .filter(|i| i.snapshot.last_seen < before)
            .cloned()
            .collect();
        for i in &gone {
            self.instances.remove(&i.hash);
        }
        self.apply(&removal(gone.iter().map(|i| &i.snapshot)), Zeros::Skip);
    }

    fn apply(&mut self, deltas: &Deltas, zeros: Zeros) {
        for (k, n) in &deltas.values {
            *self.values.entry(k.clone()).or_default() += n;
        }
        for (k, s) in &deltas.counters {
            self.counters.entry(k.clone()).or_default().add(*s);
        }
        for (k, n) in deltas.value_totals(zeros) {
            let key = (
                k.product.into(),
                k.kind.into(),
                k.name.into(),
                k.value.into(),
            );
            *self.value_totals.entry(key).or_default() += n;
        }
        for (k, s) in deltas.counter_totals(zeros) {
            let key = (k.product.into(), k.counter.into(), k.bucket);
            self.counter_totals.entry(key).or_default().add(s);
        }
    }

    /// The aggregates, without the rows that reached zero (which retention
    /// deletes).
    fn aggregates(&self) -> (Vec<String>, Vec<String>) {
        let values = self
            .values
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(k, n)| format!("{k:?}={n}"))
            .chain(
                self.value_totals
                    .iter()
                    .filter(|(_, n)| **n != 0)
                    .map(|(k, n)| format!("{k:?}={n}")),
            )
            .collect();
        let counters = self
            .counters
            .iter()
            .filter(|(_, s)| !s.is_zero())
            .map(|(k, s)| format!("{k:?}={s:?}"))
            .chain(
                self.counter_totals
                    .iter()
                    .filter(|(_, s)| !s.is_zero())
                    .map(|(k, s)| format!("{k:?}={s:?}")),
            )
            .collect();
        (values, counters)
    }

    /// What the aggregates must hold: each stored instance's contribution
    /// once.
    fn expected(&self) -> (Vec<String>, Vec<String>) {
        let mut model = Model::default();
        for i in self.instances.values() {
            let mut deltas = Deltas::default();
            deltas.contribute(&i.snapshot, 1);
            model.apply(&deltas, Zeros::Skip);
        }
        model.aggregates()
    }
}

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

#[test]
fn a_legacy_install_after_an_update_is_an_update() {
    let mut model = Model::default();
    model.write(&[report(1, 0, "4.8.0")]);
    let mut legacy = report(1, 3, "4.9.0");
    legacy.infer_update = true;
    let plan = model.write(&[legacy.clone()]);
    let update = plan.events.keys().next().unwrap();
    assert_eq!(update.event, Event::Update);
    assert_eq!(update.previous_version, "4.8.0");
    let upgrade = model.instances[&instance(1)].upgrade.clone().unwrap();
    assert_eq!(
        (upgrade.from.as_str(), upgrade.to.as_str()),
        ("4.8.0", "4.9.0")
    );
    assert_eq!(upgrade.on, day(3));
    // The same version again is an install as reported, and keeps the update.
    let plan = model.write(&[legacy]);
    assert_eq!(plan.events.keys().next().unwrap().event, Event::Install);
    assert_eq!(model.instances[&instance(1)].upgrade, Some(upgrade));
}

#[test]
fn a_legacy_install_after_one_earlier_in_the_batch_is_an_update() {
    let mut first = report(1, 0, "4.8.0");
    first.infer_update = true;
    let mut second = report(1, 1, "4.9.0");
    second.infer_update = true;
    let plan = Model::default().write(&[first, second]);
    let events: Vec<(Event, &str)> = plan
        .events
        .keys()
        .map(|k| (k.event, k.previous_version.as_str()))
        .collect();
    assert_eq!(events, [(Event::Install, ""), (Event::Update, "4.8.0")]);
    // A new instance that updated in its first batch is inserted with it.
    assert_eq!((plan.inserted.len(), plan.updated.len()), (1, 0));
    assert_eq!(plan.inserted[0].first_seen, day(0));
    assert_eq!(plan.inserted[0].upgrade.as_ref().unwrap().from, "4.8.0");
}

#[test]
fn a_report_id_repeated_in_one_batch_counts_once() {
    let mut a = report(1, 0, "4.9.0");
    a.report_hash = Some(report_id(7));
    let mut b = report(2, 0, "4.9.0");
    b.report_hash = Some(report_id(7));
    let mut model = Model::default();
    let plan = model.write(&[a.clone(), b]);
    assert_eq!(plan.outcomes, [Outcome::Accepted, Outcome::Duplicate]);
    assert_eq!(plan.events.values().sum::<i64>(), 1);
    assert_eq!(model.instances.len(), 1);
    // And once more in a later batch: stored already.
    assert_eq!(model.write(&[a]).outcomes, [Outcome::Duplicate]);
}

#[test]
fn two_reports_of_one_instance_move_its_aggregates_once() {
    let mut model = Model::default();
    let plan = model.write(&[report(1, 0, "4.8.0"), report(1, 2, "4.9.0")]);
    assert_eq!(plan.events.values().sum::<i64>(), 2);
    // One instance: one version row, on its last day, with the last state.
    let versions: Vec<(&ValueKey, &i64)> = plan
        .deltas
        .values
        .iter()
        .filter(|(k, _)| k.kind == "version")
        .collect();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (versions[0].0.day, versions[0].0.value.as_str()),
        (day(2), "4.9.0")
    );
    assert_eq!(*versions[0].1, 1);
    assert!(plan.deltas.counters.values().all(|s| s.instances == 1));
    assert_eq!(model.instances[&instance(1)].first_seen, day(0));
    assert_eq!(model.aggregates(), model.expected());
}

#[test]
fn a_report_that_changes_nothing_plans_no_aggregate_row() {
    let mut model = Model::default();
    model.write(&[report(1, 3, "4.9.0")]);
    let plan = model.write(&[report(1, 3, "4.9.0")]);
    assert!(plan.deltas.is_empty(), "{:?}", plan.deltas);
    assert_eq!(plan.updated.len(), 1);
    assert_eq!(plan.events.values().sum::<i64>(), 1);
}

#[test]
fn deltas_of_a_batch_are_summed_per_row_in_key_order() {
    // Instances 2 and 4 have the same edition; both move from day 1 to
    // day 5 in one batch.
    let mut model = Model::default();
    model.write(&[report(2, 1, "4.9.0"), report(4, 1, "4.9.0")]);
    let plan = model.write(&[report(2, 5, "4.9.0"), report(4, 5, "4.9.0")]);
    let edition: Vec<(NaiveDate, i64)> = plan
        .deltas
        .values
        .iter()
        .filter(|(k, _)| k.kind == "attribute" && k.name == "edition")
        .map(|(k, n)| (k.day, *n))
        .collect();
    assert_eq!(edition, [(day(1), -2), (day(5), 2)]);
    let keys: Vec<&ValueKey> = plan.deltas.values.keys().collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_report_without_instance_counts_its_event_only() {
    let mut r = report(1, 0, "4.9.0");
    r.instance = None;
    let mut model = Model::default();
    let plan = model.write(&[r]);
    assert_eq!(plan.events.values().sum::<i64>(), 1);
    assert!(plan.deltas.is_empty() && plan.updated.is_empty() && plan.inserted.is_empty());
    assert!(model.instances.is_empty());
}

/// A report of instance `inst` on day `d` with report id `id`.
fn sent(inst: u8, d: u32, id: u8) -> Record {
    let mut r = report(inst, d, "4.9.0");
    r.report_hash = Some(report_id(id));
    r
}

#[test]
fn a_retry_after_newer_reports_of_its_install_counts_once() {
    let mut model = Model::default();
    let n = ROW_KEYS as u8 + 3;
    for id in 0..n {
        let plan = model.write(&[sent(1, 0, id)]);
        assert_eq!(plan.outcomes, [Outcome::Accepted]);
        // The fifth report fills the row: the oldest key moves to the key
        // store, and the later keys go there directly.
        let spills = usize::from(id) == ROW_KEYS;
        assert_eq!(plan.spilled.len(), usize::from(spills), "report {id}");
    }
    let row = &model.instances[&instance(1)].keys;
    assert_eq!(row.keys.len(), ROW_KEYS);
    assert_eq!(row.spilled, Some(day(0)));
    assert_eq!(model.keys.len(), usize::from(n) - ROW_KEYS);
    // Every earlier report, retried in any order, is a duplicate: the
    // newest from the row, the oldest from the key store.
    for id in (0..n).rev() {
        let plan = model.write(&[sent(1, 1, id)]);
        assert_eq!(plan.outcomes, [Outcome::Duplicate], "retry of report {id}");
        assert!(plan.events.is_empty() && plan.updated.is_empty());
    }
    // A new report id still counts.
    assert_eq!(model.write(&[sent(1, 1, n)]).outcomes, [Outcome::Accepted]);
}

#[test]
fn an_install_that_reports_rarely_never_uses_the_key_store() {
    let mut model = Model::default();
    for id in 0..ROW_KEYS as u8 {
        assert!(model
            .write(&[sent(1, u32::from(id), id)])
            .spilled
            .is_empty());
    }
    let plan = model.write(&[sent(1, 9, 0), sent(1, 9, 3)]);
    assert_eq!(plan.outcomes, [Outcome::Duplicate, Outcome::Duplicate]);
    assert!(model.keys.is_empty());
    assert_eq!(model.instances[&instance(1)].keys.spilled, None);
}

#[test]
fn keys_that_left_the_window_leave_the_row() {
    let window = DedupeWindow { days: 7 };
    let mut model = Model::default();
    for id in 0..ROW_KEYS as u8 + 1 {
        model.write_in(&[sent(1, 0, id)], window);
    }
    assert_eq!(model.instances[&instance(1)].keys.spilled, Some(day(0)));
    // Day 8 is past the seven days of day 0: its keys and its spill mark go.
    model.write_in(&[sent(1, 8, 100)], window);
    let row = &model.instances[&instance(1)].keys;
    assert_eq!(row.keys, [(report_id(100), day(8))]);
    assert_eq!(row.spilled, None);
    assert_eq!(row.since(), Some(day(8)));
    // On day 7, a key of day 0 still counts; on day 8 it would not.
    let mut keys = RowKeys {
        keys: vec![(report_id(1), day(0))],
        spilled: Some(day(0)),
    };
    assert_eq!(keys.expire(window.start(day(7))), 0);
    assert_eq!(keys.expire(window.start(day(8))), 1);
    assert_eq!(keys, RowKeys::default());
}

#[test]
fn a_report_without_instance_is_deduplicated_by_the_key_store() {
    let mut r = sent(1, 0, 5);
    r.instance = None;
    let mut model = Model::default();
    assert_eq!(model.write(&[r.clone()]).outcomes, [Outcome::Accepted]);
    assert_eq!(model.write(&[r]).outcomes, [Outcome::Duplicate]);
    assert_eq!(model.keys.len(), 1);
}

#[test]
fn forgetting_an_unknown_install_touches_rows_by_zero() {
    let mut deltas = Deltas::default();
    deltas.contribute(&snapshot_of(&report(1, 0, "4.9.0")), 0);
    assert!(!deltas.is_empty());
    assert!(deltas.values.values().all(|n| *n == 0));
    assert!(!deltas.value_totals(Zeros::Write).is_empty());
    assert!(deltas.value_totals(Zeros::Skip).is_empty());
    assert!(deltas.clone().without_zeros().is_empty());
}

/// A batch: reports of up to 6 instances over 10 days and 3 versions, some
/// legacy, some with a report id shared with others.
fn batch() -> impl Strategy<Value = Vec<Record>> {
    let one = (
        0u8..6,
        0u32..10,
        0usize..3,
        any::<bool>(),
        prop::option::of(0u8..8),
    );
    prop::collection::vec(one, 0..12).prop_map(|reports| {
        reports
            .into_iter()
            .map(|(inst, d, v, legacy, id)| {
                let mut r = report(inst, d, ["4.8.0", "4.9.0", "5.0.0"][v]);
                r.infer_update = legacy;
                r.report_hash = id.map(report_id);
                r
            })
            .collect()
    })
}

/// Reports of up to 3 instances and no instance, each report id used by
/// one of them only (a retry is the same report), over batches.
fn retries() -> impl Strategy<Value = Vec<Vec<Record>>> {
    let one = (0u8..4, 0u32..10, 0u8..12);
    let batch = prop::collection::vec(one, 1..8).prop_map(|reports| {
        reports
            .into_iter()
            .map(|(inst, d, n)| {
                let mut r = sent(inst, d, inst * 16 + n);
                if inst == 3 {
                    r.instance = None;
                }
                r
            })
            .collect()
    });
    prop::collection::vec(batch, 1..8)
}

proptest! {
    #[test]
    fn a_report_counts_once_whatever_came_between(batches in retries()) {
        let mut model = Model::default();
        let mut counted = HashSet::new();
        for b in &batches {
            let plan = model.write(b);
            for (r, o) in b.iter().zip(&plan.outcomes) {
                let first = counted.insert(r.report_hash.unwrap());
                prop_assert_eq!(*o == Outcome::Accepted, first);
            }
            for i in model.instances.values() {
                prop_assert!(i.keys.keys.len() <= ROW_KEYS);
            }
        }
    }

    #[test]
    fn aggregates_hold_each_stored_instance_once(batches in prop::collection::vec(batch(), 1..5)) {
        let mut model = Model::default();
        for b in &batches {
            let plan = model.write(b);
            prop_assert_eq!(plan.outcomes.len(), b.len());
            prop_assert_eq!(model.aggregates(), model.expected());
        }
        model.prune(day(5));
        prop_assert_eq!(model.aggregates(), model.expected());
    }

    #[test]
    fn forget_after_write_restores_every_aggregate(
        before in prop::collection::vec(batch(), 0..3),
        inst in 6u8..9,
        days in prop::collection::vec(0u32..10, 1..4),
    ) {
        let mut model = Model::default();
        for b in &before {
            model.write(b);
        }
        let aggregates = model.aggregates();
        for d in days {
            model.write(&[report(inst, d, "4.9.0")]);
        }
        prop_assert_ne!(model.aggregates(), aggregates.clone());
        model.forget(&instance(inst));
        prop_assert_eq!(model.aggregates(), aggregates);
    }

    #[test]
    fn forgetting_every_install_empties_the_aggregates(batches in prop::collection::vec(batch(), 1..4)) {
        let mut model = Model::default();
        for b in &batches {
            model.write(b);
        }
        let hashes: Vec<InstanceHash> = model.instances.keys().copied().collect();
        for h in &hashes {
            model.forget(h);
        }
        prop_assert_eq!(model.aggregates(), (vec![], vec![]));
    }
}
