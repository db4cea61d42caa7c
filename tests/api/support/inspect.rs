//! Typed reads of what the collector stored, the same on both backends:
//! `db.inspect().events()`, `.instances()`, `.values()`, `.counters()`, ...
//! (or `Inspect::at(url)` for a database that is not a [`TestDb`]). Each
//! call reads the whole table, as it is at that moment, over a connection
//! of its own; the sums that tests ask for most are methods of the
//! collections returned.

use std::collections::BTreeMap;
use std::ops::Deref;

use anonstats::anonymize::InstanceState;
use anonstats::db::{DbConn, Manager};
use anonstats::schema::{
    daily_events, instance_counter_totals, instance_counters, instance_value_totals,
    instance_values, instances, seen_reports, settings,
};
use chrono::NaiveDate;
use diesel::prelude::*;

use super::TestDb;

impl TestDb {
    /// Typed reads of this database's tables.
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect::at(&self.url)
    }
}

/// Reads the tables of one database.
pub struct Inspect<'a> {
    url: &'a str,
}

/// One row of `daily_events`: reports of one day and key.
#[derive(Queryable, Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub day: NaiveDate,
    pub product: String,
    pub event: String,
    pub version: String,
    /// Empty for installs.
    pub previous_version: String,
    /// Empty when the report named none.
    pub edition: String,
    pub reports: i64,
}

/// One row of `instances`: the latest snapshot of one install.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// The install's pseudonym.
    pub hash: Vec<u8>,
    pub product: String,
    pub version: String,
    pub first_seen: NaiveDate,
    pub last_seen: NaiveDate,
    pub state: InstanceState,
}

/// One row of `seen_reports`: the dedupe key of one report.
#[derive(Queryable, Debug, Clone, PartialEq, Eq)]
pub struct SeenReportRow {
    pub hash: Vec<u8>,
    pub day: NaiveDate,
}

/// One row of `instance_values`: installs last seen on a day with one
/// version (`kind` "version", `name` empty), attribute or feature value.
#[derive(Queryable, Debug, Clone, PartialEq, Eq)]
pub struct ValueRow {
    pub product: String,
    pub last_seen: NaiveDate,
    pub kind: String,
    pub name: String,
    pub value: String,
    pub instances: i64,
}

/// One row of `instance_value_totals`: [`ValueRow`]s summed over days.
#[derive(Queryable, Debug, Clone, PartialEq, Eq)]
pub struct ValueTotalRow {
    pub product: String,
    pub kind: String,
    pub name: String,
    pub value: String,
    pub instances: i64,
}

/// One row of `instance_counters`: installs last seen on a day whose
/// counter falls in one bucket, and the sum of their values.
#[derive(Queryable, Debug, Clone, PartialEq, Eq)]
pub struct CounterRow {
    pub product: String,
    pub last_seen: NaiveDate,
    pub counter: String,
    pub bucket: i64,
    pub instances: i64,
    pub total: i64,
}

/// One row of `instance_counter_totals`: [`CounterRow`]s summed over days.
#[derive(Queryable, Debug, Clone, PartialEq, Eq)]
pub struct CounterTotalRow {
    pub product: String,
    pub counter: String,
    pub bucket: i64,
    pub instances: i64,
    pub total: i64,
}

/// Rows of `daily_events`.
#[derive(Debug, Clone)]
pub struct Events(Vec<EventRow>);

impl Events {
    /// Reports of every row.
    pub fn reports(&self) -> i64 {
        self.reports_where(|_| true)
    }

    /// Reports of the rows `keep` selects.
    pub fn reports_where(&self, keep: impl Fn(&EventRow) -> bool) -> i64 {
        self.0.iter().filter(|e| keep(e)).map(|e| e.reports).sum()
    }
}

impl Deref for Events {
    type Target = [EventRow];

    fn deref(&self) -> &[EventRow] {
        &self.0
    }
}

/// Rows of `instance_values`.
#[derive(Debug, Clone)]
pub struct Values(Vec<ValueRow>);

impl Values {
    /// Installs counted by the rows `keep` selects, over every day.
    pub fn instances_where(&self, keep: impl Fn(&ValueRow) -> bool) -> i64 {
        self.0.iter().filter(|v| keep(v)).map(|v| v.instances).sum()
    }

    /// Installs on `version`.
    pub fn version(&self, version: &str) -> i64 {
        self.instances_where(|v| v.kind == "version" && v.value == version)
    }

    /// Installs counted under any version: every install with a snapshot.
    pub fn versions(&self) -> i64 {
        self.instances_where(|v| v.kind == "version")
    }

    /// Installs whose attribute `name` is `value`.
    pub fn attribute(&self, name: &str, value: &str) -> i64 {
        self.instances_where(|v| v.kind == "attribute" && v.name == name && v.value == value)
    }

    /// Installs that reported feature `name` as `on`.
    pub fn feature(&self, name: &str, on: bool) -> i64 {
        let value = if on { "true" } else { "false" };
        self.instances_where(|v| v.kind == "feature" && v.name == name && v.value == value)
    }
}

impl Deref for Values {
    type Target = [ValueRow];

    fn deref(&self) -> &[ValueRow] {
        &self.0
    }
}

/// Rows of `instance_counters`.
#[derive(Debug, Clone)]
pub struct Counters(Vec<CounterRow>);

impl Counters {
    /// The sum of `counter` over every install and day.
    pub fn total(&self, counter: &str) -> i64 {
        self.0
            .iter()
            .filter(|c| c.counter == counter)
            .map(|c| c.total)
            .sum()
    }

    /// Installs that reported `counter`, over every day.
    pub fn instances(&self, counter: &str) -> i64 {
        self.0
            .iter()
            .filter(|c| c.counter == counter)
            .map(|c| c.instances)
            .sum()
    }
}

impl Deref for Counters {
    type Target = [CounterRow];

    fn deref(&self) -> &[CounterRow] {
        &self.0
    }
}

impl Inspect<'_> {
    /// Reads the database at `url`.
    pub fn at(url: &str) -> Inspect<'_> {
        Inspect { url }
    }

    fn conn(&self) -> DbConn {
        Manager::new(self.url)
            .establish()
            .expect("connect to the database")
    }

    /// Reports counted in `daily_events`, over every day and key.
    pub fn reports(&self) -> i64 {
        self.events().reports()
    }

    /// Every row of `daily_events`.
    pub fn events(&self) -> Events {
        let rows = daily_events::table
            .select((
                daily_events::day,
                daily_events::product,
                daily_events::event,
                daily_events::version,
                daily_events::previous_version,
                daily_events::edition,
                daily_events::reports,
            ))
            .load(&mut self.conn())
            .expect("load daily_events");
        Events(rows)
    }

    /// The rows of `daily_events` of `day`.
    pub fn events_on(&self, day: NaiveDate) -> Events {
        Events(
            self.events()
                .0
                .into_iter()
                .filter(|e| e.day == day)
                .collect(),
        )
    }

    /// Every instance snapshot, its state parsed.
    pub fn instances(&self) -> Vec<InstanceRow> {
        let rows: Vec<(Vec<u8>, String, String, NaiveDate, NaiveDate, String)> = instances::table
            .select((
                instances::instance_hash,
                instances::product,
                instances::version,
                instances::first_seen,
                instances::last_seen,
                instances::state,
            ))
            .load(&mut self.conn())
            .expect("load instances");
        rows.into_iter()
            .map(
                |(hash, product, version, first_seen, last_seen, state)| InstanceRow {
                    hash,
                    product,
                    version,
                    first_seen,
                    last_seen,
                    state: serde_json::from_str(&state)
                        .unwrap_or_else(|e| panic!("state is not JSON ({e}): {state}")),
                },
            )
            .collect()
    }

    /// Every dedupe key: those in `seen_reports` and those kept in the
    /// instance rows, each once.
    pub fn dedupe_keys(&self) -> Vec<SeenReportRow> {
        let mut keys = self.key_store();
        let rows: Vec<Vec<u8>> = instances::table
            .select(instances::report_keys)
            .load(&mut self.conn())
            .expect("load the keys of instance rows");
        for bytes in rows {
            assert_eq!(bytes.len() % 36, 0, "a row's keys are 36 bytes each");
            for key in bytes.chunks_exact(36) {
                let days = i32::from_be_bytes(key[32..].try_into().unwrap());
                keys.push(SeenReportRow {
                    hash: key[..32].to_vec(),
                    day: NaiveDate::from_num_days_from_ce_opt(days).expect("a day"),
                });
            }
        }
        keys.sort_by(|a, b| a.hash.cmp(&b.hash));
        keys.dedup_by(|a, b| a.hash == b.hash);
        keys
    }

    /// The dedupe keys in `seen_reports`: those of reports without an
    /// instance, and those that left a full instance row.
    pub fn key_store(&self) -> Vec<SeenReportRow> {
        seen_reports::table
            .select((seen_reports::report_hash, seen_reports::day))
            .load(&mut self.conn())
            .expect("load seen_reports")
    }

    /// Every row of `instance_values`.
    pub fn values(&self) -> Values {
        let rows = instance_values::table
            .select((
                instance_values::product,
                instance_values::last_seen,
                instance_values::kind,
                instance_values::name,
                instance_values::value,
                instance_values::instances,
            ))
            .load(&mut self.conn())
            .expect("load instance_values");
        Values(rows)
    }

    /// Every row of `instance_value_totals`.
    pub fn value_totals(&self) -> Vec<ValueTotalRow> {
        instance_value_totals::table
            .select((
                instance_value_totals::product,
                instance_value_totals::kind,
                instance_value_totals::name,
                instance_value_totals::value,
                instance_value_totals::instances,
            ))
            .load(&mut self.conn())
            .expect("load instance_value_totals")
    }

    /// Every row of `instance_counters`.
    pub fn counters(&self) -> Counters {
        let rows = instance_counters::table
            .select((
                instance_counters::product,
                instance_counters::last_seen,
                instance_counters::counter,
                instance_counters::bucket,
                instance_counters::instances,
                instance_counters::total,
            ))
            .load(&mut self.conn())
            .expect("load instance_counters");
        Counters(rows)
    }

    /// Every row of `instance_counter_totals`.
    pub fn counter_totals(&self) -> Vec<CounterTotalRow> {
        instance_counter_totals::table
            .select((
                instance_counter_totals::product,
                instance_counter_totals::counter,
                instance_counter_totals::bucket,
                instance_counter_totals::instances,
                instance_counter_totals::total,
            ))
            .load(&mut self.conn())
            .expect("load instance_counter_totals")
    }

    /// Every setting, by name.
    pub fn settings(&self) -> BTreeMap<String, String> {
        settings::table
            .select((settings::name, settings::value))
            .load::<(String, String)>(&mut self.conn())
            .expect("load settings")
            .into_iter()
            .collect()
    }
}
