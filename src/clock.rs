//! The collector's "today": the UTC day stamped on reports, the day the
//! active window ends on, and the day retention counts back from.
//!
//! Everything that needs the current day asks a [`Clock`] instead of the
//! system time, so that a test can pin the day (first or last of a month,
//! 29 February, New Year) and get the same answers on any real date. In
//! production the clock is always [`Clock::System`]: a pinned day is set only
//! by whoever starts the process (a hidden option, logged as a warning),
//! never by a request, so no network client can choose a report's day.

use chrono::{NaiveDate, Utc};

/// Environment variable that pins the day of `serve` and `stats` (hidden:
/// meant for tests of the binary).
pub const TODAY_ENV: &str = "ANONSTATS_TODAY";

/// Where the current UTC day comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system clock, in UTC.
    #[default]
    System,
    /// Always the given day.
    Fixed(NaiveDate),
}

impl Clock {
    /// The current UTC day.
    pub fn today(&self) -> NaiveDate {
        match self {
            Clock::System => Utc::now().date_naive(),
            Clock::Fixed(day) => *day,
        }
    }

    /// A clock pinned to `day` when given, else the system clock.
    pub fn pinned(day: Option<NaiveDate>) -> Clock {
        day.map_or(Clock::System, Clock::Fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_never_moves_and_the_system_clock_is_utc() {
        let day = NaiveDate::from_ymd_opt(2028, 2, 29).unwrap();
        assert_eq!(Clock::Fixed(day).today(), day);
        assert_eq!(Clock::pinned(Some(day)), Clock::Fixed(day));
        assert_eq!(Clock::pinned(None), Clock::System);
        let before = Utc::now().date_naive();
        let today = Clock::System.today();
        let after = Utc::now().date_naive();
        assert!(before <= today && today <= after);
    }
}
