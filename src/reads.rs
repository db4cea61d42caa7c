//! Admission and execution of reads: the stats API, erasures and public
//! releases share a fixed number of slots, and run on threads of their own
//! at a lower CPU priority than intake.
//!
//! - A read that finds no free slot is refused (503 with `Retry-After`),
//!   never queued: a flood of reads never takes every database connection.
//!   The refusal is sent after the refusal pause (`--refusal-pause`), as a
//!   rate-limited one is: a flood from many sources, each within its
//!   budget, would otherwise get tens of thousands of refusals a second,
//!   each parsed and answered on the workers that take the reports.
//! - Reads run on a few threads of their own ([`default_threads`]: half the
//!   cores), which ask the kernel for the lowest priority (nice 19, which
//!   needs no privilege). When the CPU is short, a flood of expensive reads
//!   (each one a cache miss) then takes what intake leaves, rather than
//!   half of it: report intake keeps its pace.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Nice value of the read threads, the lowest there is: under contention
/// the kernel's fair scheduler weighs a thread at nice 19 at about 1.5% of
/// one at nice 0, so that even every read slot busy with an expensive query
/// takes little from intake, while an idle machine runs reads at full
/// speed.
pub const READ_NICE: i32 = 19;

/// Read threads for this machine: half its cores, at least one. Reads on
/// SQLite run in this process and are CPU-bound: more of them at once
/// finish no sooner on a small machine, and every one keeps SQLite's
/// write-ahead log from being reset while it runs, which slows the writer
/// (measured in docs/reliability.md).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Why a read did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every slot is taken: answer 503 with `Retry-After`.
    #[error("every read slot is taken")]
    Busy,
    /// The read threads are gone (the collector is stopping) or the read
    /// panicked.
    #[error("the read did not complete")]
    Failed,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The read slots and threads of a collector.
#[derive(Debug, Clone)]
pub struct Reads {
    slots: Arc<Semaphore>,
    jobs: Sender<Job>,
    refusal_pause: Duration,
}

impl Reads {
    /// `slots` slots (at least one) shared by `threads` read threads (at
    /// least one, at most one per slot); a read that finds no free slot is
    /// refused after `refusal_pause`. A read admitted while every thread is
    /// busy waits for one, behind at most `slots` others.
    pub fn new(slots: usize, threads: usize, refusal_pause: Duration) -> Reads {
        let n = slots.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.clamp(1, n) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("anonstats-read-{i}"))
                .spawn(move || worker(&queue))
                .expect("spawn a read thread");
        }
        Reads {
            slots: Arc::new(Semaphore::new(n)),
            jobs,
            refusal_pause,
        }
    }

    /// A slot for work that runs elsewhere (an erasure, which the writer
    /// performs), held until the permit is dropped; refused after the
    /// refusal pause when every slot is taken.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Refused> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(slot),
            Err(_) => {
                if !self.refusal_pause.is_zero() {
                    tokio::time::sleep(self.refusal_pause).await;
                }
                Err(Refused::Busy)
            }
        }
    }

    /// Runs `f` on a read thread, or refuses (after the refusal pause) when
    /// every slot is taken. The slot is held until `f` returns, even if the
    /// caller stops waiting, so that abandoned requests cannot pile up
    /// reads.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refused> {
        // Not waiting for a slot: a read is refused at once, only the
        // answer waits.
        let slot = self.enter().await?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panicking read fails alone (its request gets an error) and
            // does not take the thread with it. The slot is free before the
            // answer is sent, so that the caller can run the next read.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            drop(slot);
            if let Ok(value) = result {
                let _ = reply.send(value);
            }
        });
        self.jobs.send(job).map_err(|_| Refused::Failed)?;
        // A dropped reply means the read panicked.
        answer.await.map_err(|_| Refused::Failed)
    }
}

fn worker(queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, never while
        // one runs.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        job();
    }
}

/// Lowers the calling thread's CPU priority to [`READ_NICE`], or leaves it
/// where it is when the process already runs lower than that.
fn lower_priority() {
    if let Err(error) = crate::os::set_thread_nice(crate::os::thread_nice().max(READ_NICE)) {
        tracing::debug!(%error, "read thread priority left as is");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[tokio::test]
    async fn a_read_without_a_free_slot_is_refused_at_once() {
        let reads = Reads::new(2, 2, Duration::ZERO);
        let (release, hold) = channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        let mut running = Vec::new();
        for _ in 0..2 {
            let (reads, hold) = (reads.clone(), hold.clone());
            running.push(tokio::spawn(async move {
                reads
                    .run(move || {
                        let _ = hold.lock().unwrap().recv_timeout(Duration::from_secs(10));
                    })
                    .await
            }));
        }
        // Both slots are taken once both reads have started.
        while reads.slots.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(reads.run(|| 1).await, Err(Refused::Busy));
        release.send(()).unwrap();
        release.send(()).unwrap();
        for r in running {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
        assert_eq!(reads.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_busy_refusal_is_sent_after_the_pause_and_runs_nothing() {
        let pause = Duration::from_millis(200);
        let reads = Reads::new(1, 1, pause);
        let (release, hold) = channel::<()>();
        let holder = {
            let reads = reads.clone();
            tokio::spawn(async move {
                reads
                    .run(move || {
                        let _ = hold.recv_timeout(Duration::from_secs(10));
                    })
                    .await
            })
        };
        while reads.slots.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let started = std::time::Instant::now();
        let refused = reads
            .run(move || flag.store(true, std::sync::atomic::Ordering::Relaxed))
            .await;
        assert_eq!(refused, Err(Refused::Busy));
        assert!(started.elapsed() >= pause, "{:?}", started.elapsed());
        release.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), Ok(()));
        assert!(
            !ran.load(std::sync::atomic::Ordering::Relaxed),
            "a refused read never runs"
        );
    }

    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_frees_its_slot() {
        let reads = Reads::new(1, 1, Duration::ZERO);
        let failed = reads.run(|| -> u32 { panic!("boom") }).await;
        assert_eq!(failed, Err(Refused::Failed));
        assert_eq!(reads.run(|| 3).await, Ok(3));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reads_run_at_a_lower_priority_than_the_caller() {
        let reads = Reads::new(1, 1, Duration::ZERO);
        let caller = crate::os::thread_nice();
        let inside = reads.run(crate::os::thread_nice).await.unwrap();
        assert_eq!(inside, caller.max(READ_NICE), "caller at nice {caller}");
    }
}
