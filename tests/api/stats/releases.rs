//! Public releases against the real collector: the public routes answer
//! from stored releases only (the same bytes while reports arrive), need no
//! token while the live routes still do, the figures are noisy but close,
//! no published cell is below the threshold, upgrades and updates count one
//! update per install and none of an erased one, the ledger adds up, and a
//! release over the budget is refused.

use std::process::Command;

use anonstats::release::{self, ReleaseError, Stored};
use chrono::{Duration, NaiveDate};
use serde_json::Value;

use crate::support::browser::{chart_values, chromium, run_chromium};
use crate::support::release::{publish_seeded, publish_with};
use crate::support::seed::{install, seed, times, update, RecordExt};
use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

/// A budget large enough that sigma is about 1.75 (threshold 9) for the
/// built-in catalog's 23 histograms at the weekly cadence: small seeded
/// populations then show.
const TEST_BUDGET: f64 = 200.0;

/// The population of the closeness tests: 100 installs, 60 on 4.10.1 and
/// 40 on 4.9.0, half with MFA on, first seen over the last 20 days.
fn population() -> Vec<anonstats::anonymize::Record> {
    let mut records = Vec::new();
    for i in 0..60 {
        records.push(
            install(i % 20, "4.10.1")
                .feature("mfa", i % 2 == 0)
                .attr("db_engine", "mariadb"),
        );
    }
    for i in 0..40 {
        records.push(
            install(i % 20, "4.9.0")
                .feature("mfa", i % 2 == 0)
                .attr("db_engine", "postgresql"),
        );
    }
    records
}

const PUBLIC: &[&str] = &[
    "/api/v1/public/releases/latest",
    "/api/v1/public/releases/latest?format=csv",
    "/api/v1/public/ledger",
    "/public",
    "/assets/public.js",
];

fn dated_routes(day: NaiveDate) -> Vec<String> {
    vec![
        format!("/api/v1/public/releases/{day}"),
        format!("/api/v1/public/releases/{day}?format=csv"),
        format!("/api/v1/public/releases/{day}/release.csv"),
        format!("/api/v1/public/releases/{day}/manifest.json"),
    ]
}

async fn read_all(app: &TestApp, paths: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in paths {
        let r = app.get_anonymous(p).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text());
        out.push(r.body);
    }
    out
}

async fn public_routes_answer_the_same_bytes_while_reports_arrive(db: TestDb) {
    let app = spawn_app(db).await;
    seed(&app.db, &population());
    let today = test_today();
    let stored = publish_seeded(&app.db, today, 3);
    let mut paths: Vec<String> = PUBLIC.iter().map(|p| p.to_string()).collect();
    paths.extend(dated_routes(today));
    let before = read_all(&app, &paths).await;
    assert_eq!(
        before[0],
        stored.body.as_bytes(),
        "latest is the stored JSON"
    );
    assert_eq!(release::sha256_hex(&before[0]), stored.sha256);

    // Reports arrive and are stored; the live stats see them...
    let live_before = app.get("/api/v1/stats/summary").await.json();
    for _ in 0..20 {
        assert_eq!(app.post_report(&sample_report()).await.status, 202);
    }
    let mut live_after = live_before.clone();
    for _ in 0..50 {
        live_after = app.get("/api/v1/stats/summary").await.json();
        if live_after != live_before {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(live_after, live_before, "the reports were stored");
    // ...the public routes do not.
    let after = read_all(&app, &paths).await;
    assert_eq!(before, after);

    // The manifest holds the SHA-256 of the CSV and JSON files served.
    let manifest: Value = serde_json::from_slice(&after[8]).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files[0]["sha256"], release::sha256_hex(&after[7]));
    assert_eq!(files[1]["sha256"], stored.sha256);
    assert_eq!(
        manifest["parameters"]["sigma"],
        stored.release().unwrap().parameters.sigma
    );
    app.stop().await;
}
on_both_backends!(public_routes_answer_the_same_bytes_while_reports_arrive);

async fn public_routes_need_no_token_and_live_routes_still_do(db: TestDb) {
    let app = spawn_app(db).await;
    let r = app.get_anonymous("/api/v1/public/releases/latest").await;
    assert_eq!(r.status, 404, "no release yet");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    publish_seeded(&app.db, test_today(), 1);
    for p in PUBLIC {
        assert_eq!(app.get_anonymous(p).await.status, 200, "{p}");
    }
    for p in [
        "/api/v1/stats/summary",
        "/api/v1/stats/versions",
        "/metrics",
    ] {
        assert_eq!(app.get_anonymous(p).await.status, 401, "{p}");
    }
    let page = app.get_anonymous("/public").await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !page.text().contains("http://") && !page.text().contains("https://"),
        "no CDN"
    );
    let r = app
        .get_anonymous("/api/v1/public/releases/2026-13-01")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "date");
    let r = app
        .get_anonymous("/api/v1/public/releases/1999-01-01")
        .await;
    assert_eq!(r.status, 404);
    app.stop().await;
}
on_both_backends!(public_routes_need_no_token_and_live_routes_still_do);

/// Every count of a release, by a name for messages.
fn counts(r: &Value) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, i64)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if [
                        "installs",
                        "enabled",
                        "instances",
                        "first_seen",
                        "last_seen",
                        "updated",
                    ]
                    .contains(&k.as_str())
                    {
                        if let Some(n) = v.as_i64() {
                            out.push((format!("{path}.{k}"), n));
                        }
                    } else {
                        walk(v, &format!("{path}.{k}"), out);
                    }
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    walk(r, "", &mut out);
    out
}

async fn figures_are_noisy_but_close_and_none_is_below_the_threshold(db: TestDb) {
    let app = spawn_app_with(db, |c| c.releases.budget = TEST_BUDGET).await;
    let mut records = population();
    // One install on its own version: far below the threshold.
    records.push(install(1, "9.9.9"));
    // Installs seen a year ago: outside every window.
    records.extend(times(30, || install(400, "3.0.0")));
    seed(&app.db, &records);
    let stored = publish_with(&app.db, TEST_BUDGET, test_today(), 11).unwrap();
    let r = app
        .get_anonymous("/api/v1/public/releases/latest")
        .await
        .json();
    let p = &r["parameters"];
    let sigma = p["sigma"].as_f64().unwrap();
    let threshold = p["threshold"].as_i64().unwrap();
    assert!(sigma > 1.0 && sigma < 2.0, "sigma {sigma}");
    assert_eq!(threshold, (5.0 * sigma).ceil() as i64);
    assert_eq!(p["histograms"], 23);
    assert!((p["rho"].as_f64().unwrap() - stored.rho).abs() < 1e-15);
    let close = |v: &Value, truth: i64| {
        let n = v.as_i64().unwrap_or_else(|| panic!("{v} is not shown"));
        assert!(
            (n - truth).abs() as f64 <= 6.0 * sigma,
            "{n} vs {truth} (sigma {sigma})"
        );
    };
    for w in r["active_installs"].as_array().unwrap() {
        close(&w["installs"], 101);
    }
    let versions: Vec<(&str, &Value)> = r["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap(), &v["installs"]))
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    close(versions.iter().find(|v| v.0 == "4.10.1").unwrap().1, 60);
    close(versions.iter().find(|v| v.0 == "4.9.0").unwrap().1, 40);
    let mfa = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "mfa")
        .unwrap();
    close(&mfa["enabled"], 51);
    let db_engine = r["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attribute"] == "db_engine")
        .unwrap();
    let maria = db_engine["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["value"] == "mariadb")
        .unwrap();
    close(&maria["installs"], 61);
    let users = r["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["counter"] == "users")
        .unwrap();
    close(&users["histogram"][0]["installs"], 101);
    assert_eq!(users["histogram"][0]["bucket"], "6-25");
    let first_seen: i64 = r["events"]["monthly"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["first_seen"].as_i64())
        .sum();
    assert!(
        (first_seen - 101).abs() as f64 <= 12.0 * sigma,
        "first seen {first_seen}"
    );

    // No published cell is below the threshold, in the JSON or the CSV.
    let all = counts(&r);
    assert!(all.len() > 10);
    for (name, n) in &all {
        assert!(*n >= threshold, "{name} = {n} is below {threshold}");
    }
    let csv = app
        .get_anonymous("/api/v1/public/releases/latest?format=csv")
        .await
        .text();
    for line in csv.lines().skip(1) {
        let n: i64 = line.split(',').nth(3).unwrap().parse().unwrap();
        assert!(n >= threshold, "{line}");
    }
    // The figures are noisy: not every count is the true one.
    let truths = [101, 60, 40, 51, 61];
    assert!(all.iter().any(|(_, n)| !truths.contains(n)), "{all:?}");
    app.stop().await;
}
on_both_backends!(figures_are_noisy_but_close_and_none_is_below_the_threshold);

/// A v1 report of install `id`: an install of `to`, or an update to it.
fn report_of(id: &uuid::Uuid, from: Option<&str>, to: &str) -> Value {
    serde_json::json!({
        "schema_version": 1,
        "report_id": uuid::Uuid::new_v4().to_string(),
        "instance_id": id.to_string(),
        "product": "passbolt",
        "event": if from.is_some() { "update" } else { "install" },
        "version": to,
        "previous_version": from,
        "attributes": {"edition": "ce"},
    })
}

/// Posts reports, each of which must be stored.
async fn post_all(app: &TestApp, reports: impl IntoIterator<Item = Value>) {
    for r in reports {
        let reply = app.post_report(&r).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
}

/// The figure of the period starting on `period`, if its row is shown.
fn period(rows: &Value, period: NaiveDate) -> Option<&Value> {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == period.to_string())
}

async fn upgrades_and_updates_count_each_install_once_and_none_erased(db: TestDb) {
    use anonstats::reporting::Interval;
    let today = test_today();
    let early = today - Duration::days(14);
    let ids = |n: usize| -> Vec<uuid::Uuid> { (0..n).map(|_| uuid::Uuid::new_v4()).collect() };
    let (updaters, small_path, stayers, early_updaters) = (ids(30), ids(3), ids(20), ids(2));
    let heavy = uuid::Uuid::new_v4();

    // Two weeks ago every install arrives; two update at once.
    let before = spawn_app_with(db, |c| c.clock = anonstats::clock::Clock::Fixed(early)).await;
    let mut reports: Vec<Value> = updaters
        .iter()
        .chain(&stayers)
        .chain([&heavy])
        .map(|id| report_of(id, None, "4.9.0"))
        .collect();
    reports.extend(small_path.iter().map(|id| report_of(id, None, "4.8.0")));
    for id in &early_updaters {
        reports.push(report_of(id, None, "4.8.0"));
        reports.push(report_of(id, Some("4.8.0"), "4.9.0"));
    }
    post_all(&before, reports).await;
    before.stop().await;

    // Today 34 installs update, one of them with 50 update reports.
    let app = spawn_app_with(before.db, |c| c.releases.budget = TEST_BUDGET).await;
    let mut reports: Vec<Value> = updaters
        .iter()
        .map(|id| report_of(id, Some("4.9.0"), "4.10.1"))
        .collect();
    reports.extend((0..50).map(|_| report_of(&heavy, Some("4.9.0"), "4.10.1")));
    reports.extend(
        small_path
            .iter()
            .map(|id| report_of(id, Some("4.8.0"), "4.10.1")),
    );
    post_all(&app, reports).await;
    assert_eq!(
        app.db
            .inspect()
            .events()
            .reports_where(|e| e.event == "update"),
        30 + 50 + 3 + 2
    );

    let stored = publish_with(&app.db, TEST_BUDGET, today, 21).unwrap();
    let r: Value = serde_json::from_str(&stored.body).unwrap();
    let sigma = r["parameters"]["sigma"].as_f64().unwrap();
    let threshold = r["parameters"]["threshold"].as_i64().unwrap();
    let close = |v: &Value, truth: i64| {
        let n = v.as_i64().unwrap_or_else(|| panic!("{v} is not shown"));
        assert!(
            (n - truth).abs() as f64 <= 6.0 * sigma,
            "{n} vs {truth} (sigma {sigma}; counting reports would give far more)"
        );
    };
    assert_eq!(r["format"], 2);
    assert_eq!(r["sensitivity"]["events_per_install"], 1);
    // One path is shown: 31 installs (not 80 update reports). The paths of
    // 3 and 2 installs are below the threshold.
    let upgrades = r["upgrades"].as_array().unwrap();
    assert_eq!(upgrades.len(), 1, "{upgrades:?}");
    assert_eq!(upgrades[0]["from_version"], "4.9.0");
    assert_eq!(upgrades[0]["to_version"], "4.10.1");
    close(&upgrades[0]["installs"], 31);
    let week = |d: NaiveDate| Interval::Week.period_start(d);
    let month = |d: NaiveDate| Interval::Month.period_start(d);
    let weekly = &r["events"]["weekly"];
    close(&period(weekly, week(today)).unwrap()["updated"], 34);
    // Two weeks ago, 56 installs were first seen and 2 updated: the row
    // shows, its updated cell does not.
    let then = period(weekly, week(early)).expect("the week of the first reports");
    close(&then["first_seen"], 56);
    assert_eq!(then["updated"], Value::Null, "{then}");
    let monthly = &r["events"]["monthly"];
    if month(early) == month(today) {
        close(&period(monthly, month(today)).unwrap()["updated"], 36);
    } else {
        close(&period(monthly, month(today)).unwrap()["updated"], 34);
        assert_eq!(
            period(monthly, month(early)).unwrap()["updated"],
            Value::Null
        );
    }
    for (name, n) in counts(&r) {
        assert!(n >= threshold, "{name} = {n} is below {threshold}");
    }
    let csv = app
        .get_anonymous("/api/v1/public/releases/latest?format=csv")
        .await
        .text();
    let path_row = format!("upgrades,4.9.0,4.10.1,{},", upgrades[0]["installs"]);
    assert!(csv.contains(&path_row), "{csv}");
    assert!(
        csv.contains(&format!("events_weekly,updated,{},", week(today))),
        "{csv}"
    );

    // The heavy install is erased. The next release, at a budget so large
    // that its noise is zero and its threshold 1, shows the exact counts:
    // every path and week without it.
    let erased = app
        .post(
            "/api/v1/erasures",
            "application/json",
            serde_json::json!({"product": "passbolt", "instance_id": heavy})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(erased.status, 202, "{}", erased.text());
    let tomorrow = today + Duration::days(1);
    let next = publish_with(&app.db, 1e6, tomorrow, 22)
        .unwrap()
        .release()
        .unwrap();
    assert_eq!(next.parameters.threshold, 1);
    let paths: Vec<(&str, &str, i64)> = next
        .upgrades
        .iter()
        .map(|u| (u.from_version.as_str(), u.to_version.as_str(), u.installs))
        .collect();
    assert_eq!(
        paths,
        [
            ("4.9.0", "4.10.1", 30),
            ("4.8.0", "4.10.1", 3),
            ("4.8.0", "4.9.0", 2)
        ]
    );
    let updated = |rows: &[release::PeriodCount], p: NaiveDate| {
        rows.iter().find(|r| r.period == p).and_then(|r| r.updated)
    };
    assert_eq!(updated(&next.events.weekly, week(today)), Some(33));
    assert_eq!(updated(&next.events.weekly, week(early)), Some(2));
    app.stop().await;
}
on_both_backends!(upgrades_and_updates_count_each_install_once_and_none_erased);

async fn the_ledger_adds_up_and_an_over_budget_release_is_refused(db: TestDb) {
    let budget = 1.0;
    let app = spawn_app_with(db, |c| c.releases.budget = budget).await;
    seed(&app.db, &population());
    let today = test_today();
    let days: Vec<NaiveDate> = [400, 14, 7, 0]
        .iter()
        .map(|d| today - Duration::days(*d))
        .collect();
    let stored: Vec<Stored> = days
        .iter()
        .enumerate()
        .map(|(i, d)| publish_with(&app.db, budget, *d, i as u64).unwrap())
        .collect();
    let per_release = stored[3].rho;
    assert!(per_release <= budget / 53.0 && per_release > budget / 53.0 * 0.9999);
    // One release a day is never published twice.
    assert!(matches!(
        publish_with(&app.db, budget, today, 9),
        Err(ReleaseError::AlreadyPublished(_))
    ));

    let l = app.get_anonymous("/api/v1/public/ledger").await.json();
    let releases = l["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 4);
    for (entry, s) in releases.iter().zip(&stored) {
        assert_eq!(entry["date"], s.date.to_string());
        assert_eq!(entry["sha256"], s.sha256);
        assert_eq!(entry["rho"].as_f64().unwrap(), s.rho);
        assert_eq!(entry["mechanism"], "discrete_gaussian_zcdp");
        assert_eq!(entry["windows"], serde_json::json!([30, 90, 365]));
        assert_eq!(entry["sensitivity"]["l2_per_histogram"], 1);
        assert_eq!(
            entry["parameters"]["sigma"],
            s.release().unwrap().parameters.sigma
        );
    }
    // The release of 400 days ago no longer counts.
    let spent: f64 = stored[1..].iter().map(|s| s.rho).sum();
    assert_eq!(l["as_of"], today.to_string());
    assert!((l["spent_last_365_days"].as_f64().unwrap() - spent).abs() < 1e-12);
    assert!((l["budget_left"].as_f64().unwrap() - (budget - spent)).abs() < 1e-12);
    assert!(
        (releases[0]["budget_left"].as_f64().unwrap() - (budget - stored[0].rho)).abs() < 1e-12
    );

    // With the budget nearly spent (a release that spent most of it, as a
    // larger budget once allowed), the next release is refused, naming what
    // is left; nothing is stored.
    let big = budget - spent - per_release / 2.0;
    anonstats::store::releases::insert(
        &mut app.db.conn(),
        &Stored {
            date: today - Duration::days(1),
            body: "{}".into(),
            sha256: release::sha256_hex(b"{}"),
            mechanism: release::MECHANISM.into(),
            parameters: "{}".into(),
            rho: big,
        },
    )
    .unwrap();
    let l = app.get_anonymous("/api/v1/public/ledger").await.json();
    let left = budget - spent - big;
    assert!((l["budget_left"].as_f64().unwrap() - left).abs() < 1e-12);
    let tomorrow = today + Duration::days(1);
    let small = budget;
    let err = publish_with(&app.db, small, tomorrow, 5).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ReleaseError::OverBudget(_)), "{text}");
    assert!(text.contains("privacy budget exhausted"), "{text}");
    assert!(text.contains(&format!("{left:.6}")), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["release", "--database", &app.db.url])
        .args(["--privacy-budget", &small.to_string()])
        .env_remove("ANONSTATS_CATALOG")
        .env_remove("ANONSTATS_DATABASE_URL")
        .env_remove("ANONSTATS_RELEASE_CADENCE")
        .env(anonstats::clock::TODAY_ENV, tomorrow.to_string())
        .output()
        .expect("run anonstats release");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("privacy budget exhausted"), "{stderr}");
    assert!(stderr.contains(&format!("{left:.6}")), "{stderr}");
    let l2 = app.get_anonymous("/api/v1/public/ledger").await.json();
    assert_eq!(l2, l, "nothing was stored");

    // On demand, within the budget (a larger one), the command publishes.
    let out = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["release", "--database", &app.db.url])
        .args(["--privacy-budget", "2"])
        .env_remove("ANONSTATS_CATALOG")
        .env_remove("ANONSTATS_DATABASE_URL")
        .env_remove("ANONSTATS_RELEASE_CADENCE")
        .env(anonstats::clock::TODAY_ENV, tomorrow.to_string())
        .output()
        .expect("run anonstats release");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = app
        .get_anonymous("/api/v1/public/releases/latest")
        .await
        .json();
    assert_eq!(latest["date"], tomorrow.to_string());
    app.stop().await;
}
on_both_backends!(the_ledger_adds_up_and_an_over_budget_release_is_refused);

async fn serve_publishes_once_per_period(db: TestDb) {
    let app = spawn_app_with(db, |c| c.releases.scheduled = true).await;
    let mut latest = None;
    for _ in 0..100 {
        let r = app.get_anonymous("/api/v1/public/releases/latest").await;
        if r.status == 200 {
            latest = Some(r.body);
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let latest = latest.expect("serve published a release at start");
    let r: Value = serde_json::from_slice(&latest).unwrap();
    assert_eq!(r["date"], test_today().to_string());
    assert_eq!(r["parameters"]["cadence"], "weekly");
    // A second collector on the same database finds this period released.
    let mut config = anonstats::config::Config::new(app.db.url.clone());
    config.bind = "127.0.0.1:0".into();
    config.workers = Some(1);
    config.clock = anonstats::clock::Clock::Fixed(test_today());
    config.stats.token = anonstats::reporting::StatsToken::new(TEST_TOKEN);
    config.releases.scheduled = true;
    let second = anonstats::startup::Application::build(config).expect("second collector");
    let handle = second.handle();
    actix_web::rt::spawn(second.run_until_stopped());
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    handle.stop(true).await;
    let again = app.get_anonymous("/api/v1/public/releases/latest").await;
    assert_eq!(again.body, latest, "the release was not replaced");
    let l = app.get_anonymous("/api/v1/public/ledger").await.json();
    assert_eq!(l["releases"].as_array().unwrap().len(), 1);
    app.stop().await;
}
on_both_backends!(serve_publishes_once_per_period);

async fn the_public_page_draws_the_latest_release(db: TestDb) {
    let Some(browser) = chromium() else {
        eprintln!("skipped public page browser test: Chromium not found (apt-get install chromium, or set CHROMIUM)");
        return;
    };
    let app = spawn_app_with(db, |c| c.releases.budget = TEST_BUDGET).await;
    let mut records = population();
    records.extend(times(30, || update(0, "4.9.0", "4.10.1")));
    seed(&app.db, &records);
    let stored = publish_with(&app.db, TEST_BUDGET, test_today(), 4).unwrap();
    let r = stored.release().unwrap();
    let url = format!("{}/public", app.address);
    let dom = actix_web::rt::task::spawn_blocking(move || {
        run_chromium(&browser, &url, "UTC", &["--dump-dom"])
    })
    .await
    .unwrap();
    assert!(dom.contains(r#"data-ready="true""#), "{dom}");
    assert!(
        dom.contains(r#"<pre id="errors" hidden="""#),
        "no script error: {dom}"
    );
    let drawn = chart_values(&dom, "versions", "data-key");
    let expected: Vec<(String, String)> = r
        .versions
        .iter()
        .map(|v| (v.version.clone(), v.installs.to_string()))
        .collect();
    assert_eq!(drawn, expected);
    let drawn = chart_values(&dom, "upgrades", "data-key");
    let expected: Vec<(String, String)> = r
        .upgrades
        .iter()
        .map(|u| {
            let key = format!("{} → {}", u.from_version, u.to_version);
            (key, u.installs.to_string())
        })
        .collect();
    assert_eq!(expected.len(), 1);
    assert_eq!(drawn, expected);
    let updated = r.events.monthly.iter().filter(|m| m.updated.is_some());
    assert_eq!(
        chart_values(&dom, "updated", "data-key").len(),
        updated.count()
    );
    // Each figure shows its noise as ± 2 sigma.
    let half = (2.0 * r.parameters.sigma).round() as i64;
    assert!(dom.contains(&format!("± {half}")), "{dom}");
    app.stop().await;
}
on_both_backends!(the_public_page_draws_the_latest_release);

async fn stored_releases_cannot_be_updated(db: TestDb) {
    use diesel::connection::SimpleConnection;
    let app = spawn_app(db).await;
    let stored = publish_seeded(&app.db, test_today(), 2);
    let before = app
        .get_anonymous("/api/v1/public/releases/latest")
        .await
        .body;
    let err = app
        .db
        .conn()
        .batch_execute("UPDATE releases SET body = '{}', rho = 0")
        .unwrap_err();
    assert!(err.to_string().contains("releases are immutable"), "{err}");
    let after = app
        .get_anonymous("/api/v1/public/releases/latest")
        .await
        .body;
    assert_eq!(before, after);
    assert_eq!(after, stored.body.as_bytes());
    app.stop().await;
}
on_both_backends!(stored_releases_cannot_be_updated);

/// GETs a path of a collector process, returning the status.
fn status_at(port: u16, path: &str) -> u16 {
    let answer = raw_http(
        port,
        "127.0.0.1".parse().unwrap(),
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer}"))
}

fn releases_can_be_left_to_the_release_command(db: TestDb) {
    let mut quiet = CollectorProcess::start(&db, &["--no-release-schedule"], &[]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(status_at(quiet.port, "/api/v1/public/releases/latest"), 404);
    quiet.signal_and_wait("TERM");

    let mut scheduled = CollectorProcess::start(&db, &[], &[]);
    let mut status = 0;
    for _ in 0..100 {
        status = status_at(scheduled.port, "/api/v1/public/releases/latest");
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, 200, "without the flag, serve publishes at start");
    scheduled.signal_and_wait("TERM");
}
on_both_backends_sync!(releases_can_be_left_to_the_release_command);
