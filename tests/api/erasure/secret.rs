//! The secret stays the one the pseudonyms were made with: `serve` refuses
//! a database whose pseudonyms were made with another secret, and
//! `anonstats rotate-secret` is the only way to change it, deleting what
//! the old secret keyed and the old secret itself. The SQLite files are
//! readable by their owner only.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anonstats::store;
use serde_json::Value;

use crate::support::*;
use crate::{on_both_backends, on_both_backends_sync};

const SECRET_A: &str = "first-configured-secret-0123456789abcdef";
const SECRET_B: &str = "second-configured-secret-0123456789abcdef";

/// Runs the real binary on `db`, with `ANONSTATS_SECRET` set to `secret`
/// (or unset), killing it if it is still running after `limit`.
fn run(db: &TestDb, args: &[&str], secret: Option<&str>, limit: Duration) -> (Output, bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anonstats"));
    cmd.args(args)
        .args(["--database", &db.url])
        .env_remove("ANONSTATS_SECRET")
        .env_remove("ANONSTATS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env(anonstats::clock::TODAY_ENV, test_today().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = secret {
        cmd.env("ANONSTATS_SECRET", s);
    }
    let mut child = cmd.spawn().expect("start anonstats");
    let until = Instant::now() + limit;
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), timed_out)
}

/// `anonstats serve` on `db`, which must refuse to start; its stderr.
fn serve_refused(db: &TestDb, secret: Option<&str>) -> String {
    let (out, timed_out) = run(
        db,
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--prune-interval-hours",
            "0",
        ],
        secret,
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!timed_out, "serve started instead of refusing:\n{err}");
    assert!(!out.status.success(), "serve exited 0:\n{err}");
    err
}

/// `anonstats rotate-secret` on `db`.
fn rotate(db: &TestDb, secret: Option<&str>, yes: bool) -> Output {
    let mut args = vec!["rotate-secret"];
    if yes {
        args.push("--yes");
    }
    run(db, &args, secret, Duration::from_secs(60)).0
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Everything stored, in a stable order, to compare before and after.
fn snapshot(db: &TestDb) -> Vec<(String, String, String)> {
    let mut all = db.all_text();
    all.retain(|(table, _, _)| table != "__diesel_schema_migrations");
    all.sort();
    all
}

fn setting(db: &TestDb, name: &str) -> Option<String> {
    store::get_setting(&mut db.conn(), name).unwrap()
}

/// A collector on `db` with `secret` that stores two reports of one
/// instance; returns the database.
async fn collect(db: TestDb, secret: Option<&str>) -> TestDb {
    let secret = secret.map(str::to_owned);
    let app = spawn_app_with(db, move |c| c.secret = secret).await;
    let first = sample_report();
    let second = ReportBuilder::new()
        .instance_of(&first)
        .previous_version(first["version"].as_str().unwrap())
        .version("4.11.0")
        .build();
    assert_eq!(app.post_report(&first).await.status, 202);
    assert_eq!(app.post_report(&second).await.status, 202);
    app.stop().await;
    let TestApp { db, .. } = app;
    assert!(!db.inspect().instances().is_empty());
    db
}

/// The refusal names the problem and both ways out.
fn assert_names_both_ways_out(err: &str) {
    assert!(err.contains("silently change every pseudonym"), "{err}");
    assert!(err.contains("anonstats rotate-secret --yes"), "{err}");
    assert!(err.contains("daily event counts"), "{err}");
}

async fn a_secret_set_on_a_database_with_a_generated_one_is_refused(db: TestDb) {
    let db = collect(db, None).await;
    let before = snapshot(&db);
    assert!(setting(&db, store::SECRET_SETTING).is_some());

    let err = serve_refused(&db, Some(SECRET_A));

    assert!(err.contains("generated on its first start"), "{err}");
    assert!(err.contains("unset ANONSTATS_SECRET"), "{err}");
    assert_names_both_ways_out(&err);
    assert_eq!(snapshot(&db), before, "a refused start changes nothing");
    // The way it says works: without the variable the stored secret is used.
    let app = spawn_app(db).await;
    assert_eq!(app.post_report(&sample_report()).await.status, 202);
}
on_both_backends!(a_secret_set_on_a_database_with_a_generated_one_is_refused);

async fn rotate_secret_moves_to_the_configured_secret_and_forgets_the_old_one(db: TestDb) {
    let db = collect(db, None).await;
    let old = setting(&db, store::SECRET_SETTING).expect("generated secret");
    let events = db.inspect().reports();
    let before = snapshot(&db);
    let pseudonyms: Vec<String> = before
        .iter()
        .filter(|(_, column, _)| column == "instance_hash" || column == "report_hash")
        .map(|(_, _, v)| v.clone())
        .collect();
    assert!(!pseudonyms.is_empty());

    let dry = rotate(&db, Some(SECRET_A), false);
    assert!(!dry.status.success(), "without --yes nothing happens");
    assert!(
        text(&dry).contains("1 instance snapshots"),
        "{}",
        text(&dry)
    );
    assert_eq!(snapshot(&db), before, "without --yes nothing changes");

    let out = rotate(&db, Some(SECRET_A), true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deleted 1 instance snapshots"),
        "{}",
        text(&out)
    );

    let stored = db.inspect();
    for (table, rows) in [
        ("instances", stored.instances().len()),
        ("seen_reports", stored.dedupe_keys().len()),
        ("instance_values", stored.values().len()),
        ("instance_counters", stored.counters().len()),
        ("instance_value_totals", stored.value_totals().len()),
        ("instance_counter_totals", stored.counter_totals().len()),
    ] {
        assert_eq!(rows, 0, "{table} is emptied");
    }
    assert_eq!(
        db.inspect().reports(),
        events,
        "daily event counts are kept"
    );
    assert_eq!(setting(&db, store::SECRET_SETTING), None);
    assert!(setting(&db, store::FINGERPRINT_SETTING).is_some());
    let stored = db.all_text();
    assert!(
        !stored.iter().any(|(_, _, v)| v.contains(&old)),
        "the old secret is gone from every table"
    );
    assert!(!stored.iter().any(|(_, _, v)| v.contains(SECRET_A)));
    let raw = db.raw_bytes();
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(old.as_bytes()),
        "the old secret is gone from the database files (SQLite file and WAL, or a dump)"
    );
    for p in &pseudonyms {
        // Raw in the SQLite file, hex in a dump.
        let bytes = hex::decode(p).unwrap();
        assert!(
            !contains(&bytes) && !contains(p.as_bytes()),
            "the deleted pseudonym {p} is gone from the database files"
        );
    }

    // The environment the rotation was run with now serves.
    let app = spawn_app_with(db, |c| c.secret = Some(SECRET_A.into())).await;
    assert_eq!(app.post_report(&sample_report()).await.status, 202);
    assert_eq!(app.db.inspect().instances().len(), 1);
}
on_both_backends!(rotate_secret_moves_to_the_configured_secret_and_forgets_the_old_one);

async fn a_changed_or_missing_configured_secret_is_refused(db: TestDb) {
    let db = collect(db, Some(SECRET_A)).await;
    let before = snapshot(&db);

    let changed = serve_refused(&db, Some(SECRET_B));
    let missing = serve_refused(&db, None);

    assert!(changed.contains("fingerprint differs"), "{changed}");
    assert!(changed.contains("back to the previous value"), "{changed}");
    assert_names_both_ways_out(&changed);
    assert!(missing.contains("ANONSTATS_SECRET is not set"), "{missing}");
    assert_names_both_ways_out(&missing);
    assert_eq!(snapshot(&db), before, "a refused start changes nothing");
    assert!(
        !before.iter().any(|(_, _, v)| v.contains(SECRET_A)),
        "only a fingerprint of the configured secret is stored"
    );

    // Rotating to the same secret is a mistake, not a rotation.
    let same = rotate(&db, Some(SECRET_A), true);
    assert!(!same.status.success());
    assert!(text(&same).contains("nothing to rotate"), "{}", text(&same));
    assert_eq!(snapshot(&db), before);

    // Rotating to B, then to a generated secret, each time accepted by
    // serve with the matching environment only.
    assert!(rotate(&db, Some(SECRET_B), true).status.success());
    serve_refused(&db, Some(SECRET_A));
    let db = collect(db, Some(SECRET_B)).await;
    let out = rotate(&db, None, true);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(db.inspect().instances().len(), 0);
    serve_refused(&db, Some(SECRET_B));
    collect(db, None).await;
}
on_both_backends!(a_changed_or_missing_configured_secret_is_refused);

async fn pseudonyms_without_a_recorded_secret_are_not_rekeyed_silently(db: TestDb) {
    // A database written with ANONSTATS_SECRET before its fingerprint was
    // recorded: pseudonyms, and no record of any secret.
    let db = collect(db, Some(SECRET_A)).await;
    store::delete_setting(&mut db.conn(), store::FINGERPRINT_SETTING).unwrap();
    let before = snapshot(&db);

    let err = serve_refused(&db, None);

    assert!(err.contains("holds pseudonyms but no generated"), "{err}");
    assert_names_both_ways_out(&err);
    assert_eq!(snapshot(&db), before);
    // Its secret is adopted, and from then on held to.
    let db = collect(db, Some(SECRET_A)).await;
    assert!(setting(&db, store::FINGERPRINT_SETTING).is_some());
    serve_refused(&db, Some(SECRET_B));
}
on_both_backends!(pseudonyms_without_a_recorded_secret_are_not_rekeyed_silently);

/// Posts one report to a collector process; its status line.
fn post_to(collector: &CollectorProcess) -> String {
    let body = sample_report().to_string();
    let request = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_http(collector.port, [127, 0, 0, 1].into(), request.as_bytes());
    answer.lines().next().unwrap_or_default().to_owned()
}

/// How often the collector said it generated a secret.
fn generated_lines(logs: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains("generated a new pseudonymisation secret"))
        .count()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn serve_creates_private_files_and_says_once_where_the_secret_is(db: TestDb) {
    let mut first = CollectorProcess::start(&db, &[], &[]);
    assert!(post_to(&first).contains(" 202 "));
    if let Some(path) = db.sqlite_path() {
        // While the collector runs, its WAL and shared memory exist.
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{} is private", file.display());
        }
    }
    first.signal_and_wait("TERM");
    let logs = first.logs();
    assert_eq!(generated_lines(&logs), 1, "{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains("generated a new pseudonymisation secret"))
        .unwrap();
    let logged: Value = serde_json::from_str(line).unwrap();
    let database = logged["database"].as_str().unwrap_or_default();
    assert_eq!(database, anonstats::db::redact_url(&db.url), "{line}");
    let secret = setting(&db, store::SECRET_SETTING).unwrap();
    assert!(!logs.contains(&secret), "the secret itself is never logged");

    let mut second = CollectorProcess::start(&db, &[], &[]);
    assert!(post_to(&second).contains(" 202 "));
    second.signal_and_wait("TERM");
    assert_eq!(
        generated_lines(&second.logs()),
        0,
        "said once, when generated"
    );
}
on_both_backends_sync!(serve_creates_private_files_and_says_once_where_the_secret_is);

#[test]
fn an_existing_database_file_keeps_the_mode_its_operator_chose() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite);
    let path = db.sqlite_path().unwrap();
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let mut collector = CollectorProcess::start(&db, &[], &[]);
    assert!(post_to(&collector).contains(" 202 "));
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let (file_mode, wal_mode) = (mode(&path), mode(&wal));
    collector.signal_and_wait("TERM");

    assert_eq!(
        file_mode, 0o640,
        "anonstats changes no mode of a file it did not create"
    );
    assert_eq!(
        wal_mode, 0o640,
        "SQLite gives the WAL the database file's mode"
    );
}
