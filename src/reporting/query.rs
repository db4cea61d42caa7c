//! The reporting SQL: one function per aggregate read, each a range scan
//! over a primary key of an aggregate table (never over `instances`).
//!
//! Statements are plain SQL that both backends read the same way; dates are
//! computed in Rust and bound, and grouping into weeks and months happens in
//! Rust, so that no date function of either backend is needed. The only
//! difference is the placeholder syntax, handled by [`load!`].

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};

use crate::db::DbConn;

/// Runs `sql` (written with `?` placeholders) as a boxed query with the
/// binds added by `$binds` and loads rows of type `$row`. PostgreSQL wants
/// `$1, $2, ...`.
macro_rules! load {
    ($conn:expr, $sql:expr, $row:ty, |$q:ident| $binds:expr) => {
        match $conn {
            DbConn::Pg(c) => {
                let $q = diesel::sql_query(numbered_placeholders($sql)).into_boxed();
                $binds.load::<$row>(c)
            }
            DbConn::Sqlite(c) => {
                let $q = diesel::sql_query($sql).into_boxed();
                $binds.load::<$row>(c)
            }
        }
    };
}

/// Rewrites `?` placeholders as `$1, $2, ...` (our statements have no `?`
/// inside literals).
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

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

/// Sums `instance_values` of `kind` (and `name`, when given) over instances
/// last seen on or after `since`.
pub fn value_counts(
    conn: &mut DbConn,
    product: &str,
    since: NaiveDate,
    kind: &str,
    name: Option<&str>,
) -> QueryResult<Vec<ValueCount>> {
    let sql = format!(
        "SELECT name, value, CAST(SUM(instances) AS BIGINT) AS instances \
         FROM instance_values \
         WHERE product = ? AND last_seen >= ? AND kind = ?{} \
         GROUP BY name, value",
        if name.is_some() { " AND name = ?" } else { "" }
    );
    let name = name.unwrap_or_default();
    let with_name = !name.is_empty();
    load!(conn, &sql, ValueCount, |q| {
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
/// seen on or after `since`.
pub fn counter_buckets(
    conn: &mut DbConn,
    product: &str,
    since: NaiveDate,
) -> QueryResult<Vec<CounterBucket>> {
    let sql = "SELECT counter, bucket, CAST(SUM(instances) AS BIGINT) AS instances, \
               CAST(SUM(total) AS BIGINT) AS total \
               FROM instance_counters \
               WHERE product = ? AND last_seen >= ? \
               GROUP BY counter, bucket";
    load!(conn, sql, CounterBucket, |q| q
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
    let mut rows = load!(conn, &sql, DayEvents, |q| q
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
    let rows = load!(conn, sql, EventTotals, |q| q
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .bind::<Text, _>(product))?;
    Ok(rows.into_iter().next().unwrap_or(EventTotals {
        install: 0,
        update: 0,
    }))
}

/// A value that changes whenever reports are stored: the reports counted on
/// `since` and later, and the number of such rows. Every write adds reports
/// to `daily_events` on the day it is stored, so with `since` = yesterday
/// (a collector's clock may lag across midnight) any write changes it.
pub fn change_marker(conn: &mut DbConn, since: NaiveDate) -> QueryResult<(i64, i64)> {
    #[derive(QueryableByName)]
    struct Marker {
        #[diesel(sql_type = BigInt)]
        reports: i64,
        #[diesel(sql_type = BigInt)]
        keys: i64,
    }
    let sql = "SELECT CAST(COALESCE(SUM(reports), 0) AS BIGINT) AS reports, \
               CAST(COUNT(*) AS BIGINT) AS keys FROM daily_events WHERE day >= ?";
    let rows = load!(conn, sql, Marker, |q| q.bind::<Date, _>(since))?;
    Ok(rows.first().map(|m| (m.reports, m.keys)).unwrap_or((0, 0)))
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
    load!(conn, sql, UpgradeCount, |q| q
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .bind::<Text, _>(product))
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            numbered_placeholders("a = ? AND b >= ? AND c = ?"),
            "a = $1 AND b >= $2 AND c = $3"
        );
    }
}
