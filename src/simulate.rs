//! `anonstats simulate`: realistic demo data, through the real write path.
//!
//! It plans a population of installs over a number of days (releases on a
//! cadence, an installed base that grows, updates that follow releases with
//! a lag, heavy-tailed sizes, a mix of editions, PHP versions and database
//! engines, some installs without an instance id), then either:
//!
//! - writes it into a database (`--database`), each report on its simulated
//!   day, the last day being today: the same validation, anonymisation and
//!   batch writer as the collector's, so the dashboard shows a real history.
//!   Only something that already holds the database can date a report, and
//!   only a database with no real reports is accepted; the database is then
//!   marked as holding synthetic data, which the dashboard says;
//! - or posts every report to a running collector's HTTP API, exactly as
//!   real installs would. The collector stamps each report with the day it
//!   receives it and never trusts a day given by a client, so all reports
//!   land today, in simulated order for each install.
//!
//! The same seed plans the same reports, ids included, so running it twice
//! stores nothing new.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Days, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::anonymize;
use crate::catalog::{Catalog, Product};
use crate::client::{Client, Delivery, Draft, Options, SendError};
use crate::clock::Clock;
use crate::store::{self, Outcome};
use crate::{db, secret, validation};

/// Default number of simulated installs.
pub const DEFAULT_INSTANCES: usize = 4000;
/// Default days of simulated history.
pub const DEFAULT_DAYS: u32 = 365;

/// Default `--collector`.
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:8080";
/// Default `--concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What `anonstats simulate` is asked to do.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Installs to simulate.
    pub instances: usize,
    /// Days of history to simulate, ending today.
    pub days: u32,
    /// Seed of the random generator; the same seed plans the same reports
    /// [default: a random seed, printed].
    pub seed: Option<u64>,
    /// Write the reports straight into this database (SQLite file or
    /// postgres:// URL), each on its simulated day, instead of posting them
    /// to a collector. The database must hold no real reports.
    pub database: Option<String>,
    /// Catalog file of the collector, with --database [default: the
    /// built-in catalog].
    pub catalog: Option<PathBuf>,
    /// Collector base URL, without --database.
    pub collector: String,
    /// Reports in flight at once, without --database.
    pub concurrency: usize,
    /// Product to simulate [default: the catalog's first product].
    pub product: Option<String>,
    /// Pins "today" for tests of the binary, as `serve --today`.
    pub today: Option<NaiveDate>,
}

/// One report of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Simulated day, 0-based.
    pub day: u32,
    /// Index of the install that sends it.
    pub install: usize,
    /// The request body.
    pub body: Vec<u8>,
}

/// A whole simulated population.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every report, in simulated order.
    pub reports: Vec<Planned>,
    /// Installs that send at least one report, with an instance id.
    pub with_instance_id: usize,
    /// Releases published during the simulated days.
    pub releases: usize,
    /// Days the plan covers (simulated days 0 to `days - 1`).
    pub days: u32,
}

/// What the run did.
#[derive(Debug, Default)]
struct Tally {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    errors: AtomicU64,
    messages: Mutex<BTreeMap<String, u64>>,
}

/// Share of the simulated installs that existed before the first day.
const PREDATING_SHARE: f64 = 0.35;
/// How long before the first day those installs appeared, at most (the
/// first simulated release is this old).
const PREHISTORY_DAYS: i64 = 180;

/// Reports written per transaction with --database.
const DATABASE_BATCH: usize = 1000;

/// Runs `anonstats simulate`.
pub fn run(args: SimulateOptions) -> anyhow::Result<()> {
    anyhow::ensure!(args.days > 0, "--days must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let seed = args.seed.unwrap_or_else(rand::random);
    match &args.database {
        Some(url) => into_database(&args, url, seed),
        None => over_http(&args, seed),
    }
}

/// A progress bar on stderr (drawn only on a terminal), shown at once.
fn progress_bar(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} reports  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Says why the run stands still (rate-limited, overloaded, collector
/// down): on the bar when there is one, else as a line on stderr, at most
/// one a second so that many waiting lanes do not flood a log.
#[derive(Clone)]
struct Waiting {
    bar: indicatif::ProgressBar,
    last_line: Arc<Mutex<Option<Instant>>>,
}

impl Waiting {
    fn new(bar: indicatif::ProgressBar) -> Waiting {
        Waiting {
            bar,
            last_line: Arc::new(Mutex::new(None)),
        }
    }

    fn explain(&self, notice: &str) {
        if !self.bar.is_hidden() {
            self.bar.set_message(format!("waiting: {notice}"));
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*last, Some(t) if t.elapsed() < Duration::from_secs(1)) {
            *last = Some(Instant::now());
            eprintln!("anonstats: waiting: {notice}");
        }
    }
}

fn product_of<'a>(args: &'a SimulateOptions, catalog: &'a Catalog) -> anyhow::Result<&'a str> {
    match &args.product {
        Some(p) => Ok(p),
        None => catalog
            .default_product()
            .context("the catalog has no product"),
    }
}

/// Plans the population and writes it into the database at `url`.
fn into_database(args: &SimulateOptions, url: &str, seed: u64) -> anyhow::Result<()> {
    let bar = progress_bar("opening the database");
    let catalog = match &args.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::builtin(),
    };
    let product = product_of(args, &catalog)?.to_owned();
    let today = Clock::pinned(args.today).today();
    // The collector created the database; a missing file is a wrong path.
    crate::db::check(url, crate::db::Need::Existing)?;
    let pool = db::prepare_database(url, 1)?;
    let secret = std::env::var("ANONSTATS_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let pseudonymizer = secret::load_pseudonymizer(secret.as_deref(), &pool, url)?;
    let mut conn = pool.get().context("cannot connect to database")?;
    let marked = store::get_setting(&mut conn, store::SYNTHETIC_SETTING)?;
    anyhow::ensure!(
        marked.is_some() || !store::has_reports(&mut conn)?,
        "{} already holds real reports; simulate writes only into an empty database or one it wrote before (start a collector on a new file for the demo)",
        crate::db::redact_url(url)
    );
    store::get_or_insert_setting(&mut conn, store::SYNTHETIC_SETTING, &today.to_string())?;

    let plan = plan(&catalog, &product, args.instances, args.days, seed)?;
    let first_day = today - Days::new(u64::from(args.days) - 1);
    bar.suspend(|| {
        eprintln!(
            "anonstats: writing {} synthetic reports of {} installs of {product} (seed {seed}, {} releases) into {}, dated {first_day} to {today}",
            plan.reports.len(),
            args.instances,
            plan.releases,
            crate::db::redact_url(url)
        )
    });
    bar.set_length(plan.reports.len() as u64);
    bar.set_message("");
    let started = Instant::now();
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for chunk in plan.reports.chunks(DATABASE_BATCH) {
        let records = chunk
            .iter()
            .map(|r| {
                let report = validation::parse_v1(&r.body, &catalog)
                    .map_err(|e| anyhow::anyhow!("a planned report is invalid: {e:?}"))?;
                let day = first_day + Days::new(u64::from(r.day));
                Ok(anonymize::anonymize(report, &pseudonymizer, day))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The history is written at once: a key of its first day must still
        // count on its last, so that the same seed run again stores nothing
        // new.
        let window = store::DedupeWindow { days: args.days };
        let outcomes = store::write_batch_and_forget(&mut conn, &records, &[], window)
            .with_context(|| format!("cannot write to {}", crate::db::redact_url(url)))?;
        for o in outcomes {
            match o {
                Outcome::Accepted => accepted += 1,
                Outcome::Duplicate => duplicates += 1,
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    print_summary(args, &plan, accepted, duplicates, 0, started);
    Ok(())
}

/// Plans the population and posts it to the collector.
fn over_http(args: &SimulateOptions, seed: u64) -> anyhow::Result<()> {
    let bar = progress_bar(&format!("fetching the catalog from {}", args.collector));
    let waiting = Waiting::new(bar.clone());
    let client = Client::new(
        &args.collector,
        Options {
            // A rate-limited or restarting collector is waited for (and the
            // wait explained), not given up on after a few seconds.
            retries: 10,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
            on_retry: Some(Arc::new(move |notice: &str| waiting.explain(notice))),
            ..Options::default()
        },
    );
    let catalog = client
        .fetch_catalog()
        .with_context(|| format!("cannot fetch the catalog from {}", args.collector))?;
    let product = product_of(args, &catalog)?.to_owned();
    let plan = plan(&catalog, &product, args.instances, args.days, seed)?;
    bar.suspend(|| {
        eprintln!(
            "anonstats: simulating {} installs of {product} over {} days (seed {seed}): {} releases, {} reports; all of them land today, since the collector dates each report by the day it receives it (use --database for a history)",
            args.instances,
            args.days,
            plan.releases,
            plan.reports.len()
        )
    });
    bar.set_length(plan.reports.len() as u64);
    bar.set_message("");

    // Each install's reports go through one lane, in order, so that its
    // final state is its last simulated report.
    let lanes = args.concurrency.min(plan.reports.len().max(1));
    let mut queues: Vec<Vec<&Planned>> = vec![Vec::new(); lanes];
    for r in &plan.reports {
        queues[r.install % lanes].push(r);
    }
    let tally = Tally::default();
    let started = Instant::now();
    std::thread::scope(|s| {
        for queue in &queues {
            let (client, tally, bar) = (&client, &tally, &bar);
            s.spawn(move || {
                for r in queue {
                    match client.send_report(&r.body) {
                        Ok(Delivery::Accepted { .. }) => {
                            tally.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Delivery::Duplicate) => {
                            tally.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                            let key = match &e {
                                SendError::Unavailable { last, .. } => last.clone(),
                                other => other.to_string(),
                            };
                            *tally
                                .messages
                                .lock()
                                .expect("not poisoned")
                                .entry(key)
                                .or_default() += 1;
                        }
                    }
                    bar.set_message("");
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let errors = tally.errors.load(Ordering::Relaxed);
    print_summary(
        args,
        &plan,
        tally.accepted.load(Ordering::Relaxed),
        tally.duplicates.load(Ordering::Relaxed),
        errors,
        started,
    );
    let messages = tally.messages.lock().expect("not poisoned");
    for (message, n) in messages.iter().take(5) {
        eprintln!("anonstats: {n} × {message}");
    }
    if messages.keys().any(|m| m.contains("429")) {
        eprintln!(
            "anonstats: the collector's per-source rate limit refused reports; for a demo, write its history straight into the database instead: anonstats simulate --database FILE"
        );
    }
    anyhow::ensure!(errors == 0, "{errors} report(s) were not stored");
    Ok(())
}

fn print_summary(
    args: &SimulateOptions,
    plan: &Plan,
    accepted: u64,
    duplicates: u64,
    errors: u64,
    started: Instant,
) {
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let sent = plan.reports.len() as u64;
    println!("installs    {}", args.instances);
    println!("with_id     {}", plan.with_instance_id);
    println!("sent        {sent}");
    println!("accepted    {accepted}");
    println!("duplicates  {duplicates}");
    println!("errors      {errors}");
    println!("rate        {:.1} reports/s", sent as f64 / elapsed);
}

/// A release of the simulated product.
#[derive(Debug, Clone)]
struct Release {
    /// Simulated day it came out (negative: before the window).
    day: i64,
    version: String,
}

/// How quickly an install follows releases.
#[derive(Debug, Clone, Copy)]
struct Habit {
    /// Chance of taking a given release at all.
    follows: f64,
    /// Mean days between a release and the update.
    lag: f64,
}

/// Plans every report of a simulated population. Pure: the same inputs give
/// the same plan, ids included.
pub fn plan(
    catalog: &Catalog,
    product_name: &str,
    installs: usize,
    days: u32,
    seed: u64,
) -> anyhow::Result<Plan> {
    let product = catalog
        .product(product_name)
        .with_context(|| format!("product {product_name} is not in the collector's catalog"))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let releases = releases(&mut rng, days);
    let days = i64::from(days);
    let mut reports = Vec::new();
    let mut with_instance_id = 0;
    for install in 0..installs {
        // Part of the installed base predates the simulated days, so that
        // updates come in from the first day; the rest grows, more installs
        // recently. Reports before day 0 shape an install's state but are
        // not sent.
        let install_day = if rng.random::<f64>() < PREDATING_SHARE {
            -rng.random_range(1..=PREHISTORY_DAYS)
        } else {
            ((days as f64) * rng.random::<f64>().sqrt()) as i64
        };
        let install_day = install_day.min(days - 1);
        let has_id = rng.random::<f64>() < 0.92;
        let planned_before = reports.len();
        let instance_id = has_id.then(|| uuid_from(&mut rng));
        let habit = match rng.random::<f64>() {
            x if x < 0.3 => Habit {
                follows: 0.9,
                lag: 3.0,
            },
            x if x < 0.8 => Habit {
                follows: 0.6,
                lag: 14.0,
            },
            _ => Habit {
                follows: 0.3,
                lag: 60.0,
            },
        };
        let mut state = initial_state(&mut rng, product);
        let mut current = latest_at(&releases, install_day);
        let first = Draft {
            product: Some(product_name.to_owned()),
            event: Some("install".into()),
            version: Some(releases[current].version.clone()),
            ..state.clone()
        };
        let report_id = uuid_from(&mut rng);
        plan_report(&mut reports, install_day, install, || {
            first.finish(catalog, report_id, instance_id).body()
        });
        let mut day = install_day;
        let mut next = current + 1;
        while next < releases.len() {
            let release_day = releases[next].day.max(day);
            let when = release_day + 1 + exp(&mut rng, habit.lag) as i64;
            if when >= days {
                break;
            }
            if rng.random::<f64>() >= habit.follows {
                next += 1;
                continue;
            }
            // Late updaters jump straight to what is newest by then.
            let target = latest_at(&releases, when);
            grow(&mut rng, &mut state, product);
            let update = Draft {
                product: Some(product_name.to_owned()),
                event: Some("update".into()),
                version: Some(releases[target].version.clone()),
                previous_version: Some(releases[current].version.clone()),
                ..state.clone()
            };
            let report_id = uuid_from(&mut rng);
            plan_report(&mut reports, when, install, || {
                update.finish(catalog, report_id, instance_id).body()
            });
            current = target;
            day = when;
            next = target + 1;
        }
        with_instance_id += usize::from(has_id && reports.len() > planned_before);
    }
    // Stable: an install's reports keep their order within a day.
    reports.sort_by_key(|r| r.day);
    Ok(Plan {
        reports,
        with_instance_id,
        releases: releases.iter().filter(|r| r.day >= 0).count(),
        days: days as u32,
    })
}

/// Adds a report on simulated `day`, unless that day is before the first:
/// such reports only shape an install's state.
fn plan_report(
    reports: &mut Vec<Planned>,
    day: i64,
    install: usize,
    body: impl FnOnce() -> Vec<u8>,
) {
    if let Ok(day) = u32::try_from(day) {
        reports.push(Planned {
            day,
            install,
            body: body(),
        });
    }
}

fn uuid_from(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// Releases every two to four weeks, a minor release every third one, from
/// half a year before the window to its end.
fn releases(rng: &mut StdRng, days: u32) -> Vec<Release> {
    let (mut major, mut minor, mut patch) = (4u32, 0u32, 0u32);
    let mut day = -PREHISTORY_DAYS;
    let mut out = Vec::new();
    let mut n = 0;
    while day < i64::from(days) {
        out.push(Release {
            day,
            version: format!("{major}.{minor}.{patch}"),
        });
        n += 1;
        if n % 24 == 0 {
            (major, minor, patch) = (major + 1, 0, 0);
        } else if n % 3 == 0 {
            (minor, patch) = (minor + 1, 0);
        } else {
            patch += 1;
        }
        day += rng.random_range(14..=28);
    }
    out
}

/// Index of the newest release out on `day`.
fn latest_at(releases: &[Release], day: i64) -> usize {
    releases.iter().rposition(|r| r.day <= day).unwrap_or(0)
}

/// Exponentially distributed, with the given mean.
fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// Log-normally distributed: heavy-tailed sizes, `median` in the middle.
fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * normal).exp()
}

/// Picks a value by weight among those the catalog lists; uniformly when
/// none of the weighted values is listed.
fn pick(rng: &mut StdRng, listed: &[String], weights: &[(&str, f64)]) -> String {
    let usable: Vec<(&str, f64)> = weights
        .iter()
        .copied()
        .filter(|(v, _)| listed.iter().any(|l| l == v))
        .collect();
    if usable.is_empty() {
        return listed[rng.random_range(0..listed.len())].clone();
    }
    let total: f64 = usable.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (v, w) in &usable {
        if x < *w {
            return (*v).to_owned();
        }
        x -= w;
    }
    usable[usable.len() - 1].0.to_owned()
}

fn weights(attribute: &str) -> &'static [(&'static str, f64)] {
    match attribute {
        "edition" => &[("ce", 0.72), ("pro", 0.23), ("cloud", 0.05)],
        "php_version" => &[
            ("7.4", 0.06),
            ("8.0", 0.08),
            ("8.1", 0.2),
            ("8.2", 0.36),
            ("8.3", 0.22),
            ("8.4", 0.08),
        ],
        "db_engine" => &[("mariadb", 0.5), ("mysql", 0.35), ("postgresql", 0.15)],
        "os_family" => &[
            ("debian", 0.38),
            ("ubuntu", 0.3),
            ("rocky", 0.07),
            ("almalinux", 0.06),
            ("rhel", 0.06),
            ("centos", 0.04),
            ("opensuse", 0.03),
            ("fedora", 0.02),
            ("alpine", 0.02),
            ("oraclelinux", 0.01),
            ("freebsd", 0.01),
        ],
        "install_method" => &[
            ("package", 0.45),
            ("docker", 0.38),
            ("helm", 0.06),
            ("source", 0.04),
            ("virtual_appliance", 0.04),
            ("marketplace", 0.03),
        ],
        _ => &[],
    }
}

/// An install's attributes, sizes and features when it is installed.
fn initial_state(rng: &mut StdRng, product: &Product) -> Draft {
    let mut d = Draft::default();
    for (name, def) in &product.attributes {
        d.attributes
            .insert(name.clone(), pick(rng, &def.values, weights(name)));
    }
    let users = lognormal(rng, 15.0, 1.4).max(1.0);
    for (name, def) in &product.counters {
        let n = match name.as_str() {
            "users" => users,
            "groups" => users / lognormal(rng, 8.0, 0.6),
            "resources" => users * lognormal(rng, 30.0, 0.9),
            "folders" => users * lognormal(rng, 2.0, 1.0),
            _ => lognormal(rng, 10.0, 1.5),
        };
        d.counters
            .insert(name.clone(), (n.round() as i64).clamp(0, def.max));
    }
    let paid = d
        .attributes
        .get("edition")
        .is_some_and(|e| e == "pro" || e == "cloud");
    for name in product.features.keys() {
        let p = match (name.as_str(), paid) {
            ("mfa", true) => 0.65,
            ("mfa", false) => 0.3,
            ("ldap", true) => 0.45,
            ("ldap", false) => 0.0,
            ("sso", true) => 0.35,
            ("sso", false) => 0.0,
            _ => 0.3,
        };
        d.features.insert(name.clone(), rng.random::<f64>() < p);
    }
    d
}

/// Between two reports an install grows a little, sometimes moves to a
/// newer PHP, and sometimes switches a feature on.
fn grow(rng: &mut StdRng, d: &mut Draft, product: &Product) {
    for (name, n) in d.counters.iter_mut() {
        let max = product.counters.get(name).map_or(i64::MAX, |c| c.max);
        let factor = 1.0 + exp(rng, 0.08);
        *n = ((*n as f64 * factor).round() as i64).clamp(0, max);
    }
    if let (Some(current), Some(def)) = (
        d.attributes.get("php_version").cloned(),
        product.attributes.get("php_version"),
    ) {
        if rng.random::<f64>() < 0.15 {
            if let Some(i) = def.values.iter().position(|v| *v == current) {
                if let Some(newer) = def.values.get(i + 1) {
                    d.attributes.insert("php_version".into(), newer.clone());
                }
            }
        }
    }
    for on in d.features.values_mut() {
        if !*on && rng.random::<f64>() < 0.05 {
            *on = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan_and_every_report_is_valid() {
        let catalog = Catalog::builtin();
        let a = plan(&catalog, "passbolt", 200, 365, 42).unwrap();
        let b = plan(&catalog, "passbolt", 200, 365, 42).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, plan(&catalog, "passbolt", 200, 365, 43).unwrap());
        assert!(a.reports.len() > 200, "installs and some updates");
        assert!(a.with_instance_id > 150 && a.with_instance_id < 200);
        for r in &a.reports {
            let report = crate::validation::parse_v1(&r.body, &catalog).expect("valid report");
            assert!(report.ignored.is_empty());
        }
    }

    #[test]
    fn updates_follow_releases_in_order() {
        let catalog = Catalog::builtin();
        let p = plan(&catalog, "passbolt", 100, 200, 7).unwrap();
        let mut last: BTreeMap<usize, semver::Version> = BTreeMap::new();
        let mut updates = 0;
        for r in &p.reports {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let version = semver::Version::parse(v["version"].as_str().unwrap()).unwrap();
            if v["event"] == "update" {
                updates += 1;
                let prev = semver::Version::parse(v["previous_version"].as_str().unwrap()).unwrap();
                // The first update of an install older than the plan has
                // no earlier report in it.
                if let Some(last) = last.get(&r.install) {
                    assert_eq!(last, &prev);
                }
                assert!(version > prev);
            }
            last.insert(r.install, version);
        }
        assert!(updates > 0);
    }
}
