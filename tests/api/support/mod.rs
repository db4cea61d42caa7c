//! The test kit: everything the tests share, and nothing they assert.
//!
//! - [`db`]: fresh databases (a SQLite file, or a PostgreSQL database copied
//!   from a template migrated once), raw reads for privacy checks.
//! - [`inspect`]: typed reads of what the collector stored
//!   (`db.inspect().events()`, `.instances()`, `.values()`, ...), the same
//!   on both backends.
//! - [`oracle`]: the aggregates recomputed from the instance snapshots.
//! - [`outage`]: taking the database away from a collector and bringing it
//!   back, a relay that cuts PostgreSQL connections, a disk that fills up.
//! - [`report`]: [`ReportBuilder`], v1 reports without editing JSON by hand.
//! - [`app`]: a collector inside the test process and its HTTP client.
//! - [`process`]: the real binary, as a collector process or as a command.
//! - [`seed`]: records stored through the real write path, on days of the
//!   test's choosing; [`stats`]: reading the stats API and CLI.
//! - [`release`]: public releases published with a seeded mechanism;
//!   [`browser`]: headless Chromium.
//!
//! Every test body that touches a database is written once, for a
//! [`TestDb`], and run on both backends by [`on_both_backends!`] (async
//! bodies) or [`on_both_backends_sync!`] (plain ones); the PostgreSQL run is
//! skipped, saying so, unless [`POSTGRES_ENV`] names a server.

use std::io::Write;

pub mod app;
pub mod browser;
pub mod db;
pub mod inspect;
pub mod oracle;
pub mod outage;
pub mod process;
pub mod release;
pub mod report;
pub mod seed;
pub mod stats;

pub use app::*;
pub use db::*;
pub use process::*;
pub use report::*;

/// Environment variable naming a PostgreSQL server for the tests.
pub const POSTGRES_ENV: &str = "ANONSTATS_TEST_POSTGRES_URL";

/// Environment variable pinning the day the whole suite runs at
/// (YYYY-MM-DD); without it, the first of [`PINNED_DAYS`].
pub const TODAY_ENV: &str = "ANONSTATS_TEST_TODAY";

/// Days the date-sensitive tests run at: the first and the last day of a
/// month, New Year's Eve and New Year's Day, and a leap day.
pub const PINNED_DAYS: [&str; 5] = [
    "2026-12-01",
    "2026-11-30",
    "2026-12-31",
    "2027-01-01",
    "2028-02-29",
];

/// The stats token of the test collectors. Their `client` presents it on
/// every request; `get_anonymous` does not.
pub const TEST_TOKEN: &str = "test-stats-token-0123456789abcdef";

/// k of the test collectors and CLI runs. Most test populations are sized
/// for it; the tests of the production default (10) set it themselves.
pub const TEST_K: u32 = 5;

/// Parses a YYYY-MM-DD day.
pub fn day(s: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// "Today" for every collector, CLI run and seeded record of the suite:
/// never the system clock, so that each test passes on any date.
pub fn test_today() -> chrono::NaiveDate {
    match std::env::var(TODAY_ENV) {
        Ok(s) if !s.is_empty() => day(&s),
        _ => day(PINNED_DAYS[0]),
    }
}

/// Which backend a test body runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body, `async fn name(db: TestDb)`, on SQLite and on
/// PostgreSQL (skipped, with a message, when no server is configured), as
/// the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::support::TestDb::new(
                    $crate::support::Backend::Sqlite,
                ))
                .await;
            }

            #[actix_web::test]
            async fn postgres() {
                match $crate::support::TestDb::postgres() {
                    Some(db) => super::$name(db).await,
                    None => $crate::support::skip_postgres(concat!(module_path!(), "::postgres")),
                }
            }
        }
    };
}

/// Like [`on_both_backends!`] for a body that is not async,
/// `fn name(db: TestDb)`: it runs on the test's own thread, with no
/// runtime around it.
#[macro_export]
macro_rules! on_both_backends_sync {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::support::TestDb::new(
                    $crate::support::Backend::Sqlite,
                ));
            }

            #[test]
            fn postgres() {
                match $crate::support::TestDb::postgres() {
                    Some(db) => super::$name(db),
                    None => $crate::support::skip_postgres(concat!(module_path!(), "::postgres")),
                }
            }
        }
    };
}

/// Prints why a PostgreSQL test did nothing. Written to stderr directly so
/// that the test harness does not swallow it.
pub fn skip_postgres(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: set {POSTGRES_ENV} to run it against PostgreSQL"
    );
}
