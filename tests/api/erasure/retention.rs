//! Retention: `anonstats prune` and the periodic run inside `serve`.

use std::process::Command;
use std::time::{Duration, Instant};

use anonstats::anonymize::{anonymize, Pseudonymizer};
use anonstats::catalog::Catalog;
use anonstats::db::prepare_database;
use anonstats::store;
use anonstats::validation::parse_v1;
use chrono::{Days, NaiveDate};

use crate::support::oracle::assert_aggregates_match_instances;
use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

fn days_ago(n: u64) -> NaiveDate {
    test_today() - Days::new(n)
}

/// Stores reports as if received on the given days, through the same
/// anonymisation and store code as the collector.
fn store_reports_on(db: &TestDb, reports: &[(serde_json::Value, NaiveDate)]) {
    store_reports_in_batches(db, reports, 1);
}

/// Like [`store_reports_on`], `batch` reports per transaction.
fn store_reports_in_batches(db: &TestDb, reports: &[(serde_json::Value, NaiveDate)], batch: usize) {
    let pool = prepare_database(&db.url, 2).expect("migrate");
    let mut conn = pool.get().unwrap();
    let secret = store::get_or_insert_setting(
        &mut conn,
        store::SECRET_SETTING,
        &anonstats::anonymize::generate_secret(),
    )
    .unwrap();
    let p = Pseudonymizer::new(secret.as_bytes());
    let catalog = Catalog::builtin();
    let records: Vec<_> = reports
        .iter()
        .map(|(r, day)| {
            anonymize(
                parse_v1(r.to_string().as_bytes(), &catalog).unwrap(),
                &p,
                *day,
            )
        })
        .collect();
    for chunk in records.chunks(batch) {
        store::write_batch(&mut conn, chunk).unwrap();
    }
}

fn instance_report(users: i64) -> serde_json::Value {
    ReportBuilder::new().counter("users", users).build()
}

fn run_prune(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["prune", "--database", &db.url])
        .env(anonstats::clock::TODAY_ENV, test_today().to_string())
        .args(args)
        .output()
        .expect("run anonstats prune");
    assert!(
        out.status.success(),
        "prune failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn prune_deletes_old_snapshots_and_their_aggregates_but_keeps_event_counts(db: TestDb) {
    let stale = instance_report(7);
    let also_stale = instance_report(1500);
    let recent = instance_report(42);
    store_reports_on(
        &db,
        &[
            (stale.clone(), days_ago(500)),
            (also_stale, days_ago(401)),
            (recent.clone(), days_ago(10)),
        ],
    );
    let events_before = db.inspect().reports();
    assert_eq!(db.inspect().instances().len(), 3);

    let summary = run_prune(&db, &[]);

    assert!(summary.contains("pruned 2 instances"), "{summary}");
    assert_eq!(
        db.inspect().instances().len(),
        1,
        "only the instance seen 10 days ago stays"
    );
    assert_eq!(
        db.inspect().reports(),
        events_before,
        "event counts are kept"
    );
    assert_aggregates_match_instances(&db);
    let stored = db.inspect();
    assert_eq!(
        stored.values().iter().filter(|v| v.instances == 0).count(),
        0,
        "rows that reached zero are deleted"
    );
    assert_eq!(stored.counters().total("users"), 42);
    // The two reports 401 and 500 days old had their dedupe keys deleted
    // (default window 30 days); the recent one is still a duplicate.
    assert_eq!(db.inspect().dedupe_keys().len(), 1);
    // A pruned instance that reports again is counted as new.
    let app = spawn_app(db).await;
    let back = ReportBuilder::new().instance_of(&stale).build();
    assert_eq!(app.post_report(&back).await.status, 202);
    assert_eq!(app.post_report(&recent).await.status, 200);
    assert_eq!(app.db.inspect().instances().len(), 2);
    assert_aggregates_match_instances(&app.db);
}
on_both_backends!(prune_deletes_old_snapshots_and_their_aggregates_but_keeps_event_counts);

fn prune_goes_through_more_instances_than_one_chunk(db: TestDb) {
    // Stale and recent instances interleave in key order (their keys are
    // keyed hashes) over more than two chunks of the retention scan.
    let reports: Vec<_> = (0..2300)
        .map(|i| {
            let day = if i % 2 == 0 {
                days_ago(500)
            } else {
                days_ago(3)
            };
            (instance_report(i), day)
        })
        .collect();
    store_reports_in_batches(&db, &reports, 500);
    assert_eq!(db.inspect().instances().len(), 2300);

    let summary = run_prune(&db, &[]);

    assert!(summary.contains("pruned 1150 instances"), "{summary}");
    assert_eq!(db.inspect().instances().len(), 1150);
    assert_aggregates_match_instances(&db);
}
on_both_backends_sync!(prune_goes_through_more_instances_than_one_chunk);

fn prune_honours_its_flags(db: TestDb) {
    store_reports_on(
        &db,
        &[
            (instance_report(1), days_ago(20)),
            (instance_report(2), days_ago(9)),
            (instance_report(3), days_ago(2)),
        ],
    );

    let summary = run_prune(&db, &["--retain-days", "5", "--dedupe-days", "8"]);

    assert!(
        summary.contains("pruned 2 instances, 2 dedupe keys"),
        "{summary}"
    );
    assert_eq!(db.inspect().instances().len(), 1);
    assert_eq!(db.inspect().dedupe_keys().len(), 1);
    assert_aggregates_match_instances(&db);
    let refused = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["prune", "--database", &db.url, "--dedupe-days", "3"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a dedupe window under 7 days is refused"
    );
}
on_both_backends_sync!(prune_honours_its_flags);

fn prune_drops_expired_keys_from_the_rows_of_installs_it_keeps(db: TestDb) {
    // One install that reported 9 days ago, and again 2 days ago; one that
    // reported 9 days ago only. Both are kept (400 days).
    let older = instance_report(1);
    let newer = ReportBuilder::new().instance_of(&older).build();
    let quiet = instance_report(2);
    store_reports_on(
        &db,
        &[
            (older.clone(), days_ago(9)),
            (newer.clone(), days_ago(2)),
            (quiet.clone(), days_ago(9)),
        ],
    );
    assert_eq!(db.inspect().dedupe_keys().len(), 3);

    let summary = run_prune(&db, &["--dedupe-days", "8"]);

    assert!(
        summary.contains("pruned 0 instances, 2 dedupe keys"),
        "{summary}"
    );
    let stored = db.inspect();
    assert_eq!(stored.instances().len(), 2);
    let keys = stored.dedupe_keys();
    assert_eq!(keys.len(), 1, "only the key of 2 days ago is left");
    assert_eq!(keys[0].day, days_ago(2));
    // A second run finds nothing more to drop.
    let summary = run_prune(&db, &["--dedupe-days", "8"]);
    assert!(summary.contains("0 dedupe keys"), "{summary}");
}
on_both_backends_sync!(prune_drops_expired_keys_from_the_rows_of_installs_it_keeps);

fn serve_prunes_periodically(db: TestDb) {
    store_reports_on(
        &db,
        &[
            (instance_report(1), days_ago(50)),
            (instance_report(2), days_ago(1)),
        ],
    );
    let collector = CollectorProcess::start(&db, &["--retain-days", "30"], &[]);

    let deadline = Instant::now() + Duration::from_secs(20);
    while db.inspect().instances().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "no retention run: {}",
            collector.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_aggregates_match_instances(&db);
    drop(collector);

    // With the interval at 0 nothing is pruned by serve.
    store_reports_on(&db, &[(instance_report(3), days_ago(60))]);
    let mut collector = CollectorProcess::start(
        &db,
        &["--retain-days", "30", "--prune-interval-hours", "0"],
        &[],
    );
    collector.signal_and_wait("TERM");
    assert_eq!(db.inspect().instances().len(), 2);
    assert!(!collector.logs().contains("retention run finished"));
}
on_both_backends_sync!(serve_prunes_periodically);
