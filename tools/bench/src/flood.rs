//! Hostile load next to the reports: floods of reads and erasures, from one
//! source or from many, and slow connections (slowloris). Each runs on a
//! thread and runtime of its own while a load phase measures intake.
//!
//! Floods are closed-loop, as flood tools are: each connection sends its
//! next request as soon as the last is answered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::http::{self, Conn};

/// Which flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `GET /api/v1/stats/counters?active_days=N` with a random `N`, so that
    /// each request misses the result cache.
    Stats,
    /// `POST /api/v1/erasures` of random ids.
    Erasures,
    /// A request line, then one header byte a second, on every connection.
    Slowloris,
}

/// What drives one flood.
#[derive(Debug, Clone)]
pub struct FloodSpec {
    pub addr: SocketAddr,
    pub kind: Kind,
    pub connections: usize,
    /// Each request names a random client address in `X-Forwarded-For`
    /// (the collector must trust the generator as a proxy): a flood from
    /// many sources, each within its budget.
    pub many_sources: bool,
    pub seed: u64,
}

/// Answers the flood got, by kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FloodCounts {
    pub answered_2xx: u64,
    pub answered_429: u64,
    pub answered_503: u64,
    pub answered_other: u64,
    /// Transport errors, and connections the collector closed.
    pub errors: u64,
}

impl FloodCounts {
    fn add(&mut self, other: FloodCounts) {
        self.answered_2xx += other.answered_2xx;
        self.answered_429 += other.answered_429;
        self.answered_503 += other.answered_503;
        self.answered_other += other.answered_other;
        self.errors += other.errors;
    }
}

/// A running flood; [`Flood::stop`] ends it and returns its counts.
pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<FloodCounts>>,
}

impl Flood {
    /// Starts the flood and returns once its connections are open.
    pub fn start(spec: FloodSpec) -> anyhow::Result<Flood> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, started) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-flood".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(run(spec, flag, ready))
            })?;
        // The flood is under way once every connection has sent once.
        let _ = started.recv_timeout(Duration::from_secs(30));
        Ok(Flood { stop, thread })
    }

    /// Stops the flood and returns what it got.
    pub fn stop(self) -> anyhow::Result<FloodCounts> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
    }
}

async fn run(
    spec: FloodSpec,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<FloodCounts> {
    let mut tasks = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        let (spec, stop) = (spec.clone(), stop.clone());
        let seed = spec.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        tasks.push(tokio::spawn(async move {
            match spec.kind {
                Kind::Slowloris => slow_connection(spec.addr, &stop).await,
                Kind::Stats | Kind::Erasures => requests(&spec, seed, &stop).await,
            }
        }));
    }
    let _ = ready.send(());
    let mut total = FloodCounts::default();
    for t in tasks {
        total.add(t.await?);
    }
    Ok(total)
}

/// One connection of a request flood, reopened whenever it is closed.
async fn requests(spec: &FloodSpec, seed: u64, stop: &AtomicBool) -> FloodCounts {
    let mut counts = FloodCounts::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conn: Option<Conn> = None;
    let mut request = Vec::with_capacity(512);
    while !stop.load(Ordering::Relaxed) {
        let forwarded = spec.many_sources.then(|| {
            // Documentation and private ranges stay clear of real hosts;
            // any address does, since nothing leaves this machine.
            format!(
                "X-Forwarded-For: 10.{}.{}.{}\r\n",
                rng.random::<u8>(),
                rng.random::<u8>(),
                rng.random::<u8>()
            )
        });
        let forwarded = forwarded.as_deref().unwrap_or("");
        request.clear();
        match spec.kind {
            Kind::Stats => {
                let days: u32 = rng.random_range(1..=3650);
                request.extend_from_slice(
                    format!(
                        "GET /api/v1/stats/counters?active_days={days} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n{forwarded}\r\n",
                        http::BENCH_TOKEN
                    )
                    .as_bytes(),
                );
            }
            Kind::Erasures => {
                let body = format!(
                    r#"{{"product":"passbolt","instance_id":"{}"}}"#,
                    uuid::Uuid::from_u128(rng.random())
                );
                request.extend_from_slice(
                    format!(
                        "POST /api/v1/erasures HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{forwarded}\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
            Kind::Slowloris => unreachable!("slow connections send no requests"),
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(spec.addr).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    counts.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match c.send(&request).await {
            Ok(r) => match r.status {
                200..=299 => counts.answered_2xx += 1,
                429 => counts.answered_429 += 1,
                503 => counts.answered_503 += 1,
                _ => counts.answered_other += 1,
            },
            Err(_) => {
                counts.errors += 1;
                conn = None;
            }
        }
    }
    counts
}

/// One slow connection: a report's request line, then a header byte a
/// second, until the collector closes it; then another.
async fn slow_connection(addr: SocketAddr, stop: &AtomicBool) -> FloodCounts {
    let mut counts = FloodCounts::default();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            counts.errors += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream
            .write_all(b"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .is_err()
        {
            counts.errors += 1;
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(b"a").await.is_err() {
                // Closed by the collector's request timeout.
                counts.errors += 1;
                break;
            }
        }
    }
    counts
}
