//! The reference client, `anonstats send`, run as the real binary: opt-in,
//! exact previews, storage, retries, and never breaking an install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

/// The flags of the report used throughout these tests.
const REPORT_FLAGS: &[&str] = &[
    "--event",
    "update",
    "--version",
    "4.10.1",
    "--previous-version",
    "4.9.0",
    "--attribute",
    "edition=pro",
    "--attribute",
    "db_engine=postgresql",
    "--counter",
    "users=7",
    "--counter",
    "resources=300",
    "--feature",
    "mfa=true",
    "--feature",
    "sso=false",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

async fn opt_in(dir: &ClientDir, collector: &str) {
    let out = anonstats(&[
        "send",
        "--config",
        dir.config(),
        "--opt-in",
        "--collector",
        collector,
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
}

async fn without_opt_in_nothing_is_sent(db: TestDb) {
    let app = spawn_app(db).await;
    let dir = ClientDir::new();

    let out = anonstats(&with(
        &[
            "send",
            "--config",
            dir.config(),
            "--collector",
            &app.address,
        ],
        REPORT_FLAGS,
    ))
    .await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not opted in"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(app.db.inspect().reports(), 0);
    assert!(
        !dir.config.exists(),
        "sending must not create the opt-in file"
    );
}
on_both_backends!(without_opt_in_nothing_is_sent);

async fn dry_run_prints_the_exact_report_and_sends_nothing(db: TestDb) {
    let app = spawn_app(db).await;
    let dir = ClientDir::new();
    opt_in(&dir, &app.address).await;
    let instance_id = dir.read()["instance_id"].as_str().unwrap().to_owned();

    let out = anonstats(&with(
        &["send", "--config", dir.config(), "--dry-run"],
        REPORT_FLAGS,
    ))
    .await;

    assert!(out.status.success(), "{}", stderr(&out));
    // The whole of stdout is the report.
    let mut sent: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let report_id = sent.as_object_mut().unwrap().remove("report_id").unwrap();
    assert!(uuid::Uuid::parse_str(report_id.as_str().unwrap()).is_ok());
    assert_eq!(
        sent,
        json!({
            "schema_version": 1,
            "instance_id": instance_id,
            "product": "passbolt",
            "event": "update",
            "version": "4.10.1",
            "previous_version": "4.9.0",
            "attributes": {"edition": "pro", "db_engine": "postgresql"},
            "counters": {"users": 7, "resources": 300},
            "features": {"mfa": true, "sso": false}
        })
    );
    assert_eq!(app.db.inspect().reports(), 0, "a dry run sends nothing");
    assert_eq!(app.db.inspect().instances().len(), 0);
}
on_both_backends!(dry_run_prints_the_exact_report_and_sends_nothing);

async fn opted_in_report_is_stored(db: TestDb) {
    let app = spawn_app(db).await;
    let dir = ClientDir::new();
    opt_in(&dir, &app.address).await;

    // No --collector: the opt-in file's collector, and its catalog, are used.
    let out = anonstats(&with(
        &["send", "--config", dir.config(), "--strict"],
        REPORT_FLAGS,
    ))
    .await;

    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("accepted"), "{}", stderr(&out));
    let stored = app.db.inspect();
    assert_eq!(
        stored.events().reports_where(|e| e.event == "update"
            && e.version == "4.10.1"
            && e.previous_version == "4.9.0"
            && e.edition == "pro"),
        1
    );
    assert_eq!(stored.instances().len(), 1);
    let values = stored.values();
    assert_eq!(values.attribute("db_engine", "postgresql"), 1);
    assert_eq!(stored.counters().total("resources"), 300);
    assert_eq!(values.feature("mfa", true), 1);
}
on_both_backends!(opted_in_report_is_stored);

/// One scripted answer: status, headers, body.
pub type Scripted = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// One request as the fake collector saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A tiny HTTP server that answers `GET /api/v1/catalog` with the built-in
/// catalog and every other request with the next scripted answer (the last
/// one repeating).
pub struct FakeCollector {
    pub address: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeCollector {
    pub fn start(script: Vec<Scripted>) -> FakeCollector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut next = 0;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let is_catalog = request.method == "GET" && request.path == "/api/v1/catalog";
                let (status, headers, body) = if is_catalog {
                    (
                        200,
                        vec![("Content-Type", "application/json")],
                        anonstats::catalog::BUILTIN_CATALOG,
                    )
                } else {
                    let answer = script[next.min(script.len() - 1)].clone();
                    next += 1;
                    answer
                };
                log.lock().unwrap().push(request);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(body);
                let _ = (&stream).write_all(out.as_bytes());
            }
        });
        FakeCollector { address, seen }
    }

    /// The report posts received so far.
    pub fn posts(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "POST")
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        body,
        at: Instant::now(),
    })
}

/// Opts in a fresh client directory against `collector`, blocking.
fn opt_in_blocking(dir: &ClientDir, collector: &str) {
    let out = anonstats_blocking(&strings(&[
        "send",
        "--config",
        dir.config(),
        "--opt-in",
        "--collector",
        collector,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn busy_collector_is_retried_with_the_same_report_byte_for_byte() {
    let retry_later = (
        503,
        vec![
            ("Retry-After", "1"),
            ("Content-Type", "application/problem+json"),
        ],
        r#"{"status":503}"#,
    );
    let fake = FakeCollector::start(vec![
        retry_later.clone(),
        retry_later,
        (
            202,
            vec![("Content-Type", "application/json")],
            r#"{"status":"accepted","ignored":[]}"#,
        ),
    ]);
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &fake.address);
    let report_id = uuid::Uuid::new_v4().to_string();
    let mut args = strings(&["send", "--config", dir.config(), "--report-id", &report_id]);
    args.extend(strings(REPORT_FLAGS));

    let preview = anonstats_blocking(&[args.clone(), strings(&["--dry-run"])].concat());
    assert_eq!(fake.posts().len(), 0, "a dry run posts nothing");
    let out = anonstats_blocking(&args);

    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("accepted"), "{}", stderr(&out));
    let posts = fake.posts();
    assert_eq!(posts.len(), 3, "two 503 answers, then 202");
    for p in &posts {
        assert_eq!(p.path, "/api/v1/reports");
        assert_eq!(
            p.body, preview.stdout,
            "every attempt sends exactly what --dry-run showed"
        );
    }
    for pair in posts.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900),
            "Retry-After: 1 is honoured"
        );
    }
}

#[test]
fn a_down_collector_never_fails_the_install_unless_strict() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let collector = format!("http://127.0.0.1:{port}");
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &collector);
    let mut args = strings(&[
        "send",
        "--config",
        dir.config(),
        "--retries",
        "1",
        "--timeout",
        "2",
    ]);
    args.extend(strings(REPORT_FLAGS));

    let relaxed = anonstats_blocking(&args);
    let strict = anonstats_blocking(&[args, strings(&["--strict"])].concat());

    assert!(relaxed.status.success(), "{}", stderr(&relaxed));
    assert!(
        stderr(&relaxed).contains("report not sent"),
        "{}",
        stderr(&relaxed)
    );
    assert!(
        !strict.status.success(),
        "--strict reports the failure in the exit code"
    );
}

#[test]
fn refusals_are_not_retried() {
    let fake = FakeCollector::start(vec![(
        400,
        vec![("Content-Type", "application/problem+json")],
        r#"{"type":"urn:anonstats:problem:invalid-report","title":"Bad Request","status":400,"detail":"version: too new","errors":[{"field":"version","detail":"too new"}]}"#,
    )]);
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &fake.address);
    let mut args = strings(&["send", "--config", dir.config()]);
    args.extend(strings(REPORT_FLAGS));

    let relaxed = anonstats_blocking(&args);
    assert_eq!(fake.posts().len(), 1, "a 400 is final");
    let strict = anonstats_blocking(&[args, strings(&["--strict"])].concat());

    assert!(relaxed.status.success());
    assert!(
        stderr(&relaxed).contains("version: too new"),
        "{}",
        stderr(&relaxed)
    );
    assert!(!strict.status.success());
    assert_eq!(fake.posts().len(), 2);
}

#[test]
fn mistakes_are_caught_before_anything_is_sent() {
    let fake = FakeCollector::start(vec![(202, vec![], "{}")]);
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &fake.address);
    let args = strings(&[
        "send",
        "--config",
        dir.config(),
        "--event",
        "update",
        "--version",
        "4.10.1",
        "--counter",
        "userz=3",
    ]);

    let relaxed = anonstats_blocking(&args);
    let strict = anonstats_blocking(&[args, strings(&["--strict"])].concat());

    assert!(relaxed.status.success());
    let err = stderr(&relaxed);
    assert!(err.contains("counters.userz"), "{err}");
    assert!(
        err.contains("previous_version"),
        "an update needs its previous version: {err}"
    );
    assert!(!strict.status.success());
    assert_eq!(fake.posts().len(), 0);
}

#[test]
fn without_opt_in_not_even_the_catalog_is_fetched() {
    let fake = FakeCollector::start(vec![(202, vec![], "{}")]);
    let dir = ClientDir::new();
    let mut args = strings(&[
        "send",
        "--config",
        dir.config(),
        "--collector",
        &fake.address,
    ]);
    args.extend(strings(REPORT_FLAGS));

    let out = anonstats_blocking(&args);
    let opted_out = {
        opt_in_blocking(&dir, &fake.address);
        let o = anonstats_blocking(&strings(&["send", "--config", dir.config(), "--opt-out"]));
        assert!(o.status.success());
        anonstats_blocking(&args)
    };

    assert!(out.status.success());
    assert!(opted_out.status.success());
    assert!(stderr(&opted_out).contains("not opted in"));
    assert_eq!(fake.requests(), 0, "no connection at all without opt-in");
    assert_eq!(dir.read()["send"], false);
    assert!(
        dir.read()["instance_id"].is_string(),
        "opting out keeps the id for --forget"
    );
}

#[test]
fn explain_describes_every_field_and_sends_nothing() {
    let fake = FakeCollector::start(vec![(202, vec![], "{}")]);
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &fake.address);
    let mut args = strings(&["send", "--config", dir.config(), "--explain"]);
    args.extend(strings(REPORT_FLAGS));

    let out = anonstats_blocking(&args);

    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let id = dir.read()["instance_id"].as_str().unwrap().to_owned();
    for expected in [
        "report_id = ",
        &format!("instance_id = {id}"),
        "attributes.edition = pro",
        "counters.users = 7",
        "features.mfa = true",
        "keyed hash",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(fake.posts().len(), 0);
}

/// The path of a PHP-style opt-in file next to `dir`'s JSON one.
pub fn php_path(dir: &ClientDir) -> PathBuf {
    dir.config.with_file_name("anonymous_statistics.php")
}

#[test]
fn a_passbolt_style_php_file_is_honoured() {
    let fake = FakeCollector::start(vec![(202, vec![], r#"{"status":"accepted","ignored":[]}"#)]);
    let dir = ClientDir::new();
    let php = php_path(&dir);
    std::fs::create_dir_all(php.parent().unwrap()).unwrap();
    write_php(&php, "false");
    let mut args = strings(&[
        "send",
        "--config",
        php.to_str().unwrap(),
        "--collector",
        &fake.address,
    ]);
    args.extend(strings(REPORT_FLAGS));

    let off = anonstats_blocking(&args);
    assert_eq!(fake.requests(), 0, "'send' => false sends nothing");
    write_php(&php, "true");
    let on = anonstats_blocking(&args);

    assert!(
        off.status.success() && on.status.success(),
        "{}",
        stderr(&on)
    );
    let posts = fake.posts();
    assert_eq!(posts.len(), 1, "{}", stderr(&on));
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(body["instance_id"], "0b6f4c7e-2a1d-4e8f-9c3b-5d7a1e2f4b6c");
}

fn write_php(path: &Path, send: &str) {
    std::fs::write(
        path,
        format!(
            "<?php\nreturn [\n    'anonymousStatistics' => [\n        'send' => {send},\n        'instanceId' => '0b6f4c7e-2a1d-4e8f-9c3b-5d7a1e2f4b6c',\n    ],\n];\n"
        ),
    )
    .unwrap();
}

#[test]
fn forget_posts_the_id_in_the_body_never_in_the_url() {
    let fake = FakeCollector::start(vec![(
        202,
        vec![("Content-Type", "application/json")],
        r#"{"status":"forgotten"}"#,
    )]);
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &fake.address);
    let id = dir.read()["instance_id"].as_str().unwrap().to_owned();

    let out = anonstats_blocking(&strings(&[
        "send",
        "--config",
        dir.config(),
        "--forget",
        "--product",
        "passbolt",
    ]));

    assert!(out.status.success(), "{}", stderr(&out));
    let posts = fake.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].path, "/api/v1/erasures",
        "the id is not in the URL"
    );
    let body: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"instance_id": id, "product": "passbolt"})
    );
    assert!(dir.read().get("instance_id").is_none());
}

#[test]
fn a_collector_refusing_the_erasure_keeps_the_id_for_another_try() {
    // What a collector that retired the route answers: the erasure did not
    // happen, and the client must say so.
    let fake = FakeCollector::start(vec![(
        410,
        vec![("Content-Type", "application/problem+json")],
        r#"{"type":"urn:anonstats:problem:gone","title":"Gone","status":410,"detail":"this route was retired"}"#,
    )]);
    let dir = ClientDir::new();
    opt_in_blocking(&dir, &fake.address);
    let before = dir.read();

    let out = anonstats_blocking(&strings(&["send", "--config", dir.config(), "--forget"]));

    assert!(!out.status.success(), "a refused erasure is a failure");
    assert!(
        stderr(&out).contains("not asked to forget"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.posts().len(), 1, "a 410 is final");
    assert_eq!(dir.read(), before, "the id is kept for another try");
}
