//! Erasure: `DELETE /api/v1/instances/{instance_id}` and `anonstats send
//! --forget`.

use serde_json::{json, Value};

use crate::client::{anonstats, stderr, ClientDir};
use crate::helpers::*;
use crate::on_both_backends;

/// DELETEs a path and returns status, content type and body.
async fn delete(app: &TestApp, path: &str) -> (u16, String, Vec<u8>) {
    let mut res = app
        .client
        .delete(format!("{}{path}", app.address))
        .send()
        .await
        .expect("request sent");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.body().await.expect("body").to_vec();
    (res.status().as_u16(), content_type, body)
}

/// Sum of a column over an aggregate table.
fn total(db: &TestDb, sql: &str) -> i64 {
    scalar(&mut db.conn(), sql)
}

async fn forget_erases_the_install_and_keeps_daily_counts(db: TestDb) {
    let app = spawn_app(db).await;
    let dir = ClientDir::new();
    let opt_in = anonstats(&[
        "send",
        "--config",
        dir.config(),
        "--opt-in",
        "--collector",
        &app.address,
    ])
    .await;
    assert!(opt_in.status.success(), "{}", stderr(&opt_in));
    let sent = anonstats(&[
        "send",
        "--config",
        dir.config(),
        "--strict",
        "--event",
        "install",
        "--version",
        "4.10.1",
        "--attribute",
        "edition=pro",
        "--counter",
        "users=7",
        "--feature",
        "sso=true",
    ])
    .await;
    assert!(sent.status.success(), "{}", stderr(&sent));
    // Another install, which must stay.
    assert_eq!(app.post_report(&sample_report()).await.status, 202);
    assert_eq!(app.db.count("instances"), 2);

    let out = anonstats(&["send", "--config", dir.config(), "--forget"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    let db = &app.db;
    assert_eq!(db.count("instances"), 1, "only the other install is left");
    let sum_values = "SELECT CAST(COALESCE(SUM(instances), 0) AS BIGINT) AS n FROM instance_values";
    assert_eq!(
        total(db, &format!("{sum_values} WHERE kind = 'version'")),
        1
    );
    assert_eq!(
        total(
            db,
            &format!("{sum_values} WHERE kind = 'attribute' AND value = 'pro'")
        ),
        0
    );
    assert_eq!(
        total(
            db,
            &format!("{sum_values} WHERE kind = 'feature' AND name = 'sso' AND value = 'true'")
        ),
        0
    );
    assert_eq!(
        total(db, "SELECT CAST(COALESCE(SUM(total), 0) AS BIGINT) AS n FROM instance_counters WHERE counter = 'users'"),
        42,
        "the other install's 42 users, without this one's 7"
    );
    assert_eq!(
        total(db, "SELECT CAST(COALESCE(SUM(instances), 0) AS BIGINT) AS n FROM instance_counters WHERE counter = 'users'"),
        1
    );
    assert_eq!(
        db.reports("1 = 1"),
        2,
        "daily event counts hold no pseudonym and stay"
    );
    let choice = dir.read();
    assert_eq!(choice["send"], false);
    assert!(
        choice.get("instance_id").is_none(),
        "the id is dropped: {choice}"
    );

    // And nothing is sent any more.
    let again = anonstats(&[
        "send",
        "--config",
        dir.config(),
        "--event",
        "install",
        "--version",
        "4.10.1",
    ])
    .await;
    assert!(again.status.success());
    assert_eq!(db.reports("1 = 1"), 2);
}
on_both_backends!(forget_erases_the_install_and_keeps_daily_counts);

async fn delete_answers_the_same_whether_or_not_anything_was_stored(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();
    let id = report["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_report(&report).await.status, 202);

    let unknown = delete(&app, &format!("/api/v1/instances/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(app.db.count("instances"), 1, "an unknown id erases nothing");
    let known = delete(
        &app,
        &format!("/api/v1/instances/{}?product=passbolt", id.to_uppercase()),
    )
    .await;
    let again = delete(&app, &format!("/api/v1/instances/{id}")).await;

    assert_eq!(unknown.0, 202);
    assert_eq!(
        serde_json::from_slice::<Value>(&unknown.2).unwrap(),
        json!({"status": "forgotten"})
    );
    assert_eq!(known, unknown, "no oracle: the same answer either way");
    assert_eq!(again, unknown);
    assert_eq!(app.db.count("instances"), 0);
    assert_eq!(app.db.reports("1 = 1"), 1);
}
on_both_backends!(delete_answers_the_same_whether_or_not_anything_was_stored);

async fn malformed_erasure_requests_are_problems(db: TestDb) {
    let app = spawn_app(db).await;

    let bad_id = delete(&app, "/api/v1/instances/not-a-uuid").await;
    let bad_product = delete(
        &app,
        &format!("/api/v1/instances/{}?product=nope", uuid::Uuid::new_v4()),
    )
    .await;
    let bad_query = delete(
        &app,
        &format!(
            "/api/v1/instances/{}?prodcut=passbolt",
            uuid::Uuid::new_v4()
        ),
    )
    .await;
    let get = app
        .get(&format!("/api/v1/instances/{}", uuid::Uuid::new_v4()))
        .await;

    assert_eq!(bad_id.0, 400);
    assert_eq!(bad_id.1, "application/problem+json");
    let problem: Value = serde_json::from_slice(&bad_id.2).unwrap();
    assert_eq!(problem["field"], "instance_id");
    assert_eq!(problem["rule"], "uuid");
    assert_eq!(bad_product.0, 400);
    let problem: Value = serde_json::from_slice(&bad_product.2).unwrap();
    assert_eq!(problem["field"], "product");
    assert_eq!(
        bad_query.0, 400,
        "a misspelt parameter is not silently ignored"
    );
    assert_eq!(get.status, 405);
}
on_both_backends!(malformed_erasure_requests_are_problems);

async fn the_clear_id_of_an_erasure_is_never_logged(db: TestDb) {
    let mut collector = CollectorProcess::start(&db, &[], &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let request = format!(
        "DELETE /api/v1/instances/{id}?product=passbolt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );

    let answer = raw_http(collector.port, [127, 0, 0, 1].into(), request.as_bytes());
    collector.signal_and_wait("TERM");

    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let logs = collector.logs();
    assert!(
        logs.contains("/api/v1/instances/{instance_id}"),
        "the route pattern is logged: {logs}"
    );
    assert!(
        !logs.to_lowercase().contains(&id),
        "the id must not appear in the logs"
    );
}
on_both_backends!(the_clear_id_of_an_erasure_is_never_logged);
