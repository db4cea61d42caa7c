//! The `releases` table: one immutable row per public release, and the
//! instance snapshot reads releases are computed from.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::prelude::*;

use crate::db::DbConn;
use crate::release::Stored;
use crate::schema::{instances, releases};

#[derive(Queryable, Insertable)]
#[diesel(table_name = releases)]
struct Row {
    date: NaiveDate,
    body: String,
    sha256: String,
    mechanism: String,
    parameters: String,
    rho: f64,
}

impl From<Row> for Stored {
    fn from(r: Row) -> Stored {
        Stored {
            date: r.date,
            body: r.body,
            sha256: r.sha256,
            mechanism: r.mechanism,
            parameters: r.parameters,
            rho: r.rho,
        }
    }
}

/// Stores a release. A second release of the same date fails with a unique
/// violation: rows are only ever inserted.
pub fn insert(conn: &mut DbConn, s: &Stored) -> QueryResult<()> {
    let row = Row {
        date: s.date,
        body: s.body.clone(),
        sha256: s.sha256.clone(),
        mechanism: s.mechanism.clone(),
        parameters: s.parameters.clone(),
        rho: s.rho,
    };
    with_conn!(conn, |c| diesel::insert_into(releases::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

/// The release of `date`.
pub fn by_date(conn: &mut DbConn, date: NaiveDate) -> QueryResult<Option<Stored>> {
    let row: Option<Row> = with_conn!(conn, |c| releases::table
        .filter(releases::date.eq(date))
        .first::<Row>(c)
        .optional())?;
    Ok(row.map(Stored::from))
}

/// The latest release.
pub fn latest(conn: &mut DbConn) -> QueryResult<Option<Stored>> {
    let row: Option<Row> = with_conn!(conn, |c| releases::table
        .order(releases::date.desc())
        .first::<Row>(c)
        .optional())?;
    Ok(row.map(Stored::from))
}

/// Date of the latest release.
pub fn latest_date(conn: &mut DbConn) -> QueryResult<Option<NaiveDate>> {
    with_conn!(conn, |c| releases::table
        .select(diesel::dsl::max(releases::date))
        .first::<Option<NaiveDate>>(c))
}

/// Every release, in date order.
pub fn all(conn: &mut DbConn) -> QueryResult<Vec<Stored>> {
    let rows: Vec<Row> = with_conn!(conn, |c| releases::table
        .order(releases::date.asc())
        .load::<Row>(c))?;
    Ok(rows.into_iter().map(Stored::from).collect())
}

/// (date, rho spent) of every release.
pub fn spending(conn: &mut DbConn) -> QueryResult<Vec<(NaiveDate, f64)>> {
    with_conn!(conn, |c| releases::table
        .select((releases::date, releases::rho))
        .order(releases::date.asc())
        .load::<(NaiveDate, f64)>(c))
}

/// Instances of `product` per day of their first (`which` = "first") or
/// latest report, for the days `from` to `to`. A scan of the product's
/// instances: releases are rare, and only the snapshots know first days.
pub fn installs_per_day(
    conn: &mut DbConn,
    product: &str,
    which: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<BTreeMap<NaiveDate, i64>> {
    let rows: Vec<(NaiveDate, i64)> = if which == "first" {
        with_conn!(conn, |c| instances::table
            .filter(instances::product.eq(product))
            .filter(instances::first_seen.between(from, to))
            .group_by(instances::first_seen)
            .select((instances::first_seen, diesel::dsl::count_star()))
            .load::<(NaiveDate, i64)>(c))?
    } else {
        with_conn!(conn, |c| instances::table
            .filter(instances::product.eq(product))
            .filter(instances::last_seen.between(from, to))
            .group_by(instances::last_seen)
            .select((instances::last_seen, diesel::dsl::count_star()))
            .load::<(NaiveDate, i64)>(c))?
    };
    Ok(rows.into_iter().collect())
}

/// Installs of `product` whose latest update fell in the days `from` to
/// `to`, per (from version, to version) of that update. Updates whose
/// previous version is not known make no path.
pub fn upgrade_paths(
    conn: &mut DbConn,
    product: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<BTreeMap<(String, String), i64>> {
    let rows: Vec<(String, String, i64)> = with_conn!(conn, |c| instances::table
        .filter(instances::product.eq(product))
        .filter(instances::upgraded_on.between(from, to))
        .filter(instances::upgraded_from.ne(""))
        .group_by((instances::upgraded_from, instances::upgraded_to))
        .select((
            instances::upgraded_from,
            instances::upgraded_to,
            diesel::dsl::count_star(),
        ))
        .load::<(String, String, i64)>(c))?;
    Ok(rows.into_iter().map(|(f, t, n)| ((f, t), n)).collect())
}

/// Installs of `product` per day of their latest update, for the days
/// `from` to `to`.
pub fn updates_per_day(
    conn: &mut DbConn,
    product: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<BTreeMap<NaiveDate, i64>> {
    let rows: Vec<(Option<NaiveDate>, i64)> = with_conn!(conn, |c| instances::table
        .filter(instances::product.eq(product))
        .filter(instances::upgraded_on.between(from, to))
        .group_by(instances::upgraded_on)
        .select((instances::upgraded_on, diesel::dsl::count_star()))
        .load::<(Option<NaiveDate>, i64)>(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(d, n)| d.map(|d| (d, n)))
        .collect())
}
