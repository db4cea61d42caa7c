//! The passbolt 1.3-1.6 statistics sender, byte for byte.

use std::net::{IpAddr, Ipv4Addr};

use crate::on_both_backends;
use crate::support::*;

const INSTANCE: &str = "0b6e2c0e-9d55-4a7e-8d2a-5b0e9c7f3a11";

fn cakephp_request(port: u16, version: &str, context: &str) -> Vec<u8> {
    let body = format!(
        "InstallStatistic%5Binstance_id%5D={INSTANCE}&InstallStatistic%5Bcontext%5D={context}&InstallStatistic%5Bpasswords_count%5D=1234&InstallStatistic%5Busers_count%5D=42&InstallStatistic%5Blogs_count%5D=98765&InstallStatistic%5Bversion%5D={version}"
    );
    format!(
        "POST /statistics/install.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: CakePHP\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn passbolt_1x_request_is_accepted_and_mapped(db: TestDb) {
    let app = spawn_app(db).await;
    let port = app.port;
    let response = actix_web::rt::task::spawn_blocking(move || {
        raw_http(
            port,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &cakephp_request(port, "1.6.10", "install"),
        )
    })
    .await
    .unwrap();

    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    assert!(response
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    assert!(response.contains(r#""status":"accepted""#));
    assert!(
        response.contains("InstallStatistic[logs_count]"),
        "logs_count is listed as ignored"
    );
    let stored = app.db.inspect();
    assert_eq!(
        stored
            .events()
            .reports_where(|e| e.event == "install" && e.version == "1.6.10"),
        1
    );
    let counters = stored.counters();
    assert_eq!(counters.total("users"), 42);
    assert_eq!(counters.total("resources"), 1234);
    assert_eq!(
        counters
            .iter()
            .filter(|c| !["users", "resources"].contains(&c.counter.as_str()))
            .count(),
        0,
        "logs_count is not stored"
    );
}
on_both_backends!(passbolt_1x_request_is_accepted_and_mapped);

async fn install_report_after_upgrade_counts_as_update(db: TestDb) {
    let app = spawn_app(db).await;
    let port = app.port;
    for version in ["1.6.9", "1.6.10", "1.6.10"] {
        let response = actix_web::rt::task::spawn_blocking(move || {
            raw_http(
                port,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                &cakephp_request(port, version, "install"),
            )
        })
        .await
        .unwrap();
        assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    }
    let stored = app.db.inspect();
    let events = stored.events();
    assert_eq!(
        events.reports_where(|e| e.event == "install" && e.version == "1.6.9"),
        1
    );
    assert_eq!(
        events.reports_where(|e| e.event == "update"
            && e.version == "1.6.10"
            && e.previous_version == "1.6.9"),
        1,
        "the stored version tells an update from a fresh install"
    );
    assert_eq!(
        events.reports_where(|e| e.event == "install" && e.version == "1.6.10"),
        1,
        "same version again is a re-install"
    );
    assert_eq!(stored.instances().len(), 1);
}
on_both_backends!(install_report_after_upgrade_counts_as_update);

async fn legacy_validation_errors_are_problems(db: TestDb) {
    let app = spawn_app(db).await;
    let cases = [
        (
            "InstallStatistic%5Bversion%5D=1.6",
            "InstallStatistic[version]",
            "version",
        ),
        (
            "InstallStatistic%5Bversion%5D=1.6.10&InstallStatistic%5Busers_count%5D=-4",
            "InstallStatistic[users_count]",
            "minimum",
        ),
        (
            "InstallStatistic%5Bversion%5D=1.6.10&InstallStatistic%5Binstance_id%5D=abc",
            "InstallStatistic[instance_id]",
            "uuid",
        ),
        (
            "InstallStatistic%5Bcontext%5D=install",
            "InstallStatistic[version]",
            "required",
        ),
    ];
    for (body, field, rule) in cases {
        let reply = app
            .post(
                "/statistics/install.json",
                "application/x-www-form-urlencoded",
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json()["field"], field, "{body}");
        assert_eq!(reply.json()["rule"], rule, "{body}");
    }
    let reply = app
        .post(
            "/statistics/install.json",
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(reply.status, 415);
    assert_eq!(app.db.inspect().events().len(), 0);
}
on_both_backends!(legacy_validation_errors_are_problems);
