//! `GET /metrics` and readiness.

use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

/// The value of one sample line (`name{labels} value`) of an exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

async fn metrics_count_outcomes_with_fixed_labels_only(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();
    let instance_id = report["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_report(&report).await.status, 202);
    assert_eq!(app.post_report(&report).await.status, 200);
    let bad = ReportBuilder::new()
        .field("colour", "blue")
        .counter("users", -1)
        .build();
    assert_eq!(app.post_report(&bad).await.status, 400);
    assert_eq!(
        app.post("/api/v1/reports", "text/plain", b"{}".to_vec())
            .await
            .status,
        415
    );

    let reply = app.get("/metrics").await;

    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = reply.text();
    // No metric counts installs, not even those the daily limit tracks.
    assert!(
        !text.contains("anonstats_instance_limit_instances"),
        "{text}"
    );
    let get = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
    assert_eq!(get("anonstats_reports_total{outcome=\"accepted\"}"), 1.0);
    assert_eq!(get("anonstats_reports_total{outcome=\"duplicate\"}"), 1.0);
    assert_eq!(get("anonstats_reports_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(
        get("anonstats_reports_total{outcome=\"unsupported_media_type\"}"),
        1.0
    );
    assert_eq!(
        get("anonstats_reports_rejected_total{rule=\"unknown_field\"}"),
        1.0
    );
    assert_eq!(
        get("anonstats_reports_rejected_total{rule=\"minimum\"}"),
        1.0
    );
    assert_eq!(
        get("anonstats_writer_batch_size_count"),
        2.0,
        "two reports reached the writer"
    );
    assert_eq!(get("anonstats_writer_commit_seconds_count"), 2.0);
    assert_eq!(get("anonstats_ingest_queue_depth"), 0.0);
    assert_eq!(get("anonstats_database_errors_total"), 0.0);
    assert_eq!(get("anonstats_database_up"), 1.0);
    assert_eq!(get("anonstats_storage_errors_total"), 0.0);
    assert_eq!(get("anonstats_storage_recoveries_total"), 0.0);
    // Every label is one of a few fixed names with a fixed-vocabulary value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(start) = line.find('{') {
            let labels = &line[start + 1..line.find('}').unwrap()];
            let (key, value) = labels.split_once('=').unwrap();
            assert!(["outcome", "rule", "le"].contains(&key), "{line}");
            assert!(
                value
                    .trim_matches('"')
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.+eInf".contains(c)),
                "{line}"
            );
        }
    }
    assert!(!text.contains(&instance_id));
    assert!(!text.contains("colour") && !text.contains("blue"));
}
on_both_backends!(metrics_count_outcomes_with_fixed_labels_only);

async fn readiness_reports_queue_and_writer(db: TestDb) {
    let app = spawn_app(db).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    let body = ready.json();
    assert_eq!(body["writer"], true);
    assert_eq!(body["queue_depth"], 0);
    assert!(body["queue_capacity"].as_u64().unwrap() > 0);
}
on_both_backends!(readiness_reports_queue_and_writer);

fn text_logs_written_to_a_file_carry_no_colour_escapes(db: TestDb) {
    // As under systemd, `docker logs` or `2> log`: stderr is a file.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("collector.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &db.url])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("ANONSTATS_LOG_FORMAT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let port_line = regex::Regex::new(r"collector listening.*port=(\d+)").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let port: u16 = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if let Some(c) = port_line.captures(&text) {
            break c[1].parse().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "not started: {text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };

    let answer = raw_http(
        port,
        "127.0.0.1".parse().unwrap(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let logs = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("request"), "the access line is there: {text}");
    assert!(
        !logs.contains(&0x1b),
        "escape bytes in the log file: {text:?}"
    );
}
on_both_backends_sync!(text_logs_written_to_a_file_carry_no_colour_escapes);
