//! The daily cap per instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{NaiveDate, Utc};

/// Most instances tracked per day by the daily limit (about 80 bytes each).
pub const MAX_TRACKED_INSTANCES: usize = 1_000_000;

/// At most N reports per instance and UTC day are taken; more get 429 until
/// the next UTC day. Kept in memory only, per collector, keyed by the
/// instance pseudonym that is stored anyway; forgotten at midnight UTC.
pub struct InstanceLimiter {
    per_day: u32,
    state: Mutex<(NaiveDate, HashMap<[u8; 32], u32>)>,
}

impl std::fmt::Debug for InstanceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLimiter")
            .field("per_day", &self.per_day)
            .finish_non_exhaustive()
    }
}

impl InstanceLimiter {
    /// A limiter allowing `per_day` reports per instance (0: unlimited).
    pub fn new(per_day: u32) -> InstanceLimiter {
        InstanceLimiter {
            per_day,
            state: Mutex::new((NaiveDate::MIN, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (NaiveDate, HashMap<[u8; 32], u32>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Instances tracked today.
    pub fn tracked(&self) -> usize {
        self.lock().1.len()
    }

    /// Reserves one of today's reports for `instance`; `Err(wait)` (until
    /// the next UTC day) when none is left.
    pub fn acquire(&self, instance: &[u8; 32], day: NaiveDate) -> Result<(), Duration> {
        if self.per_day == 0 {
            return Ok(());
        }
        let mut guard = self.lock();
        let (today, counts) = &mut *guard;
        if *today != day {
            *today = day;
            counts.clear();
        }
        if !counts.contains_key(instance) && counts.len() >= MAX_TRACKED_INSTANCES {
            // Past this many distinct instances in one day the limit stops
            // tracking new ones rather than growing without bound.
            return Ok(());
        }
        let n = counts.entry(*instance).or_default();
        if *n >= self.per_day {
            return Err(until_next_utc_day());
        }
        *n += 1;
        Ok(())
    }

    /// Gives back a reservation whose report was not counted (duplicate or
    /// not stored).
    pub fn release(&self, instance: &[u8; 32], day: NaiveDate) {
        if self.per_day == 0 {
            return;
        }
        let mut guard = self.lock();
        if guard.0 == day {
            if let Some(n) = guard.1.get_mut(instance) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

fn until_next_utc_day() -> Duration {
    let now = Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (midnight - now).to_std().unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_limit_counts_per_day_and_releases() {
        let limiter = InstanceLimiter::new(2);
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let inst = [7u8; 32];
        assert!(limiter.acquire(&inst, day).is_ok());
        assert!(limiter.acquire(&inst, day).is_ok());
        assert!(limiter.acquire(&inst, day).is_err());
        limiter.release(&inst, day);
        assert!(limiter.acquire(&inst, day).is_ok());
        assert!(limiter.acquire(&inst, day.succ_opt().unwrap()).is_ok());
    }
}
