//! A collector inside the test process, on port 0, and the requests the
//! tests send it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anonstats::config::Config;
use anonstats::startup::Application;
use serde_json::Value;

use super::{test_today, TestDb, TEST_K, TEST_TOKEN};

static TRACING: std::sync::Once = std::sync::Once::new();

/// Logs of in-process collectors are shown only with TEST_LOG=1.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            anonstats::telemetry::init(anonstats::telemetry::LogFormat::Text);
        }
    });
}

/// A collector running inside the test process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    pub port: u16,
    /// The database it runs on.
    pub db: TestDb,
    /// A client that presents [`TEST_TOKEN`] on every request.
    pub client: awc::Client,
    pub handle: actix_web::dev::ServerHandle,
}

/// A test HTTP response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics, showing it, if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Starts a collector on `db` with default settings.
pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

/// Starts a collector on `db`, letting the test adjust the configuration.
pub async fn spawn_app_with(db: TestDb, adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_tracing();
    let mut config = Config::new(db.url.clone());
    config.bind = "127.0.0.1:0".into();
    config.workers = Some(2);
    config.shutdown_timeout = 5;
    // Tests post hundreds of reports from one address and instance quickly;
    // the abuse limits have tests of their own that turn them back on.
    config.limits.rate_limit = anonstats::limits::RateLimit::DISABLED;
    config.limits.read_rate_limit = anonstats::limits::RateLimit::DISABLED;
    config.limits.instance_daily_limit = 0;
    config.clock = anonstats::clock::Clock::Fixed(test_today());
    config.stats.k = TEST_K;
    config.stats.token = anonstats::reporting::StatsToken::new(TEST_TOKEN);
    adjust(&mut config);
    let app = Application::build(config).expect("build collector");
    let port = app.port();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .add_default_header(("Authorization", format!("Bearer {TEST_TOKEN}")))
            .finish(),
        handle,
    }
}

impl TestApp {
    /// POSTs a JSON value to the v1 report endpoint.
    pub async fn post_report(&self, report: &Value) -> Reply {
        self.post(
            "/api/v1/reports",
            "application/json",
            report.to_string().into_bytes(),
        )
        .await
    }

    /// POSTs raw bytes with a content type.
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let res = self
            .client
            .post(format!("{}{path}", self.address))
            .insert_header(("Content-Type", content_type))
            .send_body(body)
            .await
            .expect("request sent");
        read_reply(res).await
    }

    /// GETs a path.
    pub async fn get(&self, path: &str) -> Reply {
        let res = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent");
        read_reply(res).await
    }

    /// GETs a path as the public would: no token, no session.
    pub async fn get_anonymous(&self, path: &str) -> Reply {
        let res = awc::Client::builder()
            .disable_redirects()
            .timeout(Duration::from_secs(30))
            .finish()
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent");
        read_reply(res).await
    }

    /// Stops the server (finishing in-flight requests).
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Reads a whole response (up to 4 MiB).
pub async fn read_reply<S>(mut res: awc::ClientResponse<S>) -> Reply
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = res.body().limit(1 << 22).await.expect("read body").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// Sends raw bytes over a TCP connection from `source` (a loopback address
/// of the test's choosing) and returns the raw response.
pub fn raw_http(port: u16, source: std::net::IpAddr, request: &[u8]) -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind source address");
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}
