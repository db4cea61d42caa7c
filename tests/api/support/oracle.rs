//! Checks that the incrementally maintained aggregates equal what the
//! instance snapshots say, whatever happened on the way (crashes, races,
//! retention runs).

use std::collections::BTreeMap;

use anonstats::anonymize::InstanceState;
use anonstats::schema::{
    instance_counter_totals, instance_counters, instance_value_totals, instance_values, instances,
};
use anonstats::store::bucket_of;
use chrono::NaiveDate;
use diesel::prelude::*;

use super::TestDb;

type Values = BTreeMap<(String, NaiveDate, String, String, String), i64>;
type Counters = BTreeMap<(String, NaiveDate, String, i64), (i64, i64)>;

/// Aggregates recomputed from the `instances` table.
fn expected(db: &TestDb) -> (Values, Counters) {
    let mut conn = db.conn();
    let rows: Vec<(String, String, NaiveDate, String)> = instances::table
        .select((
            instances::product,
            instances::version,
            instances::last_seen,
            instances::state,
        ))
        .load(&mut conn)
        .expect("load instances");
    let mut values = Values::new();
    let mut counters = Counters::new();
    for (product, version, day, state) in rows {
        let state: InstanceState = serde_json::from_str(&state).expect("state is JSON");
        let mut add = |kind: &str, name: &str, value: &str| {
            *values
                .entry((product.clone(), day, kind.into(), name.into(), value.into()))
                .or_default() += 1;
        };
        add("version", "", &version);
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
    let mut conn = db.conn();
    let values: Vec<(String, NaiveDate, String, String, String, i64)> = instance_values::table
        .select((
            instance_values::product,
            instance_values::last_seen,
            instance_values::kind,
            instance_values::name,
            instance_values::value,
            instance_values::instances,
        ))
        .load(&mut conn)
        .expect("load instance_values");
    let counters: Vec<(String, NaiveDate, String, i64, i64, i64)> = instance_counters::table
        .select((
            instance_counters::product,
            instance_counters::last_seen,
            instance_counters::counter,
            instance_counters::bucket,
            instance_counters::instances,
            instance_counters::total,
        ))
        .load(&mut conn)
        .expect("load instance_counters");
    (
        values
            .into_iter()
            .filter(|v| v.5 != 0)
            .map(|(p, d, k, n, v, c)| ((p, d, k, n, v), c))
            .collect(),
        counters
            .into_iter()
            .filter(|c| c.4 != 0 || c.5 != 0)
            .map(|(p, d, c, b, n, t)| ((p, d, c, b), (n, t)))
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

    let mut conn = db.conn();
    let got_values: ValueTotals = instance_value_totals::table
        .select((
            instance_value_totals::product,
            instance_value_totals::kind,
            instance_value_totals::name,
            instance_value_totals::value,
            instance_value_totals::instances,
        ))
        .load::<(String, String, String, String, i64)>(&mut conn)
        .expect("load instance_value_totals")
        .into_iter()
        .filter(|v| v.4 != 0)
        .map(|(p, k, n, v, c)| ((p, k, n, v), c))
        .collect();
    let got_counters: CounterTotals = instance_counter_totals::table
        .select((
            instance_counter_totals::product,
            instance_counter_totals::counter,
            instance_counter_totals::bucket,
            instance_counter_totals::instances,
            instance_counter_totals::total,
        ))
        .load::<(String, String, i64, i64, i64)>(&mut conn)
        .expect("load instance_counter_totals")
        .into_iter()
        .filter(|c| c.3 != 0 || c.4 != 0)
        .map(|(p, c, b, n, t)| ((p, c, b), (n, t)))
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
