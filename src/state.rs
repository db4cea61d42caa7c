//! What every handler can reach, grouped by concern. Settings are read from
//! the one [`Config`] the collector was built with, never copied out of it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::access::Access;
use crate::config::Config;
use crate::db::Pool;
use crate::intake::Intake;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::reads::Reads;
use crate::reporting::cache::Cache;

/// The shared state of the HTTP server.
pub struct AppState {
    /// The configuration the collector was built with.
    pub config: Config,
    /// The readers' pool (the writer has its own).
    pub pool: Pool,
    /// Report intake.
    pub intake: IntakeState,
    /// Every route other than intake that does work.
    pub reads: ReadState,
    /// The live statistics and who may see them.
    pub stats: StatsState,
    /// Operational counters.
    pub ops: OpsState,
}

/// Report intake.
pub struct IntakeState {
    /// Anonymise, cap, write.
    pub service: Intake,
    /// Per-source token buckets of the report intake routes.
    pub limiter: RateLimiter,
}

/// Every route other than intake that does work (stats, erasures, sign-in,
/// readiness, metrics, the dashboard page).
pub struct ReadState {
    /// Slots for reads (stats, erasures, readiness): a read finds one at
    /// once or is answered 503.
    pub slots: Reads,
    /// Per-source token buckets of these routes.
    pub limiter: RateLimiter,
}

/// The live statistics.
pub struct StatsState {
    /// Recent stats results, reused while nothing was stored.
    pub cache: Cache,
    /// Who may read the live statistics and metrics.
    pub access: Access,
}

/// Operational counters for `GET /metrics`.
pub struct OpsState {
    /// Request counters.
    pub metrics: Metrics,
    /// Instance snapshots deleted by retention runs of this process.
    pub pruned_instances: Arc<AtomicU64>,
}
