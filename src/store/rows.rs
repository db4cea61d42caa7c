//! The rows of the tables the write path changes, and their conversions
//! from and to the planner's types. Rows borrow from the plan where they
//! can: a batch writes thousands of them.

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::plan::{
    CounterKey, CounterTotalKey, EventKey, Instance, RowKeys, Snapshot, Sums, Upgrade, ValueKey,
    ValueTotalKey,
};
use crate::anonymize::{InstanceHash, ReportHash};
use crate::schema::{
    daily_events, instance_counter_totals, instance_counters, instance_value_totals,
    instance_values, instances,
};

/// An instance row as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = instances)]
pub(super) struct InstanceRow {
    pub instance_hash: Vec<u8>,
    pub product: String,
    pub version: String,
    pub first_seen: NaiveDate,
    pub last_seen: NaiveDate,
    pub state: String,
    /// The install's latest update: from, to ('' when none), and its day.
    pub upgraded_from: String,
    pub upgraded_to: String,
    pub upgraded_on: Option<NaiveDate>,
    /// Its row's dedupe keys ([`encode_keys`]).
    pub report_keys: Vec<u8>,
    pub report_keys_since: Option<NaiveDate>,
    pub report_keys_spilled: Option<NaiveDate>,
}

/// Bytes of one key in `report_keys`: the hash, then the day.
const KEY_BYTES: usize = 32 + 4;

/// A row's dedupe keys as stored: each the 32 bytes of its hash, then its
/// day as a big-endian count of days from 0001-01-01.
pub(super) fn encode_keys(keys: &RowKeys) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.keys.len() * KEY_BYTES);
    for (hash, day) in &keys.keys {
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(&day.num_days_from_ce().to_be_bytes());
    }
    out
}

/// The keys of [`encode_keys`]. Bytes that do not decode hold no key.
pub(super) fn decode_keys(bytes: &[u8]) -> Vec<(ReportHash, NaiveDate)> {
    bytes
        .chunks_exact(KEY_BYTES)
        .filter_map(|chunk| {
            let (hash, day) = chunk.split_at(32);
            let days = i32::from_be_bytes(day.try_into().ok()?);
            Some((
                ReportHash::from_stored(hash)?,
                NaiveDate::from_num_days_from_ce_opt(days)?,
            ))
        })
        .collect()
}

impl From<&Instance> for InstanceRow {
    fn from(i: &Instance) -> InstanceRow {
        let (upgraded_from, upgraded_to, upgraded_on) = match &i.upgrade {
            Some(u) => (u.from.clone(), u.to.clone(), Some(u.on)),
            None => (String::new(), String::new(), None),
        };
        InstanceRow {
            instance_hash: i.hash.as_bytes().to_vec(),
            product: i.snapshot.product.clone(),
            version: i.snapshot.version.clone(),
            first_seen: i.first_seen,
            last_seen: i.snapshot.last_seen,
            state: serde_json::to_string(&i.snapshot.state).expect("state serialises"),
            upgraded_from,
            upgraded_to,
            upgraded_on,
            report_keys: encode_keys(&i.keys),
            report_keys_since: i.keys.since(),
            report_keys_spilled: i.keys.spilled,
        }
    }
}

impl TryFrom<InstanceRow> for Instance {
    type Error = DieselError;

    fn try_from(r: InstanceRow) -> QueryResult<Instance> {
        let hash = InstanceHash::from_stored(&r.instance_hash).ok_or_else(|| {
            DieselError::DeserializationError("an instance hash is not 32 bytes".into())
        })?;
        Ok(Instance {
            hash,
            first_seen: r.first_seen,
            // A state that no longer parses contributed nothing it could
            // take back.
            snapshot: Snapshot {
                product: r.product,
                version: r.version,
                last_seen: r.last_seen,
                state: serde_json::from_str(&r.state).unwrap_or_default(),
            },
            upgrade: r.upgraded_on.map(|on| Upgrade {
                from: r.upgraded_from,
                to: r.upgraded_to,
                on,
            }),
            keys: RowKeys {
                keys: decode_keys(&r.report_keys),
                spilled: r.report_keys_spilled,
            },
        })
    }
}

/// A dedupe key: the keyed hash of a `report_id` and the day it arrived.
#[derive(Debug, Clone)]
pub(super) struct ReportKey {
    pub report_hash: ReportHash,
    pub day: NaiveDate,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = daily_events)]
pub(super) struct EventRow<'a> {
    pub day: NaiveDate,
    pub product: &'a str,
    pub event: &'a str,
    pub version: &'a str,
    pub previous_version: &'a str,
    pub edition: &'a str,
    pub reports: i64,
}

impl<'a> EventRow<'a> {
    pub fn of(key: &'a EventKey, reports: i64) -> EventRow<'a> {
        EventRow {
            day: key.day,
            product: &key.product,
            event: key.event.as_str(),
            version: &key.version,
            previous_version: &key.previous_version,
            edition: &key.edition,
            reports,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_values)]
pub(super) struct ValueRow<'a> {
    pub product: &'a str,
    pub last_seen: NaiveDate,
    pub kind: &'a str,
    pub name: &'a str,
    pub value: &'a str,
    pub instances: i64,
}

impl<'a> ValueRow<'a> {
    pub fn of(key: &'a ValueKey, instances: i64) -> ValueRow<'a> {
        ValueRow {
            product: &key.product,
            last_seen: key.day,
            kind: key.kind,
            name: &key.name,
            value: &key.value,
            instances,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_counters)]
pub(super) struct CounterRow<'a> {
    pub product: &'a str,
    pub last_seen: NaiveDate,
    pub counter: &'a str,
    pub bucket: i64,
    pub instances: i64,
    pub total: i64,
}

impl<'a> CounterRow<'a> {
    pub fn of(key: &'a CounterKey, sums: Sums) -> CounterRow<'a> {
        CounterRow {
            product: &key.product,
            last_seen: key.day,
            counter: &key.counter,
            bucket: key.bucket,
            instances: sums.instances,
            total: sums.total,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_value_totals)]
pub(super) struct ValueTotalRow<'a> {
    pub product: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub value: &'a str,
    pub instances: i64,
}

impl<'a> ValueTotalRow<'a> {
    pub fn of(key: ValueTotalKey<'a>, instances: i64) -> ValueTotalRow<'a> {
        ValueTotalRow {
            product: key.product,
            kind: key.kind,
            name: key.name,
            value: key.value,
            instances,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = instance_counter_totals)]
pub(super) struct CounterTotalRow<'a> {
    pub product: &'a str,
    pub counter: &'a str,
    pub bucket: i64,
    pub instances: i64,
    pub total: i64,
}

impl<'a> CounterTotalRow<'a> {
    pub fn of(key: CounterTotalKey<'a>, sums: Sums) -> CounterTotalRow<'a> {
        CounterTotalRow {
            product: key.product,
            counter: key.counter,
            bucket: key.bucket,
            instances: sums.instances,
            total: sums.total,
        }
    }
}
