//! The benchmark tool itself: a tiny run must produce every row of the
//! table, so that `anonstats-bench` keeps working as the collector changes.
//! No figure is judged here; speed is for the benchmark to report.
//!
//! The tool drives the `anonstats` binary of the same target directory;
//! the tests build it first, as `cargo test` of this package alone does not.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// PostgreSQL administrator URL of the test suite; without it, the
/// PostgreSQL phases are skipped.
const POSTGRES_ENV: &str = "ANONSTATS_TEST_POSTGRES_URL";

/// `anonstats-bench`, with an up-to-date `anonstats` next to it.
fn bench() -> Command {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_anonstats-bench"));
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "-p", "anonstats", "--bin", "anonstats"]);
        // The profile of this test's binaries, read from where they are.
        if exe.parent().and_then(|d| d.file_name()) == Some("release".as_ref()) {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "cannot build the anonstats binary");
        exe.with_file_name("anonstats")
    });
    let mut cmd = Command::new(&exe);
    cmd.env_remove("ANONSTATS_BENCH_POSTGRES_URL")
        .env_remove("ANONSTATS_BENCH_COLLECTOR")
        .env("RUST_LOG", "warn");
    cmd
}

fn postgres(test: &str) -> Option<String> {
    let url = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty());
    if url.is_none() {
        eprintln!("skipped {test} (PostgreSQL): set {POSTGRES_ENV} to run it against PostgreSQL");
    }
    url
}

/// Every row the performance goals ask for, per backend.
fn expected_rows(backend: &str) -> Vec<String> {
    let mut names: Vec<String> = [
        "max_rps",
        "ratio_to_baseline",
        "overload.peak_rss_mib",
        "overload.p99_503_ms",
        "overload.accepted_ratio",
        "seeded.max_rps",
        "seeded.ratio",
        "seeded.bytes_per_report",
        "ratio_at_256",
        "disk.bytes_per_instance",
        "hostile.alone_rps",
    ]
    .map(String::from)
    .to_vec();
    for flood in [
        "stats_one_source",
        "stats_many_sources",
        "erasures_one_source",
        "erasures_many_sources",
        "slowloris",
    ] {
        names.push(format!("hostile.{flood}.ratio"));
        names.push(format!("hostile.{flood}.report_5xx"));
    }
    for load in ["open50", "open80"] {
        for m in ["p50_ms", "p99_ms", "p999_ms", "errors"] {
            names.push(format!("{load}.{m}"));
        }
    }
    for endpoint in [
        "summary",
        "events_day",
        "events_month",
        "versions",
        "attributes_php_version",
        "counters",
        "features",
        "upgrades",
    ] {
        names.push(format!("stats.{endpoint}.p50_ms"));
        names.push(format!("stats.{endpoint}.warm_p50_ms"));
    }
    names.iter().map(|n| format!("{backend}.{n}")).collect()
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("row {id} missing from the JSON output"))
}

#[test]
fn quick_bench_writes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let postgres = postgres("quick_bench_writes_every_row");
    let mut cmd = bench();
    cmd.args([
        "--quick",
        "--instances",
        "300",
        "--days",
        "40",
        "--duration",
        "400ms",
        "--overload-duration",
        "400ms",
        "--overload-connections",
        "32",
        "--stats-requests",
        "2",
        "--json",
    ])
    .arg(&json_path);
    if let Some(url) = &postgres {
        cmd.args(["--postgres", url]);
    }

    let output = cmd.output().expect("run anonstats-bench");

    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench failed:\n{stderr}\n{stdout}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let rows = doc["rows"].as_array().expect("rows");
    for id in [
        "baseline.max_rps",
        "baseline.open50.p99_ms",
        "baseline.open80.p99_ms",
    ] {
        assert_eq!(row(rows, id)["status"], "info", "{id}");
    }
    assert!(row(rows, "baseline.max_rps")["value"].as_f64().unwrap() > 0.0);
    let measured = |backend: &str| {
        for id in expected_rows(backend) {
            let r = row(rows, &id);
            let status = r["status"].as_str().unwrap();
            if id.ends_with(".warm_p50_ms") {
                // Cached answers have no target: context only.
                assert!(["info", "missing"].contains(&status), "{id}: {status}");
            } else if id.contains(".stats.") {
                // The stats API may not be served by this version.
                assert!(
                    ["pass", "fail", "missing"].contains(&status),
                    "{id}: {status}"
                );
            } else {
                assert!(
                    ["pass", "fail", "info", "not_applicable"].contains(&status),
                    "{id}: {status}"
                );
            }
            // The table for people shows the row too.
            assert!(stdout.contains(r["what"].as_str().unwrap()), "{id}");
        }
        let max = row(rows, &format!("{backend}.max_rps"))["value"].as_f64();
        assert!(max.is_some_and(|v| v > 0.0), "{backend}: no rate measured");
        let written = row(rows, &format!("{backend}.seeded.bytes_per_report"))["value"].as_f64();
        // PostgreSQL's processes can only be read on its own machine.
        if backend == "sqlite" {
            assert!(
                written.is_some_and(|v| v > 0.0),
                "{backend}: no bytes written per report measured"
            );
        }
        let disk = row(rows, &format!("{backend}.disk.bytes_per_instance"))["value"].as_f64();
        assert!(
            disk.is_some_and(|v| v > 0.0),
            "{backend}: no disk use measured"
        );
    };
    measured("sqlite");
    match postgres {
        Some(_) => measured("postgres"),
        None => {
            for id in expected_rows("postgres") {
                assert_eq!(row(rows, &id)["status"], "skipped", "{id}");
            }
            assert!(stderr.contains("PostgreSQL phases skipped"), "{stderr}");
        }
    }
}

#[test]
fn erasure_times_both_kinds() {
    let mut cmd = bench();
    cmd.args(["erasure", "--count", "5", "--warmup", "1"]);
    if let Some(url) = postgres("erasure_times_both_kinds") {
        cmd.args(["--postgres", &url]);
    }
    let output = cmd.output().expect("run anonstats-bench erasure");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "erasure failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for kind in ["stored", "unknown", "ratio"] {
        assert!(stdout.contains(&format!("sqlite    {kind}")), "{stdout}");
    }
}

#[test]
fn a_missing_collector_is_named() {
    let output = bench()
        .args(["run", "--quick", "--collector", "/nonexistent/anonstats"])
        .output()
        .expect("run anonstats-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no collector binary at /nonexistent/anonstats"),
        "{stderr}"
    );
}
