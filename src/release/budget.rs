//! The privacy budget: how the zCDP rho of a 365-day period is split over
//! the releases of that period and, within a release, over its histograms;
//! and the ledger sums that decide whether another release may be made.
//!
//! zCDP composes by addition: a release made of `h` histograms, each of L2
//! sensitivity 1 with discrete Gaussian noise of scale `sigma`, spends
//! `h / (2 sigma^2)`, and the releases of any 365 days together spend the
//! sum of theirs. The split is fixed by the catalog and the cadence, never
//! by the data, so that it reveals nothing.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::mechanism::Sigma;
use crate::grouping::Interval;

/// Length of the period the budget is for, in days.
pub const PERIOD_DAYS: i64 = 365;

/// Default `--privacy-budget`: rho per 365 days (see docs/privacy.md).
pub const DEFAULT_BUDGET: f64 = 0.5;

/// Default `--release-cadence`.
pub const DEFAULT_CADENCE: Cadence = Cadence::Weekly;

/// How often `serve` publishes a release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cadence {
    Daily,
    #[default]
    Weekly,
    Monthly,
}

impl Cadence {
    /// Most periods of this cadence that any 365 consecutive days touch:
    /// the most scheduled releases (one per period) such a span can hold.
    pub fn periods_per_budget(self) -> u32 {
        match self {
            Cadence::Daily => 365,
            // 365 days = 52 weeks and 1 day: at most 53 ISO weeks.
            Cadence::Weekly => 53,
            // At most 12 whole months plus parts of two more.
            Cadence::Monthly => 13,
        }
    }

    /// The calendar period a release day belongs to.
    pub fn interval(self) -> Interval {
        match self {
            Cadence::Daily => Interval::Day,
            Cadence::Weekly => Interval::Week,
            Cadence::Monthly => Interval::Month,
        }
    }

    /// Name used by the flag and in releases.
    pub const fn as_str(self) -> &'static str {
        match self {
            Cadence::Daily => "daily",
            Cadence::Weekly => "weekly",
            Cadence::Monthly => "monthly",
        }
    }

    /// Parses a flag value.
    pub fn parse(s: &str) -> Option<Cadence> {
        match s {
            "daily" => Some(Cadence::Daily),
            "weekly" => Some(Cadence::Weekly),
            "monthly" => Some(Cadence::Monthly),
            _ => None,
        }
    }

    /// Whether a scheduled release is due on `today`, given the day of the
    /// latest release: none yet in today's period.
    pub fn due(self, today: NaiveDate, latest: Option<NaiveDate>) -> bool {
        latest.is_none_or(|d| d < self.interval().period_start(today))
    }
}

/// How one release spends its share of the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The budget split, rho per 365 days.
    pub budget: f64,
    /// The cadence fixing the number of releases it is split over.
    pub cadence: Cadence,
    /// rho allotted to the release: budget / periods per 365 days.
    pub release_rho: f64,
    /// Histograms the release is made of (fixed by the catalog).
    pub histograms: u32,
    /// rho allotted to each histogram.
    pub histogram_rho: f64,
    /// Noise scale of every histogram, rounded up from
    /// `sqrt(1 / (2 histogram_rho))`.
    pub sigma: Sigma,
    /// rho actually spent: `histograms / (2 sigma^2)`, at most `release_rho`.
    pub spent: f64,
}

impl Split {
    /// The split of `budget` (rho per 365 days) for a release of
    /// `histograms` histograms at `cadence`.
    pub fn new(budget: f64, cadence: Cadence, histograms: u32) -> Split {
        let release_rho = budget / f64::from(cadence.periods_per_budget());
        let histogram_rho = release_rho / f64::from(histograms.max(1));
        let sigma = Sigma::at_least((1.0 / (2.0 * histogram_rho)).sqrt());
        Split {
            budget,
            cadence,
            release_rho,
            histograms,
            histogram_rho,
            sigma,
            spent: f64::from(histograms) * sigma.rho(),
        }
    }
}

/// First day of the 365 days ending on `day`.
pub fn period_start(day: NaiveDate) -> NaiveDate {
    day - Duration::days(PERIOD_DAYS - 1)
}

/// rho spent by the releases (day, rho) dated within the 365 days ending on
/// `as_of`.
pub fn spent(releases: &[(NaiveDate, f64)], as_of: NaiveDate) -> f64 {
    let from = period_start(as_of);
    releases
        .iter()
        .filter(|(d, _)| *d >= from && *d <= as_of)
        .map(|(_, rho)| rho)
        .sum()
}

/// Budget left on `as_of`: `budget` minus what the last 365 days spent,
/// never below zero.
pub fn left(budget: f64, releases: &[(NaiveDate, f64)], as_of: NaiveDate) -> f64 {
    (budget - spent(releases, as_of)).max(0.0)
}

/// A release that does not fit in the budget left.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "privacy budget exhausted: this release needs rho {needed:.6}, but only rho {left:.6} of \
     the budget of {budget} per 365 days is left on {as_of}"
)]
pub struct OverBudget {
    pub needed: f64,
    pub left: f64,
    pub budget: f64,
    pub as_of: NaiveDate,
}

/// Checks that a release spending `needed` on `as_of` fits. The equal
/// shares of a full period may sum to a hair over the budget in floating
/// point, which the tolerance absorbs.
pub fn check(
    budget: f64,
    releases: &[(NaiveDate, f64)],
    as_of: NaiveDate,
    needed: f64,
) -> Result<(), OverBudget> {
    let left = left(budget, releases, as_of);
    if needed <= left + budget * 1e-9 {
        Ok(())
    } else {
        Err(OverBudget {
            needed,
            left,
            budget,
            as_of,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_default_split_of_a_weekly_release() {
        let s = Split::new(DEFAULT_BUDGET, Cadence::Weekly, 23);
        assert!((s.release_rho - 0.5 / 53.0).abs() < 1e-15);
        assert!((s.histogram_rho - 0.5 / 53.0 / 23.0).abs() < 1e-15);
        // sigma = sqrt(23 * 53 / (2 * 0.5)) = sqrt(1219)
        assert!((s.sigma.value() - 1219f64.sqrt()).abs() <= 1e-6);
        assert!(s.spent <= s.release_rho);
        assert!(s.spent > s.release_rho * 0.99999);
    }

    #[test]
    fn a_full_period_of_scheduled_releases_fits_the_budget() {
        for cadence in [Cadence::Daily, Cadence::Weekly, Cadence::Monthly] {
            let split = Split::new(1.0, cadence, 20);
            let n = cadence.periods_per_budget();
            let start = d("2026-01-01");
            let mut releases = Vec::new();
            for i in 0..n {
                let day = start + Duration::days(i64::from(i));
                check(1.0, &releases, day, split.spent).unwrap();
                releases.push((day, split.spent));
            }
            let day = start + Duration::days(i64::from(n));
            if cadence != Cadence::Daily {
                // Releases closer together than the cadence run out.
                let err = check(1.0, &releases, day, split.spent).unwrap_err();
                assert!(err.left < split.spent);
            }
        }
    }

    #[test]
    fn spending_counts_the_last_365_days_only() {
        let releases = [
            (d("2025-11-30"), 0.25),
            (d("2025-12-01"), 0.125),
            (d("2026-11-30"), 0.0625),
        ];
        let as_of = d("2026-11-30");
        assert_eq!(period_start(as_of), d("2025-12-01"));
        assert_eq!(spent(&releases, as_of), 0.1875);
        assert_eq!(left(0.5, &releases, as_of), 0.3125);
        // A release dated later than the day asked about does not count;
        // one a day before the window's start does.
        assert_eq!(spent(&releases, d("2026-11-29")), 0.375);
    }

    #[test]
    fn an_over_budget_release_names_the_budget_left() {
        let releases = [(d("2026-11-01"), 0.4)];
        let err = check(0.5, &releases, d("2026-12-01"), 0.2).unwrap_err();
        assert!((err.left - 0.1).abs() < 1e-12);
        let text = err.to_string();
        assert!(text.contains("privacy budget exhausted"), "{text}");
        assert!(text.contains("0.100000"), "{text}");
        assert!(check(0.5, &releases, d("2026-12-01"), 0.1).is_ok());
    }

    #[test]
    fn a_release_is_due_once_per_period() {
        let mon = d("2026-11-30");
        assert!(Cadence::Weekly.due(mon, None));
        assert!(Cadence::Weekly.due(mon, Some(d("2026-11-29"))));
        assert!(!Cadence::Weekly.due(d("2026-12-03"), Some(mon)));
        assert!(!Cadence::Monthly.due(d("2026-12-31"), Some(d("2026-12-01"))));
        assert!(Cadence::Monthly.due(d("2027-01-01"), Some(d("2026-12-31"))));
        assert!(Cadence::Daily.due(d("2026-12-02"), Some(d("2026-12-01"))));
        assert!(!Cadence::Daily.due(d("2026-12-01"), Some(d("2026-12-01"))));
    }
}
