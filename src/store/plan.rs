//! The write path's decisions, without a database: which reports of a batch
//! count, what each instance's snapshot becomes, which events are counted,
//! and how the aggregates move. Writes, erasures and retention all move the
//! aggregates with [`Deltas::contribute`], so that taking an install out
//! removes exactly what putting it in added.
//!
//! Dedupe keys live where the write goes anyway: an instance's row keeps
//! the keys of its last [`ROW_KEYS`] reports ([`RowKeys`]). Only the keys of
//! reports without an instance, and keys pushed out of a row while still in
//! the dedupe window ("spilled"), go to the key store (`seen_reports`), so a
//! report of a known instance dirties no page of its own for its key.
//!
//! A batch is planned once the store has said what it holds: the rows of
//! the batch's instances ([`instances_of`], read and on PostgreSQL locked),
//! and which of its keys for the key store ([`store_keys`]) were there
//! already (they are inserted first, so that two collectors racing on one
//! agree). [`plan`] then decides.
//!
//! Rules:
//! - a report whose `report_id` an earlier report of the batch, its
//!   instance's row, or the key store already carries is a duplicate and
//!   changes nothing;
//! - the last report of an instance in the batch gives its snapshot, the
//!   first one its `first_seen` when it is new;
//! - a legacy report saying `install` for an instance known at another
//!   version (stored, or earlier in the batch) counts as an update from it;
//! - an instance keeps its latest update (from, to, day) in its snapshot;
//! - an instance contributes its snapshot (product, day last seen,
//!   version, attributes, features, counter buckets) once to the
//!   aggregates: a batch moves the contribution from the stored snapshot
//!   to the new one, however many reports it holds;
//! - a row keeps its last [`ROW_KEYS`] keys within the dedupe window; an
//!   older key within the window moves to the key store, and the row notes
//!   the day: until that day leaves the window, the instance's later keys
//!   go to the key store as well, as those of reports without an instance.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

use super::Outcome;
use crate::anonymize::{InstanceHash, InstanceState, Record, ReportHash};
use crate::validation::Event;

/// What an instance contributes to the aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub product: String,
    pub version: String,
    pub last_seen: NaiveDate,
    pub state: InstanceState,
}

/// An install's latest update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The version before it ('' when the report did not say).
    pub from: String,
    pub to: String,
    pub on: NaiveDate,
}

/// An instance as stored, or as a batch leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub hash: InstanceHash,
    pub first_seen: NaiveDate,
    pub snapshot: Snapshot,
    pub upgrade: Option<Upgrade>,
    /// The dedupe keys its row keeps.
    pub keys: RowKeys,
}

/// Dedupe keys an instance's row keeps at most. An install sends a report
/// when it is installed and when it is updated: four cover a retry that
/// arrives after three newer reports of the same install, and a month of
/// updates, without the key store. More reports in the window still count
/// once: the older keys move to the key store (see [`RowKeys::spilled`]).
pub const ROW_KEYS: usize = 4;

/// Default `--dedupe-days`.
pub const DEFAULT_DEDUPE_DAYS: u32 = 30;

/// How long a dedupe key counts: a key of day `d` still counts on the days
/// before `d + days`, and retention deletes it after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeWindow {
    pub days: u32,
}

impl Default for DedupeWindow {
    fn default() -> DedupeWindow {
        DedupeWindow {
            days: DEFAULT_DEDUPE_DAYS,
        }
    }
}

impl DedupeWindow {
    /// The first day whose keys still count on `today`: retention deletes
    /// the keys of the days before it.
    pub fn start(&self, today: NaiveDate) -> NaiveDate {
        today
            .checked_sub_days(chrono::Days::new(u64::from(self.days)))
            .unwrap_or(NaiveDate::MIN)
    }
}

/// The dedupe keys in an instance's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowKeys {
    /// The keys of its latest reports, oldest first, with the day each
    /// arrived.
    pub keys: Vec<(ReportHash, NaiveDate)>,
    /// The last day a key of this row moved to the key store: until that
    /// day leaves the dedupe window, the instance's new keys go there too,
    /// where they are found with the older ones.
    pub spilled: Option<NaiveDate>,
}

impl RowKeys {
    /// Whether the row holds `hash`.
    pub fn holds(&self, hash: &ReportHash) -> bool {
        self.keys.iter().any(|(h, _)| h == hash)
    }

    /// The day of the oldest key, if any.
    pub fn since(&self) -> Option<NaiveDate> {
        self.keys.iter().map(|(_, d)| *d).min()
    }

    /// Drops what has left the window starting on `start`: keys of earlier
    /// days, and the spill mark when every spilled key is gone from the
    /// key store. Returns how many keys were dropped.
    pub fn expire(&mut self, start: NaiveDate) -> usize {
        let before = self.keys.len();
        self.keys.retain(|(_, d)| *d >= start);
        if self.spilled.is_some_and(|d| d < start) {
            self.spilled = None;
        }
        before - self.keys.len()
    }

    /// Whether a report of `day` keeps its key in the key store: the row
    /// has spilled keys there that are still in the window.
    pub fn spills_on(&self, day: NaiveDate, window: DedupeWindow) -> bool {
        self.spilled.is_some_and(|d| d >= window.start(day))
    }

    /// Adds the key of an accepted report of `day`; returns the key it
    /// pushes out of the row, if any, which the key store must then keep.
    fn push(&mut self, hash: ReportHash, day: NaiveDate) -> Option<(ReportHash, NaiveDate)> {
        self.keys.push((hash, day));
        if self.keys.len() <= ROW_KEYS {
            return None;
        }
        let out = self.keys.remove(0);
        self.spilled = Some(self.spilled.map_or(day, |d| d.max(day)));
        Some(out)
    }
}

/// Key of a daily event count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey {
    pub day: NaiveDate,
    pub product: String,
    pub event: Event,
    pub version: String,
    /// '' when none.
    pub previous_version: String,
    /// '' when none.
    pub edition: String,
}

/// Key of an instance value aggregate (instances per value per day).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValueKey {
    pub product: String,
    pub day: NaiveDate,
    /// `version`, `attribute` or `feature`.
    pub kind: &'static str,
    /// The attribute or feature ('' for the version).
    pub name: String,
    pub value: String,
}

/// Key of a counter aggregate (instances and sum per bucket per day).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterKey {
    pub product: String,
    pub day: NaiveDate,
    pub counter: String,
    /// Lower bound of the value's bucket ([`bucket_of`]).
    pub bucket: i64,
}

/// Key of an all-days value total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValueTotalKey<'a> {
    pub product: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub value: &'a str,
}

/// Key of an all-days counter total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterTotalKey<'a> {
    pub product: &'a str,
    pub counter: &'a str,
    pub bucket: i64,
}

/// The change of a counter aggregate row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    /// Instances in the bucket.
    pub instances: i64,
    /// Sum of their values.
    pub total: i64,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        self.instances += other.instances;
        self.total += other.total;
    }

    fn is_zero(&self) -> bool {
        self.instances == 0 && self.total == 0
    }
}

/// Whether the all-days totals whose delta came to zero are written anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zeros {
    /// Left out: they would change nothing.
    Skip,
    /// Written (adding zero): an erasure of an unknown id must do the same
    /// work as one of a stored id.
    Write,
}

/// Changes of the per-day aggregates; the all-days totals follow from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas {
    pub values: BTreeMap<ValueKey, i64>,
    pub counters: BTreeMap<CounterKey, Sums>,
}

impl Deltas {
    /// Adds `sign` times a snapshot's contribution: 1 puts it in, -1 takes
    /// it out, 0 touches the same rows without changing them.
    pub fn contribute(&mut self, s: &Snapshot, sign: i64) {
        let mut add = |kind: &'static str, name: &str, value: &str| {
            let key = ValueKey {
                product: s.product.clone(),
                day: s.last_seen,
                kind,
                name: name.to_owned(),
                value: value.to_owned(),
            };
            *self.values.entry(key).or_default() += sign;
        };
        add("version", "", &s.version);
        for (name, value) in &s.state.attributes {
            add("attribute", name, value);
        }
        for (name, on) in &s.state.features {
            add("feature", name, if *on { "true" } else { "false" });
        }
        for (name, n) in &s.state.counters {
            let key = CounterKey {
                product: s.product.clone(),
                day: s.last_seen,
                counter: name.clone(),
                bucket: bucket_of(*n),
            };
            self.counters.entry(key).or_default().add(Sums {
                instances: sign,
                total: sign * n,
            });
        }
    }

    /// Drops the rows that would not change.
    pub fn without_zeros(mut self) -> Deltas {
        self.values.retain(|_, d| *d != 0);
        self.counters.retain(|_, d| !d.is_zero());
        self
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.counters.is_empty()
    }

    /// The changes of the all-days value totals. An instance that only
    /// moved to a later day changes no total, so most deltas cancel out.
    pub fn value_totals(&self, zeros: Zeros) -> BTreeMap<ValueTotalKey<'_>, i64> {
        let mut totals: BTreeMap<ValueTotalKey<'_>, i64> = BTreeMap::new();
        for (k, n) in &self.values {
            let key = ValueTotalKey {
                product: &k.product,
                kind: k.kind,
                name: &k.name,
                value: &k.value,
            };
            *totals.entry(key).or_default() += n;
        }
        totals.retain(|_, n| zeros == Zeros::Write || *n != 0);
        totals
    }

    /// The changes of the all-days counter totals.
    pub fn counter_totals(&self, zeros: Zeros) -> BTreeMap<CounterTotalKey<'_>, Sums> {
        let mut totals: BTreeMap<CounterTotalKey<'_>, Sums> = BTreeMap::new();
        for (k, sums) in &self.counters {
            let key = CounterTotalKey {
                product: &k.product,
                counter: &k.counter,
                bucket: k.bucket,
            };
            totals.entry(key).or_default().add(*sums);
        }
        totals.retain(|_, s| zeros == Zeros::Write || !s.is_zero());
        totals
    }
}

/// The deltas that take these snapshots out of the aggregates.
pub fn removal<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> Deltas {
    let mut deltas = Deltas::default();
    for s in snapshots {
        deltas.contribute(s, -1);
    }
    deltas.without_zeros()
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

/// The instances of a batch, in key order: the rows to read (and on
/// PostgreSQL lock) before planning it.
pub fn instances_of(records: &[Record]) -> Vec<InstanceHash> {
    let hashes: BTreeSet<InstanceHash> = records
        .iter()
        .filter_map(|r| r.instance.as_ref().map(|i| i.hash))
        .collect();
    hashes.into_iter().collect()
}

/// The keys the key store holds for a batch, each once with the day of its
/// first report, in key order: those of reports without an instance, and
/// those of reports whose stored instance has spilled keys there and whose
/// row does not hold them. They are inserted before the batch is planned:
/// the ones that were stored already are duplicates.
pub fn store_keys(
    records: &[Record],
    instances: &HashMap<InstanceHash, Instance>,
    window: DedupeWindow,
) -> Vec<(ReportHash, NaiveDate)> {
    let mut seen = HashSet::new();
    let mut keys: Vec<(ReportHash, NaiveDate)> = records
        .iter()
        .filter_map(|r| {
            let hash = r.report_hash?;
            let in_store = match &r.instance {
                None => true,
                Some(i) => instances
                    .get(&i.hash)
                    .is_some_and(|s| s.keys.spills_on(r.day, window) && !s.keys.holds(&hash)),
            };
            in_store.then_some((hash, r.day))
        })
        .filter(|(h, _)| seen.insert(*h))
        .collect();
    keys.sort();
    keys
}

/// What the store holds of a batch, read before it is planned.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The stored rows of the batch's instances.
    pub instances: HashMap<InstanceHash, Instance>,
    /// The batch's keys that the key store held before it.
    pub keys: HashSet<ReportHash>,
}

/// What a batch changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One per record of the batch.
    pub outcomes: Vec<Outcome>,
    /// Report counts per day, to add.
    pub events: BTreeMap<EventKey, i64>,
    /// Instances not stored before, to insert, in key order.
    pub inserted: Vec<Instance>,
    /// Stored instances, whose rows these replace, in key order.
    pub updated: Vec<Instance>,
    /// Keys pushed out of a row within the dedupe window, for the key
    /// store, in key order.
    pub spilled: Vec<(ReportHash, NaiveDate)>,
    /// Aggregate changes, without zeros.
    pub deltas: Deltas,
}

/// An instance's reports in a batch.
struct Reports<'a> {
    last: &'a Record,
    first_day: NaiveDate,
    keys: Vec<(ReportHash, NaiveDate)>,
}

/// Plans a batch of `records` against what the store holds of it.
pub fn plan(records: &[Record], stored: &Stored, window: DedupeWindow) -> Plan {
    let outcomes = outcomes(records, stored);
    let accepted: Vec<&Record> = records
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == Outcome::Accepted)
        .map(|(r, _)| r)
        .collect();
    let (events, upgrades) = classify(&accepted, &stored.instances);
    let mut batch: BTreeMap<InstanceHash, Reports<'_>> = BTreeMap::new();
    for r in &accepted {
        if let Some(inst) = &r.instance {
            let reports = batch.entry(inst.hash).or_insert(Reports {
                last: r,
                first_day: r.day,
                keys: Vec::new(),
            });
            reports.last = r;
            reports.keys.extend(r.report_hash.map(|h| (h, r.day)));
        }
    }
    let mut plan = Plan {
        outcomes,
        events,
        inserted: Vec::new(),
        updated: Vec::new(),
        spilled: Vec::new(),
        deltas: Deltas::default(),
    };
    for (hash, reports) in batch {
        let old = stored.instances.get(&hash);
        let mut keys = old.map(|o| o.keys.clone()).unwrap_or_default();
        // An install that has spilled keys keeps the new ones in the key
        // store too ([`store_keys`]): its row stays as it is, and its mark
        // moves to the day of its latest report.
        let before = keys.clone();
        keys.expire(window.start(reports.last.day));
        for (h, day) in reports.keys {
            if before.spills_on(day, window) {
                keys.spilled = Some(keys.spilled.map_or(day, |d| d.max(day)));
            } else {
                plan.spilled.extend(keys.push(h, day));
            }
        }
        let new = Instance {
            hash,
            first_seen: old.map_or(reports.first_day, |o| o.first_seen),
            snapshot: snapshot_of(reports.last),
            // An instance that did not update keeps its last update.
            upgrade: upgrades
                .get(&hash)
                .cloned()
                .or_else(|| old.and_then(|o| o.upgrade.clone())),
            keys,
        };
        if let Some(old) = old {
            plan.deltas.contribute(&old.snapshot, -1);
        }
        plan.deltas.contribute(&new.snapshot, 1);
        match old {
            Some(_) => plan.updated.push(new),
            None => plan.inserted.push(new),
        }
    }
    plan.spilled.sort();
    plan.deltas = plan.deltas.without_zeros();
    plan
}

/// Each report's outcome: a duplicate when an earlier report of the batch,
/// its instance's row or the key store carries its key.
fn outcomes(records: &[Record], stored: &Stored) -> Vec<Outcome> {
    let mut seen = HashSet::new();
    records
        .iter()
        .map(|r| {
            let Some(hash) = r.report_hash else {
                return Outcome::Accepted;
            };
            let in_row = r
                .instance
                .as_ref()
                .and_then(|i| stored.instances.get(&i.hash))
                .is_some_and(|i| i.keys.holds(&hash));
            if !seen.insert(hash) || in_row || stored.keys.contains(&hash) {
                Outcome::Duplicate
            } else {
                Outcome::Accepted
            }
        })
        .collect()
}

/// The snapshot a report gives its instance.
fn snapshot_of(r: &Record) -> Snapshot {
    Snapshot {
        product: r.product.clone(),
        version: r.version.clone(),
        last_seen: r.day,
        state: r
            .instance
            .as_ref()
            .map(|i| i.state.clone())
            .unwrap_or_default(),
    }
}

/// Walks the reports in order to count events per day, telling updates in
/// legacy reports from the version known before them, and keeps each
/// instance's latest update of the batch: the releases count one update
/// per install, however many update reports it sent.
fn classify(
    accepted: &[&Record],
    stored: &HashMap<InstanceHash, Instance>,
) -> (BTreeMap<EventKey, i64>, HashMap<InstanceHash, Upgrade>) {
    let mut running: HashMap<InstanceHash, String> = stored
        .iter()
        .map(|(h, i)| (*h, i.snapshot.version.clone()))
        .collect();
    let mut events: BTreeMap<EventKey, i64> = BTreeMap::new();
    let mut upgrades = HashMap::new();
    for r in accepted {
        let (mut event, mut previous) = (r.event, r.previous_version.clone());
        if let Some(inst) = &r.instance {
            match running.get(&inst.hash) {
                Some(v) if r.infer_update && *v != r.version => {
                    event = Event::Update;
                    previous = Some(v.clone());
                }
                _ => {}
            }
            running.insert(inst.hash, r.version.clone());
            if event == Event::Update {
                let from = previous.clone().unwrap_or_default();
                let to = r.version.clone();
                upgrades.insert(
                    inst.hash,
                    Upgrade {
                        from,
                        to,
                        on: r.day,
                    },
                );
            }
        }
        let key = EventKey {
            day: r.day,
            product: r.product.clone(),
            event,
            version: r.version.clone(),
            previous_version: previous.unwrap_or_default(),
            edition: r.edition.clone().unwrap_or_default(),
        };
        *events.entry(key).or_default() += 1;
    }
    (events, upgrades)
}

#[cfg(test)]
mod tests;
