//! `anonstats-bench`: the performance benchmark of the anonstats collector
//! (see docs/performance.md).
//!
//! One run measures, on this machine and in this order:
//! 1. a baseline: the collector built with a writer that discards
//!    (`startup::Sink::Discard`), the same server, routes, limits, handler
//!    and anonymisation without storage, the ceiling of any durable ingest;
//! 2. for SQLite, then PostgreSQL (when a server is given): the real
//!    collector on a fresh database, closed-loop for its maximum rate,
//!    open-loop at 50% and 80% of it for latency, then overloaded; then a
//!    second fresh database seeded with a large population and years of
//!    history ([`seed`]), its ingest rate again, every stats endpoint, the
//!    bytes on disk per instance, and intake next to floods of reads and
//!    erasures and slow connections ([`flood`]), against intake alone.
//!
//! Servers run as child processes: the collectors are `anonstats serve` of
//! the collector binary ([`process::collector`]), the baseline is this
//! binary's hidden `baseline` command ([`serve_baseline`]). The load
//! generator ([`load`], [`http`]) runs in this process on a single thread.

pub mod erasure;
pub mod flood;
pub mod generator;
pub mod http;
pub mod load;
pub mod process;
pub mod seed;
pub mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use diesel::prelude::*;
use serde_json::{json, Value};

use self::load::{LoadResult, LoadSpec};
use self::process::ServerProcess;
use self::table::{Status, Table, FLOODS, STATS_ENDPOINTS};
use anonstats::db;

/// Flags of `anonstats-bench run` (the default command). Defaults are the
/// full sizes of the performance goals; `--quick` shrinks every one that
/// was not given.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The collector binary to benchmark [default: `anonstats` in the
    /// directory of this binary, i.e. the same target directory].
    #[arg(long, env = "ANONSTATS_BENCH_COLLECTOR", value_name = "PATH")]
    pub collector: Option<PathBuf>,
    /// PostgreSQL server for the PostgreSQL phases, as an administrator URL
    /// (a database is created for the run and dropped after). Without it,
    /// the PostgreSQL phases are skipped.
    #[arg(long, env = "ANONSTATS_BENCH_POSTGRES_URL", value_name = "URL")]
    pub postgres: Option<String>,
    /// Also write the result table (and every phase's details) as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Short smoke run: 1 s phases and small sizes, for checking that the
    /// benchmark works, not for figures.
    #[arg(long)]
    pub quick: bool,
    /// Measured time of each load phase, e.g. `10s`, `500ms`
    /// [default: 10s; 1s with --quick].
    #[arg(long, value_parser = parse_duration, value_name = "TIME")]
    pub duration: Option<Duration>,
    /// Instances seeded before the second ingest measurement and the stats
    /// timings; that measurement's reports update them
    /// [default: 1000000; 2000 with --quick].
    #[arg(long, value_name = "N")]
    pub instances: Option<u64>,
    /// Instances the reports of the empty-database phases are drawn from:
    /// after the first seconds most reports update an instance already
    /// stored, as on a release day. The seeded phase draws from every
    /// seeded instance [default: 10000; 500 with --quick].
    #[arg(long, value_name = "N")]
    pub population: Option<u64>,
    /// Days of daily-event history seeded [default: 1095 (3 years); 60 with --quick].
    #[arg(long, value_name = "DAYS")]
    pub days: Option<i64>,
    /// Connection counts tried closed-loop; the best gives the maximum rate
    /// [default: 16,64,256,1024; 8 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "N,..")]
    pub connections: Vec<usize>,
    /// Overload rate as a multiple of the maximum.
    #[arg(long, default_value_t = 3.0, value_name = "X")]
    pub overload_factor: f64,
    /// Duration of the overload phase [default: 30s; 1s with --quick].
    #[arg(long, value_parser = parse_duration, value_name = "TIME")]
    pub overload_duration: Option<Duration>,
    /// Connections of the overload phase, one request in flight on each, as
    /// from that many clients. Only more requests in flight than the
    /// collector's queue and one batch (`--queue-capacity` 2048 and
    /// `--max-batch` 1024 by default) make it refuse; more than its
    /// `--max-connections` (4096 by default) would only wait in the listen
    /// backlog [default: 4096; 64 with --quick].
    #[arg(long, value_name = "N")]
    pub overload_connections: Option<usize>,
    /// Cold GET requests (each after one stored report), and again warm
    /// ones, per stats endpoint [default: 20; 3 with --quick].
    #[arg(long, value_name = "N")]
    pub stats_requests: Option<usize>,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub client_threads: usize,
    /// Keep SQLite files and server logs in DIR instead of a temporary
    /// directory removed at the end.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Flags of `anonstats-bench drive`: one load phase against a collector
/// that is already running (for profiling it, e.g. under
/// callgrind, with a fixed number of requests).
#[derive(Debug, Args)]
pub struct DriveArgs {
    /// Address of the collector.
    #[arg(long, value_name = "ADDR")]
    pub addr: SocketAddr,
    /// Requests per second (open loop: exactly rate x duration requests are
    /// due); without it, closed loop.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Duration of the phase.
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "TIME")]
    pub duration: Duration,
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub connections: usize,
    /// Instances the reports are drawn from.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub instances: u64,
}

/// Runs one load phase and prints its result as JSON.
pub fn drive(args: DriveArgs) -> anyhow::Result<()> {
    let spec = LoadSpec {
        addr: args.addr,
        connections: args.connections.max(1),
        rate: args.rate,
        duration: args.duration,
        warmup: Duration::ZERO,
        population: args.instances,
        history_days: 3 * 365,
        seed: 1,
        threads: 1,
    };
    let result = load::run(&spec)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s} (try 10s or 500ms)"))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err("a duration must be positive".to_owned());
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// The resolved sizes of one run.
#[derive(Debug, Clone, serde::Serialize)]
struct Settings {
    duration_s: f64,
    warmup_s: f64,
    instances: u64,
    population: u64,
    days: i64,
    connections: Vec<usize>,
    overload_factor: f64,
    overload_duration_s: f64,
    overload_connections: usize,
    stats_requests: usize,
    client_threads: usize,
    quick: bool,
}

impl Settings {
    fn from(args: &BenchArgs) -> anyhow::Result<Settings> {
        let q = args.quick;
        let duration = args.duration.unwrap_or(if q {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        });
        let connections = if args.connections.is_empty() {
            if q {
                vec![8]
            } else {
                vec![16, 64, 256, 1024]
            }
        } else {
            args.connections.clone()
        };
        anyhow::ensure!(
            connections.iter().all(|c| *c > 0),
            "--connections must be positive"
        );
        anyhow::ensure!(
            args.overload_factor > 0.0,
            "--overload-factor must be positive"
        );
        Ok(Settings {
            duration_s: duration.as_secs_f64(),
            warmup_s: (duration.as_secs_f64() / 4.0).min(2.0),
            instances: args.instances.unwrap_or(if q { 2000 } else { 1_000_000 }),
            population: args
                .population
                .unwrap_or(if q { 500 } else { 10_000 })
                .max(1),
            days: args.days.unwrap_or(if q { 60 } else { 3 * 365 }).max(1),
            connections,
            overload_factor: args.overload_factor,
            overload_duration_s: args
                .overload_duration
                .unwrap_or(Duration::from_secs(if q { 1 } else { 30 }))
                .as_secs_f64(),
            overload_connections: args
                .overload_connections
                .unwrap_or(if q { 64 } else { 4096 })
                .max(1),
            stats_requests: args.stats_requests.unwrap_or(if q { 3 } else { 20 }).max(1),
            client_threads: args.client_threads.max(1),
            quick: q,
        })
    }

    fn spec(&self, addr: SocketAddr, connections: usize, rate: Option<f64>, seed: u64) -> LoadSpec {
        LoadSpec {
            addr,
            connections,
            rate,
            duration: Duration::from_secs_f64(self.duration_s),
            warmup: Duration::from_secs_f64(self.warmup_s),
            population: self.population,
            history_days: self.days,
            seed,
            threads: self.client_threads,
        }
    }
}

/// Prints a progress line (stderr: stdout is for the table).
fn note(text: impl AsRef<str>) {
    eprintln!("bench: {}", text.as_ref());
}

/// Runs the benchmark; fails (after printing the table) when a phase could
/// not run.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let settings = Settings::from(&args)?;
    let collector = process::collector(args.collector.as_deref())?;
    let work = WorkDir::new(args.work_dir.clone())?;
    raise_open_files_limit(2 * settings.overload_connections + 256);
    let mut bench = Bench {
        settings,
        work: work.path().to_owned(),
        secret: anonstats::anonymize::generate_secret(),
        table: Table::new(),
        phases: serde_json::Map::new(),
        rate_limit_flag: process::serve_has_flag(&collector, "--rate-limit"),
        instance_limit_flag: process::serve_has_flag(&collector, "--instance-daily-limit"),
        client_ip_header_flag: process::serve_has_flag(&collector, "--client-ip-header"),
        collector,
        failed: Vec::new(),
        closed: Default::default(),
    };
    let baseline = match bench.baseline() {
        Ok(rate) => Some(rate),
        Err(e) => {
            note(format!("baseline failed: {e:#}"));
            bench.table.mark_errors("baseline");
            bench.failed.push("baseline".to_owned());
            None
        }
    };
    let sqlite_url = bench.work.join("{label}.db").to_string_lossy().into_owned();
    let targets: Vec<(&str, Option<String>)> = vec![
        ("sqlite", Some(sqlite_url)),
        ("postgres", args.postgres.clone().filter(|u| !u.is_empty())),
    ];
    for (backend, server) in targets {
        let Some(server) = server else {
            note(
                "PostgreSQL phases skipped: give --postgres URL or set ANONSTATS_BENCH_POSTGRES_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
            );
            continue;
        };
        if let Err(e) = bench.backend(backend, &server, baseline) {
            note(format!("{backend} phases failed: {e:#}"));
            bench.table.mark_errors(backend);
            bench.failed.push(backend.to_owned());
        }
    }
    let rendered = bench.table.render();
    println!("{rendered}");
    if let Some(path) = &args.json {
        let doc = json!({
            "anonstats_version": anonstats_version(&bench.collector),
            "date": chrono::Utc::now().to_rfc3339(),
            "commit": git_commit(),
            "machine": machine(),
            "settings": bench.settings,
            "rows": bench.table.rows(),
            "phases": bench.phases,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        note(format!("results written to {}", path.display()));
    }
    drop(work);
    anyhow::ensure!(
        bench.failed.is_empty(),
        "phases failed: {}",
        bench.failed.join(", ")
    );
    Ok(())
}

struct Bench {
    settings: Settings,
    /// The `anonstats` binary whose `serve` is measured.
    collector: PathBuf,
    work: PathBuf,
    secret: String,
    table: Table,
    phases: serde_json::Map<String, Value>,
    rate_limit_flag: bool,
    instance_limit_flag: bool,
    client_ip_header_flag: bool,
    /// Parts that failed without stopping the run.
    failed: Vec<String>,
    /// Closed-loop accepted rate per backend and connection count.
    closed: std::collections::BTreeMap<(String, usize), f64>,
}

/// The connection count at which durable ingest is also compared with the
/// baseline, whatever count gave either its maximum.
const RATIO_CONNECTIONS: usize = 256;

/// The maximum closed-loop rate and the connection count that reached it.
#[derive(Debug, Clone, Copy)]
struct Max {
    rps: f64,
    connections: usize,
}

impl Bench {
    fn record(&mut self, backend: &str, phase: &str, value: Value) {
        let entry = self
            .phases
            .entry(backend.to_owned())
            .or_insert_with(|| json!({}));
        entry[phase] = value;
    }

    fn load(&mut self, backend: &str, phase: &str, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
        let kind = match spec.rate {
            Some(r) => format!("open loop at {r:.0}/s"),
            None => "closed loop".to_owned(),
        };
        note(format!(
            "{backend}: {phase}: {kind}, {} connections, {:.1} s",
            spec.connections,
            spec.duration.as_secs_f64()
        ));
        let result = load::run(spec).with_context(|| format!("{backend} {phase}"))?;
        note(format!(
            "{backend}: {phase}: {:.0} accepted/s, p99 {}, {} refused (p99 {}, {} from send), \
             {} errors, {} sent late",
            result.accepted_rps,
            table::display(result.accepted.p99, table::Unit::Milliseconds),
            result.rejected.count,
            table::display(result.rejected.p99, table::Unit::Milliseconds),
            table::display(result.rejected_service.p99, table::Unit::Milliseconds),
            result.errors,
            result.late
        ));
        self.record(backend, phase, serde_json::to_value(&result)?);
        Ok(result)
    }

    /// Closed loop at each connection count; the best rate wins.
    fn find_max(&mut self, backend: &str, addr: SocketAddr) -> anyhow::Result<Max> {
        let mut best = Max {
            rps: 0.0,
            connections: self.settings.connections[0],
        };
        for c in self.settings.connections.clone() {
            let spec = self.settings.spec(addr, c, None, c as u64);
            let r = self.load(backend, &format!("closed_{c}"), &spec)?;
            self.closed.insert((backend.to_owned(), c), r.accepted_rps);
            if r.accepted_rps > best.rps {
                best = Max {
                    rps: r.accepted_rps,
                    connections: c,
                };
            }
        }
        anyhow::ensure!(best.rps > 0.0, "{backend}: no report was accepted");
        Ok(best)
    }

    /// Open loop at `share` of the maximum, with headroom in connections
    /// so that the generator does not queue requests itself while the
    /// server keeps up (`late` in the results says whether it did).
    fn open_loop(
        &mut self,
        backend: &str,
        addr: SocketAddr,
        max: Max,
        share: f64,
    ) -> anyhow::Result<LoadResult> {
        let label = format!("open{:.0}", share * 100.0);
        // With group commit the rate depends on how many requests are in
        // flight: twice what reached the maximum leaves headroom.
        let connections = (2 * max.connections).clamp(64, 4096);
        let spec = self.settings.spec(
            addr,
            connections,
            Some(share * max.rps),
            1000 + (share * 100.0) as u64,
        );
        self.load(backend, &label, &spec)
    }

    /// The collector's own server with a writer that discards, started
    /// with the flags and environment of the collector phases.
    fn baseline(&mut self) -> anyhow::Result<f64> {
        let exe = std::env::current_exe().context("cannot find the anonstats-bench binary")?;
        let pattern = self.work.join("{label}.db").to_string_lossy().into_owned();
        let db = FreshDb::create(&pattern, "baseline")?;
        let mut args = vec!["baseline"];
        args.extend(self.serve_flags());
        let server = ServerProcess::start(
            &exe,
            &args,
            &self.server_env(&db.url),
            &self.work.join("baseline.log"),
        )?;
        let max = self.find_max("baseline", server.addr)?;
        self.table.set("baseline.max_rps", Some(max.rps));
        for share in [0.5, 0.8] {
            let r = self.open_loop("baseline", server.addr, max, share)?;
            let id = format!("baseline.open{:.0}.p99_ms", share * 100.0);
            self.table.set(&id, r.accepted.p99);
        }
        server.stop()?;
        Ok(max.rps)
    }

    /// Flags of `anonstats serve` for every server of the run.
    fn serve_flags(&self) -> Vec<&'static str> {
        let mut args = vec!["--bind", "127.0.0.1:0"];
        if self.rate_limit_flag {
            args.extend(["--rate-limit", "0"]);
        }
        // The load reports come from a population of a few thousand
        // instances, each reporting many times a minute: the per-instance
        // daily limit (meant for real installs reporting a few times a
        // day) would refuse most of them after a few seconds.
        if self.instance_limit_flag {
            args.extend(["--instance-daily-limit", "0"]);
        }
        // The floods from many sources name their (made-up) client in
        // X-Forwarded-For; the reports name none, so they keep their own
        // source.
        if self.client_ip_header_flag {
            args.extend([
                "--trusted-proxy",
                "127.0.0.1",
                "--client-ip-header",
                "x-forwarded-for",
            ]);
        }
        args
    }

    /// Environment of every server of the run, on the database at `url`.
    fn server_env<'a>(&'a self, url: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("ANONSTATS_DATABASE_URL", url),
            ("ANONSTATS_SECRET", &self.secret),
            ("RUST_LOG", "info"),
        ]
    }

    fn start_collector(&self, url: &str, label: &str) -> anyhow::Result<ServerProcess> {
        let mut args = vec!["--log-format", "json", "serve"];
        args.extend(self.serve_flags());
        ServerProcess::start(
            &self.collector,
            &args,
            &self.server_env(url),
            &self.work.join(format!("{label}.log")),
        )
    }

    fn backend(
        &mut self,
        backend: &str,
        server: &str,
        baseline: Option<f64>,
    ) -> anyhow::Result<()> {
        let b = backend;
        // 1. Empty database: maximum, latency, overload.
        let empty = FreshDb::create(server, "empty")?;
        note(format!("{b}: collector on an empty database"));
        let collector = self.start_collector(&empty.url, &format!("{b}-empty"))?;
        let addr = collector.addr;
        let max = self.find_max(b, addr)?;
        self.table.set(&format!("{b}.max_rps"), Some(max.rps));
        self.table.set(
            &format!("{b}.ratio_to_baseline"),
            baseline.map(|base| max.rps / base),
        );
        let at = |backend: &str| {
            self.closed
                .get(&(backend.to_owned(), RATIO_CONNECTIONS))
                .copied()
        };
        let ratio_at = match (at(b), at("baseline")) {
            (Some(rps), Some(base)) if base > 0.0 => Some(rps / base),
            _ => None,
        };
        self.table.set(&format!("{b}.ratio_at_256"), ratio_at);
        for share in [0.5, 0.8] {
            let r = self.open_loop(b, addr, max, share)?;
            let p = format!("{b}.open{:.0}", share * 100.0);
            self.table.set(&format!("{p}.p50_ms"), r.accepted.p50);
            self.table.set(&format!("{p}.p99_ms"), r.accepted.p99);
            self.table.set(&format!("{p}.p999_ms"), r.accepted.p999);
            self.table.set(
                &format!("{p}.errors"),
                Some((r.errors + r.rejected.count) as f64),
            );
        }
        let mut spec = self.settings.spec(
            addr,
            self.settings.overload_connections,
            Some(self.settings.overload_factor * max.rps),
            3000,
        );
        spec.duration = Duration::from_secs_f64(self.settings.overload_duration_s);
        let r = self.load(b, "overload", &spec)?;
        let rss = collector.peak_rss();
        self.record(b, "peak_rss_bytes", json!(rss));
        self.table.set(
            &format!("{b}.overload.peak_rss_mib"),
            rss.map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
        );
        self.table
            .set(&format!("{b}.overload.p99_503_ms"), r.rejected.p99);
        self.table.set(
            &format!("{b}.overload.accepted_ratio"),
            Some(r.accepted_rps / max.rps),
        );
        collector.stop()?;
        drop(empty);

        // 2. Seeded database: size on disk, ingest rate, stats endpoints.
        let seeded = FreshDb::create(server, "seeded")?;
        anonstats::db::prepare_database(&seeded.url, 1)?;
        let before = seed::database_bytes(&seeded.url)?;
        let n = self.settings.instances;
        note(format!(
            "{b}: seeding {n} instances and {} days of history",
            self.settings.days
        ));
        let step = (n / 10).max(1);
        let printed = std::cell::Cell::new(0);
        let seeded_stats = seed::seed(&seeded.url, &self.secret, n, self.settings.days, |done| {
            if done - printed.get() >= step || done == n {
                note(format!("{b}: seeded {done}/{n}"));
                printed.set(done);
            }
        })?;
        let after = seed::database_bytes(&seeded.url)?;
        note(format!("{b}: seeded in {:.1} s", seeded_stats.seconds));
        self.record(
            b,
            "seed",
            json!({"written": seeded_stats, "bytes_before": before, "bytes_after": after}),
        );
        self.table.set(
            &format!("{b}.disk.bytes_per_instance"),
            Some(after.saturating_sub(before) as f64 / n.max(1) as f64),
        );
        let collector = self.start_collector(&seeded.url, &format!("{b}-seeded"))?;
        let spec = self
            .settings
            .spec(collector.addr, max.connections, None, 4000);
        let written = |c: &ServerProcess| match b {
            "postgres" => process::postgres_written_bytes(),
            _ => c.written_bytes(),
        };
        let (bytes_before, stored_before) =
            (written(&collector), seed::reports_stored(&seeded.url)?);
        let r = self.load(b, "seeded_closed", &spec)?;
        let (bytes_after, stored_after) = (written(&collector), seed::reports_stored(&seeded.url)?);
        let stored = stored_after.saturating_sub(stored_before);
        let per_report = match (bytes_before, bytes_after) {
            (Some(x), Some(y)) if stored > 0 => Some(y.saturating_sub(x) as f64 / stored as f64),
            _ => None,
        };
        self.record(
            b,
            "seeded_written",
            json!({"reports": stored, "bytes_before": bytes_before, "bytes_after": bytes_after}),
        );
        self.table
            .set(&format!("{b}.seeded.bytes_per_report"), per_report);
        self.table
            .set(&format!("{b}.seeded.max_rps"), Some(r.accepted_rps));
        self.table
            .set(&format!("{b}.seeded.ratio"), Some(r.accepted_rps / max.rps));
        let mut timings = serde_json::Map::new();
        // Reports stored before each cold request: seeded instances.
        let mut generator = generator::LoadGenerator::new(5000, n, self.settings.days);
        for (name, path) in STATS_ENDPOINTS {
            let id = format!("{b}.stats.{name}.p50_ms");
            let warm_id = format!("{b}.stats.{name}.warm_p50_ms");
            match load::time_stats(
                collector.addr,
                path,
                self.settings.stats_requests,
                &mut generator,
            ) {
                Ok(Some(t)) => {
                    note(format!(
                        "{b}: GET {path}: p50 {:.2} ms cold, {:.2} ms warm",
                        t.cold.p50.unwrap_or(0.0),
                        t.warm.p50.unwrap_or(0.0)
                    ));
                    self.table.set(&id, t.cold.p50);
                    self.table.set(&warm_id, t.warm.p50);
                    timings.insert((*name).to_owned(), serde_json::to_value(t)?);
                }
                Ok(None) => {
                    note(format!("{b}: GET {path}: 404, reported as missing"));
                    self.table.mark(&id, Status::Missing);
                    self.table.mark(&warm_id, Status::Missing);
                    timings.insert((*name).to_owned(), json!("missing"));
                }
                // One broken endpoint must not hide the others' figures.
                Err(e) => {
                    note(format!("{b}: GET {path} failed: {e:#}"));
                    self.table.mark(&id, Status::Error);
                    self.table.mark(&warm_id, Status::Error);
                    timings.insert((*name).to_owned(), json!({"error": format!("{e:#}")}));
                    self.failed.push(format!("{b} GET {path}"));
                }
            }
        }
        self.record(b, "stats", Value::Object(timings));
        self.hostile(b, collector.addr)?;
        collector.stop()?;
        drop(seeded);
        Ok(())
    }

    /// Intake next to each flood of [`FLOODS`], against intake alone before
    /// and after them (their mean is the reference, so that a drift of the
    /// machine during the phases shows as a difference between the two).
    fn hostile(&mut self, b: &str, addr: SocketAddr) -> anyhow::Result<()> {
        const CONNECTIONS: usize = 16;
        let quick = self.settings.quick;
        let before = self.load(
            b,
            "hostile_alone_before",
            &self.settings.spec(addr, CONNECTIONS, None, 6000),
        )?;
        let mut next_to = Vec::new();
        for (i, (name, _, many, connections)) in FLOODS.iter().enumerate() {
            let kind = match *name {
                n if n.starts_with("stats") => flood::Kind::Stats,
                n if n.starts_with("erasures") => flood::Kind::Erasures,
                _ => flood::Kind::Slowloris,
            };
            let connections = if quick {
                (*connections / 8).max(8)
            } else {
                *connections
            };
            note(format!("{b}: flood {name}: {connections} connections"));
            let running = flood::Flood::start(flood::FloodSpec {
                addr,
                kind,
                connections,
                many_sources: *many,
                seed: 7000 + i as u64,
            })?;
            let spec = self.settings.spec(addr, CONNECTIONS, None, 6001 + i as u64);
            let measured = self.load(b, &format!("hostile_{name}"), &spec);
            let counts = running.stop()?;
            let r = measured?;
            note(format!(
                "{b}: flood {name}: {} 2xx, {} 429, {} 503, {} other, {} errors",
                counts.answered_2xx,
                counts.answered_429,
                counts.answered_503,
                counts.answered_other,
                counts.errors
            ));
            self.record(
                b,
                &format!("hostile_{name}_flood"),
                serde_json::to_value(counts)?,
            );
            next_to.push((*name, r));
        }
        let after = self.load(
            b,
            "hostile_alone_after",
            &self.settings.spec(addr, CONNECTIONS, None, 6100),
        )?;
        let alone = (before.accepted_rps + after.accepted_rps) / 2.0;
        self.table
            .set(&format!("{b}.hostile.alone_rps"), Some(alone));
        for (name, r) in next_to {
            self.table.set(
                &format!("{b}.hostile.{name}.ratio"),
                (alone > 0.0).then(|| r.accepted_rps / alone),
            );
            // A report refused with 503 under a flood is a 5xx the flood
            // caused; `errors` counts every other failed answer.
            self.table.set(
                &format!("{b}.hostile.{name}.report_5xx"),
                Some((r.rejected.count + r.errors) as f64),
            );
        }
        Ok(())
    }
}

/// A database created for one part of the run, removed when dropped.
struct FreshDb {
    url: String,
    /// PostgreSQL: (administrator URL, database name) to drop.
    postgres: Option<(String, String)>,
}

impl FreshDb {
    /// `server` is a PostgreSQL administrator URL, or a SQLite path pattern
    /// containing `{label}`.
    fn create(server: &str, label: &str) -> anyhow::Result<FreshDb> {
        match db::Backend::parse(server)? {
            db::Backend::Sqlite => {
                let url = server.replace("{label}", label);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{url}{suffix}"));
                }
                Ok(FreshDb {
                    url,
                    postgres: None,
                })
            }
            db::Backend::Postgres => {
                let name = format!("anonstats_bench_{label}_{}", uuid::Uuid::new_v4().simple());
                let mut admin = PgConnection::establish(server).with_context(|| {
                    format!("cannot connect to PostgreSQL at {}", db::redact_url(server))
                })?;
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .with_context(|| format!("cannot create database {name}"))?;
                Ok(FreshDb {
                    url: with_database(server, &name),
                    postgres: Some((server.to_owned(), name)),
                })
            }
        }
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        match &self.postgres {
            Some((admin, name)) => {
                let dropped = PgConnection::establish(admin).map(|mut c| {
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                });
                if !matches!(dropped, Ok(Ok(_))) {
                    note(format!("could not drop database {name}; drop it by hand"));
                }
            }
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.url));
                }
            }
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The run's directory: given (kept), or temporary (removed at the end).
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn new(given: Option<PathBuf>) -> anyhow::Result<WorkDir> {
        let (path, remove) = match given {
            Some(p) => (p, false),
            None => (
                std::env::temp_dir()
                    .join(format!("anonstats-bench-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir { path, remove })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Raises the soft limit of open files (inherited by the servers started
/// afterwards) towards `wanted`, within the hard limit: the overload phase
/// holds thousands of connections on each side. The benchmark's one use of
/// `unsafe`, audited: the standard library has no rlimit call.
#[allow(unsafe_code)]
fn raise_open_files_limit(wanted: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = wanted as libc::rlim_t;
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        if (limit.rlim_cur as usize) < wanted as usize {
            note(format!(
                "open files limited to {}: the overload phase may fail to open its connections",
                limit.rlim_cur
            ));
        }
    }
}

/// Flags of the hidden `anonstats-bench baseline` command: those of
/// `anonstats serve`, parsed by the collector's own code.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub serve: anonstats::cli::ServeArgs,
}

/// Runs the baseline server until SIGTERM/SIGINT: the collector's
/// configuration and [`anonstats::startup::Application`], built with
/// [`Sink::Discard`](anonstats::startup::Sink::Discard), logging JSON as
/// the collectors of the run do.
pub fn serve_baseline(args: BaselineArgs) -> anyhow::Result<()> {
    use anonstats::startup::{self, Application, Sink};
    anonstats::telemetry::init(anonstats::telemetry::LogFormat::Json);
    let config = anonstats::config::Config::try_from(&args.serve)?;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build_with_sink(config, Sink::Discard)?;
        actix_web::rt::spawn(startup::stop_on_signal(app.handle()));
        app.run_until_stopped()
            .await
            .context("baseline server failed")
    })
}

/// The version `collector --version` prints, if it does.
fn anonstats_version(collector: &Path) -> Value {
    std::process::Command::new(collector)
        .arg("--version")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace().nth(1).map(|v| json!(v))
        })
        .unwrap_or(Value::Null)
}

fn git_commit() -> Value {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| json!(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(Value::Null)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    let memory_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": cpu,
        "memory_mib": memory_kib.map(|k| k / 1024),
        "kernel": kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_urls() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
