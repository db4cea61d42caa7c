//! Realistic synthetic reports, for the load phases and for seeding.
//!
//! Every load request carries a fresh `report_id`; its `instance_id` comes
//! from a fixed population (instance `i` always has the same id), so that
//! repeated reports replace snapshots, and so that reports sent to a seeded
//! database update instances that are already stored. Releases follow a
//! monthly cadence, sizes are heavy-tailed, editions, PHP versions and
//! database engines are mixed, and a few reports carry no `instance_id`.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::NaiveDate;
use rand::rngs::SmallRng;
use rand::Rng;
use uuid::Uuid;

use anonstats::validation::{Event, Report, Source};

/// The product the built-in catalog describes.
pub const PRODUCT: &str = "passbolt";
/// Days between two releases.
const RELEASE_EVERY_DAYS: i64 = 30;
/// Share of load reports without an `instance_id`.
const ANONYMOUS_SHARE: f64 = 0.03;
/// Share of load reports that are installs (the rest are updates).
const INSTALL_SHARE: f64 = 0.2;

const EDITIONS: &[(&str, f64)] = &[("ce", 0.7), ("pro", 0.25), ("cloud", 0.05)];
const PHP: &[(&str, f64)] = &[
    ("7.4", 0.08),
    ("8.0", 0.07),
    ("8.1", 0.2),
    ("8.2", 0.35),
    ("8.3", 0.25),
    ("8.4", 0.05),
];
const DB_ENGINES: &[(&str, f64)] = &[("mysql", 0.35), ("mariadb", 0.5), ("postgresql", 0.15)];
const OS: &[(&str, f64)] = &[
    ("debian", 0.4),
    ("ubuntu", 0.3),
    ("rhel", 0.08),
    ("rocky", 0.07),
    ("almalinux", 0.05),
    ("alpine", 0.05),
    ("opensuse", 0.05),
];
const INSTALL_METHODS: &[(&str, f64)] = &[
    ("package", 0.45),
    ("docker", 0.4),
    ("helm", 0.05),
    ("source", 0.05),
    ("virtual_appliance", 0.05),
];

/// The id of instance `i` of the benchmark population: stable across runs
/// and processes, shaped like a random (v4) UUID.
pub fn instance_id(i: u64) -> Uuid {
    let a = splitmix(i ^ 0x616e_6f6e_7374_6174);
    let b = splitmix(a);
    let bytes = ((a as u128) << 64 | b as u128).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The version released `index` months into the history (`3.0.0`,
/// `3.1.0`, ..., `3.11.0`, `4.0.0`, ...).
pub fn release(index: i64) -> String {
    let index = index.max(0);
    format!("{}.{}.0", 3 + index / 12, index % 12)
}

/// Which release was current on `day` for a history that started on `start`.
pub fn release_index(start: NaiveDate, day: NaiveDate) -> i64 {
    (day - start).num_days().max(0) / RELEASE_EVERY_DAYS
}

fn pick<'a>(rng: &mut SmallRng, table: &[(&'a str, f64)]) -> &'a str {
    let mut x: f64 = rng.random();
    for (value, weight) in table {
        if x < *weight {
            return value;
        }
        x -= weight;
    }
    table[table.len() - 1].0
}

/// A heavy-tailed size between 1 and `max` (log-uniform with a bias to
/// small installs).
fn size(rng: &mut SmallRng, max: f64) -> i64 {
    let u: f64 = rng.random();
    (max.ln() * u * u).exp().floor() as i64
}

/// The state an install reports, before anonymisation.
#[derive(Debug, Clone)]
pub struct Sample {
    pub report_id: Option<Uuid>,
    pub instance_id: Option<Uuid>,
    pub event: Event,
    pub version: String,
    pub previous_version: Option<String>,
    pub attributes: [(&'static str, &'static str); 5],
    pub counters: [(&'static str, i64); 4],
    pub features: [(&'static str, bool); 3],
}

impl Sample {
    /// A random install state for the given event and versions.
    pub fn random(
        rng: &mut SmallRng,
        instance_id: Option<Uuid>,
        event: Event,
        version: String,
        previous_version: Option<String>,
    ) -> Sample {
        let users = size(rng, 5000.0);
        Sample {
            report_id: None,
            instance_id,
            event,
            version,
            previous_version,
            attributes: [
                ("edition", pick(rng, EDITIONS)),
                ("php_version", pick(rng, PHP)),
                ("db_engine", pick(rng, DB_ENGINES)),
                ("os_family", pick(rng, OS)),
                ("install_method", pick(rng, INSTALL_METHODS)),
            ],
            counters: [
                ("users", users),
                ("groups", size(rng, 200.0).min(users)),
                ("resources", users * size(rng, 300.0)),
                ("folders", size(rng, 2000.0)),
            ],
            features: [
                ("mfa", rng.random_bool(0.6)),
                ("ldap", rng.random_bool(0.2)),
                ("sso", rng.random_bool(0.15)),
            ],
        }
    }

    /// The v1 JSON body.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut uuid_buf = [0u8; 36];
        out.extend_from_slice(b"{\"schema_version\":1");
        if let Some(id) = self.report_id {
            let _ = write!(
                out,
                ",\"report_id\":\"{}\"",
                id.hyphenated().encode_lower(&mut uuid_buf)
            );
        }
        if let Some(id) = self.instance_id {
            let _ = write!(
                out,
                ",\"instance_id\":\"{}\"",
                id.hyphenated().encode_lower(&mut uuid_buf)
            );
        }
        let _ = write!(
            out,
            ",\"product\":\"{PRODUCT}\",\"event\":\"{}\",\"version\":\"{}\"",
            self.event.as_str(),
            self.version
        );
        if let Some(p) = &self.previous_version {
            let _ = write!(out, ",\"previous_version\":\"{p}\"");
        }
        out.extend_from_slice(b",\"attributes\":{");
        for (i, (k, v)) in self.attributes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{k}\":\"{v}\"");
        }
        out.extend_from_slice(b"},\"counters\":{");
        for (i, (k, v)) in self.counters.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{k}\":{v}");
        }
        out.extend_from_slice(b"},\"features\":{");
        for (i, (k, v)) in self.features.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{k}\":{v}");
        }
        out.extend_from_slice(b"}}");
    }

    /// The validated report this sample stands for (what validation of its
    /// JSON would give).
    pub fn to_report(&self) -> Report {
        Report {
            source: Source::V1,
            report_id: self.report_id,
            instance_id: self.instance_id,
            product: PRODUCT.to_owned(),
            event: self.event,
            version: self.version.clone(),
            previous_version: self.previous_version.clone(),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            counters: self
                .counters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            features: self
                .features
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            ignored: Vec::new(),
        }
    }
}

/// Produces the bodies of load requests.
pub struct LoadGenerator {
    rng: SmallRng,
    population: u64,
    /// Index of the current release.
    current: i64,
}

impl LoadGenerator {
    /// A generator over `population` instances, seeded so that concurrent
    /// connections draw different sequences.
    pub fn new(seed: u64, population: u64, history_days: i64) -> LoadGenerator {
        LoadGenerator {
            rng: rand::SeedableRng::seed_from_u64(seed),
            population: population.max(1),
            current: history_days / RELEASE_EVERY_DAYS,
        }
    }

    /// The next report: a fresh `report_id`, a random instance of the
    /// population, an install of the current release or an update to one of
    /// the last three releases.
    pub fn next_sample(&mut self) -> Sample {
        let rng = &mut self.rng;
        let instance = if rng.random_bool(ANONYMOUS_SHARE) {
            None
        } else {
            Some(instance_id(rng.random_range(0..self.population)))
        };
        let (event, version, previous) = if rng.random_bool(INSTALL_SHARE) {
            (Event::Install, release(self.current), None)
        } else {
            let to = self.current - rng.random_range(0..3);
            let from = to - rng.random_range(1..4);
            (Event::Update, release(to), Some(release(from)))
        };
        let mut sample = Sample::random(rng, instance, event, version, previous);
        sample.report_id = Some(uuid::Builder::from_random_bytes(rng.random()).into_uuid());
        sample
    }

    /// The next report as a JSON body in `out`.
    pub fn next_json(&mut self, out: &mut Vec<u8>) {
        self.next_sample().write_json(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anonstats::catalog::Catalog;
    use anonstats::validation::parse_v1;

    #[test]
    fn generated_reports_validate_to_the_same_report() {
        let catalog = Catalog::builtin();
        let mut generator = LoadGenerator::new(7, 1000, 3 * 365);
        let mut body = Vec::new();
        for _ in 0..200 {
            let sample = generator.next_sample();
            sample.write_json(&mut body);
            let parsed = parse_v1(&body, &catalog).expect("valid report");
            let expected = sample.to_report();
            assert_eq!(parsed.report_id, expected.report_id);
            assert_eq!(parsed.instance_id, expected.instance_id);
            assert_eq!(parsed.version, expected.version);
            assert_eq!(parsed.previous_version, expected.previous_version);
            assert_eq!(parsed.attributes, expected.attributes);
            assert_eq!(parsed.counters, expected.counters);
            assert_eq!(parsed.features, expected.features);
            assert!(parsed.ignored.is_empty(), "{:?}", parsed.ignored);
        }
    }

    #[test]
    fn instance_ids_are_stable_and_distinct() {
        assert_eq!(instance_id(42), instance_id(42));
        assert_ne!(instance_id(42), instance_id(43));
        assert_eq!(instance_id(1).get_version_num(), 4);
    }
}
