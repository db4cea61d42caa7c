//! Reporting: what maintainers may learn from the aggregates, k-anonymous.
//!
//! One function per report, taking a [`DbConn`] and a checked [`Query`] and
//! returning a typed, serialisable report. The HTTP stats API
//! (`routes::stats`) and the `anonstats stats` command both call these, so
//! that their JSON is the same. Reports read only the incrementally
//! maintained aggregates (`daily_events`, `instance_values`,
//! `instance_counters`) by primary-key range, never `instances`; the SQL is
//! in [`query`], the rules deciding what may be shown in [`anonymity`], and
//! the CSV and table renderings in [`output`].

pub mod anonymity;
pub mod cache;
pub mod output;
pub mod params;
pub mod query;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::QueryResult;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::db::DbConn;
pub use anonymity::{HistogramBucket, Suppressed, OTHER};
pub use params::{By, Interval, ParamError, Params, Query, Settings, StatsToken};
use query::EventSplit;

/// The reports, by the name used in URLs and on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Report {
    Summary,
    Events,
    Versions,
    Attribute(String),
    Counters,
    Features,
    Upgrades,
}

/// Any report's output, for code that renders whichever was asked.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Output {
    Summary(Summary),
    Events(EventsReport),
    Versions(VersionsReport),
    Attribute(AttributeReport),
    Counters(CountersReport),
    Features(FeaturesReport),
    Upgrades(UpgradesReport),
}

/// Runs one report. `catalog` checks the attribute name and orders rows.
pub fn run(
    conn: &mut DbConn,
    catalog: &Catalog,
    report: &Report,
    query: &Query,
) -> QueryResult<Output> {
    Ok(match report {
        Report::Summary => Output::Summary(summary(conn, query)?),
        Report::Events => Output::Events(events(conn, query)?),
        Report::Versions => Output::Versions(versions(conn, query)?),
        Report::Attribute(name) => Output::Attribute(attribute(conn, query, name)?),
        Report::Counters => Output::Counters(counters(conn, catalog, query)?),
        Report::Features => Output::Features(features(conn, catalog, query)?),
        Report::Upgrades => Output::Upgrades(upgrades(conn, query)?),
    })
}

/// Event totals of a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventTotals {
    /// Install reports from `from` to `to`; `null` when 1 to k-1.
    pub install: Option<i64>,
    /// Update reports from `from` to `to`; `null` when 1 to k-1.
    pub update: Option<i64>,
}

/// `summary`: how many instances are active, how many reports came in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub product: String,
    /// Instances whose last report is within the active window; `null` when
    /// 1 to k-1.
    pub active_instances: Option<i64>,
    pub events: EventTotals,
    pub k: u32,
    pub active_days: u32,
    /// Last day of the active window (today, UTC).
    pub as_of: NaiveDate,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub suppressed: Suppressed,
}

/// Summary figures.
pub fn summary(conn: &mut DbConn, q: &Query) -> QueryResult<Summary> {
    let mut suppressed = Suppressed::default();
    let active: i64 = query::value_counts(conn, &q.product, q.active_since(), "version", None)?
        .iter()
        .map(|r| r.instances)
        .sum();
    let totals = query::event_totals(conn, &q.product, q.from, q.to)?;
    let events = EventTotals {
        install: anonymity::guard(totals.install, q.k(), &mut suppressed),
        update: anonymity::guard(totals.update, q.k(), &mut suppressed),
    };
    Ok(Summary {
        product: q.product.clone(),
        active_instances: anonymity::guard(active, q.k(), &mut suppressed),
        events,
        k: q.k,
        active_days: q.active_days,
        as_of: q.today,
        from: q.from,
        to: q.to,
        suppressed,
    })
}

/// One row of `events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// First day of the period (YYYY-MM-DD, also for weeks and months).
    pub period: NaiveDate,
    pub event: String,
    /// With `by=version`: the version reported (`other` for folded ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// With `by=edition`: the edition reported, `""` when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    pub reports: i64,
}

/// `events`: install and update reports per period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventsReport {
    pub product: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub interval: Interval,
    pub by: Option<By>,
    pub k: u32,
    pub rows: Vec<EventRow>,
    pub suppressed: Suppressed,
}

/// Event counts per period (and version or edition). Periods are counted
/// over the days within `from`..`to` only, so the first and last week or
/// month may be partial.
pub fn events(conn: &mut DbConn, q: &Query) -> QueryResult<EventsReport> {
    let split = match q.by {
        None => EventSplit::None,
        Some(By::Version) => EventSplit::Version,
        Some(By::Edition) => EventSplit::Edition,
    };
    let mut groups: BTreeMap<(NaiveDate, String), BTreeMap<String, i64>> = BTreeMap::new();
    for r in query::day_events(conn, &q.product, q.from, q.to, split)? {
        *groups
            .entry((q.interval.period_start(r.day), r.event))
            .or_default()
            .entry(r.label)
            .or_default() += r.reports;
    }
    let mut suppressed = Suppressed::default();
    let mut rows = Vec::new();
    for ((period, event), labels) in groups {
        let row = |label: Option<String>, reports| EventRow {
            period,
            event: event.clone(),
            version: label.clone().filter(|_| q.by == Some(By::Version)),
            edition: label.filter(|_| q.by == Some(By::Edition)),
            reports,
        };
        if q.by.is_none() {
            let n = labels.values().sum();
            if let Some(n) = anonymity::guard(n, q.k(), &mut suppressed).filter(|n| *n > 0) {
                rows.push(row(None, n));
            }
        } else {
            let folded = anonymity::fold(labels, q.k(), &OTHER.to_owned());
            suppressed.add(folded.suppressed);
            rows.extend(folded.rows.into_iter().map(|(l, n)| row(Some(l), n)));
        }
    }
    Ok(EventsReport {
        product: q.product.clone(),
        from: q.from,
        to: q.to,
        interval: q.interval,
        by: q.by,
        k: q.k,
        rows,
        suppressed,
    })
}

/// One row of `versions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRow {
    pub version: String,
    pub instances: i64,
    /// Of all active instances, 0 to 1, four decimals.
    pub share: f64,
}

/// `versions`: active instances per version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionsReport {
    pub product: String,
    pub k: u32,
    pub active_days: u32,
    pub as_of: NaiveDate,
    pub rows: Vec<VersionRow>,
    pub suppressed: Suppressed,
}

/// Active instances per version.
pub fn versions(conn: &mut DbConn, q: &Query) -> QueryResult<VersionsReport> {
    let (rows, suppressed) = shares(conn, q, "version", None)?;
    Ok(VersionsReport {
        product: q.product.clone(),
        k: q.k,
        active_days: q.active_days,
        as_of: q.today,
        rows: rows
            .into_iter()
            .map(|(version, instances, share)| VersionRow {
                version,
                instances,
                share,
            })
            .collect(),
        suppressed,
    })
}

/// One row of `attributes/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueRow {
    pub value: String,
    pub instances: i64,
    /// Of active instances that reported the attribute, 0 to 1.
    pub share: f64,
}

/// `attributes/{name}`: active instances per value of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeReport {
    pub product: String,
    pub attribute: String,
    pub k: u32,
    pub active_days: u32,
    pub as_of: NaiveDate,
    pub rows: Vec<ValueRow>,
    pub suppressed: Suppressed,
}

/// Active instances per value of the attribute `name` (checked against the
/// catalog by the caller).
pub fn attribute(conn: &mut DbConn, q: &Query, name: &str) -> QueryResult<AttributeReport> {
    let (rows, suppressed) = shares(conn, q, "attribute", Some(name))?;
    Ok(AttributeReport {
        product: q.product.clone(),
        attribute: name.to_owned(),
        k: q.k,
        active_days: q.active_days,
        as_of: q.today,
        rows: rows
            .into_iter()
            .map(|(value, instances, share)| ValueRow {
                value,
                instances,
                share,
            })
            .collect(),
        suppressed,
    })
}

/// A shown value with its instances and share.
type ShareRow = (String, i64, f64);

/// Folded (value, instances, share) rows of one kind and name.
fn shares(
    conn: &mut DbConn,
    q: &Query,
    kind: &str,
    name: Option<&str>,
) -> QueryResult<(Vec<ShareRow>, Suppressed)> {
    let groups: BTreeMap<String, i64> =
        query::value_counts(conn, &q.product, q.active_since(), kind, name)?
            .into_iter()
            .map(|r| (r.value, r.instances))
            .collect();
    let whole: i64 = groups.values().filter(|n| **n > 0).sum();
    let folded = anonymity::fold(groups, q.k(), &OTHER.to_owned());
    let rows = folded
        .rows
        .into_iter()
        .map(|(v, n)| (v, n, anonymity::share(n, whole)))
        .collect();
    Ok((rows, folded.suppressed))
}

/// One row of `counters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterRow {
    pub counter: String,
    /// Active instances that reported the counter.
    pub instances: i64,
    /// Sum of their values (exact); `null` when one install dominates it
    /// (see the documentation).
    pub total: Option<i64>,
    /// total / instances, two decimals; `null` with the total.
    pub mean: Option<f64>,
    /// Median, as the lower bound of its storage bucket; `null` when it
    /// would be too close to an extreme (see the documentation).
    pub p50: Option<i64>,
    /// 90th percentile, like `p50`.
    pub p90: Option<i64>,
    pub histogram: Vec<HistogramBucket>,
}

/// `counters`: size statistics over active instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountersReport {
    pub product: String,
    pub k: u32,
    pub active_days: u32,
    pub as_of: NaiveDate,
    pub rows: Vec<CounterRow>,
    pub suppressed: Suppressed,
}

/// Counter statistics, in catalog order, for counters at least k active
/// instances reported.
pub fn counters(conn: &mut DbConn, catalog: &Catalog, q: &Query) -> QueryResult<CountersReport> {
    let mut buckets: BTreeMap<String, BTreeMap<i64, (i64, i64)>> = BTreeMap::new();
    for r in query::counter_buckets(conn, &q.product, q.active_since())? {
        let e = buckets
            .entry(r.counter)
            .or_default()
            .entry(r.bucket)
            .or_default();
        e.0 += r.instances;
        e.1 += r.total;
    }
    let mut suppressed = Suppressed::default();
    let mut rows = Vec::new();
    for name in catalog_order(
        catalog
            .product(&q.product)
            .map(|p| p.counters.keys().cloned().collect())
            .unwrap_or_default(),
        buckets.keys().cloned().collect(),
    ) {
        let Some(b) = buckets.get(&name) else {
            continue;
        };
        if let Some(s) = anonymity::counter_stats(b, q.k(), &mut suppressed) {
            rows.push(CounterRow {
                counter: name,
                instances: s.instances,
                total: s.total,
                mean: s.mean,
                p50: s.p50,
                p90: s.p90,
                histogram: s.histogram,
            });
        }
    }
    Ok(CountersReport {
        product: q.product.clone(),
        k: q.k,
        active_days: q.active_days,
        as_of: q.today,
        rows,
        suppressed,
    })
}

/// One row of `features`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureRow {
    pub feature: String,
    /// Active instances with the feature switched on.
    pub enabled: i64,
    /// Active instances that reported the feature, on or off.
    pub instances: i64,
    /// enabled / instances, 0 to 1.
    pub share: f64,
}

/// `features`: adoption of each feature over active instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeaturesReport {
    pub product: String,
    pub k: u32,
    pub active_days: u32,
    pub as_of: NaiveDate,
    pub rows: Vec<FeatureRow>,
    pub suppressed: Suppressed,
}

/// Feature adoption, in catalog order. A feature is shown only when both
/// the instances with it on and those with it off are 0 or at least k.
pub fn features(conn: &mut DbConn, catalog: &Catalog, q: &Query) -> QueryResult<FeaturesReport> {
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in query::value_counts(conn, &q.product, q.active_since(), "feature", None)? {
        let e = counts.entry(r.name).or_default();
        if r.value == "true" {
            e.0 += r.instances;
        } else {
            e.1 += r.instances;
        }
    }
    let mut suppressed = Suppressed::default();
    let mut rows = Vec::new();
    for name in catalog_order(
        catalog
            .product(&q.product)
            .map(|p| p.features.keys().cloned().collect())
            .unwrap_or_default(),
        counts.keys().cloned().collect(),
    ) {
        let (on, off) = counts.get(&name).copied().unwrap_or_default();
        if on + off <= 0 {
            continue;
        }
        let shown = (on == 0 || on >= q.k()) && (off == 0 || off >= q.k());
        if !shown {
            suppressed.omitted += 1;
            continue;
        }
        rows.push(FeatureRow {
            feature: name,
            enabled: on,
            instances: on + off,
            share: anonymity::share(on, on + off),
        });
    }
    Ok(FeaturesReport {
        product: q.product.clone(),
        k: q.k,
        active_days: q.active_days,
        as_of: q.today,
        rows,
        suppressed,
    })
}

/// One row of `upgrades`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradeRow {
    /// Version updated from (`other` for folded paths).
    pub from: String,
    /// Version updated to (`other` for folded paths).
    pub to: String,
    pub reports: i64,
}

/// `upgrades`: update reports per path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpgradesReport {
    pub product: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub k: u32,
    pub rows: Vec<UpgradeRow>,
    pub suppressed: Suppressed,
}

/// Update reports per (from, to) path between `from` and `to`.
pub fn upgrades(conn: &mut DbConn, q: &Query) -> QueryResult<UpgradesReport> {
    let groups: BTreeMap<(String, String), i64> =
        query::upgrade_counts(conn, &q.product, q.from, q.to)?
            .into_iter()
            .map(|r| ((r.previous_version, r.version), r.reports))
            .collect();
    let folded = anonymity::fold(groups, q.k(), &(OTHER.to_owned(), OTHER.to_owned()));
    Ok(UpgradesReport {
        product: q.product.clone(),
        from: q.from,
        to: q.to,
        k: q.k,
        rows: folded
            .rows
            .into_iter()
            .map(|((from, to), reports)| UpgradeRow { from, to, reports })
            .collect(),
        suppressed: folded.suppressed,
    })
}

/// Catalog names first, in catalog order, then any stored name the catalog
/// no longer lists (a replaced catalog must not hide stored data).
fn catalog_order(catalog: Vec<String>, stored: Vec<String>) -> Vec<String> {
    let mut out = catalog;
    for name in stored {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}
