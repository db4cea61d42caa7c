//! The batching writer: the only path from a request to the database.
//!
//! Requests hand their anonymised [`Record`] to a bounded queue and wait.
//! One writer thread takes everything queued (up to a batch size), writes it
//! in one transaction, and only after the commit answers each request. A
//! full queue or a database error is answered at once, so a client is told
//! to retry instead of being told "stored" for a report that is not on disk.
//!
//! When a transaction, a connection, a flush or a checkpoint fails, the
//! database is considered down: new reports are refused at once (503)
//! instead of queueing behind a dead connection, and reports committed but
//! not yet flushed are refused too. A database that answers a query again is
//! not enough to resume: Linux reports a failed write-back to one flush only
//! and may drop the pages that were not written, so after a flush or a
//! checkpoint failed, a later flush can succeed although earlier commits
//! never reached the disk, and the connections may still see them. So the
//! writer resumes only after a reopen (`recover`): every connection of
//! every pool of the database is closed (see [`db::Storage`]), a new one is
//! opened and passes [`store::check_storage`], and only then are reports
//! acknowledged again. A report retried after that is answered `duplicate`
//! only if the reopened database has it, and stored again otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::anonymize::{InstanceHash, Record};
use crate::db::{self, Pool, Storage};
use crate::histogram::{self, Histogram, BATCH_SIZE_BUCKETS, COMMIT_SECONDS_BUCKETS};
use crate::store::{self, CommitSync, Outcome};

/// How long the writer waits for a connection before failing a batch: well
/// under the one second within which a client must hear 503.
const CONNECTION_WAIT: Duration = Duration::from_millis(300);
/// Least time between two attempts to reopen a database known to be down.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one attempt to reopen the database waits for the connections
/// opened before the failure to be closed (by the requests using them).
const RECOVERY_WAIT: Duration = Duration::from_secs(1);
/// How long the writer sleeps waiting for work before checking on the database.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Default `--queue-capacity`.
pub const DEFAULT_QUEUE_CAPACITY: usize = 2048;
/// Default `--max-batch`.
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Reports waiting for the writer before new ones get 503.
    pub queue_capacity: usize,
    /// Most reports written in one transaction.
    pub max_batch: usize,
    /// Attempts for a transaction that lost a race with another collector.
    pub max_attempts: u32,
    /// How long a report's dedupe key counts (`--dedupe-days`).
    pub dedupe: store::DedupeWindow,
    /// Batches committed but not yet known to be on disk, beyond which the
    /// writer waits for the flush ([`sync_queue`]).
    pub sync_queue: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            max_attempts: 3,
            dedupe: store::DedupeWindow::default(),
            sync_queue: SYNC_QUEUE,
        }
    }
}

/// How many committed batches may wait for their flush on `backend`. It
/// bounds what a failed flush can refuse; deeper than that, the writer
/// waits. A PostgreSQL flush is a commit on a connection of its own, a
/// round trip and a server's WAL write away, so the writer keeps more
/// batches ahead of it there; on SQLite the flush is one `fdatasync` of
/// the WAL, and a deeper queue measured slower (docs/performance.md).
pub fn sync_queue(backend: crate::db::Backend) -> usize {
    match backend {
        crate::db::Backend::Postgres => 4,
        crate::db::Backend::Sqlite => SYNC_QUEUE,
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

/// What the writer is asked to do.
// Nearly every job is a report: boxing it would cost an allocation per
// report to save a few hundred bytes on the rare erasure.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// Store an anonymised report.
    Report(Record),
    /// Forget an install, by its pseudonym (see [`store::forget_instance`]).
    Erase(InstanceHash),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// Erasures written per batch at most. Erasures share the writer, its
/// transactions and its flushes with the reports instead of taking the
/// database's write lock for a durable commit each. Those beyond this many
/// (or beyond [`ERASURES_PER_SECOND`]) wait for the next batches, so
/// reports keep their pace whatever the erasures queued.
pub const ERASURES_PER_BATCH: usize = 4;

/// Shared view of the writer's health, for readiness checks and metrics.
#[derive(Debug)]
pub struct WriterState {
    queued: AtomicUsize,
    /// Reports the writer took from the queue and has not answered yet
    /// (in the transaction, or committed and waiting for the flush).
    unanswered: AtomicUsize,
    healthy: AtomicBool,
    /// Generations of the database's connections: each failure starts a
    /// new one.
    storage: Storage,
    /// The storage's generation when intake last resumed: while the current
    /// one differs, a failure is not yet followed by a reopen, and reports
    /// are refused.
    resumed_in: AtomicU64,
    database_errors: AtomicU64,
    recoveries: AtomicU64,
    /// Held by the checkpointer from a checkpoint until its failure is
    /// recorded, and by the sync thread from the end of a flush until its
    /// reports are answered: a checkpoint that got an I/O error may have
    /// used up the error a concurrent flush should have seen, so its failure
    /// is recorded before that flush's reports are answered.
    flush_order: Mutex<()>,
    /// Reports per transaction (committed or not).
    pub batch_size: Histogram,
    /// Seconds from the start of a batch until it is committed and flushed.
    pub commit_seconds: Histogram,
}

impl Default for WriterState {
    fn default() -> Self {
        WriterState::new(Storage::default())
    }
}

impl WriterState {
    /// The state of a writer whose pools share `storage`.
    pub fn new(storage: Storage) -> WriterState {
        WriterState {
            queued: AtomicUsize::new(0),
            unanswered: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            resumed_in: AtomicU64::new(storage.generation()),
            storage,
            database_errors: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            flush_order: Mutex::new(()),
            batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BUCKETS),
        }
    }

    /// Reports waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the last transaction committed (true before the first one).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether a failure was recorded since intake last resumed: new
    /// reports are refused until the database is reopened and checked.
    pub fn database_down(&self) -> bool {
        self.storage.generation() != self.resumed_in.load(Ordering::SeqCst)
    }

    /// Failed connections, transactions, flushes and checkpoints of the
    /// writer so far.
    pub fn database_errors(&self) -> u64 {
        self.database_errors.load(Ordering::Relaxed)
    }

    /// I/O errors of the storage so far (failed flushes and checkpoints,
    /// disk I/O errors of any connection).
    pub fn storage_errors(&self) -> u64 {
        self.storage.io_errors()
    }

    /// Times intake resumed after the database was reopened and checked.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Reports held by the collector until they are answered: queued, being
    /// written, or waiting for the flush.
    fn held(&self) -> usize {
        self.queue_depth() + self.unanswered.load(Ordering::Relaxed)
    }

    fn answered(&self, n: usize) {
        self.unanswered.fetch_sub(n, Ordering::Relaxed);
    }

    /// Records a failure of the writer; `io` when it was an I/O error of
    /// the storage. Returns the new generation.
    fn mark_down(&self, io: bool) -> u64 {
        let was_up = !self.database_down();
        self.database_errors.fetch_add(1, Ordering::Relaxed);
        let generation = if io {
            self.storage.fail_io()
        } else {
            self.storage.fail()
        };
        if was_up {
            tracing::warn!(
                generation,
                "database failed: refusing reports until it is reopened and checked"
            );
        }
        generation
    }

    /// Resumes intake after a reopen made in `generation`, unless another
    /// failure came since.
    fn resume(&self, generation: u64) -> bool {
        if self.storage.generation() != generation {
            return false;
        }
        self.resumed_in.store(generation, Ordering::SeqCst);
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            generation,
            "database reopened and checked after a failure: accepting reports"
        );
        true
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
    /// `None` for a writer that discards (see [`discard`]).
    syncer: Option<JoinHandle<()>>,
    checkpointer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Writer {
    /// Waits until every queued report has been written or answered.
    pub fn join(self) {
        let _ = self.thread.join();
        // The writer dropped its end: the syncer answers what it holds and stops.
        if let Some(syncer) = self.syncer {
            let _ = syncer.join();
        }
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
fn checkpointer(pool: Pool, state: &WriterState, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if !checkpoint_once(&pool, state) {
            return;
        }
    }
}

/// One background checkpoint; `false` when the database needs none.
///
/// A checkpoint flushes the WAL before copying it: if that flush fails, the
/// error may never be reported again to anyone, so it stops
/// acknowledgements like a failed commit flush. Only a checkpoint skipped
/// because another connection held a lock is harmless.
fn checkpoint_once(pool: &Pool, state: &WriterState) -> bool {
    // A recovery runs a checkpoint of its own.
    if state.database_down() {
        return true;
    }
    let Ok(mut conn) = pool.get_timeout(CONNECTION_WAIT) else {
        return true;
    };
    let order = state.flush_order.lock().unwrap_or_else(|e| e.into_inner());
    match store::checkpoint(&mut conn, state.storage.faults()) {
        Ok(needed) => needed,
        Err(e) if store::is_busy(&e) => {
            tracing::debug!(error = %e, "background checkpoint skipped");
            true
        }
        Err(e) => {
            let generation = state.mark_down(true);
            drop(order);
            state.healthy.store(false, Ordering::Relaxed);
            tracing::error!(
                error = %e,
                generation,
                "checkpoint failed: refusing reports until the database is reopened"
            );
            true
        }
    }
}

/// The bounded queue in front of a writer, and the state both sides share.
fn queue(storage: Storage, config: &WriterConfig) -> (Ingest, Receiver<Job>, Arc<WriterState>) {
    let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
    let state = Arc::new(WriterState::new(storage));
    let ingest = Ingest {
        tx,
        state: state.clone(),
        capacity: config.queue_capacity,
        max_held: config.queue_capacity + config.max_batch,
    };
    (ingest, rx, state)
}

/// Starts the writer thread over `pool`. `storage` is the one `pool` and
/// `readers` (the other pools of the database, whose connections a
/// recovery closes too) were built with.
pub fn start(
    storage: Storage,
    pool: Pool,
    readers: Vec<Pool>,
    config: WriterConfig,
) -> (Ingest, Writer) {
    let (ingest, rx, state) = queue(storage, &config);
    let pool_for_checkpoints = pool.clone();
    let (to_syncer, committed) = mpsc::sync_channel(config.sync_queue);
    let syncer = {
        let (pool, state) = (pool.clone(), state.clone());
        std::thread::Builder::new()
            .name("anonstats-sync".into())
            .spawn(move || {
                raise_priority();
                syncer(committed, &state, |sync| {
                    sync.sync(&pool, CONNECTION_WAIT, state.storage.faults())
                })
            })
            .expect("spawn sync thread")
    };
    let state_for_checkpoints = state.clone();
    let thread = std::thread::Builder::new()
        .name("anonstats-writer".into())
        .spawn(move || {
            raise_priority();
            let writer = BatchWriter {
                pool,
                readers,
                config,
                state,
                syncer: to_syncer,
                sync: Durability::Unknown,
            };
            run(rx, writer)
        })
        .expect("spawn writer thread");
    let (stop, stopped) = mpsc::channel();
    let checkpointer = std::thread::Builder::new()
        .name("anonstats-checkpoint".into())
        .spawn(move || checkpointer(pool_for_checkpoints, &state_for_checkpoints, stopped))
        .ok()
        .map(|thread| (stop, thread));
    (
        ingest,
        Writer {
            thread,
            syncer: Some(syncer),
            checkpointer,
        },
    )
}

/// Starts a writer that answers every report `accepted` (and every erasure
/// done) without storing anything: the benchmark's baseline, a collector
/// whose storage costs nothing. Requests still go through the same queue,
/// its bounds and the same batching, so that only the database's work is
/// missing from what they cost. Nothing built on it may face real clients.
pub fn discard(storage: Storage, config: WriterConfig) -> (Ingest, Writer) {
    let (ingest, rx, state) = queue(storage, &config);
    let thread = std::thread::Builder::new()
        .name("anonstats-writer".into())
        .spawn(move || {
            raise_priority();
            let mut batch: Vec<Job> = Vec::with_capacity(config.max_batch);
            let mut waiting: std::collections::VecDeque<Job> = Default::default();
            loop {
                let first = if waiting.is_empty() {
                    match rx.recv() {
                        Ok(job) => Some(job),
                        Err(_) => break,
                    }
                } else {
                    rx.try_recv().ok()
                };
                fill(
                    &mut batch,
                    first,
                    || rx.try_recv().ok(),
                    &mut waiting,
                    config.max_batch,
                    ERASURES_PER_BATCH,
                );
                // The same accounting as the real writer's, so that the
                // queue's bounds refuse alike.
                state.unanswered.fetch_add(batch.len(), Ordering::Relaxed);
                state.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                state.batch_size.observe(batch.len() as f64);
                state.answered(batch.len());
                for job in batch.drain(..) {
                    let _ = job.reply.send(Ok(Outcome::Accepted));
                }
            }
        })
        .expect("spawn writer thread");
    (
        ingest,
        Writer {
            thread,
            syncer: None,
            checkpointer: None,
        },
    )
}

impl Ingest {
    /// Queues a record and waits until it is committed (or refused).
    pub async fn submit(&self, record: Record) -> Result<Outcome, IngestError> {
        self.enqueue(Work::Report(record)).await
    }

    /// Queues the erasure of the install with this pseudonym and waits until
    /// it is durable (or refused). The answer is the same whether or not
    /// anything was stored.
    pub async fn erase(&self, instance_hash: InstanceHash) -> Result<(), IngestError> {
        self.enqueue(Work::Erase(instance_hash)).await.map(|_| ())
    }

    async fn enqueue(&self, work: Work) -> Result<Outcome, IngestError> {
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
        if let Err(e) = self.tx.try_send(Job { work, reply }) {
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
    match crate::os::set_thread_nice(WRITER_NICE) {
        Ok(()) => tracing::debug!(nice = WRITER_NICE, "writer thread priority raised"),
        Err(error) => tracing::debug!(%error, "writer thread priority left as is"),
    }
}

fn run(rx: Receiver<Job>, mut writer: BatchWriter) {
    let max_batch = writer.config.max_batch;
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    // Erasures beyond what the batches so far could take, oldest first.
    let mut waiting: std::collections::VecDeque<Job> = Default::default();
    let mut budget = ErasureBudget::new(Instant::now());
    let mut stopping = false;
    let mut last_probe: Option<Instant> = None;
    loop {
        let allowed = if stopping {
            ERASURES_PER_BATCH
        } else {
            budget.available(Instant::now())
        };
        // Block for the first job, unless erasures may go now; the senders
        // are gone when the server stopped.
        let first = if waiting.is_empty() {
            rx.recv_timeout(IDLE_WAIT)
        } else if allowed > 0 || stopping {
            rx.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else {
            rx.recv_timeout(budget.until_next(Instant::now()))
        };
        let first = match first {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) if waiting.is_empty() => {
                let probe_due = !matches!(last_probe, Some(t) if t.elapsed() < PROBE_INTERVAL);
                if writer.state.database_down() && probe_due {
                    recover(&writer.pool, &writer.readers, &writer.state, RECOVERY_WAIT);
                    last_probe = Some(Instant::now());
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) if waiting.is_empty() => break,
            Err(RecvTimeoutError::Disconnected) => {
                // Whatever waits is answered before the writer stops.
                stopping = true;
                None
            }
            Err(RecvTimeoutError::Timeout) => None,
        };
        let allowed = if stopping {
            ERASURES_PER_BATCH
        } else {
            budget.available(Instant::now())
        };
        // Group commit: whatever queued while the last transaction ran goes
        // into this one.
        let erasures = fill(
            &mut batch,
            first,
            || rx.try_recv().ok(),
            &mut waiting,
            max_batch,
            allowed,
        );
        budget.spend(erasures);
        if batch.is_empty() {
            continue;
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

/// Erasures the writer performs per second at most, in bursts of up to
/// [`ERASURES_PER_BATCH`]. An erasure costs the writer about as much as a
/// few reports (it reads the install, or another one, and moves every
/// aggregate of its snapshot), so a flood of erasures from many sources,
/// each within its own budget, could otherwise take a large share of
/// intake. Installs ask to be forgotten a few times a day; the erasures
/// waiting for their turn are bounded by the read slots, and a request
/// that finds none free is refused with `503` and `Retry-After`.
pub const ERASURES_PER_SECOND: f64 = 50.0;

/// The token bucket of [`ERASURES_PER_SECOND`].
struct ErasureBudget {
    tokens: f64,
    at: Instant,
}

impl ErasureBudget {
    fn new(now: Instant) -> ErasureBudget {
        ErasureBudget {
            tokens: ERASURES_PER_BATCH as f64,
            at: now,
        }
    }

    /// Erasures that may go into the next batch.
    fn available(&mut self, now: Instant) -> usize {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * ERASURES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(ERASURES_PER_BATCH as f64);
        self.at = now;
        (self.tokens.floor() as usize).min(ERASURES_PER_BATCH)
    }

    fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// Time until the next erasure may go.
    fn until_next(&self, now: Instant) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0) / ERASURES_PER_SECOND;
        let due = self.at + Duration::from_secs_f64(missing);
        due.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }
}

/// A job of the writer's queue, as batching sees it.
trait Queued {
    fn is_erasure(&self) -> bool;
}

impl Queued for Job {
    fn is_erasure(&self) -> bool {
        matches!(self.work, Work::Erase(_))
    }
}

/// Fills the next batch: `first` and the jobs `more` yields, until it holds
/// `max_batch` reports or `more` has none left; then at most `erasures`
/// (and never more than [`ERASURES_PER_BATCH`]) of the waiting erasures,
/// oldest first. The other erasures wait in `waiting` for the batches after
/// it. Returns the number of erasures taken.
fn fill<T: Queued>(
    batch: &mut Vec<T>,
    first: Option<T>,
    mut more: impl FnMut() -> Option<T>,
    waiting: &mut std::collections::VecDeque<T>,
    max_batch: usize,
    erasures: usize,
) -> usize {
    let mut reports = 0;
    let mut next = first;
    while let Some(job) = next {
        if job.is_erasure() {
            waiting.push_back(job);
        } else {
            batch.push(job);
            reports += 1;
        }
        next = if reports < max_batch { more() } else { None };
    }
    let taken = waiting.len().min(erasures).min(ERASURES_PER_BATCH);
    batch.extend(waiting.drain(..taken));
    taken
}

/// Tries to reopen a database after a failure: closes every connection
/// opened before it, in `pool` and in `readers` (waiting at most `wait` for
/// those in use to be returned), opens a new one and checks it
/// ([`store::check_storage`]). Intake resumes only if the check passed and
/// no failure came meanwhile. Returns whether it resumed.
///
/// A query that succeeds on an old connection proves nothing: that
/// connection, and the kernel's cache behind it, may still hold commits
/// that the disk lost.
fn recover(pool: &Pool, readers: &[Pool], state: &WriterState, wait: Duration) -> bool {
    let generation = state.storage.generation();
    let deadline = Instant::now() + wait;
    loop {
        for p in std::iter::once(pool).chain(readers) {
            db::close_retired(p);
        }
        let open = state.storage.retired_open();
        if open == 0 {
            break;
        }
        if Instant::now() >= deadline {
            tracing::debug!(
                open,
                "waiting for connections opened before the failure to be closed"
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let checked = match pool.get_timeout(Duration::from_secs(1)) {
        Ok(mut conn) => store::check_storage(&mut conn, state.storage.faults())
            .map_err(|e| (true, e.to_string())),
        Err(e) => Err((false, e.to_string())),
    };
    match checked {
        Ok(()) => state.resume(generation),
        Err((opened, error)) => {
            if opened {
                // The connection that failed the check is retired too: the
                // next attempt opens the database anew.
                state.storage.fail();
            }
            tracing::debug!(error, "database not reopened yet");
            false
        }
    }
}

/// Batches committed but not yet known to be on disk, beyond which the
/// writer waits for the syncer, unless the backend asks for more
/// ([`sync_queue`]).
const SYNC_QUEUE: usize = 2;

/// A committed batch waiting for the flush that makes it durable.
struct Committed {
    sync: Arc<CommitSync>,
    /// The storage's generation when the batch was written: a failure
    /// recorded since may have lost it, whatever its own flush says.
    generation: u64,
    replies: Vec<Reply>,
    outcomes: Vec<Outcome>,
    started: Instant,
}

type Reply = oneshot::Sender<Result<Outcome, IngestError>>;

/// The writer thread's side: writes batches, hands them to the syncer.
struct BatchWriter {
    pool: Pool,
    /// The database's other pools, whose connections a recovery closes too.
    readers: Vec<Pool>,
    config: WriterConfig,
    state: Arc<WriterState>,
    syncer: SyncSender<Committed>,
    /// How commits are made durable, found on the first batch.
    sync: Durability,
}

/// How the writer's commits are made durable.
enum Durability {
    /// Not known before the first batch.
    Unknown,
    /// After the commit, by the syncer.
    Deferred(Arc<CommitSync>),
    /// By each commit itself: the database cannot flush them later.
    EachCommit,
}

impl BatchWriter {
    fn write(&mut self, batch: &mut Vec<Job>) {
        let state = &*self.state;
        let generation = state.storage.generation();
        // Reports queued just before the database was found down are refused
        // without another attempt: the recovery decides when to try again.
        if state.database_down() {
            state.answered(batch.len());
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(IngestError::Unavailable));
            }
            return;
        }
        // Moved out of the jobs, not cloned: a record owns a dozen strings.
        // Reports come first in the batch, erasures after them.
        let mut records = Vec::with_capacity(batch.len());
        let mut erasures = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job.work {
                Work::Report(record) => records.push(record),
                Work::Erase(hash) => erasures.push(hash),
            }
            replies.push(job.reply);
        }
        let started = Instant::now();
        // Fails with whether the failure was an I/O error of the storage.
        let result = (|| {
            let mut conn = self.pool.get_timeout(CONNECTION_WAIT).map_err(|e| {
                tracing::warn!(error = %e, "database unavailable");
                false
            })?;
            if let Durability::Unknown = self.sync {
                let found = store::CommitSync::of(&mut conn).map_err(|e| {
                    tracing::error!(error = %e, "cannot inspect the database");
                    db::is_io_error(&e)
                })?;
                self.sync = match found {
                    Some(sync) => Durability::Deferred(Arc::new(sync)),
                    None => Durability::EachCommit,
                };
            }
            let deferred = match &self.sync {
                Durability::Deferred(sync) => Some(sync.clone()),
                Durability::Unknown | Durability::EachCommit => None,
            };
            let window = self.config.dedupe;
            let written = store::retry_conflicts(self.config.max_attempts, || match deferred {
                Some(_) => store::write_batch_unsynced(&mut conn, &records, &erasures, window),
                None => store::write_batch_and_forget(&mut conn, &records, &erasures, window),
            });
            match written {
                Ok(outcomes) => Ok((outcomes, deferred)),
                Err(e) => {
                    tracing::error!(error = %e, reports = records.len(), "batch not stored");
                    Err(db::is_io_error(&e))
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
                    generation,
                    replies,
                    outcomes,
                    started,
                };
                // Blocks while the syncer is `sync_queue` batches behind.
                if let Err(mpsc::SendError(c)) = self.syncer.send(committed) {
                    answer(state, c.replies, Err(IngestError::Unavailable));
                }
            }
            Ok((_, None)) if state.storage.generation() != generation => {
                // Committed with its own flush, but a failure recorded
                // meanwhile may have used up an error that flush should
                // have seen.
                answer(state, replies, Err(IngestError::Unavailable));
            }
            Ok((outcomes, None)) => {
                state
                    .commit_seconds
                    .observe(histogram::seconds(started.elapsed()));
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
            Err(io) => {
                state.mark_down(io);
                answer(state, replies, Err(IngestError::Unavailable));
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
/// may not survive a crash; sent again after the database was reopened,
/// they are recognised as duplicates if they did) and marks the database
/// down until it is reopened. A batch written before a failure recorded
/// elsewhere (a checkpoint, another connection) is refused too, even when
/// its own flush succeeded.
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
        let flushed = flush(&group[0].sync);
        let order = state.flush_order.lock().unwrap_or_else(|e| e.into_inner());
        match flushed {
            Ok(()) => {
                let generation = state.storage.generation();
                let mut refused = 0;
                for c in group {
                    if c.generation != generation {
                        refused += c.replies.len();
                        answer(state, c.replies, Err(IngestError::Unavailable));
                        continue;
                    }
                    state
                        .commit_seconds
                        .observe(histogram::seconds(c.started.elapsed()));
                    state.answered(c.replies.len());
                    for (reply, outcome) in c.replies.into_iter().zip(c.outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                drop(order);
                if refused > 0 {
                    tracing::warn!(
                        reports = refused,
                        "reports written before a storage failure not acknowledged"
                    );
                }
            }
            Err(e) => {
                let reports: usize = group.iter().map(|c| c.replies.len()).sum();
                let generation = state.mark_down(e.is_io());
                drop(order);
                tracing::error!(
                    error = %e,
                    reports,
                    generation,
                    "commit not confirmed on disk: refusing reports until the database is reopened"
                );
                state.healthy.store(false, Ordering::Relaxed);
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

    impl Queued for (bool, u32) {
        fn is_erasure(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn erasures_are_performed_at_most_at_their_rate() {
        let start = Instant::now();
        let mut budget = ErasureBudget::new(start);
        assert_eq!(budget.available(start), ERASURES_PER_BATCH);
        budget.spend(ERASURES_PER_BATCH);
        assert_eq!(budget.available(start), 0);
        let wait = budget.until_next(start);
        assert!(
            wait > Duration::ZERO
                && wait
                    <= Duration::from_secs_f64(1.0 / ERASURES_PER_SECOND)
                        + Duration::from_millis(1)
        );
        // Over ten simulated seconds of a flood, no more than the rate (and
        // the first burst) go.
        let mut done = ERASURES_PER_BATCH;
        let mut now = start;
        for _ in 0..10_000 {
            now += Duration::from_millis(1);
            let n = budget.available(now);
            budget.spend(n);
            done += n;
        }
        let most = ERASURES_PER_BATCH + (10.0 * ERASURES_PER_SECOND) as usize;
        assert!(
            done <= most && done + 1 >= most,
            "{done} erasures, at most {most}"
        );
    }

    #[test]
    fn erasures_take_a_bounded_share_of_each_batch_and_reports_none_wait() {
        // 20 erasures queued among 20 reports; batches of at most 8 reports.
        let mut queue: std::collections::VecDeque<(bool, u32)> =
            (0..40).map(|i| (i % 2 == 0, i)).collect();
        let mut waiting = std::collections::VecDeque::new();
        let mut batches = Vec::new();
        loop {
            let mut batch = Vec::new();
            let first = queue.pop_front();
            if first.is_none() && waiting.is_empty() {
                break;
            }
            fill(
                &mut batch,
                first,
                || queue.pop_front(),
                &mut waiting,
                8,
                ERASURES_PER_BATCH,
            );
            batches.push(batch);
        }
        let reports: Vec<usize> = batches
            .iter()
            .map(|b| b.iter().filter(|j| !j.0).count())
            .collect();
        let erasures: Vec<usize> = batches
            .iter()
            .map(|b| b.iter().filter(|j| j.0).count())
            .collect();
        // Reports fill every batch they can: none waits behind an erasure.
        assert_eq!(reports, [8, 8, 4, 0, 0]);
        assert!(
            erasures.iter().all(|n| *n <= ERASURES_PER_BATCH),
            "{erasures:?}"
        );
        assert_eq!(erasures, [ERASURES_PER_BATCH; 5]);
        // Erasures keep their order.
        let order: Vec<u32> = batches
            .iter()
            .flatten()
            .filter(|j| j.0)
            .map(|j| j.1)
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // In each batch the reports come before the erasures.
        for b in &batches {
            let first_erasure = b.iter().position(|j| j.0).unwrap_or(b.len());
            assert!(b[first_erasure..].iter().all(|j| j.0));
        }
    }

    #[test]
    fn a_discarding_writer_answers_every_job_and_drains_on_join() {
        let (ingest, writer) = discard(Storage::default(), WriterConfig::default());
        let body = serde_json::json!({
            "schema_version": 1,
            "report_id": uuid::Uuid::new_v4(),
            "instance_id": uuid::Uuid::new_v4(),
            "product": "passbolt",
            "event": "install",
            "version": "4.10.1",
        })
        .to_string();
        let catalog = crate::catalog::Catalog::builtin();
        let report = crate::validation::parse_v1(body.as_bytes(), &catalog).expect("valid");
        let pseudonymizer = crate::anonymize::Pseudonymizer::new(&[7; 32]);
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
        let record = crate::anonymize::anonymize(report, &pseudonymizer, day);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            assert_eq!(ingest.submit(record).await, Ok(Outcome::Accepted));
            assert_eq!(
                ingest
                    .erase(crate::anonymize::InstanceHash::from_bytes([1; 32]))
                    .await,
                Ok(())
            );
        });
        assert_eq!(ingest.state().queue_depth(), 0);
        assert_eq!(ingest.state().held(), 0);
        drop(ingest);
        writer.join();
    }

    use crate::db::Faults;

    /// A batch of `n` reports written in the state's current generation.
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
            generation: 0,
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
            s.sync(
                &crate::db::pool(":memory:", 1),
                Duration::from_millis(10),
                &Faults::default(),
            )
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
        let none = Faults::default();
        let missing = CommitSync::SqliteWal(wal.clone());
        assert!(missing
            .sync(&pool, Duration::from_millis(10), &none)
            .is_ok());
        std::fs::write(&wal, b"frames").unwrap();
        assert!(CommitSync::SqliteWal(wal.clone())
            .sync(&pool, Duration::from_millis(10), &none)
            .is_ok());
        // The fault switch makes the same flush fail as a disk would.
        let faults = Faults::in_dir(dir.path());
        std::fs::write(dir.path().join("flush"), b"").unwrap();
        match CommitSync::SqliteWal(wal).sync(&pool, Duration::from_millis(10), &faults) {
            Err(store::SyncError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            other => panic!("expected EIO, got {other:?}"),
        }
    }

    /// A SQLite database in a temporary directory, with two pools of one
    /// storage (the writer's and the readers') and its fault switch.
    struct Database {
        dir: tempfile::TempDir,
        storage: Storage,
        writer: Pool,
        readers: Pool,
    }

    impl Database {
        fn new() -> Database {
            let dir = tempfile::tempdir().unwrap();
            let url = dir.path().join("db.sqlite").to_string_lossy().into_owned();
            let storage = Storage::new(Faults::in_dir(dir.path()));
            Database {
                writer: db::pool_sharing(&url, 3, &storage),
                readers: db::pool_sharing(&url, 2, &storage),
                storage,
                dir,
            }
        }

        fn trigger(&self, fault: &str, on: bool) {
            let path = self.dir.path().join(fault);
            if on {
                std::fs::write(path, b"").unwrap();
            } else {
                std::fs::remove_file(path).unwrap();
            }
        }

        /// Opens a connection as the pools do, without their retries.
        fn connect(&self) -> Result<db::DbConn, diesel::r2d2::Error> {
            use diesel::r2d2::ManageConnection;
            let url = self.dir.path().join("db.sqlite");
            db::Manager::sharing(&url.to_string_lossy(), &self.storage).connect()
        }

        fn recover(&self, state: &WriterState) -> bool {
            recover(
                &self.writer,
                std::slice::from_ref(&self.readers),
                state,
                Duration::ZERO,
            )
        }
    }

    #[test]
    fn after_a_failed_flush_only_a_reopen_resumes_intake() {
        let db = Database::new();
        let state = WriterState::new(db.storage.clone());
        // One connection in use and one idle when the flush fails.
        let mut in_use = db.readers.get().unwrap();
        drop(db.writer.get().unwrap());
        let opened_in = db::generation_of(&mut in_use).unwrap();
        let sync = Arc::new(CommitSync::Postgres);
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE);
        let (batch, answers) = committed(&sync, 2);
        tx.send(batch).unwrap();
        drop(tx);
        state.unanswered.store(2, Ordering::Relaxed);
        syncer(rx, &state, |_| {
            Err(store::SyncError::Io(std::io::Error::from_raw_os_error(
                libc::EIO,
            )))
        });
        for mut a in answers {
            assert_eq!(a.try_recv().unwrap(), Err(IngestError::Unavailable));
        }
        assert!(state.database_down());
        assert_eq!(state.storage_errors(), 1);

        // The database answers a query, as the probe used to ask...
        store::ping(&mut in_use).unwrap();
        // ...but a connection opened before the failure is still open, and
        // no new one may be opened beside it.
        assert_eq!(db.storage.retired_open(), 2);
        assert!(db.connect().is_err());
        assert_eq!(db.writer.state().connections, 1);
        assert!(!db.recover(&state));
        assert!(state.database_down());
        assert_eq!(state.recoveries(), 0);
        // The idle one was closed by the attempt.
        assert_eq!(db.writer.state().connections, 0);

        drop(in_use);
        assert_eq!(db.readers.state().connections, 0, "closed when returned");
        assert!(db.recover(&state));
        assert!(!state.database_down());
        assert_eq!(state.recoveries(), 1);
        let mut fresh = db.writer.get().unwrap();
        assert!(db::generation_of(&mut fresh).unwrap() > opened_in);
    }

    #[test]
    fn a_failed_checkpoint_stops_intake_until_the_storage_checks_again() {
        let db = Database::new();
        let state = WriterState::new(db.storage.clone());
        assert!(checkpoint_once(&db.writer, &state));
        assert!(!state.database_down(), "a checkpoint that worked");

        db.trigger("checkpoint", true);
        assert!(checkpoint_once(&db.writer, &state));
        assert!(state.database_down());
        assert!(!state.healthy());
        assert_eq!(state.storage_errors(), 1);
        // Every connection is closed, but the reopened database fails its
        // check while the checkpoints still fail.
        assert!(!db.recover(&state));
        assert!(state.database_down());

        db.trigger("checkpoint", false);
        assert!(db.recover(&state));
        assert!(!state.database_down());
        assert_eq!(state.recoveries(), 1);
    }

    #[test]
    fn a_batch_flushed_after_a_failure_elsewhere_is_refused() {
        let state = WriterState::default();
        let sync = Arc::new(CommitSync::Postgres);
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE);
        let (batch, answers) = committed(&sync, 2);
        tx.send(batch).unwrap();
        drop(tx);
        state.unanswered.store(2, Ordering::Relaxed);
        syncer(rx, &state, |_| {
            // A checkpoint (or any connection) got an I/O error while this
            // flush ran, which then succeeded.
            state.storage.fail_io();
            Ok(())
        });
        for mut a in answers {
            assert_eq!(a.try_recv().unwrap(), Err(IngestError::Unavailable));
        }
        assert!(state.database_down());
        assert_eq!(state.held(), 0);
    }
}
