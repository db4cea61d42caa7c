//! Building the report an install sends, checking it against the catalog
//! before it leaves the machine, and explaining it to an administrator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{Catalog, OTHER};
use crate::validation::{self, Invalid, SCHEMA_VERSION};

/// The parts of a report an install knows before any id is added: what
/// happened, to which version, and the catalog values it describes itself
/// with. Built from flags, from a counts file, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub counters: BTreeMap<String, i64>,
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
}

impl Draft {
    /// Reads a counts file: a JSON object with any of `product`, `event`,
    /// `version`, `previous_version`, `attributes`, `counters` and
    /// `features`. Ids are not accepted there: the client adds them.
    pub fn from_json(text: &str) -> Result<Draft, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `other` with every field `other` sets replacing this one's.
    pub fn merge(mut self, other: Draft) -> Draft {
        self.product = other.product.or(self.product);
        self.event = other.event.or(self.event);
        self.version = other.version.or(self.version);
        self.previous_version = other.previous_version.or(self.previous_version);
        self.attributes.extend(other.attributes);
        self.counters.extend(other.counters);
        self.features.extend(other.features);
        self
    }

    /// The report to send, with its ids. `product` falls back to the
    /// catalog's default product.
    pub fn finish(self, catalog: &Catalog, report_id: Uuid, instance_id: Option<Uuid>) -> Outgoing {
        Outgoing {
            schema_version: SCHEMA_VERSION,
            report_id,
            instance_id,
            product: self
                .product
                .or_else(|| catalog.default_product().map(str::to_owned))
                .unwrap_or_default(),
            event: self.event.unwrap_or_default(),
            version: self.version.unwrap_or_default(),
            previous_version: self.previous_version,
            attributes: self.attributes,
            counters: self.counters,
            features: self.features,
        }
    }
}

/// A v1 report as it is sent. Fields serialise in this order and maps in
/// name order, so that the same report always gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    pub schema_version: u64,
    pub report_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
    pub product: String,
    pub event: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, bool>,
}

/// What a local check found wrong, or worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Mistakes that the collector would refuse, or names it would ignore.
    pub errors: Vec<String>,
    /// Values that will be stored as `other`.
    pub warnings: Vec<String>,
}

impl Outgoing {
    /// The exact request body: indented JSON ending in a newline, readable
    /// by an administrator and sent as is.
    pub fn body(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec_pretty(self).expect("report serialises");
        body.push(b'\n');
        body
    }

    /// Checks the report the way the collector will. Names the catalog does
    /// not know are errors here (the collector would silently drop them, so
    /// they are almost certainly typing mistakes); attribute values it does
    /// not list are warnings (they are stored as `other`).
    pub fn check(&self, catalog: &Catalog) -> Check {
        let value = serde_json::to_value(self).expect("report serialises");
        let mut check = Check {
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        // Unknown names are listed whatever else is wrong, so that one run
        // shows every mistake.
        if let Some(product) = catalog.product(&self.product) {
            let unknown = |section: &str, known: bool, name: &str| {
                (!known).then(|| {
                    format!(
                        "{section}.{name}: not in the catalog of product {}",
                        self.product
                    )
                })
            };
            check.errors.extend(
                self.attributes
                    .keys()
                    .filter_map(|n| unknown("attributes", product.attributes.contains_key(n), n)),
            );
            check.errors.extend(
                self.counters
                    .keys()
                    .filter_map(|n| unknown("counters", product.counters.contains_key(n), n)),
            );
            check.errors.extend(
                self.features
                    .keys()
                    .filter_map(|n| unknown("features", product.features.contains_key(n), n)),
            );
        }
        match validation::validate_v1(&value, catalog) {
            Ok(r) => {
                for (name, value) in &self.attributes {
                    if r.attributes.get(name).map(String::as_str) == Some(OTHER) && value != OTHER {
                        check.warnings.push(format!(
                            "attributes.{name}: {value:?} is not a listed value and will be stored as \"other\""
                        ));
                    }
                }
            }
            Err(Invalid(violations)) => {
                check.errors.extend(violations.into_iter().map(|v| {
                    if v.field.is_empty() {
                        v.detail
                    } else {
                        format!("{}: {}", v.field, v.detail)
                    }
                }));
            }
        }
        check
    }
}

impl Check {
    /// Whether the report may be sent (warnings do not stop it).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Explains, field by field, what a report says and why none of it can
/// identify the install or anyone using it.
pub fn explain(report: &Outgoing, catalog: &Catalog, optin_path: &str) -> String {
    let product = catalog.product(&report.product);
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("This is what `anonstats send` would send, field by field.".into());
    line(String::new());
    line(format!("schema_version = {}", report.schema_version));
    line("    The version of the report format. Fixed; says nothing about the install.".into());
    line(format!("report_id = {}", report.report_id));
    line("    A random UUID made for this one report, so that the collector counts it once".into());
    line("    even if a retry delivers it twice. A new one is made for every report; the".into());
    line("    collector keeps only a keyed hash of it, to recognise a repeat.".into());
    match report.instance_id {
        Some(id) => {
            line(format!("instance_id = {id}"));
            line(format!(
                "    A random UUID generated once, when the administrator opted in, and kept in {optin_path}."
            ));
            line(
                "    It is not derived from the host name, address, domain or any account: it only"
                    .into(),
            );
            line("    lets the collector replace this install's previous answers instead of counting".into());
            line(
                "    them again. The collector stores only a keyed hash (HMAC-SHA256 with a secret"
                    .into(),
            );
            line("    of its own), which cannot be turned back into the id. Whoever holds the id can".into());
            line("    erase what is stored about it: `anonstats send --forget`.".into());
        }
        None => {
            line("instance_id (absent)".into());
            line("    Without an instance id the report only adds one to the day's count of installs".into());
            line("    or updates. An id is generated when the administrator runs --opt-in.".into());
        }
    }
    line(format!("product = {}", report.product));
    line("    The software being reported on.".into());
    if let Some(p) = product.filter(|p| !p.description.is_empty()) {
        line(format!("    {}", p.description));
    }
    line(format!("event = {}", report.event));
    line(
        "    Whether this is a new install or an update. Only the day it is received is kept,"
            .into(),
    );
    line("    not the time.".into());
    line(format!("version = {}", report.version));
    if let Some(p) = &report.previous_version {
        line(format!("previous_version = {p}"));
    }
    line("    Release numbers, shared by every install of that release. They must be plain".into());
    line("    semantic versions (no build names), so they cannot carry words.".into());
    for (name, value) in &report.attributes {
        line(format!("attributes.{name} = {value}"));
        if let Some(def) = product.and_then(|p| p.attributes.get(name)) {
            if !def.description.is_empty() {
                line(format!("    {}", def.description));
            }
            line(format!(
                "    One of a closed list ({}); any other value is stored as \"other\".",
                def.values.join(", ")
            ));
        }
    }
    for (name, value) in &report.counters {
        line(format!("counters.{name} = {value}"));
        if let Some(def) = product.and_then(|p| p.counters.get(name)) {
            if !def.description.is_empty() {
                line(format!("    {}", def.description));
            }
            line(format!(
                "    A number between 0 and {}. Published figures are totals and distributions over",
                def.max
            ));
            line("    many installs, never one install's value.".into());
        }
    }
    for (name, on) in &report.features {
        line(format!("features.{name} = {on}"));
        if let Some(def) = product.and_then(|p| p.features.get(name)) {
            if !def.description.is_empty() {
                line(format!("    {}", def.description));
            }
        }
        line("    Only on or off.".into());
    }
    line(String::new());
    line("Never sent or never stored: names, e-mail or host names, domains, the contents".into());
    line("of the install, the time of day. The collector sees the connection's address, as".into());
    line("every server does, and drops it before anything is stored; it logs neither the".into());
    line("address nor the user agent. The full list of what may be collected is public:".into());
    line("GET /api/v1/catalog on the collector.".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            event: Some("update".into()),
            version: Some("4.10.1".into()),
            previous_version: Some("4.9.0".into()),
            attributes: [("edition".to_owned(), "ce".to_owned())].into(),
            counters: [("users".to_owned(), 42)].into(),
            features: [("mfa".to_owned(), true)].into(),
            ..Draft::default()
        }
    }

    #[test]
    fn body_is_stable_and_valid() {
        let catalog = Catalog::builtin();
        let id = Uuid::new_v4();
        let a = draft().finish(&catalog, id, None);
        let b = draft().finish(&catalog, id, None);
        assert_eq!(a.body(), b.body());
        assert_eq!(a.product, "passbolt");
        let check = a.check(&catalog);
        assert!(check.is_ok() && check.warnings.is_empty(), "{check:?}");
    }

    #[test]
    fn unknown_names_are_errors_and_unlisted_values_warnings() {
        let catalog = Catalog::builtin();
        let mut d = draft();
        d.counters.insert("userz".into(), 1);
        let err = d.finish(&catalog, Uuid::new_v4(), None).check(&catalog);
        assert_eq!(err.errors.len(), 1, "{err:?}");
        assert!(err.errors[0].contains("counters.userz"));

        let mut d = draft();
        d.attributes.insert("db_engine".into(), "oracle".into());
        let err = d.finish(&catalog, Uuid::new_v4(), None).check(&catalog);
        assert!(err.is_ok());
        assert_eq!(err.warnings.len(), 1);
    }

    #[test]
    fn counts_file_fields_are_overridden_by_flags() {
        let file =
            Draft::from_json(r#"{"version": "4.9.0", "counters": {"users": 1, "groups": 2}}"#)
                .unwrap();
        let flags = Draft {
            version: Some("4.10.1".into()),
            counters: [("users".to_owned(), 3)].into(),
            ..Draft::default()
        };
        let d = file.merge(flags);
        assert_eq!(d.version.as_deref(), Some("4.10.1"));
        assert_eq!(d.counters["users"], 3);
        assert_eq!(d.counters["groups"], 2);
        assert!(Draft::from_json(r#"{"instance_id": "x"}"#).is_err());
    }
}
