//! "Active in the last N days" gives the same figures for every window,
//! whether the collector sums the days of the window or subtracts the days
//! before it from the all-days totals (it picks whichever reads less).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::on_both_backends;
use crate::support::seed::*;
use crate::support::stats::*;
use crate::support::*;

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

/// Days ago that sit on the edges of the default range and of its periods,
/// for a collector whose today is `today`: today, yesterday, the first of
/// this month and the day before it, the first and last day of the range,
/// and the days just outside it.
fn edge_days(today: chrono::NaiveDate) -> Vec<i64> {
    use chrono::Datelike;
    let first_of_month = i64::from(today.day0());
    let mut days = vec![
        0,
        1,
        first_of_month,
        first_of_month + 1,
        363,
        364,
        365,
        366,
        400,
    ];
    days.sort();
    days.dedup();
    days
}

/// Reports per period of `interval` that an independent reading of the
/// documentation gives: the default range is the 365 days ending today, and a
/// period is the day, the ISO week from Monday, or the calendar month.
fn expected_periods(
    today: chrono::NaiveDate,
    seeded: &[(chrono::NaiveDate, i64)],
    interval: &str,
) -> BTreeMap<String, i64> {
    use chrono::Datelike;
    let from = today - chrono::Duration::days(364);
    let mut out = BTreeMap::new();
    for (day, n) in seeded.iter().filter(|(d, _)| *d >= from && *d <= today) {
        let start = match interval {
            "day" => *day,
            "week" => {
                *day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()))
            }
            _ => day.with_day(1).unwrap(),
        };
        *out.entry(start.to_string()).or_default() += n;
    }
    out
}

fn installs_per_period(answer: &Value) -> BTreeMap<String, i64> {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "install")
        .map(|r| {
            (
                r["period"].as_str().unwrap().to_owned(),
                r["reports"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn default_ranges_and_periods_hold_on_every_pinned_day(db: TestDb) {
    let backend = db.backend;
    let mut first = Some(db);
    for pinned in PINNED_DAYS {
        let today = day(pinned);
        let db = first.take().unwrap_or_else(|| TestDb::new(backend));
        // A different number of reports on each edge day, at least k.
        let seeded: Vec<(chrono::NaiveDate, i64)> = edge_days(today)
            .into_iter()
            .enumerate()
            .map(|(i, ago)| (today - chrono::Duration::days(ago), 5 + i as i64))
            .collect();
        let records: Vec<_> = seeded
            .iter()
            .flat_map(|&(d, n)| {
                times(n as usize, move || {
                    let mut r = install(0, "4.10.1");
                    r.day = d;
                    r
                })
            })
            .collect();
        let app = spawn_app_with(db, |c| c.clock = anonstats::clock::Clock::Fixed(today)).await;
        seed(&app.db, &records);

        let summary = stats_json(&app, "/api/v1/stats/summary").await;
        let from = (today - chrono::Duration::days(364)).to_string();
        assert_eq!(
            (summary["from"].as_str(), summary["to"].as_str()),
            (Some(from.as_str()), Some(pinned)),
            "default range on {pinned}"
        );
        let in_range: i64 = expected_periods(today, &seeded, "day").values().sum();
        assert_eq!(summary["events"]["install"], in_range, "on {pinned}");
        for interval in ["day", "week", "month"] {
            let path = format!("/api/v1/stats/events?interval={interval}");
            let api = stats_json(&app, &path).await;
            let want = expected_periods(today, &seeded, interval);
            assert_eq!(installs_per_period(&api), want, "{path} on {pinned}");
            let cli = cli_on(
                &app.db,
                today,
                &["events", "--interval", interval, "--format", "json"],
            );
            let cli: Value = serde_json::from_str(&cli).unwrap();
            assert_eq!(
                cli["rows"], api["rows"],
                "CLI and API, {interval} on {pinned}"
            );
        }
        app.stop().await;
    }
}
on_both_backends!(default_ranges_and_periods_hold_on_every_pinned_day);
