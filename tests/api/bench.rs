//! The benchmark tool itself: a tiny run must produce every row of the
//! table, so that `anonstats bench` keeps working as the collector changes.
//! No figure is judged here; speed is for the benchmark to report.

use std::process::Command;

use serde_json::Value;

use crate::support::POSTGRES_ENV;

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
        "disk.bytes_per_instance",
    ]
    .map(String::from)
    .to_vec();
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
    let postgres = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anonstats"));
    cmd.args([
        "bench",
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
    .arg(&json_path)
    .env_remove("ANONSTATS_BENCH_POSTGRES_URL")
    .env("RUST_LOG", "warn");
    if let Some(url) = &postgres {
        cmd.args(["--postgres", url]);
    } else {
        crate::support::skip_postgres(concat!(
            module_path!(),
            "::quick_bench_writes_every_row (PostgreSQL phases)"
        ));
    }

    let output = cmd.output().expect("run anonstats bench");

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
