//! v1 reports for the tests, built instead of edited by hand:
//! `ReportBuilder::new().instance(id).version("4.9.0").counter("users", 12).build()`.
//! The result is plain JSON, so that a test after malformed input can
//! still break it in any way it likes.

use serde_json::{json, Value};

/// A v1 report under construction. It starts as the README's example, an
/// update from 4.9.0 to 4.10.1 with every section filled, with fresh ids.
#[derive(Debug, Clone)]
pub struct ReportBuilder {
    report: Value,
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Changes to a report built earlier (the same ids, unless changed).
impl From<Value> for ReportBuilder {
    fn from(report: Value) -> ReportBuilder {
        ReportBuilder { report }
    }
}

impl ReportBuilder {
    /// The README's example report with a fresh `report_id` and
    /// `instance_id`.
    pub fn new() -> ReportBuilder {
        ReportBuilder {
            report: json!({
                "schema_version": 1,
                "report_id": uuid::Uuid::new_v4().to_string(),
                "instance_id": uuid::Uuid::new_v4().to_string(),
                "product": "passbolt",
                "event": "update",
                "version": "4.10.1",
                "previous_version": "4.9.0",
                "attributes": {"edition": "ce", "php_version": "8.2", "db_engine": "mariadb", "os_family": "debian", "install_method": "package"},
                "counters": {"users": 42, "groups": 5, "resources": 1234, "folders": 17},
                "features": {"mfa": true, "ldap": false, "sso": false}
            }),
        }
    }

    /// Sets `instance_id`.
    pub fn instance(self, id: &str) -> ReportBuilder {
        self.field("instance_id", id)
    }

    /// The same `instance_id` as `other` (none if it has none).
    pub fn instance_of(mut self, other: &Value) -> ReportBuilder {
        match other.get("instance_id") {
            Some(id) => self.report["instance_id"] = id.clone(),
            None => self = self.without("instance_id"),
        }
        self
    }

    /// A report without `instance_id`: it counts as an event only.
    pub fn anonymous(self) -> ReportBuilder {
        self.without("instance_id")
    }

    /// Sets `event`, and nothing else (see [`ReportBuilder::install`]).
    pub fn event(self, event: &str) -> ReportBuilder {
        self.field("event", event)
    }

    /// An install: `event` install, without `previous_version`.
    pub fn install(self) -> ReportBuilder {
        self.event("install").without("previous_version")
    }

    /// Sets `version`.
    pub fn version(self, version: &str) -> ReportBuilder {
        self.field("version", version)
    }

    /// Sets `previous_version`.
    pub fn previous_version(self, version: &str) -> ReportBuilder {
        self.field("previous_version", version)
    }

    /// Sets one attribute (any JSON, so that a wrong type can be sent).
    pub fn attribute(self, name: &str, value: impl Into<Value>) -> ReportBuilder {
        self.in_section("attributes", name, value.into())
    }

    /// Sets one counter (any JSON, so that a wrong type can be sent).
    pub fn counter(self, name: &str, value: impl Into<Value>) -> ReportBuilder {
        self.in_section("counters", name, value.into())
    }

    /// Sets one feature (any JSON, so that a wrong type can be sent).
    pub fn feature(self, name: &str, value: impl Into<Value>) -> ReportBuilder {
        self.in_section("features", name, value.into())
    }

    /// Sets any top-level field to any JSON value.
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> ReportBuilder {
        self.report[name] = value.into();
        self
    }

    /// Removes a top-level field.
    pub fn without(mut self, name: &str) -> ReportBuilder {
        self.report.as_object_mut().unwrap().remove(name);
        self
    }

    fn in_section(mut self, section: &str, name: &str, value: Value) -> ReportBuilder {
        self.report[section][name] = value;
        self
    }

    /// The report as JSON.
    pub fn build(self) -> Value {
        self.report
    }
}

/// The README's example report with fresh ids: `ReportBuilder::new().build()`.
pub fn sample_report() -> Value {
    ReportBuilder::new().build()
}
