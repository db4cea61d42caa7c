//! Fault tests: crashes, shutdown, database outages, a full disk and two
//! collectors on one database, all under load. The invariant throughout:
//! every report answered with a 2xx is in the database, and a client that
//! retries with the same `report_id` is never counted twice.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::on_both_backends_sync;
use crate::support::inspect::Inspect;
use crate::support::oracle::assert_aggregates_match_instances;
use crate::support::outage::{Relay, SmallDisk};
use crate::support::*;

/// Instances the load generator's reports come from (so that updates
/// replace snapshots, and collectors contend for the same rows).
const INSTANCES: usize = 40;
/// Concurrent clients.
const CLIENTS: usize = 4;

/// One report as a client keeps it until it is acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) report_id: String,
    pub(crate) event: &'static str,
    pub(crate) body: String,
}

pub(crate) fn new_report(instance_ids: &[String]) -> Pending {
    let mut rng = rand::rng();
    let r = ReportBuilder::new()
        .instance(&instance_ids[rng.random_range(0..instance_ids.len())])
        .counter("users", rng.random_range(0..5000));
    let (r, event) = if rng.random_bool(0.5) {
        (r.install(), "install")
    } else {
        (r, "update")
    };
    let r = r.build();
    Pending {
        report_id: r["report_id"].as_str().unwrap().to_owned(),
        event,
        body: r.to_string(),
    }
}

/// What a client was told about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Stored,
    Refused { status: u16, retry_after: bool },
    Lost,
}

/// POSTs one report over a fresh connection, as simple clients do.
pub(crate) fn post(port: u16, body: &str) -> Answer {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return Answer::Lost;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let request = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: stats\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Answer::Lost;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let Some(status) = text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()) else {
        return Answer::Lost;
    };
    if (200..300).contains(&status) {
        Answer::Stored
    } else {
        Answer::Refused {
            status,
            retry_after: text.to_ascii_lowercase().contains("\r\nretry-after:"),
        }
    }
}

/// Reports sent so far: acknowledged, and not yet acknowledged (to be
/// retried with the same `report_id`).
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) acked: Vec<Pending>,
    pub(crate) pending: Vec<Pending>,
    /// 2xx answers to requests sent and answered inside the outage window.
    pub(crate) forbidden_2xx: usize,
    pub(crate) refused_without_retry_after: usize,
    pub(crate) refused: usize,
}

/// Clients posting reports to whichever port `target` holds until stopped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    ledger: Arc<Mutex<Ledger>>,
    /// When set: (start, end) of a window in which no request may get a 2xx.
    pub(crate) outage: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

impl Load {
    pub(crate) fn start(
        ports: Vec<u16>,
        instance_ids: Arc<Vec<String>>,
        ledger: Arc<Mutex<Ledger>>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let forbid: Arc<Mutex<(Option<Instant>, Option<Instant>)>> =
            Arc::new(Mutex::new((None, None)));
        let threads = (0..CLIENTS)
            .map(|i| {
                let (stop, ledger, ids, ports, forbid) = (
                    stop.clone(),
                    ledger.clone(),
                    instance_ids.clone(),
                    ports.clone(),
                    forbid.clone(),
                );
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let report = ledger
                            .lock()
                            .unwrap()
                            .pending
                            .pop()
                            .unwrap_or_else(|| new_report(&ids));
                        let sent_at = Instant::now();
                        n += 1;
                        let answer = post(ports[n % ports.len()], &report.body);
                        let mut l = ledger.lock().unwrap();
                        match answer {
                            Answer::Stored => {
                                let answered_at = Instant::now();
                                let (start, end) = *forbid.lock().unwrap();
                                if start.is_some_and(|t| sent_at > t)
                                    && !matches!(end, Some(t) if answered_at >= t)
                                {
                                    l.forbidden_2xx += 1;
                                }
                                l.acked.push(report);
                            }
                            Answer::Refused {
                                status,
                                retry_after,
                            } => {
                                assert!(status == 503 || status == 500, "unexpected {status}");
                                l.refused += 1;
                                if !retry_after {
                                    l.refused_without_retry_after += 1;
                                }
                                l.pending.push(report);
                            }
                            Answer::Lost => l.pending.push(report),
                        }
                        drop(l);
                        if answer != Answer::Stored {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            ledger,
            outage: forbid,
        }
    }

    pub(crate) fn stop(self) -> Arc<Mutex<Ledger>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("client thread");
        }
        self.ledger
    }
}

pub(crate) fn instance_ids() -> Arc<Vec<String>> {
    Arc::new(
        (0..INSTANCES)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect(),
    )
}

/// Acknowledged reports per event.
fn acked_per_event(ledger: &Ledger) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for r in &ledger.acked {
        *out.entry(r.event).or_default() += 1;
    }
    out
}

/// Every acknowledged report is stored: per event, stored >= acknowledged
/// (reports stored whose answer was lost are still pending).
fn assert_acked_are_stored(db: &TestDb, ledger: &Ledger, context: &str) {
    let today = db.inspect().events_on(test_today());
    for (event, acked) in acked_per_event(ledger) {
        let stored = today.reports_where(|e| e.event == event);
        assert!(
            stored >= acked,
            "{context}: {acked} {event} reports acknowledged, {stored} stored"
        );
    }
}

/// Retries every pending report against `port` until acknowledged, then
/// checks that the stored counts equal the distinct reports exactly.
pub(crate) fn settle_and_assert_exact(db: &TestDb, port: u16, ledger: &mut Ledger) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(report) = ledger.pending.pop() {
        assert!(Instant::now() < deadline, "pending reports not accepted");
        if post(port, &report.body) == Answer::Stored {
            ledger.acked.push(report);
        } else {
            ledger.pending.push(report);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let distinct: HashSet<&str> = ledger.acked.iter().map(|r| r.report_id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        ledger.acked.len(),
        "each report acknowledged once"
    );
    let events = db.inspect().events();
    for (event, acked) in acked_per_event(ledger) {
        assert_eq!(
            events.reports_where(|e| e.event == event),
            acked,
            "{event}: stored counts equal acknowledged reports, none lost or doubled"
        );
    }
    assert_eq!(db.inspect().dedupe_keys().len(), distinct.len());
    assert_aggregates_match_instances(db);
}

fn kill_9_under_load_loses_nothing(db: TestDb) {
    const KILLS: usize = 10;
    let ids = instance_ids();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::rng();
    let mut collector = CollectorProcess::start(&db, &[], &[]);
    for round in 0..KILLS {
        let load = Load::start(vec![collector.port], ids.clone(), ledger.clone());
        std::thread::sleep(Duration::from_millis(rng.random_range(150..600)));

        collector.child.kill().expect("SIGKILL");
        collector.child.wait().unwrap();
        let ledger_now = load.stop();

        assert_acked_are_stored(
            &db,
            &ledger_now.lock().unwrap(),
            &format!("after kill {}", round + 1),
        );
        collector = CollectorProcess::start(&db, &[], &[]);
    }
    let mut l = ledger.lock().unwrap();
    println!(
        "kill -9 x{KILLS} ({:?}): {} reports acknowledged, {} pending before retries",
        db.backend,
        l.acked.len(),
        l.pending.len()
    );
    assert!(l.acked.len() >= 100, "the load reached the collector");
    let port = collector.port;
    settle_and_assert_exact(&db, port, &mut l);
}
on_both_backends_sync!(kill_9_under_load_loses_nothing);

fn sigterm_under_load_commits_everything_accepted(db: TestDb) {
    let ids = instance_ids();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut collector = CollectorProcess::start(&db, &[], &[]);
    let load = Load::start(vec![collector.port], ids, ledger.clone());
    std::thread::sleep(Duration::from_millis(800));

    let status = collector.signal_and_wait("TERM");
    let ledger = load.stop();

    assert!(status.success(), "clean exit: {status:?}");
    assert!(collector.logs().contains("anonstats collector stopped"));
    let mut l = ledger.lock().unwrap();
    assert_acked_are_stored(&db, &l, "after SIGTERM");
    assert!(l.acked.len() >= 20, "the load reached the collector");
    let restarted = CollectorProcess::start(&db, &[], &[]);
    settle_and_assert_exact(&db, restarted.port, &mut l);
}
on_both_backends_sync!(sigterm_under_load_commits_everything_accepted);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn get_status(port: u16, path: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn postgres_outage_gets_fast_503s_and_recovers_without_restart() {
    let Some(db) = TestDb::postgres() else {
        return skip_postgres(concat!(
            module_path!(),
            "::postgres_outage_gets_fast_503s_and_recovers_without_restart"
        ));
    };
    // Create the schema directly, then run the collector through the relay.
    drop(anonstats::db::prepare_database(&db.url, 1).unwrap());
    let relay = Relay::in_front_of(&db);
    let mut collector = CollectorProcess::start_url(&relay.url, &[], &[]);
    let port = collector.port;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load = Load::start(vec![port], instance_ids(), ledger.clone());
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(collector.child.id());

    relay.cut();
    load.outage.lock().unwrap().0 = Some(Instant::now());
    let mut slowest = Duration::ZERO;
    let mut rss_max = rss_before;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(3) {
        let report = new_report(&["0d6a1b5e-8c1f-4f7a-9d0e-3b2c1a0f9e8d".to_owned()]);
        let started = Instant::now();
        let answer = post(port, &report.body);
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            answer,
            Answer::Refused {
                status: 503,
                retry_after: true
            },
            "while PostgreSQL is unreachable"
        );
        ledger.lock().unwrap().pending.push(report);
        rss_max = rss_max.max(rss_kib(collector.child.id()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get_status(port, "/readyz"), 503, "not ready while cut");
    assert_eq!(get_status(port, "/healthz"), 200, "alive while cut");

    load.outage.lock().unwrap().1 = Some(Instant::now());
    relay.restore();
    let back = Instant::now();
    loop {
        let report = new_report(&["0d6a1b5e-8c1f-4f7a-9d0e-3b2c1a0f9e8d".to_owned()]);
        if post(port, &report.body) == Answer::Stored {
            ledger.lock().unwrap().acked.push(report);
            break;
        }
        ledger.lock().unwrap().pending.push(report);
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "did not resume by itself"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed_after = back.elapsed();
    let ledger = load.stop();
    let mut l = ledger.lock().unwrap();
    let metrics = {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: stats\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    println!(
        "PostgreSQL outage: slowest 503 {slowest:?}, resumed {resumed_after:?} after restore, RSS {rss_before} -> max {rss_max} KiB, {} refused during the run",
        l.refused
    );
    assert!(
        slowest < Duration::from_secs(1),
        "503 within a second (slowest {slowest:?})"
    );
    assert_eq!(
        l.forbidden_2xx, 0,
        "no 2xx for a request sent during the outage"
    );
    assert_eq!(
        l.refused_without_retry_after, 0,
        "every refusal says when to retry"
    );
    assert!(
        rss_max < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} -> {rss_max} KiB"
    );
    assert!(
        !metrics.contains("anonstats_database_errors_total 0\n"),
        "errors are counted"
    );
    settle_and_assert_exact(&db, port, &mut l);
    collector.signal_and_wait("TERM");
}

#[test]
fn full_disk_gets_5xx_without_corruption_and_recovers() {
    let Some(disk) = SmallDisk::mount(4 * 1024 * 1024) else {
        println!(
            "skipped {}::full_disk_gets_5xx_without_corruption_and_recovers: mounting a tmpfs is not permitted here",
            module_path!()
        );
        return;
    };
    let url = disk.dir.path().join("anonstats.db");
    let url = url.to_string_lossy().into_owned();
    let mut collector = CollectorProcess::start_url(&url, &[], &[]);
    let port = collector.port;
    let ids: Vec<String> = (0..2000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let mut acked = 0i64;
    for id in &ids[..20] {
        assert_eq!(
            post(port, &new_report(std::slice::from_ref(id)).body),
            Answer::Stored
        );
        acked += 1;
    }

    let filler = disk.fill();
    let mut refused = 0;
    for id in &ids[20..] {
        match post(port, &new_report(std::slice::from_ref(id)).body) {
            Answer::Stored => acked += 1,
            Answer::Refused {
                status,
                retry_after,
            } => {
                assert!((500..600).contains(&status), "{status}");
                assert!(retry_after);
                refused += 1;
                if refused >= 20 {
                    break;
                }
            }
            Answer::Lost => panic!("the collector died: {}", collector.logs()),
        }
    }
    assert!(refused > 0, "a full disk is answered with 5xx");
    assert_eq!(get_status(port, "/healthz"), 200, "still alive");

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if post(port, &new_report(&ids[..1]).body) == Answer::Stored {
            acked += 1;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover once space returned"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    collector.signal_and_wait("TERM");
    let logs = collector.logs();
    assert!(!logs.contains("panicked"), "no panic");

    let mut conn = anonstats::db::Manager::new(&url).establish().unwrap();
    #[derive(diesel::QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    use diesel::RunQueryDsl;
    let check: Check = diesel::sql_query("PRAGMA integrity_check")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(check.integrity_check, "ok");
    let stored = Inspect::at(&url).reports();
    println!("full disk: {acked} acknowledged, {refused} refused, {stored} stored");
    assert_eq!(
        stored, acked,
        "every acknowledged report stored, nothing else"
    );
}

#[test]
fn two_collectors_on_one_postgres_keep_exact_totals() {
    let Some(db) = TestDb::postgres() else {
        return skip_postgres(concat!(
            module_path!(),
            "::two_collectors_on_one_postgres_keep_exact_totals"
        ));
    };
    drop(anonstats::db::prepare_database(&db.url, 1).unwrap());
    let first = CollectorProcess::start(&db, &[], &[]);
    let second = CollectorProcess::start(&db, &[], &[]);
    // Few instances: both collectors update the same snapshots at once.
    let ids = Arc::new(
        (0..8)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect::<Vec<_>>(),
    );
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load = Load::start(vec![first.port, second.port], ids.clone(), ledger.clone());
    std::thread::sleep(Duration::from_secs(3));
    let ledger = load.stop();
    let mut l = ledger.lock().unwrap();
    println!(
        "two collectors: {} acknowledged, {} refused",
        l.acked.len(),
        l.refused
    );
    assert!(l.acked.len() >= 100);
    settle_and_assert_exact(&db, second.port, &mut l);
    assert_eq!(db.inspect().instances().len(), ids.len());
    for c in [&first, &second] {
        let logs = c.logs();
        assert!(!logs.contains("batch not stored"), "a batch failed: {logs}");
    }
}

/// A report whose body is still arriving when the signal comes is read to
/// its end, answered 202 and committed, on SIGINT (Ctrl-C) as on SIGTERM.
fn an_in_flight_report_is_answered_on(db: TestDb, signal: &str) {
    let mut collector = CollectorProcess::start(&db, &[], &[]);
    let body = sample_report().to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(("127.0.0.1", collector.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    std::process::Command::new("kill")
        .args([&format!("-{signal}"), &collector.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(tail.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = collector.child.wait().unwrap();

    assert!(
        answer.starts_with("HTTP/1.1 202"),
        "SIG{signal}: {answer:?}"
    );
    assert!(status.success(), "SIG{signal}: clean exit {status:?}");
    assert_eq!(
        db.inspect().reports(),
        1,
        "SIG{signal}: the report is stored"
    );
    assert!(collector.logs().contains("anonstats collector stopped"));
}

fn an_in_flight_report_is_answered_on_sigint_and_sigterm(db: TestDb) {
    let backend = db.backend;
    an_in_flight_report_is_answered_on(db, "INT");
    an_in_flight_report_is_answered_on(TestDb::new(backend), "TERM");
}
on_both_backends_sync!(an_in_flight_report_is_answered_on_sigint_and_sigterm);
