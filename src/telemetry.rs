//! Logging set-up: tracing to stderr, human-readable or JSON.
//!
//! Whatever `RUST_LOG` asks for, the HTTP stack's own crates are capped at
//! `info`: their debug and trace output can include connection details,
//! which anonstats never logs.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// Installs the global subscriber, writing to stderr. Safe to call twice
/// (the second call does nothing).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
