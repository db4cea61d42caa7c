//! Seeding data for the reporting tests through the real write path
//! (`store::write_batch`), with report days of the test's choosing, and
//! reading the stats API and CLI.

use std::process::Command;

use anonstats::anonymize::{InstanceRecord, InstanceState, Pseudonymizer, Record};
use anonstats::validation::Event;
use chrono::{Duration, NaiveDate};
use serde_json::Value;

use crate::helpers::*;

/// The day the test collectors stamp on reports.
pub fn today() -> NaiveDate {
    test_today()
}

/// An install report of a new passbolt instance, `days_ago` days ago, with
/// a plain default state (edition ce, PHP 8.2, MariaDB, 10 users, MFA on).
pub fn install(days_ago: i64, version: &str) -> Record {
    let state = InstanceState {
        attributes: [
            ("edition", "ce"),
            ("php_version", "8.2"),
            ("db_engine", "mariadb"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        counters: [("users".to_owned(), 10)].into_iter().collect(),
        features: [("mfa".to_owned(), true)].into_iter().collect(),
    };
    Record {
        day: today() - Duration::days(days_ago),
        product: "passbolt".into(),
        event: Event::Install,
        version: version.into(),
        previous_version: None,
        edition: Some("ce".into()),
        infer_update: false,
        report_hash: Some(pseudonyms().report_hash(&uuid::Uuid::new_v4())),
        instance: Some(InstanceRecord {
            hash: pseudonyms().instance_hash("passbolt", &uuid::Uuid::new_v4()),
            state,
        }),
    }
}

/// Like [`install`], as an update from `previous`.
pub fn update(days_ago: i64, previous: &str, version: &str) -> Record {
    let mut r = install(days_ago, version);
    r.event = Event::Update;
    r.previous_version = Some(previous.into());
    r
}

/// Pseudonyms for seeded records, which only the pseudonymiser makes: of
/// random ids, with a secret of the tests (unrelated to any collector's).
fn pseudonyms() -> Pseudonymizer {
    Pseudonymizer::new(b"anonstats seeded records' secret")
}

/// Changes of a seeded record.
pub trait RecordExt {
    fn attr(self, name: &str, value: &str) -> Self;
    fn counter(self, name: &str, value: i64) -> Self;
    fn feature(self, name: &str, on: bool) -> Self;
}

impl RecordExt for Record {
    fn attr(mut self, name: &str, value: &str) -> Record {
        if name == "edition" {
            self.edition = Some(value.into());
        }
        self.instance
            .as_mut()
            .unwrap()
            .state
            .attributes
            .insert(name.into(), value.into());
        self
    }

    fn counter(mut self, name: &str, value: i64) -> Record {
        self.instance
            .as_mut()
            .unwrap()
            .state
            .counters
            .insert(name.into(), value);
        self
    }

    fn feature(mut self, name: &str, on: bool) -> Record {
        self.instance
            .as_mut()
            .unwrap()
            .state
            .features
            .insert(name.into(), on);
        self
    }
}

/// `n` copies of a record, each a distinct report of a distinct instance.
pub fn times(n: usize, make: impl Fn() -> Record) -> Vec<Record> {
    (0..n).map(|_| make()).collect()
}

/// Stores records as the writer would.
pub fn seed(db: &TestDb, records: &[Record]) {
    let mut conn = db.conn();
    anonstats::store::write_batch(&mut conn, records).expect("seed records");
}

/// GETs a stats path with extra request headers.
pub async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = app.client.get(format!("{}{path}", app.address));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    read_reply(req.send().await.expect("request sent")).await
}

/// GETs a stats path and returns its JSON, asserting 200.
pub async fn stats_json(app: &TestApp, path: &str) -> Value {
    let reply = app.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

/// Runs `anonstats stats ARGS --database URL` and returns its stdout,
/// asserting success. Environment settings of the caller do not leak in.
pub fn cli(db: &TestDb, args: &[&str]) -> String {
    cli_on(db, test_today(), args)
}

/// Like [`cli`], with "today" pinned to `today`.
pub fn cli_on(db: &TestDb, today: NaiveDate, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .arg("stats")
        .args(args)
        .args(["--database", &db.url])
        .env("ANONSTATS_K", TEST_K.to_string())
        .env_remove("ANONSTATS_ACTIVE_DAYS")
        .env_remove("ANONSTATS_CATALOG")
        .env_remove("ANONSTATS_DATABASE_URL")
        .env(anonstats::clock::TODAY_ENV, today.to_string())
        .output()
        .expect("run anonstats stats");
    assert!(
        out.status.success(),
        "anonstats stats {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `anonstats stats ARGS --format json` and parses the output.
pub fn cli_json(db: &TestDb, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let text = cli(db, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
