//! Load phases: closed-loop (as fast as answers come back) and open-loop
//! (at a fixed rate, latency measured from each request's scheduled send
//! time, so that a stalled server cannot hide its stall by slowing the
//! generator down: "coordinated omission").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::generator::LoadGenerator;
use super::http::{self, Conn};

/// How late a request may leave before it counts as late.
const LATE: Duration = Duration::from_millis(5);

/// The ingest route every phase drives.
pub const REPORTS_PATH: &str = "/api/v1/reports";

/// What drives one phase.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    /// Connections kept open for the phase.
    pub connections: usize,
    /// `None`: closed loop; `Some(r)`: open loop at `r` requests per second.
    pub rate: Option<f64>,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Time before measuring starts (closed loop only: an open loop is
    /// measured from its first scheduled request).
    pub warmup: Duration,
    /// Instances the reports are drawn from.
    pub population: u64,
    pub history_days: i64,
    /// Seed of the report generator.
    pub seed: u64,
    /// Tokio worker threads of the generator (1: one thread, no stealing).
    pub threads: usize,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    /// Percentiles of latencies given in microseconds.
    pub fn of(mut micros: Vec<u32>) -> Percentiles {
        micros.sort_unstable();
        let at = |q: f64| -> Option<f64> {
            if micros.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least q of the samples
            // at or below it.
            let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
            Some(f64::from(micros[rank - 1]) / 1000.0)
        };
        Percentiles {
            count: micros.len() as u64,
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: micros.last().map(|m| f64::from(*m) / 1000.0),
        }
    }
}

/// The outcome of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub connections: usize,
    /// Requested rate (open loop).
    pub target_rps: Option<f64>,
    pub duration_s: f64,
    /// Requests sent during the measured window.
    pub sent: u64,
    /// 2xx answers received during the measured window, per second.
    pub accepted_rps: f64,
    /// Latency of 2xx answers (from the scheduled time in an open loop).
    pub accepted: Percentiles,
    /// Latency of 503 answers.
    pub rejected: Percentiles,
    /// Latency of 503 answers from the moment they were actually sent (not
    /// coordinated-omission safe: for telling the server's refusal time
    /// from time the generator itself was late).
    pub rejected_service: Percentiles,
    /// Answers other than 2xx and 503, transport errors and requests still
    /// unanswered when the phase ended.
    pub errors: u64,
    /// Open loop: requests sent more than 5 ms after their scheduled time
    /// because every connection was busy (or the generator was starved of
    /// CPU). Their wait counts in the latencies; many of them mean the
    /// phase needs more connections.
    pub late: u64,
}

#[derive(Default)]
struct TaskStats {
    sent: u64,
    accepted_in_window: u64,
    accepted: Vec<u32>,
    rejected: Vec<u32>,
    rejected_service: Vec<u32>,
    errors: u64,
    late: u64,
}

/// Runs one phase on its own runtime and returns what it measured.
pub fn run(spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    let runtime = if spec.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run_async(spec.clone()))
}

async fn run_async(spec: LoadSpec) -> anyhow::Result<LoadResult> {
    let conns = open_connections(spec.addr, spec.connections).await?;
    // Open loop: the measured window starts with the first scheduled request.
    let warmup = if spec.rate.is_some() {
        Duration::ZERO
    } else {
        spec.warmup
    };
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + warmup;
    let window_end = window_start + spec.duration;
    // Answers to requests sent in the window may come later; a request still
    // unanswered this long after the window is counted as an error.
    let drain_deadline = window_end + Duration::from_secs(15);
    let next_slot = Arc::new(AtomicU64::new(0));
    let interval_ns = spec.rate.map(|r| (1e9 / r.max(0.001)) as u64);

    let mut tasks = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let next_slot = next_slot.clone();
        let mut generator = LoadGenerator::new(
            spec.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            spec.population,
            spec.history_days,
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut stats = TaskStats::default();
            let mut body = Vec::with_capacity(1024);
            let mut request = Vec::with_capacity(1536);
            loop {
                // When is the next request due?
                let scheduled = match interval_ns {
                    Some(step) => {
                        let k = next_slot.fetch_add(1, Ordering::Relaxed);
                        let at = start + Duration::from_nanos(k * step);
                        if at >= window_end {
                            break;
                        }
                        if Instant::now() > at + LATE {
                            stats.late += 1;
                        } else {
                            tokio::time::sleep_until(at).await;
                        }
                        at
                    }
                    None => {
                        let now = Instant::now();
                        if now >= window_end {
                            break;
                        }
                        if now < start {
                            tokio::time::sleep_until(start).await;
                        }
                        Instant::now()
                    }
                };
                generator.next_json(&mut body);
                http::post(REPORTS_PATH, "application/json", &body, &mut request);
                let counted = scheduled >= window_start;
                if counted {
                    stats.sent += 1;
                }
                let sent_at = Instant::now();
                let remaining = drain_deadline.saturating_duration_since(sent_at);
                let answer = tokio::time::timeout(remaining, conn.send(&request)).await;
                let done = Instant::now();
                let micros = (done - scheduled).as_micros().min(u32::MAX as u128) as u32;
                match answer {
                    Ok(Ok(r)) if (200..300).contains(&r.status) => {
                        if counted {
                            stats.accepted.push(micros);
                        }
                        if done >= window_start && done <= window_end {
                            stats.accepted_in_window += 1;
                        }
                    }
                    Ok(Ok(r)) if r.status == 503 => {
                        if counted {
                            stats.rejected.push(micros);
                            let service = (done - sent_at).as_micros().min(u32::MAX as u128);
                            stats.rejected_service.push(service as u32);
                        }
                    }
                    Ok(_) => {
                        if counted {
                            stats.errors += 1;
                        }
                    }
                    Err(_) => {
                        stats.errors += 1;
                        break;
                    }
                }
            }
            stats
        }));
    }
    let mut total = TaskStats::default();
    for task in tasks {
        let s = task.await?;
        total.sent += s.sent;
        total.accepted_in_window += s.accepted_in_window;
        total.accepted.extend(s.accepted);
        total.rejected.extend(s.rejected);
        total.rejected_service.extend(s.rejected_service);
        total.errors += s.errors;
        total.late += s.late;
    }
    // Open loop: slots that no connection got to before the deadline were
    // never sent; they are late requests, i.e. errors.
    if let Some(step) = interval_ns {
        let due = (window_end - start).as_nanos() as u64 / step;
        let taken = next_slot.load(Ordering::Relaxed).min(due);
        total.errors += due - taken;
    }
    Ok(LoadResult {
        connections: spec.connections,
        target_rps: spec.rate,
        duration_s: spec.duration.as_secs_f64(),
        sent: total.sent,
        accepted_rps: total.accepted_in_window as f64 / spec.duration.as_secs_f64(),
        accepted: Percentiles::of(total.accepted),
        rejected: Percentiles::of(total.rejected),
        rejected_service: Percentiles::of(total.rejected_service),
        errors: total.errors,
        late: total.late,
    })
}

/// Opens `n` connections, a few at a time so that the listen backlog never
/// overflows (a dropped SYN costs a second and would show as latency).
async fn open_connections(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = (n - conns.len()).min(64);
        let opened = futures_util::future::join_all((0..batch).map(|_| Conn::connect(addr))).await;
        for c in opened {
            conns.push(c.map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?);
        }
    }
    Ok(conns)
}

/// Timings of one stats endpoint.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatsTiming {
    /// Each request right after one report was stored: the collector's
    /// result cache cannot answer, so this is the query itself.
    pub cold: Percentiles,
    /// The same request repeated with nothing stored in between: what a
    /// dashboard refreshing the same view gets from the result cache.
    pub warm: Percentiles,
}

/// Clients named by the stats timings, 10.254.0.0 onwards.
static STATS_CLIENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Times `requests` cold and then `requests` warm GETs of `path` on one
/// connection (see [`StatsTiming`]); `None` when the endpoint answers 404.
/// Before each cold GET one report of `generator` is posted and must be
/// answered 2xx. At most 30 s are spent on each half.
pub fn time_stats(
    addr: SocketAddr,
    path: &str,
    requests: usize,
    generator: &mut LoadGenerator,
) -> anyhow::Result<Option<StatsTiming>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conn = Conn::connect(addr).await?;
        let mut body = Vec::new();
        let mut post = Vec::new();
        let mut cold = Vec::with_capacity(requests);
        let mut warm = Vec::with_capacity(requests);
        for warm_half in [false, true] {
            let micros = if warm_half { &mut warm } else { &mut cold };
            let budget = Instant::now() + Duration::from_secs(30);
            for _ in 0..requests.max(1) {
                if !micros.is_empty() && Instant::now() > budget {
                    break;
                }
                if !warm_half {
                    generator.next_json(&mut body);
                    http::post(REPORTS_PATH, "application/json", &body, &mut post);
                    let stored = conn.send(&post).await?;
                    anyhow::ensure!(
                        (200..300).contains(&stored.status),
                        "POST {REPORTS_PATH} before a cold GET answered {}",
                        stored.status
                    );
                }
                // Each request as from a reader of its own: the timings
                // measure the queries, not the per-source read budget
                // (which the hostile phase measures).
                let client = STATS_CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let request = http::get_from(path, std::net::Ipv4Addr::from(0x0afe_0000 | client));
                let started = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(60), conn.send(&request))
                    .await
                    .map_err(|_| anyhow::anyhow!("GET {path} took more than 60 s"))??;
                let elapsed = started.elapsed();
                match answer.status {
                    404 => return Ok(None),
                    200..=299 => {}
                    s => anyhow::bail!("GET {path} answered {s}"),
                }
                micros.push(elapsed.as_micros().min(u32::MAX as u128) as u32);
            }
        }
        Ok(Some(StatsTiming {
            cold: Percentiles::of(cold),
            warm: Percentiles::of(warm),
        }))
    })
}
