//! How counts are grouped, the same way by the live reports and by the
//! public releases: event counts per calendar period, counters in fixed
//! histogram buckets, and small groups folded into one row.

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

/// Label of the row small groups are folded into. It is also the value the
/// collector stores for attribute values outside the catalog: both mean "a
/// value not listed separately".
pub const OTHER: &str = "other";

/// Lower bounds of the fixed histogram buckets: 0, 1, 2-5, 6-25, 26-99,
/// 100-499, 500-1999, 2000-9999, 10000+. Each is also the lower bound of a
/// fine storage bucket, so that every fine bucket falls in exactly one.
pub const HISTOGRAM_BOUNDS: [i64; 9] = [0, 1, 2, 6, 26, 100, 500, 2000, 10_000];

/// How event counts are grouped in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    #[default]
    Day,
    Week,
    Month,
}

impl Interval {
    /// First day of the period holding `day`: the day itself, the Monday of
    /// its ISO week, or the first of its month.
    pub fn period_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Interval::Day => day,
            Interval::Week => day - Duration::days(day.weekday().num_days_from_monday() as i64),
            Interval::Month => day.with_day(1).expect("every month has a first day"),
        }
    }

    /// The name `interval=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}
