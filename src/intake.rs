//! The privacy pipeline of one validated report: anonymise it, take one of
//! its instance's reports of the day, and hand it to the writer, in that
//! order and in this one place.
//!
//! The order matters: the daily cap is keyed by the instance pseudonym, so
//! it can only run after anonymisation, and it must run before the writer
//! so that an instance over its cap costs no write.

use std::time::Duration;

use crate::anonymize::{self, Pseudonymizer};
use crate::clock::Clock;
use crate::ingest::{Ingest, IngestError};
use crate::limits::InstanceLimiter;
use crate::store::Outcome;
use crate::validation::Report;

/// Report intake: the writer's handle, the pseudonymiser and the daily cap.
pub struct Intake {
    ingest: Ingest,
    pseudonymizer: Pseudonymizer,
    instance_limiter: InstanceLimiter,
    clock: Clock,
}

/// What became of an accepted report.
#[derive(Debug)]
pub struct Receipt {
    /// Stored, or a duplicate of a stored one.
    pub outcome: Outcome,
    /// Fields of the report that were dropped as not in the catalog.
    pub ignored: Vec<String>,
}

/// Why a report was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The instance used up its reports of the day.
    #[error("this instance sent too many reports today")]
    InstanceLimited {
        /// Until the next UTC day.
        wait: Duration,
    },
    /// The writer could not take or store it.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl Intake {
    /// Intake through `ingest`, stamping reports with `clock`'s day.
    pub fn new(
        ingest: Ingest,
        pseudonymizer: Pseudonymizer,
        instance_limiter: InstanceLimiter,
        clock: Clock,
    ) -> Intake {
        Intake {
            ingest,
            pseudonymizer,
            instance_limiter,
            clock,
        }
    }

    /// Anonymises `report`, counts it against its instance's daily cap and
    /// stores it. A report that is not counted (a duplicate, or one the
    /// writer failed to store) gives its place under the cap back.
    pub async fn accept(&self, report: Report) -> Result<Receipt, IntakeError> {
        let ignored = report.ignored.clone();
        let record = anonymize::anonymize(report, &self.pseudonymizer, self.clock.today());
        let instance = record.instance.as_ref().map(|i| (i.hash, record.day));
        if let Some((hash, day)) = &instance {
            self.instance_limiter
                .acquire(hash, *day)
                .map_err(|wait| IntakeError::InstanceLimited { wait })?;
        }
        let outcome = self.ingest.submit(record).await;
        if let Some((hash, day)) = &instance {
            if !matches!(outcome, Ok(Outcome::Accepted)) {
                self.instance_limiter.release(hash, *day);
            }
        }
        Ok(Receipt {
            outcome: outcome?,
            ignored,
        })
    }

    /// Whether the writer could take a report now (see
    /// [`Ingest::check_room`]).
    pub fn check_room(&self) -> Result<(), IngestError> {
        self.ingest.check_room()
    }

    /// The writer's handle, for erasures, readiness and metrics.
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// The pseudonymiser reports are keyed with, for erasures.
    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.pseudonymizer
    }
}
