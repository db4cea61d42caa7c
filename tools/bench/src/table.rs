//! The result table: one row per target of the performance goals (and a
//! few rows of context), printed for people and written as JSON.
//!
//! Every row exists from the start with status `skipped`, so a run that
//! skips a backend or fails half-way still has the full table, and the JSON
//! keeps a stable shape for scripts.

use serde::Serialize;

/// The stats endpoints timed at full size: (row name, path).
pub const STATS_ENDPOINTS: &[(&str, &str)] = &[
    ("summary", "/api/v1/stats/summary"),
    ("events_day", "/api/v1/stats/events?interval=day"),
    ("events_month", "/api/v1/stats/events?interval=month"),
    ("versions", "/api/v1/stats/versions"),
    (
        "attributes_php_version",
        "/api/v1/stats/attributes/php_version",
    ),
    ("counters", "/api/v1/stats/counters"),
    ("features", "/api/v1/stats/features"),
    ("upgrades", "/api/v1/stats/upgrades"),
];

/// The floods measured next to the reports: (row name, what floods, from
/// many sources, connections).
pub const FLOODS: &[(&str, &str, bool, usize)] = &[
    ("stats_one_source", "GET /api/v1/stats/counters", false, 256),
    (
        "stats_many_sources",
        "GET /api/v1/stats/counters",
        true,
        256,
    ),
    ("erasures_one_source", "POST /api/v1/erasures", false, 256),
    ("erasures_many_sources", "POST /api/v1/erasures", true, 256),
    ("slowloris", "slow connections", false, 4096),
];

/// Storage backends the benchmark measures, with the ingest target of each
/// (share of the baseline's rate).
pub const BACKENDS: &[(&str, f64)] = &[("sqlite", 0.50), ("postgres", 0.35)];

/// How a value is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Context only.
    Info,
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

/// Unit of a value, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    RequestsPerSecond,
    Milliseconds,
    Ratio,
    Mebibytes,
    Bytes,
    Count,
}

/// Outcome of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Measured, no target.
    Info,
    /// Measured nothing (e.g. no request was refused, so no refusal latency).
    NotApplicable,
    /// The endpoint answered 404: not served by this version.
    Missing,
    /// The phase did not run (no PostgreSQL given).
    Skipped,
    /// The phase failed; see the run's output.
    Error,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Stable identifier, e.g. `sqlite.open50.p99_ms`.
    pub id: String,
    /// `baseline`, `sqlite` or `postgres`.
    pub backend: String,
    /// What is measured, for people.
    pub what: String,
    /// The target, for people (`>= 50%`), or empty.
    pub target: String,
    pub value: Option<f64>,
    pub unit: Unit,
    pub status: Status,
    #[serde(skip)]
    check: Check,
}

/// All rows of one run.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// The full table, every row `skipped`.
    pub fn new() -> Table {
        let mut t = Table { rows: Vec::new() };
        let b = "baseline";
        t.add(
            b,
            "max_rps",
            "max accepted reports/s (closed loop)",
            Unit::RequestsPerSecond,
            Check::Info,
        );
        t.add(
            b,
            "open50.p99_ms",
            "p99 latency at 50% of max",
            Unit::Milliseconds,
            Check::Info,
        );
        t.add(
            b,
            "open80.p99_ms",
            "p99 latency at 80% of max",
            Unit::Milliseconds,
            Check::Info,
        );
        for (backend, share) in BACKENDS {
            t.add(
                backend,
                "max_rps",
                "max durable reports/s (closed loop)",
                Unit::RequestsPerSecond,
                Check::Info,
            );
            t.add(
                backend,
                "ratio_to_baseline",
                "durable ingest / baseline rate",
                Unit::Ratio,
                Check::AtLeast(*share),
            );
            t.add(
                backend,
                "ratio_at_256",
                "durable ingest / baseline rate, both at 256 connections",
                Unit::Ratio,
                Check::AtLeast(*share),
            );
            for (load, p99) in [("open50", 20.0), ("open80", 50.0)] {
                let at = if load == "open50" { "50%" } else { "80%" };
                t.add(
                    backend,
                    &format!("{load}.p50_ms"),
                    &format!("p50 latency at {at} of max"),
                    Unit::Milliseconds,
                    Check::Info,
                );
                t.add(
                    backend,
                    &format!("{load}.p99_ms"),
                    &format!("p99 latency at {at} of max"),
                    Unit::Milliseconds,
                    Check::AtMost(p99),
                );
                t.add(
                    backend,
                    &format!("{load}.p999_ms"),
                    &format!("p99.9 latency at {at} of max"),
                    Unit::Milliseconds,
                    Check::Info,
                );
                t.add(
                    backend,
                    &format!("{load}.errors"),
                    &format!("errors at {at} of max"),
                    Unit::Count,
                    Check::AtMost(0.0),
                );
            }
            t.add(
                backend,
                "overload.peak_rss_mib",
                "overload: peak RSS of the collector",
                Unit::Mebibytes,
                Check::AtMost(150.0),
            );
            t.add(
                backend,
                "overload.p99_503_ms",
                "overload: p99 latency of 503 answers",
                Unit::Milliseconds,
                Check::Below(10.0),
            );
            t.add(
                backend,
                "overload.accepted_ratio",
                "overload: accepted rate / max",
                Unit::Ratio,
                Check::AtLeast(0.90),
            );
            t.add(
                backend,
                "seeded.max_rps",
                "max durable reports/s, database seeded",
                Unit::RequestsPerSecond,
                Check::Info,
            );
            t.add(
                backend,
                "seeded.bytes_per_report",
                "bytes written per report stored, database seeded",
                Unit::Bytes,
                if *backend == "sqlite" {
                    Check::AtMost(3072.0)
                } else {
                    Check::Info
                },
            );
            t.add(
                backend,
                "seeded.ratio",
                "seeded / empty-database rate",
                Unit::Ratio,
                Check::AtLeast(0.80),
            );
            for (name, path) in STATS_ENDPOINTS {
                t.add(
                    backend,
                    &format!("stats.{name}.p50_ms"),
                    &format!("p50 of GET {path}, cold (just after a write)"),
                    Unit::Milliseconds,
                    Check::AtMost(50.0),
                );
                t.add(
                    backend,
                    &format!("stats.{name}.warm_p50_ms"),
                    &format!("p50 of GET {path}, warm (repeated, result cache)"),
                    Unit::Milliseconds,
                    Check::Info,
                );
            }
            t.add(
                backend,
                "hostile.alone_rps",
                "reports/s at 16 connections, no flood (mean of before and after)",
                Unit::RequestsPerSecond,
                Check::Info,
            );
            for (name, what, many, connections) in FLOODS {
                let from = if *many { "many sources" } else { "one source" };
                t.add(
                    backend,
                    &format!("hostile.{name}.ratio"),
                    &format!(
                        "reports/s next to {connections} connections of {what} ({from}) / alone"
                    ),
                    Unit::Ratio,
                    Check::AtLeast(0.80),
                );
                t.add(
                    backend,
                    &format!("hostile.{name}.report_5xx"),
                    &format!("reports not accepted (5xx or failed) next to {what} ({from})"),
                    Unit::Count,
                    Check::AtMost(0.0),
                );
            }
            t.add(
                backend,
                "disk.bytes_per_instance",
                "bytes on disk per stored instance",
                Unit::Bytes,
                Check::AtMost(1024.0),
            );
        }
        t
    }

    fn add(&mut self, backend: &str, name: &str, what: &str, unit: Unit, check: Check) {
        let target = match check {
            Check::Info => String::new(),
            Check::AtLeast(v) => format!(">= {}", display(Some(v), unit)),
            Check::AtMost(v) => format!("<= {}", display(Some(v), unit)),
            Check::Below(v) => format!("< {}", display(Some(v), unit)),
        };
        self.rows.push(Row {
            id: format!("{backend}.{name}"),
            backend: backend.to_owned(),
            what: what.to_owned(),
            target,
            value: None,
            unit,
            status: Status::Skipped,
            check,
        });
    }

    fn row(&mut self, id: &str) -> &mut Row {
        self.rows
            .iter_mut()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no row {id}"))
    }

    /// Records a measured value (`None`: nothing to measure) and judges it.
    pub fn set(&mut self, id: &str, value: Option<f64>) {
        let row = self.row(id);
        row.value = value.filter(|v| v.is_finite());
        row.status = match (row.value, row.check) {
            (None, _) => Status::NotApplicable,
            (Some(_), Check::Info) => Status::Info,
            (Some(v), Check::AtLeast(t)) => pass(v >= t),
            (Some(v), Check::AtMost(t)) => pass(v <= t),
            (Some(v), Check::Below(t)) => pass(v < t),
        };
    }

    /// Marks a row as not measurable for `status` (missing, error).
    pub fn mark(&mut self, id: &str, status: Status) {
        let row = self.row(id);
        row.value = None;
        row.status = status;
    }

    /// Marks every still-skipped row of a backend as failed to run.
    pub fn mark_errors(&mut self, backend: &str) {
        for row in self.rows.iter_mut().filter(|r| r.backend == backend) {
            if row.status == Status::Skipped {
                row.status = Status::Error;
            }
        }
    }

    /// The rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The table for people, aligned.
    pub fn render(&self) -> String {
        let header = ["backend", "measurement", "target", "measured", "result"];
        let lines: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.backend.clone(),
                    r.what.clone(),
                    r.target.clone(),
                    display(r.value, r.unit),
                    status_text(r.status).to_owned(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for l in &lines {
            for (w, cell) in widths.iter_mut().zip(l) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let fmt = |cells: [&str; 5]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                // Numbers read best right-aligned.
                if i == 3 {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str(if i < 4 { " | " } else { "" });
            }
            s.trim_end().to_owned()
        };
        let mut out = fmt(header);
        out.push('\n');
        out.push_str(&widths.map(|w| "-".repeat(w)).join("-|-"));
        out.push('\n');
        for l in &lines {
            out.push_str(&fmt([&l[0], &l[1], &l[2], &l[3], &l[4]]));
            out.push('\n');
        }
        out
    }
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

fn pass(ok: bool) -> Status {
    if ok {
        Status::Pass
    } else {
        Status::Fail
    }
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Info => "",
        Status::NotApplicable => "n/a",
        Status::Missing => "missing",
        Status::Skipped => "skipped",
        Status::Error => "error",
    }
}

/// A value as people read it.
pub fn display(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "-".to_owned();
    };
    match unit {
        Unit::RequestsPerSecond => format!("{v:.0}/s"),
        Unit::Milliseconds if v < 10.0 => format!("{v:.2} ms"),
        Unit::Milliseconds => format!("{v:.1} ms"),
        Unit::Ratio => format!("{:.0}%", v * 100.0),
        Unit::Mebibytes => format!("{v:.1} MiB"),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Count => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_judged_against_their_target() {
        let mut t = Table::new();
        t.set("sqlite.ratio_to_baseline", Some(0.6));
        t.set("postgres.ratio_to_baseline", Some(0.3));
        t.set("sqlite.overload.p99_503_ms", Some(10.0));
        t.set("sqlite.open50.errors", Some(0.0));
        t.set("sqlite.overload.peak_rss_mib", None);
        let status = |id: &str| t.rows().iter().find(|r| r.id == id).unwrap().status;
        assert_eq!(status("sqlite.ratio_to_baseline"), Status::Pass);
        assert_eq!(status("postgres.ratio_to_baseline"), Status::Fail);
        assert_eq!(status("sqlite.overload.p99_503_ms"), Status::Fail);
        assert_eq!(status("sqlite.open50.errors"), Status::Pass);
        assert_eq!(
            status("sqlite.overload.peak_rss_mib"),
            Status::NotApplicable
        );
        assert_eq!(status("sqlite.seeded.ratio"), Status::Skipped);
        assert!(t.render().contains("FAIL"));
    }
}
