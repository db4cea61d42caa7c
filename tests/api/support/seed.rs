//! Seeding data for the reporting tests through the real write path
//! (`store::write_batch`), with report days of the test's choosing.

use anonstats::anonymize::{InstanceRecord, InstanceState, Pseudonymizer, Record};
use anonstats::validation::Event;
use chrono::{Duration, NaiveDate};

use super::{test_today, TestDb};

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
    /// Sets an attribute (and the edition of the event, for `edition`).
    fn attr(self, name: &str, value: &str) -> Self;
    /// Sets a counter.
    fn counter(self, name: &str, value: i64) -> Self;
    /// Sets a feature.
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
