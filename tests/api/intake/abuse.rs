//! Abuse limits: per-source rate limit, per-instance daily limit, slow
//! clients and connection bounds.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use anonstats::limits::RateLimit;

use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

/// A complete HTTP/1.1 POST of a v1 report, with extra header lines.
fn report_request(report: &serde_json::Value, extra_headers: &str) -> Vec<u8> {
    let body = report.to_string();
    format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: stats\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"))
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn post_from(app: &TestApp, source: &str, extra_headers: &str) -> String {
    let request = report_request(&sample_report(), extra_headers);
    let (port, source) = (app.port, ip(source));
    actix_web::rt::task::spawn_blocking(move || raw_http(port, source, &request))
        .await
        .unwrap()
}

async fn source_over_its_rate_gets_429_with_retry_after(db: TestDb) {
    let app = spawn_app_with(db, |c| c.limits.rate_limit = "3,burst=3".parse().unwrap()).await;
    for _ in 0..3 {
        assert_eq!(app.post_report(&sample_report()).await.status, 202);
    }

    let refused = app.post_report(&sample_report()).await;

    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.json()["type"], "urn:anonstats:problem:rate-limited");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry),
        "3 per minute refills one token in 20 s"
    );
    assert_eq!(
        app.db.inspect().reports(),
        3,
        "the refused report is not stored"
    );
    // The limit covers the legacy endpoint too, and nothing else.
    let legacy = app
        .post(
            "/statistics/install.json",
            "application/x-www-form-urlencoded",
            b"InstallStatistic%5Bversion%5D=1.6.10".to_vec(),
        )
        .await;
    assert_eq!(legacy.status, 429);
    assert_eq!(app.get("/api/v1/catalog").await.status, 200);
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("anonstats_reports_total{outcome=\"rate_limited\"} 2\n"),
        "{metrics}"
    );
}
on_both_backends!(source_over_its_rate_gets_429_with_retry_after);

async fn each_source_has_its_own_bucket_and_forged_headers_do_not_help(db: TestDb) {
    let app = spawn_app_with(db, |c| c.limits.rate_limit = "1,burst=1".parse().unwrap()).await;

    assert_eq!(status_of(&post_from(&app, "127.0.0.2", "").await), 202);
    // Forwarding headers from an untrusted peer are ignored: same bucket.
    let forged = post_from(&app, "127.0.0.2", "X-Forwarded-For: 198.51.100.1\r\n").await;
    assert_eq!(status_of(&forged), 429);
    let forged = post_from(&app, "127.0.0.2", "Forwarded: for=198.51.100.2\r\n").await;
    assert_eq!(status_of(&forged), 429);
    // Loopback is not exempt, but another address has its own bucket.
    assert_eq!(status_of(&post_from(&app, "127.0.0.3", "").await), 202);
    assert_eq!(status_of(&post_from(&app, "127.0.0.3", "").await), 429);
}
on_both_backends!(each_source_has_its_own_bucket_and_forged_headers_do_not_help);

async fn trusted_proxy_headers_name_the_source(db: TestDb) {
    use anonstats::client_ip::ClientIpHeader;
    let app = spawn_app_with(db, |c| {
        c.limits.rate_limit = "1,burst=1".parse().unwrap();
        c.limits.trusted_proxies =
            anonstats::client_ip::parse_trusted_proxies("127.0.0.4").unwrap();
        c.limits.client_ip_header = Some(ClientIpHeader::XForwardedFor);
    })
    .await;

    for client in ["198.51.100.1", "198.51.100.2", "2001:db8::1"] {
        let reply = post_from(&app, "127.0.0.4", &format!("X-Forwarded-For: {client}\r\n")).await;
        assert_eq!(status_of(&reply), 202, "{client}: {reply}");
    }
    let again = post_from(&app, "127.0.0.4", "X-Forwarded-For: 198.51.100.1\r\n").await;
    assert_eq!(status_of(&again), 429);
    // The same /64 is the same source.
    let same64 = post_from(&app, "127.0.0.4", "X-Forwarded-For: 2001:db8::ffff\r\n").await;
    assert_eq!(status_of(&same64), 429);
}
on_both_backends!(trusted_proxy_headers_name_the_source);

fn rate_limited_addresses_are_never_logged_or_stored(db: TestDb) {
    let mut collector = CollectorProcess::start(
        &db,
        &[
            "--rate-limit",
            "1,burst=1",
            "--trusted-proxy",
            "127.0.0.5",
            "--client-ip-header",
            "x-forwarded-for",
        ],
        &[],
    );
    let port = collector.port;
    let send = |source: &str, headers: &str| {
        raw_http(port, ip(source), &report_request(&sample_report(), headers))
    };
    assert_eq!(
        status_of(&send("127.77.66.55", "X-Forwarded-For: 203.0.113.199\r\n")),
        202
    );
    let refused = send("127.77.66.55", "X-Forwarded-For: 203.0.113.199\r\n");
    assert_eq!(status_of(&refused), 429);
    assert!(header_of(&refused, "retry-after").is_some());
    assert_eq!(
        status_of(&send("127.0.0.5", "X-Forwarded-For: 198.51.100.211\r\n")),
        202
    );
    let refused_behind_proxy = send("127.0.0.5", "X-Forwarded-For: 198.51.100.211\r\n");
    assert_eq!(status_of(&refused_behind_proxy), 429);
    collector.signal_and_wait("TERM");

    let logs = collector.logs();
    let raw = db.raw_bytes();
    for address in ["127.77.66.55", "203.0.113.199", "198.51.100.211"] {
        assert!(!logs.contains(address), "{address} logged");
        assert!(!refused.contains(address) && !refused_behind_proxy.contains(address));
        assert!(
            !raw.windows(address.len()).any(|w| w == address.as_bytes()),
            "{address} stored"
        );
    }
    assert!(
        logs.contains("\"status\":429"),
        "the refusal is in the access log"
    );
}
on_both_backends_sync!(rate_limited_addresses_are_never_logged_or_stored);

async fn instance_gets_a_daily_allowance(db: TestDb) {
    let app = spawn_app_with(db, |c| c.limits.instance_daily_limit = 2).await;
    let first = sample_report();
    let same_instance = || ReportBuilder::new().instance_of(&first).build();
    assert_eq!(app.post_report(&first).await.status, 202);
    // A duplicate is not counted, so it does not use up the allowance.
    assert_eq!(app.post_report(&first).await.status, 200);
    assert_eq!(app.post_report(&same_instance()).await.status, 202);

    let refused = app.post_report(&same_instance()).await;

    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(
        refused.json()["type"],
        "urn:anonstats:problem:instance-daily-limit"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry <= 86_400, "retry at the next UTC day at the latest");
    // Other instances and reports without instance are not affected.
    assert_eq!(app.post_report(&sample_report()).await.status, 202);
    let anonymous = ReportBuilder::new().anonymous().build();
    assert_eq!(app.post_report(&anonymous).await.status, 202);
    assert_eq!(app.db.inspect().reports(), 4);
}
on_both_backends!(instance_gets_a_daily_allowance);

/// Reads until the server closes the connection (or 15 s pass) and returns
/// what it sent.
fn read_until_closed(stream: &mut TcpStream) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut out = Vec::new();
    let closed = match stream.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

async fn slow_clients_cannot_hold_connections(db: TestDb) {
    let app = spawn_app_with(db, |c| c.limits.request_timeout = Duration::from_secs(1)).await;
    let port = app.port;
    let (head_only, trickled_body) = actix_web::rt::task::spawn_blocking(move || {
        // A request head that never ends.
        let mut head = TcpStream::connect(("127.0.0.1", port)).unwrap();
        head.write_all(b"POST /api/v1/reports HTTP/1.1\r\nHost: stats\r\nX-Slow: ")
            .unwrap();
        let head_result = read_until_closed(&mut head);
        // A complete head, then a body that stops halfway.
        let mut body = TcpStream::connect(("127.0.0.1", port)).unwrap();
        body.write_all(
            b"POST /api/v1/reports HTTP/1.1\r\nHost: stats\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"schema_version\": 1,",
        )
        .unwrap();
        (head_result, read_until_closed(&mut body))
    })
    .await
    .unwrap();

    assert!(
        head_only.1,
        "an unfinished head is cut off: {:?}",
        head_only.0
    );
    assert!(
        head_only.0.is_empty() || head_only.0.starts_with("HTTP/1.1 408"),
        "{:?}",
        head_only.0
    );
    assert!(trickled_body.1, "a trickled body is cut off");
    assert!(
        trickled_body.0.starts_with("HTTP/1.1 408"),
        "{:?}",
        trickled_body.0
    );
    assert_eq!(app.db.inspect().reports(), 0);
    // The collector still serves.
    assert_eq!(app.post_report(&sample_report()).await.status, 202);
}
on_both_backends!(slow_clients_cannot_hold_connections);

async fn connections_beyond_the_maximum_wait(db: TestDb) {
    let app = spawn_app_with(db, |c| {
        c.workers = Some(1);
        c.limits.max_connections = 1;
        c.limits.keep_alive = Duration::from_secs(30);
        c.limits.request_timeout = Duration::from_secs(30);
    })
    .await;
    let port = app.port;
    let (second_while_first_open, second_after_close) =
        actix_web::rt::task::spawn_blocking(move || {
            let get = b"GET /healthz HTTP/1.1\r\nHost: stats\r\n\r\n";
            let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
            first.write_all(get).unwrap();
            let mut buf = [0u8; 512];
            let n = first.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            // The first connection stays open (keep-alive): the second is
            // not served while it does.
            let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
            second.write_all(get).unwrap();
            second
                .set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            let waited = second.read(&mut buf).is_err();
            drop(first);
            second
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let n = second.read(&mut buf).unwrap_or(0);
            (waited, String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .await
        .unwrap();

    assert!(
        second_while_first_open,
        "a connection over the limit is not served"
    );
    assert!(
        second_after_close.starts_with("HTTP/1.1 200"),
        "{second_after_close:?}"
    );
}
on_both_backends!(connections_beyond_the_maximum_wait);

#[test]
fn default_rate_limit_is_on() {
    let limit = RateLimit::default();
    assert!(limit.enabled());
    assert_eq!(limit, "60".parse().unwrap());
}

async fn forged_forwarding_headers_behind_a_trusted_proxy_change_nothing(db: TestDb) {
    use anonstats::client_ip::ClientIpHeader;
    // The proxy (127.0.0.4) appends the client's address to X-Forwarded-For,
    // as nginx's $proxy_add_x_forwarded_for does, and passes the rest on.
    let app = spawn_app_with(db, |c| {
        c.limits.rate_limit = "5,burst=5".parse().unwrap();
        c.limits.trusted_proxies =
            anonstats::client_ip::parse_trusted_proxies("127.0.0.4").unwrap();
        c.limits.client_ip_header = Some(ClientIpHeader::XForwardedFor);
    })
    .await;

    let mut statuses = Vec::new();
    for i in 0..12 {
        let forged = format!(
            "Forwarded: for=192.0.2.{i}\r\nX-Real-IP: 192.0.2.{}\r\nX-Forwarded-For: 203.0.113.{i}, 198.51.100.7\r\n",
            100 + i
        );
        statuses.push(status_of(&post_from(&app, "127.0.0.4", &forged).await));
    }

    assert_eq!(&statuses[..5], &[202; 5], "{statuses:?}");
    assert_eq!(
        &statuses[5..],
        &[429; 7],
        "no forged header escapes the limit: {statuses:?}"
    );
    // Nor does it drain someone else's bucket: another client still has its own.
    let other = post_from(
        &app,
        "127.0.0.4",
        "X-Forwarded-For: 198.51.100.8\r\nForwarded: for=198.51.100.7\r\n",
    )
    .await;
    assert_eq!(status_of(&other), 202);
}
on_both_backends!(forged_forwarding_headers_behind_a_trusted_proxy_change_nothing);

#[test]
fn a_trusted_proxy_needs_exactly_one_client_ip_header() {
    for (args, message) in [
        (
            vec!["--trusted-proxy", "127.0.0.1"],
            "--trusted-proxy needs --client-ip-header",
        ),
        (
            vec!["--client-ip-header", "forwarded"],
            "--client-ip-header is read only from --trusted-proxy peers",
        ),
        (
            vec![
                "--trusted-proxy",
                "127.0.0.1",
                "--client-ip-header",
                "x-client-ip",
            ],
            "invalid value",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_anonstats"))
            .args(["serve", "--bind", "127.0.0.1:0", "--database"])
            .arg(dir.path().join("a.db"))
            .args(&args)
            .env_remove("ANONSTATS_TRUSTED_PROXIES")
            .env_remove("ANONSTATS_CLIENT_IP_HEADER")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A collector that starts instead of refusing is a failure, not a hang.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?}: the collector started");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(!status.success(), "{args:?}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

async fn every_route_that_does_work_has_a_per_source_limit(db: TestDb) {
    let app = spawn_app_with(db, |c| {
        c.limits.rate_limit = "600".parse().unwrap();
        c.limits.read_rate_limit = "2,burst=2".parse().unwrap();
    })
    .await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n")
            .into_bytes()
    };
    let erase = {
        let body = r#"{"instance_id":"d3b1a0f2-5c4e-4b7a-9f1e-2a6c8d9e0f11"}"#;
        format!("POST /api/v1/erasures HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
    };
    let send = |source: IpAddr, request: Vec<u8>| {
        let port = app.port;
        actix_web::rt::task::spawn_blocking(move || raw_http(port, source, &request))
    };
    for (i, (what, request)) in [
        ("stats", get("/api/v1/stats/summary")),
        ("metrics", get("/metrics")),
        ("readiness", get("/readyz")),
        ("dashboard", get("/")),
        ("sign-in", get("/signin?token=nope")),
        ("erasure", erase),
    ]
    .into_iter()
    .enumerate()
    {
        // A source of its own for each route, two requests in its budget.
        let source = ip(&format!("127.0.9.{}", i + 1));
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(send(source, request.clone()).await.unwrap());
        }
        assert_ne!(status_of(&answers[0]), 429, "{what}: {}", answers[0]);
        assert_ne!(status_of(&answers[1]), 429, "{what}: {}", answers[1]);
        assert_eq!(status_of(&answers[2]), 429, "{what}: {}", answers[2]);
        assert!(header_of(&answers[2], "retry-after").is_some(), "{what}");
        assert!(
            answers[2].contains("urn:anonstats:problem:rate-limited"),
            "{what}"
        );
        // Another source is not affected, and intake has a budget of its own.
        let other = send(ip(&format!("127.0.10.{}", i + 1)), request.clone())
            .await
            .unwrap();
        assert_ne!(status_of(&other), 429, "{what}: {other}");
        let report = send(source, report_request(&sample_report(), ""))
            .await
            .unwrap();
        assert_eq!(status_of(&report), 202, "{what}: intake is not a read");
    }
}
on_both_backends!(every_route_that_does_work_has_a_per_source_limit);

/// A source that floods a route past its budget, each of its connections
/// sending the next request as soon as the last is answered (as flood tools
/// do), gets at most one answer per connection and refusal pause: its
/// refusals cost the collector a timer, not a stream of answers.
async fn a_flooding_source_is_answered_once_per_pause(db: TestDb) {
    const CONNECTIONS: usize = 8;
    const FLOOD: Duration = Duration::from_millis(2500);
    let pause = Duration::from_secs(1);
    let app = spawn_app_with(db, |c| {
        c.limits.read_rate_limit = "60,burst=4".parse().unwrap();
        c.limits.refusal_pause = pause;
    })
    .await;
    let port = app.port;
    let request = format!(
        "GET /api/v1/stats/summary HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();

    let started = std::time::Instant::now();
    let mut floods = Vec::new();
    for _ in 0..CONNECTIONS {
        let request = request.clone();
        floods.push(actix_web::rt::task::spawn_blocking(move || {
            let mut statuses = Vec::new();
            while started.elapsed() < FLOOD {
                statuses.push(status_of(&raw_http(port, ip("127.0.11.1"), &request)));
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for f in floods {
        statuses.extend(f.await.unwrap());
    }

    let refused = statuses.iter().filter(|s| **s == 429).count();
    let served = statuses.len() - refused;
    // The burst of 4, and a refill of 1 a second over the flood and its
    // last pause.
    assert!(served <= 8, "{statuses:?}");
    assert!(refused > 0, "{statuses:?}");
    // Each connection waits a whole pause for every refusal: within the
    // flood's 2.5 s, at most 3 refusals per connection (without the pause,
    // thousands).
    let most = CONNECTIONS * (FLOOD.as_millis() / pause.as_millis() + 1) as usize;
    assert!(
        refused <= most,
        "{refused} refusals in {FLOOD:?} over {CONNECTIONS} connections"
    );
    // The other sources and intake are not held up by the flood's pauses.
    let other = app.get("/api/v1/stats/summary").await;
    assert_eq!(other.status, 200, "{}", other.text());
}
on_both_backends!(a_flooding_source_is_answered_once_per_pause);
