//! Erasure of one install's stored state, on the request of whoever holds
//! its id.
//!
//! The collector hashes the id exactly as on ingest and learns nothing it did
//! not have. Nothing here tells anyone, the requester or the logs, whether
//! anything was stored: the answer is the same, the durable work is the same
//! (the writer forgets it in one of its transactions, see
//! [`crate::store::write_batch_and_forget`]), and the id is never logged.

use crate::ingest::IngestError;
use crate::intake::Intake;
use crate::reads::{Reads, Refused};
use crate::reporting::cache::Cache;
use crate::validation::Erasure;

/// Erases what is stored about the install, if anything, and makes every
/// cached stats result of this process stale. Returns once the erasure is
/// durable. `intake` keys the id as its reports were keyed, `reads` bounds
/// the erasures waiting, and `cache` holds the stats results made stale.
pub async fn erase(
    intake: &Intake,
    reads: &Reads,
    cache: &Cache,
    request: Erasure,
) -> Result<(), IngestError> {
    let hash = intake
        .pseudonymizer()
        .instance_hash(&request.product, &request.instance_id);
    // A read slot bounds the erasures waiting for the writer; without one,
    // 503. The writer performs the erasure with the reports, in one of its
    // transactions, and answers after the flush.
    let _slot = reads.enter().await.map_err(|refused| match refused {
        Refused::Busy => IngestError::Overloaded,
        Refused::Failed => IngestError::Unavailable,
    })?;
    intake.ingest().erase(hash).await?;
    // After the commit: a result computed before it is never reused.
    cache.invalidate();
    Ok(())
}
