//! Abuse limits on report intake: a token bucket per source address and a
//! daily cap per instance.
//!
//! The source address is needed for a few microseconds to find its bucket
//! and is never stored, logged or returned: buckets are keyed by an HMAC of
//! the address (IPv4 /32, IPv6 /64) under a random secret that exists only in
//! memory and is replaced at least daily, which also forgets every bucket.
//! Memory is bounded: idle buckets are dropped first, and when every bucket
//! is active the least recently used half goes.
//!
//! Forwarding headers (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) are read
//! only when the socket peer is a configured trusted proxy.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use chrono::{NaiveDate, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;
use crate::metrics::ReportOutcome;
use crate::startup::AppState;

/// Default `--rate-limit`: 60 reports per minute per source, bursts of 60.
pub const DEFAULT_RATE_LIMIT: &str = "60";
/// Default budget of each source on the routes other than intake (stats,
/// erasures, sign-in, readiness, metrics, the dashboard page): enough for a
/// dashboard that asks a dozen questions per view.
pub const DEFAULT_READ_RATE_LIMIT: &str = "600,burst=120";
/// Default `--instance-daily-limit`.
pub const DEFAULT_INSTANCE_DAILY_LIMIT: u32 = 24;
/// Most sources tracked at once (about 100 bytes each).
pub const DEFAULT_MAX_SOURCES: usize = 100_000;
/// Most instances tracked per day by the daily limit (about 80 bytes each).
pub const MAX_TRACKED_INSTANCES: usize = 1_000_000;
/// How often the in-memory address key is replaced.
pub const KEY_ROTATION: Duration = Duration::from_secs(24 * 3600);

/// Default `--refusal-pause`, seconds.
pub const DEFAULT_REFUSAL_PAUSE: u64 = 1;

/// Default `--request-timeout`, seconds.
pub const DEFAULT_REQUEST_TIMEOUT: u64 = 10;
/// Default `--keep-alive`, seconds.
pub const DEFAULT_KEEP_ALIVE: u64 = 15;
/// Default `--max-connections`: each open connection with a request in
/// flight costs about 25 KiB, so this keeps the collector under 150 MB
/// (134 MiB measured under overload), and leaves room for connections beyond the default queue plus one
/// batch (2,048 + 1,024), which are answered 503 at once under overload.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Every abuse and connection limit of the collector.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Reports per minute per source address.
    pub rate_limit: RateLimit,
    /// Requests per minute per source address to the other routes.
    pub read_rate_limit: RateLimit,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The header those peers name the client in.
    pub client_ip_header: Option<ClientIpHeader>,
    /// Reports per instance per UTC day (0: unlimited).
    pub instance_daily_limit: u32,
    /// Most source addresses tracked by the rate limiter.
    pub max_sources: usize,
    /// Time a client has to send its request head, and then its body.
    pub request_timeout: Duration,
    /// Idle time before a kept-alive connection is closed (zero: no keep-alive).
    pub keep_alive: Duration,
    /// Most open client connections, all workers together.
    pub max_connections: usize,
    /// How long a request refused by a per-source limit waits for its 429.
    pub refusal_pause: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_limit: RateLimit::default(),
            read_rate_limit: DEFAULT_READ_RATE_LIMIT.parse().expect("valid default"),
            trusted_proxies: Vec::new(),
            client_ip_header: None,
            instance_daily_limit: DEFAULT_INSTANCE_DAILY_LIMIT,
            max_sources: DEFAULT_MAX_SOURCES,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT),
            keep_alive: Duration::from_secs(DEFAULT_KEEP_ALIVE),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            refusal_pause: Duration::from_secs(DEFAULT_REFUSAL_PAUSE),
        }
    }
}

/// The flags of `serve` that set [`Limits`] (see docs/operations.md).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Reports per minute per source address, with an optional burst:
    /// `60` (60 per minute, bursts of 60), `60,burst=20`, or `0` to disable.
    /// IPv4 sources are counted per address, IPv6 per /64.
    #[arg(long, env = "ANONSTATS_RATE_LIMIT", default_value = DEFAULT_RATE_LIMIT, value_name = "N[,burst=B]")]
    pub rate_limit: RateLimit,
    /// Requests per minute per source to every other route that does work
    /// (stats, erasures, sign-in, readiness, metrics, the dashboard page),
    /// with an optional burst; `0` disables.
    #[arg(long, env = "ANONSTATS_READ_RATE_LIMIT", default_value = DEFAULT_READ_RATE_LIMIT, value_name = "N[,burst=B]")]
    pub read_rate_limit: RateLimit,
    /// Reverse proxies (addresses or CIDR ranges, comma separated) whose
    /// --client-ip-header names the client for rate limiting. Other peers'
    /// forwarding headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "ANONSTATS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// The one header the trusted proxies set to name the client; every other
    /// forwarding header is ignored. Required with --trusted-proxy.
    #[arg(
        long,
        env = "ANONSTATS_CLIENT_IP_HEADER",
        value_enum,
        value_name = "HEADER"
    )]
    pub client_ip_header: Option<ClientIpHeader>,
    /// Reports taken per instance and UTC day, per collector; more get 429
    /// until the next day. 0 disables.
    #[arg(long, env = "ANONSTATS_INSTANCE_DAILY_LIMIT", default_value_t = DEFAULT_INSTANCE_DAILY_LIMIT, value_name = "N")]
    pub instance_daily_limit: u32,
    /// Seconds a client has to send its request head, and again its body.
    #[arg(long, env = "ANONSTATS_REQUEST_TIMEOUT", default_value_t = DEFAULT_REQUEST_TIMEOUT, value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Seconds an idle kept-alive connection stays open; 0 disables keep-alive.
    #[arg(long, env = "ANONSTATS_KEEP_ALIVE", default_value_t = DEFAULT_KEEP_ALIVE, value_name = "SECONDS")]
    pub keep_alive: u64,
    /// Most simultaneous client connections; beyond that, new connections
    /// wait in the listen backlog.
    #[arg(long, env = "ANONSTATS_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a request refused by a per-source limit waits for its 429
    /// (a client that sends its next request only after an answer then
    /// costs almost nothing); 0 answers at once.
    #[arg(long, env = "ANONSTATS_REFUSAL_PAUSE", default_value_t = DEFAULT_REFUSAL_PAUSE, value_name = "SECONDS")]
    pub refusal_pause: u64,
}

impl LimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.request_timeout == 0 {
            return Err("--request-timeout must be at least 1 second".to_owned());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".to_owned());
        }
        match (self.trusted_proxies.is_empty(), self.client_ip_header) {
            (false, None) => {
                return Err("--trusted-proxy needs --client-ip-header: the one header your proxies set (x-forwarded-for, forwarded or x-real-ip)".to_owned())
            }
            (true, Some(_)) => {
                return Err("--client-ip-header is read only from --trusted-proxy peers: give their addresses too".to_owned())
            }
            _ => {}
        }
        Ok(Limits {
            rate_limit: self.rate_limit,
            read_rate_limit: self.read_rate_limit,
            trusted_proxies: self.trusted_proxies.clone(),
            client_ip_header: self.client_ip_header,
            instance_daily_limit: self.instance_daily_limit,
            max_sources: DEFAULT_MAX_SOURCES,
            request_timeout: Duration::from_secs(self.request_timeout),
            keep_alive: Duration::from_secs(self.keep_alive),
            max_connections: self.max_connections,
            refusal_pause: Duration::from_secs(self.refusal_pause),
        })
    }
}

/// `--rate-limit`: reports per minute per source and the burst allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained reports per minute; 0 disables the limit.
    pub per_minute: u32,
    /// Reports a quiet source may send at once.
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const DISABLED: RateLimit = RateLimit {
        per_minute: 0,
        burst: 0,
    };

    /// Whether the limit applies at all.
    pub fn enabled(&self) -> bool {
        self.per_minute > 0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        DEFAULT_RATE_LIMIT.parse().expect("valid default")
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// `N` (N per minute, burst N), `N,burst=B`, or `0` (disabled).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',').map(str::trim);
        let rate = parts.next().unwrap_or("");
        let per_minute: u32 = rate
            .parse()
            .map_err(|_| format!("expected reports per minute, e.g. 60 or 60,burst=20: {s:?}"))?;
        let mut burst = per_minute;
        for part in parts {
            match part.split_once('=') {
                Some(("burst", b)) => {
                    burst = b
                        .trim()
                        .parse()
                        .map_err(|_| format!("burst must be a whole number: {s:?}"))?;
                }
                _ => return Err(format!("unknown rate limit option {part:?}")),
            }
        }
        if per_minute > 0 && burst == 0 {
            return Err("burst must be at least 1".to_owned());
        }
        Ok(RateLimit { per_minute, burst })
    }
}

/// An address range given as `ADDR` or `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("not an IP address or CIDR range: {s:?}"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// Parses `--trusted-proxy`: addresses or CIDR ranges separated by commas.
pub fn parse_trusted_proxies(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Cidr::from_str)
        .collect()
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The address a request counts against: the socket peer, or, when the
/// peer is a trusted proxy, the rightmost address of the configured header
/// that is not a trusted proxy. Returns `None` when there is no peer (not a
/// TCP request).
pub fn source_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Cidr],
    header: Option<ClientIpHeader>,
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let Some(header) = header.filter(|_| is_trusted(peer)) else {
        return Some(peer);
    };
    let chain = forwarded_chain(headers, header);
    // Walk from the proxy nearest to us outwards: the first hop that is not
    // one of our proxies is the client as far as we can tell; anything to
    // its left could be forged by that client.
    let mut client = None;
    for ip in chain.iter().rev() {
        client = Some(*ip);
        if !is_trusted(*ip) {
            break;
        }
    }
    Some(client.unwrap_or(peer))
}

/// The one forwarding header a deployment's proxies set, and that the
/// collector reads (`--client-ip-header`). Only one: a proxy overwrites or
/// appends to the header it sets and passes the others through untouched,
/// so any other header is the client's to forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, ...`
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, ...` (RFC 7239)
    #[value(name = "forwarded")]
    Forwarded,
    /// `X-Real-IP: client` (one address)
    #[value(name = "x-real-ip")]
    XRealIp,
}

/// Addresses the header names, client first. A header with any unparsable
/// element is ignored as a whole.
fn forwarded_chain(headers: &HeaderMap, header: ClientIpHeader) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let chain = match header {
        ClientIpHeader::Forwarded => values("forwarded")
            .iter()
            .map(|e| {
                e.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v.trim()))
                        .flatten()
                })
            })
            .collect::<Option<Vec<_>>>(),
        ClientIpHeader::XForwardedFor => values("x-forwarded-for")
            .iter()
            .map(|e| parse_node(e))
            .collect::<Option<Vec<_>>>(),
        ClientIpHeader::XRealIp => {
            let v = values("x-real-ip");
            // One address, or it is not what a proxy set.
            (v.len() == 1)
                .then(|| parse_node(&v[0]))
                .flatten()
                .map(|ip| vec![ip])
        }
    };
    chain.unwrap_or_default()
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end]
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| canonical(IpAddr::V6(ip)));
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

struct Buckets {
    key: [u8; 32],
    key_created: Instant,
    map: HashMap<u128, Bucket>,
}

/// Per-source token buckets.
pub struct RateLimiter {
    limit: RateLimit,
    max_sources: usize,
    rotate_every: Duration,
    state: Mutex<Buckets>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter tracking at most `max_sources` sources, with its address
    /// key replaced every `rotate_every`.
    pub fn new(limit: RateLimit, max_sources: usize, rotate_every: Duration) -> RateLimiter {
        RateLimiter {
            limit,
            max_sources: max_sources.max(2),
            rotate_every,
            state: Mutex::new(Buckets {
                key: rand::random(),
                key_created: Instant::now(),
                map: HashMap::new(),
            }),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one token for `source`; `Err(wait)` when it has none left.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        self.check_at(source, Instant::now())
    }

    fn check_at(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if !self.limit.enabled() {
            return Ok(());
        }
        let rate = f64::from(self.limit.per_minute) / 60.0;
        let burst = f64::from(self.limit.burst);
        let mut state = self.lock();
        if now.duration_since(state.key_created) >= self.rotate_every {
            // A new key makes every old bucket key meaningless: forget them.
            state.key = rand::random();
            state.key_created = now;
            state.map.clear();
        }
        let key = source_key(&state.key, source);
        if !state.map.contains_key(&key) && state.map.len() >= self.max_sources {
            evict(&mut state.map, self.max_sources, now, rate, burst);
        }
        let bucket = state.map.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// Makes room for one more source: buckets that have refilled completely
/// hold no information and go first; if every bucket is still active, the
/// least recently used half goes.
fn evict(map: &mut HashMap<u128, Bucket>, max: usize, now: Instant, rate: f64, burst: f64) {
    map.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
    if map.len() < max {
        return;
    }
    let mut times: Vec<Instant> = map.values().map(|b| b.updated).collect();
    let mid = times.len() / 2;
    let (_, cutoff, _) = times.select_nth_unstable(mid);
    let cutoff = *cutoff;
    map.retain(|_, b| b.updated > cutoff);
}

/// The bucket key of an address: HMAC of its /32 (IPv4) or /64 (IPv6).
fn source_key(key: &[u8; 32], source: IpAddr) -> u128 {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    match canonical(source) {
        IpAddr::V4(v4) => {
            mac.update(b"v4");
            mac.update(&v4.octets());
        }
        IpAddr::V6(v6) => {
            mac.update(b"v6");
            mac.update(&v6.octets()[..8]);
        }
    }
    let out = mac.finalize().into_bytes();
    u128::from_le_bytes(out[..16].try_into().expect("16 bytes"))
}

/// How long the request's source must wait under the limiter `which`
/// picks, or `None` when it may go on (or the limit is off).
fn wait_of(req: &ServiceRequest, which: fn(&AppState) -> &RateLimiter) -> Option<Duration> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let limiter = which(state);
    if !limiter.limit().enabled() {
        return None;
    }
    let source = source_address(
        req.peer_addr().map(|a| a.ip()),
        req.headers(),
        &state.trusted_proxies,
        state.client_ip_header,
    )?;
    limiter.check(source).err()
}

/// Answers `error` instead of calling the route, after the refusal pause.
///
/// A flooding source answered at once would send its next request at once:
/// tens of thousands of refusals a second, each parsed and answered on the
/// workers that also take the reports. Holding the answer costs only a
/// timer, and a client that waits for each answer (almost every flood tool,
/// and every well-behaved client) then sends one request per connection and
/// pause. The connections it can hold are bounded by `--max-connections`.
async fn refuse<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    let pause = req
        .app_data::<web::Data<AppState>>()
        .map_or(Duration::ZERO, |s| s.refusal_pause);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    req.into_response(error.error_response())
        .map_into_right_body()
}

/// Middleware for the report intake routes: refuses a request with 429 when
/// its source has no token left, before the body is read.
pub async fn limit_sources(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match wait_of(&req, |s| &s.rate_limiter) {
        Some(wait) => {
            if let Some(state) = req.app_data::<web::Data<AppState>>() {
                state.metrics.report(ReportOutcome::RateLimited);
            }
            let retry_after = retry_seconds(wait);
            Ok(refuse(req, ApiError::RateLimited { retry_after }).await)
        }
        None => next.call(req).await.map(|r| r.map_into_left_body()),
    }
}

/// Middleware for every other route that does work: refuses a request with
/// 429 when its source spent its budget, keyed as intake's is (a keyed hash
/// of the address, in memory only).
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match wait_of(&req, |s| &s.read_limiter) {
        Some(wait) => {
            let retry_after = retry_seconds(wait);
            Ok(refuse(req, ApiError::RequestsLimited { retry_after }).await)
        }
        None => next.call(req).await.map(|r| r.map_into_left_body()),
    }
}

/// Whole seconds to wait, rounded up, at least 1.
pub fn retry_seconds(wait: Duration) -> u32 {
    (wait.as_secs_f64().ceil() as u32).max(1)
}

/// At most N reports per instance and UTC day are taken; more get 429 until
/// the next UTC day. Kept in memory only, per collector, keyed by the
/// instance pseudonym that is stored anyway; forgotten at midnight UTC.
pub struct InstanceLimiter {
    per_day: u32,
    state: Mutex<(NaiveDate, HashMap<[u8; 32], u32>)>,
}

impl std::fmt::Debug for InstanceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLimiter")
            .field("per_day", &self.per_day)
            .finish_non_exhaustive()
    }
}

impl InstanceLimiter {
    /// A limiter allowing `per_day` reports per instance (0: unlimited).
    pub fn new(per_day: u32) -> InstanceLimiter {
        InstanceLimiter {
            per_day,
            state: Mutex::new((NaiveDate::MIN, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (NaiveDate, HashMap<[u8; 32], u32>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Instances tracked today.
    pub fn tracked(&self) -> usize {
        self.lock().1.len()
    }

    /// Reserves one of today's reports for `instance`; `Err(wait)` (until
    /// the next UTC day) when none is left.
    pub fn acquire(&self, instance: &[u8; 32], day: NaiveDate) -> Result<(), Duration> {
        if self.per_day == 0 {
            return Ok(());
        }
        let mut guard = self.lock();
        let (today, counts) = &mut *guard;
        if *today != day {
            *today = day;
            counts.clear();
        }
        if !counts.contains_key(instance) && counts.len() >= MAX_TRACKED_INSTANCES {
            // Past this many distinct instances in one day the limit stops
            // tracking new ones rather than growing without bound.
            return Ok(());
        }
        let n = counts.entry(*instance).or_default();
        if *n >= self.per_day {
            return Err(until_next_utc_day());
        }
        *n += 1;
        Ok(())
    }

    /// Gives back a reservation whose report was not counted (duplicate or
    /// not stored).
    pub fn release(&self, instance: &[u8; 32], day: NaiveDate) {
        if self.per_day == 0 {
            return;
        }
        let mut guard = self.lock();
        if guard.0 == day {
            if let Some(n) = guard.1.get_mut(instance) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

fn until_next_utc_day() -> Duration {
    let now = Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (midnight - now).to_std().unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_rate_limit_syntax() {
        assert_eq!(
            "60".parse::<RateLimit>().unwrap(),
            RateLimit {
                per_minute: 60,
                burst: 60
            }
        );
        assert_eq!(
            "30, burst=5".parse::<RateLimit>().unwrap(),
            RateLimit {
                per_minute: 30,
                burst: 5
            }
        );
        assert!(!"0".parse::<RateLimit>().unwrap().enabled());
        for bad in ["", "x", "10,burst=", "10,bust=3", "10,burst=0", "-1"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_ranges() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarding_headers_only_from_trusted_proxies() {
        use ClientIpHeader::*;
        let trusted = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8").unwrap();
        let src =
            |peer: &str, h: &HeaderMap, header| source_address(Some(ip(peer)), h, &trusted, header);
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.5")]);
        // Untrusted peer, or no header configured: headers ignored.
        assert_eq!(
            src("203.0.113.1", &h, Some(XForwardedFor)),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(src("127.0.0.1", &h, None), Some(ip("127.0.0.1")));
        // Trusted peer: the rightmost hop that is not a trusted proxy.
        assert_eq!(
            src("127.0.0.1", &h, Some(XForwardedFor)),
            Some(ip("198.51.100.7"))
        );
        // A client cannot hide behind a forged leftmost entry.
        let forged = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]);
        assert_eq!(
            src("127.0.0.1", &forged, Some(XForwardedFor)),
            Some(ip("198.51.100.7"))
        );
        let fwd = headers(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(
            src("127.0.0.1", &fwd, Some(Forwarded)),
            Some(ip("2001:db8::7"))
        );
        let real = headers(&[("x-real-ip", "198.51.100.9")]);
        assert_eq!(
            src("127.0.0.1", &real, Some(XRealIp)),
            Some(ip("198.51.100.9"))
        );
        let garbage = headers(&[("x-forwarded-for", "<script>")]);
        assert_eq!(
            src("127.0.0.1", &garbage, Some(XForwardedFor)),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn only_the_configured_header_counts() {
        use ClientIpHeader::*;
        let trusted = parse_trusted_proxies("127.0.0.1").unwrap();
        // nginx set X-Forwarded-For to the client's address; the client
        // added headers of its own.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=192.0.2.99"),
            ("x-real-ip", "192.0.2.98"),
        ]);
        let src = |header| source_address(Some(ip("127.0.0.1")), &h, &trusted, Some(header));
        assert_eq!(src(XForwardedFor), Some(ip("198.51.100.7")));
        assert_eq!(src(Forwarded), Some(ip("192.0.2.99")));
        assert_eq!(src(XRealIp), Some(ip("192.0.2.98")));
        // X-Real-IP names one address; a list is not what a proxy set.
        let two = headers(&[("x-real-ip", "192.0.2.1, 198.51.100.7")]);
        assert_eq!(
            source_address(Some(ip("127.0.0.1")), &two, &trusted, Some(XRealIp)),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn bucket_refills_at_the_configured_rate() {
        let limiter = RateLimiter::new("60,burst=2".parse().unwrap(), 10, KEY_ROTATION);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(limiter.check_at(a, t0).is_ok());
        assert!(limiter.check_at(a, t0).is_ok());
        let wait = limiter.check_at(a, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        // Another source has its own bucket.
        assert!(limiter.check_at(ip("192.0.2.2"), t0).is_ok());
        assert!(limiter.check_at(a, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let limiter = RateLimiter::new("1,burst=1".parse().unwrap(), 10, KEY_ROTATION);
        let t0 = Instant::now();
        assert!(limiter.check_at(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(limiter.check_at(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(limiter.check_at(ip("2001:db8:1:3::1"), t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RateLimiter::new("1,burst=5".parse().unwrap(), 100, KEY_ROTATION);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let _ = limiter.check_at(IpAddr::V4(Ipv4Addr::from(i)), t0);
        }
        assert!(limiter.tracked() <= 100);
    }

    #[test]
    fn key_rotation_forgets_buckets() {
        let limiter = RateLimiter::new("1,burst=1".parse().unwrap(), 10, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(limiter.check_at(a, t0).is_ok());
        assert!(limiter.check_at(a, t0).is_err());
        assert!(limiter.check_at(a, t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn instance_limit_counts_per_day_and_releases() {
        let limiter = InstanceLimiter::new(2);
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let inst = [7u8; 32];
        assert!(limiter.acquire(&inst, day).is_ok());
        assert!(limiter.acquire(&inst, day).is_ok());
        assert!(limiter.acquire(&inst, day).is_err());
        limiter.release(&inst, day);
        assert!(limiter.acquire(&inst, day).is_ok());
        assert!(limiter.acquire(&inst, day.succ_opt().unwrap()).is_ok());
    }
}
