//! Nothing leaves an install before consent: `anonstats send --dry-run` and
//! `--explain` never connect to anything, whether or not a collector is
//! configured and whether or not the administrator opted in. These tests
//! need no database: the client never touches one.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{anonstats_blocking, stderr, ClientDir};

/// The report flags of these tests.
const REPORT: &[&str] = &[
    "--event",
    "install",
    "--version",
    "4.10.1",
    "--attribute",
    "edition=ce",
    "--counter",
    "users=42",
];

/// A socket the test listens on where a collector would be; it accepts
/// nothing by itself, so any connection attempt is seen by [`Listener::connections`].
struct Listener {
    listener: TcpListener,
    url: String,
}

impl Listener {
    fn open() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Listener { listener, url }
    }

    /// Connections that arrived, polled for about a second: a client that
    /// connected just before exiting has long reached the backlog by then.
    fn connections(&self) -> usize {
        let mut n = 0;
        let until = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < until {
            match self.listener.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        n
    }
}

fn args(dir: &ClientDir, mode: &str, extra: &[&str]) -> Vec<String> {
    ["send", "--config", dir.config(), mode]
        .iter()
        .chain(extra)
        .chain(REPORT)
        .map(|s| s.to_string())
        .collect()
}

/// The stdout of a dry run, as the report it is.
fn payload(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(report["event"], "install");
    assert_eq!(report["version"], "4.10.1");
    assert_eq!(report["attributes"]["edition"], "ce");
    assert_eq!(report["counters"]["users"], 42);
    report
}

fn assert_explains(out: &std::process::Output) {
    assert!(out.status.success(), "{}", stderr(out));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "event = install",
        "attributes.edition = ce",
        "counters.users = 42",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn previews_before_opt_in_never_connect_to_the_collector() {
    let collector = Listener::open();
    let dir = ClientDir::new();
    let flags = ["--collector", collector.url.as_str()];

    let dry_run = anonstats_blocking(&args(&dir, "--dry-run", &flags));
    let explain = anonstats_blocking(&args(&dir, "--explain", &flags));

    let report = payload(&dry_run);
    assert!(report.get("instance_id").is_none(), "no id before opt-in");
    assert_explains(&explain);
    assert_eq!(
        collector.connections(),
        0,
        "a preview before consent must not reach the collector"
    );
    assert!(!dir.config.exists(), "a preview writes no opt-in file");
}

#[test]
fn previews_after_opt_in_never_connect_either() {
    let collector = Listener::open();
    let dir = ClientDir::new();
    let opt_in = anonstats_blocking(
        &[
            "send",
            "--config",
            dir.config(),
            "--opt-in",
            "--collector",
            &collector.url,
        ]
        .map(String::from),
    );
    assert!(opt_in.status.success(), "{}", stderr(&opt_in));
    let id = dir.read()["instance_id"].as_str().unwrap().to_owned();

    // The collector comes from the opt-in file here.
    let dry_run = anonstats_blocking(&args(&dir, "--dry-run", &[]));
    let explain = anonstats_blocking(&args(&dir, "--explain", &[]));

    assert_eq!(payload(&dry_run)["instance_id"], id.as_str());
    assert_explains(&explain);
    assert_eq!(
        collector.connections(),
        0,
        "opt-in and previews send nothing"
    );
}

#[test]
fn previews_work_offline_without_any_collector_configured() {
    let dir = ClientDir::new();
    let started = Instant::now();
    let dry_run = anonstats_blocking(&args(&dir, "--dry-run", &[]));
    let explain = anonstats_blocking(&args(&dir, "--explain", &[]));
    let elapsed = started.elapsed();

    payload(&dry_run);
    assert_explains(&explain);
    for out in [&dry_run, &explain] {
        let err = stderr(out);
        // Resolving the placeholder host or trying to connect would show as
        // a failed fetch (this sandbox has no route to it) or as time.
        assert!(!err.contains("cannot fetch"), "{err}");
        assert!(!err.contains("stats.example.org"), "{err}");
        assert!(err.contains("no connection was made"), "{err}");
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "two previews took {elapsed:?}: something waited for the network"
    );
}

#[test]
fn a_catalog_file_replaces_the_built_in_one_for_previews() {
    let collector = Listener::open();
    let dir = ClientDir::new();
    let catalog = dir.config.with_file_name("catalog.json");
    std::fs::create_dir_all(catalog.parent().unwrap()).unwrap();
    std::fs::write(
        &catalog,
        r#"{"format":1,"products":{"widget":{"counters":{"users":{"max":10}}}}}"#,
    )
    .unwrap();
    let flags = [
        "--collector",
        collector.url.as_str(),
        "--catalog",
        catalog.to_str().unwrap(),
    ];
    let base = ["send", "--config", dir.config(), "--dry-run"];
    let run = |more: &[&str]| {
        anonstats_blocking(
            &base
                .iter()
                .chain(&flags)
                .chain(more)
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
    };

    let fits = run(&[
        "--event",
        "install",
        "--version",
        "1.0.0",
        "--counter",
        "users=3",
    ]);
    let too_many = run(&[
        "--event",
        "install",
        "--version",
        "1.0.0",
        "--counter",
        "users=11",
        "--strict",
    ]);

    assert!(fits.status.success(), "{}", stderr(&fits));
    let report: Value = serde_json::from_slice(&fits.stdout).unwrap();
    assert_eq!(report["product"], "widget", "the file's first product");
    assert!(!too_many.status.success(), "the file's bound is applied");
    assert!(
        stderr(&too_many).contains("counters.users"),
        "{}",
        stderr(&too_many)
    );
    assert_eq!(collector.connections(), 0);
}
