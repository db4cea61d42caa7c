//! Reading the stats: the API of a test collector, and `anonstats stats`.

use std::process::Command;

use chrono::NaiveDate;
use serde_json::Value;

use super::{read_reply, test_today, Reply, TestApp, TestDb, TEST_K};

/// GETs a stats path with extra request headers.
pub async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = app.client.get(format!("{}{path}", app.address));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    read_reply(req.send().await.expect("request sent")).await
}

/// GETs a stats path and returns its JSON, asserting 200.
pub async fn stats_json(app: &TestApp, path: &str) -> Value {
    let reply = app.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

/// Runs `anonstats stats ARGS --database URL` and returns its stdout,
/// asserting success. Environment settings of the caller do not leak in.
pub fn cli(db: &TestDb, args: &[&str]) -> String {
    cli_on(db, test_today(), args)
}

/// Like [`cli`], with "today" pinned to `today`.
pub fn cli_on(db: &TestDb, today: NaiveDate, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_anonstats"))
        .arg("stats")
        .args(args)
        .args(["--database", &db.url])
        .env("ANONSTATS_K", TEST_K.to_string())
        .env_remove("ANONSTATS_ACTIVE_DAYS")
        .env_remove("ANONSTATS_CATALOG")
        .env_remove("ANONSTATS_DATABASE_URL")
        .env(anonstats::clock::TODAY_ENV, today.to_string())
        .output()
        .expect("run anonstats stats");
    assert!(
        out.status.success(),
        "anonstats stats {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `anonstats stats ARGS --format json` and parses the output.
pub fn cli_json(db: &TestDb, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let text = cli(db, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
