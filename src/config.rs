//! Runtime configuration of the collector, independent of how it was given
//! (flags, environment, tests).

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::ingest::WriterConfig;
use crate::limits::Limits;
use crate::release;
use crate::reporting;
use crate::retention::{Retention, DEFAULT_PRUNE_INTERVAL_HOURS};

/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE: &str = "anonstats.db";
/// Default `--pool-size`.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// Default `--shutdown-timeout`, seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 30;
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// SQLite path or `postgres://` URL.
    pub database_url: String,
    /// What may be collected.
    pub catalog: Arc<Catalog>,
    /// Pseudonymisation secret; when `None`, one is generated once and kept
    /// in the database so that every collector sharing it agrees.
    pub secret: Option<String>,
    /// Batching writer tuning.
    pub writer: WriterConfig,
    /// Most database connections (the writer uses one, reads the rest).
    pub pool_size: u32,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Seconds to finish in-flight requests on SIGTERM/SIGINT.
    pub shutdown_timeout: u64,
    /// Product that reports to the legacy passbolt endpoint belong to.
    pub legacy_product: String,
    /// Reporting: k, default active window, stats API token.
    pub stats: reporting::Settings,
    /// Rate limits, request timeouts and connection bounds.
    pub limits: Limits,
    /// How long pseudonymous data is kept.
    pub retention: Retention,
    /// Hours between retention runs inside `serve` (0: never).
    pub prune_interval_hours: u64,
    /// Where "today" comes from (the system clock, except in tests).
    pub clock: Clock,
    /// Public releases: budget, cadence, and whether `serve` publishes.
    pub releases: release::Settings,
}

impl Config {
    /// Defaults for everything, on the given database.
    pub fn new(database_url: impl Into<String>) -> Config {
        Config {
            bind: DEFAULT_BIND.to_owned(),
            database_url: database_url.into(),
            catalog: Arc::new(Catalog::builtin()),
            secret: None,
            writer: WriterConfig::default(),
            pool_size: DEFAULT_POOL_SIZE,
            workers: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            legacy_product: "passbolt".to_owned(),
            stats: reporting::Settings::default(),
            limits: Limits::default(),
            retention: Retention::default(),
            prune_interval_hours: DEFAULT_PRUNE_INTERVAL_HOURS,
            clock: Clock::System,
            releases: release::Settings::default(),
        }
    }
}
