//! The reporting SQL: one function per aggregate read, each a range scan
//! over a primary key of an aggregate table (never over `instances`).
//!
//! Statements are plain SQL that both backends read the same way; dates are
//! computed in Rust and bound, and grouping into weeks and months happens in
//! Rust, so that no date function of either backend is needed. The only
//! difference is the placeholder syntax, handled by
//! `db::load_sql!`.

use std::collections::HashMap;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Text};

use crate::db::{load_sql, DbConn};

/// Instances of active snapshots per (name, value) of one kind.
#[derive(Debug, Clone, QueryableByName)]
pub struct ValueCount {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub value: String,
    #[diesel(sql_type = BigInt)]
    pub instances: i64,
}

/// Where "active since" is computed from (see [`Plan::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// No aggregate row at all: nothing to read.
    Empty,
    /// Sum the per-day rows from `since` on.
    Window,
    /// The all-days totals minus the per-day rows before `since`.
    TotalsMinusBefore,
}

impl Plan {
    /// Picks the shorter scan: the days stored before `since` or the days
    /// from `since` on. `span` is the oldest and newest `last_seen` stored,
    /// two primary-key lookups. Retention keeps instances for a little longer
    /// than the default window, so the days before it are usually few.
    fn of(span: (Option<NaiveDate>, Option<NaiveDate>), since: NaiveDate) -> Plan {
        match span {
            (Some(oldest), Some(newest)) => {
                let before = (since - oldest).num_days();
                let within = (newest - since).num_days() + 1;
                if before < within {
                    Plan::TotalsMinusBefore
                } else {
                    Plan::Window
                }
            }
            _ => Plan::Empty,
        }
    }
}

/// Oldest and newest `last_seen` of a product in `table` (an aggregate
/// keyed by (product, last_seen, ..)): each an index lookup.
fn day_span(
    conn: &mut DbConn,
    table: &str,
    product: &str,
) -> QueryResult<(Option<NaiveDate>, Option<NaiveDate>)> {
    #[derive(QueryableByName)]
    struct Span {
        #[diesel(sql_type = Nullable<Date>)]
        oldest: Option<NaiveDate>,
        #[diesel(sql_type = Nullable<Date>)]
        newest: Option<NaiveDate>,
    }
    // Two subqueries: SQLite answers a lone MIN or MAX from the index, not
    // both in one SELECT.
    let sql = format!(
        "SELECT (SELECT MIN(last_seen) FROM {table} WHERE product = ?) AS oldest, \
         (SELECT MAX(last_seen) FROM {table} WHERE product = ?) AS newest"
    );
    let rows = load_sql!(conn, &sql, Span, |q| q
        .bind::<Text, _>(product)
        .bind::<Text, _>(product))?;
    Ok(rows
        .into_iter()
        .next()
        .map_or((None, None), |s| (s.oldest, s.newest)))
}

/// Sums `instance_values` of `kind` (and `name`, when given) over instances
/// last seen on or after `since`: from the per-day rows of the window, or
/// as the all-days totals minus the days before it, whichever reads fewer
/// rows (same answer; groups whose count is zero may or may not appear).
pub fn value_counts(
    conn: &mut DbConn,
    product: &str,
    since: NaiveDate,
    kind: &str,
    name: Option<&str>,
) -> QueryResult<Vec<ValueCount>> {
    match Plan::of(day_span(conn, "instance_values", product)?, since) {
        Plan::Empty => Ok(Vec::new()),
        Plan::Window => value_counts_per_day(conn, product, since, ">=", kind, name),
        Plan::TotalsMinusBefore => {
            let mut counts: HashMap<(String, String), i64> =
                value_totals(conn, product, kind, name)?
                    .into_iter()
                    .map(|r| ((r.name, r.value), r.instances))
                    .collect();
            for r in value_counts_per_day(conn, product, since, "<", kind, name)? {
                *counts.entry((r.name, r.value)).or_default() -= r.instances;
            }
            Ok(counts
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .map(|((name, value), instances)| ValueCount {
                    name,
                    value,
                    instances,
                })
                .collect())
        }
    }
}

/// All-days totals of `instance_values` of `kind` (and `name`).
fn value_totals(
    conn: &mut DbConn,
    product: &str,
    kind: &str,
    name: Option<&str>,
) -> QueryResult<Vec<ValueCount>> {
    let sql = format!(
        "SELECT name, value, instances FROM instance_value_totals \
         WHERE product = ? AND kind = ?{}",
        if name.is_some() { " AND name = ?" } else { "" }
    );
    let name = name.unwrap_or_default();
    let with_name = !name.is_empty();
    load_sql!(conn, &sql, ValueCount, |q| {
        let q = q.bind::<Text, _>(product).bind::<Text, _>(kind);
        if with_name {
            q.bind::<Text, _>(name)
        } else {
            q
        }
    })
}

/// Sums `instance_values` of `kind` (and `name`) over the days compared
/// with `since` by `op` (`>=`: the window, `<`: the days before it).
fn value_counts_per_day(
    conn: &mut DbConn,
    product: &str,
    since: NaiveDate,
    op: &str,
    kind: &str,
    name: Option<&str>,
) -> QueryResult<Vec<ValueCount>> {
    let sql = format!(
        "SELECT name, value, CAST(SUM(instances) AS BIGINT) AS instances \
         FROM instance_values \
         WHERE product = ? AND last_seen {op} ? AND kind = ?{} \
         GROUP BY name, value",
        if name.is_some() { " AND name = ?" } else { "" }
    );
    let name = name.unwrap_or_default();
    let with_name = !name.is_empty();
    load_sql!(conn, &sql, ValueCount, |q| {
        let q = q
            .bind::<Text, _>(product)
            .bind::<Date, _>(since)
            .bind::<Text, _>(kind);
        if with_name {
            q.bind::<Text, _>(name)
        } else {
            q
        }
    })
}

/// One fine bucket of a counter, summed over active instances.
#[derive(Debug, Clone, QueryableByName)]
pub struct CounterBucket {
    #[diesel(sql_type = Text)]
    pub counter: String,
    #[diesel(sql_type = BigInt)]
    pub bucket: i64,
    #[diesel(sql_type = BigInt)]
    pub instances: i64,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

/// Sums `instance_counters` per counter and fine bucket over instances last
/// seen on or after `since`, like [`value_counts`] from the window or from
/// the all-days totals minus the days before it.
pub fn counter_buckets(
    conn: &mut DbConn,
    product: &str,
    since: NaiveDate,
) -> QueryResult<Vec<CounterBucket>> {
    match Plan::of(day_span(conn, "instance_counters", product)?, since) {
        Plan::Empty => Ok(Vec::new()),
        Plan::Window => counter_buckets_per_day(conn, product, since, ">="),
        Plan::TotalsMinusBefore => {
            let sql = "SELECT counter, bucket, instances, total \
                       FROM instance_counter_totals WHERE product = ?";
            let totals = load_sql!(conn, sql, CounterBucket, |q| q.bind::<Text, _>(product))?;
            let mut buckets: HashMap<(String, i64), (i64, i64)> = totals
                .into_iter()
                .map(|r| ((r.counter, r.bucket), (r.instances, r.total)))
                .collect();
            for r in counter_buckets_per_day(conn, product, since, "<")? {
                let e = buckets.entry((r.counter, r.bucket)).or_default();
                e.0 -= r.instances;
                e.1 -= r.total;
            }
            Ok(buckets
                .into_iter()
                .filter(|(_, (n, t))| *n != 0 || *t != 0)
                .map(|((counter, bucket), (instances, total))| CounterBucket {
                    counter,
                    bucket,
                    instances,
                    total,
                })
                .collect())
        }
    }
}

/// Sums `instance_counters` per counter and bucket over the days compared
/// with `since` by `op`.
fn counter_buckets_per_day(
    conn: &mut DbConn,
    product: &str,
    since: NaiveDate,
    op: &str,
) -> QueryResult<Vec<CounterBucket>> {
    let sql = format!(
        "SELECT counter, bucket, CAST(SUM(instances) AS BIGINT) AS instances, \
         CAST(SUM(total) AS BIGINT) AS total \
         FROM instance_counters \
         WHERE product = ? AND last_seen {op} ? \
         GROUP BY counter, bucket"
    );
    load_sql!(conn, &sql, CounterBucket, |q| q
        .bind::<Text, _>(product)
        .bind::<Date, _>(since))
}

/// Reports of one day, event and (optionally) version or edition.
#[derive(Debug, Clone, QueryableByName)]
pub struct DayEvents {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Text)]
    pub product: String,
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Text)]
    pub label: String,
    #[diesel(sql_type = BigInt)]
    pub reports: i64,
}

/// Which `daily_events` column event counts are split by, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSplit {
    None,
    Version,
    Edition,
}

/// Sums `daily_events` per day, event and split column from `from` to `to`
/// (inclusive), for `product`.
///
/// The product is filtered here rather than in SQL: grouping by a prefix of
/// the primary key (day, product, event, version) lets SQLite aggregate in
/// key order without sorting, which an equality filter on `product` would
/// prevent. Collectors usually serve one product, so nothing is read twice.
pub fn day_events(
    conn: &mut DbConn,
    product: &str,
    from: NaiveDate,
    to: NaiveDate,
    split: EventSplit,
) -> QueryResult<Vec<DayEvents>> {
    let (label, group) = match split {
        EventSplit::None => ("''", ""),
        EventSplit::Version => ("version", ", version"),
        EventSplit::Edition => ("edition", ", edition"),
    };
    let sql = format!(
        "SELECT day, product, event, {label} AS label, CAST(SUM(reports) AS BIGINT) AS reports \
         FROM daily_events \
         WHERE day >= ? AND day <= ? \
         GROUP BY day, product, event{group}"
    );
    let mut rows = load_sql!(conn, &sql, DayEvents, |q| q
        .bind::<Date, _>(from)
        .bind::<Date, _>(to))?;
    rows.retain(|r| r.product == product);
    Ok(rows)
}

/// Install and update reports of a product from `from` to `to`.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct EventTotals {
    #[diesel(sql_type = BigInt, column_name = installs)]
    pub install: i64,
    #[diesel(sql_type = BigInt, column_name = updates)]
    pub update: i64,
}

/// Totals of install and update reports from `from` to `to` (inclusive), in
/// one pass without grouping.
pub fn event_totals(
    conn: &mut DbConn,
    product: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<EventTotals> {
    let sql = "SELECT \
               CAST(COALESCE(SUM(CASE WHEN event = 'install' THEN reports ELSE 0 END), 0) AS BIGINT) AS installs, \
               CAST(COALESCE(SUM(CASE WHEN event = 'update' THEN reports ELSE 0 END), 0) AS BIGINT) AS updates \
               FROM daily_events \
               WHERE day >= ? AND day <= ? AND product = ?";
    let rows = load_sql!(conn, sql, EventTotals, |q| q
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .bind::<Text, _>(product))?;
    Ok(rows.into_iter().next().unwrap_or(EventTotals {
        install: 0,
        update: 0,
    }))
}

/// A value that changes whenever reports are stored or an install is
/// erased: the reports counted on `since` and later, the number of such
/// rows, and the erasure counter ([`store::ERASURES_SETTING`]). Every write
/// adds reports to `daily_events` on the day it is stored, so with `since` =
/// yesterday (a collector's clock may lag across midnight) any write changes
/// it; an erasure can take out an install last seen long ago, so it is
/// counted apart.
///
/// [`store::ERASURES_SETTING`]: crate::store::ERASURES_SETTING
pub fn change_marker(conn: &mut DbConn, since: NaiveDate) -> QueryResult<(i64, i64, i64)> {
    #[derive(QueryableByName)]
    struct Marker {
        #[diesel(sql_type = BigInt)]
        reports: i64,
        #[diesel(sql_type = BigInt)]
        keys: i64,
        #[diesel(sql_type = BigInt)]
        erasures: i64,
    }
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(reports), 0) AS BIGINT) AS reports, \
         CAST(COUNT(*) AS BIGINT) AS keys, \
         CAST(COALESCE((SELECT CAST(value AS BIGINT) FROM settings WHERE name = '{}'), 0) \
         AS BIGINT) AS erasures \
         FROM daily_events WHERE day >= ?",
        crate::store::ERASURES_SETTING
    );
    let rows = load_sql!(conn, &sql, Marker, |q| q.bind::<Date, _>(since))?;
    Ok(rows
        .first()
        .map(|m| (m.reports, m.keys, m.erasures))
        .unwrap_or((0, 0, 0)))
}

/// Reports of one upgrade path.
#[derive(Debug, Clone, QueryableByName)]
pub struct UpgradeCount {
    #[diesel(sql_type = Text)]
    pub previous_version: String,
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = BigInt)]
    pub reports: i64,
}

/// Sums update reports per (previous version, version) from `from` to `to`
/// (inclusive). Updates that did not say which version they came from are
/// not paths and are left out.
pub fn upgrade_counts(
    conn: &mut DbConn,
    product: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<Vec<UpgradeCount>> {
    let sql = "SELECT previous_version, version, CAST(SUM(reports) AS BIGINT) AS reports \
               FROM daily_events \
               WHERE day >= ? AND day <= ? AND product = ? \
               AND event = 'update' AND previous_version <> '' \
               GROUP BY previous_version, version";
    load_sql!(conn, sql, UpgradeCount, |q| q
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .bind::<Text, _>(product))
}

#[cfg(test)]
mod tests {
    use crate::db::numbered_placeholders;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            numbered_placeholders("a = ? AND b >= ? AND c = ?"),
            "a = $1 AND b >= $2 AND c = $3"
        );
    }
}
