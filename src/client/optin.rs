//! The opt-in file: the administrator's choice, and the install's id.
//!
//! Nothing is sent unless this file exists and says `send: true`. It is a
//! small file an administrator can read and edit, in one of two formats
//! chosen by its name:
//!
//! - JSON (any name not ending in `.php`):
//!   `{"send": true, "instance_id": "7f1c2e9a-…", "collector": "https://…"}`,
//!   where `instance_id` and `collector` are optional.
//! - passbolt-style PHP (a name ending in `.php`), a configuration array such
//!   as `return ['anonymousStatistics' => ['send' => true, 'instanceId' => '…']];`.
//!   It is never run: only the `send` and `instanceId` (or `instance_id`)
//!   entries are read, wherever they are in the file.
//!
//! The instance id is generated once, when the administrator opts in, from
//! the operating system's random generator: it says nothing about the
//! machine. It is kept on opt-out so that the install can still ask the
//! collector to forget it (`anonstats send --forget`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validation::parse_uuid;

/// Environment variable naming the opt-in file.
pub const CONFIG_ENV: &str = "ANONSTATS_CLIENT_CONFIG";

/// Name of the file in the configuration directory.
const FILE_NAME: &str = "client.json";

/// What the opt-in file says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptIn {
    /// Whether the administrator agreed to send reports.
    #[serde(default)]
    pub send: bool,
    /// The install's random id, generated on opt-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
    /// The collector to send to, when not given on the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
}

/// Why the opt-in file could not be used. Any of these means "do not send".
#[derive(Debug, thiserror::Error)]
pub enum OptInError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid opt-in file: {detail}")]
    Invalid { path: String, detail: String },
}

/// Where the opt-in file is when no `--config` is given: `$ANONSTATS_CLIENT_CONFIG`,
/// else `$XDG_CONFIG_HOME/anonstats/client.json`, else
/// `$HOME/.config/anonstats/client.json`, else `anonstats-client.json` in the
/// working directory.
pub fn default_path() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var(CONFIG_ENV) {
        return PathBuf::from(p);
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return PathBuf::from(dir).join("anonstats").join(FILE_NAME);
    }
    if let Some(home) = var("HOME") {
        return PathBuf::from(home)
            .join(".config")
            .join("anonstats")
            .join(FILE_NAME);
    }
    PathBuf::from("anonstats-client.json")
}

fn is_php(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("php"))
}

impl OptIn {
    /// Reads the file; a missing file is the default: not opted in.
    pub fn load(path: &Path) -> Result<OptIn, OptInError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OptIn::default()),
            Err(source) => {
                return Err(OptInError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let invalid = |detail: String| OptInError::Invalid {
            path: path.display().to_string(),
            detail,
        };
        if is_php(path) {
            parse_php(&text).map_err(invalid)
        } else {
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
        }
    }

    /// Writes the file, replacing it in one step (a crash leaves the old or
    /// the new file, never half of one). A new file is readable by its owner
    /// only: the instance id is what lets its holder erase the install's data.
    pub fn save(&self, path: &Path) -> Result<(), OptInError> {
        let write_err = |source| OptInError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = if is_php(path) {
            self.to_php()
        } else {
            let mut t = serde_json::to_string_pretty(self).expect("opt-in serialises");
            t.push('\n');
            t
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            // Keep the permissions an administrator gave an existing file.
            if let Ok(meta) = std::fs::metadata(path) {
                std::fs::set_permissions(&tmp, meta.permissions())?;
            }
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_err)?;
        Ok(())
    }

    /// The opted-in state, with an id generated now if there was none.
    pub fn opted_in(mut self) -> OptIn {
        self.send = true;
        if self.instance_id.is_none() {
            self.instance_id = Some(Uuid::new_v4());
        }
        self
    }

    fn to_php(&self) -> String {
        let mut out = String::from(
            "<?php\n// Anonymous usage statistics: set 'send' to false to stop sending reports.\nreturn [\n    'anonymousStatistics' => [\n",
        );
        out.push_str(&format!(
            "        'send' => {},\n",
            if self.send { "true" } else { "false" }
        ));
        if let Some(id) = self.instance_id {
            out.push_str(&format!("        'instanceId' => '{}',\n", id.hyphenated()));
        }
        if let Some(c) = &self.collector {
            out.push_str(&format!("        'collector' => '{}',\n", php_escape(c)));
        }
        out.push_str("    ],\n];\n");
        out
    }
}

fn php_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Reads `'send' => true|false`, `'instanceId' => '…'` (or `instance_id`) and
/// `'collector' => '…'` from a PHP configuration array. The file is not
/// evaluated; anything else in it is ignored.
fn parse_php(text: &str) -> Result<OptIn, String> {
    let mut out = OptIn::default();
    let entries = php_entries(text);
    for (key, value) in &entries {
        match key.as_str() {
            "send" => {
                out.send = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return Err(format!("'send' must be true or false, not {other}")),
                }
            }
            "instanceId" | "instance_id" if !value.is_empty() => {
                out.instance_id =
                    Some(parse_uuid(value).ok_or_else(|| format!("'{key}' must be a UUID"))?);
            }
            "collector" => out.collector = Some(value.clone()).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
    Ok(out)
}

/// `'key' => value` pairs of a PHP array literal, values unquoted. Nested
/// arrays are walked through, not returned.
fn php_entries(text: &str) -> Vec<(String, String)> {
    let text = strip_php_comments(text);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(arrow) = rest.find("=>") {
        let before = rest[..arrow].trim_end();
        let after = rest[arrow + 2..].trim_start();
        rest = &rest[arrow + 2..];
        let Some(key) = trailing_quoted(before) else {
            continue;
        };
        let value = if let Some(q) = after.chars().next().filter(|c| *c == '\'' || *c == '"') {
            match leading_quoted(after, q) {
                Some(v) => v,
                None => continue,
            }
        } else {
            after
                .split(|c: char| c == ',' || c == ']' || c == ')' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_owned()
        };
        out.push((key, value));
    }
    out
}

fn strip_php_comments(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("//")
                || t.starts_with('#')
                || t.starts_with('*')
                || t.starts_with("/*")
            {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn trailing_quoted(s: &str) -> Option<String> {
    let q = s.chars().last().filter(|c| *c == '\'' || *c == '"')?;
    let inner = &s[..s.len() - 1];
    let start = inner.rfind(q)?;
    Some(inner[start + 1..].to_owned())
}

fn leading_quoted(s: &str, q: char) -> Option<String> {
    let mut out = String::new();
    let mut chars = s[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c if c == q => return Some(out),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_means_not_opted_in() {
        let dir = tempfile::tempdir().unwrap();
        let o = OptIn::load(&dir.path().join("none.json")).unwrap();
        assert!(!o.send);
        assert!(o.instance_id.is_none());
    }

    #[test]
    fn json_and_php_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["c.json", "anonymous_statistics.php"] {
            let path = dir.path().join("sub").join(name);
            let o = OptIn {
                collector: Some("http://127.0.0.1:8080".into()),
                ..OptIn::default()
            }
            .opted_in();
            o.save(&path).unwrap();
            assert_eq!(OptIn::load(&path).unwrap(), o, "{name}");
            let out = OptIn {
                send: false,
                ..o.clone()
            };
            out.save(&path).unwrap();
            assert_eq!(OptIn::load(&path).unwrap(), out, "{name}");
        }
    }

    #[test]
    fn reads_a_hand_written_php_file() {
        let text = r#"<?php
// 'send' => true would be a comment
$config = [
    'passbolt' => [
        'anonymousStatistics' => [
            "send" => FALSE,
            'instance_id' => "D3B1A0F2-5C4E-4B7A-9F1E-2A6C8D9E0F11",
        ],
    ],
];"#;
        let o = parse_php(text).unwrap();
        assert!(!o.send);
        assert_eq!(
            o.instance_id.unwrap().to_string(),
            "d3b1a0f2-5c4e-4b7a-9f1e-2a6c8d9e0f11"
        );
        assert!(parse_php("<?php return ['send' => 'yes'];").is_err());
    }

    #[test]
    fn unknown_json_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"sned": true}"#).unwrap();
        assert!(matches!(
            OptIn::load(&path),
            Err(OptInError::Invalid { .. })
        ));
    }
}
