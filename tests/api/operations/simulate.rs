//! `anonstats simulate`: demo data through the real HTTP path.

use std::collections::HashMap;

use crate::on_both_backends;
use crate::support::*;

/// The `name value` lines of the summary.
fn summary(stdout: &[u8]) -> HashMap<String, i64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect()
}

async fn simulate_stores_every_report_once(db: TestDb) {
    let app = spawn_app(db).await;
    let args = [
        "simulate",
        "--instances",
        "30",
        "--days",
        "200",
        "--seed",
        "11",
        "--concurrency",
        "3",
        "--collector",
        &app.address,
    ];

    let first = anonstats(&args).await;
    let again = anonstats(&args).await;

    assert!(first.status.success(), "{}", stderr(&first));
    let s = summary(&first.stdout);
    assert_eq!(s["installs"], 30);
    assert!(s["sent"] > 30, "installs and updates: {s:?}");
    assert_eq!(s["accepted"], s["sent"]);
    assert_eq!(s["errors"], 0);
    let db = &app.db;
    let stored = db.inspect();
    assert_eq!(stored.reports(), s["sent"]);
    assert_eq!(stored.instances().len() as i64, s["with_id"]);
    assert!(s["with_id"] <= 30);
    assert!(stored.events().reports_where(|e| e.event == "update") > 0);
    assert_eq!(stored.values().versions(), s["with_id"]);
    // The same seed plans the same reports, ids included: nothing new.
    assert!(again.status.success(), "{}", stderr(&again));
    let s2 = summary(&again.stdout);
    assert_eq!(s2["duplicates"], s["sent"]);
    assert_eq!(s2["accepted"], 0);
    assert_eq!(db.inspect().reports(), s["sent"]);
}
on_both_backends!(simulate_stores_every_report_once);

/// The distinct days of the API's daily event counts, from `from` to `to`.
async fn event_days(app: &TestApp) -> std::collections::BTreeSet<String> {
    let events = app.get("/api/v1/stats/events?interval=day").await.json();
    events["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["period"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_demo_command_gives_a_year_of_daily_history(db: TestDb) {
    // As the README runs it: a collector with the production k on its
    // database, then simulate on the same database beside it.
    let app = spawn_app_with(db, |c| {
        c.stats.k = anonstats::reporting::params::DEFAULT_K;
    })
    .await;
    let args = ["simulate", "--database", &app.db.url, "--seed", "7"];

    let first = anonstats(&args).await;

    assert!(first.status.success(), "{}", stderr(&first));
    let s = summary(&first.stdout);
    assert_eq!(s["accepted"], s["sent"]);
    let days = event_days(&app).await;
    let today = test_today();
    assert!(days.len() >= 300, "{} days with counts", days.len());
    let first_day = (today - chrono::Duration::days(364)).to_string();
    assert!(days
        .iter()
        .all(|d| *d >= first_day && *d <= today.to_string()));
    assert!(days.contains(&today.to_string()), "the history ends today");
    // Version adoption moves: many versions updated to, many upgrade paths.
    let by_version = app
        .get("/api/v1/stats/events?interval=month&by=version")
        .await
        .json();
    let versions: std::collections::BTreeSet<&str> = by_version["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "update" && r["version"] != "other")
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert!(versions.len() >= 8, "{versions:?}");
    let upgrades = app.get("/api/v1/stats/upgrades").await.json();
    assert!(upgrades["rows"].as_array().unwrap().len() >= 8);
    let counters = app.get("/api/v1/stats/counters").await.json();
    assert!(counters["rows"].as_array().unwrap().len() >= 4);
    // The snapshots keep each install's latest update, which the public
    // releases count: many installs, over many days.
    let db = &app.db;
    let updated = scalar(&mut db.conn(), "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM instances WHERE upgraded_on IS NOT NULL AND upgraded_from <> ''");
    assert!(
        updated * 4
            >= scalar(
                &mut db.conn(),
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM instances"
            ),
        "{updated} updated"
    );
    let days = scalar(
        &mut db.conn(),
        "SELECT CAST(COUNT(DISTINCT upgraded_on) AS BIGINT) AS n FROM instances",
    );
    assert!(days >= 100, "latest updates on {days} days");
    assert_eq!(
        scalar(&mut db.conn(), "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM instances WHERE upgraded_on IS NULL AND upgraded_from <> ''"),
        0
    );
    // Marked as synthetic where a person looks: the dashboard, and the
    // public page, whose releases would otherwise pass for real figures.
    assert!(app.get("/").await.text().contains("synthetic reports"));
    assert!(app
        .get_anonymous("/public")
        .await
        .text()
        .contains("synthetic reports"));

    let again = anonstats(&args).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let s2 = summary(&again.stdout);
    assert_eq!((s2["accepted"], s2["duplicates"]), (0, s["sent"]));
    assert_eq!(app.db.inspect().reports(), s["sent"]);
}
on_both_backends!(the_demo_command_gives_a_year_of_daily_history);

async fn the_demo_never_mixes_with_real_reports(db: TestDb) {
    let app = spawn_app(db).await;
    assert_eq!(app.post_report(&sample_report()).await.status, 202);

    let out = anonstats(&["simulate", "--database", &app.db.url, "--seed", "7"]).await;

    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds real reports"),
        "{}",
        stderr(&out)
    );
    assert_eq!(app.db.inspect().reports(), 1);
    assert!(!app
        .db
        .inspect()
        .settings()
        .contains_key(anonstats::store::SYNTHETIC_SETTING));
    assert!(!app.get("/").await.text().contains("synthetic reports"));
    assert!(!app
        .get_anonymous("/public")
        .await
        .text()
        .contains("synthetic reports"));
}
on_both_backends!(the_demo_never_mixes_with_real_reports);

async fn simulate_over_http_says_why_it_waits(db: TestDb) {
    // One report a second after the first two: the run waits, and says so.
    let app = spawn_app_with(db, |c| c.limits.rate_limit = "60,burst=2".parse().unwrap()).await;

    let out = anonstats(&[
        "simulate",
        "--instances",
        "3",
        "--days",
        "200",
        "--seed",
        "3",
        "--concurrency",
        "2",
        "--collector",
        &app.address,
    ])
    .await;

    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("waiting: HTTP 429: rate-limited by the collector"),
        "{err}"
    );
    let s = summary(&out.stdout);
    assert!(s["sent"] > 2, "more reports than the burst: {s:?}");
    assert_eq!(s["accepted"], s["sent"]);
}
on_both_backends!(simulate_over_http_says_why_it_waits);
