//! Parsing and validation of incoming reports against the catalog.
//!
//! Structural problems are refused with every violation named by its JSON
//! path and rule; nothing is stored for a refused report. For forward
//! compatibility, unknown keys inside `attributes`, `counters` and `features`
//! are dropped and listed back, and attribute values the catalog does not list
//! become `other`. What comes out ([`Report`]) holds only catalog names,
//! catalog values, `other`, validated versions, bounded integers and booleans,
//! plus the two optional UUIDs that [`crate::anonymize`] turns into keyed
//! hashes.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::catalog::{Catalog, OTHER};

/// The only report schema version this collector understands.
pub const SCHEMA_VERSION: u64 = 1;
/// Longest accepted version string.
pub const MAX_VERSION_LEN: usize = 32;
/// At most this many ignored keys are listed back (the rest are still ignored).
const MAX_IGNORED_LISTED: usize = 32;
/// At most this many violations are reported for one request.
const MAX_VIOLATIONS: usize = 20;
/// Names echoed back in errors are cut to this length.
const MAX_ECHOED_NAME: usize = 64;

/// What a report says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Install,
    Update,
}

impl Event {
    /// The name used in reports, storage and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Install => "install",
            Event::Update => "update",
        }
    }
}

/// Which endpoint a report came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/v1/reports`.
    V1,
    /// `POST /statistics/install.json`, the passbolt 1.x sender, which says
    /// `install` even after an update.
    LegacyPassbolt,
}

/// A validated report, not yet anonymised.
#[derive(Debug, Clone)]
pub struct Report {
    pub source: Source,
    pub report_id: Option<Uuid>,
    pub instance_id: Option<Uuid>,
    pub product: String,
    pub event: Event,
    pub version: String,
    pub previous_version: Option<String>,
    /// Catalog attribute -> catalog value or `other`.
    pub attributes: BTreeMap<String, String>,
    /// Catalog counter -> value within its bounds.
    pub counters: BTreeMap<String, i64>,
    /// Catalog feature -> switched on.
    pub features: BTreeMap<String, bool>,
    /// Paths of keys that were dropped (e.g. `attributes.colour`).
    pub ignored: Vec<String>,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Dotted path of the offending field (`counters.users`), empty for the
    /// whole body.
    pub field: String,
    /// JSON Pointer (RFC 6901) of the offending field, as a URI fragment.
    pub pointer: String,
    /// Machine-readable rule name (see docs/validation.md).
    pub rule: &'static str,
    /// What the rule requires, for people.
    pub detail: String,
}

impl Violation {
    fn new(path: &[&str], rule: &'static str, detail: impl Into<String>) -> Violation {
        let parts: Vec<String> = path.iter().map(|p| truncate(p)).collect();
        let pointer = parts
            .iter()
            .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
            .collect::<String>();
        Violation {
            field: parts.join("."),
            pointer: format!("#{pointer}"),
            rule,
            detail: detail.into(),
        }
    }
}

/// Every violation found in one report (at most a handful).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<Violation>);

struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, path: &[&str], rule: &'static str, detail: impl Into<String>) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation::new(path, rule, detail));
        }
    }

    /// The JSON object a request must be (`what`, for the message), with
    /// every key outside `fields` recorded as an unknown field.
    fn object<'v>(
        &mut self,
        value: &'v Value,
        what: &str,
        fields: &[&str],
    ) -> Result<&'v Map<String, Value>, Invalid> {
        let Some(obj) = value.as_object() else {
            return Err(Invalid(vec![Violation::new(
                &[],
                "type",
                format!("{what} must be a JSON object"),
            )]));
        };
        for key in obj.keys() {
            if !fields.contains(&key.as_str()) {
                self.fail(&[key], "unknown_field", format!("not a field of {what}"));
            }
        }
        Ok(obj)
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ECHOED_NAME {
        return s.to_owned();
    }
    let mut end = MAX_ECHOED_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

const TOP_LEVEL: &[&str] = &[
    "schema_version",
    "report_id",
    "instance_id",
    "product",
    "event",
    "version",
    "previous_version",
    "attributes",
    "counters",
    "features",
];

/// Parses and validates a v1 JSON report.
pub fn parse_v1(body: &[u8], catalog: &Catalog) -> Result<Report, Invalid> {
    let value = parse_strict_json(body)?;
    validate_v1(&value, catalog)
}

/// Parses JSON, refusing an object that names a key twice (rule
/// `duplicate_key`): parsers disagree on which copy wins, so a duplicate
/// could make a report mean one thing here and another to whoever checked
/// it. Nesting deeper than 128 levels is refused as invalid JSON.
pub fn parse_strict_json(body: &[u8]) -> Result<Value, Invalid> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = StrictValue {
        path: Vec::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        let violation = match duplicate.take() {
            Some(path) => {
                let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                Violation::new(
                    &parts,
                    "duplicate_key",
                    "the same key is given more than once",
                )
            }
            None => Violation::new(
                &[],
                "json",
                format!("body is not valid JSON: {}", json_error_position(&e)),
            ),
        };
        Invalid(vec![violation])
    })
}

/// Builds a [`Value`] like serde_json does, but stops at the first key an
/// object repeats and records its path.
struct StrictValue<'a> {
    path: Vec<String>,
    duplicate: &'a RefCell<Option<Vec<String>>>,
}

impl StrictValue<'_> {
    fn child(&self, key: String) -> Self {
        let mut path = self.path.clone();
        path.push(key);
        StrictValue {
            path,
            duplicate: self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child(out.len().to_string()))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let mut path = self.path.clone();
                path.push(key);
                *self.duplicate.borrow_mut() = Some(path);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(self.child(key.clone()))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn json_error_position(e: &serde_json::Error) -> String {
    // serde_json's message may quote the input; only say where it broke.
    format!("line {}, column {}", e.line(), e.column())
}

/// Validates an already parsed v1 report.
pub fn validate_v1(value: &Value, catalog: &Catalog) -> Result<Report, Invalid> {
    let mut c = Checker::new();
    let obj = c.object(value, "a v1 report", TOP_LEVEL)?;
    match obj.get("schema_version") {
        None => c.fail(
            &["schema_version"],
            "required",
            "schema_version is required",
        ),
        Some(v) if v.as_u64() == Some(SCHEMA_VERSION) => {}
        Some(v) if v.is_u64() => c.fail(
            &["schema_version"],
            "unsupported",
            format!("only schema_version {SCHEMA_VERSION} is supported"),
        ),
        Some(_) => c.fail(&["schema_version"], "type", "must be an integer"),
    }
    let report_id = optional_uuid(&mut c, obj, "report_id");
    let instance_id = optional_uuid(&mut c, obj, "instance_id");
    let product_name = required_str(&mut c, obj, "product");
    let product = product_name.and_then(|name| {
        let p = catalog.product(name);
        if p.is_none() {
            c.fail(
                &["product"],
                "unknown_product",
                "product is not in the catalog (see GET /api/v1/catalog)",
            );
        }
        p
    });
    let event = match required_str(&mut c, obj, "event") {
        Some("install") => Some(Event::Install),
        Some("update") => Some(Event::Update),
        Some(_) => {
            c.fail(&["event"], "enum", "must be \"install\" or \"update\"");
            None
        }
        None => None,
    };
    let version =
        required_str(&mut c, obj, "version").and_then(|v| check_version(&mut c, "version", v));
    let previous_version = match obj.get("previous_version") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => check_version(&mut c, "previous_version", v),
        Some(_) => {
            c.fail(&["previous_version"], "type", "must be a string");
            None
        }
    };
    let has_previous = !matches!(obj.get("previous_version"), None | Some(Value::Null));
    match event {
        Some(Event::Update) if !has_previous => c.fail(
            &["previous_version"],
            "required_for_update",
            "an update report must say which version it updated from",
        ),
        Some(Event::Install) if has_previous => c.fail(
            &["previous_version"],
            "forbidden_for_install",
            "an install report has no previous version",
        ),
        _ => {}
    }

    let mut ignored = Vec::new();
    let mut attributes = BTreeMap::new();
    let mut counters = BTreeMap::new();
    let mut features = BTreeMap::new();
    if let Some(attrs) = optional_object(&mut c, obj, "attributes") {
        for (key, v) in attrs {
            let Some(def) = product.and_then(|p| p.attributes.get(key)) else {
                note_ignored(&mut ignored, "attributes", key);
                continue;
            };
            match v {
                Value::String(s) => {
                    let stored = def
                        .values
                        .iter()
                        .find(|allowed| *allowed == s)
                        .map_or(OTHER, String::as_str);
                    attributes.insert(key.clone(), stored.to_owned());
                }
                _ => c.fail(&["attributes", key], "type", "must be a string"),
            }
        }
    }
    if let Some(counts) = optional_object(&mut c, obj, "counters") {
        for (key, v) in counts {
            let Some(def) = product.and_then(|p| p.counters.get(key)) else {
                note_ignored(&mut ignored, "counters", key);
                continue;
            };
            if let Some(n) = check_counter(&mut c, key, v, def.max) {
                counters.insert(key.clone(), n);
            }
        }
    }
    if let Some(feats) = optional_object(&mut c, obj, "features") {
        for (key, v) in feats {
            if !product.is_some_and(|p| p.features.contains_key(key)) {
                note_ignored(&mut ignored, "features", key);
                continue;
            }
            match v {
                Value::Bool(b) => {
                    features.insert(key.clone(), *b);
                }
                _ => c.fail(&["features", key], "type", "must be true or false"),
            }
        }
    }

    if !c.violations.is_empty() {
        return Err(Invalid(c.violations));
    }
    Ok(Report {
        source: Source::V1,
        report_id: report_id.flatten(),
        instance_id: instance_id.flatten(),
        product: product_name.unwrap_or_default().to_owned(),
        event: event.expect("checked above"),
        version: version.expect("checked above"),
        previous_version,
        attributes,
        counters,
        features,
        ignored,
    })
}

fn note_ignored(ignored: &mut Vec<String>, section: &str, key: &str) {
    if ignored.len() < MAX_IGNORED_LISTED {
        ignored.push(format!("{section}.{}", truncate(key)));
    }
}

fn required_str<'a>(c: &mut Checker, obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            c.fail(&[key], "required", format!("{key} is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            c.fail(&[key], "type", "must be a string");
            None
        }
    }
}

/// `None` when broken (already reported), `Some(None)` when absent.
fn optional_uuid(c: &mut Checker, obj: &Map<String, Value>, key: &str) -> Option<Option<Uuid>> {
    match obj.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match parse_uuid(s) {
            Some(u) => Some(Some(u)),
            None => {
                c.fail(
                    &[key],
                    "uuid",
                    "must be a UUID like 7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6",
                );
                None
            }
        },
        Some(_) => {
            c.fail(&[key], "type", "must be a string");
            None
        }
    }
}

fn optional_object<'a>(
    c: &mut Checker,
    obj: &'a Map<String, Value>,
    key: &str,
) -> Option<&'a Map<String, Value>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            c.fail(&[key], "type", "must be an object");
            None
        }
    }
}

/// A validated erasure request (`POST /api/v1/erasures`).
#[derive(Debug, Clone)]
pub struct Erasure {
    /// The product the install reported as: part of its pseudonym.
    pub product: String,
    /// The install's id, hashed like on ingest and never kept in the clear.
    pub instance_id: Uuid,
}

const ERASURE_FIELDS: &[&str] = &["product", "instance_id"];

/// Parses and validates an erasure request body: a JSON object with a
/// required `instance_id` and an optional `product` (default: the catalog's
/// default product). Unknown fields are refused rather than ignored, so that
/// a misspelt `product` cannot silently erase under another pseudonym.
pub fn parse_erasure(body: &[u8], catalog: &Catalog) -> Result<Erasure, Invalid> {
    let value = parse_strict_json(body)?;
    let mut c = Checker::new();
    let obj = c.object(&value, "an erasure request", ERASURE_FIELDS)?;
    let instance_id = match optional_uuid(&mut c, obj, "instance_id") {
        Some(None) => {
            c.fail(&["instance_id"], "required", "instance_id is required");
            None
        }
        id => id.flatten(),
    };
    let product = match obj.get("product") {
        None | Some(Value::Null) => Some(catalog.default_product().unwrap_or_default().to_owned()),
        Some(Value::String(p)) if catalog.product(p).is_some() => Some(p.clone()),
        Some(Value::String(_)) => {
            c.fail(
                &["product"],
                "unknown_product",
                "product is not in the catalog (see GET /api/v1/catalog)",
            );
            None
        }
        Some(_) => {
            c.fail(&["product"], "type", "must be a string");
            None
        }
    };
    match (product, instance_id) {
        (Some(product), Some(instance_id)) if c.violations.is_empty() => Ok(Erasure {
            product,
            instance_id,
        }),
        _ => Err(Invalid(c.violations)),
    }
}

/// Only the hyphenated form, so that one id has exactly one spelling (case
/// aside) and therefore one keyed hash.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

/// A semantic version of at most 32 characters, whose pre-release (if any) is
/// one of `alpha`, `beta`, `rc` or `dev`, optionally followed by `.N`, and
/// without build metadata: version strings must not be able to carry words.
pub fn is_valid_version(v: &str) -> bool {
    if v.len() > MAX_VERSION_LEN {
        return false;
    }
    let Ok(parsed) = semver::Version::parse(v) else {
        return false;
    };
    if !parsed.build.is_empty() {
        return false;
    }
    if parsed.pre.is_empty() {
        return true;
    }
    let mut parts = parsed.pre.as_str().split('.');
    let tag_ok = matches!(parts.next(), Some("alpha" | "beta" | "rc" | "dev"));
    let rest: Vec<&str> = parts.collect();
    tag_ok
        && match rest.as_slice() {
            [] => true,
            [n] => n.bytes().all(|b| b.is_ascii_digit()),
            _ => false,
        }
}

fn check_version(c: &mut Checker, key: &str, v: &str) -> Option<String> {
    if is_valid_version(v) {
        Some(v.to_owned())
    } else {
        c.fail(
            &[key],
            "version",
            "must be a semantic version such as 4.10.1 or 5.0.0-rc.1 (at most 32 characters; pre-release alpha, beta, rc or dev; no build metadata)",
        );
        None
    }
}

fn check_counter(c: &mut Checker, key: &str, v: &Value, max: i64) -> Option<i64> {
    let Value::Number(n) = v else {
        c.fail(&["counters", key], "type", "must be a non-negative integer");
        return None;
    };
    if let Some(i) = n.as_i64() {
        if i < 0 {
            c.fail(&["counters", key], "minimum", "must not be negative");
            return None;
        }
        if i > max {
            c.fail(
                &["counters", key],
                "maximum",
                format!("must be at most {max}"),
            );
            return None;
        }
        return Some(i);
    }
    if n.is_u64() {
        c.fail(
            &["counters", key],
            "maximum",
            format!("must be at most {max}"),
        );
    } else {
        c.fail(
            &["counters", key],
            "type",
            "must be an integer, not a fraction",
        );
    }
    None
}

/// The legacy passbolt 1.x form field prefix.
const LEGACY_PREFIX: &str = "InstallStatistic[";

/// Parses the form body that passbolt 1.3-1.6 posts to
/// `/statistics/install.json` and maps it onto the v1 model:
/// `context` -> event, `users_count` -> `users`, `passwords_count` ->
/// `resources`. `logs_count` is not part of the v1 model and is dropped (and
/// listed as ignored). Those clients have no `previous_version`; the ingest
/// writer recognises an update by the instance's stored version.
// The duplicate check must not move into a match guard: a guard that
// inserts would let a failed arm fall through to the next one.
#[allow(clippy::collapsible_match)]
pub fn parse_legacy(body: &[u8], catalog: &Catalog, product: &str) -> Result<Report, Invalid> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        Invalid(vec![Violation::new(
            &[],
            "form",
            "body is not application/x-www-form-urlencoded",
        )])
    })?;
    let mut c = Checker::new();
    let Some(def) = catalog.product(product) else {
        return Err(Invalid(vec![Violation::new(
            &["product"],
            "unknown_product",
            "the legacy endpoint needs the passbolt product in the catalog",
        )]));
    };
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    let mut ignored = Vec::new();
    const KNOWN: &[&str] = &[
        "instance_id",
        "context",
        "passwords_count",
        "users_count",
        "version",
    ];
    for (k, v) in &pairs {
        let known = k
            .strip_prefix(LEGACY_PREFIX)
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|name| KNOWN.iter().find(|n| **n == name));
        let Some(name) = known else {
            if ignored.len() < MAX_IGNORED_LISTED {
                ignored.push(truncate(k));
            }
            continue;
        };
        if fields.insert(name, v).is_some() {
            c.fail(&[k], "duplicate", "field given twice");
        }
    }
    let path = |name: &str| format!("{LEGACY_PREFIX}{name}]");
    let instance_id = match fields.get("instance_id") {
        Some(s) if !s.is_empty() => match parse_uuid(s) {
            Some(u) => Some(u),
            None => {
                c.fail(&[&path("instance_id")], "uuid", "must be a UUID");
                None
            }
        },
        _ => None,
    };
    let event = match fields.get("context").copied() {
        Some("install") | None => Some(Event::Install),
        Some("update") => Some(Event::Update),
        Some(_) => {
            c.fail(
                &[&path("context")],
                "enum",
                "must be \"install\" or \"update\"",
            );
            None
        }
    };
    let version = match fields.get("version") {
        Some(v) => check_version(&mut c, &path("version"), v),
        None => {
            c.fail(&[&path("version")], "required", "version is required");
            None
        }
    };
    let mut counters = BTreeMap::new();
    for (form_name, counter) in [("users_count", "users"), ("passwords_count", "resources")] {
        let Some(raw) = fields.get(form_name) else {
            continue;
        };
        let Some(counter_def) = def.counters.get(counter) else {
            continue;
        };
        match raw.parse::<i64>() {
            Ok(n) if n < 0 => c.fail(&[&path(form_name)], "minimum", "must not be negative"),
            Ok(n) if n > counter_def.max => c.fail(
                &[&path(form_name)],
                "maximum",
                format!("must be at most {}", counter_def.max),
            ),
            Ok(n) => {
                counters.insert(counter.to_owned(), n);
            }
            Err(_) => c.fail(
                &[&path(form_name)],
                "type",
                "must be a non-negative integer",
            ),
        }
    }
    if !c.violations.is_empty() {
        return Err(Invalid(c.violations));
    }
    Ok(Report {
        source: Source::LegacyPassbolt,
        report_id: None,
        instance_id,
        product: product.to_owned(),
        event: event.expect("checked above"),
        version: version.expect("checked above"),
        previous_version: None,
        attributes: BTreeMap::new(),
        counters,
        features: BTreeMap::new(),
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_cannot_carry_words() {
        for ok in ["1.6.10", "4.10.1", "5.0.0-rc.1", "5.0.0-beta", "0.0.0"] {
            assert!(is_valid_version(ok), "{ok}");
        }
        for bad in [
            "4.10",
            "v4.10.1",
            "1.0.0+build5",
            "1.0.0-alice",
            "1.0.0-rc.1.2",
            "1.0.0-rc.x",
            "1.0.0-12345678901234567890123456789",
            "",
        ] {
            assert!(!is_valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn uuid_must_be_hyphenated() {
        assert!(parse_uuid("7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6").is_some());
        assert!(parse_uuid("7F1C2E9A-3B4D-4C5E-8F60-718293A4B5C6").is_some());
        assert!(parse_uuid("7f1c2e9a3b4d4c5e8f60718293a4b5c6").is_none());
        assert!(parse_uuid("{7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6}").is_none());
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let Invalid(v) = parse_strict_json(br#"{"a": 1, "b": {"c": 1, "c": 2}}"#).unwrap_err();
        assert_eq!((v[0].rule, v[0].field.as_str()), ("duplicate_key", "b.c"));
        let Invalid(v) = parse_strict_json(br#"[{"x": 1}, {"y": 1, "y": 1}]"#).unwrap_err();
        assert_eq!(v[0].field, "1.y");
        assert!(parse_strict_json(br#"{"a": [1, 2.5, null, true, "s"], "b": {}}"#).is_ok());
        let Invalid(v) = parse_strict_json(b"{} x").unwrap_err();
        assert_eq!(v[0].rule, "json");
    }

    #[test]
    fn pointer_escapes_slashes() {
        let v = Violation::new(&["attributes", "a/b~c"], "type", "x");
        assert_eq!(v.pointer, "#/attributes/a~1b~0c");
        assert_eq!(v.field, "attributes.a/b~c");
    }
}
