//! Public releases published the way `anonstats release` does, with a
//! seeded noise mechanism so that a test can repeat its figures.

use anonstats::catalog::Catalog;
use anonstats::publication;
use anonstats::release::{self, Mechanism, ReleaseError, Settings, Stored};
use chrono::NaiveDate;
use rand_dp::rngs::StdRng;
use rand_dp::SeedableRng;

use super::TestDb;

/// Publishes the release of `date` at `budget` with a mechanism seeded
/// with `seed`.
pub fn publish_with(
    db: &TestDb,
    budget: f64,
    date: NaiveDate,
    seed: u64,
) -> Result<Stored, ReleaseError> {
    publication::publish(
        &mut db.conn(),
        &Catalog::builtin(),
        &Settings {
            budget,
            ..Settings::default()
        },
        date,
        &mut Mechanism::with_rng(StdRng::seed_from_u64(seed)),
    )
}

/// Publishes the release of `date` at the default budget.
pub fn publish_seeded(db: &TestDb, date: NaiveDate, seed: u64) -> Stored {
    publish_with(db, release::DEFAULT_BUDGET, date, seed).expect("publish a release")
}
