//! The privacy invariants, checked from the outside: the real binary, logs
//! at trace level, forged forwarding headers, a distinctive user agent and a
//! non-default loopback source address; then a search of the database bytes
//! (SQLite file and WAL, or pg_dump), every log line and every response.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use anonstats::catalog::Catalog;
use anonstats::validation::is_valid_version;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

const SOURCE: Ipv4Addr = Ipv4Addr::new(127, 83, 91, 27);
const FORWARDED_FOR: &str = "198.51.100.23";
const FORWARDED: &str = "203.0.113.77";
const REAL_IP: &str = "192.0.2.146";
const USER_AGENT: &str = "PrivacyProbe/7.3 (marker-ua-5521)";
const INSTANCE_ID: &str = "5c0ffee5-1234-4abc-9def-0123456789ab";
const REPORT_ID: &str = "feedface-4321-4cba-8fed-ba9876543210";

fn request(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: collector.test\r\nUser-Agent: {USER_AGENT}\r\nX-Forwarded-For: {FORWARDED_FOR}\r\nForwarded: for={FORWARDED};proto=https\r\nX-Real-IP: {REAL_IP}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Everything that must never be found anywhere, as text and as bytes.
fn forbidden_needles() -> Vec<(String, Vec<u8>)> {
    let mut needles = Vec::new();
    let mut text = |label: &str, s: &str| needles.push((label.to_owned(), s.as_bytes().to_vec()));
    text("source address", &SOURCE.to_string());
    text("X-Forwarded-For", FORWARDED_FOR);
    text("Forwarded", FORWARDED);
    text("X-Real-IP", REAL_IP);
    text("user agent", "marker-ua-5521");
    text("user agent", "PrivacyProbe");
    for (label, id) in [("instance id", INSTANCE_ID), ("report id", REPORT_ID)] {
        text(label, id);
        text(label, &id.to_uppercase());
        text(label, &id.replace('-', ""));
    }
    for (label, id) in [("instance id", INSTANCE_ID), ("report id", REPORT_ID)] {
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        needles.push((format!("{label} (binary)"), uuid.as_bytes().to_vec()));
    }
    needles.push(("source address (binary)".into(), SOURCE.octets().to_vec()));
    needles
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn nothing_identifying_is_stored_logged_or_returned(db: TestDb) {
    let collector = CollectorProcess::start(&db, &[], &[]);
    let port = collector.port;
    let report = json!({
        "schema_version": 1,
        "report_id": REPORT_ID,
        "instance_id": INSTANCE_ID,
        "product": "passbolt",
        "event": "install",
        "version": "4.10.1",
        "attributes": {"edition": "pro", "os_family": FORWARDED_FOR, "db_engine": "admin@example.org"},
        "counters": {"users": 7},
        "features": {"sso": true}
    });
    let legacy = format!(
        "InstallStatistic%5Binstance_id%5D={INSTANCE_ID}&InstallStatistic%5Bcontext%5D=install&InstallStatistic%5Busers_count%5D=8&InstallStatistic%5Bversion%5D=4.10.2"
    );
    let bad = ReportBuilder::from(report.clone())
        .counter("users", -1)
        .build();
    let requests = [
        request("/api/v1/reports", "application/json", &report.to_string()),
        request("/api/v1/reports", "application/json", &report.to_string()),
        request(
            "/statistics/install.json",
            "application/x-www-form-urlencoded",
            &legacy,
        ),
        request("/api/v1/reports", "application/json", &bad.to_string()),
        request("/api/v1/reports", "text/plain", "hello"),
        request("/nowhere", "application/json", "{}"),
        request("/api/v1/reports", "application/json", &"x".repeat(70_000)),
    ];
    let responses: Vec<String> = actix_web::rt::task::spawn_blocking(move || {
        requests
            .iter()
            .map(|r| raw_http(port, IpAddr::V4(SOURCE), r))
            .collect()
    })
    .await
    .unwrap();
    let statuses: Vec<&str> = responses.iter().map(|r| &r[9..12]).collect();
    assert_eq!(
        statuses,
        ["202", "200", "202", "400", "415", "404", "413"],
        "{responses:#?}"
    );

    // Every request's access line, before looking for what must not be there.
    let logs = collector.logs_when(|l| l.matches("anonstats::access").count() >= responses.len());
    assert!(
        logs.contains("anonstats::access"),
        "access log present: {logs}"
    );
    let database = db.raw_bytes();
    assert!(find(&database, b"4.10.2"), "the database dump is readable");
    for (label, needle) in forbidden_needles() {
        assert!(
            !find(&database, &needle),
            "{label} found in the {:?} database",
            db.backend
        );
        assert!(!find(logs.as_bytes(), &needle), "{label} found in the logs");
        for response in &responses {
            assert!(
                !find(response.as_bytes(), &needle),
                "{label} returned in a response: {response}"
            );
        }
    }
}
on_both_backends!(nothing_identifying_is_stored_logged_or_returned);

/// Every stored string is a catalog name or value, `other`, a validated
/// version, or one of the collector's own fixed words; every stored time is
/// a UTC day.
async fn stored_values_are_closed_vocabulary_and_days(db: TestDb) {
    let app = spawn_app(db).await;
    let report = ReportBuilder::new()
        .attribute("os_family", "<script>alert(1)</script>")
        .attribute("php_version", "8.2'); DROP TABLE instances; --")
        .build();
    assert_eq!(app.post_report(&report).await.status, 202);
    let update = ReportBuilder::new().instance_of(&report).build();
    assert_eq!(app.post_report(&update).await.status, 202);
    let anonymous = ReportBuilder::new().anonymous().build();
    assert_eq!(app.post_report(&anonymous).await.status, 202);

    let catalog = Catalog::builtin();
    let mut allowed: BTreeSet<String> = [
        "other",
        "install",
        "update",
        "version",
        "attribute",
        "feature",
        "",
        "true",
        "false",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for (pname, p) in &catalog.products {
        allowed.insert(pname.clone());
        for (name, a) in &p.attributes {
            allowed.insert(name.clone());
            allowed.extend(a.values.iter().cloned());
        }
        allowed.extend(p.counters.keys().cloned());
        allowed.extend(p.features.keys().cloned());
    }
    let is_day =
        |v: &str| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() && v.len() == 10;
    let is_int = |v: &str| v.parse::<i64>().is_ok();
    let is_hash = |v: &str| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
    let values = app.db.all_text();
    assert!(!values.is_empty());
    for (table, column, value) in values {
        if table == "__diesel_schema_migrations" {
            continue;
        }
        let ok = match (table.as_str(), column.as_str()) {
            ("instances", "state") => state_is_closed(&value, &allowed),
            (_, "instance_hash" | "report_hash") => is_hash(&value),
            // Keyed hashes of report ids, 32 bytes each, and their days.
            ("instances", "report_keys") => {
                value.len() % 72 == 0 && value.bytes().all(|b| b.is_ascii_hexdigit())
            }
            ("settings", "name") => [
                anonstats::store::SECRET_SETTING,
                anonstats::store::FINGERPRINT_SETTING,
            ]
            .contains(&value.as_str()),
            ("settings", "value") => is_hash(&value),
            (
                _,
                "day"
                | "first_seen"
                | "last_seen"
                | "upgraded_on"
                | "report_keys_since"
                | "report_keys_spilled",
            ) => is_day(&value),
            (_, "version" | "previous_version" | "upgraded_from" | "upgraded_to" | "value") => {
                allowed.contains(&value) || is_valid_version(&value)
            }
            _ => allowed.contains(&value) || is_int(&value),
        };
        assert!(ok, "{table}.{column} holds {value:?}");
    }
}
on_both_backends!(stored_values_are_closed_vocabulary_and_days);

fn state_is_closed(state: &str, allowed: &BTreeSet<String>) -> bool {
    let Ok(Value::Object(state)) = serde_json::from_str::<Value>(state) else {
        return false;
    };
    state.iter().all(|(section, entries)| {
        ["attributes", "counters", "features"].contains(&section.as_str())
            && entries.as_object().is_some_and(|m| {
                m.iter().all(|(k, v)| {
                    allowed.contains(k)
                        && match v {
                            Value::String(s) => allowed.contains(s),
                            Value::Number(n) => n.is_i64(),
                            Value::Bool(_) => true,
                            _ => false,
                        }
                })
            })
    })
}

/// No column of the collector's tables has a type finer than a day.
async fn schema_has_no_timestamp_columns(db: TestDb) {
    let app = spawn_app(db).await;
    let mut conn = app.db.conn();
    let sql = match app.db.backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master m, pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name NOT LIKE '\\_\\_%' ESCAPE '\\'
             AND (upper(c.type) LIKE '%TIME%')"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name NOT LIKE '\\_\\_%'
             AND (data_type LIKE '%time%' OR data_type LIKE '%interval%')"
        }
    };
    assert_eq!(scalar(&mut conn, sql), 0);
}
on_both_backends!(schema_has_no_timestamp_columns);

/// Database URLs are printed with their password redacted, even when the
/// connection fails.
#[test]
fn database_password_is_never_printed() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args([
            "migrate",
            "--database",
            "postgres://stats:hunter2-pw-marker@127.0.0.1:1/stats",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgres://stats:***@127.0.0.1:1/stats"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-pw-marker"), "{stderr}");
}
