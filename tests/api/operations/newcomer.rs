//! Mistakes a new operator makes with `--database` get a clear answer at
//! once, from the real binary: an unknown URL scheme, a database that does
//! not exist, a directory that cannot hold one. None of them leaves a file
//! behind.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::on_both_backends_sync;
use crate::support::TestDb;

/// Longer than any check needs, shorter than the pool's 2 s connection
/// timeout that a refused URL used to wait for.
const AT_ONCE: Duration = Duration::from_millis(1500);

/// Runs the binary in `dir` with `args`, with no database in the
/// environment, and returns its output and how long it took. A command
/// that unexpectedly starts serving is killed after 20 s.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anonstats"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("ANONSTATS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("RUST_BACKTRACE")
        .env("ANONSTATS_BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start anonstats");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Names of the entries of `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every command that takes a database.
const DATABASE_COMMANDS: &[&[&str]] =
    &[&["serve"], &["migrate"], &["prune"], &["stats", "summary"]];

#[test]
fn unknown_schemes_are_refused_at_once_naming_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "mysql://app:s3cret@db/stats",
        "postgresql:/host/db",
        "postgres:",
        "mariadb://db/stats",
        "sqlite:anonstats.db",
    ] {
        let scheme = url.split(':').next().unwrap();
        for command in DATABASE_COMMANDS {
            // Through the flag and through the environment alike.
            let with_flag = [*command, &["--database", url]].concat();
            for (args, env) in [
                (with_flag.as_slice(), &[][..]),
                (*command, &[("ANONSTATS_DATABASE_URL", url)][..]),
            ] {
                let (out, took) = run(dir.path(), args, env);
                let text = stderr(&out);
                assert!(!out.status.success(), "{args:?} {env:?} succeeded: {text}");
                assert!(took < AT_ONCE, "{args:?} {env:?} took {took:?}: {text}");
                assert!(
                    text.contains(&format!("`{scheme}:` is not a known scheme")),
                    "{args:?} {env:?}: {text}"
                );
                for form in [
                    "SQLite file path",
                    "sqlite://PATH",
                    "postgres://",
                    "postgresql://",
                ] {
                    assert!(text.contains(form), "{args:?}: {form} not named in: {text}");
                }
                assert!(!text.contains("s3cret"), "{args:?}: password shown: {text}");
                assert!(!text.contains("Unable to open"), "{args:?}: {text}");
            }
        }
    }
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "files were created"
    );
}

#[test]
fn prune_and_stats_refuse_a_missing_database_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        &["prune"][..],
        &["stats", "summary"],
        &["stats", "versions"],
    ] {
        for (database, shown) in [
            (Some("missing.db"), "missing.db"),
            (Some("sqlite://missing.db"), "missing.db"),
            (Some("data/missing.db"), "data/missing.db"),
            // The default, anonstats.db in the working directory.
            (None, "anonstats.db"),
        ] {
            let mut args = command.to_vec();
            if let Some(d) = database {
                args.extend(["--database", d]);
            }
            let (out, took) = run(dir.path(), &args, &[]);
            let text = stderr(&out);
            assert!(!out.status.success(), "{args:?} succeeded: {text}");
            assert!(took < AT_ONCE, "{args:?} took {took:?}");
            assert!(
                text.contains(&format!("no database at {shown}: the file does not exist")),
                "{args:?}: {text}"
            );
            assert!(!text.contains("pruned"), "{args:?}: {text}");
        }
    }
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "files were created"
    );
}

#[test]
fn a_database_that_cannot_be_created_names_the_path_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Tests run as root, who may write anywhere: the reasons tested are
    // those permissions cannot hide.
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    let no_dir = dir.path().join("no-such-dir");
    let cases = [
        (no_dir.join("anonstats.db"), "does not exist"),
        (no_dir.join("deeper").join("anonstats.db"), "does not exist"),
        (
            dir.path().join("a-file").join("anonstats.db"),
            "is not a directory",
        ),
    ];
    for (path, reason) in &cases {
        let path_text = path.to_string_lossy();
        let parent = path.parent().unwrap().display().to_string();
        for command in [&["serve"][..], &["migrate"]] {
            let args = [command, &["--database", &path_text]].concat();
            let (out, took) = run(dir.path(), &args, &[]);
            let text = stderr(&out);
            assert!(!out.status.success(), "{args:?} succeeded: {text}");
            assert!(took < AT_ONCE, "{args:?} took {took:?}: {text}");
            let expected =
                format!("cannot create the database at {path_text}: directory {parent} {reason}");
            assert!(
                text.contains(&expected),
                "{args:?}: want {expected:?} in: {text}"
            );
            assert!(!text.contains("Unable to open"), "{args:?}: {text}");
        }
    }
    assert_eq!(entries(dir.path()), vec!["a-file".to_owned()]);
    // A directory given as the database is named as such.
    let (out, _) = run(dir.path(), &["migrate", "--database", "."], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("it is a directory, not a file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unwritable_directory_is_named_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let db = read_only.join("anonstats.db");
    let db_text = db.to_string_lossy();
    // Root may write anywhere: run the binary as nobody when the tests run
    // as root, and skip when that is not possible.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    let mut cmd = if root {
        if !Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            let _ = writeln!(
                std::io::stderr(),
                "skipped {}::an_unwritable_directory_is_named_with_the_reason: \
                 running as root without setpriv",
                module_path!()
            );
            return;
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_anonstats"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_anonstats"))
    };
    let out = cmd
        .args(["migrate", "--database", &db_text])
        .current_dir(dir.path())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    let expected = format!(
        "cannot create the database at {db_text}: directory {} is not writable (permission denied)",
        read_only.display()
    );
    assert!(text.contains(&expected), "want {expected:?} in: {text}");
    assert!(!db.exists());
}

#[test]
fn relative_sqlite_paths_and_sqlite_urls_still_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for (url, file) in [
        ("a.db", "a.db"),
        ("./b.db", "b.db"),
        ("data/c.db", "data/c.db"),
        ("sqlite://d.db", "d.db"),
        ("./e:with:colons.db", "e:with:colons.db"),
    ] {
        let (out, _) = run(dir.path(), &["migrate", "--database", url], &[]);
        assert!(out.status.success(), "migrate {url}: {}", stderr(&out));
        assert!(dir.path().join(file).is_file(), "{url}: no {file}");
        for command in [&["prune"][..], &["stats", "summary"]] {
            let args = [command, &["--database", url]].concat();
            let (out, _) = run(dir.path(), &args, &[]);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
    }
}

/// Every command that reads an existing database accepts it, on either
/// backend: the checks refuse mistakes only.
fn commands_accept_an_existing_database(db: TestDb) {
    drop(anonstats::db::prepare_database(&db.url, 1).expect("migrate"));
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["migrate"][..],
        &["prune"],
        &["stats", "summary"],
        &["stats", "versions", "--format", "json"],
    ] {
        let with_db = [args, &["--database", &db.url]].concat();
        let (out, took) = run(dir.path(), &with_db, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
        // The environment variable works as the flag does.
        let (out, _) = run(dir.path(), args, &[("ANONSTATS_DATABASE_URL", &db.url)]);
        assert!(out.status.success(), "{args:?} (env): {}", stderr(&out));
    }
    let (out, _) = run(dir.path(), &["prune", "--database", &db.url], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("pruned 0 instances"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "files were created"
    );
}
on_both_backends_sync!(commands_accept_an_existing_database);
