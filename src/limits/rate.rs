//! Per-source token buckets.
//!
//! Buckets are keyed by an HMAC of the address (IPv4 /32, IPv6 /64) under a
//! random secret that exists only in memory and is replaced at least daily,
//! which also forgets every bucket. Memory is bounded: idle buckets are
//! dropped first, and when every bucket is active the least recently used
//! half goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::DEFAULT_RATE_LIMIT;
use crate::client_ip::canonical;

/// How often the in-memory address key is replaced.
pub const KEY_ROTATION: Duration = Duration::from_secs(24 * 3600);

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

/// Whole seconds to wait, rounded up, at least 1.
pub fn retry_seconds(wait: Duration) -> u32 {
    (wait.as_secs_f64().ceil() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
}
