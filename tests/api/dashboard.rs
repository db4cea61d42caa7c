//! The dashboard in a real browser (headless Chromium), against a seeded
//! collector: the charts must show the API's numbers, the page must log no
//! error, and a screenshot is saved under `target/` for people to look at.
//! Skipped, with a message, where Chromium is not installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_json::Value;

use crate::helpers::*;
use crate::on_both_backends;
use crate::stats_seed::{install, seed, update, RecordExt};

/// Where Chromium is, if anywhere.
fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("CHROMIUM").ok(),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
        Some("/usr/bin/google-chrome".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with `extra` arguments and returns stdout.
fn run_chromium(binary: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2300",
            // Lets the page's requests and rendering finish before output.
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A year and a half of installs and updates across releases, editions,
/// PHP versions and sizes, plus a rare PHP version that must stay hidden.
fn demo_records() -> Vec<anonstats::anonymize::Record> {
    let releases = ["4.8.0", "4.9.0", "4.10.0", "4.10.1", "5.0.0"];
    let php = ["8.1", "8.2", "8.2", "8.3", "8.3", "8.4"];
    let editions = ["ce", "ce", "ce", "pro", "cloud"];
    let mut records = Vec::new();
    let mut state: u64 = 42;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for i in 0..400i64 {
        let days_ago = 540 - i * 540 / 400;
        let release = (releases.len() as i64 - 1 - days_ago / 120).max(0) as usize;
        let users = 1 + next(3000) as i64 * next(3000) as i64 / 3000;
        let r = install(days_ago, releases[release])
            .attr("php_version", php[next(php.len() as u64) as usize])
            .attr("edition", editions[next(editions.len() as u64) as usize])
            .counter("users", users)
            .counter("resources", users * (5 + next(200) as i64))
            .feature("mfa", next(2) == 0)
            .feature("sso", next(5) == 0);
        records.push(r);
    }
    for (n, from, to, days_ago) in [
        (90, "4.9.0", "4.10.0", 200),
        (60, "4.10.0", "4.10.1", 100),
        (120, "4.10.1", "5.0.0", 20),
    ] {
        for j in 0..n {
            records.push(update(days_ago - (j % 15), from, to).attr("php_version", "8.3"));
        }
    }
    for _ in 0..3 {
        records.push(install(10, "5.0.0").attr("php_version", "7.3"));
    }
    records
}

/// `(key, value)` pairs of the elements carrying `attr_key` and `data-value`
/// inside the chart `chart` of the dumped DOM.
fn chart_values(dom: &str, chart: &str, attr_key: &str) -> Vec<(String, String)> {
    let start = dom
        .find(&format!(r#"data-chart="{chart}""#))
        .unwrap_or_else(|| panic!("chart {chart} rendered"));
    let end = start + dom[start..].find("</svg>").unwrap();
    let re = Regex::new(&format!(r#"{attr_key}="([^"]*)"[^>]*data-value="([^"]*)""#)).unwrap();
    re.captures_iter(&dom[start..end])
        .map(|c| (html_unescape(&c[1]), c[2].to_owned()))
        .collect()
}

fn html_unescape(s: &str) -> String {
    s.replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

fn number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn dashboard_shows_the_api_numbers(db: TestDb) {
    let Some(browser) = chromium() else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped dashboard browser test: Chromium not found (apt-get install chromium, or set CHROMIUM)"
        );
        return;
    };
    let backend = db.backend;
    let app = spawn_app(db).await;
    seed(&app.db, &demo_records());
    let url = format!("{}/?interval=month", app.address);
    let api = |path: &'static str| {
        let app = &app;
        async move { app.get(path).await.json() }
    };

    let dom = {
        let (browser, url) = (browser.clone(), url.clone());
        actix_web::rt::task::spawn_blocking(move || run_chromium(&browser, &url, &["--dump-dom"]))
            .await
            .unwrap()
    };

    assert!(
        dom.contains(r#"data-ready="true""#),
        "the page finished rendering"
    );
    assert!(
        Regex::new(r#"<pre id="errors" hidden=""></pre>"#)
            .unwrap()
            .is_match(&dom),
        "the page logged errors: {}",
        dom.split(r#"id="errors""#)
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(500)
            .collect::<String>()
    );

    let summary = api("/api/v1/stats/summary").await;
    let active = Regex::new(r#"data-summary="active_instances" data-value="(\d+)""#)
        .unwrap()
        .captures(&dom)
        .expect("active installs card")[1]
        .to_owned();
    assert_eq!(active, number(&summary["active_instances"]));

    let versions = api("/api/v1/stats/versions").await;
    let expected: Vec<(String, String)> = versions["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_owned(),
                number(&r["instances"]),
            )
        })
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(chart_values(&dom, "versions", "data-key"), expected);

    let php = api("/api/v1/stats/attributes/php_version").await;
    let expected: Vec<(String, String)> = php["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_owned(),
                number(&r["instances"]),
            )
        })
        .collect();
    assert!(
        !expected.iter().any(|(v, _)| v == "7.3"),
        "3 installs stay below k"
    );
    assert_eq!(
        chart_values(&dom, "attribute-php_version", "data-key"),
        expected
    );

    let events = api("/api/v1/stats/events?interval=month").await;
    let mut expected: Vec<(String, String)> = events["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["period"].as_str().unwrap(),
                    r["event"].as_str().unwrap()
                ),
                number(&r["reports"]),
            )
        })
        .collect();
    expected.sort();
    let point =
        Regex::new(r#"data-period="([^"]+)" data-event="([^"]+)" data-value="(\d+)""#).unwrap();
    let mut drawn: Vec<(String, String)> = point
        .captures_iter(&dom)
        .map(|c| (format!("{}/{}", &c[1], &c[2]), c[3].to_owned()))
        .filter(|(_, v)| v != "0")
        .collect();
    drawn.sort();
    assert!(expected.len() >= 6, "several months of events");
    assert_eq!(drawn, expected);

    let counters = api("/api/v1/stats/counters").await;
    for row in counters["rows"].as_array().unwrap() {
        let total = Regex::new(&format!(
            r#"data-counter-stats="{}".*?data-stat="total" data-value="([^"]*)""#,
            row["counter"].as_str().unwrap()
        ))
        .unwrap()
        .captures(&dom)
        .expect("counter figures")[1]
            .to_owned();
        assert_eq!(total, number(&row["total"]));
    }

    let upgrades = api("/api/v1/stats/upgrades").await;
    let expected: Vec<(String, String)> = upgrades["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{} → {}",
                    r["from"].as_str().unwrap(),
                    r["to"].as_str().unwrap()
                ),
                number(&r["reports"]),
            )
        })
        .collect();
    assert_eq!(chart_values(&dom, "upgrades", "data-key"), expected);

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join(format!(
        "dashboard-{}.png",
        format!("{backend:?}").to_lowercase()
    ));
    let _ = std::fs::remove_file(&shot);
    actix_web::rt::task::spawn_blocking(move || {
        run_chromium(
            &browser,
            &url,
            &[&format!("--screenshot={}", shot.display())],
        );
        assert!(shot.is_file(), "screenshot saved");
    })
    .await
    .unwrap();
}
on_both_backends!(dashboard_shows_the_api_numbers);

async fn dashboard_sign_in_keeps_the_token_in_an_http_only_cookie(db: TestDb) {
    let token = "dashboard-test-token-0123456789";
    let app = spawn_app_with(db, |c| {
        c.stats.token = anonstats::reporting::StatsToken::new(token);
    })
    .await;

    let page = app.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(r#"action="/signin""#),
        "sign-in form first"
    );
    assert!(!page.text().contains("dashboard.js"));

    let wrong = app
        .post(
            "/signin",
            "application/x-www-form-urlencoded",
            b"token=nope".to_vec(),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    let right = awc::Client::builder()
        .disable_redirects()
        .finish()
        .post(format!("{}/signin", app.address))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .send_body(format!("token={token}"))
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 303);
    assert_eq!(right.headers().get("location").unwrap(), "/");
    let cookie = right
        .headers()
        .get("set-cookie")
        .expect("cookie set")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    let dashboard = crate::stats_seed::get_with(&app, "/", &[("Cookie", &pair)]).await;
    assert!(dashboard.text().contains("dashboard.js"));
    assert!(dashboard
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    let stats =
        crate::stats_seed::get_with(&app, "/api/v1/stats/summary", &[("Cookie", &pair)]).await;
    assert_eq!(stats.status, 200);
    assert_eq!(app.get("/api/v1/stats/summary").await.status, 401);
}
on_both_backends!(dashboard_sign_in_keeps_the_token_in_an_http_only_cookie);
