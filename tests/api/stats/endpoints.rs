//! The stats API: every endpoint, CSV, parameter errors, the token.

use serde_json::{json, Value};

use crate::support::seed::*;
use crate::support::stats::*;
use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

/// 12 instances on 4.10.1 (6 of them updated from 4.9.0 today), 6 on 4.9.0
/// with PHP 8.3 and MFA off; users from 1 to 18.
fn population() -> Vec<anonstats::anonymize::Record> {
    let mut records = Vec::new();
    records.extend(times(6, || install(0, "4.10.1")));
    records.extend(times(6, || update(0, "4.9.0", "4.10.1")));
    records.extend(times(6, || {
        install(0, "4.9.0")
            .attr("php_version", "8.3")
            .feature("mfa", false)
    }));
    for (i, r) in records.iter_mut().enumerate() {
        let users = i as i64 + 1;
        *r = r.clone().counter("users", users);
    }
    records
}

fn rows(v: &Value) -> Vec<Value> {
    v["rows"].as_array().expect("rows").clone()
}

async fn every_endpoint_answers_with_the_stored_figures(db: TestDb) {
    let app = spawn_app(db).await;
    seed(&app.db, &population());
    let today = today().to_string();

    let summary = stats_json(&app, "/api/v1/stats/summary").await;
    assert_eq!(summary["product"], "passbolt");
    assert_eq!(summary["active_instances"], 18);
    assert_eq!(summary["events"], json!({"install": 12, "update": 6}));
    assert_eq!(summary["k"], TEST_K);
    assert_eq!(summary["active_days"], 365);
    assert_eq!(summary["suppressed"], json!({"folded": 0, "omitted": 0}));

    let versions = stats_json(&app, "/api/v1/stats/versions").await;
    assert_eq!(
        rows(&versions),
        [
            json!({"version": "4.10.1", "instances": 12, "share": 0.6667}),
            json!({"version": "4.9.0", "instances": 6, "share": 0.3333}),
        ]
    );

    let php = stats_json(&app, "/api/v1/stats/attributes/php_version").await;
    assert_eq!(php["attribute"], "php_version");
    assert_eq!(
        rows(&php),
        [
            json!({"value": "8.2", "instances": 12, "share": 0.6667}),
            json!({"value": "8.3", "instances": 6, "share": 0.3333}),
        ]
    );

    let counters = stats_json(&app, "/api/v1/stats/counters").await;
    let users = &rows(&counters)[0];
    assert_eq!(users["counter"], "users");
    assert_eq!(users["instances"], 18);
    assert_eq!(users["total"], (1..=18).sum::<i64>());
    assert_eq!(users["mean"], 9.5);
    assert_eq!(
        users["p50"],
        Value::Null,
        "the median's own bucket (9) holds one install"
    );
    assert_eq!(
        users["p90"],
        Value::Null,
        "the same for the 90th percentile"
    );
    assert!(users.get("min").is_none() && users.get("max").is_none());
    let histogram = users["histogram"].as_array().unwrap();
    let shown: i64 = histogram
        .iter()
        .map(|b| b["instances"].as_i64().unwrap())
        .sum();
    assert_eq!(shown, 18, "{histogram:?}");
    assert!(histogram
        .iter()
        .all(|b| b["instances"] == 0 || b["instances"].as_i64().unwrap() >= 5));

    let features = stats_json(&app, "/api/v1/stats/features").await;
    assert_eq!(
        rows(&features),
        [json!({"feature": "mfa", "enabled": 12, "instances": 18, "share": 0.6667})]
    );

    let upgrades = stats_json(&app, "/api/v1/stats/upgrades").await;
    assert_eq!(
        rows(&upgrades),
        [json!({"from": "4.9.0", "to": "4.10.1", "reports": 6})]
    );

    let events = stats_json(&app, "/api/v1/stats/events").await;
    assert_eq!(events["interval"], "day");
    assert_eq!(
        rows(&events),
        [
            json!({"period": today, "event": "install", "reports": 12}),
            json!({"period": today, "event": "update", "reports": 6}),
        ]
    );
    let by_version = stats_json(&app, "/api/v1/stats/events?by=version&interval=month").await;
    let month = format!("{}-01", &today[..7]);
    assert_eq!(
        rows(&by_version),
        [
            json!({"period": month, "event": "install", "version": "4.10.1", "reports": 6}),
            json!({"period": month, "event": "install", "version": "4.9.0", "reports": 6}),
            json!({"period": month, "event": "update", "version": "4.10.1", "reports": 6}),
        ]
    );
    let by_edition = stats_json(&app, "/api/v1/stats/events?by=edition&interval=week").await;
    assert_eq!(rows(&by_edition)[0]["edition"], "ce");
    assert_eq!(rows(&by_edition)[0]["reports"], 12);
}
on_both_backends!(every_endpoint_answers_with_the_stored_figures);

async fn csv_is_served_on_request_and_safe_in_spreadsheets(db: TestDb) {
    let app = spawn_app(db).await;
    seed(&app.db, &population());
    // A version a spreadsheet would run as a formula (the collector's
    // validation refuses it; the export must be safe anyway).
    seed(&app.db, &times(5, || install(0, "=1+2,\"x\"")));

    let by_param = app.get("/api/v1/stats/versions?format=csv").await;
    let by_accept = get_with(
        &app,
        "/api/v1/stats/versions",
        &[("Accept", "text/csv, application/json;q=0.5")],
    )
    .await;

    for reply in [&by_param, &by_accept] {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/csv"));
        let text = reply.text();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "version,instances,share");
        assert_eq!(lines[1], "4.10.1,12,0.5217");
        assert!(
            lines.contains(&"\"'=1+2,\"\"x\"\"\",5,0.2174"),
            "formula not neutralised: {text}"
        );
    }
    let json = get_with(
        &app,
        "/api/v1/stats/versions",
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!(json.header("content-type"), Some("application/json"));

    let counters = app.get("/api/v1/stats/counters?format=csv").await.text();
    assert!(counters.starts_with("counter,instances,total,mean,p50,p90,histogram\r\nusers,23,"));
    let summary = app.get("/api/v1/stats/summary?format=csv").await.text();
    assert!(summary.starts_with(
        "product,active_instances,install,update,k,active_days,as_of,from,to,folded,omitted\r\npassbolt,23,17,6,5,365,"
    ));
}
on_both_backends!(csv_is_served_on_request_and_safe_in_spreadsheets);

async fn unknown_product_attribute_or_parameter_is_a_400_problem(db: TestDb) {
    let app = spawn_app(db).await;
    for (path, field) in [
        ("/api/v1/stats/summary?product=wordpress", "product"),
        ("/api/v1/stats/attributes/colour", "attribute"),
        ("/api/v1/stats/versions?colour=blue", "colour"),
        ("/api/v1/stats/events?interval=year", "interval"),
        ("/api/v1/stats/events?by=php_version", "by"),
        ("/api/v1/stats/events?from=2026-02-30", "from"),
        ("/api/v1/stats/events?from=2026-03-02&to=2026-03-01", "from"),
        ("/api/v1/stats/versions?active_days=0", "active_days"),
        ("/api/v1/stats/versions?active_days=many", "active_days"),
        ("/api/v1/stats/versions?format=xml", "format"),
        (
            "/api/v1/stats/versions?product=passbolt&product=passbolt",
            "product",
        ),
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        let problem = reply.json();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["field"], field, "{path}: {problem}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    // The attribute error names the attributes that exist.
    let reply = app.get("/api/v1/stats/attributes/colour").await;
    assert!(reply.json()["detail"]
        .as_str()
        .unwrap()
        .contains("php_version"));
    // Writing to a stats route is not a thing.
    let reply = app
        .post("/api/v1/stats/summary", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(reply.status, 405);
}
on_both_backends!(unknown_product_attribute_or_parameter_is_a_400_problem);

async fn live_stats_always_need_the_token(db: TestDb) {
    let app = spawn_app(db).await;
    seed(&app.db, &population());

    for path in [
        "/api/v1/stats/summary",
        "/api/v1/stats/events",
        "/api/v1/stats/versions",
        "/api/v1/stats/attributes/php_version",
        "/api/v1/stats/counters",
        "/api/v1/stats/features",
        "/api/v1/stats/upgrades",
        "/metrics",
    ] {
        let missing = app.get_anonymous(path).await;
        assert_eq!(missing.status, 401, "{path}");
        assert_eq!(
            missing.header("content-type"),
            Some("application/problem+json")
        );
        assert!(missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer"));
        assert!(!missing.text().contains("4.10.1"));
        let wrong = get_with(&app, path, &[("Authorization", "Bearer test-stats-token")]).await;
        assert_eq!(wrong.status, 401, "{path}");
        let bearer = app.get(path).await;
        assert_eq!(bearer.status, 200, "{path}: {}", bearer.text());
        assert_eq!(bearer.header("cache-control"), Some("no-store"));
        // The token in a cookie is not a session.
        let cookie = awc::Client::new()
            .get(format!("{}{path}", app.address))
            .insert_header(("Cookie", format!("anonstats_session={TEST_TOKEN}")))
            .send()
            .await
            .unwrap();
        assert_eq!(cookie.status().as_u16(), 401, "{path}");
    }
    // Parameters are not even looked at without the token.
    assert_eq!(
        app.get_anonymous("/api/v1/stats/summary?colour=blue")
            .await
            .status,
        401
    );
    // The catalog and the OpenAPI document stay public.
    assert_eq!(app.get_anonymous("/api/v1/catalog").await.status, 200);
    assert_eq!(app.get_anonymous("/api/v1/openapi.json").await.status, 200);
}
on_both_backends!(live_stats_always_need_the_token);

async fn an_empty_database_answers_nothing_hidden(db: TestDb) {
    let app = spawn_app(db).await;
    let reply = app.get("/api/v1/stats/summary").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["active_instances"], 0);
    assert_eq!(reply.json()["events"], json!({"install": 0, "update": 0}));
    assert_eq!(reply.header("anonstats-folded"), Some("0"));
    assert_eq!(reply.header("anonstats-omitted"), Some("0"));
}
on_both_backends!(an_empty_database_answers_nothing_hidden);

/// A GET to a collector process, with an `Authorization` header when given.
fn get_status(port: u16, path: &str, bearer: Option<&str>) -> u16 {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let answer = raw_http(
        port,
        "127.0.0.1".parse().unwrap(),
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    );
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer}"))
}

fn without_a_configured_token_one_is_generated_and_shown_once(db: TestDb) {
    let link = regex::Regex::new(r"/signin\?token=([0-9a-f]{64})").unwrap();
    let env = [("ANONSTATS_STATS_TOKEN", "")];
    let mut first = CollectorProcess::start(&db, &[], &env);
    let logs = first.logs();
    let token = link.captures(&logs).expect("a sign-in link on stderr")[1].to_owned();

    for path in [
        "/api/v1/stats/summary",
        "/api/v1/stats/versions",
        "/metrics",
    ] {
        assert_eq!(get_status(first.port, path, None), 401, "{path}");
        assert_eq!(get_status(first.port, path, Some("wrong")), 401, "{path}");
        assert_eq!(get_status(first.port, path, Some(&token)), 200, "{path}");
    }
    // Only the token's hash is kept, and no log line carries the token.
    let stored = db.all_text();
    assert!(
        !stored.iter().any(|(_, _, v)| v.contains(&token)),
        "token stored in clear"
    );
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    assert!(stored
        .iter()
        .any(|(t, c, v)| t == "settings" && c == "value" && *v == hash));
    let log_lines: Vec<&str> = logs.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!log_lines.is_empty());
    assert!(
        !log_lines.iter().any(|l| l.contains(&token)),
        "token in a log line"
    );
    first.signal_and_wait("TERM");

    // Shown once: a restart prints no link, and the token still works.
    let mut second = CollectorProcess::start(&db, &[], &env);
    assert!(
        !second.logs().contains("signin?token="),
        "{}",
        second.logs()
    );
    assert_eq!(
        get_status(second.port, "/api/v1/stats/summary", Some(&token)),
        200
    );
    second.signal_and_wait("TERM");

    // `anonstats token` replaces it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["token", "--database", &db.url])
        .env_remove("ANONSTATS_STATS_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(new.len(), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("/signin?token={new}")));
    let mut third = CollectorProcess::start(&db, &[], &env);
    assert_eq!(
        get_status(third.port, "/api/v1/stats/summary", Some(&token)),
        401
    );
    assert_eq!(
        get_status(third.port, "/api/v1/stats/summary", Some(&new)),
        200
    );
    third.signal_and_wait("TERM");
}
on_both_backends_sync!(without_a_configured_token_one_is_generated_and_shown_once);

async fn new_reports_show_up_in_the_next_answer(db: TestDb) {
    let app = spawn_app(db).await;
    for _ in 0..5 {
        assert_eq!(app.post_report(&sample_report()).await.status, 202);
    }
    let before = stats_json(&app, "/api/v1/stats/summary").await;
    let versions_before = stats_json(&app, "/api/v1/stats/versions").await;
    assert_eq!(before["active_instances"], 5);

    for _ in 0..5 {
        assert_eq!(app.post_report(&sample_report()).await.status, 202);
    }
    let after = stats_json(&app, "/api/v1/stats/summary").await;
    let versions_after = stats_json(&app, "/api/v1/stats/versions").await;

    assert_eq!(after["active_instances"], 10);
    assert_eq!(after["events"]["update"], 10);
    assert_eq!(versions_before["rows"][0]["instances"], 5);
    assert_eq!(versions_after["rows"][0]["instances"], 10);
}
on_both_backends!(new_reports_show_up_in_the_next_answer);
