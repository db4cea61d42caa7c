//! `anonstats-bench erasure`: how long an erasure takes for an id
//! the collector stores and for one it never saw, interleaved, on the real
//! collector over HTTP (see docs/performance.md).
//!
//! The two must not be told apart by their timing: an answer that comes
//! faster for unknown ids would tell anyone holding an id whether its
//! install ever reported. Printed, not asserted: timings belong to a
//! machine, not to a test.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::http::{self, Conn};
use super::load::Percentiles;
use super::process::ServerProcess;
use super::{note, FreshDb, WorkDir};

/// Flags of `anonstats-bench erasure`.
#[derive(Debug, Args)]
pub struct ErasureArgs {
    /// The collector binary to measure [default: `anonstats` in the
    /// directory of this binary].
    #[arg(long, env = "ANONSTATS_BENCH_COLLECTOR", value_name = "PATH")]
    pub collector: Option<PathBuf>,
    /// PostgreSQL server, as an administrator URL (a database is created
    /// for the run and dropped after); without it, SQLite only.
    #[arg(long, env = "ANONSTATS_BENCH_POSTGRES_URL", value_name = "URL")]
    pub postgres: Option<String>,
    /// Erasures of each kind (stored, unknown), interleaved.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub count: usize,
    /// Unmeasured erasures before the measured ones (connection, caches).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub warmup: usize,
    /// Milliseconds between two measured erasures. The collector performs
    /// at most 50 erasures a second; erasures sent closer together than
    /// that wait for their turn, and the wait, the same for both kinds,
    /// would hide what each costs. `0` sends them back to back.
    #[arg(long, default_value_t = 25, value_name = "MS")]
    pub interval_ms: u64,
    /// Directory for the SQLite database and the collector's log (default:
    /// a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Latencies of one backend's run, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Figures {
    stored: Percentiles,
    unknown: Percentiles,
}

/// Runs the measurement on SQLite, then on PostgreSQL when given, and
/// prints both.
pub fn run(args: ErasureArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be positive");
    let collector = super::process::collector(args.collector.as_deref())?;
    let work = WorkDir::new(args.work_dir.clone())?;
    let sqlite = work
        .path()
        .join("{label}.db")
        .to_string_lossy()
        .into_owned();
    let mut rows = Vec::new();
    for (backend, server) in [
        ("sqlite", Some(sqlite)),
        ("postgres", args.postgres.clone().filter(|u| !u.is_empty())),
    ] {
        let Some(server) = server else {
            note("PostgreSQL skipped: give --postgres URL or set ANONSTATS_BENCH_POSTGRES_URL");
            continue;
        };
        let db = FreshDb::create(&server, "erasure")?;
        let log = work.path().join(format!("{backend}-erasure.log"));
        let figures =
            measure(&collector, &db.url, &log, &args).with_context(|| backend.to_owned())?;
        rows.push((backend, figures));
    }
    println!(
        "erasure latency over HTTP, {} of each kind, interleaved",
        args.count
    );
    println!("backend   kind     p50 ms   p99 ms   max ms");
    for (backend, f) in &rows {
        for (kind, p) in [("stored", f.stored), ("unknown", f.unknown)] {
            println!(
                "{backend:<9} {kind:<8} {:>6.2}   {:>6.2}   {:>6.2}",
                p.p50.unwrap_or(f64::NAN),
                p.p99.unwrap_or(f64::NAN),
                p.max.unwrap_or(f64::NAN)
            );
        }
        println!(
            "{backend:<9} ratio    {:>6.2}   {:>6.2}   (stored / unknown)",
            ratio(f.stored.p50, f.unknown.p50),
            ratio(f.stored.p99, f.unknown.p99)
        );
    }
    Ok(())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => a / b,
        _ => f64::NAN,
    }
}

/// One collector on a fresh database: stores `count` installs, then erases
/// them alternately with as many ids it never saw, one request at a time.
fn measure(
    collector: &std::path::Path,
    url: &str,
    log: &std::path::Path,
    args: &ErasureArgs,
) -> anyhow::Result<Figures> {
    let server = ServerProcess::start(
        collector,
        &[
            "--log-format",
            "json",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--rate-limit",
            "0",
            // Hundreds of erasures from this one address in a few seconds.
            "--read-rate-limit",
            "0",
            "--instance-daily-limit",
            "0",
        ],
        &[("ANONSTATS_DATABASE_URL", url), ("RUST_LOG", "info")],
        log,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async {
        let mut conn = Conn::connect(server.addr).await?;
        let mut request = Vec::new();
        let stored: Vec<uuid::Uuid> = (0..args.count).map(|_| uuid::Uuid::new_v4()).collect();
        for id in &stored {
            let report = json!({
                "schema_version": 1,
                "report_id": uuid::Uuid::new_v4(),
                "instance_id": id,
                "product": "passbolt",
                "event": "install",
                "version": "4.10.1",
                "attributes": {"edition": "ce", "php_version": "8.2"},
                "counters": {"users": 42},
                "features": {"mfa": true}
            });
            http::post(
                "/api/v1/reports",
                "application/json",
                report.to_string().as_bytes(),
                &mut request,
            );
            let answer = conn.send(&request).await?;
            anyhow::ensure!(answer.status == 202, "report refused: {}", answer.status);
        }
        let erase = |id: uuid::Uuid| {
            let body = json!({"product": "passbolt", "instance_id": id}).to_string();
            let mut out = Vec::new();
            http::post(
                "/api/v1/erasures",
                "application/json",
                body.as_bytes(),
                &mut out,
            );
            out
        };
        for _ in 0..args.warmup {
            let answer = conn.send(&erase(uuid::Uuid::new_v4())).await?;
            anyhow::ensure!(answer.status == 202, "erasure refused: {}", answer.status);
        }
        let mut times = (Vec::new(), Vec::new());
        for (i, id) in stored.iter().enumerate() {
            // Alternate which kind goes first, so that neither always
            // follows the other.
            let pair = [(true, *id), (false, uuid::Uuid::new_v4())];
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let (is_stored, id) = pair[k];
                let bytes = erase(id);
                tokio::time::sleep(std::time::Duration::from_millis(args.interval_ms)).await;
                let start = Instant::now();
                let answer = conn.send(&bytes).await?;
                let micros = start.elapsed().as_micros().min(u32::MAX as u128) as u32;
                anyhow::ensure!(answer.status == 202, "erasure refused: {}", answer.status);
                if is_stored {
                    times.0.push(micros);
                } else {
                    times.1.push(micros);
                }
            }
        }
        anyhow::Ok(Figures {
            stored: Percentiles::of(times.0),
            unknown: Percentiles::of(times.1),
        })
    })?;
    server.stop()?;
    Ok(figures)
}
