//! The published contract, `GET /api/v1/openapi.json`, against the real
//! server: the document is well-formed OpenAPI 3.1, it lists exactly the
//! routes the collector serves, every status it documents is reached, and
//! every answer validates against the schema documented for its status and
//! media type.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use actix_web::http::Method;
use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::release::publish_seeded;
use crate::support::seed::{install, seed, times, update};
use crate::support::*;

/// The document as kept in the repository.
const DOCUMENT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/openapi.json"));

/// Every (method, route) the collector serves. A route added to the server
/// belongs here and in the document; the test fails until both list it.
const SERVED: &[(&str, &str)] = &[
    ("post", "/api/v1/reports"),
    ("post", "/statistics/install.json"),
    ("get", "/api/v1/catalog"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/stats/summary"),
    ("get", "/api/v1/stats/events"),
    ("get", "/api/v1/stats/versions"),
    ("get", "/api/v1/stats/attributes/{name}"),
    ("get", "/api/v1/stats/counters"),
    ("get", "/api/v1/stats/features"),
    ("get", "/api/v1/stats/upgrades"),
    ("post", "/api/v1/erasures"),
    ("delete", "/api/v1/instances/{instance_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/assets/{name}"),
    ("post", "/signin"),
    ("get", "/signin"),
    ("post", "/signout"),
    ("get", "/api/v1/public/releases/latest"),
    ("get", "/api/v1/public/releases/{date}"),
    ("get", "/api/v1/public/releases/{date}/release.csv"),
    ("get", "/api/v1/public/releases/{date}/manifest.json"),
    ("get", "/api/v1/public/ledger"),
    ("get", "/public"),
];

const STATS_ROUTES: &[&str] = &[
    "/api/v1/stats/summary",
    "/api/v1/stats/events",
    "/api/v1/stats/versions",
    "/api/v1/stats/attributes/{name}",
    "/api/v1/stats/counters",
    "/api/v1/stats/features",
    "/api/v1/stats/upgrades",
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Escapes one JSON Pointer token (RFC 6901).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// A `#/...` reference as a URI fragment: characters a fragment may not
/// hold (such as the braces of a path template) percent-encoded.
fn uri_fragment(reference: &str) -> String {
    let mut out = String::new();
    for c in reference.chars() {
        if c.is_ascii_alphanumeric() || "#-._~!$&'()*+,;=:@/?".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The OpenAPI document and what the tests need to read it.
struct Contract {
    doc: Value,
}

impl Contract {
    fn new(doc: Value) -> Contract {
        Contract { doc }
    }

    /// The value at a `#/...` reference, if any.
    fn at(&self, reference: &str) -> Option<&Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    /// Follows `$ref`s from `reference` and returns where it ended, and what
    /// is there.
    fn resolve(&self, reference: &str) -> (String, &Value) {
        let mut reference = reference.to_owned();
        for _ in 0..16 {
            let value = self
                .at(&reference)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            match value.get("$ref").and_then(Value::as_str) {
                Some(next) => reference = next.to_owned(),
                None => return (reference, value),
            }
        }
        panic!("{reference}: $ref chain too long")
    }

    /// Every documented (method, route).
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (route, item) in self.doc["paths"].as_object().expect("paths") {
            for method in HTTP_METHODS {
                if item.get(*method).is_some() {
                    out.insert((method.to_string(), route.clone()));
                }
            }
        }
        out
    }

    fn operation_ref(method: &str, route: &str) -> String {
        format!("#/paths/{}/{method}", token(route))
    }

    /// Every documented (method, route, status).
    fn statuses(&self) -> BTreeSet<(String, String, u16)> {
        let mut out = BTreeSet::new();
        for (method, route) in self.operations() {
            let op = self.at(&Self::operation_ref(&method, &route)).unwrap();
            for status in op["responses"].as_object().unwrap().keys() {
                out.insert((method.clone(), route.clone(), status.parse().unwrap()));
            }
        }
        out
    }

    /// The parameters of an operation (path item's and its own), resolved.
    fn parameters(&self, method: &str, route: &str) -> Vec<&Value> {
        let item = format!("#/paths/{}", token(route));
        let op = Self::operation_ref(method, route);
        let mut out = Vec::new();
        for owner in [item, op] {
            let list = self
                .at(&format!("{owner}/parameters"))
                .and_then(Value::as_array);
            for i in 0..list.map_or(0, Vec::len) {
                out.push(self.resolve(&format!("{owner}/parameters/{i}")).1);
            }
        }
        out
    }

    /// A concrete path for a route, path parameters filled with their
    /// documented examples.
    fn example_path(&self, method: &str, route: &str) -> String {
        let mut path = route.to_owned();
        for p in self.parameters(method, route) {
            if p["in"] == "path" {
                let name = p["name"].as_str().unwrap();
                let example = p["example"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{route}: path parameter {name} has no example"));
                path = path.replace(&format!("{{{name}}}"), example);
            }
        }
        path
    }

    /// Validates `instance` against the schema at `reference`, inside the
    /// whole document so that its `#/components/...` references resolve.
    fn validate(&self, reference: &str, instance: &Value) -> Result<(), String> {
        let mut root = self.doc.clone();
        root["$ref"] = json!(uri_fragment(reference));
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema {reference} does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Checks one real answer against the document: its status is
    /// documented for the operation, required headers are there, its media
    /// type is documented, and its body validates against the schema.
    fn check(&self, seen: &Seen) {
        let what = format!(
            "{} {} -> {} ({})",
            seen.method.to_uppercase(),
            seen.route,
            seen.reply.status,
            seen.what
        );
        let op = Self::operation_ref(seen.method, seen.route);
        assert!(self.at(&op).is_some(), "{what}: operation not documented");
        let status = format!("{op}/responses/{}", seen.reply.status);
        assert!(
            self.at(&status).is_some(),
            "{what}: status not documented\n{}",
            seen.reply.text()
        );
        let (response, doc) = self.resolve(&status);
        for (name, _) in doc["headers"].as_object().into_iter().flatten() {
            let (header, h) = self.resolve(&format!("{response}/headers/{}", token(name)));
            let value = seen.reply.header(name);
            if h["required"] == true {
                assert!(value.is_some(), "{what}: header {name} missing");
            }
            if let Some(value) = value {
                let typed = match h["schema"]["type"].as_str() {
                    Some("integer") => json!(value
                        .parse::<i64>()
                        .unwrap_or_else(|_| panic!("{what}: header {name}: {value:?}"))),
                    _ => json!(value),
                };
                self.validate(&format!("{header}/schema"), &typed)
                    .unwrap_or_else(|e| panic!("{what}: header {name}: {e}"));
            }
        }
        if doc.get("content").is_none() {
            // Documented as bodiless (a redirect): the answer must be too.
            assert!(seen.reply.body.is_empty(), "{what}: undocumented body");
            return;
        }
        let content_type = seen.reply.header("content-type").unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_ascii_lowercase();
        let content = doc["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no content documented"));
        let media = content
            .keys()
            .find(|k| k.split(';').next().unwrap().trim() == essence)
            .unwrap_or_else(|| panic!("{what}: media type {content_type:?} not documented"));
        let schema = format!("{response}/content/{}/schema", token(media));
        let body = if essence.ends_with("json") {
            seen.reply.json()
        } else {
            Value::String(seen.reply.text())
        };
        self.validate(&schema, &body)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", seen.reply.text()));
    }
}

/// One real answer on a documented route.
struct Seen {
    method: &'static str,
    route: &'static str,
    what: String,
    reply: Reply,
}

/// The answers collected by one test.
#[derive(Default)]
struct Seens(Vec<Seen>);

impl Seens {
    fn add(&mut self, method: &'static str, route: &'static str, what: &str, reply: Reply) {
        self.0.push(Seen {
            method,
            route,
            what: what.to_owned(),
            reply,
        });
    }

    fn reached(&self) -> BTreeSet<(String, String, u16)> {
        self.0
            .iter()
            .map(|s| (s.method.to_owned(), s.route.to_owned(), s.reply.status))
            .collect()
    }
}

/// Sends any request and reads the whole answer.
async fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    // Redirects are answers to check, not to follow.
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut req = client.request(method, format!("{}{path}", app.address));
    // As a maintainer, unless the case brings credentials of its own.
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        req = req.insert_header(("Authorization", format!("Bearer {TEST_TOKEN}")));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let sent = match body {
        Some((content_type, bytes)) => {
            req.insert_header(("Content-Type", content_type))
                .send_body(bytes)
                .await
        }
        None => req.send().await,
    };
    read_reply(sent.expect("request sent")).await
}

/// Sends raw bytes from `source` and parses the answer (which must have a
/// `Content-Length` body, as every answer of the collector has).
async fn raw(app: &TestApp, source: [u8; 4], bytes: Vec<u8>) -> Reply {
    let port = app.port;
    let text = actix_web::rt::task::spawn_blocking(move || {
        raw_http(port, IpAddr::V4(Ipv4Addr::from(source)), &bytes)
    })
    .await
    .unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(body.len(), |(_, v)| v.parse().unwrap());
    Reply {
        status,
        headers,
        body: body.as_bytes()[..length].to_vec(),
    }
}

/// A raw HTTP/1.1 request with a body.
fn raw_request(path: &str, content_type: &str, content_length: usize, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: stats\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n{body}"
    )
    .into_bytes()
}

const FORM: &str = "application/x-www-form-urlencoded";

fn legacy_form(instance_id: &str) -> Vec<u8> {
    format!("InstallStatistic%5Binstance_id%5D={instance_id}&InstallStatistic%5Bcontext%5D=install&InstallStatistic%5Busers_count%5D=42&InstallStatistic%5Bpasswords_count%5D=1234&InstallStatistic%5Blogs_count%5D=98765&InstallStatistic%5Bversion%5D=1.6.10").into_bytes()
}

/// The served document.
async fn served_contract(app: &TestApp) -> (Reply, Contract) {
    let reply = app.get("/api/v1/openapi.json").await;
    assert_eq!(reply.status, 200);
    let contract = Contract::new(reply.json());
    (reply, contract)
}

async fn document_is_well_formed_openapi_3_1(db: TestDb) {
    let app = spawn_app(db).await;

    let (reply, contract) = served_contract(&app).await;

    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.text(),
        DOCUMENT,
        "the repository's document is served"
    );
    let doc = &contract.doc;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string());
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Every reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    assert!(all.len() > 50);
    for r in all {
        assert!(r.starts_with("#/"), "{r}: only local references");
        assert!(contract.at(r).is_some(), "{r} does not resolve");
    }
    // Every schema is a valid JSON Schema 2020-12.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        jsonschema::draft202012::meta::validate(schema)
            .unwrap_or_else(|e| panic!("schema {name}: {e}"));
        // ...that compiles where it stands, its references included.
        contract
            .validate(&format!("#/components/schemas/{name}"), &json!(null))
            .ok();
    }
    // Operations: responses with descriptions, path parameters declared,
    // unique ids, security schemes that exist.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let mut ids = BTreeSet::new();
    for (method, route) in contract.operations() {
        let op_ref = Contract::operation_ref(&method, &route);
        let op = contract.at(&op_ref).unwrap();
        let item = &doc["paths"][&route];
        for key in item.as_object().unwrap().keys() {
            assert!(
                HTTP_METHODS.contains(&key.as_str())
                    || ["summary", "description", "parameters", "servers"].contains(&key.as_str()),
                "{route}: {key} is not a field of a path item"
            );
        }
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {route} has no response");
        for status in responses.keys() {
            let code: u16 = status.parse().unwrap();
            assert!((100..600).contains(&code), "{status}");
            let (at, response) = contract.resolve(&format!("{op_ref}/responses/{status}"));
            assert!(response["description"].is_string(), "{at}");
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                let schema = format!("{at}/content/{}/schema", token(media));
                assert!(content["schema"].is_object(), "{schema}");
            }
        }
        let params = contract.parameters(&method, &route);
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{route}"))
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let templated: BTreeSet<&str> = route
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, templated, "{method} {route}: path parameters");
        for requirement in op["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(scheme), "{route}: {scheme}");
            }
        }
    }
}
on_both_backends!(document_is_well_formed_openapi_3_1);

async fn document_lists_exactly_the_served_routes(db: TestDb) {
    let app = spawn_app(db).await;
    // The public release routes answer 404 until a release exists; the
    // document's example date is 2026-12-01.
    publish_seeded(&app.db, day("2026-12-01"), 1);
    let (_, contract) = served_contract(&app).await;

    let documented = contract.operations();
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, r)| (m.to_string(), r.to_string()))
        .collect();

    assert_eq!(documented, served);
    // And the server does serve each of them (the router's answer to an
    // unknown path is 404, to an unknown method 405).
    for (method, route) in &documented {
        let path = contract.example_path(method, route);
        let reply = request(&app, method, &path, &[], None).await;
        assert!(
            reply.status != 404 && reply.status != 405,
            "{method} {path}: {} {}",
            reply.status,
            reply.text()
        );
    }
    // What the router answers outside the document is a problem too.
    let unknown = request(&app, "get", "/api/v1/nothing-here", &[], None).await;
    let wrong_method = request(&app, "get", "/api/v1/reports", &[], None).await;
    for reply in [unknown, wrong_method] {
        assert!([404, 405].contains(&reply.status));
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        contract
            .validate("#/components/schemas/Problem", &reply.json())
            .unwrap();
    }
}
on_both_backends!(document_lists_exactly_the_served_routes);

/// A release with every kind of figure shown, as served, validates against
/// the documented schema, and so does one of format 1 as stored before
/// upgrades and updates were published; a release of format 2 without
/// them does not.
async fn releases_of_both_formats_match_the_documented_schema(db: TestDb) {
    let app = spawn_app(db).await;
    let mut records = times(40, || install(3, "4.9.0"));
    records.extend(times(40, || update(0, "4.9.0", "4.10.1")));
    seed(&app.db, &records);
    crate::support::release::publish_with(&app.db, 1e4, test_today(), 7).unwrap();
    let contract = Contract::new(serde_json::from_str(DOCUMENT).unwrap());
    let schema = "#/components/schemas/Release";
    let body = app
        .get_anonymous("/api/v1/public/releases/latest")
        .await
        .json();
    assert!(!body["upgrades"].as_array().unwrap().is_empty(), "{body}");
    assert!(
        body["events"]["weekly"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["updated"].is_i64()),
        "{body}"
    );
    contract.validate(schema, &body).unwrap();
    let manifest = format!("/api/v1/public/releases/{}/manifest.json", test_today());
    let manifest = app.get_anonymous(&manifest).await.json();
    assert_eq!(manifest["sensitivity"]["events_per_install"], 1);
    contract
        .validate("#/components/schemas/ReleaseManifest", &manifest)
        .unwrap();

    let mut old = body.clone();
    old["format"] = json!(1);
    old.as_object_mut().unwrap().remove("upgrades");
    old["sensitivity"]
        .as_object_mut()
        .unwrap()
        .remove("events_per_install");
    for table in ["weekly", "monthly"] {
        for p in old["events"][table].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("updated");
        }
    }
    contract.validate(schema, &old).unwrap();
    let mut without = body.clone();
    without.as_object_mut().unwrap().remove("upgrades");
    assert!(contract.validate(schema, &without).is_err());
    let mut without = body.clone();
    without["events"]["weekly"][0]
        .as_object_mut()
        .unwrap()
        .remove("updated");
    assert!(contract.validate(schema, &without).is_err());
    app.stop().await;
}
on_both_backends!(releases_of_both_formats_match_the_documented_schema);

/// Drives the real collector into every documented status of every route
/// and checks each answer against the document.
async fn every_documented_status_is_reached_and_matches_its_schema(db: TestDb) {
    let backend = db.backend;
    let mut seen = Seens::default();
    let stats_paths: Vec<(&'static str, String)> = STATS_ROUTES
        .iter()
        .map(|r| (*r, r.replace("{name}", "edition")))
        .collect();

    // Normal operation, with data in every report.
    let app = spawn_app(db).await;
    let mut population = times(6, || install(1, "4.10.1"));
    population.extend(times(6, || update(2, "4.9.0", "4.10.1")));
    population.extend(times(2, || install(3, "4.8.0")));
    seed(&app.db, &population);
    let (reply, contract) = served_contract(&app).await;
    seen.add("get", "/api/v1/openapi.json", "document", reply);

    let report = sample_report();
    let r = app.post_report(&report).await;
    seen.add("post", "/api/v1/reports", "new report", r);
    let r = app.post_report(&report).await;
    seen.add("post", "/api/v1/reports", "same report_id", r);
    let unknown_keys = ReportBuilder::new().attribute("colour", "blue").build();
    let r = app.post_report(&unknown_keys).await;
    seen.add("post", "/api/v1/reports", "unknown attribute", r);
    let r = app
        .post_report(&json!({"schema_version": 2, "event": "upgrade"}))
        .await;
    seen.add("post", "/api/v1/reports", "invalid report", r);
    let r = app
        .post(
            "/api/v1/reports",
            "application/json",
            b"{\"schema_version\":".to_vec(),
        )
        .await;
    seen.add("post", "/api/v1/reports", "not JSON", r);
    let r = app
        .post(
            "/api/v1/reports",
            "text/plain",
            report.to_string().into_bytes(),
        )
        .await;
    seen.add("post", "/api/v1/reports", "wrong media type", r);
    let big = "x".repeat(70 * 1024);
    let r = raw(
        &app,
        [127, 0, 0, 1],
        raw_request("/api/v1/reports", "application/json", big.len(), &big),
    )
    .await;
    seen.add("post", "/api/v1/reports", "over 64 KiB", r);

    let r = app
        .post(
            "/statistics/install.json",
            FORM,
            legacy_form(&uuid::Uuid::new_v4().to_string()),
        )
        .await;
    seen.add("post", "/statistics/install.json", "legacy report", r);
    let r = app
        .post(
            "/statistics/install.json",
            FORM,
            b"InstallStatistic%5Bcontext%5D=reinstall".to_vec(),
        )
        .await;
    seen.add("post", "/statistics/install.json", "invalid form", r);
    let r = app
        .post(
            "/statistics/install.json",
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    seen.add("post", "/statistics/install.json", "wrong media type", r);
    let r = raw(
        &app,
        [127, 0, 0, 1],
        raw_request("/statistics/install.json", FORM, big.len(), &big),
    )
    .await;
    seen.add("post", "/statistics/install.json", "over 64 KiB", r);

    let r = app.get("/api/v1/catalog").await;
    seen.add("get", "/api/v1/catalog", "catalog", r);

    let latest = "/api/v1/public/releases/latest";
    let r = app.get_anonymous(latest).await;
    seen.add("get", latest, "none yet", r);
    publish_seeded(&app.db, test_today(), 1);
    let day = test_today().to_string();
    for (route, template) in [
        (
            "/api/v1/public/releases/{date}",
            "/api/v1/public/releases/D",
        ),
        (
            "/api/v1/public/releases/{date}/release.csv",
            "/api/v1/public/releases/D/release.csv",
        ),
        (
            "/api/v1/public/releases/{date}/manifest.json",
            "/api/v1/public/releases/D/manifest.json",
        ),
    ] {
        for (what, date) in [
            ("published", day.as_str()),
            ("unknown date", "2001-01-01"),
            ("malformed date", "yesterday"),
        ] {
            let r = app.get_anonymous(&template.replace('D', date)).await;
            seen.add("get", route, what, r);
        }
    }
    for (what, query) in [
        ("json", ""),
        ("csv", "?format=csv"),
        ("bad format", "?format=xml"),
    ] {
        let r = app.get_anonymous(&format!("{latest}{query}")).await;
        seen.add("get", latest, what, r);
        let path = format!("/api/v1/public/releases/{day}{query}");
        let r = app.get_anonymous(&path).await;
        seen.add("get", "/api/v1/public/releases/{date}", what, r);
    }
    let r = app.get_anonymous("/api/v1/public/ledger").await;
    seen.add("get", "/api/v1/public/ledger", "ledger", r);
    let r = app.get_anonymous("/public").await;
    seen.add("get", "/public", "page", r);

    for (route, path) in &stats_paths {
        for (what, query, headers) in [
            ("json", "", vec![]),
            ("csv by parameter", "?format=csv", vec![]),
            (
                "csv by Accept",
                "",
                vec![("Accept", "text/csv, application/json")],
            ),
            (
                "weeks by version",
                "?interval=week&by=version&active_days=30",
                vec![],
            ),
            (
                "months by edition",
                "?interval=month&by=edition&from=2020-01-01",
                vec![],
            ),
            ("bad interval", "?interval=year", vec![]),
            ("unknown parameter", "?colour=blue", vec![]),
            ("repeated parameter", "?interval=day&interval=week", vec![]),
        ] {
            let r = request(&app, "get", &format!("{path}{query}"), &headers, None).await;
            seen.add("get", route, what, r);
        }
    }
    let r = app.get("/api/v1/stats/attributes/colour").await;
    seen.add(
        "get",
        "/api/v1/stats/attributes/{name}",
        "unknown attribute",
        r,
    );

    let route = "/api/v1/erasures";
    let id = report["instance_id"].as_str().unwrap();
    let unknown_id = uuid::Uuid::new_v4().to_string();
    for (what, content_type, body) in [
        (
            "stored instance",
            "application/json",
            json!({"instance_id": id}).to_string(),
        ),
        (
            "unknown instance",
            "application/json",
            json!({"product": "passbolt", "instance_id": unknown_id}).to_string(),
        ),
        (
            "malformed id",
            "application/json",
            json!({"instance_id": "not-a-uuid"}).to_string(),
        ),
        (
            "unknown product",
            "application/json",
            json!({"instance_id": id, "product": "nope"}).to_string(),
        ),
        (
            "unknown field",
            "application/json",
            json!({"instance_id": id, "colour": "blue"}).to_string(),
        ),
        (
            "not JSON",
            "application/json",
            "{\"instance_id\":".to_owned(),
        ),
        (
            "wrong media type",
            "text/plain",
            json!({"instance_id": id}).to_string(),
        ),
    ] {
        let r = request(
            &app,
            "post",
            route,
            &[],
            Some((content_type, body.into_bytes())),
        )
        .await;
        seen.add("post", route, what, r);
    }
    let big = format!(
        "{{\"instance_id\":\"{id}\",\"pad\":\"{}\"}}",
        "x".repeat(70_000)
    );
    let r = raw(
        &app,
        [127, 0, 0, 1],
        raw_request(route, "application/json", big.len(), &big),
    )
    .await;
    seen.add("post", route, "over 64 KiB", r);
    let retired = "/api/v1/instances/{instance_id}";
    for (what, path) in [
        ("stored instance", format!("/api/v1/instances/{id}")),
        (
            "unknown instance",
            format!("/api/v1/instances/{unknown_id}?product=passbolt"),
        ),
        ("malformed id", "/api/v1/instances/not-a-uuid".to_owned()),
    ] {
        let r = request(&app, "delete", &path, &[], None).await;
        seen.add("delete", retired, what, r);
    }

    for (route, path) in [
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
        ("/metrics", "/metrics"),
        ("/", "/"),
        ("/assets/{name}", "/assets/dashboard.js"),
        ("/assets/{name}", "/assets/dashboard.css"),
        ("/assets/{name}", "/assets/public.js"),
        ("/assets/{name}", "/assets/nothing.js"),
    ] {
        let r = app.get(path).await;
        seen.add("get", route, path, r);
    }

    // Reading fails: the aggregates are gone.
    app.db
        .conn()
        .batch_execute(
            "ALTER TABLE daily_events RENAME TO daily_events_gone;
             ALTER TABLE instance_values RENAME TO instance_values_gone;
             ALTER TABLE instance_counters RENAME TO instance_counters_gone;
             ALTER TABLE instances RENAME TO instances_gone;",
        )
        .unwrap();
    for (route, path) in &stats_paths {
        let r = app.get(&format!("{path}?active_days=7")).await;
        seen.add("get", route, "aggregates unreadable", r);
    }
    let r = request(
        &app,
        "post",
        route,
        &[],
        Some((
            "application/json",
            json!({"instance_id": id}).to_string().into_bytes(),
        )),
    )
    .await;
    seen.add("post", route, "instances unreadable", r);
    app.stop().await;

    // Abuse limits: one report a minute per source, one per instance a day.
    let app = spawn_app_with(TestDb::new(backend), |c| {
        c.limits.rate_limit = "1,burst=1".parse().unwrap();
        c.limits.instance_daily_limit = 1;
    })
    .await;
    let first = sample_report();
    let body = first.to_string();
    let r = raw(
        &app,
        [127, 0, 0, 2],
        raw_request("/api/v1/reports", "application/json", body.len(), &body),
    )
    .await;
    seen.add("post", "/api/v1/reports", "first from a source", r);
    let r = raw(
        &app,
        [127, 0, 0, 2],
        raw_request("/api/v1/reports", "application/json", body.len(), &body),
    )
    .await;
    seen.add("post", "/api/v1/reports", "rate limited", r);
    let form = String::from_utf8(legacy_form("")).unwrap();
    let r = raw(
        &app,
        [127, 0, 0, 2],
        raw_request("/statistics/install.json", FORM, form.len(), &form),
    )
    .await;
    seen.add("post", "/statistics/install.json", "rate limited", r);
    let same_instance = ReportBuilder::new().instance_of(&first).build();
    let body = same_instance.to_string();
    let r = raw(
        &app,
        [127, 0, 0, 3],
        raw_request("/api/v1/reports", "application/json", body.len(), &body),
    )
    .await;
    seen.add(
        "post",
        "/api/v1/reports",
        "instance over its daily limit",
        r,
    );
    app.stop().await;

    // A stats token is configured.
    let token = "a-long-random-stats-token";
    let app = spawn_app_with(TestDb::new(backend), |c| {
        c.stats.token = anonstats::reporting::StatsToken::new(token)
    })
    .await;
    let bearer = format!("Bearer {token}");
    for (route, path) in &stats_paths {
        let r = app.get(path).await;
        seen.add("get", route, "no token", r);
        let r = request(
            &app,
            "get",
            path,
            &[("Authorization", "Bearer wrong")],
            None,
        )
        .await;
        seen.add("get", route, "wrong token", r);
        let r = request(&app, "get", path, &[("Authorization", &bearer)], None).await;
        seen.add("get", route, "bearer token", r);
    }
    let r = request(
        &app,
        "get",
        "/metrics",
        &[("Authorization", "Bearer wrong")],
        None,
    )
    .await;
    seen.add("get", "/metrics", "wrong token", r);
    let form = "application/x-www-form-urlencoded";
    let r = request(
        &app,
        "post",
        "/signin",
        &[],
        Some((form, b"token=wrong".to_vec())),
    )
    .await;
    seen.add("post", "/signin", "wrong token", r);
    let r = request(
        &app,
        "post",
        "/signin",
        &[],
        Some((form, format!("token={token}").into_bytes())),
    )
    .await;
    seen.add("post", "/signin", "right token", r);
    for (what, path) in [
        ("wrong token", "/signin?token=wrong".to_owned()),
        ("right token", format!("/signin?token={token}")),
        ("no token", "/signin".to_owned()),
    ] {
        let r = request(&app, "get", &path, &[], None).await;
        seen.add("get", "/signin", what, r);
    }
    let r = request(&app, "post", "/signout", &[], None).await;
    seen.add("post", "/signout", "sign out", r);
    app.stop().await;

    // Sources over their budget on the routes besides intake.
    let app = spawn_app_with(TestDb::new(backend), |c| {
        c.limits.read_rate_limit = "1,burst=1".parse().unwrap()
    })
    .await;
    let erasure = br#"{"instance_id":"d3b1a0f2-5c4e-4b7a-9f1e-2a6c8d9e0f11"}"#.to_vec();
    type Case<'a> = (&'a str, &'a str, String, Option<(&'a str, Vec<u8>)>);
    let mut limited: Vec<Case> = stats_paths
        .iter()
        .map(|(route, path)| ("get", *route, path.clone(), None))
        .collect();
    limited.extend([
        ("get", "/metrics", "/metrics".to_owned(), None),
        ("get", "/readyz", "/readyz".to_owned(), None),
        ("get", "/public", "/public".to_owned(), None),
        (
            "get",
            "/api/v1/public/ledger",
            "/api/v1/public/ledger".to_owned(),
            None,
        ),
        (
            "get",
            "/api/v1/public/releases/latest",
            "/api/v1/public/releases/latest".to_owned(),
            None,
        ),
        (
            "get",
            "/api/v1/public/releases/{date}",
            "/api/v1/public/releases/2026-12-01".to_owned(),
            None,
        ),
        (
            "get",
            "/api/v1/public/releases/{date}/release.csv",
            "/api/v1/public/releases/2026-12-01/release.csv".to_owned(),
            None,
        ),
        (
            "get",
            "/api/v1/public/releases/{date}/manifest.json",
            "/api/v1/public/releases/2026-12-01/manifest.json".to_owned(),
            None,
        ),
        ("get", "/", "/".to_owned(), None),
        ("get", "/signin", "/signin?token=x".to_owned(), None),
        (
            "post",
            "/signin",
            "/signin".to_owned(),
            Some((FORM, b"token=x".to_vec())),
        ),
        (
            "post",
            "/api/v1/erasures",
            "/api/v1/erasures".to_owned(),
            Some(("application/json", erasure)),
        ),
    ]);
    for (method, route, path, body) in limited {
        // Each route's second request from the same source is over budget
        // (the budget is per source, shared by these routes).
        let _ = request(&app, method, &path, &[], body.clone()).await;
        let r = request(&app, method, &path, &[], body).await;
        seen.add(method, route, "over the read budget", r);
    }
    app.stop().await;

    // Bodies that do not arrive in time.
    let app = spawn_app_with(TestDb::new(backend), |c| {
        c.limits.request_timeout = Duration::from_secs(1)
    })
    .await;
    for (route, content_type) in [
        ("/api/v1/reports", "application/json"),
        ("/statistics/install.json", FORM),
        ("/api/v1/erasures", "application/json"),
        ("/signin", FORM),
    ] {
        let r = raw(
            &app,
            [127, 0, 0, 1],
            raw_request(route, content_type, 400, "{\"schema_"),
        )
        .await;
        seen.add("post", route, "trickled body", r);
    }
    let big = "x".repeat(70 * 1024);
    let r = raw(
        &app,
        [127, 0, 0, 1],
        raw_request("/signin", FORM, big.len(), &big),
    )
    .await;
    seen.add("post", "/signin", "over 64 KiB", r);
    let r = request(
        &app,
        "post",
        "/signin",
        &[],
        Some((FORM, b"token=%ZZ&token=".to_vec())),
    )
    .await;
    seen.add("post", "/signin", "not a form", r);
    app.stop().await;

    // The database goes away while reports come in.
    let app = spawn_app_with(TestDb::new(backend), |c| c.writer.queue_capacity = 2).await;
    let outage = app.db.take_away();
    let reports: Vec<Value> = (0..8).map(|_| sample_report()).collect();
    let replies = futures_util::future::join_all(reports.iter().map(|r| app.post_report(r))).await;
    for r in replies {
        seen.add("post", "/api/v1/reports", "database away, small queue", r);
    }
    let r = app
        .post("/statistics/install.json", FORM, legacy_form(""))
        .await;
    seen.add("post", "/statistics/install.json", "database away", r);
    let r = app.get("/readyz").await;
    seen.add("get", "/readyz", "database away", r);
    outage.bring_back();
    app.stop().await;

    // Every answer matches the document...
    for s in &seen.0 {
        contract.check(s);
    }
    // ...and every documented status was reached.
    let reached = seen.reached();
    let missing: Vec<_> = contract.statuses().difference(&reached).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented but never reached: {missing:?}"
    );
    // The stats answers covered both media types of every route.
    let mut media: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in seen.0.iter().filter(|s| s.reply.status == 200) {
        let ct = s.reply.header("content-type").unwrap_or("");
        media
            .entry(s.route)
            .or_default()
            .insert(ct.split(';').next().unwrap().to_owned());
    }
    for route in STATS_ROUTES {
        assert_eq!(
            media[route],
            BTreeSet::from(["application/json".to_owned(), "text/csv".to_owned()]),
            "{route}"
        );
    }
}
on_both_backends!(every_documented_status_is_reached_and_matches_its_schema);

/// The documented request schemas accept what the collector accepts and
/// refuse what it refuses (for everything that does not depend on the
/// catalog's contents).
async fn request_schemas_agree_with_the_server(db: TestDb) {
    let app = spawn_app(db).await;
    let (_, contract) = served_contract(&app).await;
    let v1 = "#/paths/~1api~1v1~1reports/post/requestBody/content/application~1json/schema";
    let with = |changes: Value| {
        let mut r = ReportBuilder::new();
        for (k, v) in changes.as_object().unwrap() {
            r = if v == "<remove>" {
                r.without(k)
            } else {
                r.field(k, v.clone())
            };
        }
        r.build()
    };
    let install = json!({"event": "install", "previous_version": "<remove>"});
    let cases = [
        with(json!({})),
        with(install.clone()),
        with(json!({"event": "install", "previous_version": null})),
        with(
            json!({"report_id": null, "instance_id": null, "attributes": null, "counters": null, "features": null}),
        ),
        with(json!({"version": "5.0.0-rc.1"})),
        with(json!({"version": "5.0.0-dev"})),
        with(json!({"report_id": uuid::Uuid::new_v4().to_string().to_uppercase()})),
        with(json!({"attributes": {"edition": "unlisted-value", "colour": "blue"}})),
        with(json!({"counters": {"users": 0}})),
        with(json!({"schema_version": "<remove>"})),
        with(json!({"schema_version": 2})),
        with(json!({"version": "<remove>"})),
        with(json!({"product": 7})),
        with(json!({"event": "upgrade"})),
        with(json!({"previous_version": "<remove>"})),
        with(json!({"event": "install"})),
        with(json!({"colour": "blue"})),
        with(json!({"report_id": "not-a-uuid"})),
        with(json!({"instance_id": uuid::Uuid::new_v4().simple().to_string()})),
        with(json!({"version": "4.10.1+build7"})),
        with(json!({"version": "4.10.1-hello"})),
        with(json!({"version": "4.010.1"})),
        with(json!({"version": "4.10"})),
        with(json!({"version": "5.0.0-rc.01"})),
        with(json!({"version": format!("1.0.0-rc.{}", "1".repeat(30))})),
        with(json!({"counters": {"users": -1}})),
        with(json!({"counters": {"users": 1.5}})),
        with(json!({"counters": {"users": "42"}})),
        with(json!({"features": {"mfa": "yes"}})),
        with(json!({"attributes": {"edition": 3}})),
        with(json!({"attributes": ["ce"]})),
        json!(["not", "an", "object"]),
    ];
    for case in cases {
        let reply = app.post_report(&case).await;
        let server = reply.status == 202;
        assert!(server || reply.status == 400, "{case}: {}", reply.text());
        let schema = contract.validate(v1, &case);
        assert_eq!(
            server,
            schema.is_ok(),
            "{case}: server {} {}, schema {schema:?}",
            reply.status,
            reply.text()
        );
    }

    let erasure = "#/paths/~1api~1v1~1erasures/post/requestBody/content/application~1json/schema";
    let id = uuid::Uuid::new_v4().to_string();
    for case in [
        json!({"instance_id": id}),
        json!({"instance_id": id.to_uppercase(), "product": "passbolt"}),
        json!({"instance_id": id, "product": null}),
        json!({"instance_id": null}),
        json!({"product": "passbolt"}),
        json!({"instance_id": id.replace('-', "")}),
        json!({"instance_id": 7}),
        json!({"instance_id": id, "product": 7}),
        json!({"instance_id": id, "colour": "blue"}),
        json!([id]),
    ] {
        let reply = app
            .post(
                "/api/v1/erasures",
                "application/json",
                case.to_string().into_bytes(),
            )
            .await;
        let server = reply.status == 202;
        assert!(server || reply.status == 400, "{case}: {}", reply.text());
        let schema = contract.validate(erasure, &case);
        assert_eq!(
            server,
            schema.is_ok(),
            "{case}: server {} {}, schema {schema:?}",
            reply.status,
            reply.text()
        );
    }

    let legacy =
        "#/paths/~1statistics~1install.json/post/requestBody/content/application~1x-www-form-urlencoded/schema";
    let id = uuid::Uuid::new_v4().to_string();
    let forms: Vec<Vec<(&str, &str)>> = vec![
        vec![("version", "1.6.10")],
        vec![
            ("version", "1.6.10"),
            ("context", "update"),
            ("instance_id", &id),
            ("users_count", "42"),
            ("passwords_count", "1234"),
            ("logs_count", "9"),
        ],
        vec![("version", "1.6.10"), ("instance_id", "")],
        vec![("version", "1.6.10"), ("other", "x")],
        vec![],
        vec![("version", "1.6")],
        vec![("version", "1.6.10"), ("context", "reinstall")],
        vec![("version", "1.6.10"), ("instance_id", "abc")],
        vec![("version", "1.6.10"), ("users_count", "-3")],
        vec![("version", "1.6.10"), ("users_count", "many")],
    ];
    for form in forms {
        let pairs: Vec<(String, &str)> = form
            .iter()
            .map(|(k, v)| (format!("InstallStatistic[{k}]"), *v))
            .collect();
        let body = serde_urlencoded::to_string(&pairs).unwrap();
        let reply = app
            .post("/statistics/install.json", FORM, body.clone().into_bytes())
            .await;
        let server = reply.status == 202;
        assert!(server || reply.status == 400, "{body}: {}", reply.text());
        let object: serde_json::Map<String, Value> =
            pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let schema = contract.validate(legacy, &Value::Object(object));
        assert_eq!(
            server,
            schema.is_ok(),
            "{body}: server {}, schema {schema:?}",
            reply.text()
        );
    }
}
on_both_backends!(request_schemas_agree_with_the_server);
