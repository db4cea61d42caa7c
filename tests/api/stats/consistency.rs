//! The four ways to ask agree: the stats API, the `anonstats stats` command
//! (the real binary) and the SQL reporting views give the same figures for
//! the same data, the API and the CLI with identical JSON.

use std::collections::BTreeMap;

use chrono::Duration;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::Value;

use crate::on_both_backends;
use crate::support::seed::*;
use crate::support::stats::*;
use crate::support::*;

const K: i64 = 5;

#[derive(QueryableByName, Debug)]
struct Labelled {
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug)]
struct Pair {
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = BigInt)]
    a: i64,
    #[diesel(sql_type = BigInt)]
    b: i64,
}

fn view(db: &TestDb, sql: &str) -> BTreeMap<String, i64> {
    diesel::sql_query(sql)
        .load::<Labelled>(&mut db.conn())
        .expect(sql)
        .into_iter()
        .map(|r| (r.label, r.n))
        .collect()
}

fn view_pairs(db: &TestDb, sql: &str) -> BTreeMap<String, (i64, i64)> {
    diesel::sql_query(sql)
        .load::<Pair>(&mut db.conn())
        .expect(sql)
        .into_iter()
        .map(|r| (r.label, (r.a, r.b)))
        .collect()
}

/// Checks shown rows (label -> count, `other` included) and suppression
/// counts against the raw groups of a view under the k rule.
fn assert_k_view(what: &str, api: &Value, label: &str, count: &str, raw: &BTreeMap<String, i64>) {
    let shown: BTreeMap<String, i64> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[label].as_str().unwrap().to_owned(),
                r[count].as_i64().unwrap(),
            )
        })
        .collect();
    // Groups of k or more are shown; the small ones go to `other`, and when
    // they stay below k the smallest shown groups (ties: the last label)
    // join them until `other` reaches k; if even all groups stay below k,
    // all are left out.
    let mut expected: BTreeMap<String, i64> = raw
        .iter()
        .filter(|(l, n)| **n >= K && l.as_str() != "other")
        .map(|(l, n)| (l.clone(), *n))
        .collect();
    let small = raw
        .iter()
        .filter(|(l, n)| **n > 0 && (**n < K || l.as_str() == "other"))
        .count();
    let small_groups = raw.iter().filter(|(_, n)| **n > 0 && **n < K).count();
    let mut other: i64 = raw
        .iter()
        .filter(|(l, n)| **n < K || l.as_str() == "other")
        .map(|(_, n)| (*n).max(0))
        .sum();
    let (mut folded, mut omitted) = (0, 0);
    if small_groups > 0 {
        folded = small_groups;
        while other < K {
            let Some(smallest) = expected
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(l, _)| l.clone())
            else {
                break;
            };
            other += expected.remove(&smallest).unwrap();
            folded += 1;
        }
        if other < K {
            (folded, omitted) = (0, folded);
        }
    }
    if other >= K || (small_groups == 0 && small > 0) {
        expected.insert("other".into(), other);
    }
    assert_eq!(shown, expected, "{what}: {api}");
    assert_eq!(api["suppressed"]["folded"], folded, "{what}");
    assert_eq!(api["suppressed"]["omitted"], omitted, "{what}");
}

async fn api_cli_and_views_agree(db: TestDb) {
    let app = spawn_app(db).await;
    let mut records = Vec::new();
    records.extend(times(8, || install(0, "4.10.1").counter("users", 12)));
    records.extend(times(6, || {
        update(0, "4.9.0", "4.10.1")
            .attr("php_version", "8.3")
            .counter("users", 250)
            .feature("ldap", true)
    }));
    records.extend(times(5, || {
        install(3, "4.9.0")
            .attr("db_engine", "postgresql")
            .counter("resources", 1500)
            .feature("ldap", false)
    }));
    records.extend(times(7, || {
        update(40, "4.8.0", "4.9.0")
            .attr("edition", "pro")
            .counter("users", 3)
    }));
    // Rare: two instances on an old version, on a day of their own.
    records.extend(times(2, || install(9, "4.8.0").attr("php_version", "7.4")));
    seed(&app.db, &records);
    let long_ago = (today() - Duration::days(3650)).to_string();

    // API == CLI, whole documents.
    let cases: Vec<(String, Vec<String>)> = vec![
        ("summary".into(), vec!["summary".into()]),
        (
            format!("events?by=version&interval=week&from={long_ago}"),
            vec![
                "events",
                "--by",
                "version",
                "--interval",
                "week",
                "--from",
                &long_ago,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        ),
        (
            format!("events?from={long_ago}"),
            vec!["events".into(), "--from".into(), long_ago.clone()],
        ),
        ("versions".into(), vec!["versions".into()]),
        (
            "attributes/php_version".into(),
            vec!["attributes".into(), "php_version".into()],
        ),
        (
            "attributes/edition".into(),
            vec!["attributes".into(), "edition".into()],
        ),
        (
            "attributes/db_engine".into(),
            vec!["attributes".into(), "db_engine".into()],
        ),
        ("counters".into(), vec!["counters".into()]),
        ("features".into(), vec!["features".into()]),
        (
            format!("upgrades?from={long_ago}"),
            vec!["upgrades".into(), "--from".into(), long_ago.clone()],
        ),
    ];
    let mut api = BTreeMap::new();
    for (path, args) in &cases {
        let from_api = stats_json(&app, &format!("/api/v1/stats/{path}")).await;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let from_cli = cli_json(&app.db, &args);
        assert_eq!(from_api, from_cli, "API and CLI differ for {path}");
        api.insert(path.clone(), from_api);
    }

    // API == views, under the k rule.
    let db = &app.db;
    let versions = view(
        db,
        "SELECT version AS label, instances AS n FROM report_active_versions WHERE product = 'passbolt'",
    );
    assert_eq!(versions.values().sum::<i64>(), 28);
    assert_k_view(
        "versions",
        &api["versions"],
        "version",
        "instances",
        &versions,
    );
    assert_eq!(
        api["summary"]["active_instances"],
        versions.values().sum::<i64>()
    );
    for name in ["php_version", "edition", "db_engine"] {
        let raw = view(
            db,
            &format!(
                "SELECT value AS label, instances AS n FROM report_attribute_values \
                 WHERE product = 'passbolt' AND attribute = '{name}'"
            ),
        );
        assert_k_view(
            name,
            &api[&format!("attributes/{name}")],
            "value",
            "instances",
            &raw,
        );
    }
    let upgrades = view(
        db,
        "SELECT from_version || ' ' || to_version AS label, reports AS n \
         FROM report_upgrade_paths WHERE product = 'passbolt'",
    );
    let api_upgrades: Value = {
        let mut v = api[&format!("upgrades?from={long_ago}")].clone();
        for r in v["rows"].as_array_mut().unwrap() {
            let label = format!(
                "{} {}",
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap()
            );
            r["path"] = Value::String(if label == "other other" {
                "other".into()
            } else {
                label
            });
        }
        v
    };
    assert_k_view("upgrades", &api_upgrades, "path", "reports", &upgrades);

    let counters = view_pairs(
        db,
        "SELECT counter AS label, instances AS a, total AS b FROM report_counter_totals WHERE product = 'passbolt'",
    );
    let api_counters: BTreeMap<String, (i64, i64)> = api["counters"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["counter"].as_str().unwrap().to_owned(),
                (
                    r["instances"].as_i64().unwrap(),
                    r["total"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (i64, i64)> =
        counters.into_iter().filter(|(_, (n, _))| *n >= K).collect();
    assert_eq!(api_counters, expected);
    assert_eq!(
        expected["users"],
        (28, 8 * 12 + 6 * 250 + 5 * 10 + 7 * 3 + 2 * 10)
    );

    let features = view_pairs(
        db,
        "SELECT feature AS label, enabled AS a, instances AS b FROM report_feature_adoption WHERE product = 'passbolt'",
    );
    let api_features: BTreeMap<String, (i64, i64)> = api["features"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["feature"].as_str().unwrap().to_owned(),
                (
                    r["enabled"].as_i64().unwrap(),
                    r["instances"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    let ok = |n: i64| n == 0 || n >= K;
    let expected: BTreeMap<String, (i64, i64)> = features
        .into_iter()
        .filter(|(_, (on, all))| ok(*on) && ok(all - on) && *all >= K)
        .collect();
    assert_eq!(api_features, expected);
    assert_eq!(expected["ldap"], (6, 11));

    let per_day = view(
        db,
        "SELECT CAST(day AS TEXT) || ' ' || event AS label, CAST(SUM(reports) AS BIGINT) AS n \
         FROM report_daily_events WHERE product = 'passbolt' GROUP BY day, event",
    );
    let shown: BTreeMap<String, i64> = api[&format!("events?from={long_ago}")]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["period"].as_str().unwrap(),
                    r["event"].as_str().unwrap()
                ),
                r["reports"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, i64> = per_day
        .iter()
        .filter(|(_, n)| **n >= K)
        .map(|(l, n)| (l.clone(), *n))
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(
        api[&format!("events?from={long_ago}")]["suppressed"]["omitted"],
        per_day.values().filter(|n| **n < K).count()
    );

    // People get an aligned table with the note on what k hid.
    let table = cli(&app.db, &["versions"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("version"), "{table}");
    assert!(lines[2].starts_with("4.10.1"), "{table}");
    assert!(lines.last().unwrap().starts_with("k = 5"), "{table}");
    let csv = cli(&app.db, &["versions", "--format", "csv"]);
    assert_eq!(
        csv,
        app.get("/api/v1/stats/versions?format=csv").await.text(),
        "CLI and API CSV differ"
    );
}
on_both_backends!(api_cli_and_views_agree);
