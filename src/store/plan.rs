//! The write path's decisions, without a database: which reports of a batch
//! count, what each instance's snapshot becomes, which events are counted,
//! and how the aggregates move. Writes, erasures and retention all move the
//! aggregates with [`Deltas::contribute`], so that taking an install out
//! removes exactly what putting it in added.
//!
//! A batch is planned in two steps, because two collectors may write at
//! once and only the database can say which of them stored a key first:
//! [`report_keys`] gives the dedupe keys to insert, and [`Batch::new`]
//! takes the ones actually inserted; [`Batch::new_instances`] gives the
//! instances to insert if unknown, and [`Batch::plan`] takes the snapshots
//! of the ones that were known.
//!
//! Rules:
//! - a report whose `report_id` an earlier report of the batch, or a stored
//!   key, already carries is a duplicate and changes nothing;
//! - the last report of an instance in the batch gives its snapshot, the
//!   first one its `first_seen` when it is new;
//! - a legacy report saying `install` for an instance known at another
//!   version (stored, or earlier in the batch) counts as an update from it;
//! - an instance keeps its latest update (from, to, day) in its snapshot;
//! - an instance contributes its snapshot (product, day last seen,
//!   version, attributes, features, counter buckets) once to the
//!   aggregates: a batch moves the contribution from the stored snapshot
//!   to the new one, however many reports it holds.

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// The dedupe keys a batch stores: each report hash once, with the day of
/// its first report, in key order.
pub fn report_keys(records: &[Record]) -> Vec<(ReportHash, NaiveDate)> {
    let mut seen = HashSet::new();
    let mut keys: Vec<(ReportHash, NaiveDate)> = records
        .iter()
        .filter_map(|r| r.report_hash.map(|h| (h, r.day)))
        .filter(|(h, _)| seen.insert(*h))
        .collect();
    keys.sort();
    keys
}

/// Each report's outcome, given the keys of [`report_keys`] that were not
/// stored yet (`fresh`).
pub fn outcomes(records: &[Record], fresh: &HashSet<ReportHash>) -> Vec<Outcome> {
    let mut seen = HashSet::new();
    records
        .iter()
        .map(|r| match r.report_hash {
            Some(h) if !seen.insert(h) || !fresh.contains(&h) => Outcome::Duplicate,
            _ => Outcome::Accepted,
        })
        .collect()
}

/// A batch once its duplicates are known.
#[derive(Debug)]
pub struct Batch<'a> {
    outcomes: Vec<Outcome>,
    /// The reports that count, in order.
    accepted: Vec<&'a Record>,
    /// Per instance: its last report, and the day of its first one.
    latest: BTreeMap<InstanceHash, (&'a Record, NaiveDate)>,
}

/// What a batch changes, once the stored snapshots are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One per record of the batch.
    pub outcomes: Vec<Outcome>,
    /// Report counts per day, to add.
    pub events: BTreeMap<EventKey, i64>,
    /// Snapshots to store in place of the ones there: every known instance
    /// of the batch, and the new ones that updated in it (whose
    /// [`Batch::new_instances`] row holds no update).
    pub updated: Vec<Instance>,
    /// Aggregate changes, without zeros.
    pub deltas: Deltas,
}

impl<'a> Batch<'a> {
    /// The batch of `records`, given the keys of [`report_keys`] that were
    /// not stored yet.
    pub fn new(records: &'a [Record], fresh: &HashSet<ReportHash>) -> Batch<'a> {
        let outcomes = outcomes(records, fresh);
        let accepted: Vec<&Record> = records
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Outcome::Accepted)
            .map(|(r, _)| r)
            .collect();
        let mut latest = BTreeMap::new();
        for r in &accepted {
            if let Some(inst) = &r.instance {
                latest
                    .entry(inst.hash)
                    .and_modify(|e: &mut (&Record, NaiveDate)| e.0 = r)
                    .or_insert((*r, r.day));
            }
        }
        Batch {
            outcomes,
            accepted,
            latest,
        }
    }

    /// Each instance of the batch as it is stored if it was not known: its
    /// last report's snapshot, first seen on its first report's day, no
    /// update. In key order.
    pub fn new_instances(&self) -> Vec<Instance> {
        self.latest
            .iter()
            .map(|(hash, (r, first))| Instance {
                hash: *hash,
                first_seen: *first,
                snapshot: snapshot_of(r),
                upgrade: None,
            })
            .collect()
    }

    /// The plan, given the stored instances among [`Batch::new_instances`]
    /// (the others were inserted as new).
    pub fn plan(self, stored: &HashMap<InstanceHash, Instance>) -> Plan {
        let (events, upgrades) = classify(&self.accepted, stored);
        let news = self.new_instances();
        let updated = news
            .iter()
            .filter_map(|new| updated_instance(new, stored.get(&new.hash), &upgrades))
            .collect();
        let mut deltas = Deltas::default();
        for new in &news {
            if let Some(old) = stored.get(&new.hash) {
                deltas.contribute(&old.snapshot, -1);
            }
            deltas.contribute(&new.snapshot, 1);
        }
        Plan {
            outcomes: self.outcomes,
            events,
            updated,
            deltas: deltas.without_zeros(),
        }
    }
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

/// The snapshot that replaces a known instance's, or a new one's that
/// updated in the batch; `None` for a new one that did not (its inserted
/// row is right). An instance that did not update keeps its last update.
fn updated_instance(
    new: &Instance,
    old: Option<&Instance>,
    upgrades: &HashMap<InstanceHash, Upgrade>,
) -> Option<Instance> {
    let upgrade = match (upgrades.get(&new.hash), old) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(o)) => o.upgrade.clone(),
        (None, None) => return None,
    };
    Some(Instance {
        first_seen: old.map_or(new.first_seen, |o| o.first_seen),
        upgrade,
        ..new.clone()
    })
}

#[cfg(test)]
mod tests;
