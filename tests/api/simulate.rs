//! `anonstats simulate`: demo data through the real HTTP path.

use std::collections::HashMap;

use crate::client::{anonstats, stderr};
use crate::helpers::*;
use crate::on_both_backends;

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
    assert_eq!(db.reports("1 = 1"), s["sent"]);
    assert_eq!(db.count("instances"), s["with_id"]);
    assert!(s["with_id"] <= 30);
    assert!(db.reports("event = 'update'") > 0);
    assert_eq!(
        scalar(&mut db.conn(), "SELECT CAST(SUM(instances) AS BIGINT) AS n FROM instance_values WHERE kind = 'version'"),
        s["with_id"]
    );
    // The same seed plans the same reports, ids included: nothing new.
    assert!(again.status.success(), "{}", stderr(&again));
    let s2 = summary(&again.stdout);
    assert_eq!(s2["duplicates"], s["sent"]);
    assert_eq!(s2["accepted"], 0);
    assert_eq!(db.reports("1 = 1"), s["sent"]);
}
on_both_backends!(simulate_stores_every_report_once);
