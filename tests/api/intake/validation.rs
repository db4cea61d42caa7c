//! Every validation rule: 400 problem+json naming the field and the rule,
//! and nothing stored.

use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

/// A broken report and the (field, rule) the answer must name.
struct Case {
    name: &'static str,
    breaks: fn(ReportBuilder) -> ReportBuilder,
    field: &'static str,
    rule: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown top-level field",
        breaks: |r| r.field("hostname", "db1.example.com"),
        field: "hostname",
        rule: "unknown_field",
    },
    Case {
        name: "schema_version missing",
        breaks: |r| r.without("schema_version"),
        field: "schema_version",
        rule: "required",
    },
    Case {
        name: "schema_version unsupported",
        breaks: |r| r.field("schema_version", 2),
        field: "schema_version",
        rule: "unsupported",
    },
    Case {
        name: "schema_version wrong type",
        breaks: |r| r.field("schema_version", "1"),
        field: "schema_version",
        rule: "type",
    },
    Case {
        name: "unknown product",
        breaks: |r| r.field("product", "nextcloud"),
        field: "product",
        rule: "unknown_product",
    },
    Case {
        name: "product wrong type",
        breaks: |r| r.field("product", 7),
        field: "product",
        rule: "type",
    },
    Case {
        name: "malformed instance_id",
        breaks: |r| r.instance("not-a-uuid"),
        field: "instance_id",
        rule: "uuid",
    },
    Case {
        name: "malformed report_id",
        breaks: |r| r.field("report_id", "7f1c2e9a3b4d4c5e8f60718293a4b5c6"),
        field: "report_id",
        rule: "uuid",
    },
    Case {
        name: "instance_id wrong type",
        breaks: |r| r.field("instance_id", 12),
        field: "instance_id",
        rule: "type",
    },
    Case {
        name: "malformed version",
        breaks: |r| r.version("4.10"),
        field: "version",
        rule: "version",
    },
    Case {
        name: "version with words",
        breaks: |r| r.version("4.10.1-acme-corp"),
        field: "version",
        rule: "version",
    },
    Case {
        name: "version too long",
        breaks: |r| r.version("1.2.300000000000000000000000000000"),
        field: "version",
        rule: "version",
    },
    Case {
        name: "malformed previous_version",
        breaks: |r| r.previous_version("four"),
        field: "previous_version",
        rule: "version",
    },
    Case {
        name: "version missing",
        breaks: |r| r.without("version"),
        field: "version",
        rule: "required",
    },
    Case {
        name: "event unknown",
        breaks: |r| r.event("uninstall"),
        field: "event",
        rule: "enum",
    },
    Case {
        name: "update without previous_version",
        breaks: |r| r.without("previous_version"),
        field: "previous_version",
        rule: "required_for_update",
    },
    Case {
        name: "install with previous_version",
        breaks: |r| r.event("install"),
        field: "previous_version",
        rule: "forbidden_for_install",
    },
    Case {
        name: "negative counter",
        breaks: |r| r.counter("users", -1),
        field: "counters.users",
        rule: "minimum",
    },
    Case {
        name: "counter above bound",
        breaks: |r| r.counter("users", 1_000_001),
        field: "counters.users",
        rule: "maximum",
    },
    Case {
        name: "huge counter",
        breaks: |r| r.counter("resources", u64::MAX),
        field: "counters.resources",
        rule: "maximum",
    },
    Case {
        name: "fractional counter",
        breaks: |r| r.counter("users", 4.5),
        field: "counters.users",
        rule: "type",
    },
    Case {
        name: "counter as string",
        breaks: |r| r.counter("users", "42"),
        field: "counters.users",
        rule: "type",
    },
    Case {
        name: "attribute not a string",
        breaks: |r| r.attribute("edition", json!(["ce"])),
        field: "attributes.edition",
        rule: "type",
    },
    Case {
        name: "feature not a boolean",
        breaks: |r| r.feature("mfa", "yes"),
        field: "features.mfa",
        rule: "type",
    },
    Case {
        name: "attributes not an object",
        breaks: |r| r.field("attributes", "edition=ce"),
        field: "attributes",
        rule: "type",
    },
];

async fn each_rule_is_named_and_nothing_is_stored(db: TestDb) {
    let app = spawn_app(db).await;
    for case in CASES {
        let report = (case.breaks)(ReportBuilder::new()).build();

        let reply = app.post_report(&report).await;

        assert_eq!(reply.status, 400, "{}: {}", case.name, reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{}",
            case.name
        );
        let problem = reply.json();
        assert_eq!(problem["status"], 400);
        let errors = problem["errors"].as_array().expect("errors list");
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == case.field && e["rule"] == case.rule),
            "{}: expected {} / {} in {problem}",
            case.name,
            case.field,
            case.rule
        );
        assert!(
            problem["detail"].as_str().unwrap().len() < 300,
            "{}: short detail",
            case.name
        );
    }
    let stored = app.db.inspect();
    for (table, rows) in [
        ("daily_events", stored.events().len()),
        ("instances", stored.instances().len()),
        ("seen_reports", stored.dedupe_keys().len()),
        ("instance_values", stored.values().len()),
        ("instance_counters", stored.counters().len()),
    ] {
        assert_eq!(rows, 0, "{table} must stay empty");
    }
}
on_both_backends!(each_rule_is_named_and_nothing_is_stored);

async fn body_that_is_not_a_json_object_is_refused(db: TestDb) {
    let app = spawn_app(db).await;
    for body in [&b"{not json"[..], b"[1,2,3]", b"", b"null"] {
        let reply = app
            .post("/api/v1/reports", "application/json", body.to_vec())
            .await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert!(reply.json()["rule"].is_string());
    }
    assert_eq!(app.db.inspect().events().len(), 0);
}
on_both_backends!(body_that_is_not_a_json_object_is_refused);

async fn json_error_does_not_echo_the_body(db: TestDb) {
    let app = spawn_app(db).await;
    let body = br#"{"schema_version": 1, "product": "passbolt", "secret-token-xyz" "#.to_vec();
    let reply = app.post("/api/v1/reports", "application/json", body).await;
    assert_eq!(reply.status, 400);
    assert!(!reply.text().contains("secret-token-xyz"));
}
on_both_backends!(json_error_does_not_echo_the_body);

async fn minimal_report_is_accepted(db: TestDb) {
    let app = spawn_app(db).await;
    let reply = app
        .post_report(&json!({"schema_version": 1, "product": "passbolt", "event": "install", "version": "5.0.0-rc.1"}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(
        app.db
            .inspect()
            .events()
            .reports_where(|e| e.version == "5.0.0-rc.1" && e.event == "install"),
        1
    );
    assert_eq!(app.db.inspect().instances().len(), 0);
}
on_both_backends!(minimal_report_is_accepted);
