//! `anonstats send`: the command an install runs after installing or
//! updating, and the administrator's opt-in, opt-out and erasure.
//!
//! Sending never breaks an install: whatever goes wrong is said on stderr
//! and the exit code stays 0, unless `--strict`. The administrator's own
//! actions (`--opt-in`, `--opt-out`, `--forget`) exit 1 when they fail, since
//! someone is waiting for them to succeed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use uuid::Uuid;

use super::optin::{self, OptIn};
use super::report::{explain, Draft};
use super::transport::{Client, Delivery, Options};
use crate::catalog::Catalog;

/// Placeholder of the public collector: products set their own with
/// `--collector` or the opt-in file's `collector`.
pub const DEFAULT_COLLECTOR: &str = "https://stats.example.org";

/// Default `--timeout`, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Default `--retries`.
pub const DEFAULT_RETRIES: u32 = 4;

/// What `anonstats send` is asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Opt-in file (JSON, or passbolt-style PHP when it ends in .php)
    /// [default: $XDG_CONFIG_HOME/anonstats/client.json or ~/.config/anonstats/client.json].
    pub config: Option<PathBuf>,
    /// Collector base URL [default: the opt-in file's "collector", else <https://stats.example.org>].
    pub collector: Option<String>,
    /// Record the administrator's agreement (and generate the instance id once); sends nothing.
    pub opt_in: bool,
    /// Record that nothing may be sent any more; sends nothing.
    pub opt_out: bool,
    /// Ask the collector to erase this install's stored state, then opt out
    /// and drop the instance id.
    pub forget: bool,
    /// Print on stdout the exact JSON that would be sent; no connection is made.
    pub dry_run: bool,
    /// Explain field by field what would be sent and why it cannot identify anyone; no connection is made.
    pub explain: bool,
    /// Product [default: the catalog's first product].
    pub product: Option<String>,
    /// What happened: install or update.
    pub event: Option<String>,
    /// Version now installed.
    pub version: Option<String>,
    /// Version updated from (update only).
    pub previous_version: Option<String>,
    /// A catalog attribute, repeatable: --attribute edition=ce.
    pub attributes: Vec<String>,
    /// A catalog counter, repeatable: --counter users=42.
    pub counters: Vec<String>,
    /// A catalog feature, repeatable: --feature mfa=true.
    pub features: Vec<String>,
    /// JSON file with any of product, event, version, previous_version,
    /// attributes, counters and features; flags override it.
    pub from_file: Option<PathBuf>,
    /// Check against this catalog file instead of the collector's GET
    /// /api/v1/catalog when sending, or the built-in catalog with
    /// --dry-run and --explain (which never connect).
    pub catalog: Option<PathBuf>,
    /// Report id to use instead of a fresh one (to resend a report without
    /// counting it twice).
    pub report_id: Option<Uuid>,
    /// Connect and total timeout of each request, in seconds.
    pub timeout: u64,
    /// Retries after the first attempt (network errors, 429, 502, 503, 504).
    pub retries: u32,
    /// Exit non-zero when the report could not be built or sent.
    pub strict: bool,
}

/// Runs `anonstats send`.
pub fn run(args: SendOptions) -> anyhow::Result<()> {
    let path = args.config.clone().unwrap_or_else(optin::default_path);
    if args.opt_in || args.opt_out {
        return set_choice(&args, &path);
    }
    if args.forget {
        return forget(&args, &path);
    }
    match send(&args, &path) {
        Ok(()) => Ok(()),
        Err(e) if args.strict => Err(e),
        Err(e) => {
            note(&format!("report not sent: {e:#}"));
            Ok(())
        }
    }
}

fn note(s: &str) {
    eprintln!("anonstats: {s}");
}

fn client(args: &SendOptions, choice: &OptIn) -> (Client, String) {
    let url = args
        .collector
        .clone()
        .or_else(|| choice.collector.clone())
        .unwrap_or_else(|| DEFAULT_COLLECTOR.to_owned());
    let options = Options {
        timeout: Duration::from_secs(args.timeout.max(1)),
        retries: args.retries,
        on_retry: Some(Arc::new(|s: &str| note(s))),
        ..Options::default()
    };
    (Client::new(&url, options), url)
}

fn set_choice(args: &SendOptions, path: &Path) -> anyhow::Result<()> {
    let current = OptIn::load(path)?;
    let choice = if args.opt_in {
        let mut c = current.opted_in();
        if let Some(url) = &args.collector {
            c.collector = Some(url.clone());
        }
        c
    } else {
        OptIn {
            send: false,
            ..current
        }
    };
    choice.save(path)?;
    if choice.send {
        note(&format!(
            "opted in: reports will be sent by `anonstats send`. Instance id {} kept in {}. Nothing was sent now.",
            choice.instance_id.expect("generated on opt-in"),
            path.display()
        ));
    } else {
        note(&format!(
            "opted out: nothing will be sent (choice kept in {}). `anonstats send --forget` erases what was already stored.",
            path.display()
        ));
    }
    Ok(())
}

fn forget(args: &SendOptions, path: &Path) -> anyhow::Result<()> {
    let choice = OptIn::load(path)?;
    let Some(id) = choice.instance_id else {
        note(&format!(
            "nothing to forget: {} holds no instance id, so nothing stored can be linked to this install",
            path.display()
        ));
        return Ok(());
    };
    let (client, url) = client(args, &choice);
    client
        .forget(&id, args.product.as_deref())
        .with_context(|| format!("the collector at {url} was not asked to forget this install"))?;
    let cleared = OptIn {
        send: false,
        instance_id: None,
        collector: choice.collector,
    };
    cleared.save(path)?;
    note(&format!(
        "the collector at {url} has forgotten this install's state; opted out and dropped the instance id from {}",
        path.display()
    ));
    Ok(())
}

fn send(args: &SendOptions, path: &Path) -> anyhow::Result<()> {
    let choice = OptIn::load(path)?;
    let preview = args.dry_run || args.explain;
    if !preview && !choice.send {
        note(&format!(
            "nothing sent: the administrator has not opted in (run `anonstats send --opt-in`; choice kept in {})",
            path.display()
        ));
        return Ok(());
    }
    let draft = draft(args)?;
    let catalog = if preview {
        // A preview is what an administrator looks at before agreeing:
        // asking the collector for its catalog would already hand it the
        // install's address (and resolve its host name) without consent.
        match &args.catalog {
            Some(file) => Catalog::from_file(file)?,
            None => {
                note("checked against the catalog built into this binary (give the collector's with --catalog FILE); nothing was sent and no connection was made");
                Catalog::builtin()
            }
        }
    } else {
        match &args.catalog {
            Some(file) => Catalog::from_file(file)?,
            None => {
                let (client, url) = client(args, &choice);
                client
                    .fetch_catalog()
                    .with_context(|| format!("cannot fetch the catalog from {url}"))?
            }
        }
    };
    if preview && choice.instance_id.is_none() {
        note("no instance id yet: `--opt-in` generates one, and reports then carry it");
    }
    if preview && !choice.send {
        note("not opted in: this is what would be sent after `anonstats send --opt-in`");
    }
    let report = draft.finish(
        &catalog,
        args.report_id.unwrap_or_else(Uuid::new_v4),
        choice.instance_id,
    );
    let check = report.check(&catalog);
    for w in &check.warnings {
        note(&format!("warning: {w}"));
    }
    if !check.is_ok() {
        bail!(
            "the report does not match the catalog:\n  {}",
            check.errors.join("\n  ")
        );
    }
    let body = report.body();
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        out.flush()?;
        return Ok(());
    }
    if args.explain {
        print!(
            "{}",
            explain(&report, &catalog, &path.display().to_string())
        );
        return Ok(());
    }
    let (client, url) = client(args, &choice);
    match client
        .send_report(&body)
        .with_context(|| format!("collector {url}"))?
    {
        Delivery::Accepted { ignored } => {
            note(&format!("report {} accepted by {url}", report.report_id));
            if !ignored.is_empty() {
                note(&format!(
                    "the collector ignored names its catalog does not have: {}",
                    ignored.join(", ")
                ));
            }
        }
        Delivery::Duplicate => note(&format!(
            "report {} was already stored by {url}: not counted again",
            report.report_id
        )),
    }
    Ok(())
}

/// The report's content from `--from-file` and the flags (which win).
fn draft(args: &SendOptions) -> anyhow::Result<Draft> {
    let base = match &args.from_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            Draft::from_json(&text)
                .with_context(|| format!("{} is not a valid counts file", file.display()))?
        }
        None => Draft::default(),
    };
    let flags = Draft {
        product: args.product.clone(),
        event: args.event.clone(),
        version: args.version.clone(),
        previous_version: args.previous_version.clone(),
        attributes: pairs(&args.attributes, "--attribute", |v| Some(v.to_owned()))?,
        counters: pairs(&args.counters, "--counter", |v| v.parse::<i64>().ok())?,
        features: pairs(&args.features, "--feature", |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })?,
    };
    Ok(base.merge(flags))
}

fn pairs<T>(
    raw: &[String],
    flag: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    for item in raw {
        let parsed = item
            .split_once('=')
            .and_then(|(k, v)| Some((k.trim().to_owned(), parse(v.trim())?)));
        match parsed {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k, v);
            }
            _ => bail!("{flag} {item:?}: expected NAME=VALUE with a valid value"),
        }
    }
    Ok(out)
}
