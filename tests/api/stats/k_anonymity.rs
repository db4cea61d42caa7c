//! k-anonymity and the active window, as a user of the stats would see
//! them: rare values never appear anywhere, small groups fold into `other`,
//! old instances stop counting.

use chrono::Duration;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::seed::*;
use crate::support::stats::*;
use crate::support::*;

const PATHS: [&str; 9] = [
    "/api/v1/stats/summary",
    "/api/v1/stats/events",
    "/api/v1/stats/events?by=version",
    "/api/v1/stats/events?by=edition&interval=month",
    "/api/v1/stats/versions",
    "/api/v1/stats/attributes/php_version",
    "/api/v1/stats/counters",
    "/api/v1/stats/features",
    "/api/v1/stats/upgrades",
];

/// Every string and number in a JSON document.
fn leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            leaves(x, out)
        }),
        Value::String(s) => out.push(s.clone()),
        other => out.push(other.to_string()),
    }
}

async fn rare_values_never_leave_the_server(db: TestDb) {
    let app = spawn_app(db).await;
    seed(&app.db, &times(20, || install(0, "4.10.1")));
    // Three installs: a rare version reached by a rare upgrade path, a rare
    // PHP version and edition, a feature and a counter only they report.
    seed(
        &app.db,
        &times(3, || {
            update(0, "4.8.6", "4.8.7")
                .attr("php_version", "7.4")
                .attr("edition", "pro")
                .feature("sso", true)
                .counter("folders", 987_654)
        }),
    );
    let rare = [
        "4.8.7", "4.8.6", "7.4", "pro", "sso", "folders", "987654", "980000",
    ];

    for path in PATHS {
        let json = stats_json(&app, path).await;
        let mut seen = Vec::new();
        leaves(&json, &mut seen);
        for value in rare {
            assert!(
                !seen.iter().any(|s| s == value),
                "{path} shows {value}: {json}"
            );
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let csv = app.get(&format!("{path}{sep}format=csv")).await.text();
        let cells: Vec<&str> = csv.split(['\r', '\n', ',', ' ', ':']).collect();
        for value in rare {
            assert!(!cells.contains(&value), "{path} CSV shows {value}: {csv}");
        }
    }
    for args in [
        vec!["versions"],
        vec!["attributes", "php_version"],
        vec!["attributes", "edition"],
        vec!["features"],
        vec!["counters"],
        vec!["upgrades"],
        vec!["events", "--by", "version"],
    ] {
        for format in ["table", "csv", "json"] {
            let mut all = args.clone();
            all.extend(["--format", format]);
            let out = cli(&app.db, &all);
            let words: Vec<&str> = out
                .split(|c: char| c.is_whitespace() || ",:\"{}[]".contains(c))
                .collect();
            for value in rare {
                assert!(
                    !words.contains(&value),
                    "stats {all:?} shows {value}: {out}"
                );
            }
        }
    }

    // ... and every response says that something was left out.
    let summary = stats_json(&app, "/api/v1/stats/summary").await;
    assert_eq!(summary["events"], json!({"install": 20, "update": null}));
    assert_eq!(summary["suppressed"], json!({"folded": 0, "omitted": 1}));
    // The rare version cannot be left out alone: the 20 would then give its
    // size (3) away against the 23 active installs. Both fold into other.
    let versions = stats_json(&app, "/api/v1/stats/versions").await;
    assert_eq!(
        versions["rows"],
        json!([{"version": "other", "instances": 23, "share": 1.0}])
    );
    assert_eq!(versions["suppressed"], json!({"folded": 2, "omitted": 0}));
    let upgrades = stats_json(&app, "/api/v1/stats/upgrades").await;
    assert_eq!(upgrades["rows"], json!([]));
    assert_eq!(upgrades["suppressed"]["omitted"], 1);
    let features = stats_json(&app, "/api/v1/stats/features").await;
    assert_eq!(features["suppressed"]["omitted"], 1, "sso: 3 instances");
    let counters = stats_json(&app, "/api/v1/stats/counters").await;
    assert_eq!(counters["suppressed"]["omitted"], 1, "folders: 3 instances");
    let reply = app.get("/api/v1/stats/upgrades?format=csv").await;
    assert_eq!(reply.header("anonstats-omitted"), Some("1"));
    let table = cli(&app.db, &["upgrades"]);
    assert!(table.contains("1 left out"), "{table}");
}
on_both_backends!(rare_values_never_leave_the_server);

async fn small_groups_fold_into_other_once_it_reaches_k(db: TestDb) {
    let app = spawn_app(db).await;
    seed(&app.db, &times(20, || install(0, "4.10.1")));
    seed(
        &app.db,
        &times(3, || install(0, "4.9.0").attr("php_version", "7.4")),
    );
    seed(
        &app.db,
        &times(2, || install(0, "4.8.0").attr("php_version", "8.0")),
    );

    let versions = stats_json(&app, "/api/v1/stats/versions").await;
    assert_eq!(
        versions["rows"],
        json!([
            {"version": "4.10.1", "instances": 20, "share": 0.8},
            {"version": "other", "instances": 5, "share": 0.2},
        ])
    );
    assert_eq!(versions["suppressed"], json!({"folded": 2, "omitted": 0}));
    let php = stats_json(&app, "/api/v1/stats/attributes/php_version").await;
    assert_eq!(
        php["rows"],
        json!([
            {"value": "8.2", "instances": 20, "share": 0.8},
            {"value": "other", "instances": 5, "share": 0.2},
        ])
    );
    let by_version = stats_json(&app, "/api/v1/stats/events?by=version").await;
    let labels: Vec<&str> = by_version["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["4.10.1", "other"]);

    // With a larger k the small groups stay below it: the smallest shown
    // group joins them, so that neither can be worked out from the whole.
    let strict = cli_json(&app.db, &["versions", "--k", "6"]);
    assert_eq!(
        strict["rows"],
        json!([{"version": "other", "instances": 25, "share": 1.0}])
    );
    assert_eq!(strict["suppressed"], json!({"folded": 3, "omitted": 0}));
}
on_both_backends!(small_groups_fold_into_other_once_it_reaches_k);

async fn only_instances_seen_within_the_active_window_count(db: TestDb) {
    let app = spawn_app(db).await;
    let old = times(10, || install(400, "4.8.0"));
    seed(&app.db, &old);
    seed(&app.db, &times(6, || install(10, "4.10.1")));
    seed(&app.db, &times(5, || install(100, "4.9.0")));
    // Five of the old instances report again today: they become active
    // again, on their new version.
    let back: Vec<_> = old[..5]
        .iter()
        .map(|r| {
            let mut u = update(0, "4.8.0", "4.10.1");
            u.instance.as_mut().unwrap().hash = r.instance.as_ref().unwrap().hash;
            u
        })
        .collect();
    seed(&app.db, &back);

    let summary = stats_json(&app, "/api/v1/stats/summary").await;
    assert_eq!(summary["active_instances"], 16);
    assert_eq!(
        summary["events"],
        json!({"install": 11, "update": 5}),
        "installs 400 days ago are before the default from"
    );
    let versions = stats_json(&app, "/api/v1/stats/versions").await;
    assert_eq!(
        versions["rows"],
        json!([
            {"version": "4.10.1", "instances": 11, "share": 0.6875},
            {"version": "4.9.0", "instances": 5, "share": 0.3125},
        ])
    );

    let recent = stats_json(&app, "/api/v1/stats/versions?active_days=30").await;
    assert_eq!(recent["active_days"], 30);
    assert_eq!(
        recent["rows"],
        json!([{"version": "4.10.1", "instances": 11, "share": 1.0}])
    );
    let long = stats_json(&app, "/api/v1/stats/summary?active_days=500").await;
    assert_eq!(long["active_instances"], 21);
    let from = (today() - Duration::days(400)).to_string();
    let all_time = stats_json(&app, &format!("/api/v1/stats/summary?from={from}")).await;
    assert_eq!(all_time["events"]["install"], 21);
    let cli_long = cli_json(&app.db, &["summary", "--active-days", "500"]);
    assert_eq!(cli_long["active_instances"], 21);
}
on_both_backends!(only_instances_seen_within_the_active_window_count);

async fn the_server_default_active_window_is_configurable(db: TestDb) {
    let app = spawn_app_with(db, |c| c.stats.active_days = 30).await;
    seed(&app.db, &times(6, || install(10, "4.10.1")));
    seed(&app.db, &times(5, || install(100, "4.9.0")));

    let summary = stats_json(&app, "/api/v1/stats/summary").await;
    assert_eq!(summary["active_days"], 30);
    assert_eq!(summary["active_instances"], 6);
    let wider = stats_json(&app, "/api/v1/stats/summary?active_days=365").await;
    assert_eq!(wider["active_instances"], 11);
}
on_both_backends!(the_server_default_active_window_is_configurable);

/// Every number of an answer, as text, with the floats' integer parts too.
fn numbers(v: &Value) -> Vec<String> {
    let mut all = Vec::new();
    leaves(v, &mut all);
    all
}

async fn one_answer_never_gives_one_installs_value(db: TestDb) {
    // Five installs without folders and one with 1234: a total of 1234 with
    // a median of 0 would be the sixth install's exact value.
    let app = spawn_app(db).await;
    seed(
        &app.db,
        &times(5, || install(0, "4.10.1").counter("folders", 0)),
    );
    seed(
        &app.db,
        &times(1, || install(0, "4.10.1").counter("folders", 1234)),
    );

    let counters = stats_json(&app, "/api/v1/stats/counters").await;
    let cli = cli_json(&app.db, &["counters"]);

    for answer in [&counters, &cli] {
        let folders = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["counter"] == "folders")
            .expect("folders shown: six installs reported it");
        assert_eq!(folders["instances"], 6);
        assert_eq!(
            (&folders["total"], &folders["mean"]),
            (&Value::Null, &Value::Null)
        );
        let all = numbers(answer);
        for leak in ["1234", "1200", "205.67"] {
            assert!(!all.iter().any(|n| n == leak), "{leak} in {answer}");
        }
    }
    let csv = app.get("/api/v1/stats/counters?format=csv").await.text();
    assert!(!csv.contains("1234") && !csv.contains("205.67"), "{csv}");

    // With a seventh, ordinary install nobody dominates: the total is back.
    seed(
        &app.db,
        &times(6, || install(0, "4.10.1").counter("folders", 300)),
    );
    let counters = stats_json(&app, "/api/v1/stats/counters").await;
    let folders = &counters["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["counter"] == "folders")
        .unwrap()
        .clone();
    assert_eq!(folders["total"], 1234 + 6 * 300);
}
on_both_backends!(one_answer_never_gives_one_installs_value);

async fn hidden_groups_cannot_be_worked_out_from_the_whole(db: TestDb) {
    // 20 ce, 6 pro and 2 cloud installs. Showing ce and pro and leaving
    // cloud out would give cloud's 2 installs away: the catalog lists three
    // editions, and the summary gives the whole.
    let app = spawn_app(db).await;
    seed(&app.db, &times(20, || install(0, "4.10.1")));
    seed(
        &app.db,
        &times(6, || install(0, "4.10.1").attr("edition", "pro")),
    );
    seed(
        &app.db,
        &times(2, || install(0, "4.9.0").attr("edition", "cloud")),
    );

    let whole = stats_json(&app, "/api/v1/stats/summary").await["active_instances"]
        .as_i64()
        .unwrap();
    assert_eq!(whole, 28);
    for path in ["/api/v1/stats/attributes/edition", "/api/v1/stats/versions"] {
        let answer = stats_json(&app, path).await;
        let rows = answer["rows"].as_array().unwrap();
        let shown: i64 = rows.iter().map(|r| r["instances"].as_i64().unwrap()).sum();
        assert_eq!(
            shown, whole,
            "{path}: nothing is left out beside other: {answer}"
        );
        assert!(
            rows.iter().all(|r| r["instances"].as_i64().unwrap() >= 5),
            "{answer}"
        );
        assert!(
            !numbers(&answer)
                .iter()
                .any(|n| n == "cloud" || n == "4.9.0"),
            "{answer}"
        );
    }
    let edition = stats_json(&app, "/api/v1/stats/attributes/edition").await;
    assert_eq!(
        edition["rows"],
        json!([
            {"value": "ce", "instances": 20, "share": 0.7143},
            {"value": "other", "instances": 8, "share": 0.2857},
        ])
    );
}
on_both_backends!(hidden_groups_cannot_be_worked_out_from_the_whole);

async fn the_production_default_k_is_ten(db: TestDb) {
    let app = spawn_app_with(db, |c| {
        c.stats = anonstats::reporting::Settings {
            token: anonstats::reporting::StatsToken::new(TEST_TOKEN),
            ..anonstats::reporting::Settings::default()
        }
    })
    .await;
    seed(&app.db, &times(10, || install(0, "4.10.1")));
    seed(&app.db, &times(9, || install(0, "4.9.0")));
    seed(&app.db, &times(10, || install(0, "4.8.0")));

    let versions = stats_json(&app, "/api/v1/stats/versions").await;

    assert_eq!(versions["k"], 10);
    let labels: Vec<&str> = versions["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    // 9 installs are below k, and so is their sum: a group of 10 joins them.
    assert_eq!(labels, ["4.10.1", "other"]);
    assert_eq!(versions["rows"][1]["instances"], 19);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args([
            "stats",
            "versions",
            "--format",
            "json",
            "--database",
            &app.db.url,
        ])
        .env_remove("ANONSTATS_K")
        .env(anonstats::clock::TODAY_ENV, test_today().to_string())
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(cli["k"], 10);
    assert_eq!(cli["rows"], versions["rows"]);
}
on_both_backends!(the_production_default_k_is_ten);
