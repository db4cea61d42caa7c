//! Checks that the incrementally maintained aggregates equal what the
//! instance snapshots say, whatever happened on the way (crashes, races,
//! retention runs).

use std::collections::BTreeMap;

use anonstats::store::bucket_of;
use chrono::NaiveDate;

use super::TestDb;

type Values = BTreeMap<(String, NaiveDate, String, String, String), i64>;
type Counters = BTreeMap<(String, NaiveDate, String, i64), (i64, i64)>;

/// Aggregates recomputed from the `instances` table.
fn expected(db: &TestDb) -> (Values, Counters) {
    let mut values = Values::new();
    let mut counters = Counters::new();
    for instance in db.inspect().instances() {
        let (product, day) = (instance.product, instance.last_seen);
        let mut add = |kind: &str, name: &str, value: &str| {
            *values
                .entry((product.clone(), day, kind.into(), name.into(), value.into()))
                .or_default() += 1;
        };
        add("version", "", &instance.version);
        let state = instance.state;
        for (n, v) in &state.attributes {
            add("attribute", n, v);
        }
        for (n, on) in &state.features {
            add("feature", n, if *on { "true" } else { "false" });
        }
        for (n, v) in &state.counters {
            let e = counters
                .entry((product.clone(), day, n.clone(), bucket_of(*v)))
                .or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    (values, counters)
}

/// Aggregates as stored, without rows whose counts are zero.
fn stored(db: &TestDb) -> (Values, Counters) {
    let inspect = db.inspect();
    (
        inspect
            .values()
            .iter()
            .filter(|v| v.instances != 0)
            .map(|v| {
                (
                    (
                        v.product.clone(),
                        v.last_seen,
                        v.kind.clone(),
                        v.name.clone(),
                        v.value.clone(),
                    ),
                    v.instances,
                )
            })
            .collect(),
        inspect
            .counters()
            .iter()
            .filter(|c| c.instances != 0 || c.total != 0)
            .map(|c| {
                (
                    (c.product.clone(), c.last_seen, c.counter.clone(), c.bucket),
                    (c.instances, c.total),
                )
            })
            .collect(),
    )
}

/// Panics unless every aggregate equals its recomputation from snapshots.
pub fn assert_aggregates_match_instances(db: &TestDb) {
    let (want_values, want_counters) = expected(db);
    let (got_values, got_counters) = stored(db);
    assert_eq!(
        got_values, want_values,
        "instance_values drifted from instances"
    );
    assert_eq!(
        got_counters, want_counters,
        "instance_counters drifted from instances"
    );
    assert_totals_match(db, &want_values, &want_counters);
}

type ValueTotals = BTreeMap<(String, String, String, String), i64>;
type CounterTotals = BTreeMap<(String, String, i64), (i64, i64)>;

/// The all-days totals equal the per-day aggregates summed over days.
fn assert_totals_match(db: &TestDb, values: &Values, counters: &Counters) {
    let mut want_values = ValueTotals::new();
    for ((p, _, k, n, v), c) in values {
        *want_values
            .entry((p.clone(), k.clone(), n.clone(), v.clone()))
            .or_default() += c;
    }
    want_values.retain(|_, c| *c != 0);
    let mut want_counters = CounterTotals::new();
    for ((p, _, c, b), (n, t)) in counters {
        let e = want_counters.entry((p.clone(), c.clone(), *b)).or_default();
        e.0 += n;
        e.1 += t;
    }
    want_counters.retain(|_, (n, t)| *n != 0 || *t != 0);

    let inspect = db.inspect();
    let got_values: ValueTotals = inspect
        .value_totals()
        .into_iter()
        .filter(|v| v.instances != 0)
        .map(|v| ((v.product, v.kind, v.name, v.value), v.instances))
        .collect();
    let got_counters: CounterTotals = inspect
        .counter_totals()
        .into_iter()
        .filter(|c| c.instances != 0 || c.total != 0)
        .map(|c| ((c.product, c.counter, c.bucket), (c.instances, c.total)))
        .collect();
    assert_eq!(
        got_values, want_values,
        "instance_value_totals drifted from the per-day aggregates"
    );
    assert_eq!(
        got_counters, want_counters,
        "instance_counter_totals drifted from the per-day aggregates"
    );
}
