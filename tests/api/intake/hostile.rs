//! A corpus of hostile inputs: each gets the documented status, a short
//! error body, and nothing of it reaches the database.

use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

/// Strings that must never be found in storage.
const MARKERS: &[&str] = &[
    "DROP TABLE",
    "<script>",
    "alice@example.com",
    "192.0.2.44",
    "2001:db8::44",
    "onerror",
    "=cmd|",
    "\u{202e}",
];

struct Case {
    name: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    rule: Option<&'static str>,
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    rule: Option<&'static str>,
) -> Case {
    Case {
        name,
        content_type: "application/json",
        body: body.into(),
        status,
        rule,
    }
}

/// The sample report, changed by `change`, as bytes.
fn with(change: impl FnOnce(ReportBuilder) -> ReportBuilder) -> Vec<u8> {
    change(ReportBuilder::new())
        .build()
        .to_string()
        .into_bytes()
}

/// The sample report as text with `"version": "4.10.1"` replaced.
fn raw_with(replacement: &str) -> Vec<u8> {
    let text = sample_report().to_string();
    assert!(text.contains("\"version\":\"4.10.1\""));
    text.replacen("\"version\":\"4.10.1\"", replacement, 1)
        .into_bytes()
}

fn corpus() -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_in_report = raw_with(&format!(
        "\"version\":\"4.10.1\",\"zz\":{}1{}",
        "{\"a\":".repeat(200),
        "}".repeat(200)
    ));
    let mut cases = vec![
        case("deep nesting", deep, 400, Some("json")),
        case(
            "deep nesting inside a report",
            deep_in_report,
            400,
            Some("json"),
        ),
        case(
            "counter at i64 max",
            with(|r| r.counter("users", i64::MAX)),
            400,
            Some("maximum"),
        ),
        case(
            "number beyond f64",
            raw_with("\"version\":\"4.10.1\",\"zz\":1e400"),
            400,
            None,
        ),
        case(
            "counter beyond i64",
            String::from_utf8(with(|r| r.counter("users", 0)))
                .unwrap()
                .replace("\"users\":0", "\"users\":99999999999999999999999")
                .into_bytes(),
            400,
            None,
        ),
        case(
            "counter at u64 max",
            with(|r| r.counter("users", u64::MAX)),
            400,
            Some("maximum"),
        ),
        case(
            "float counter",
            with(|r| r.counter("users", 42.5)),
            400,
            Some("type"),
        ),
        case(
            "integral float counter",
            with(|r| r.counter("users", 42.0)),
            400,
            Some("type"),
        ),
        case(
            "float schema version",
            String::from_utf8(with(|r| r))
                .unwrap()
                .replacen("\"schema_version\":1", "\"schema_version\":1.0", 1)
                .into_bytes(),
            400,
            Some("type"),
        ),
        case(
            "duplicate top-level key",
            raw_with("\"version\":\"4.10.1\",\"version\":\"4.10.1\""),
            400,
            Some("duplicate_key"),
        ),
        case(
            "duplicate nested key",
            String::from_utf8(with(|r| r))
                .unwrap()
                .replacen(
                    "\"edition\":\"ce\"",
                    "\"edition\":\"ce\",\"edition\":\"ee\"",
                    1,
                )
                .into_bytes(),
            400,
            Some("duplicate_key"),
        ),
        case(
            "invalid UTF-8",
            raw_with("\"version\":\"4.10.1\",\"zz\":\"pass\u{0}bolt\"")
                .into_iter()
                .map(|b| if b == 0 { 0xff } else { b })
                .collect::<Vec<u8>>(),
            400,
            Some("json"),
        ),
        case(
            "raw NUL byte",
            raw_with("\"version\":\"4.10.1\u{0}\""),
            400,
            Some("json"),
        ),
        case(
            "escaped NUL in attribute",
            with(|r| r.attribute("os_family", "debian\u{0}DROP TABLE")),
            202,
            None,
        ),
        case(
            "escaped NUL in product",
            with(|r| r.field("product", "passbolt\u{0}")),
            400,
            Some("unknown_product"),
        ),
        case(
            "SQL in attribute",
            with(|r| r.attribute("db_engine", "mysql'); DROP TABLE instances; --")),
            202,
            None,
        ),
        case(
            "SQL in version",
            with(|r| r.version("4.10.1'; DROP TABLE instances; --")),
            400,
            Some("version"),
        ),
        case(
            "SQL in key",
            with(|r| r.attribute("x'); DROP TABLE instances; --", "1")),
            202,
            None,
        ),
        case(
            "HTML in attribute",
            with(|r| r.attribute("edition", "<script>alert(1)</script>")),
            202,
            None,
        ),
        case(
            "HTML in feature key",
            with(|r| r.feature("<img src=x onerror=alert(1)>", true)),
            202,
            None,
        ),
        case(
            "CSV formula in attribute",
            with(|r| r.attribute("php_version", "=cmd|' /C calc'!A0")),
            202,
            None,
        ),
        case(
            "email as attribute",
            with(|r| r.attribute("install_method", "alice@example.com")),
            202,
            None,
        ),
        case(
            "IPv4 as attribute",
            with(|r| r.attribute("os_family", "192.0.2.44")),
            202,
            None,
        ),
        case(
            "IPv6 as attribute",
            with(|r| r.attribute("db_engine", "2001:db8::44")),
            202,
            None,
        ),
        case(
            "bidi override in attribute",
            with(|r| r.attribute("edition", "ce\u{202e}")),
            202,
            None,
        ),
        case(
            "email as instance id",
            with(|r| r.instance("alice@example.com")),
            400,
            Some("uuid"),
        ),
        case(
            "enormous array",
            with(|r| r.field("attributes", vec![0; 20_000])),
            400,
            Some("type"),
        ),
        case(
            "enormous array over the size limit",
            with(|r| r.field("attributes", vec![0; 40_000])),
            413,
            None,
        ),
        case(
            "many unknown keys",
            with(|r| (0..2000).fold(r, |r, i| r.counter(&format!("k{i}"), i))),
            202,
            None,
        ),
        case(
            "very long key",
            with(|r| r.attribute(&"DROP TABLE".repeat(3000), "x")),
            202,
            None,
        ),
        case("empty body", Vec::new(), 400, Some("json")),
        case("null", "null", 400, Some("type")),
        case("array", "[1,2,3]", 400, Some("type")),
        case("string", "\"<script>\"", 400, Some("type")),
        case(
            "Latin-1 bytes declared as UTF-8",
            raw_with("\"version\":\"4.10.1\",\"zz\":\"caf\u{e9}\"")
                .into_iter()
                .flat_map(|b| {
                    if b == 0xc3 {
                        vec![]
                    } else if b == 0xa9 {
                        vec![0xe9]
                    } else {
                        vec![b]
                    }
                })
                .collect::<Vec<u8>>(),
            400,
            Some("json"),
        ),
        case(
            "byte order mark",
            [&[0xef, 0xbb, 0xbf][..], &with(|r| r)].concat(),
            400,
            Some("json"),
        ),
    ];
    cases.push(Case {
        name: "UTF-16 body",
        content_type: "application/json; charset=utf-16",
        body: String::from_utf8(with(|r| r))
            .unwrap()
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect(),
        status: 415,
        rule: None,
    });
    cases.push(Case {
        name: "Latin-1 charset",
        content_type: "application/json; charset=iso-8859-1",
        body: with(|r| r),
        status: 415,
        rule: None,
    });
    cases.push(Case {
        name: "legacy form with SQL in version",
        content_type: "application/x-www-form-urlencoded",
        body: b"InstallStatistic%5Bversion%5D=1.6.10%27%3B%20DROP%20TABLE%20instances".to_vec(),
        status: 400,
        rule: Some("version"),
    });
    cases.push(Case {
        name: "legacy form with an email as instance id",
        content_type: "application/x-www-form-urlencoded",
        body: b"InstallStatistic%5Binstance_id%5D=alice%40example.com&InstallStatistic%5Bversion%5D=1.6.10".to_vec(),
        status: 400,
        rule: Some("uuid"),
    });
    cases.push(Case {
        name: "legacy form with invalid UTF-8",
        content_type: "application/x-www-form-urlencoded",
        body: b"InstallStatistic%5Bversion%5D=1.6.10&InstallStatistic%5Bcontext%5D=%ff%fe".to_vec(),
        status: 400,
        rule: None,
    });
    cases
}

async fn hostile_inputs_get_their_status_and_store_nothing_of_themselves(db: TestDb) {
    let app = spawn_app(db).await;
    let mut accepted = 0;
    let cases = corpus();
    for c in &cases {
        let path = if c
            .content_type
            .starts_with("application/x-www-form-urlencoded")
        {
            "/statistics/install.json"
        } else {
            "/api/v1/reports"
        };

        let reply = app.post(path, c.content_type, c.body.clone()).await;

        assert_eq!(reply.status, c.status, "{}: {}", c.name, reply.text());
        assert!(reply.body.len() < 4096, "{}: error body is short", c.name);
        let text = reply.text();
        // Unknown keys of an accepted report are listed back (cut short) by
        // design; an error never repeats the offending value.
        if reply.status >= 400 {
            assert!(!text.contains("DROP TABLE"), "{}: echoed", c.name);
        }
        if let Some(rule) = c.rule {
            assert_eq!(reply.json()["rule"], rule, "{}: {text}", c.name);
        }
        if reply.status == 202 {
            accepted += 1;
        }
    }

    let db = &app.db;
    assert_eq!(
        db.inspect().reports(),
        accepted,
        "only accepted reports count"
    );
    let stored = db.all_text();
    for (table, column, value) in &stored {
        for marker in MARKERS {
            assert!(
                !value.contains(marker),
                "{marker:?} stored in {table}.{column}"
            );
        }
        assert!(!value.contains('\0'), "NUL stored in {table}.{column}");
    }
    let raw = db.raw_bytes();
    for marker in MARKERS {
        assert!(
            !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{marker:?} found in the raw database"
        );
    }
    // Look-alike values were kept as `other`.
    let values = db.inspect().values();
    assert!(values.instances_where(|v| v.kind == "attribute" && v.value == "other") >= 8);
    let catalog = [
        "edition",
        "php_version",
        "db_engine",
        "os_family",
        "install_method",
    ];
    assert_eq!(
        values
            .iter()
            .filter(|v| v.kind == "attribute" && !catalog.contains(&v.name.as_str()))
            .count(),
        0,
        "no attribute outside the catalog"
    );
}
on_both_backends!(hostile_inputs_get_their_status_and_store_nothing_of_themselves);

#[test]
fn corpus_is_large_enough() {
    assert!(corpus().len() >= 40, "{}", corpus().len());
}

/// Random methods, paths, headers and bodies, each carrying a marker: none
/// of them crashes the collector, and no marker reaches a log line at any
/// level; a method outside the standard ones is logged as `OTHER`.
fn nothing_a_client_chooses_reaches_the_logs(db: TestDb) {
    use rand::{Rng, SeedableRng};
    let collector = CollectorProcess::start(&db, &[], &[]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
    let routes = [
        "/api/v1/reports",
        "/api/v1/erasures",
        "/statistics/install.json",
        "/api/v1/stats/summary",
        "/signin",
        "/metrics",
        "/",
        "/nowhere",
    ];
    let mut markers = Vec::new();
    for i in 0..150 {
        let marker = format!("zq{}x{i}", rng.random_range(100_000..999_999));
        let method = match i % 4 {
            0 => format!("M{}", marker.to_uppercase()),
            1 => "POST".to_owned(),
            2 => "GET".to_owned(),
            _ => "DELETE".to_owned(),
        };
        let route = routes[rng.random_range(0..routes.len())];
        let path = match i % 3 {
            0 => format!("{route}?{marker}={marker}"),
            1 => format!("{route}/{marker}"),
            _ => route.to_owned(),
        };
        let body = match i % 5 {
            0 => format!("{{\"instance_id\": \"{marker}\", \"product\": \"{marker}\"}}"),
            1 => format!("token={marker}"),
            2 => {
                (0..rng.random_range(0..200))
                    .map(|_| rng.random_range(b' '..=b'~') as char)
                    .collect::<String>()
                    + &marker
            }
            _ => String::new(),
        };
        let content_type = [
            "application/json",
            "application/x-www-form-urlencoded",
            &marker,
        ][i % 3];
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {marker}\r\nUser-Agent: {marker}\r\nX-Forwarded-For: 203.0.113.{}\r\nCookie: anonstats_session={marker}\r\nAuthorization: Bearer {marker}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            i % 250,
            body.len()
        );
        let _ = raw_http(
            collector.port,
            "127.0.0.1".parse().unwrap(),
            request.as_bytes(),
        );
        markers.push(marker);
    }

    let alive = raw_http(
        collector.port,
        "127.0.0.1".parse().unwrap(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(alive.starts_with("HTTP/1.1 200"), "{alive}");
    let logs = collector.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(
        logs.contains(r#""method":"OTHER""#),
        "odd methods are logged as OTHER"
    );
    for m in &markers {
        assert!(
            !logs.to_lowercase().contains(&m.to_lowercase()),
            "{m} in the logs"
        );
    }
    assert!(!logs.contains("203.0.113."), "an address in the logs");
}
on_both_backends_sync!(nothing_a_client_chooses_reaches_the_logs);
