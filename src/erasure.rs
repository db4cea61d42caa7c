//! Erasure of one install's stored state, on the request of whoever holds
//! its id.
//!
//! The collector hashes the id exactly as on ingest and learns nothing it did
//! not have. Nothing here tells anyone, the requester or the logs, whether
//! anything was stored: the answer is the same, the durable work is the same
//! (see [`store::forget_instance`]), and the id is never logged.

use crate::ingest::IngestError;
use crate::reads::Refused;
use crate::startup::AppState;
use crate::store;
use crate::validation::Erasure;

/// Attempts per erasure when it loses a race with a concurrent writer.
const ATTEMPTS: u32 = 3;

/// Erases what is stored about the install, if anything, and makes every
/// cached stats result of this process stale. Returns once the erasure is
/// durable.
pub async fn erase(state: &AppState, request: Erasure) -> Result<(), IngestError> {
    let hash = state
        .pseudonymizer
        .instance_hash(&request.product, &request.instance_id);
    // A read slot, or 503 at once: erasures cost a durable commit each.
    let pool = state.pool.clone();
    state
        .reads
        .run(move || -> Result<(), IngestError> {
            let mut conn = pool.get().map_err(|_| IngestError::Unavailable)?;
            let mut attempt = 1;
            loop {
                match store::forget_instance(&mut conn, &hash) {
                    // Whether anything was found is deliberately dropped here.
                    Ok(_) => return Ok(()),
                    Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => attempt += 1,
                    Err(e) => {
                        tracing::error!(error = %e, "instance not forgotten");
                        return Err(IngestError::Unavailable);
                    }
                }
            }
        })
        .await
        .map_err(|refused| match refused {
            Refused::Busy => IngestError::Overloaded,
            Refused::Failed => IngestError::Unavailable,
        })??;
    // After the commit: a result computed before it is never reused.
    state.stats_cache.invalidate();
    Ok(())
}
