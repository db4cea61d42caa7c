//! Test harness: fresh databases, in-process collectors and collector
//! processes, and direct database inspection.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anonstats::config::Config;
use anonstats::db::{DbConn, Manager};
use anonstats::startup::Application;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::{json, Value};

/// Environment variable naming a PostgreSQL server for the tests.
pub const POSTGRES_ENV: &str = "ANONSTATS_TEST_POSTGRES_URL";

/// Environment variable pinning the day the whole suite runs at
/// (YYYY-MM-DD); without it, the first of [`PINNED_DAYS`].
pub const TODAY_ENV: &str = "ANONSTATS_TEST_TODAY";

/// Days the date-sensitive tests run at: the first and the last day of a
/// month, New Year's Eve and New Year's Day, and a leap day.
pub const PINNED_DAYS: [&str; 5] = [
    "2026-12-01",
    "2026-11-30",
    "2026-12-31",
    "2027-01-01",
    "2028-02-29",
];

/// The stats token of the test collectors. Their `client` presents it on
/// every request; `get_anonymous` does not.
pub const TEST_TOKEN: &str = "test-stats-token-0123456789abcdef";

/// k of the test collectors and CLI runs. Most test populations are sized
/// for it; the tests of the production default (10) set it themselves.
pub const TEST_K: u32 = 5;

/// Parses a YYYY-MM-DD day.
pub fn day(s: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// "Today" for every collector, CLI run and seeded record of the suite:
/// never the system clock, so that each test passes on any date.
pub fn test_today() -> chrono::NaiveDate {
    match std::env::var(TODAY_ENV) {
        Ok(s) if !s.is_empty() => day(&s),
        _ => day(PINNED_DAYS[0]),
    }
}

/// Which backend a test body runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body on SQLite and on PostgreSQL (skipped, with a
/// message, when no server is configured).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::TestDb::new(
                    $crate::helpers::Backend::Sqlite,
                ))
                .await;
            }

            #[actix_web::test]
            async fn postgres() {
                match $crate::helpers::TestDb::postgres() {
                    Some(db) => super::$name(db).await,
                    None => $crate::helpers::skip_postgres(concat!(module_path!(), "::postgres")),
                }
            }
        }
    };
}

/// Prints why a PostgreSQL test did nothing. Written to stderr directly so
/// that the test harness does not swallow it.
pub fn skip_postgres(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: set {POSTGRES_ENV} to run it against PostgreSQL"
    );
}

static TRACING: std::sync::Once = std::sync::Once::new();

/// Logs of in-process collectors are shown only with TEST_LOG=1.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            anonstats::telemetry::init(anonstats::telemetry::LogFormat::Text);
        }
    });
}

/// A fresh, empty database, removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    dir: Option<tempfile::TempDir>,
    admin_url: Option<String>,
    name: String,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("anonstats.db");
                TestDb {
                    backend,
                    url: path.to_string_lossy().into_owned(),
                    dir: Some(dir),
                    admin_url: None,
                    name: String::new(),
                }
            }
            Backend::Postgres => Self::postgres().expect("postgres configured"),
        }
    }

    /// A fresh PostgreSQL database, if a server is configured.
    pub fn postgres() -> Option<TestDb> {
        let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty())?;
        // A local test server needs no TLS; without it, no thread of the
        // test process is inside OpenSSL when the process exits (its exit
        // handlers then free what such a thread still uses).
        let admin_url = if admin_url.contains("sslmode=") {
            admin_url
        } else if admin_url.contains('?') {
            format!("{admin_url}&sslmode=disable")
        } else {
            format!("{admin_url}?sslmode=disable")
        };
        let name = format!("anonstats_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url).expect("connect to test PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create test database");
        let url = replace_database(&admin_url, &name);
        Some(TestDb {
            backend: Backend::Postgres,
            url,
            dir: None,
            admin_url: Some(admin_url),
            name,
        })
    }

    /// The PostgreSQL database's name (empty on SQLite).
    pub fn database_name(&self) -> &str {
        &self.name
    }

    /// A direct connection for inspecting what was stored.
    pub fn conn(&self) -> DbConn {
        Manager::new(&self.url)
            .establish()
            .expect("connect to test database")
    }

    /// Path of the SQLite file (SQLite only).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Sqlite).then(|| PathBuf::from(&self.url))
    }

    /// Number of rows of a table.
    pub fn count(&self, table: &str) -> i64 {
        scalar(
            &mut self.conn(),
            &format!("SELECT COUNT(*) AS n FROM {table}"),
        )
    }

    /// Sum of reports in daily_events matching a SQL condition.
    pub fn reports(&self, condition: &str) -> i64 {
        scalar(
            &mut self.conn(),
            &format!("SELECT CAST(COALESCE(SUM(reports), 0) AS BIGINT) AS n FROM daily_events WHERE {condition}"),
        )
    }

    /// Every stored text value of every user table, with its table and
    /// column, for privacy checks.
    pub fn all_text(&self) -> Vec<(String, String, String)> {
        let mut conn = self.conn();
        let columns: Vec<(String, String)> = match self.backend {
            Backend::Sqlite => {
                #[derive(QueryableByName)]
                struct T {
                    #[diesel(sql_type = Text)]
                    name: String,
                }
                let tables: Vec<T> = diesel::sql_query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .load(&mut conn)
                .unwrap();
                let mut out = Vec::new();
                for t in tables {
                    let cols: Vec<T> = diesel::sql_query(format!(
                        "SELECT name FROM pragma_table_info('{}')",
                        t.name
                    ))
                    .load(&mut conn)
                    .unwrap();
                    out.extend(cols.into_iter().map(|c| (t.name.clone(), c.name)));
                }
                out
            }
            Backend::Postgres => {
                #[derive(QueryableByName)]
                struct TC {
                    #[diesel(sql_type = Text)]
                    table_name: String,
                    #[diesel(sql_type = Text)]
                    column_name: String,
                    #[diesel(sql_type = Text)]
                    data_type: String,
                }
                let rows: Vec<TC> = diesel::sql_query(
                    "SELECT table_name::text AS table_name, column_name::text AS column_name,
                            data_type::text AS data_type
                     FROM information_schema.columns c WHERE table_schema = 'public'
                     AND EXISTS (SELECT 1 FROM information_schema.tables t
                                 WHERE t.table_schema = 'public' AND t.table_name = c.table_name
                                 AND t.table_type = 'BASE TABLE')",
                )
                .load(&mut conn)
                .unwrap();
                // Binary columns are marked so that they are read as hex.
                rows.into_iter()
                    .map(|r| {
                        let column = if r.data_type == "bytea" {
                            format!("\u{0}{}", r.column_name)
                        } else {
                            r.column_name
                        };
                        (r.table_name, column)
                    })
                    .collect()
            }
        };
        #[derive(QueryableByName)]
        struct V {
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            v: Option<String>,
        }
        let mut out = Vec::new();
        for (table, column) in columns {
            let (column, binary) = match column.strip_prefix('\u{0}') {
                Some(c) => (c.to_owned(), true),
                None => (column, false),
            };
            let cast = match self.backend {
                Backend::Sqlite => format!("CASE WHEN typeof(\"{column}\") = 'blob' THEN lower(hex(\"{column}\")) ELSE CAST(\"{column}\" AS TEXT) END"),
                Backend::Postgres if binary => format!("encode(\"{column}\", 'hex')"),
                Backend::Postgres => format!("CAST(\"{column}\" AS TEXT)"),
            };
            let values: Vec<V> = diesel::sql_query(format!("SELECT {cast} AS v FROM \"{table}\""))
                .load(&mut conn)
                .unwrap();
            out.extend(
                values
                    .into_iter()
                    .filter_map(|v| v.v)
                    .map(|v| (table.clone(), column.clone(), v)),
            );
        }
        out
    }

    /// The whole database as bytes: the SQLite file and its WAL, or a
    /// pg_dump of the PostgreSQL database.
    pub fn raw_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let mut bytes = std::fs::read(&self.url).expect("read SQLite file");
                for suffix in ["-wal", "-journal"] {
                    if let Ok(extra) = std::fs::read(format!("{}{suffix}", self.url)) {
                        bytes.extend(extra);
                    }
                }
                bytes
            }
            Backend::Postgres => {
                let out = Command::new("pg_dump")
                    .arg("--no-owner")
                    .arg(&self.url)
                    .output()
                    .expect("run pg_dump (PostgreSQL client tools must be installed)");
                assert!(
                    out.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(admin_url) = &self.admin_url {
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut admin);
            }
        }
    }
}

/// Replaces the database name of a PostgreSQL URL.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// Runs a query returning one BIGINT column named `n`.
pub fn scalar(conn: &mut DbConn, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<N>(conn).expect(sql).n
}

/// A collector running inside the test process.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: TestDb,
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
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

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

/// A full, valid v1 report (the README's example) with fresh ids.
pub fn sample_report() -> Value {
    json!({
        "schema_version": 1,
        "report_id": uuid::Uuid::new_v4().to_string(),
        "instance_id": uuid::Uuid::new_v4().to_string(),
        "product": "passbolt",
        "event": "update",
        "version": "4.10.1",
        "previous_version": "4.9.0",
        "attributes": {"edition": "ce", "php_version": "8.2", "db_engine": "mariadb", "os_family": "debian", "install_method": "package"},
        "counters": {"users": 42, "groups": 5, "resources": 1234, "folders": 17},
        "features": {"mfa": true, "ldap": false, "sso": false}
    })
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

/// A collector running as a separate process (the real binary), with its
/// stderr captured.
pub struct CollectorProcess {
    pub child: Child,
    pub port: u16,
    pub logs: Arc<Mutex<String>>,
}

impl CollectorProcess {
    /// Starts `anonstats serve` on `db` with JSON logs at trace level.
    pub fn start(db: &TestDb, extra_args: &[&str], env: &[(&str, &str)]) -> CollectorProcess {
        Self::start_url(&db.url, extra_args, env)
    }

    /// Starts `anonstats serve` on a database URL of the test's making
    /// (e.g. through a relay, or on a special file system).
    pub fn start_url(url: &str, extra_args: &[&str], env: &[(&str, &str)]) -> CollectorProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anonstats"));
        cmd.args([
            "--log-format",
            "json",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database",
            url,
        ])
        .args(extra_args)
        .env("RUST_LOG", "trace")
        .env_remove("ANONSTATS_SECRET")
        // As in spawn_app: abuse limits off unless a test sets them.
        .env("ANONSTATS_RATE_LIMIT", "0")
        .env("ANONSTATS_READ_RATE_LIMIT", "0")
        .env("ANONSTATS_INSTANCE_DAILY_LIMIT", "0")
        .env(anonstats::clock::TODAY_ENV, test_today().to_string())
        .env("ANONSTATS_STATS_TOKEN", TEST_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start anonstats");
        let logs = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("collector listening") {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if let Some(p) = v["port"].as_u64() {
                            let _ = port_tx.send(p as u16);
                        }
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("collector did not start: {}", logs.lock().unwrap()));
        CollectorProcess { child, port, logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The logs once `ready` holds for them (lines reach the test through
    /// a pipe and a reader thread, a little after the process wrote them),
    /// or as they are after 10 s.
    pub fn logs_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if ready(&logs) || Instant::now() >= deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the log readers drain.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "collector did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
