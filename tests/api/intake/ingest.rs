//! Storing reports: counts per day, snapshots, dedupe, the writer.

use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

async fn accepted_report_is_counted_and_snapshotted(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();

    let reply = app.post_report(&report).await;

    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json()["status"], "accepted");
    assert_eq!(reply.json()["ignored"], json!([]));
    let stored = app.db.inspect();
    assert_eq!(
        stored.events().reports_where(|e| e.event == "update"
            && e.version == "4.10.1"
            && e.previous_version == "4.9.0"
            && e.edition == "ce"),
        1
    );
    assert_eq!(stored.instances().len(), 1);
    assert_eq!(stored.dedupe_keys().len(), 1);
    assert_eq!(stored.values().attribute("db_engine", "mariadb"), 1);
    assert_eq!(stored.counters().total("resources"), 1234);
}
on_both_backends!(accepted_report_is_counted_and_snapshotted);

async fn counts_accumulate_per_day_and_key(db: TestDb) {
    let app = spawn_app(db).await;
    for (event, version, previous) in [
        ("install", "4.10.1", None),
        ("install", "4.10.1", None),
        ("update", "4.10.1", Some("4.9.0")),
        ("update", "4.10.1", Some("4.9.0")),
        ("update", "4.10.1", Some("4.8.0")),
    ] {
        let r = ReportBuilder::new().event(event).version(version);
        let r = match previous {
            Some(p) => r.previous_version(p),
            None => r.without("previous_version"),
        };
        assert_eq!(app.post_report(&r.build()).await.status, 202);
    }
    // A report without instance_id counts as an event only.
    let anonymous = ReportBuilder::new().anonymous().build();
    assert_eq!(app.post_report(&anonymous).await.status, 202);

    let stored = app.db.inspect();
    let events = stored.events();
    assert_eq!(stored.events_on(test_today()).reports(), 6);
    assert_eq!(events.reports_where(|e| e.event == "install"), 2);
    assert_eq!(
        events.reports_where(|e| e.event == "update" && e.previous_version == "4.9.0"),
        3
    );
    assert_eq!(
        events.reports_where(|e| e.event == "update" && e.previous_version == "4.8.0"),
        1
    );
    assert_eq!(events.len(), 3, "one row per day and key");
    assert_eq!(
        stored.instances().len(),
        5,
        "the report without instance_id has no snapshot"
    );
}
on_both_backends!(counts_accumulate_per_day_and_key);

async fn update_replaces_the_instance_snapshot(db: TestDb) {
    let app = spawn_app(db).await;
    let install = ReportBuilder::new()
        .install()
        .version("4.9.0")
        .counter("users", 10)
        .attribute("php_version", "8.1")
        .build();
    assert_eq!(app.post_report(&install).await.status, 202);

    let update = ReportBuilder::new()
        .instance_of(&install)
        .counter("users", 12)
        .build();
    assert_eq!(app.post_report(&update).await.status, 202);

    let stored = app.db.inspect();
    assert_eq!(stored.instances().len(), 1, "one snapshot per instance");
    let values = stored.values();
    assert_eq!(values.version("4.9.0"), 0);
    assert_eq!(values.version("4.10.1"), 1);
    assert_eq!(values.attribute("php_version", "8.2"), 1);
    assert_eq!(values.attribute("php_version", "8.1"), 0);
    assert_eq!(
        stored.counters().total("users"),
        12,
        "counter totals follow the latest snapshot"
    );
    let events = stored.events();
    assert_eq!(events.reports_where(|e| e.event == "install"), 1);
    assert_eq!(events.reports_where(|e| e.event == "update"), 1);
}
on_both_backends!(update_replaces_the_instance_snapshot);

async fn retried_report_is_never_counted_twice(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();

    let first = app.post_report(&report).await;
    let second = app.post_report(&report).await;
    // Same report_id with another body is still the same report.
    let changed = ReportBuilder::from(report.clone())
        .counter("users", 43)
        .build();
    let third = app.post_report(&changed).await;

    assert_eq!(first.status, 202);
    assert_eq!(second.status, 200);
    assert_eq!(second.json(), json!({"status": "duplicate"}));
    assert_eq!(third.status, 200);
    assert_eq!(app.db.inspect().reports(), 1);
    assert_eq!(app.db.inspect().counters().total("users"), 42);
}
on_both_backends!(retried_report_is_never_counted_twice);

async fn a_retry_after_newer_reports_of_its_install_counts_once(db: TestDb) {
    let app = spawn_app(db).await;
    let first = sample_report();
    // More newer reports than an install's row keeps keys of.
    let newer: Vec<_> = (0..6)
        .map(|_| ReportBuilder::new().instance_of(&first).build())
        .collect();
    let sent: Vec<_> = std::iter::once(&first).chain(&newer).collect();
    for report in &sent {
        assert_eq!(app.post_report(report).await.status, 202);
    }

    // Retried newest first, then the oldest: each once more.
    for (i, report) in sent.iter().enumerate().rev() {
        let reply = app.post_report(report).await;
        assert_eq!(reply.status, 200, "retry of report {i}: {}", reply.text());
        assert_eq!(reply.json(), json!({"status": "duplicate"}));
    }
    let stored = app.db.inspect();
    assert_eq!(stored.reports(), 7);
    assert_eq!(stored.dedupe_keys().len(), 7);
    assert_eq!(stored.instances().len(), 1);
}
on_both_backends!(a_retry_after_newer_reports_of_its_install_counts_once);

async fn a_known_install_keeps_its_latest_keys_in_its_row(db: TestDb) {
    let app = spawn_app(db).await;
    let first = sample_report();
    assert_eq!(app.post_report(&first).await.status, 202);
    for _ in 1..anonstats::store::ROW_KEYS {
        let newer = ReportBuilder::new().instance_of(&first).build();
        assert_eq!(app.post_report(&newer).await.status, 202);
    }
    assert_eq!(
        app.db.inspect().key_store().len(),
        0,
        "an install's first reports write no key of their own"
    );
    let newer = ReportBuilder::new().instance_of(&first).build();
    assert_eq!(app.post_report(&newer).await.status, 202);
    let anonymous = ReportBuilder::new().anonymous().build();
    assert_eq!(app.post_report(&anonymous).await.status, 202);

    // The oldest key left the full row for the key store, beside the key
    // of the report without an instance.
    let stored = app.db.inspect();
    assert_eq!(stored.key_store().len(), 2);
    assert_eq!(stored.dedupe_keys().len(), anonstats::store::ROW_KEYS + 2);
    assert_eq!(app.post_report(&first).await.status, 200);
    assert_eq!(app.post_report(&anonymous).await.status, 200);
}
on_both_backends!(a_known_install_keeps_its_latest_keys_in_its_row);

async fn concurrent_retries_count_once(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();
    let replies = futures_util::future::join_all((0..20).map(|_| app.post_report(&report))).await;

    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let duplicates = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!((accepted, duplicates), (1, 19));
    assert_eq!(app.db.inspect().reports(), 1);
}
on_both_backends!(concurrent_retries_count_once);

async fn many_concurrent_reports_are_all_stored(db: TestDb) {
    let app = spawn_app(db).await;
    let reports: Vec<_> = (0..200).map(|_| sample_report()).collect();
    let replies = futures_util::future::join_all(reports.iter().map(|r| app.post_report(r))).await;

    assert!(replies.iter().all(|r| r.status == 202));
    let stored = app.db.inspect();
    assert_eq!(stored.reports(), 200);
    assert_eq!(stored.instances().len(), 200);
    assert_eq!(stored.values().versions(), 200);
}
on_both_backends!(many_concurrent_reports_are_all_stored);

async fn unknown_nested_keys_are_ignored_and_values_outside_catalog_become_other(db: TestDb) {
    let app = spawn_app(db).await;
    let report = ReportBuilder::new()
        .attribute("os_family", "Plan 9 from Bell Labs, host db1.example.com")
        .attribute("colour", "blue")
        .counter("printers", 3)
        .feature("telepathy", true)
        .build();

    let reply = app.post_report(&report).await;

    assert_eq!(reply.status, 202, "{}", reply.text());
    let mut ignored: Vec<String> = serde_json::from_value(reply.json()["ignored"].clone()).unwrap();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            "attributes.colour",
            "counters.printers",
            "features.telepathy"
        ]
    );
    assert_eq!(app.db.inspect().values().attribute("os_family", "other"), 1);
    let text: Vec<String> = app.db.all_text().into_iter().map(|(_, _, v)| v).collect();
    for leaked in [
        "Plan 9",
        "example.com",
        "colour",
        "blue",
        "printers",
        "telepathy",
    ] {
        assert!(
            !text.iter().any(|v| v.contains(leaked)),
            "{leaked} was stored"
        );
    }
}
on_both_backends!(unknown_nested_keys_are_ignored_and_values_outside_catalog_become_other);

async fn collectors_sharing_a_database_share_the_secret(db: TestDb) {
    let first = spawn_app(db).await;
    let report = sample_report();
    assert_eq!(first.post_report(&report).await.status, 202);
    first.stop().await;
    // A second collector on the same database must recognise the instance.
    let url = first.db.url.clone();
    let TestApp { db, .. } = first;
    assert_eq!(db.url, url);
    let second = spawn_app(db).await;
    let update = ReportBuilder::new()
        .instance_of(&report)
        .version("4.11.0")
        .previous_version("4.10.1")
        .build();
    assert_eq!(second.post_report(&update).await.status, 202);

    assert_eq!(second.db.inspect().instances().len(), 1);
    assert_eq!(second.db.inspect().settings().len(), 1);
}
on_both_backends!(collectors_sharing_a_database_share_the_secret);

async fn configured_secret_is_used_and_not_stored(db: TestDb) {
    let secret = "a-configured-secret-of-at-least-32-chars";
    let app = spawn_app_with(db, |c| c.secret = Some(secret.into())).await;
    assert_eq!(app.post_report(&sample_report()).await.status, 202);
    assert_eq!(
        app.db.inspect().settings().len(),
        1,
        "only the fingerprint of a configured secret is kept"
    );
    assert!(app
        .db
        .inspect()
        .settings()
        .contains_key(anonstats::store::FINGERPRINT_SETTING));
    let text: Vec<String> = app.db.all_text().into_iter().map(|(_, _, v)| v).collect();
    assert!(!text.iter().any(|v| v.contains(secret)));
}
on_both_backends!(configured_secret_is_used_and_not_stored);
