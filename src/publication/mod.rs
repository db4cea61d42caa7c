//! Publishing the public releases: reads the true counts from the
//! database, checks the budget against the releases already stored, and
//! stores the new one; and reads stored releases back for the public
//! routes. What a release is and how it is computed is [`crate::release`]'s.

pub mod publisher;

use chrono::{Duration, NaiveDate};

use crate::catalog::Catalog;
use crate::db::DbConn;
use crate::release::{self, Inputs, Ledger, Mechanism, Plan, ReleaseError, Settings, Stored};
use crate::reporting::query;
use crate::store;

/// Reads the true counts of `product` as of `date` from the aggregates and
/// the instance snapshots.
pub fn read_inputs(conn: &mut DbConn, plan: &Plan, date: NaiveDate) -> diesel::QueryResult<Inputs> {
    let product = plan.product.as_str();
    let since = |days: u32| date - Duration::days(i64::from(days) - 1);
    let mut inputs = Inputs::default();
    for (i, w) in release::WINDOWS.iter().enumerate() {
        inputs.active[i] = query::value_counts(conn, product, since(*w), "version", None)?
            .iter()
            .map(|r| r.instances)
            .sum();
    }
    let year = since(release::FIGURE_WINDOW);
    for r in query::value_counts(conn, product, year, "version", None)? {
        *inputs.versions.entry(r.value).or_default() += r.instances;
    }
    for r in query::value_counts(conn, product, year, "attribute", None)? {
        *inputs
            .attributes
            .entry(r.name)
            .or_default()
            .entry(r.value)
            .or_default() += r.instances;
    }
    for r in query::value_counts(conn, product, year, "feature", None)? {
        let e = inputs.features.entry(r.name).or_default();
        if r.value == "true" {
            e.0 += r.instances;
        } else {
            e.1 += r.instances;
        }
    }
    for r in query::counter_buckets(conn, product, year)? {
        *inputs
            .counters
            .entry(r.counter)
            .or_default()
            .entry(r.bucket)
            .or_default() += r.instances;
    }
    inputs.first_seen = store::releases::installs_per_day(conn, product, "first", year, date)?;
    inputs.last_seen = store::releases::installs_per_day(conn, product, "last", year, date)?;
    inputs.upgrades = store::releases::upgrade_paths(conn, product, year, date)?;
    inputs.updated = store::releases::updates_per_day(conn, product, year, date)?;
    Ok(inputs)
}

/// The latest stored release.
pub fn latest(conn: &mut DbConn) -> diesel::QueryResult<Option<Stored>> {
    store::releases::latest(conn)
}

/// The stored release of `date`.
pub fn on(conn: &mut DbConn, date: NaiveDate) -> diesel::QueryResult<Option<Stored>> {
    store::releases::by_date(conn, date)
}

/// The ledger of every stored release under `budget`.
pub fn read_ledger(conn: &mut DbConn, budget: f64) -> diesel::QueryResult<Ledger> {
    Ok(release::ledger(&store::releases::all(conn)?, budget))
}

/// Computes, checks and stores the release of `date`: refused when one of
/// that date exists or when it would exceed the budget left over the 365
/// days ending on `date`.
pub fn publish(
    conn: &mut DbConn,
    catalog: &Catalog,
    settings: &Settings,
    date: NaiveDate,
    mech: &mut Mechanism,
) -> Result<Stored, ReleaseError> {
    let plan = release::plan(catalog, settings)?;
    if store::releases::by_date(conn, date)?.is_some() {
        return Err(ReleaseError::AlreadyPublished(date));
    }
    let spent = store::releases::spending(conn)?;
    release::budget::check(settings.budget, &spent, date, plan.split.spent)?;
    let inputs = read_inputs(conn, &plan, date)?;
    let release = release::build(&inputs, &plan, date, mech);
    let body = serde_json::to_string(&release).expect("a release serialises");
    let stored = Stored {
        date,
        sha256: release::sha256_hex(body.as_bytes()),
        mechanism: release::MECHANISM.to_owned(),
        parameters: serde_json::to_string(&release.parameters).expect("parameters serialise"),
        rho: release.parameters.rho,
        body,
    };
    match store::releases::insert(conn, &stored) {
        Ok(()) => Ok(stored),
        // Another collector on this database published it first.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(ReleaseError::AlreadyPublished(date)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand_dp::rngs::StdRng;
    use rand_dp::SeedableRng;

    use super::*;
    use crate::anonymize::{InstanceHash, InstanceRecord, InstanceState, Record, ReportHash};
    use crate::release::testing::{day, plan};
    use crate::release::{build, PeriodCount};
    use crate::validation::Event;

    /// A temporary database with every migration applied.
    fn database() -> DbConn {
        let mut conn = crate::db::Manager::new(":memory:")
            .establish()
            .expect("open SQLite in memory");
        crate::db::run_migrations(&mut conn).expect("migrate");
        conn
    }

    /// A report of install `id` on `day`.
    fn report(id: u8, day: NaiveDate, event: Event, from: Option<&str>, to: &str) -> Record {
        Record {
            day,
            product: "passbolt".into(),
            event,
            version: to.into(),
            previous_version: from.map(str::to_owned),
            edition: None,
            infer_update: false,
            report_hash: Some(ReportHash::from_bytes(rand::random())),
            instance: Some(InstanceRecord {
                hash: InstanceHash::from_bytes([id; 32]),
                state: InstanceState::default(),
            }),
        }
    }

    #[test]
    fn an_install_contributes_one_update_however_many_it_sends() {
        let date = day("2026-12-06");
        let mut conn = database();
        let update = |i: usize, d: &str| {
            let (from, to) = (format!("4.9.{}", i - 1), format!("4.9.{i}"));
            report(1, day(d), Event::Update, Some(&from), &to)
        };
        store::write_batch(
            &mut conn,
            &[report(1, day("2026-10-01"), Event::Install, None, "4.9.0")],
        )
        .unwrap();
        // 50 updates in one week (and one month), in batches of their own
        // and in one batch.
        for i in 1..=20 {
            store::write_batch(&mut conn, &[update(i, "2026-12-01")]).unwrap();
        }
        let rest: Vec<Record> = (21..=50).map(|i| update(i, "2026-12-03")).collect();
        store::write_batch(&mut conn, &rest).unwrap();
        // A legacy client says "install" after an update: the collector
        // infers it, in the week of November 9.
        let legacy = |d: &str, v: &str| Record {
            infer_update: true,
            ..report(2, day(d), Event::Install, None, v)
        };
        store::write_batch(&mut conn, &[legacy("2026-11-02", "4.8.0")]).unwrap();
        store::write_batch(&mut conn, &[legacy("2026-11-10", "4.9.0")]).unwrap();
        // Reports without an update keep the install's latest update.
        store::write_batch(&mut conn, &[legacy("2026-12-05", "4.9.0")]).unwrap();
        // An install that never updated.
        store::write_batch(
            &mut conn,
            &[report(3, day("2026-12-02"), Event::Install, None, "4.9.0")],
        )
        .unwrap();

        let p = plan(1e6);
        let inputs = read_inputs(&mut conn, &p, date).unwrap();
        let paths = |pairs: &[(&str, &str)]| -> BTreeMap<(String, String), i64> {
            pairs
                .iter()
                .map(|(f, t)| ((f.to_string(), t.to_string()), 1))
                .collect()
        };
        assert_eq!(
            inputs.upgrades,
            paths(&[("4.9.49", "4.9.50"), ("4.8.0", "4.9.0")])
        );
        assert_eq!(
            inputs.updated,
            [(day("2026-11-10"), 1), (day("2026-12-03"), 1)].into()
        );

        // At a budget so large that the noise is nearly always zero and the
        // threshold is 1, the release shows the bound itself.
        assert_eq!(p.threshold, 1);
        let r = build(
            &inputs,
            &p,
            date,
            &mut Mechanism::with_rng(StdRng::seed_from_u64(5)),
        );
        let updated = |rows: &[PeriodCount], period: &str| {
            rows.iter()
                .find(|r| r.period == day(period))
                .and_then(|r| r.updated)
        };
        assert_eq!(updated(&r.events.weekly, "2026-11-30"), Some(1));
        assert_eq!(updated(&r.events.weekly, "2026-11-09"), Some(1));
        assert_eq!(updated(&r.events.monthly, "2026-12-01"), Some(1));
        assert_eq!(updated(&r.events.monthly, "2026-11-01"), Some(1));
        let total: i64 = r.events.weekly.iter().filter_map(|w| w.updated).sum();
        assert_eq!(total, 2);
        let shown: Vec<(&str, &str, i64)> = r
            .upgrades
            .iter()
            .map(|u| (u.from_version.as_str(), u.to_version.as_str(), u.installs))
            .collect();
        assert_eq!(
            shown,
            [("4.8.0", "4.9.0", 1), ("4.9.49", "4.9.50", 1)],
            "{shown:?}"
        );
        assert_eq!(r.sensitivity.events_per_install, 1);
    }
}
