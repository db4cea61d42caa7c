//! Query parameters of the reports, shared by the HTTP API and the CLI:
//! parsed from text, checked against the catalog, defaults applied.

use std::fmt;

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::catalog::Catalog;
pub use crate::grouping::Interval;

/// Default smallest group shown.
pub const DEFAULT_K: u32 = 10;
/// Default active window: reports come on install and update only, so a
/// healthy instance may stay silent for months.
pub const DEFAULT_ACTIVE_DAYS: u32 = 365;
/// Largest accepted active window (100 years).
pub const MAX_ACTIVE_DAYS: u32 = 36_500;
/// Days covered by `from`..`to` when `from` is not given (one year).
pub const DEFAULT_RANGE_DAYS: i64 = 365;

/// Server-wide reporting settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Smallest group (instances or reports) shown as such.
    pub k: u32,
    /// Active window used when a query gives none.
    pub active_days: u32,
    /// When set, the stats API requires this bearer token.
    pub token: Option<StatsToken>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            k: DEFAULT_K,
            active_days: DEFAULT_ACTIVE_DAYS,
            token: None,
        }
    }
}

/// The stats API token. Never printed, compared in constant time.
#[derive(Clone)]
pub struct StatsToken(String);

impl StatsToken {
    /// Wraps a configured token; empty means none.
    pub fn new(token: &str) -> Option<StatsToken> {
        (!token.is_empty()).then(|| StatsToken(token.to_owned()))
    }

    /// Whether `presented` is the token. Both sides are hashed first so that
    /// neither the content nor the length leaks through timing.
    pub fn matches(&self, presented: &str) -> bool {
        self.hash().matches(presented)
    }

    /// The token's hash, which is all a running collector keeps of it.
    pub fn hash(&self) -> crate::access::TokenHash {
        crate::access::TokenHash::of(&self.0)
    }
}

impl fmt::Debug for StatsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsToken(<redacted>)")
    }
}

/// What event counts are split by, besides the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Version,
    Edition,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Version => "version",
            By::Edition => "edition",
        }
    }
}

/// The query parameters as given, not yet checked.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub product: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub active_days: Option<String>,
    pub interval: Option<String>,
    pub by: Option<String>,
}

impl Params {
    /// Names of the query parameters every report accepts (parameters that
    /// do not apply to a report are accepted and ignored, so that one query
    /// string can serve a whole dashboard).
    pub const NAMES: [&'static str; 6] = ["product", "from", "to", "active_days", "interval", "by"];

    /// Sets the parameter `name`; `false` when no parameter has that name.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "product" => &mut self.product,
            "from" => &mut self.from,
            "to" => &mut self.to,
            "active_days" => &mut self.active_days,
            "interval" => &mut self.interval,
            "by" => &mut self.by,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// A parameter that cannot be used, named as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {detail}")]
pub struct ParamError {
    pub parameter: String,
    pub detail: String,
}

impl ParamError {
    pub fn new(parameter: &str, detail: impl Into<String>) -> ParamError {
        ParamError {
            parameter: parameter.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A checked query with every default applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub product: String,
    /// First day of event counts, inclusive.
    pub from: NaiveDate,
    /// Last day of event counts, inclusive.
    pub to: NaiveDate,
    /// An instance is active when its last report is at most this many
    /// days old, counting today as the first.
    pub active_days: u32,
    pub interval: Interval,
    pub by: Option<By>,
    pub k: u32,
    /// The current UTC day, which the active window ends on.
    pub today: NaiveDate,
}

impl Query {
    /// Checks `params` against the catalog and applies the defaults.
    pub fn resolve(
        params: &Params,
        catalog: &Catalog,
        k: u32,
        default_active_days: u32,
        today: NaiveDate,
    ) -> Result<Query, ParamError> {
        let product = match &params.product {
            Some(p) if catalog.product(p).is_some() => p.clone(),
            Some(_) => {
                return Err(ParamError::new(
                    "product",
                    format!(
                        "unknown product; the catalog lists {}",
                        catalog
                            .products
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
            None => catalog
                .default_product()
                .ok_or_else(|| ParamError::new("product", "the catalog lists no product"))?
                .to_owned(),
        };
        let to = match &params.to {
            Some(s) => parse_day("to", s)?,
            None => today,
        };
        let from = match &params.from {
            Some(s) => parse_day("from", s)?,
            None => to - Duration::days(DEFAULT_RANGE_DAYS - 1),
        };
        if from > to {
            return Err(ParamError::new("from", "must not be after to"));
        }
        let active_days = match &params.active_days {
            Some(s) => parse_active_days(s)?,
            None => default_active_days,
        };
        let interval = match params.interval.as_deref() {
            None => Interval::Day,
            Some("day") => Interval::Day,
            Some("week") => Interval::Week,
            Some("month") => Interval::Month,
            Some(_) => return Err(ParamError::new("interval", "must be day, week or month")),
        };
        let by = match params.by.as_deref() {
            None => None,
            Some("version") => Some(By::Version),
            Some("edition") => Some(By::Edition),
            Some(_) => return Err(ParamError::new("by", "must be version or edition")),
        };
        Ok(Query {
            product,
            from,
            to,
            active_days,
            interval,
            by,
            k: k.max(1),
            today,
        })
    }

    /// First last-seen day of an active instance.
    pub fn active_since(&self) -> NaiveDate {
        self.today - Duration::days(i64::from(self.active_days) - 1)
    }

    /// k as a count.
    pub fn k(&self) -> i64 {
        i64::from(self.k)
    }
}

/// Checks an attribute name against the product's catalog.
pub fn check_attribute(catalog: &Catalog, product: &str, name: &str) -> Result<(), ParamError> {
    let attributes = &catalog
        .product(product)
        .expect("resolved products are in the catalog")
        .attributes;
    if attributes.contains_key(name) {
        Ok(())
    } else {
        Err(ParamError::new(
            "attribute",
            format!(
                "unknown attribute for {product}; the catalog lists {}",
                attributes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ))
    }
}

fn parse_day(parameter: &str, s: &str) -> Result<NaiveDate, ParamError> {
    let ok = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    ok.then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| ParamError::new(parameter, "must be a date as YYYY-MM-DD"))
}

/// Parses an active window in days (1 to 36500).
pub fn parse_active_days(s: &str) -> Result<u32, ParamError> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_ACTIVE_DAYS).contains(n))
        .ok_or_else(|| {
            ParamError::new(
                "active_days",
                format!("must be a whole number of days from 1 to {MAX_ACTIVE_DAYS}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn defaults_cover_a_year_up_to_today() {
        let q = Query::resolve(
            &Params::default(),
            &Catalog::builtin(),
            5,
            365,
            day("2026-11-29"),
        )
        .unwrap();
        assert_eq!(q.product, "passbolt");
        assert_eq!(q.to, day("2026-11-29"));
        assert_eq!(q.from, day("2025-11-30"));
        assert_eq!(q.active_since(), day("2025-11-30"));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let catalog = Catalog::builtin();
        let today = day("2026-11-29");
        for (name, value) in [
            ("product", "wordpress"),
            ("from", "2026-13-01"),
            ("to", "yesterday"),
            ("active_days", "0"),
            ("active_days", "-3"),
            ("interval", "year"),
            ("by", "php_version"),
        ] {
            let mut p = Params::default();
            assert!(p.set(name, value.into()));
            let e = Query::resolve(&p, &catalog, 5, 365, today).unwrap_err();
            assert_eq!(e.parameter, name, "{value}");
        }
        let mut p = Params::default();
        p.set("from", "2026-11-02".into());
        p.set("to", "2026-11-01".into());
        assert_eq!(
            Query::resolve(&p, &catalog, 5, 365, today)
                .unwrap_err()
                .parameter,
            "from"
        );
    }

    #[test]
    fn periods_start_on_monday_and_on_the_first() {
        assert_eq!(
            Interval::Week.period_start(day("2026-11-29")),
            day("2026-11-23")
        );
        assert_eq!(
            Interval::Month.period_start(day("2026-11-29")),
            day("2026-11-01")
        );
    }

    #[test]
    fn token_comparison() {
        let t = StatsToken::new("s3cret-token").unwrap();
        assert!(t.matches("s3cret-token"));
        assert!(!t.matches("s3cret-toke"));
        assert!(!t.matches(""));
        assert!(StatsToken::new("").is_none());
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
