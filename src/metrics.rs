//! Operational metrics, rendered in the Prometheus text format at
//! `GET /metrics`.
//!
//! Every label value is a fixed name chosen by the collector (an outcome, a
//! validation rule name, a backend): nothing a client sends can become a
//! label, so no address, identifier or free text can appear here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::ingest::WriterState;

/// What became of one report request. The names are the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportOutcome {
    /// Stored and counted (202).
    Accepted,
    /// Already stored under the same `report_id` (200).
    Duplicate,
    /// Refused by validation (400); see `anonstats_reports_rejected_total`.
    Rejected,
    /// Body over the size limit (413).
    TooLarge,
    /// Wrong content type or charset (415).
    UnsupportedMediaType,
    /// Body not received in time or unreadable (408/400).
    BadRequest,
    /// Refused by the per-source rate limit (429).
    RateLimited,
    /// Over the per-instance daily limit (429).
    InstanceLimited,
    /// The queue was full (503).
    Overloaded,
    /// The database was unavailable or the collector stopping (503).
    Unavailable,
}

impl ReportOutcome {
    const ALL: [ReportOutcome; 10] = [
        ReportOutcome::Accepted,
        ReportOutcome::Duplicate,
        ReportOutcome::Rejected,
        ReportOutcome::TooLarge,
        ReportOutcome::UnsupportedMediaType,
        ReportOutcome::BadRequest,
        ReportOutcome::RateLimited,
        ReportOutcome::InstanceLimited,
        ReportOutcome::Overloaded,
        ReportOutcome::Unavailable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Accepted => "accepted",
            ReportOutcome::Duplicate => "duplicate",
            ReportOutcome::Rejected => "rejected",
            ReportOutcome::TooLarge => "too_large",
            ReportOutcome::UnsupportedMediaType => "unsupported_media_type",
            ReportOutcome::BadRequest => "bad_request",
            ReportOutcome::RateLimited => "rate_limited",
            ReportOutcome::InstanceLimited => "instance_limited",
            ReportOutcome::Overloaded => "overloaded",
            ReportOutcome::Unavailable => "unavailable",
        }
    }
}

/// Counters of the request side; the writer's own figures live in
/// [`WriterState`].
#[derive(Debug)]
pub struct Metrics {
    outcomes: [AtomicU64; ReportOutcome::ALL.len()],
    /// Rejections by validation rule. Keys are `&'static str` rule names
    /// from the validation code, never client input.
    rejected_by_rule: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected_by_rule: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Counts one report request's outcome.
    pub fn report(&self, outcome: ReportOutcome) {
        let i = ReportOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("listed");
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a validation rejection by the rule of each violation.
    pub fn rejected(&self, rules: impl IntoIterator<Item = &'static str>) {
        self.report(ReportOutcome::Rejected);
        let mut map = self
            .rejected_by_rule
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for rule in rules {
            *map.entry(rule).or_default() += 1;
        }
    }

    /// Requests counted with `outcome` so far.
    pub fn outcome_count(&self, outcome: ReportOutcome) -> u64 {
        let i = ReportOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("listed");
        self.outcomes[i].load(Ordering::Relaxed)
    }

    /// The whole exposition, in the Prometheus text format 0.0.4.
    pub fn render(&self, writer: &WriterState, extra: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP anonstats_reports_total Report requests by outcome.\n\
             # TYPE anonstats_reports_total counter\n",
        );
        for (o, n) in ReportOutcome::ALL.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "anonstats_reports_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP anonstats_reports_rejected_total Validation violations of refused reports, by rule.\n\
             # TYPE anonstats_reports_rejected_total counter\n",
        );
        for (rule, n) in self
            .rejected_by_rule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "anonstats_reports_rejected_total{{rule=\"{rule}\"}} {n}"
            );
        }
        writer.batch_size.render(
            &mut out,
            "anonstats_writer_batch_size",
            "Reports per committed or failed transaction.",
        );
        writer.commit_seconds.render(
            &mut out,
            "anonstats_writer_commit_seconds",
            "Time from the start of a batch until it is committed and flushed to disk.",
        );
        let gauges: [(&str, &str, &str, f64); 9] = [
            (
                "anonstats_database_errors_total",
                "counter",
                "Failed database operations of the writer (connections, transactions, flushes and checkpoints).",
                writer.database_errors() as f64,
            ),
            (
                "anonstats_storage_errors_total",
                "counter",
                "I/O errors of the storage: failed flushes and checkpoints, disk I/O errors of any connection.",
                writer.storage_errors() as f64,
            ),
            (
                "anonstats_storage_recoveries_total",
                "counter",
                "Times intake resumed after a failure, once every connection was closed and the reopened database passed its check.",
                writer.recoveries() as f64,
            ),
            (
                "anonstats_ingest_queue_depth",
                "gauge",
                "Reports waiting for the writer.",
                writer.queue_depth() as f64,
            ),
            (
                "anonstats_ingest_queue_capacity",
                "gauge",
                "Reports that may wait before new ones get 503.",
                extra.queue_capacity as f64,
            ),
            (
                "anonstats_writer_healthy",
                "gauge",
                "1 when the writer's last transaction committed.",
                f64::from(u8::from(writer.healthy())),
            ),
            (
                "anonstats_database_up",
                "gauge",
                "1 unless the writer currently considers the database unreachable.",
                f64::from(u8::from(!writer.database_down())),
            ),
            (
                "anonstats_rate_limit_sources",
                "gauge",
                "Sources currently tracked by the rate limiter.",
                extra.rate_limit_sources as f64,
            ),
            (
                "anonstats_pruned_instances_total",
                "counter",
                "Instance snapshots deleted by automatic retention runs.",
                extra.pruned_instances as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// Point-in-time values owned by other parts of the collector.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    pub queue_capacity: usize,
    pub rate_limit_sources: usize,
    pub pruned_instances: u64,
}
