//! The dashboard in a real browser (headless Chromium), on the README's demo
//! (`anonstats simulate --database`): at pinned days (first and last of a
//! month, New Year, a leap day) and with the browser far east and far west
//! of UTC, the charts must show the API's numbers and the page must log no
//! error. A screenshot of the demo is saved under `target/` for people to
//! look at. Skipped, with a message, where Chromium is not installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDate;
use regex::Regex;
use serde_json::Value;

use crate::on_both_backends;
use crate::support::browser::{chart_values, chromium, run_chromium};
use crate::support::seed::{install, seed, RecordExt};
use crate::support::*;

/// The README's demo: `anonstats simulate --database`, a year of history
/// ending on `today`.
pub fn write_demo(db: &TestDb, today: NaiveDate) {
    let out = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["simulate", "--database", &db.url, "--seed", "2026"])
        .args(["--today", &today.to_string()])
        .env_remove("ANONSTATS_SECRET")
        .env_remove("ANONSTATS_CATALOG")
        .output()
        .expect("run anonstats simulate");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three installs on a PHP version the demo never uses: a group below k
/// that no chart may show.
fn rare_php(today: NaiveDate) -> Vec<anonstats::anonymize::Record> {
    (0..3)
        .map(|_| {
            let mut r = install(0, "5.0.0").attr("php_version", "7.3");
            r.day = today - chrono::Duration::days(10);
            r
        })
        .collect()
}

fn number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Pinned days, each with the time zone the browser runs in: far ahead of
/// UTC, far behind it, and UTC itself.
const BROWSER_DAYS: [(&str, &str); 5] = [
    (PINNED_DAYS[0], "Pacific/Kiritimati"),
    (PINNED_DAYS[1], "America/Los_Angeles"),
    (PINNED_DAYS[2], "Pacific/Kiritimati"),
    (PINNED_DAYS[3], "America/Los_Angeles"),
    (PINNED_DAYS[4], "UTC"),
];

async fn dashboard_shows_the_api_numbers(db: TestDb) {
    let Some(browser) = chromium() else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped dashboard browser test: Chromium not found (apt-get install chromium, or set CHROMIUM)"
        );
        return;
    };
    let backend = db.backend;
    let mut first = Some(db);
    for (i, (today, tz)) in BROWSER_DAYS.into_iter().enumerate() {
        let db = first.take().unwrap_or_else(|| TestDb::new(backend));
        let screenshot = (i == 0).then(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join(format!(
                    "dashboard-{}.png",
                    format!("{backend:?}").to_lowercase()
                ))
        });
        dashboard_matches_the_api_on(db, day(today), tz, &browser, screenshot).await;
    }
}
on_both_backends!(dashboard_shows_the_api_numbers);

/// `(key, value)` pairs of the rows of an API answer.
fn api_pairs(answer: &Value, key: impl Fn(&Value) -> String, value: &str) -> Vec<(String, String)> {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (key(r), number(&r[value])))
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap()
}

/// The dashboard of the demo on `today`, seen from a browser in `tz`, shows
/// exactly what the API answers by default.
async fn dashboard_matches_the_api_on(
    db: TestDb,
    today: NaiveDate,
    tz: &str,
    browser: &Path,
    screenshot: Option<PathBuf>,
) {
    let context = format!("on {today}, browser in {tz}");
    // As the README runs it: a collector, then the demo beside it.
    let app = spawn_app_with(db, |c| {
        c.clock = anonstats::clock::Clock::Fixed(today);
        c.stats.k = anonstats::reporting::params::DEFAULT_K;
    })
    .await;
    write_demo(&app.db, today);
    seed(&app.db, &rare_php(today));
    // The sign-in link a collector prints: it leads to the dashboard, whose
    // default interval is the month.
    let url = format!("{}/signin?token={TEST_TOKEN}", app.address);
    let api = |path: &'static str| {
        let app = &app;
        async move { app.get(path).await.json() }
    };

    let dom = {
        let (browser, url, tz) = (browser.to_owned(), url.clone(), tz.to_owned());
        actix_web::rt::task::spawn_blocking(move || {
            run_chromium(&browser, &url, &tz, &["--dump-dom"])
        })
        .await
        .unwrap()
    };

    assert!(
        dom.contains(r#"data-ready="true""#),
        "{context}: the page finished rendering"
    );
    assert!(
        Regex::new(r#"<pre id="errors" hidden=""></pre>"#)
            .unwrap()
            .is_match(&dom),
        "{context}: the page logged errors: {}",
        dom.split(r#"id="errors""#)
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(500)
            .collect::<String>()
    );
    assert!(
        dom.contains(r#"id="synthetic""#),
        "{context}: the demo is marked as synthetic"
    );

    // The page asks for the collector's own default range, whatever the
    // browser's clock and time zone.
    let summary = api("/api/v1/stats/summary").await;
    assert_eq!(summary["to"], today.to_string(), "{context}");
    let status = Regex::new(r#"id="status"[^>]*>([^<]*)<"#)
        .unwrap()
        .captures(&dom)
        .expect("status line")[1]
        .to_owned();
    let range = format!("{} to {}", text(&summary["from"]), text(&summary["to"]));
    assert!(status.contains(&range), "{context}: {status}, not {range}");
    let active = Regex::new(r#"data-summary="active_instances" data-value="(\d+)""#)
        .unwrap()
        .captures(&dom)
        .expect("active installs card")[1]
        .to_owned();
    assert_eq!(active, number(&summary["active_instances"]), "{context}");

    let versions = api("/api/v1/stats/versions").await;
    let expected = api_pairs(&versions, |r| text(&r["version"]).to_owned(), "instances");
    assert!(expected.len() >= 5, "{context}: {expected:?}");
    assert_eq!(
        chart_values(&dom, "versions", "data-key"),
        expected,
        "{context}"
    );

    let php = api("/api/v1/stats/attributes/php_version").await;
    let expected = api_pairs(&php, |r| text(&r["value"]).to_owned(), "instances");
    assert!(
        !expected.iter().any(|(v, _)| v == "7.3"),
        "{context}: 3 installs stay below k"
    );
    assert_eq!(
        chart_values(&dom, "attribute-php_version", "data-key"),
        expected,
        "{context}"
    );

    let events = api("/api/v1/stats/events?interval=month").await;
    let mut expected = api_pairs(
        &events,
        |r| format!("{}/{}", text(&r["period"]), text(&r["event"])),
        "reports",
    );
    expected.sort();
    let point =
        Regex::new(r#"data-period="([^"]+)" data-event="([^"]+)" data-value="(\d+)""#).unwrap();
    let mut drawn: Vec<(String, String)> = point
        .captures_iter(&dom)
        .map(|c| (format!("{}/{}", &c[1], &c[2]), c[3].to_owned()))
        .filter(|(_, v)| v != "0")
        .collect();
    drawn.sort();
    assert!(
        expected.len() >= 20,
        "{context}: a year of months of both events: {expected:?}"
    );
    assert_eq!(drawn, expected, "{context}");

    let counters = api("/api/v1/stats/counters").await;
    for row in counters["rows"].as_array().unwrap() {
        let total = Regex::new(&format!(
            r#"data-counter-stats="{}".*?data-stat="total" data-value="([^"]*)""#,
            text(&row["counter"])
        ))
        .unwrap()
        .captures(&dom)
        .expect("counter figures")[1]
            .to_owned();
        assert_eq!(total, number(&row["total"]), "{context}");
    }

    let upgrades = api("/api/v1/stats/upgrades").await;
    let expected = api_pairs(
        &upgrades,
        |r| format!("{} → {}", text(&r["from"]), text(&r["to"])),
        "reports",
    );
    assert!(expected.len() >= 5, "{context}: upgrade paths {expected:?}");
    assert_eq!(
        chart_values(&dom, "upgrades", "data-key"),
        expected,
        "{context}"
    );

    if let Some(shot) = screenshot {
        std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&shot);
        let (browser, tz) = (browser.to_owned(), tz.to_owned());
        actix_web::rt::task::spawn_blocking(move || {
            run_chromium(
                &browser,
                &url,
                &tz,
                &[&format!("--screenshot={}", shot.display())],
            );
            assert!(shot.is_file(), "screenshot saved");
        })
        .await
        .unwrap();
    }
    app.stop().await;
}

async fn dashboard_sign_in_sets_a_session_that_holds_no_token(db: TestDb) {
    let app = spawn_app(db).await;

    let page = app.get_anonymous("/").await;
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
    let wrong_link = app.get_anonymous("/signin?token=nope").await;
    assert_eq!(wrong_link.status, 401);
    assert!(wrong_link.header("set-cookie").is_none());

    let no_redirects = awc::Client::builder().disable_redirects().finish();
    let by_form = no_redirects
        .post(format!("{}/signin", app.address))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .send_body(format!("token={TEST_TOKEN}"))
        .await
        .unwrap();
    let by_link = no_redirects
        .get(format!("{}/signin?token={TEST_TOKEN}", app.address))
        .send()
        .await
        .unwrap();
    for right in [by_form, by_link] {
        assert_eq!(right.status().as_u16(), 303);
        assert_eq!(right.headers().get("location").unwrap(), "/");
        let cookie = right
            .headers()
            .get("set-cookie")
            .expect("cookie set")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.starts_with("anonstats_session="), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(
            !cookie.contains(TEST_TOKEN),
            "the cookie holds no token: {cookie}"
        );
        let pair = cookie.split(';').next().unwrap().to_owned();

        let session = awc::Client::builder().disable_redirects().finish();
        let with_cookie = |path: &str| {
            session
                .get(format!("{}{path}", app.address))
                .insert_header(("Cookie", pair.as_str()))
                .send()
        };
        let dashboard = read_reply(with_cookie("/").await.unwrap()).await;
        assert!(dashboard.text().contains("dashboard.js"));
        assert!(dashboard
            .header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'"));
        let stats = read_reply(with_cookie("/api/v1/stats/summary").await.unwrap()).await;
        assert_eq!(stats.status, 200);
        let metrics = read_reply(with_cookie("/metrics").await.unwrap()).await;
        assert_eq!(metrics.status, 200);
    }
    // The token itself in a cookie is no session.
    let forged = awc::Client::new()
        .get(format!("{}/api/v1/stats/summary", app.address))
        .insert_header(("Cookie", format!("anonstats_session={TEST_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(app.get_anonymous("/api/v1/stats/summary").await.status, 401);
}
on_both_backends!(dashboard_sign_in_sets_a_session_that_holds_no_token);
