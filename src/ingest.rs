//! The batching writer: the only path from a request to the database.
//!
//! Requests hand their anonymised [`Record`] to a bounded queue and wait.
//! One writer thread takes everything queued (up to a batch size), writes it
//! in one transaction, and only after the commit answers each request. A
//! full queue or a database error is answered at once, so a client is told
//! to retry instead of being told "stored" for a report that is not on disk.
//!
//! When a transaction or a connection fails, the database is considered down:
//! new reports are refused at once (503) instead of queueing behind a dead
//! connection, and the writer probes the database in the background until it
//! answers again, then resumes by itself.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::anonymize::Record;
use crate::db::Pool;
use crate::metrics::{self, Histogram, BATCH_SIZE_BUCKETS, COMMIT_SECONDS_BUCKETS};
use crate::store::{self, CommitSync, Outcome};

/// How long the writer waits for a connection before failing a batch: well
/// under the one second within which a client must hear 503.
const CONNECTION_WAIT: Duration = Duration::from_millis(300);
/// Least time between two probes of a database known to be down.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long the writer sleeps waiting for work before checking on the database.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Reports waiting for the writer before new ones get 503.
    pub queue_capacity: usize,
    /// Most reports written in one transaction.
    pub max_batch: usize,
    /// Attempts for a transaction that lost a race with another collector.
    pub max_attempts: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 2048,
            max_batch: 1024,
            max_attempts: 3,
        }
    }
}

/// Why a report could not be stored now. Each means "retry later".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the ingest queue is full")]
    Overloaded,
    #[error("the database is unavailable")]
    Unavailable,
    #[error("the collector is shutting down")]
    ShuttingDown,
}

struct Job {
    record: Record,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// Shared view of the writer's health, for readiness checks and metrics.
#[derive(Debug)]
pub struct WriterState {
    queued: AtomicUsize,
    /// Reports the writer took from the queue and has not answered yet
    /// (in the transaction, or committed and waiting for the flush).
    unanswered: AtomicUsize,
    healthy: AtomicBool,
    /// Set after a failed connection or transaction, cleared by a probe that
    /// reached the database.
    database_down: AtomicBool,
    database_errors: AtomicU64,
    /// Reports per transaction (committed or not).
    pub batch_size: Histogram,
    /// Seconds from the start of a batch until it is committed and flushed.
    pub commit_seconds: Histogram,
}

impl Default for WriterState {
    fn default() -> Self {
        WriterState {
            queued: AtomicUsize::new(0),
            unanswered: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            database_down: AtomicBool::new(false),
            database_errors: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BUCKETS),
        }
    }
}

impl WriterState {
    /// Reports waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the last transaction committed (true before the first one).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether the last attempt to reach the database failed (new reports
    /// are refused until a probe succeeds).
    pub fn database_down(&self) -> bool {
        self.database_down.load(Ordering::Relaxed)
    }

    /// Failed connections and transactions so far.
    pub fn database_errors(&self) -> u64 {
        self.database_errors.load(Ordering::Relaxed)
    }

    /// Reports held by the collector until they are answered: queued, being
    /// written, or waiting for the flush.
    fn held(&self) -> usize {
        self.queue_depth() + self.unanswered.load(Ordering::Relaxed)
    }

    fn answered(&self, n: usize) {
        self.unanswered.fetch_sub(n, Ordering::Relaxed);
    }

    fn mark_down(&self) {
        self.database_errors.fetch_add(1, Ordering::Relaxed);
        if !self.database_down.swap(true, Ordering::Relaxed) {
            tracing::warn!("database unreachable: refusing reports until it answers again");
        }
    }

    fn mark_up(&self) {
        if self.database_down.swap(false, Ordering::Relaxed) {
            tracing::info!("database reachable again: accepting reports");
        }
    }
}

/// The request side of the writer; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    tx: SyncSender<Job>,
    state: Arc<WriterState>,
    capacity: usize,
    /// Most reports held at once (queue plus one batch): each holds a
    /// connection and its buffers, so this bounds memory under overload.
    max_held: usize,
}

/// Owns the writer thread; dropping every [`Ingest`] and calling
/// [`Writer::join`] drains the queue and stops it.
pub struct Writer {
    thread: JoinHandle<()>,
    syncer: JoinHandle<()>,
    checkpointer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Writer {
    /// Waits until every queued report has been written or answered.
    pub fn join(self) {
        let _ = self.thread.join();
        // The writer dropped its end: the syncer answers what it holds and stops.
        let _ = self.syncer.join();
        if let Some((stop, thread)) = self.checkpointer {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// Time between two background checkpoints.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// SQLite: copies the WAL back into the database file from a thread of its
/// own while the writer keeps committing. Without it, the commit that
/// crosses the automatic checkpoint threshold copies every page written
/// since the last one before its reports are answered, a stall of tens of
/// milliseconds at full load. Durability is unchanged: commits are durable
/// in the WAL, and a checkpoint syncs the database file before the WAL is
/// reused. Ends when `stop`'s sender is dropped, or at once on PostgreSQL.
fn checkpointer(pool: Pool, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Ok(mut conn) = pool.get_timeout(CONNECTION_WAIT) else {
            continue;
        };
        match store::checkpoint(&mut conn) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::debug!(error = %e, "background checkpoint skipped"),
        }
    }
}

/// Starts the writer thread over `pool`.
pub fn start(pool: Pool, config: WriterConfig) -> (Ingest, Writer) {
    let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
    let state = Arc::new(WriterState::default());
    let ingest = Ingest {
        tx,
        state: state.clone(),
        capacity: config.queue_capacity,
        max_held: config.queue_capacity + config.max_batch,
    };
    let pool_for_checkpoints = pool.clone();
    let (to_syncer, committed) = mpsc::sync_channel(SYNC_QUEUE);
    let syncer = {
        let (pool, state) = (pool.clone(), state.clone());
        std::thread::Builder::new()
            .name("anonstats-sync".into())
            .spawn(move || {
                raise_priority();
                syncer(committed, &state, |sync| sync.sync(&pool, CONNECTION_WAIT))
            })
            .expect("spawn sync thread")
    };
    let thread = std::thread::Builder::new()
        .name("anonstats-writer".into())
        .spawn(move || {
            raise_priority();
            let writer = BatchWriter {
                pool,
                config,
                state,
                syncer: to_syncer,
                sync: None,
            };
            run(rx, writer)
        })
        .expect("spawn writer thread");
    let (stop, stopped) = mpsc::channel();
    let checkpointer = std::thread::Builder::new()
        .name("anonstats-checkpoint".into())
        .spawn(move || checkpointer(pool_for_checkpoints, stopped))
        .ok()
        .map(|thread| (stop, thread));
    (
        ingest,
        Writer {
            thread,
            syncer,
            checkpointer,
        },
    )
}

impl Ingest {
    /// Queues a record and waits until it is committed (or refused).
    pub async fn submit(&self, record: Record) -> Result<Outcome, IngestError> {
        // While the database is known to be down, answer at once: queueing
        // would only make clients wait for the same 503.
        if self.state.database_down() {
            return Err(IngestError::Unavailable);
        }
        if self.state.held() >= self.max_held {
            return Err(IngestError::Overloaded);
        }
        let (reply, answer) = oneshot::channel();
        // Counted before sending so that the writer never subtracts first.
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(Job { record, reply }) {
            self.state.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => IngestError::Overloaded,
                TrySendError::Disconnected(_) => IngestError::ShuttingDown,
            });
        }
        // A dropped reply means the writer died mid-batch: nothing committed.
        answer.await.unwrap_or(Err(IngestError::Unavailable))
    }

    /// Refuses at once, before the request's body is even read, when a
    /// report could not be queued now: the queue is full or the database is
    /// known to be down. Under overload this keeps a refusal nearly free, so
    /// the CPU goes to the writer and the requests it can take.
    /// [`Ingest::submit`] checks again: this is only the cheap early answer.
    pub fn check_room(&self) -> Result<(), IngestError> {
        if self.state.database_down() {
            Err(IngestError::Unavailable)
        } else if self.state.queue_depth() >= self.capacity || self.state.held() >= self.max_held {
            Err(IngestError::Overloaded)
        } else {
            Ok(())
        }
    }

    /// The writer's health.
    pub fn state(&self) -> &WriterState {
        &self.state
    }

    /// Queue capacity, for readiness checks.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Nice value asked for the writer thread.
const WRITER_NICE: i32 = -5;

/// Gives the writer thread precedence over the HTTP workers when the CPU is
/// short: under overload the workers would otherwise take the CPU the
/// writer needs to commit what they accepted. Allowed only with the
/// privilege to raise priorities (root, `CAP_SYS_NICE`, or a `RLIMIT_NICE`
/// such as systemd's `LimitNICE=`); without it the writer keeps the normal
/// priority, which changes nothing else.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux, PRIO_PROCESS with 0 applies to the calling thread only.
        // SAFETY: setpriority reads no memory of ours.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WRITER_NICE) };
        if rc == 0 {
            tracing::debug!(nice = WRITER_NICE, "writer thread priority raised");
        } else {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "writer thread priority left as is"
            );
        }
    }
}

fn run(rx: Receiver<Job>, mut writer: BatchWriter) {
    let max_batch = writer.config.max_batch;
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut last_probe: Option<Instant> = None;
    loop {
        // Block for the first job; the senders are gone when the server stopped.
        match rx.recv_timeout(IDLE_WAIT) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout) => {
                let probe_due = !matches!(last_probe, Some(t) if t.elapsed() < PROBE_INTERVAL);
                if writer.state.database_down() && probe_due {
                    last_probe = Some(Instant::now());
                    probe(&writer.pool, &writer.state);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Group commit: whatever queued while the last transaction ran goes
        // into this one.
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Counted as unanswered before leaving the queue count, so that
        // the total held is never under-counted.
        writer
            .state
            .unanswered
            .fetch_add(batch.len(), Ordering::Relaxed);
        writer
            .state
            .queued
            .fetch_sub(batch.len(), Ordering::Relaxed);
        writer.write(&mut batch);
    }
    tracing::debug!("writer stopped: queue drained");
}

/// Checks whether a database known to be down answers again.
fn probe(pool: &Pool, state: &WriterState) {
    let reachable = pool
        .get_timeout(Duration::from_secs(1))
        .ok()
        .is_some_and(|mut conn| store::ping(&mut conn).is_ok());
    if reachable {
        state.mark_up();
    }
}

/// Batches committed but not yet known to be on disk, beyond which the
/// writer waits for the syncer: bounds what a failed flush can refuse.
const SYNC_QUEUE: usize = 2;

/// A committed batch waiting for the flush that makes it durable.
struct Committed {
    sync: Arc<CommitSync>,
    replies: Vec<Reply>,
    outcomes: Vec<Outcome>,
    started: Instant,
}

type Reply = oneshot::Sender<Result<Outcome, IngestError>>;

/// The writer thread's side: writes batches, hands them to the syncer.
struct BatchWriter {
    pool: Pool,
    config: WriterConfig,
    state: Arc<WriterState>,
    syncer: SyncSender<Committed>,
    /// How commits are made durable after the fact, found on the first
    /// batch; `Some(None)` when they cannot be, and each commit flushes.
    sync: Option<Option<Arc<CommitSync>>>,
}

impl BatchWriter {
    fn write(&mut self, batch: &mut Vec<Job>) {
        let state = &*self.state;
        // Reports queued just before the database was found down are refused
        // without another attempt: the probe decides when to try again.
        if state.database_down() {
            state.answered(batch.len());
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(IngestError::Unavailable));
            }
            return;
        }
        // Moved out of the jobs, not cloned: a record owns a dozen strings.
        let (records, replies): (Vec<Record>, Vec<_>) =
            batch.drain(..).map(|j| (j.record, j.reply)).unzip();
        let started = Instant::now();
        let result = (|| {
            let mut conn = self.pool.get_timeout(CONNECTION_WAIT).map_err(|e| {
                tracing::warn!(error = %e, "database unavailable");
                IngestError::Unavailable
            })?;
            if self.sync.is_none() {
                let found = store::CommitSync::of(&mut conn).map_err(|e| {
                    tracing::error!(error = %e, "cannot inspect the database");
                    IngestError::Unavailable
                })?;
                self.sync = Some(found.map(Arc::new));
            }
            let deferred = self.sync.clone().flatten();
            let mut attempt = 1;
            loop {
                let written = match deferred {
                    Some(_) => store::write_batch_unsynced(&mut conn, &records),
                    None => store::write_batch(&mut conn, &records),
                };
                match written {
                    Ok(outcomes) => return Ok((outcomes, deferred)),
                    Err(e) if store::is_retryable(&e) && attempt < self.config.max_attempts => {
                        tracing::debug!(error = %e, attempt, "retrying batch after a conflict");
                        attempt += 1;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, reports = records.len(), "batch not stored");
                        return Err(IngestError::Unavailable);
                    }
                }
            }
        })();
        state.healthy.store(result.is_ok(), Ordering::Relaxed);
        state.batch_size.observe(records.len() as f64);
        match result {
            Ok((outcomes, Some(sync))) => {
                tracing::debug!(
                    reports = records.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "batch committed, waiting for the flush"
                );
                let committed = Committed {
                    sync,
                    replies,
                    outcomes,
                    started,
                };
                // Blocks while the syncer is SYNC_QUEUE batches behind.
                if let Err(mpsc::SendError(c)) = self.syncer.send(committed) {
                    answer(state, c.replies, Err(IngestError::Unavailable));
                }
            }
            Ok((outcomes, None)) => {
                state
                    .commit_seconds
                    .observe(metrics::seconds(started.elapsed()));
                tracing::debug!(
                    reports = records.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "batch committed"
                );
                state.answered(replies.len());
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                state.mark_down();
                answer(state, replies, Err(e));
            }
        }
    }
}

fn answer(state: &WriterState, replies: Vec<Reply>, result: Result<Outcome, IngestError>) {
    state.answered(replies.len());
    for reply in replies {
        let _ = reply.send(result);
    }
}

/// The sync thread: flushes once for every committed batch waiting, then
/// answers their requests. A failed flush answers 503 (the reports may or
/// may not survive a crash; sent again, they are recognised as duplicates
/// if they did) and marks the database down until a probe succeeds.
fn syncer(
    committed: Receiver<Committed>,
    state: &WriterState,
    mut flush: impl FnMut(&CommitSync) -> Result<(), store::SyncError>,
) {
    while let Ok(first) = committed.recv() {
        let mut group = vec![first];
        while let Ok(more) = committed.try_recv() {
            group.push(more);
        }
        match flush(&group[0].sync) {
            Ok(()) => {
                for c in group {
                    state
                        .commit_seconds
                        .observe(metrics::seconds(c.started.elapsed()));
                    state.answered(c.replies.len());
                    for (reply, outcome) in c.replies.into_iter().zip(c.outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
            Err(e) => {
                let reports: usize = group.iter().map(|c| c.replies.len()).sum();
                tracing::error!(error = %e, reports, "commit not confirmed on disk");
                state.healthy.store(false, Ordering::Relaxed);
                state.mark_down();
                for c in group {
                    answer(state, c.replies, Err(IngestError::Unavailable));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn committed(
        sync: &Arc<CommitSync>,
        n: usize,
    ) -> (
        Committed,
        Vec<oneshot::Receiver<Result<Outcome, IngestError>>>,
    ) {
        let (replies, answers): (Vec<_>, Vec<_>) = (0..n).map(|_| oneshot::channel()).unzip();
        let c = Committed {
            sync: sync.clone(),
            replies,
            outcomes: vec![Outcome::Accepted; n],
            started: Instant::now(),
        };
        (c, answers)
    }

    #[test]
    fn reports_are_answered_only_after_the_flush() {
        let sync = Arc::new(CommitSync::Postgres);
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE);
        let (batch, mut answers) = committed(&sync, 3);
        tx.send(batch).unwrap();
        drop(tx);
        let seen_before_flush = Mutex::new(Vec::new());
        let state = WriterState::default();
        state.unanswered.store(3, Ordering::Relaxed);
        syncer(rx, &state, |_| {
            // Nothing may have been answered yet.
            let pending: Vec<bool> = answers.iter_mut().map(|a| a.try_recv().is_err()).collect();
            seen_before_flush.lock().unwrap().extend(pending);
            Ok(())
        });
        assert_eq!(*seen_before_flush.lock().unwrap(), vec![true; 3]);
        for mut a in answers {
            assert_eq!(a.try_recv().unwrap(), Ok(Outcome::Accepted));
        }
        assert!(!state.database_down());
        assert_eq!(state.commit_seconds.count(), 1);
        assert_eq!(state.held(), 0);
    }

    #[test]
    fn reports_waiting_for_the_flush_count_against_the_limit() {
        let (tx, _rx) = mpsc::sync_channel(4);
        let ingest = Ingest {
            tx,
            state: Arc::new(WriterState::default()),
            capacity: 4,
            max_held: 6,
        };
        assert_eq!(ingest.check_room(), Ok(()));
        // The queue is empty, but six reports are being written or flushed.
        ingest.state.unanswered.store(6, Ordering::Relaxed);
        assert_eq!(ingest.check_room(), Err(IngestError::Overloaded));
        ingest.state.answered(1);
        assert_eq!(ingest.check_room(), Ok(()));
    }

    #[test]
    fn a_failed_flush_answers_503_and_marks_the_database_down() {
        // A directory cannot be opened for writing: the flush fails as a
        // disk error would.
        let dir = std::env::temp_dir();
        let sync = Arc::new(CommitSync::SqliteWal(dir));
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE);
        let (first, first_answers) = committed(&sync, 2);
        let (second, second_answers) = committed(&sync, 1);
        tx.send(first).unwrap();
        tx.send(second).unwrap();
        drop(tx);
        let flushes = AtomicUsize::new(0);
        let state = WriterState::default();
        state.unanswered.store(3, Ordering::Relaxed);
        syncer(rx, &state, |s| {
            flushes.fetch_add(1, Ordering::Relaxed);
            s.sync(&crate::db::pool(":memory:", 1), Duration::from_millis(10))
        });
        // Both batches waited for the same flush.
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
        for mut a in first_answers.into_iter().chain(second_answers) {
            assert_eq!(a.try_recv().unwrap(), Err(IngestError::Unavailable));
        }
        assert!(state.database_down());
        assert!(!state.healthy());
        assert_eq!(state.held(), 0);
    }

    #[test]
    fn flushing_the_wal_of_a_file_succeeds_and_a_missing_wal_needs_none() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db.sqlite-wal");
        let pool = crate::db::pool(":memory:", 1);
        let missing = CommitSync::SqliteWal(wal.clone());
        assert!(missing.sync(&pool, Duration::from_millis(10)).is_ok());
        std::fs::write(&wal, b"frames").unwrap();
        assert!(CommitSync::SqliteWal(wal)
            .sync(&pool, Duration::from_millis(10))
            .is_ok());
    }
}
