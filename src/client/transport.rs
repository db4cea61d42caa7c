//! Talking to a collector over HTTP: bounded time, retries that cannot
//! double-count, and answers reduced to what an install needs to know.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::Catalog;

/// How long one request may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 4;
/// Largest answer body read from a collector.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Called with a one-line description of each retry.
pub type RetryNotice = Arc<dyn Fn(&str) + Send + Sync>;

/// Timeouts and retry policy.
#[derive(Clone)]
pub struct Options {
    /// Connect and total timeout of one request.
    pub timeout: Duration,
    /// Retries after the first attempt, on network errors, 429 and 5xx
    /// other than 500.
    pub retries: u32,
    /// Wait before the first retry; doubles with every retry, with jitter.
    pub base_delay: Duration,
    /// Longest wait between two attempts; a `Retry-After` asking for more
    /// ends the retries (an install must not hang for an hour).
    pub max_delay: Duration,
    /// Told about each retry, for people watching (the CLI prints it).
    pub on_retry: Option<RetryNotice>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            on_retry: None,
        }
    }
}

/// What the collector did with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Stored and counted; the names it ignored (not in its catalog).
    Accepted { ignored: Vec<String> },
    /// Already stored (an earlier attempt got through): not counted again.
    Duplicate,
}

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The collector answered and said no; retrying would not help.
    #[error("the collector refused the request (HTTP {status}): {detail}")]
    Refused { status: u16, detail: String },
    /// No usable answer after every attempt.
    #[error("no answer from the collector after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    /// The collector's answer was not what the API promises.
    #[error("unexpected answer from the collector: {0}")]
    Unexpected(String),
}

/// A connection to one collector.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    options: Options,
}

/// A raw answer.
struct Answer {
    status: u16,
    body: String,
}

impl Client {
    /// A client for the collector at `base` (`https://stats.example.org`).
    pub fn new(base: &str, options: Options) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.timeout))
            .http_status_as_error(false)
            // A redirect could send the report somewhere the administrator
            // did not agree to.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // No version in the user agent: one less detail about the install.
            .user_agent("anonstats-client")
            .build();
        Client {
            agent: config.into(),
            base: base.trim_end_matches('/').to_owned(),
            options,
        }
    }

    /// The collector's catalog, to check a report before sending it.
    pub fn fetch_catalog(&self) -> Result<Catalog, SendError> {
        let answer = self.request("GET", "/api/v1/catalog", None)?;
        match answer.status {
            200 => Catalog::from_json(&answer.body)
                .map_err(|e| SendError::Unexpected(format!("catalog: {e}"))),
            status => Err(refused(status, &answer.body)),
        }
    }

    /// Sends a report body (as built by [`super::Outgoing::body`]). Every
    /// attempt sends the same bytes, hence the same `report_id`: a report
    /// that got through on an attempt whose answer was lost is recognised as
    /// a duplicate, never counted twice.
    pub fn send_report(&self, body: &[u8]) -> Result<Delivery, SendError> {
        let answer = self.request("POST", "/api/v1/reports", Some(body))?;
        let json: Option<Value> = serde_json::from_str(&answer.body).ok();
        match answer.status {
            202 => Ok(Delivery::Accepted {
                ignored: json
                    .as_ref()
                    .and_then(|j| j["ignored"].as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            200 => Ok(Delivery::Duplicate),
            status => Err(refused(status, &answer.body)),
        }
    }

    /// Asks the collector to forget an install (`POST /api/v1/erasures`,
    /// the id in the body so that no access log on the way records it). The
    /// answer is the same whether or not the collector had anything stored.
    pub fn forget(&self, instance_id: &Uuid, product: Option<&str>) -> Result<(), SendError> {
        let mut body = serde_json::json!({"instance_id": instance_id.hyphenated().to_string()});
        if let Some(p) = product {
            body["product"] = Value::from(p);
        }
        let body = serde_json::to_vec(&body).expect("a JSON object serialises");
        let answer = self.request("POST", "/api/v1/erasures", Some(&body))?;
        match answer.status {
            200..=299 => Ok(()),
            status => Err(refused(status, &answer.body)),
        }
    }

    /// One request with the retry policy applied.
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, SendError> {
        let url = format!("{}{path}", self.base);
        let attempts = self.options.retries + 1;
        let mut attempt = 1;
        loop {
            let (failure, retry_after) = match self.once(method, &url, body) {
                Ok(a) if is_transient(a.answer.status) => {
                    let wait = a.retry_after;
                    (transient_reason(a.answer.status), wait)
                }
                Ok(a) => return Ok(a.answer),
                Err(Attempt::Permanent(e)) => {
                    return Err(SendError::Unavailable {
                        attempts: attempt,
                        last: e,
                    })
                }
                Err(Attempt::Transient(e)) => (e, None),
            };
            if attempt >= attempts {
                return Err(SendError::Unavailable {
                    attempts: attempt,
                    last: failure,
                });
            }
            let wait = match retry_after {
                Some(w) if w > self.options.max_delay => {
                    return Err(SendError::Unavailable {
                        attempts: attempt,
                        last: format!(
                            "{failure}, and the collector asks to wait {} s",
                            w.as_secs()
                        ),
                    })
                }
                Some(w) => w,
                None => self.backoff(attempt),
            };
            if let Some(notify) = &self.options.on_retry {
                notify(&format!(
                    "{failure}; retrying in {:.1} s (attempt {} of {attempts})",
                    wait.as_secs_f64(),
                    attempt + 1
                ));
            }
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// Exponential backoff with jitter: between half and all of
    /// `base * 2^(attempt-1)`, capped, so that installs that failed together
    /// do not all retry at the same instant.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .options
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.options.max_delay);
        let factor = rand::rng().random_range(0.5..=1.0);
        exp.mul_f64(factor)
    }

    fn once(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<Reply, Attempt> {
        let result = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .send(b),
            _ => self
                .agent
                .get(url)
                .header("Accept", "application/json")
                .call(),
        };
        let mut response = result.map_err(classify)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(classify)?;
        Ok(Reply {
            answer: Answer { status, body },
            retry_after,
        })
    }
}

struct Reply {
    answer: Answer,
    retry_after: Option<Duration>,
}

enum Attempt {
    /// Worth another try (connection refused, timeout, reset).
    Transient(String),
    /// A mistake on our side (bad URL): retrying cannot help.
    Permanent(String),
}

fn classify(e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::RequireHttpsOnly(_) => Attempt::Permanent(e.to_string()),
        other => Attempt::Transient(other.to_string()),
    }
}

/// 429 and the gateway-ish 5xx answers mean "later". 500 does not: a
/// collector that fails on this report would fail again.
fn is_transient(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// What a "later" answer means, for the people watching.
fn transient_reason(status: u16) -> String {
    match status {
        429 => "HTTP 429: rate-limited by the collector".to_owned(),
        503 => "HTTP 503: the collector is busy or its database is down".to_owned(),
        other => format!("HTTP {other}: the collector's gateway could not reach it"),
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A refusal, with the problem's own words when it sent problem+json.
fn refused(status: u16, body: &str) -> SendError {
    let problem: Option<Value> = serde_json::from_str(body).ok();
    let detail = problem
        .as_ref()
        .map(|p| {
            let mut parts = Vec::new();
            match p["errors"].as_array() {
                Some(errors) if !errors.is_empty() => {
                    for e in errors {
                        let field = e["field"].as_str().unwrap_or("");
                        let detail = e["detail"].as_str().unwrap_or("");
                        parts.push(if field.is_empty() {
                            detail.to_owned()
                        } else {
                            format!("{field}: {detail}")
                        });
                    }
                }
                _ => parts.extend(p["detail"].as_str().map(str::to_owned)),
            }
            parts.join("; ")
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "no details".to_owned());
    SendError::Refused { status, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let client = Client::new(
            "http://127.0.0.1:9",
            Options {
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(1000),
                ..Options::default()
            },
        );
        for attempt in 1..=8 {
            let d = client.backoff(attempt);
            let full =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(1000));
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn refusals_carry_the_problem_details() {
        let body = r#"{"type":"x","title":"Bad Request","status":400,"detail":"version: bad","errors":[{"field":"version","detail":"bad"},{"field":"event","detail":"enum"}]}"#;
        let e = refused(400, body);
        assert_eq!(
            e.to_string(),
            "the collector refused the request (HTTP 400): version: bad; event: enum"
        );
    }
}
