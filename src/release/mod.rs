//! Public releases: differentially private statistics, "public by design".
//!
//! The live stats API is for maintainers. The public gets releases instead:
//! every published count is a true count plus discrete Gaussian noise
//! ([`mechanism`]), under a zCDP budget per 365 days split over releases and
//! histograms ([`budget`]). A release is computed once, stored as JSON in
//! the `releases` table with its SHA-256 (`store::releases`) and never
//! changed; every public route answers from stored releases only.
//!
//! Everything here is pure: [`build`] takes the true counts ([`Inputs`])
//! and a noise source and returns the release, so that its rules are tested
//! without a database. Reading the counts, checking the budget against the
//! stored releases and storing is [`crate::publication`]'s.

pub mod budget;
pub mod mechanism;

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, Product};
use crate::grouping::{Interval, HISTOGRAM_BOUNDS, OTHER};
pub use budget::{Cadence, OverBudget, Split, DEFAULT_BUDGET, DEFAULT_CADENCE};
pub use mechanism::{Mechanism, Sigma};

/// Windows of the active-install counts, in days.
pub const WINDOWS: [u32; 3] = [30, 90, 365];
/// Window of every other figure, in days.
pub const FIGURE_WINDOW: u32 = 365;
/// A noisy cell is published only when at least this many sigmas.
pub const THRESHOLD_SIGMAS: f64 = 5.0;
/// Name of the mechanism, as stored and published.
pub const MECHANISM: &str = "discrete_gaussian_zcdp";
/// Version of the release format: 2 added the upgrade paths and the
/// updated installs per period (releases of format 1 have neither).
pub const FORMAT: u32 = 2;
/// Events one install contributes to each event table, whatever it sent.
pub const EVENTS_PER_INSTALL: u32 = 1;
/// The contribution bound, as published.
pub const CONTRIBUTION: &str = "Each install contributes at most 1 to each histogram: to one \
     cell of the version histogram, of each attribute's histogram, of each feature's on/off \
     histogram and of each counter's bucket histogram (its latest snapshot), to each \
     active-install count, to one week and one month of the first-seen tables (the day its \
     first report arrived), to one week and one month of the last-seen tables (the day of \
     its latest report), and, when its latest update fell in the 365 days, to one upgrade \
     path (that update's previous and new version) and to one week and one month of the \
     updated tables (that update's day). Only the latest update of each install is kept, \
     however many update reports it sent: at most 1 event per install in each event table. \
     Adding or removing one install changes each histogram by at most 1 in one cell: L2 \
     sensitivity 1 per histogram.";

/// Release settings, from `--privacy-budget` and `--release-cadence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// zCDP rho per 365 days.
    pub budget: f64,
    /// How often `serve` publishes; also fixes the split of the budget.
    pub cadence: Cadence,
    /// Whether `serve` publishes on the cadence (off in `Config::new`, so
    /// that embedding and tests choose; `serve` turns it on).
    pub scheduled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            budget: DEFAULT_BUDGET,
            cadence: DEFAULT_CADENCE,
            scheduled: false,
        }
    }
}

/// How a product's releases spend the budget: fixed by the catalog and the
/// settings, never by the data.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub product: String,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub features: Vec<String>,
    pub counters: Vec<String>,
    pub split: Split,
    /// Smallest published count: ceil(THRESHOLD_SIGMAS * sigma).
    pub threshold: i64,
}

impl Plan {
    /// The plan of `product` of the catalog.
    pub fn new(name: &str, product: &Product, settings: &Settings) -> Plan {
        let attributes: BTreeMap<String, Vec<String>> = product
            .attributes
            .iter()
            .map(|(n, a)| {
                let mut values = a.values.clone();
                if !values.iter().any(|v| v == OTHER) {
                    values.push(OTHER.to_owned());
                }
                (n.clone(), values)
            })
            .collect();
        let features: Vec<String> = product.features.keys().cloned().collect();
        let counters: Vec<String> = product.counters.keys().cloned().collect();
        // Active installs per window, versions, upgrade paths, each
        // attribute, feature and counter, and the six event tables (first
        // seen, last seen and updated, per week and per month).
        let histograms = WINDOWS.len() + 2 + attributes.len() + features.len() + counters.len() + 6;
        let split = Split::new(settings.budget, settings.cadence, histograms as u32);
        Plan {
            product: name.to_owned(),
            attributes,
            features,
            counters,
            threshold: (THRESHOLD_SIGMAS * split.sigma.value()).ceil() as i64,
            split,
        }
    }
}

/// True counts a release is computed from, as of its day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Installs active in each of [`WINDOWS`].
    pub active: [i64; 3],
    /// Installs active in 365 days per version.
    pub versions: BTreeMap<String, i64>,
    /// Per attribute, installs per value.
    pub attributes: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per feature, installs with it (on, off).
    pub features: BTreeMap<String, (i64, i64)>,
    /// Per counter, installs per fine storage bucket (lower bound).
    pub counters: BTreeMap<String, BTreeMap<i64, i64>>,
    /// Installs per day of their first report.
    pub first_seen: BTreeMap<NaiveDate, i64>,
    /// Installs per day of their latest report.
    pub last_seen: BTreeMap<NaiveDate, i64>,
    /// Installs whose latest update fell in the 365 days, per (from, to)
    /// version of that update.
    pub upgrades: BTreeMap<(String, String), i64>,
    /// Installs per day of their latest update.
    pub updated: BTreeMap<NaiveDate, i64>,
}

/// Privacy parameters of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// Always "zCDP".
    pub definition: String,
    /// rho spent by this release.
    pub rho: f64,
    /// The budget, rho per 365 days.
    pub budget_per_365_days: f64,
    pub cadence: Cadence,
    /// Releases the budget is split over.
    pub releases_per_365_days: u32,
    /// Histograms of this release.
    pub histograms: u32,
    /// rho of each histogram: 1 / (2 sigma^2).
    pub rho_per_histogram: f64,
    /// Scale of the discrete Gaussian noise of every cell.
    pub sigma: f64,
    /// Cells below this noisy value are not published.
    pub threshold: i64,
    pub threshold_sigmas: f64,
}

/// The sensitivity the noise is calibrated to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensitivity {
    /// L2 sensitivity of each histogram (one install added or removed).
    pub l2_per_histogram: u32,
    /// Most events one install contributes to each event table (first
    /// seen, last seen, updated), however many reports it sent.
    #[serde(default = "events_per_install")]
    pub events_per_install: u32,
    pub contribution: String,
}

/// What releases of format 1, which do not state it, bounded too.
fn events_per_install() -> u32 {
    EVENTS_PER_INSTALL
}

impl Sensitivity {
    /// The bound of releases made now.
    pub fn current() -> Sensitivity {
        Sensitivity {
            l2_per_histogram: 1,
            events_per_install: EVENTS_PER_INSTALL,
            contribution: CONTRIBUTION.to_owned(),
        }
    }
}

/// One active-install count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCount {
    pub window_days: u32,
    /// Noisy count; `null` below the threshold.
    pub installs: Option<i64>,
}

/// One version's noisy count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionCount {
    pub version: String,
    pub installs: i64,
    /// Of the noisy 365-day active installs, 0 to 1, four decimals.
    pub share: Option<f64>,
}

/// One upgrade path's noisy count: installs whose latest update went from
/// `from_version` to `to_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeCount {
    pub from_version: String,
    pub to_version: String,
    pub installs: i64,
}

/// One attribute value's noisy count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueCount {
    pub value: String,
    pub installs: i64,
}

/// An attribute's shown values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeTable {
    pub attribute: String,
    pub values: Vec<ValueCount>,
}

/// A feature's noisy adoption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCount {
    pub feature: String,
    /// Installs with it on; `null` below the threshold.
    pub enabled: Option<i64>,
    /// Installs reporting it (on + off, so its noise has scale sigma * sqrt 2);
    /// `null` below the threshold.
    pub instances: Option<i64>,
}

/// One bucket of a counter histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketCount {
    pub bucket: String,
    pub from: i64,
    pub to: Option<i64>,
    pub installs: i64,
}

/// A counter's shown buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterTable {
    pub counter: String,
    pub histogram: Vec<BucketCount>,
}

/// Installs first and last seen in one week or month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodCount {
    /// First day of the period (Monday, or the first of the month).
    pub period: NaiveDate,
    /// Installs whose first report arrived in the period (new installs).
    pub first_seen: Option<i64>,
    /// Installs whose latest report arrived in the period.
    pub last_seen: Option<i64>,
    /// Installs whose latest update was in the period (absent in format 1).
    #[serde(default)]
    pub updated: Option<i64>,
}

/// The event tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub weekly: Vec<PeriodCount>,
    pub monthly: Vec<PeriodCount>,
}

/// One public release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub format: u32,
    pub product: String,
    /// Day the release was computed as of.
    pub date: NaiveDate,
    pub mechanism: String,
    pub parameters: Parameters,
    pub sensitivity: Sensitivity,
    /// Days of the active-install windows.
    pub windows: Vec<u32>,
    /// Window of every figure but the active-install counts, in days.
    pub figure_window_days: u32,
    pub active_installs: Vec<WindowCount>,
    pub versions: Vec<VersionCount>,
    /// Upgrade paths of the installs whose latest update fell in the 365
    /// days (absent in format 1).
    #[serde(default)]
    pub upgrades: Vec<UpgradeCount>,
    pub attributes: Vec<AttributeTable>,
    pub features: Vec<FeatureCount>,
    pub counters: Vec<CounterTable>,
    pub events: Events,
}

/// Post-processing of one noisy cell: clamped at zero, shown only at or
/// above the threshold.
fn shown(noisy: i64, threshold: i64) -> Option<i64> {
    let n = noisy.max(0);
    (n >= threshold).then_some(n)
}

/// Builds the release of `date` from the true counts. Every cell of a
/// fixed domain (windows, catalog values, on/off, buckets, periods) is
/// noised, zeros included; versions, an open domain, only where installs
/// run them, and the threshold keeps a version run by few installs out with
/// overwhelming probability.
pub fn build(inputs: &Inputs, plan: &Plan, date: NaiveDate, mech: &mut Mechanism) -> Release {
    let sigma = plan.split.sigma;
    let t = plan.threshold;
    let mut cell = |count: i64| shown(mech.noisy(count, sigma), t);

    let active_installs: Vec<WindowCount> = WINDOWS
        .iter()
        .zip(inputs.active)
        .map(|(w, n)| WindowCount {
            window_days: *w,
            installs: cell(n),
        })
        .collect();
    let whole = active_installs[2].installs;

    let mut versions: Vec<VersionCount> = inputs
        .versions
        .iter()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(v, n)| {
            cell(*n).map(|installs| VersionCount {
                version: v.clone(),
                installs,
                share: whole.filter(|w| *w > 0).map(|w| round4(installs, w)),
            })
        })
        .collect();
    versions.sort_by(|a, b| b.installs.cmp(&a.installs).then(a.version.cmp(&b.version)));

    // An open domain too: only paths some install took have a cell.
    let mut upgrades: Vec<UpgradeCount> = inputs
        .upgrades
        .iter()
        .filter(|(_, n)| **n > 0)
        .filter_map(|((from, to), n)| {
            cell(*n).map(|installs| UpgradeCount {
                from_version: from.clone(),
                to_version: to.clone(),
                installs,
            })
        })
        .collect();
    upgrades.sort_by(|a, b| {
        b.installs
            .cmp(&a.installs)
            .then_with(|| a.from_version.cmp(&b.from_version))
            .then_with(|| a.to_version.cmp(&b.to_version))
    });

    let attributes = plan
        .attributes
        .iter()
        .map(|(name, domain)| {
            // Values outside the catalog (kept from an older catalog) count
            // as `other`, so that the cells are the catalog's.
            let mut counts: BTreeMap<&str, i64> = domain.iter().map(|v| (v.as_str(), 0)).collect();
            for (value, n) in inputs.attributes.get(name).into_iter().flatten() {
                let key = if counts.contains_key(value.as_str()) {
                    value.as_str()
                } else {
                    OTHER
                };
                *counts.entry(key).or_default() += n.max(&0);
            }
            let mut values: Vec<ValueCount> = domain
                .iter()
                .filter_map(|v| {
                    cell(counts[v.as_str()]).map(|installs| ValueCount {
                        value: v.clone(),
                        installs,
                    })
                })
                .collect();
            values.sort_by(|a, b| b.installs.cmp(&a.installs).then(a.value.cmp(&b.value)));
            AttributeTable {
                attribute: name.clone(),
                values,
            }
        })
        .collect();

    let features = plan
        .features
        .iter()
        .map(|name| {
            let (on, off) = inputs.features.get(name).copied().unwrap_or_default();
            let on = mech.noisy(on.max(0), sigma).max(0);
            let off = mech.noisy(off.max(0), sigma).max(0);
            FeatureCount {
                feature: name.clone(),
                enabled: shown(on, t),
                instances: shown(on + off, t),
            }
        })
        .collect();

    let counters = plan
        .counters
        .iter()
        .map(|name| {
            let mut buckets = [0i64; HISTOGRAM_BOUNDS.len()];
            for (lower, n) in inputs.counters.get(name).into_iter().flatten() {
                let i = HISTOGRAM_BOUNDS
                    .iter()
                    .rposition(|b| b <= lower)
                    .unwrap_or(0);
                buckets[i] += n.max(&0);
            }
            let histogram = buckets
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let from = HISTOGRAM_BOUNDS[i];
                    let to = HISTOGRAM_BOUNDS.get(i + 1).map(|next| next - 1);
                    let mech_n = shown(mech.noisy(*n, sigma), t)?;
                    Some(BucketCount {
                        bucket: match to {
                            None => format!("{from}+"),
                            Some(to) if to == from => from.to_string(),
                            Some(to) => format!("{from}-{to}"),
                        },
                        from,
                        to,
                        installs: mech_n,
                    })
                })
                .collect();
            CounterTable {
                counter: name.clone(),
                histogram,
            }
        })
        .collect();

    let events = Events {
        weekly: periods(inputs, date, Interval::Week, mech, sigma, t),
        monthly: periods(inputs, date, Interval::Month, mech, sigma, t),
    };

    Release {
        format: FORMAT,
        product: plan.product.clone(),
        date,
        mechanism: MECHANISM.to_owned(),
        parameters: parameters(plan),
        sensitivity: Sensitivity::current(),
        windows: WINDOWS.to_vec(),
        figure_window_days: FIGURE_WINDOW,
        active_installs,
        versions,
        upgrades,
        attributes,
        features,
        counters,
        events,
    }
}

/// The privacy parameters of a plan.
pub fn parameters(plan: &Plan) -> Parameters {
    let s = &plan.split;
    Parameters {
        definition: "zCDP".to_owned(),
        rho: s.spent,
        budget_per_365_days: s.budget,
        cadence: s.cadence,
        releases_per_365_days: s.cadence.periods_per_budget(),
        histograms: s.histograms,
        rho_per_histogram: s.sigma.rho(),
        sigma: s.sigma.value(),
        threshold: plan.threshold,
        threshold_sigmas: THRESHOLD_SIGMAS,
    }
}

/// The noisy first-seen, last-seen and updated tables per week or month of
/// the 365 days ending on `date`. Periods are counted over the days inside
/// the window only, so the first may be partial.
fn periods(
    inputs: &Inputs,
    date: NaiveDate,
    interval: Interval,
    mech: &mut Mechanism,
    sigma: Sigma,
    t: i64,
) -> Vec<PeriodCount> {
    let from = budget::period_start(date);
    let mut first: BTreeMap<NaiveDate, (i64, i64, i64)> = BTreeMap::new();
    let mut day = interval.period_start(from);
    while day <= date {
        first.insert(day, (0, 0, 0));
        day = match interval {
            Interval::Month => day
                .checked_add_months(chrono::Months::new(1))
                .expect("a later month"),
            _ => day + Duration::days(7),
        };
    }
    let within = |d: &NaiveDate| *d >= from && *d <= date;
    for (d, n) in inputs.first_seen.iter().filter(|(d, _)| within(d)) {
        first.entry(interval.period_start(*d)).or_default().0 += n;
    }
    for (d, n) in inputs.last_seen.iter().filter(|(d, _)| within(d)) {
        first.entry(interval.period_start(*d)).or_default().1 += n;
    }
    for (d, n) in inputs.updated.iter().filter(|(d, _)| within(d)) {
        first.entry(interval.period_start(*d)).or_default().2 += n;
    }
    first
        .into_iter()
        .filter_map(|(period, (f, l, u))| {
            let first_seen = shown(mech.noisy(f, sigma), t);
            let last_seen = shown(mech.noisy(l, sigma), t);
            let updated = shown(mech.noisy(u, sigma), t);
            (first_seen.is_some() || last_seen.is_some() || updated.is_some()).then_some(
                PeriodCount {
                    period,
                    first_seen,
                    last_seen,
                    updated,
                },
            )
        })
        .collect()
}

fn round4(part: i64, whole: i64) -> f64 {
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A release as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub date: NaiveDate,
    /// The release JSON, byte for byte as published.
    pub body: String,
    /// SHA-256 of `body`.
    pub sha256: String,
    pub mechanism: String,
    /// The parameters JSON.
    pub parameters: String,
    pub rho: f64,
}

impl Stored {
    /// The parsed release.
    pub fn release(&self) -> Result<Release, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// Why no release was made.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("a release dated {0} already exists (releases are never replaced)")]
    AlreadyPublished(NaiveDate),
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    #[error("the catalog lists no product")]
    NoProduct,
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

/// The plan of the catalog's default product.
pub fn plan(catalog: &Catalog, settings: &Settings) -> Result<Plan, ReleaseError> {
    let name = catalog.default_product().ok_or(ReleaseError::NoProduct)?;
    let product = catalog.product(name).ok_or(ReleaseError::NoProduct)?;
    Ok(Plan::new(name, product, settings))
}

/// A release as CSV: one row per published cell, with the scale of its
/// noise (`table,name,label,count,sigma`). Derived from the stored JSON, so
/// the same bytes every time.
pub fn csv(r: &Release) -> String {
    let sigma = r.parameters.sigma;
    let sum_sigma = sigma * std::f64::consts::SQRT_2;
    let mut out = String::from("table,name,label,count,sigma\r\n");
    let mut row = |table: &str, name: &str, label: &str, count: i64, s: f64| {
        out.push_str(&format!(
            "{},{},{},{count},{s:.6}\r\n",
            field(table),
            field(name),
            field(label)
        ));
    };
    for w in &r.active_installs {
        if let Some(n) = w.installs {
            row("active_installs", &w.window_days.to_string(), "", n, sigma);
        }
    }
    for v in &r.versions {
        row("versions", "", &v.version, v.installs, sigma);
    }
    for u in &r.upgrades {
        row(
            "upgrades",
            &u.from_version,
            &u.to_version,
            u.installs,
            sigma,
        );
    }
    for a in &r.attributes {
        for v in &a.values {
            row("attributes", &a.attribute, &v.value, v.installs, sigma);
        }
    }
    for f in &r.features {
        if let Some(n) = f.enabled {
            row("features", &f.feature, "enabled", n, sigma);
        }
        if let Some(n) = f.instances {
            row("features", &f.feature, "instances", n, sum_sigma);
        }
    }
    for c in &r.counters {
        for b in &c.histogram {
            row("counters", &c.counter, &b.bucket, b.installs, sigma);
        }
    }
    for (table, rows) in [("weekly", &r.events.weekly), ("monthly", &r.events.monthly)] {
        for p in rows {
            let label = p.period.to_string();
            if let Some(n) = p.first_seen {
                row(&format!("events_{table}"), "first_seen", &label, n, sigma);
            }
            if let Some(n) = p.last_seen {
                row(&format!("events_{table}"), "last_seen", &label, n, sigma);
            }
            if let Some(n) = p.updated {
                row(&format!("events_{table}"), "updated", &label, n, sigma);
            }
        }
    }
    out
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The manifest of a release's open-data files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub product: String,
    pub date: NaiveDate,
    pub files: Vec<ManifestFile>,
    pub mechanism: String,
    pub parameters: Parameters,
    pub sensitivity: Sensitivity,
    pub license: String,
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestFile {
    pub path: String,
    pub media_type: String,
    pub sha256: String,
    pub bytes: usize,
}

/// The manifest of `stored`: the CSV's and the JSON's SHA-256 and the
/// privacy parameters.
pub fn manifest(stored: &Stored, release: &Release) -> Manifest {
    let csv = csv(release);
    let base = format!("/api/v1/public/releases/{}", stored.date);
    Manifest {
        product: release.product.clone(),
        date: stored.date,
        files: vec![
            ManifestFile {
                path: format!("{base}/release.csv"),
                media_type: "text/csv".to_owned(),
                sha256: sha256_hex(csv.as_bytes()),
                bytes: csv.len(),
            },
            ManifestFile {
                path: base,
                media_type: "application/json".to_owned(),
                sha256: stored.sha256.clone(),
                bytes: stored.body.len(),
            },
        ],
        mechanism: release.mechanism.clone(),
        parameters: release.parameters.clone(),
        sensitivity: release.sensitivity.clone(),
        license: "CC0-1.0".to_owned(),
    }
}

/// One release in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    pub date: NaiveDate,
    pub windows: Vec<u32>,
    pub mechanism: String,
    pub parameters: serde_json::Value,
    pub sensitivity: Sensitivity,
    /// rho this release spent.
    pub rho: f64,
    pub sha256: String,
    /// rho spent by the releases of the 365 days ending on this one's date.
    pub spent_last_365_days: f64,
    /// The budget minus that.
    pub budget_left: f64,
}

/// Every release and what it spent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    pub definition: String,
    /// rho per 365 days.
    pub budget: f64,
    pub period_days: i64,
    /// Day of the latest release (the ledger changes only with a release).
    pub as_of: Option<NaiveDate>,
    /// rho spent by the releases of the 365 days ending on `as_of`.
    pub spent_last_365_days: f64,
    pub budget_left: f64,
    pub releases: Vec<LedgerEntry>,
}

/// The bound a stored release states (releases of another format bounded
/// other figures), or the current one for a body that states none.
fn stated_sensitivity(s: &Stored) -> Sensitivity {
    serde_json::from_str::<serde_json::Value>(&s.body)
        .ok()
        .and_then(|body| serde_json::from_value(body.get("sensitivity")?.clone()).ok())
        .unwrap_or_else(Sensitivity::current)
}

/// The ledger of stored releases (in date order) under `budget`.
pub fn ledger(stored: &[Stored], budget: f64) -> Ledger {
    let spending: Vec<(NaiveDate, f64)> = stored.iter().map(|s| (s.date, s.rho)).collect();
    let entries: Vec<LedgerEntry> = stored
        .iter()
        .map(|s| {
            let spent = budget::spent(&spending, s.date);
            LedgerEntry {
                date: s.date,
                windows: WINDOWS.to_vec(),
                mechanism: s.mechanism.clone(),
                parameters: serde_json::from_str(&s.parameters).unwrap_or_default(),
                sensitivity: stated_sensitivity(s),
                rho: s.rho,
                sha256: s.sha256.clone(),
                spent_last_365_days: spent,
                budget_left: (budget - spent).max(0.0),
            }
        })
        .collect();
    let as_of = stored.iter().map(|s| s.date).max();
    let spent = as_of.map_or(0.0, |d| budget::spent(&spending, d));
    Ledger {
        definition: "zCDP".to_owned(),
        budget,
        period_days: budget::PERIOD_DAYS,
        as_of,
        spent_last_365_days: spent,
        budget_left: (budget - spent).max(0.0),
        releases: entries,
    }
}

/// What the unit tests of releases and of their publication share.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The day `s` (`YYYY-MM-DD`).
    pub fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// The release plan of the built-in catalog with a yearly `budget`.
    pub fn plan(budget: f64) -> Plan {
        let settings = Settings {
            budget,
            ..Settings::default()
        };
        super::plan(&Catalog::builtin(), &settings).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{day, plan};
    use super::*;
    use rand_dp::rngs::StdRng;
    use rand_dp::SeedableRng;

    fn inputs(date: NaiveDate) -> Inputs {
        let mut i = Inputs {
            active: [4_000, 7_000, 10_000],
            ..Inputs::default()
        };
        i.versions = [("4.9.0", 6_000), ("4.8.0", 3_990), ("1.0.0", 10)]
            .into_iter()
            .map(|(v, n)| (v.to_owned(), n))
            .collect();
        i.attributes.insert(
            "db_engine".into(),
            [("mariadb", 7_000), ("postgresql", 3_000)]
                .into_iter()
                .map(|(v, n)| (v.to_owned(), n))
                .collect(),
        );
        i.features.insert("mfa".into(), (2_500, 7_500));
        i.counters
            .insert("users".into(), [(10, 9_000), (500, 1_000)].into());
        i.first_seen.insert(date - Duration::days(3), 300);
        i.last_seen.insert(date, 10_000);
        i.upgrades = [
            (("4.8.0", "4.9.0"), 5_000),
            (("4.9.0", "4.9.1"), 900),
            (("1.0.0", "4.9.0"), 10),
        ]
        .into_iter()
        .map(|((f, t), n)| ((f.to_owned(), t.to_owned()), n))
        .collect();
        // Most installs updated in the last weeks; a few long ago.
        for d in 0..28 {
            i.updated.insert(date - Duration::days(d), 200);
        }
        i.updated.insert(date - Duration::days(200), 15);
        i.last_seen.insert(date - Duration::days(200), 1_000);
        i
    }

    #[test]
    fn the_builtin_plan_has_twenty_three_histograms() {
        let p = plan(DEFAULT_BUDGET);
        assert_eq!(p.split.histograms, 23);
        // sigma = sqrt(23 * 53 / (2 * 0.5)) = sqrt(1219)
        assert!((p.split.sigma.value() - 1219f64.sqrt()).abs() <= 1e-6);
        assert_eq!(p.threshold, 175);
    }

    #[test]
    fn upgrades_and_updates_are_noisy_but_close_and_small_cells_are_hidden() {
        let date = day("2026-12-01");
        let p = plan(DEFAULT_BUDGET);
        let sigma = p.split.sigma.value();
        let close = |noisy: i64, truth: i64| (noisy - truth).abs() as f64 <= 6.0 * sigma;
        for seed in 0..20 {
            let mut mech = Mechanism::with_rng(StdRng::seed_from_u64(seed));
            let r = build(&inputs(date), &p, date, &mut mech);
            let paths: BTreeMap<_, _> = r
                .upgrades
                .iter()
                .map(|u| ((u.from_version.as_str(), u.to_version.as_str()), u.installs))
                .collect();
            assert!(close(paths[&("4.8.0", "4.9.0")], 5_000), "{paths:?}");
            assert!(close(paths[&("4.9.0", "4.9.1")], 900), "{paths:?}");
            // Ten installs are far below the threshold of 5 sigma.
            assert_eq!(paths.len(), 2, "{paths:?}");
            assert!(r.upgrades[0].installs >= r.upgrades[1].installs);

            // The three whole weeks before the release day's hold 1,400
            // updates each, November (27 days of them) 5,400.
            let week = |d: NaiveDate| {
                r.events
                    .weekly
                    .iter()
                    .find(|w| w.period == Interval::Week.period_start(d))
            };
            for back in [7, 14, 21] {
                let w = week(date - Duration::days(back)).expect("a shown week");
                assert!(close(w.updated.unwrap(), 1_400), "{w:?}");
            }
            let old = week(date - Duration::days(200)).expect("1,000 installs were last seen then");
            assert_eq!(old.updated, None, "15 updates are hidden");
            let november = r
                .events
                .monthly
                .iter()
                .find(|m| m.period == day("2026-11-01"))
                .unwrap();
            assert!(close(november.updated.unwrap(), 5_400), "{november:?}");
            let updated: Vec<i64> = r.events.weekly.iter().filter_map(|w| w.updated).collect();
            assert!(updated.iter().all(|n| *n >= p.threshold), "{updated:?}");
            assert!(updated.iter().any(|n| *n != 1_400), "noise was added");

            let text = csv(&r);
            let row = format!("upgrades,4.8.0,4.9.0,{},", paths[&("4.8.0", "4.9.0")]);
            assert!(text.contains(&row), "{text}");
            assert!(!text.contains("upgrades,1.0.0,"), "{text}");
            assert!(
                text.contains("events_monthly,updated,2026-11-01,"),
                "{text}"
            );
        }
    }

    #[test]
    fn releases_of_format_1_still_parse_and_keep_their_csv() {
        let date = day("2026-12-01");
        let p = plan(DEFAULT_BUDGET);
        let r = build(
            &inputs(date),
            &p,
            date,
            &mut Mechanism::with_rng(StdRng::seed_from_u64(3)),
        );
        let mut old = serde_json::to_value(&r).unwrap();
        old["format"] = 1.into();
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
        let parsed: Release = serde_json::from_value(old).unwrap();
        assert!(parsed.upgrades.is_empty());
        assert!(parsed.events.weekly.iter().all(|w| w.updated.is_none()));
        let text = csv(&parsed);
        assert!(!text.contains("upgrades") && !text.contains(",updated,"));
        assert!(text.contains("versions,,4.9.0,"), "{text}");
    }

    #[test]
    fn figures_are_noisy_but_close_and_none_is_below_the_threshold() {
        let date = day("2026-12-01");
        let p = plan(DEFAULT_BUDGET);
        let sigma = p.split.sigma.value();
        let mut mech = Mechanism::with_rng(StdRng::seed_from_u64(1));
        let r = build(&inputs(date), &p, date, &mut mech);
        let close = |noisy: i64, truth: i64| (noisy - truth).abs() as f64 <= 6.0 * sigma;
        assert!(close(r.active_installs[2].installs.unwrap(), 10_000));
        let v: BTreeMap<_, _> = r.versions.iter().map(|v| (v.version.as_str(), v)).collect();
        assert!(close(v["4.9.0"].installs, 6_000));
        assert!((v["4.9.0"].share.unwrap() - 0.6).abs() < 0.01);
        // Ten installs are far below the threshold of 5 sigma.
        assert!(!v.contains_key("1.0.0"));
        let noisy: Vec<i64> = r.versions.iter().map(|v| v.installs).collect();
        assert!(
            noisy.iter().any(|n| ![6_000, 3_990].contains(n)),
            "noise was added"
        );
        let db = r
            .attributes
            .iter()
            .find(|a| a.attribute == "db_engine")
            .unwrap();
        assert!(db.values.iter().all(|v| v.installs >= p.threshold));
        assert!(close(db.values[0].installs, 7_000));
        let mfa = r.features.iter().find(|f| f.feature == "mfa").unwrap();
        assert!(close(mfa.enabled.unwrap(), 2_500));
        let users = r.counters.iter().find(|c| c.counter == "users").unwrap();
        assert_eq!(users.histogram[0].bucket, "6-25");
        assert!(close(users.histogram[0].installs, 9_000));
        assert_eq!(users.histogram[1].bucket, "500-1999");
        for c in csv(&r).lines().skip(1) {
            let count: i64 = c.split(',').nth(3).unwrap().parse().unwrap();
            assert!(count >= p.threshold, "{c}");
        }
        // The same seed gives the same release.
        let again = build(
            &inputs(date),
            &p,
            date,
            &mut Mechanism::with_rng(StdRng::seed_from_u64(1)),
        );
        assert_eq!(r, again);
    }

    #[test]
    fn the_ledger_sums_what_its_releases_spent() {
        let stored = |d: &str, rho: f64| Stored {
            date: day(d),
            body: String::new(),
            sha256: String::new(),
            mechanism: MECHANISM.into(),
            parameters: "{}".into(),
            rho,
        };
        let l = ledger(
            &[
                stored("2025-11-01", 0.25),
                stored("2026-06-01", 0.125),
                stored("2026-12-01", 0.0625),
            ],
            0.5,
        );
        assert_eq!(l.as_of, Some(day("2026-12-01")));
        assert_eq!(l.spent_last_365_days, 0.1875);
        assert_eq!(l.budget_left, 0.3125);
        assert_eq!(l.releases[1].spent_last_365_days, 0.375);
        assert_eq!(l.releases[1].budget_left, 0.125);
    }
}
