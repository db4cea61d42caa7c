//! `anonstats simulate`: realistic demo data, sent through the real path.
//!
//! It plans a population of installs over a number of days (releases on a
//! cadence, installs spread over time and growing, updates that follow
//! releases with a lag, heavy-tailed sizes, a mix of editions, PHP versions
//! and database engines, some installs without an instance id) and posts
//! every report to a running collector's HTTP API, exactly as real installs
//! would.
//!
//! The collector stamps each report with the day it receives it and never
//! trusts a day given by a client, so the simulated days are compressed: all
//! reports land today, in simulated order for each install, and the final
//! state of every install (version, sizes, features) is the one the
//! simulation reached. The same seed plans the same reports, ids included,
//! so running it twice against one collector stores nothing new.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::catalog::{Catalog, Product};
use crate::client::{Client, Delivery, Draft, Options, SendError};

/// Flags of `anonstats simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Installs to simulate.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub instances: usize,
    /// Days of history to simulate (compressed: every report lands today).
    #[arg(long, default_value_t = 365, value_name = "D")]
    pub days: u32,
    /// Seed of the random generator; the same seed plans the same reports
    /// [default: a random seed, printed].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Collector base URL.
    #[arg(
        long,
        env = "ANONSTATS_COLLECTOR",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub collector: String,
    /// Reports in flight at once.
    #[arg(long, default_value_t = 8, value_name = "C")]
    pub concurrency: usize,
    /// Product to simulate [default: the collector's first product].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
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
    /// Installs that report an instance id.
    pub with_instance_id: usize,
    /// Releases published during the simulated days.
    pub releases: usize,
}

/// What the run did.
#[derive(Debug, Default)]
struct Tally {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    errors: AtomicU64,
    messages: Mutex<BTreeMap<String, u64>>,
}

/// Runs `anonstats simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.days > 0, "--days must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let seed = args.seed.unwrap_or_else(rand::random);
    let client = Client::new(
        &args.collector,
        Options {
            retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            ..Options::default()
        },
    );
    let catalog = client
        .fetch_catalog()
        .with_context(|| format!("cannot fetch the catalog from {}", args.collector))?;
    let product = match &args.product {
        Some(p) => p.clone(),
        None => catalog
            .default_product()
            .context("the catalog has no product")?
            .to_owned(),
    };
    let plan = plan(&catalog, &product, args.instances, args.days, seed)?;
    eprintln!(
        "anonstats: simulating {} installs of {product} over {} days (seed {seed}): {} releases, {} reports; all of them land today, since the collector dates each report by the day it receives it",
        args.instances,
        args.days,
        plan.releases,
        plan.reports.len()
    );

    // Each install's reports go through one lane, in order, so that its
    // final state is its last simulated report.
    let lanes = args.concurrency.min(plan.reports.len().max(1));
    let mut queues: Vec<Vec<&Planned>> = vec![Vec::new(); lanes];
    for r in &plan.reports {
        queues[r.install % lanes].push(r);
    }
    let bar = indicatif::ProgressBar::new(plan.reports.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} reports  {per_sec}  eta {eta}",
        )
        .expect("valid template"),
    );
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
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let sent = plan.reports.len() as u64;
    let errors = tally.errors.load(Ordering::Relaxed);
    println!("installs    {}", args.instances);
    println!("with_id     {}", plan.with_instance_id);
    println!("sent        {sent}");
    println!("accepted    {}", tally.accepted.load(Ordering::Relaxed));
    println!("duplicates  {}", tally.duplicates.load(Ordering::Relaxed));
    println!("errors      {errors}");
    println!("rate        {:.1} reports/s", sent as f64 / elapsed);
    for (message, n) in tally.messages.lock().expect("not poisoned").iter().take(5) {
        eprintln!("anonstats: {n} × {message}");
    }
    anyhow::ensure!(errors == 0, "{errors} report(s) were not stored");
    Ok(())
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
        // More installs recently: the population grows.
        let install_day = ((days as f64) * rng.random::<f64>().sqrt()) as i64;
        let install_day = install_day.min(days - 1);
        let has_id = rng.random::<f64>() < 0.92;
        with_instance_id += usize::from(has_id);
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
        reports.push(Planned {
            day: install_day as u32,
            install,
            body: first
                .finish(catalog, uuid_from(&mut rng), instance_id)
                .body(),
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
            reports.push(Planned {
                day: when as u32,
                install,
                body: update
                    .finish(catalog, uuid_from(&mut rng), instance_id)
                    .body(),
            });
            current = target;
            day = when;
            next = target + 1;
        }
    }
    // Stable: an install's reports keep their order within a day.
    reports.sort_by_key(|r| r.day);
    Ok(Plan {
        reports,
        with_instance_id,
        releases: releases.iter().filter(|r| r.day >= 0).count(),
    })
}

fn uuid_from(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// Releases every two to four weeks, a minor release every third one, from
/// half a year before the window to its end.
fn releases(rng: &mut StdRng, days: u32) -> Vec<Release> {
    let (mut major, mut minor, mut patch) = (4u32, 0u32, 0u32);
    let mut day = -180i64;
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
                assert_eq!(last.get(&r.install), Some(&prev));
                assert!(version > prev);
            }
            last.insert(r.install, version);
        }
        assert!(updates > 0);
    }
}
