//! The module graph of `src/`, read from the source: imports point one way.
//!
//! Layer rules (each offence is printed as `file:line: line`):
//! - `clap` only in `src/cli/`: every other module takes plain settings;
//! - actix only in `src/routes/` and `src/startup.rs`: the domain knows
//!   nothing of HTTP;
//! - a match on the database backend (`DbConn::Sqlite`, `DbConn::Pg`) only
//!   in `src/db.rs` and the store (`src/store.rs`, `src/store/`);
//! - `crate::startup` only from `src/cli/` and `src/main.rs`, the layers
//!   above it.
//!
//! And no cycle among the top-level modules: `use crate::x` and
//! `crate::x::` outside comments and `#[cfg(test)]` modules are the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Directories that are not layers of the collector and are not checked:
/// the benchmark drives the collector from outside, as a client.
const NOT_CHECKED: &[&str] = &["src/bench/"];

/// One line of code, comments removed.
struct Line {
    /// Path from the crate root, with `/` separators.
    file: String,
    /// 1-based.
    number: usize,
    /// The line without its comment.
    code: String,
    /// Whether the line is inside a `#[cfg(test)]` module (or after one).
    in_tests: bool,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `line` without a trailing `//` comment (one outside a string literal).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// Every line of code under `src/`, but those of [`NOT_CHECKED`].
fn source_lines() -> Vec<Line> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut lines = Vec::new();
    for path in files {
        let file = path
            .strip_prefix(root)
            .expect("under the crate root")
            .to_string_lossy()
            .replace('\\', "/");
        if NOT_CHECKED.iter().any(|d| file.starts_with(d)) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable source");
        let mut in_tests = false;
        // A `use crate::{...}` spread over several lines is read as one, on
        // its first line.
        let mut open_group: Option<(usize, i32)> = None;
        for (i, raw) in text.lines().enumerate() {
            if raw.trim_start().starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            let mut code = strip_comment(raw).to_owned();
            let depth = |s: &str| s.matches('{').count() as i32 - s.matches('}').count() as i32;
            if let Some((at, open)) = open_group {
                let open = open + depth(&code);
                let first: &mut Line = &mut lines[at];
                first.code.push(' ');
                first.code.push_str(code.trim());
                code.clear();
                open_group = (open > 0).then_some((at, open));
            } else if code.contains("crate::{") && depth(&code) > 0 {
                open_group = Some((lines.len(), depth(&code)));
            }
            lines.push(Line {
                file: file.clone(),
                number: i + 1,
                code,
                in_tests,
            });
        }
    }
    lines
}

/// Whether `code` names the crate `name` as a path (`name::...`) or in a
/// `use name` declaration, not as part of a longer identifier.
fn names_crate(code: &str, name: &str) -> bool {
    let mut from = 0;
    while let Some(at) = code[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        let before = code[..start].chars().next_back();
        let boundary = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        let rest = &code[end..];
        let is_path = rest.starts_with("::")
            || (code[..start].trim_end().ends_with("use") && rest.starts_with([';', ' ']));
        if boundary && is_path {
            return true;
        }
        from = end;
    }
    false
}

/// Whether `code` uses any actix crate as a path.
fn names_actix(code: &str) -> bool {
    ["actix_web", "actix_http", "actix_rt", "actix_server"]
        .iter()
        .any(|c| names_crate(code, c))
}

/// The top-level module a file belongs to (`None` for the crate root and
/// the binary).
fn top_module(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a line of code names through `crate::`.
fn crate_references(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        let before = code[..start].chars().next_back();
        from = start + "crate::".len();
        // `$crate::` in a macro is the crate too; `foo_crate::` is not.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the names at the first depth.
            let mut depth = 0;
            let mut name = String::new();
            let mut expecting = true;
            for c in group.chars() {
                let ident = c.is_alphanumeric() || c == '_';
                if depth == 0 && expecting && ident {
                    name.push(c);
                    continue;
                }
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                    expecting = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expecting = true,
                    _ => {}
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out.retain(|n| n != "self");
    out
}

/// Lines breaking a rule, as `file:line: line`.
fn offences(lines: &[Line], breaks: impl Fn(&Line) -> bool) -> Vec<String> {
    lines
        .iter()
        .filter(|l| breaks(l))
        .map(|l| format!("{}:{}: {}", l.file, l.number, l.code.trim()))
        .collect()
}

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(
        found.is_empty(),
        "{rule}; these lines break it:\n{}",
        found.join("\n")
    );
}

#[test]
fn clap_only_in_the_command_line() {
    let lines = source_lines();
    assert_none(
        "clap belongs to src/cli/ only: other modules take plain settings",
        offences(&lines, |l| {
            !l.file.starts_with("src/cli/") && names_crate(&l.code, "clap")
        }),
    );
}

#[test]
fn actix_only_in_routes_and_startup() {
    let lines = source_lines();
    assert_none(
        "actix belongs to src/routes/ and src/startup.rs only",
        offences(&lines, |l| {
            !l.file.starts_with("src/routes/") && l.file != "src/startup.rs" && names_actix(&l.code)
        }),
    );
}

#[test]
fn backends_are_told_apart_only_in_db_and_the_store() {
    let lines = source_lines();
    assert_none(
        "a match on DbConn::Sqlite / DbConn::Pg belongs to src/db.rs and the store only",
        offences(&lines, |l| {
            let allowed = l.file == "src/db.rs"
                || l.file == "src/store.rs"
                || l.file.starts_with("src/store/");
            !allowed && (l.code.contains("DbConn::Sqlite") || l.code.contains("DbConn::Pg"))
        }),
    );
}

#[test]
fn only_the_command_line_starts_the_server() {
    let lines = source_lines();
    assert_none(
        "crate::startup is used only by src/cli/ and src/main.rs, above it",
        offences(&lines, |l| {
            let above = l.file.starts_with("src/cli/")
                || l.file == "src/main.rs"
                || l.file == "src/startup.rs";
            !above && crate_references(&l.code).iter().any(|m| m == "startup")
        }),
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    // Edge a -> b, with the first line that makes it.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for l in source_lines().iter().filter(|l| !l.in_tests) {
        let Some(from) = top_module(&l.file) else {
            continue;
        };
        for to in crate_references(&l.code) {
            if to != from {
                edges
                    .entry(from.to_owned())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("{}:{}: {}", l.file, l.number, l.code.trim()));
            }
        }
    }
    assert!(
        edges.get("routes").is_some_and(|e| e.contains_key("state")),
        "the graph was not read: routes must use state"
    );

    // Depth-first search; a back edge closes a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut ring = path[i..].to_vec();
            ring.push(node.to_owned());
            let mut text = ring.join(" -> ");
            for pair in ring.windows(2) {
                text.push_str(&format!("\n    {}", edges[&pair[0]][&pair[1]]));
            }
            cycles.push(text);
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(|e| e.keys()) {
            visit(next, edges, path, done, cycles);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "imports between top-level modules must point one way; cycles:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert!(names_crate("use clap::Args;", "clap"));
    assert!(names_crate("#[derive(clap::ValueEnum)]", "clap"));
    assert!(!names_crate("let clapped = 1;", "clap"));
    assert!(names_actix("use actix_web::{web, App};"));
    assert!(!names_actix("const CAPPED: &[&str] = &[\"actix_web\"];"));
    assert_eq!(
        crate_references("use crate::startup::AppState;"),
        ["startup"]
    );
    assert_eq!(
        crate_references("use crate::{db, secret::{self, Kind}, validation};"),
        ["db", "secret", "validation"]
    );
    assert_eq!(crate_references("$crate::db::DbConn::Pg(c)"), ["db"]);
    assert_eq!(strip_comment("let a = 1; // crate::startup"), "let a = 1; ");
    assert_eq!(strip_comment("let s = \"//\";"), "let s = \"//\";");
}
