//! Logging set-up: tracing to stderr, human-readable or JSON.
//!
//! Whatever `RUST_LOG` asks for, the HTTP stack's own crates are capped at
//! `info`: their debug and trace output can include connection details,
//! which anonstats never logs.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

const CAPPED_CRATES: &[&str] = &[
    "actix_http",
    "actix_server",
    "actix_web",
    "h2",
    "mio",
    "awc",
    "actix_rt",
    "ureq",
    "ureq_proto",
    "rustls",
];

/// The filter used for every log output: `RUST_LOG` (default `info`) with the
/// HTTP stack capped.
pub fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for krate in CAPPED_CRATES {
        filter = filter.add_directive(format!("{krate}=info").parse().expect("valid directive"));
    }
    filter
}

/// Whether text logs may carry colour escapes: only on a terminal, and not
/// when `NO_COLOR` is set to anything (<https://no-color.org>). Logs that go
/// to a file, a pipe or a journal stay plain text.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && !matches!(no_color, Some(v) if !v.is_empty())
}

/// Installs the global subscriber, writing to stderr. Safe to call twice
/// (the second call does nothing).
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count as set.
        assert!(use_colour(true, Some(OsStr::new(""))));
    }
}
