//! Erasure: `POST /api/v1/erasures`, `anonstats send --forget`, and the
//! retired `DELETE /api/v1/instances/{instance_id}`.

use anonstats::anonymize::{InstanceHash, Pseudonymizer};
use serde_json::{json, Value};

use crate::support::seed::*;
use crate::support::stats::*;
use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

/// POSTs an erasure request body.
async fn erase(app: &TestApp, body: &Value) -> Reply {
    app.post(
        "/api/v1/erasures",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

/// DELETEs a path.
async fn delete(app: &TestApp, path: &str) -> Reply {
    let res = app
        .client
        .delete(format!("{}{path}", app.address))
        .send()
        .await
        .expect("request sent");
    read_reply(res).await
}

/// An answer as the requester sees it, but for the `Date` header.
fn seen(reply: &Reply) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("date"))
        .cloned()
        .collect();
    headers.sort();
    (reply.status, headers, reply.body.clone())
}

/// The collector's pseudonym of an install, from the secret it stored.
fn instance_hash(db: &TestDb, id: &uuid::Uuid) -> InstanceHash {
    let secret = anonstats::store::get_setting(&mut db.conn(), anonstats::store::SECRET_SETTING)
        .expect("read settings")
        .expect("the collector stored a secret");
    Pseudonymizer::new(secret.as_bytes()).instance_hash("passbolt", id)
}

/// Row count and sums of every aggregate table.
fn aggregates(db: &TestDb) -> Vec<i64> {
    let stored = db.inspect();
    let values = stored.values();
    let value_totals = stored.value_totals();
    let counters = stored.counters();
    let counter_totals = stored.counter_totals();
    vec![
        values.len() as i64,
        values.iter().map(|v| v.instances).sum(),
        value_totals.len() as i64,
        value_totals.iter().map(|v| v.instances).sum(),
        counters.len() as i64,
        counters.iter().map(|c| c.instances + c.total).sum(),
        counter_totals.len() as i64,
        counter_totals.iter().map(|c| c.instances + c.total).sum(),
    ]
}

/// Rows of `instances` holding this pseudonym.
fn rows_of(db: &TestDb, hash: &InstanceHash) -> usize {
    db.inspect()
        .instances()
        .iter()
        .filter(|i| i.hash == hash.as_bytes())
        .count()
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
    assert_eq!(app.db.inspect().instances().len(), 2);

    let out = anonstats(&["send", "--config", dir.config(), "--forget"]).await;

    assert!(out.status.success(), "{}", stderr(&out));
    let db = &app.db;
    let stored = db.inspect();
    assert_eq!(
        stored.instances().len(),
        1,
        "only the other install is left"
    );
    let values = stored.values();
    assert_eq!(values.versions(), 1);
    assert_eq!(
        values.instances_where(|v| v.kind == "attribute" && v.value == "pro"),
        0
    );
    assert_eq!(values.feature("sso", true), 0);
    let counters = stored.counters();
    assert_eq!(
        counters.total("users"),
        42,
        "the other install's 42 users, without this one's 7"
    );
    assert_eq!(counters.instances("users"), 1);
    assert_eq!(
        stored.reports(),
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
    assert_eq!(db.inspect().reports(), 2);
}
on_both_backends!(forget_erases_the_install_and_keeps_daily_counts);

async fn erasure_answers_the_same_whether_or_not_anything_was_stored(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();
    let id = report["instance_id"].as_str().unwrap().to_owned();
    let other = sample_report();
    assert_eq!(app.post_report(&report).await.status, 202);
    assert_eq!(app.post_report(&other).await.status, 202);

    let before = aggregates(&app.db);
    let unknown = erase(&app, &json!({"instance_id": uuid::Uuid::new_v4()})).await;
    assert_eq!(
        app.db.inspect().instances().len(),
        2,
        "an unknown id erases nothing"
    );
    assert_eq!(
        aggregates(&app.db),
        before,
        "an unknown id changes no aggregate (its work adds zero)"
    );
    let known = erase(
        &app,
        &json!({"product": "passbolt", "instance_id": id.to_uppercase()}),
    )
    .await;
    assert_eq!(
        app.db.inspect().instances().len(),
        1,
        "the stored id is erased"
    );
    let again = erase(&app, &json!({"instance_id": id})).await;

    assert_eq!(unknown.status, 202);
    assert_eq!(unknown.json(), json!({"status": "forgotten"}));
    assert_eq!(
        seen(&known),
        seen(&unknown),
        "no oracle: the same status, headers and bytes either way"
    );
    assert_eq!(seen(&again), seen(&unknown));
    let parsed: uuid::Uuid = id.parse().unwrap();
    assert_eq!(rows_of(&app.db, &instance_hash(&app.db, &parsed)), 0);
    assert_eq!(
        app.db.inspect().instances().len(),
        1,
        "the other install stays"
    );
    assert_eq!(app.db.inspect().reports(), 2, "daily event counts stay");
    assert_eq!(
        app.db
            .inspect()
            .settings()
            .get(anonstats::store::ERASURES_SETTING)
            .map(String::as_str),
        Some("3"),
        "every erasure, stored or not, wrote the same counter"
    );
}
on_both_backends!(erasure_answers_the_same_whether_or_not_anything_was_stored);

async fn the_retired_delete_route_answers_gone_and_erases_nothing(db: TestDb) {
    let app = spawn_app(db).await;
    let report = sample_report();
    let id = report["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_report(&report).await.status, 202);

    let stored = delete(&app, &format!("/api/v1/instances/{id}")).await;
    let with_product = delete(&app, &format!("/api/v1/instances/{id}?product=passbolt")).await;
    let unknown = delete(&app, &format!("/api/v1/instances/{}", uuid::Uuid::new_v4())).await;
    let malformed = delete(&app, "/api/v1/instances/not-a-uuid").await;

    assert_eq!(stored.status, 410);
    assert_eq!(
        stored.header("content-type"),
        Some("application/problem+json")
    );
    let problem = stored.json();
    assert_eq!(problem["status"], 410);
    assert_eq!(problem["type"], "urn:anonstats:problem:gone");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("POST /api/v1/erasures"),
        "the answer names the new route: {problem}"
    );
    assert_eq!(
        stored.header("link"),
        Some("</api/v1/erasures>; rel=\"successor-version\"")
    );
    assert_eq!(seen(&with_product), seen(&stored));
    assert_eq!(seen(&unknown), seen(&stored));
    assert_eq!(seen(&malformed), seen(&stored), "the id is not even read");
    assert_eq!(app.db.inspect().instances().len(), 1, "nothing was erased");
    assert!(!app
        .db
        .inspect()
        .settings()
        .contains_key(anonstats::store::ERASURES_SETTING));
}
on_both_backends!(the_retired_delete_route_answers_gone_and_erases_nothing);

async fn malformed_erasure_requests_are_problems(db: TestDb) {
    let app = spawn_app(db).await;
    let id = uuid::Uuid::new_v4().to_string();

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "malformed id",
            json!({"instance_id": "not-a-uuid"})
                .to_string()
                .into_bytes(),
            "instance_id",
            "uuid",
        ),
        (
            "no id",
            json!({"product": "passbolt"}).to_string().into_bytes(),
            "instance_id",
            "required",
        ),
        (
            "id not a string",
            json!({"instance_id": 7}).to_string().into_bytes(),
            "instance_id",
            "type",
        ),
        (
            "unknown product",
            json!({"instance_id": id, "product": "nope"})
                .to_string()
                .into_bytes(),
            "product",
            "unknown_product",
        ),
        (
            "product not a string",
            json!({"instance_id": id, "product": 1})
                .to_string()
                .into_bytes(),
            "product",
            "type",
        ),
        (
            "misspelt field",
            json!({"instance_id": id, "prodcut": "passbolt"})
                .to_string()
                .into_bytes(),
            "prodcut",
            "unknown_field",
        ),
        ("not an object", b"[]".to_vec(), "", "type"),
        ("not JSON", b"{\"instance_id\":".to_vec(), "", "json"),
        (
            "duplicate key",
            format!("{{\"instance_id\":\"{id}\",\"instance_id\":\"{id}\"}}").into_bytes(),
            "instance_id",
            "duplicate_key",
        ),
    ];
    for (case, body, field, rule) in cases {
        let reply = app.post("/api/v1/erasures", "application/json", body).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{case}"
        );
        let problem = reply.json();
        assert_eq!(
            problem["type"], "urn:anonstats:problem:invalid-erasure",
            "{case}"
        );
        assert_eq!(problem["field"], field, "{case}: {problem}");
        assert_eq!(problem["rule"], rule, "{case}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{case}: {problem}");
    }

    let form = app
        .post(
            "/api/v1/erasures",
            "text/plain",
            format!("instance_id={id}").into_bytes(),
        )
        .await;
    assert_eq!(form.status, 415);
    let too_large = app
        .post(
            "/api/v1/erasures",
            "application/json",
            format!(
                "{{\"instance_id\":\"{id}\",\"pad\":\"{}\"}}",
                "x".repeat(anonstats::config::MAX_BODY_BYTES)
            )
            .into_bytes(),
        )
        .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(app.get("/api/v1/erasures").await.status, 405);
    assert!(
        !app.db
            .inspect()
            .settings()
            .contains_key(anonstats::store::ERASURES_SETTING),
        "nothing was attempted"
    );
}
on_both_backends!(malformed_erasure_requests_are_problems);

fn the_clear_id_of_an_erasure_is_never_logged(db: TestDb) {
    let mut collector = CollectorProcess::start(&db, &[], &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let post = |body: String| {
        format!(
            "POST /api/v1/erasures HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };

    let answers = [
        raw_http(
            collector.port,
            [127, 0, 0, 1].into(),
            post(format!("{{\"product\":\"passbolt\",\"instance_id\":\"{id}\"}}")).as_bytes(),
        ),
        raw_http(
            collector.port,
            [127, 0, 0, 1].into(),
            post(format!("{{\"instance_id\":\"{id}\",\"colour\":1}}")).as_bytes(),
        ),
        raw_http(
            collector.port,
            [127, 0, 0, 1].into(),
            format!("DELETE /api/v1/instances/{id}?product=passbolt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        ),
    ];
    collector.signal_and_wait("TERM");

    assert!(answers[0].starts_with("HTTP/1.1 202"), "{}", answers[0]);
    assert!(answers[1].starts_with("HTTP/1.1 400"), "{}", answers[1]);
    assert!(answers[2].starts_with("HTTP/1.1 410"), "{}", answers[2]);
    let logs = collector.logs();
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "anonstats::access")
        .collect();
    assert_eq!(access.len(), 3, "one access line per request: {logs}");
    assert!(
        logs.contains("/api/v1/erasures") && logs.contains("/api/v1/instances/{instance_id}"),
        "the route patterns are logged: {logs}"
    );
    let lower = logs.to_lowercase();
    assert!(
        !lower.contains(&id) && !lower.contains(&id.replace('-', "")),
        "the id must not appear in the logs, at any level"
    );
}
on_both_backends_sync!(the_clear_id_of_an_erasure_is_never_logged);

/// `k` + 1 installs, one of which is erased: the next live answer counts `k`.
async fn check_stats_forget(app: &TestApp, id: &uuid::Uuid, installs: i64) {
    let before = stats_json(app, "/api/v1/stats/summary").await;
    // Answered from the cache now.
    let cached = stats_json(app, "/api/v1/stats/summary").await;
    assert_eq!(before["active_instances"], installs);
    assert_eq!(cached, before);
    let versions_before = stats_json(app, "/api/v1/stats/versions").await;

    let reply = erase(app, &json!({"instance_id": id})).await;
    assert_eq!(reply.status, 202, "{}", reply.text());

    let after = stats_json(app, "/api/v1/stats/summary").await;
    let versions_after = stats_json(app, "/api/v1/stats/versions").await;
    assert_eq!(
        after["active_instances"],
        installs - 1,
        "the erased install is no longer counted"
    );
    let sum = |v: &Value| -> i64 {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["instances"].as_i64().unwrap_or(0))
            .sum()
    };
    assert_eq!(sum(&versions_after), sum(&versions_before) - 1);
    assert_eq!(
        rows_of(&app.db, &instance_hash(&app.db, id)),
        0,
        "its row is gone"
    );
    assert_eq!(app.db.inspect().instances().len() as i64, installs - 1);
}

async fn stats_stop_counting_an_erased_install_at_once(db: TestDb) {
    let app = spawn_app(db).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let report = sample_report();
        ids.push(
            report["instance_id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
        assert_eq!(app.post_report(&report).await.status, 202);
    }
    check_stats_forget(&app, &ids[2], 6).await;
}
on_both_backends!(stats_stop_counting_an_erased_install_at_once);

async fn stats_stop_counting_an_erased_install_last_seen_long_ago(db: TestDb) {
    let app = spawn_app(db).await;
    // The collector's secret exists once it started.
    let id = uuid::Uuid::new_v4();
    let mut old = install(40, "4.9.0");
    old.instance.as_mut().unwrap().hash = instance_hash(&app.db, &id);
    let mut records = times(5, || install(40, "4.9.0"));
    records.push(old);
    seed(&app.db, &records);
    // Today's reports, so that the recent days hold something too.
    for _ in 0..5 {
        assert_eq!(app.post_report(&sample_report()).await.status, 202);
    }
    check_stats_forget(&app, &id, 11).await;
}
on_both_backends!(stats_stop_counting_an_erased_install_last_seen_long_ago);
