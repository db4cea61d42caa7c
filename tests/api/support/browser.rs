//! Headless Chromium: where it is, a page run through it, and the charts
//! of the DOM it dumps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use regex::Regex;

/// Where Chromium is, if anywhere.
pub fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("CHROMIUM").ok(),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
        Some("/usr/bin/google-chrome".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Held while a browser runs: one at a time per test process.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Runs headless Chromium on `url` in the time zone `tz` with `extra`
/// arguments and returns stdout. Browsers run one at a time: on a machine
/// of two cores, two at once (with the collectors they load pages from)
/// starve each other and the collectors' reads.
pub fn run_chromium(binary: &Path, url: &str, tz: &str, extra: &[&str]) -> String {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2300",
            // Lets the page's requests and rendering finish before output.
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .env("TZ", tz)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(key, value)` pairs of the elements carrying `attr_key` and `data-value`
/// inside the chart `chart` of the dumped DOM.
pub fn chart_values(dom: &str, chart: &str, attr_key: &str) -> Vec<(String, String)> {
    let start = dom
        .find(&format!(r#"data-chart="{chart}""#))
        .unwrap_or_else(|| panic!("chart {chart} rendered"));
    let end = start + dom[start..].find("</svg>").unwrap();
    let re = Regex::new(&format!(r#"{attr_key}="([^"]*)"[^>]*data-value="([^"]*)""#)).unwrap();
    re.captures_iter(&dom[start..end])
        .map(|c| (html_unescape(&c[1]), c[2].to_owned()))
        .collect()
}

/// Undoes the HTML escapes of attribute values.
fn html_unescape(s: &str) -> String {
    s.replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}
