//! Size, media type and overload limits: 413, 415, 503 with Retry-After.

use std::net::{IpAddr, Ipv4Addr};

use crate::on_both_backends;
use crate::support::*;

async fn post_raw(port: u16, request: Vec<u8>) -> String {
    actix_web::rt::task::spawn_blocking(move || {
        raw_http(port, IpAddr::V4(Ipv4Addr::LOCALHOST), &request)
    })
    .await
    .unwrap()
}

async fn oversized_bodies_get_413_without_being_read(db: TestDb) {
    let app = spawn_app(db).await;
    let big = format!(
        r#"{{"schema_version":1,"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );

    // Declared too large: refused from the headers.
    let declared = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let response = post_raw(app.port, declared.into_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"));

    // Chunked, no length: refused once 64 KiB have arrived.
    let mut chunked = String::from(
        "POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for piece in big.as_bytes().chunks(8192) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            String::from_utf8_lossy(piece)
        ));
    }
    chunked.push_str("0\r\n\r\n");
    let response = post_raw(app.port, chunked.into_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // Just under the limit is read (and refused for its content, not its size).
    let fits = format!(
        r#"{{"schema_version":1,"pad":"{}"}}"#,
        "x".repeat(60 * 1024)
    );
    let reply = app
        .post("/api/v1/reports", "application/json", fits.into_bytes())
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(app.db.inspect().events().len(), 0);
}
on_both_backends!(oversized_bodies_get_413_without_being_read);

async fn wrong_content_type_gets_415(db: TestDb) {
    let app = spawn_app(db).await;
    let body = sample_report().to_string().into_bytes();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let reply = app
            .post("/api/v1/reports", content_type, body.clone())
            .await;
        assert_eq!(reply.status, 415, "{content_type}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
    let reply = app
        .post("/api/v1/reports", "application/json; charset=utf-8", body)
        .await;
    assert_eq!(reply.status, 202, "parameters of the media type are fine");
    assert_eq!(app.db.inspect().reports(), 1);
}
on_both_backends!(wrong_content_type_gets_415);

/// While the database cannot take writes, reports get 503 with Retry-After
/// (never a 2xx), a small queue overflows into immediate 503s, and nothing is
/// stored; once the database is back, reports are stored again.
async fn database_outage_and_full_queue_give_503(db: TestDb) {
    let app = spawn_app_with(db, |c| c.writer.queue_capacity = 2).await;
    // SQLite: another process holds the write lock for longer than
    // busy_timeout. PostgreSQL: the database goes away under the collector.
    let outage = app.db.take_away();

    let reports: Vec<_> = (0..8).map(|_| sample_report()).collect();
    let replies = futures_util::future::join_all(reports.iter().map(|r| app.post_report(r))).await;

    for reply in &replies {
        assert_eq!(reply.status, 503, "{}", reply.text());
        let retry: u32 = reply
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
    let types: Vec<String> = replies
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.iter().any(|t| t.ends_with("overloaded")),
        "a queue of 2 overflows with 8 concurrent reports: {types:?}"
    );
    let readiness = app.get("/readyz").await;
    assert_eq!(readiness.status, 503);
    if app.db.backend == Backend::Postgres {
        // The database is gone for good until renamed back, so the collector
        // knows it is down: a report is refused before its body is even
        // read, and so a malformed one gets 503 too, not 400.
        let reply = app
            .post("/api/v1/reports", "application/json", b"{not json".to_vec())
            .await;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(reply.header("retry-after").is_some());
    }

    outage.bring_back();
    assert_eq!(
        app.db.inspect().reports(),
        0,
        "nothing was stored during the outage"
    );
    // The collector notices by itself that the database is back.
    let mut stored = 0;
    for _ in 0..40 {
        let reply = app.post_report(&sample_report()).await;
        if reply.status == 202 {
            stored += 1;
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        actix_web::rt::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(stored, 1, "the collector resumes by itself");
    assert_eq!(app.db.inspect().reports(), 1);
}
on_both_backends!(database_outage_and_full_queue_give_503);
