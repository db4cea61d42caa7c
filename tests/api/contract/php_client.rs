//! The PHP client package (`clients/php`): its PHPUnit suite, run against
//! this build's collector binary. Skipped, with a message, where PHP with
//! the curl extension or PHPUnit is not installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `name` is on `PATH`, if anywhere.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Why the PHP tests cannot run here, if they cannot.
fn missing_php() -> Option<String> {
    if on_path("php").is_none() {
        return Some("php not found".into());
    }
    if on_path("phpunit").is_none() {
        return Some("phpunit not found".into());
    }
    let Ok(modules) = Command::new("php").arg("-m").output() else {
        return Some("php -m failed".into());
    };
    let has_curl = String::from_utf8_lossy(&modules.stdout)
        .lines()
        .any(|m| m.trim().eq_ignore_ascii_case("curl"));
    (!has_curl).then(|| "php has no curl extension".into())
}

#[test]
fn php_client_phpunit_suite() {
    if let Some(why) = missing_php() {
        let _ = writeln!(
            std::io::stderr(),
            "skipped PHP client tests: {why} (apt-get install php-cli php-curl phpunit)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("phpunit")
        .arg("-c")
        .arg(root.join("clients/php/phpunit.xml.dist"))
        .current_dir(root)
        .env("ANONSTATS_BINARY", env!("CARGO_BIN_EXE_anonstats"))
        // The collectors and stats runs it starts share the suite's day.
        .env(
            anonstats::clock::TODAY_ENV,
            crate::support::test_today().to_string(),
        )
        .env_remove("ANONSTATS_CLIENT_CONFIG")
        .env_remove("ANONSTATS_COLLECTOR")
        .output()
        .expect("run phpunit");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the PHP client's PHPUnit suite failed:\n{report}"
    );
    // Shown with --nocapture.
    eprintln!("{report}");
}
