//! A storage error is never acknowledged. Under load, the collector's
//! commit flushes (both backends) or its SQLite checkpoints are made to fail
//! with `EIO` through its fault-injection switch (`ANONSTATS_STORAGE_FAULTS`,
//! see docs/reliability.md), as a disk whose write-back failed would make
//! them fail. While they fail, every report is refused with 503 and
//! `Retry-After`; once they stop, intake resumes only after the database
//! was reopened; and after clients retried what was not acknowledged with
//! the same `report_id`, the stored counts equal the distinct reports
//! acknowledged, none lost or counted twice.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::on_both_backends;
use crate::operations::faults::{
    instance_ids, new_report, post, settle_and_assert_exact, Answer, Ledger, Load,
};
use crate::operations::operability::sample;
use crate::support::*;

/// The fault-injection variable (kept out of `--help`).
const FAULTS_ENV: &str = "ANONSTATS_STORAGE_FAULTS";

/// Generous bound on anything the test waits for, only to avoid a hang.
const PATIENCE: Duration = Duration::from_secs(60);

/// One instance for the reports the test sends itself.
const INSTANCE: &str = "5b0c8e1a-3f2d-4c6b-9a7e-1d2f3a4b5c6d";

/// `GET /metrics` with the stats token.
fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: stats\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(port: u16, name: &str) -> f64 {
    let text = metrics(port);
    sample(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

/// Index of the first JSON log line at `level` whose message starts with
/// `message`.
fn log_line(logs: &str, level: &str, message: &str) -> Option<usize> {
    logs.lines().position(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| {
            v["level"] == level
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
        })
    })
}

/// Sends reports of its own until one is acknowledged, and keeps each in
/// the ledger as a client would.
fn post_until_stored(port: u16, ledger: &Mutex<Ledger>) {
    let started = Instant::now();
    loop {
        let report = new_report(&[INSTANCE.to_owned()]);
        let answer = post(port, &report.body);
        let mut l = ledger.lock().unwrap();
        if answer == Answer::Stored {
            l.acked.push(report);
        } else {
            l.pending.push(report);
        }
        drop(l);
        if answer == Answer::Stored {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "intake did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the load, makes `fault` fail (a file of that name in the fault
/// directory) until every refusal checked, then lets it stop.
fn a_storage_error_is_never_acknowledged(db: TestDb, fault: &str, error_message: &str) {
    let switch = tempfile::tempdir().unwrap();
    let switch_dir = switch.path().to_string_lossy().into_owned();
    let mut collector = CollectorProcess::start(&db, &[], &[(FAULTS_ENV, &switch_dir)]);
    let port = collector.port;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load = Load::start(vec![port], instance_ids(), ledger.clone());
    let started = Instant::now();
    while ledger.lock().unwrap().acked.len() < 20 {
        assert!(
            started.elapsed() < PATIENCE,
            "the load never reached the collector"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked_before = ledger.lock().unwrap().acked.len();

    let trigger = switch.path().join(fault);
    std::fs::write(&trigger, b"").unwrap();
    let failing = Instant::now();
    while metric(port, "anonstats_database_up") != 0.0 {
        assert!(
            failing.elapsed() < PATIENCE,
            "the {fault} failure was not noticed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // From the moment the failure is recorded until the fault stops, nothing
    // is acknowledged, and every refusal says when to retry.
    load.outage.lock().unwrap().0 = Some(Instant::now());
    for _ in 0..20 {
        let report = new_report(&[INSTANCE.to_owned()]);
        assert_eq!(
            post(port, &report.body),
            Answer::Refused {
                status: 503,
                retry_after: true
            },
            "while the {fault} fails"
        );
        ledger.lock().unwrap().pending.push(report);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(port, "anonstats_database_up"), 0.0);
    assert!(metric(port, "anonstats_storage_errors_total") >= 1.0);
    assert_eq!(
        metric(port, "anonstats_storage_recoveries_total"),
        0.0,
        "not reopened while the {fault} fails"
    );
    let logs = collector.logs();
    let error_at = log_line(&logs, "ERROR", error_message)
        .unwrap_or_else(|| panic!("no error line \"{error_message}\": {logs}"));

    load.outage.lock().unwrap().1 = Some(Instant::now());
    std::fs::remove_file(&trigger).unwrap();
    post_until_stored(port, &ledger);
    assert!(
        metric(port, "anonstats_storage_recoveries_total") >= 1.0,
        "intake resumed after a reopen"
    );
    let logs = collector.logs();
    let reopened_at = log_line(&logs, "INFO", "database reopened and checked")
        .unwrap_or_else(|| panic!("the reopen is not logged: {logs}"));
    assert!(reopened_at > error_at, "the reopen came after the failure");

    // A little more load after the recovery, then the clients retry what
    // is still unacknowledged.
    std::thread::sleep(Duration::from_millis(300));
    let ledger = load.stop();
    let mut l = ledger.lock().unwrap();
    assert_eq!(
        l.forbidden_2xx, 0,
        "no 2xx for a report sent while the {fault} failed"
    );
    assert_eq!(
        l.refused_without_retry_after, 0,
        "every refusal says when to retry"
    );
    let (acked, refused, pending) = (l.acked.len(), l.refused, l.pending.len());
    settle_and_assert_exact(&db, port, &mut l);
    let duplicates = metric(port, "anonstats_reports_total{outcome=\"duplicate\"}");
    println!(
        "{fault} failing ({:?}): {acked_before} reports acknowledged before the fault, {acked} \
         when the load stopped, {refused} refusals, {pending} reports left to retry; after the \
         retries {} acknowledged, {} stored, {duplicates} retries answered duplicate",
        db.backend,
        l.acked.len(),
        db.inspect().events().reports(),
    );
    if fault == "flush" {
        // The batch whose flush failed was committed: once the reopened
        // database shows it, its retries are duplicates, counted once.
        assert!(
            duplicates >= 1.0,
            "a refused but committed report was retried"
        );
    }
    let status = collector.signal_and_wait("TERM");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(!collector.logs().contains("panicked"), "no panic");
}

async fn a_failed_flush_is_never_acknowledged(db: TestDb) {
    a_storage_error_is_never_acknowledged(db, "flush", "commit not confirmed on disk");
}
on_both_backends!(a_failed_flush_is_never_acknowledged);

/// SQLite only: PostgreSQL checkpoints on its own, and its failures reach
/// the collector as failed commits or flushes.
#[test]
fn a_failed_checkpoint_is_never_acknowledged() {
    a_storage_error_is_never_acknowledged(
        TestDb::new(Backend::Sqlite),
        "checkpoint",
        "checkpoint failed",
    );
}
