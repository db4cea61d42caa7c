//! "Active in the last N days" gives the same figures for every window,
//! whether the collector sums the days of the window or subtracts the days
//! before it from the all-days totals (it picks whichever reads less).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::helpers::*;
use crate::on_both_backends;
use crate::stats_seed::*;

/// (days ago, version, users) of each group of six instances.
const GROUPS: [(i64, &str, i64); 5] = [
    (0, "4.10.1", 12),
    (5, "4.9.0", 250),
    (20, "4.8.0", 3),
    (100, "4.7.0", 40),
    (300, "4.6.0", 1500),
];
const PER_GROUP: usize = 6;

fn versions(v: &Value) -> BTreeMap<String, i64> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_owned(),
                r["instances"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn every_window_counts_the_instances_seen_within_it(db: TestDb) {
    let app = spawn_app(db).await;
    let mut records = Vec::new();
    for (days_ago, version, users) in GROUPS {
        records.extend(times(PER_GROUP, || {
            install(days_ago, version).counter("users", users)
        }));
    }
    seed(&app.db, &records);

    // Windows ending between groups: short ones (fewer days in the window
    // than before it) and long ones (the other way round).
    for active_days in [3, 10, 50, 200, 365] {
        let inside: Vec<_> = GROUPS.iter().filter(|g| g.0 < active_days).collect();
        let n = (inside.len() * PER_GROUP) as i64;
        let query = format!("active_days={active_days}");

        let summary = stats_json(&app, &format!("/api/v1/stats/summary?{query}")).await;
        assert_eq!(summary["active_instances"], n, "{query}");

        let got = versions(&stats_json(&app, &format!("/api/v1/stats/versions?{query}")).await);
        let want: BTreeMap<String, i64> = inside
            .iter()
            .map(|g| (g.1.to_owned(), PER_GROUP as i64))
            .collect();
        assert_eq!(got, want, "{query}");

        let counters = stats_json(&app, &format!("/api/v1/stats/counters?{query}")).await;
        let users = counters["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["counter"] == "users")
            .unwrap_or_else(|| panic!("{query}: no users row: {counters}"));
        assert_eq!(users["instances"], n, "{query}");
        let total: i64 = inside.iter().map(|g| g.2 * PER_GROUP as i64).sum();
        assert_eq!(users["total"], total, "{query}");
    }
}
on_both_backends!(every_window_counts_the_instances_seen_within_it);
