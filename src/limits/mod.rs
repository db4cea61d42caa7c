//! Abuse and connection limits: a token bucket per source address
//! ([`rate`]), a daily cap per instance ([`instance`]), and the request
//! timeouts and connection bounds of the server.

use std::time::Duration;

use crate::client_ip::{Cidr, ClientIpHeader};

pub mod instance;
pub mod rate;

pub use instance::{InstanceLimiter, MAX_TRACKED_INSTANCES};
pub use rate::{retry_seconds, RateLimit, RateLimiter, KEY_ROTATION};

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
