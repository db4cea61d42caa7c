//! Admission of reads: the stats API, erasures and readiness share a fixed
//! number of slots, so that a flood of them cannot queue without bound in
//! the blocking pool or take every database connection. A read that finds
//! no free slot is answered 503 with `Retry-After` at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The read slots of a collector.
#[derive(Debug, Clone)]
pub struct Reads {
    slots: Arc<Semaphore>,
}

impl Reads {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Reads {
        Reads {
            slots: Arc::new(Semaphore::new(n.max(1))),
        }
    }

    /// A slot, held until the permit is dropped, or `None` when all are
    /// taken: the caller answers 503 instead of waiting.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_without_a_free_slot_is_refused_at_once() {
        let reads = Reads::new(2);
        let a = reads.try_enter().expect("first");
        let _b = reads.try_enter().expect("second");
        assert!(reads.try_enter().is_none());
        drop(a);
        assert!(reads.try_enter().is_some());
    }
}
