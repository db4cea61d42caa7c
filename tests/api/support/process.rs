//! The real binary: a collector process with its logs captured, and
//! commands run the way an administrator runs them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{test_today, TestDb, TEST_TOKEN};

/// A collector running as a separate process (the real binary), with its
/// stderr captured.
pub struct CollectorProcess {
    pub child: Child,
    /// The port it listens on, from its "collector listening" line.
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

    /// Everything it wrote to stderr and stdout so far.
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

/// Runs the real binary with `args`, from a blocking thread so that an
/// in-process collector keeps serving.
pub async fn anonstats(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    actix_web::rt::task::spawn_blocking(move || anonstats_blocking(&args))
        .await
        .expect("join")
}

/// Runs the real binary with `args` and waits for it; no opt-in file or
/// collector comes from the environment, and "today" is [`test_today`].
pub fn anonstats_blocking(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(args)
        .env_remove("ANONSTATS_CLIENT_CONFIG")
        .env_remove("ANONSTATS_COLLECTOR")
        .env("HOME", std::env::temp_dir())
        .env(anonstats::clock::TODAY_ENV, test_today().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run anonstats")
}

/// The stderr of a command, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary directory with an opt-in file path inside it.
pub struct ClientDir {
    _dir: tempfile::TempDir,
    /// Where the opt-in file is (or will be).
    pub config: PathBuf,
}

impl ClientDir {
    /// A new, empty directory.
    pub fn new() -> ClientDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("etc").join("client.json");
        ClientDir { _dir: dir, config }
    }

    /// The opt-in file's path, as text for a command line.
    pub fn config(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// The opt-in file as JSON.
    pub fn read(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.config).expect("opt-in file"))
            .expect("JSON opt-in file")
    }
}
