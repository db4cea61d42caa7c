//! Property tests over parse + validate + anonymise: whatever the input,
//! nothing panics, and whatever is accepted holds only what the catalog
//! allows.

use anonstats::anonymize::{anonymize, Pseudonymizer, Record};
use anonstats::catalog::{Catalog, OTHER};
use anonstats::validation::{is_valid_version, parse_legacy, parse_v1, Report};
use chrono::NaiveDate;
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::support::sample_report;

/// Cases per property; the corpus in `hostile.rs` covers the known shapes,
/// these explore around them.
const CASES: u32 = 2000;

fn catalog() -> Catalog {
    Catalog::builtin()
}

/// Names a report may use, and names close to them.
fn key() -> impl Strategy<Value = String> {
    let c = catalog();
    let p = &c.products["passbolt"];
    let mut names: Vec<String> = [
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
        "",
        "__proto__",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(p.attributes.keys().cloned());
    names.extend(p.counters.keys().cloned());
    names.extend(p.features.keys().cloned());
    prop_oneof![
        3 => proptest::sample::select(names),
        1 => any::<String>(),
    ]
}

/// Strings that are valid somewhere, or hostile anywhere.
fn interesting_string() -> impl Strategy<Value = String> {
    let c = catalog();
    let p = &c.products["passbolt"];
    let mut values: Vec<String> = p
        .attributes
        .values()
        .flat_map(|a| a.values.iter().cloned())
        .collect();
    values.extend(
        [
            "passbolt",
            "install",
            "update",
            "other",
            "4.10.1",
            "4.9.0",
            "5.0.0-rc.1",
            "1.0.0+build",
            "1.0.0-alice",
            "7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6",
            "7F1C2E9A-3B4D-4C5E-8F60-718293A4B5C6",
            "alice@example.com",
            "192.0.2.1",
            "'; DROP TABLE instances; --",
            "<script>",
            "\u{0}",
            "\u{202e}",
            "=1+1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    prop_oneof![
        3 => proptest::sample::select(values),
        1 => any::<String>(),
        1 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z]{1,6}(\\.[0-9]{1,2})?)?",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..2_000_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        interesting_string().prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One edit of the sample report: a top-level field or a field of one of
/// the three sections, set to a value or removed.
#[derive(Debug, Clone)]
enum Edit {
    Top(String, Option<Value>),
    Nested(usize, String, Option<Value>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (key(), proptest::option::weighted(0.8, value())).prop_map(|(k, v)| Edit::Top(k, v)),
        (0usize..3, key(), proptest::option::weighted(0.8, value()))
            .prop_map(|(s, k, v)| Edit::Nested(s, k, v)),
    ]
}

fn apply(edits: &[Edit]) -> Value {
    let mut r = sample_report();
    let obj = r.as_object_mut().unwrap();
    for e in edits {
        match e {
            Edit::Top(k, Some(v)) => {
                obj.insert(k.clone(), v.clone());
            }
            Edit::Top(k, None) => {
                obj.remove(k);
            }
            Edit::Nested(s, k, v) => {
                let section = ["attributes", "counters", "features"][*s];
                if let Some(Value::Object(m)) = obj.get_mut(section) {
                    match v {
                        Some(v) => m.insert(k.clone(), v.clone()),
                        None => m.remove(k),
                    };
                }
            }
        }
    }
    r
}

/// The privacy invariants of an accepted report and of what is stored.
fn assert_only_catalog_content(report: &Report, record: &Record, catalog: &Catalog) {
    let product = catalog
        .product(&report.product)
        .expect("accepted product is in the catalog");
    assert!(is_valid_version(&record.version), "{}", record.version);
    if let Some(p) = &record.previous_version {
        assert!(is_valid_version(p), "{p}");
    }
    let allowed_attr = |name: &str, value: &str| {
        product
            .attributes
            .get(name)
            .is_some_and(|a| value == OTHER || a.values.iter().any(|v| v == value))
    };
    if let Some(edition) = &record.edition {
        assert!(allowed_attr("edition", edition), "{edition}");
    }
    if let Some(instance) = &record.instance {
        let s = &instance.state;
        for (k, v) in &s.attributes {
            assert!(allowed_attr(k, v), "attribute {k}={v}");
        }
        for (k, v) in &s.counters {
            let max = product.counters.get(k).expect("catalog counter").max;
            assert!((0..=max).contains(v), "counter {k}={v}");
        }
        for k in s.features.keys() {
            assert!(product.features.contains_key(k), "feature {k}");
        }
        // The stored state is built from those names and values only.
        let json = serde_json::to_string(s).unwrap();
        assert!(json.len() < 4096);
    }
    for ignored in &report.ignored {
        assert!(ignored.chars().count() <= 80, "ignored names are cut short");
    }
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn edited_reports_never_panic_and_accepted_ones_hold_only_catalog_content(
        edits in proptest::collection::vec(edit(), 0..6)
    ) {
        let catalog = catalog();
        let p = Pseudonymizer::new(b"0123456789abcdef0123456789abcdef");
        let body = apply(&edits).to_string();
        if let Ok(report) = parse_v1(body.as_bytes(), &catalog) {
            let record = anonymize(report.clone(), &p, day());
            assert_only_catalog_content(&report, &record, &catalog);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        splice in proptest::collection::vec(any::<u8>(), 0..16),
        at in any::<proptest::sample::Index>(),
    ) {
        let catalog = catalog();
        let p = Pseudonymizer::new(b"0123456789abcdef0123456789abcdef");
        // Raw noise, and a valid report with noise spliced in.
        let mut spliced = sample_report().to_string().into_bytes();
        let i = at.index(spliced.len());
        spliced.splice(i..i, splice.iter().copied());
        for body in [&bytes, &spliced] {
            if let Ok(report) = parse_v1(body, &catalog) {
                let record = anonymize(report.clone(), &p, day());
                assert_only_catalog_content(&report, &record, &catalog);
            }
            if let Ok(report) = parse_legacy(body, &catalog, "passbolt") {
                let record = anonymize(report.clone(), &p, day());
                assert_only_catalog_content(&report, &record, &catalog);
            }
        }
    }

    #[test]
    fn legacy_forms_never_panic_and_stay_within_the_catalog(
        fields in proptest::collection::vec(
            (
                prop_oneof![
                    Just("instance_id"), Just("context"), Just("passwords_count"),
                    Just("users_count"), Just("logs_count"), Just("version"), Just("x"),
                ],
                prop_oneof![interesting_string(), any::<i64>().prop_map(|n| n.to_string())],
            ),
            0..8,
        )
    ) {
        let catalog = catalog();
        let p = Pseudonymizer::new(b"0123456789abcdef0123456789abcdef");
        let pairs: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (format!("InstallStatistic[{k}]"), v.clone()))
            .collect();
        let body = serde_urlencoded::to_string(&pairs).unwrap();
        if let Ok(report) = parse_legacy(body.as_bytes(), &catalog, "passbolt") {
            let record = anonymize(report.clone(), &p, day());
            assert_only_catalog_content(&report, &record, &catalog);
        }
    }
}
