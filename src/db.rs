//! Database connections: one binary for SQLite and PostgreSQL.
//!
//! The backend is chosen from the URL, in [`Backend::parse`] only:
//! `postgres://` or `postgresql://` selects PostgreSQL; a plain path, a
//! `sqlite://PATH` URL or a SQLite `file:` URI selects SQLite. Anything else
//! that starts like a URL scheme (`mysql://...`, `postgres:db`) is refused
//! before any connection is tried: taken as a path, it would become a SQLite
//! file with a strange name. [`check`] adds what a command needs of a SQLite
//! file (that it exists, or that it can be created) so that a mistyped path
//! gets a clear answer at once. Migrations for both backends are embedded
//! and run before the pool serves anything.
//!
//! Every connection a pool opens belongs to a generation of its
//! [`Storage`], shared by all the pools of one collector. A storage failure
//! (a failed flush, checkpoint or transaction, or a disk I/O error on any
//! connection) starts a new generation: from then on each connection of an
//! older one is reported broken and closed instead of being used again, and
//! no new connection is opened until every older one is closed. A database
//! is thus never reopened while connections that saw the failure are still
//! open; on SQLite, where the connections of one process share the WAL index
//! and file descriptors, that is what makes the first new connection read
//! the log and the database file again, as they are on disk.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::r2d2::{self, ManageConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, ConnectionError, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use anyhow::Context;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend. Code that is the same on both uses this
/// type directly; the few queries that differ match on the variant, in
/// `store` only.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The forms a database URL may take, as error messages name them.
pub const ACCEPTED_FORMS: &str = "a SQLite file path (e.g. anonstats.db, ./data/anonstats.db, \
/var/lib/anonstats/anonstats.db), sqlite://PATH, or a postgres:// or postgresql:// URL";

impl Backend {
    /// The backend a database URL selects, or why the URL is refused.
    ///
    /// A URL scheme is a letter followed by letters, digits, `+`, `-` or `.`,
    /// then `:`. A string without one is a SQLite path; one with a scheme must
    /// use an accepted scheme, written in full.
    pub fn parse(url: &str) -> Result<Backend, DatabaseError> {
        if url.is_empty() || url == "sqlite://" {
            return Err(DatabaseError::Empty);
        }
        let Some((scheme, rest)) = split_scheme(url) else {
            return Ok(Backend::Sqlite);
        };
        match scheme {
            "postgres" | "postgresql" if rest.starts_with("//") => Ok(Backend::Postgres),
            "sqlite" if rest.starts_with("//") => Ok(Backend::Sqlite),
            // SQLite opens URI file names itself (file:data.db?mode=rwc).
            "file" => Ok(Backend::Sqlite),
            _ => Err(DatabaseError::UnknownScheme {
                url: redact_url(url),
                scheme: scheme.to_owned(),
            }),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `(scheme, rest)` when `url` starts with a URL scheme and `:`.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// Why a database URL cannot be used by a command. Every message names the
/// database and the reason, so that it can be fixed without reading logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseError {
    /// No URL at all (an empty flag or variable).
    Empty,
    /// A scheme that selects no backend (`url` is redacted).
    UnknownScheme { url: String, scheme: String },
    /// A SQLite file that a command reading existing data did not find.
    Missing { path: PathBuf },
    /// A path that names a directory instead of a database file.
    NotAFile { path: PathBuf },
    /// A SQLite file that cannot be created where it was asked for.
    CannotCreate {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseError::Empty => write!(f, "the database URL is empty: give {ACCEPTED_FORMS}"),
            DatabaseError::UnknownScheme { url, scheme } => {
                write!(
                    f,
                    "unsupported database URL \"{url}\": `{scheme}:` is not a known \
                     scheme; give {ACCEPTED_FORMS}"
                )?;
                let lower = scheme.to_ascii_lowercase();
                if ["postgres", "postgresql", "sqlite"].contains(&lower.as_str()) {
                    write!(f, " (did you mean {lower}://...?)")
                } else if url.contains("://") {
                    Ok(())
                } else {
                    write!(f, " (a file name containing `:` can be given as ./{url})")
                }
            }
            DatabaseError::Missing { path } => write!(
                f,
                "no database at {}: the file does not exist (give the collector's \
                 database with --database or ANONSTATS_DATABASE_URL; `anonstats migrate` \
                 creates a new one)",
                path.display()
            ),
            DatabaseError::NotAFile { path } => write!(
                f,
                "cannot use {} as a database: it is a directory, not a file",
                path.display()
            ),
            DatabaseError::CannotCreate { path, dir, reason } => write!(
                f,
                "cannot create the database at {}: directory {} {reason}",
                path.display(),
                dir.display()
            ),
        }
    }
}

impl std::error::Error for DatabaseError {}

/// What a command needs of its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A database created if missing (`serve`, `migrate`).
    CreateIfMissing,
    /// A database that already exists: creating an empty one would hide a
    /// mistyped path behind an empty answer (`stats`, `prune`).
    Existing,
}

/// Parses `url` and checks, for a SQLite file, what the command needs of it,
/// without opening anything. Every command that takes a database calls this
/// first; PostgreSQL URLs are only parsed (the server answers for the rest).
pub fn check(url: &str, need: Need) -> Result<Backend, DatabaseError> {
    let backend = Backend::parse(url)?;
    let Some(path) = sqlite_file(url) else {
        return Ok(backend);
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Err(DatabaseError::NotAFile { path }),
        Ok(_) => Ok(backend),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || not_a_directory(&e) => {
            if need == Need::Existing {
                return Err(DatabaseError::Missing { path });
            }
            check_creatable(&path)?;
            Ok(backend)
        }
        // Anything stranger is for SQLite to report when it opens the file.
        Err(_) => Ok(backend),
    }
}

/// SQLite answers only "unable to open the database file" when it cannot
/// create one; this says which directory is the problem and why.
fn check_creatable(path: &Path) -> Result<(), DatabaseError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let refuse = |reason: String| DatabaseError::CannotCreate {
        path: path.to_path_buf(),
        dir: dir.clone(),
        reason,
    };
    match std::fs::metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(refuse("does not exist".to_owned()))
        }
        Err(e) if not_a_directory(&e) => Err(refuse(
            "is not a directory (a file is in its path)".to_owned(),
        )),
        Err(e) => Err(refuse(format!("cannot be read ({})", os_reason(&e)))),
        Ok(meta) if !meta.is_dir() => Err(refuse("is not a directory".to_owned())),
        Ok(_) => {
            writable_dir(&dir).map_err(|e| refuse(format!("is not writable ({})", os_reason(&e))))
        }
    }
}

/// ENOTDIR: a file where a directory of the path should be
/// (`io::ErrorKind::NotADirectory` is newer than the supported Rust).
fn not_a_directory(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Whether this process may create files in `dir`, as the kernel decides for
/// its effective user (permissions, read-only mounts).
fn writable_dir(dir: &Path) -> std::io::Result<()> {
    crate::os::may_create_files_in(dir)
}

/// "permission denied" rather than "Permission denied (os error 13)".
fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

/// The file a SQLite URL names; `None` for PostgreSQL and in-memory
/// databases.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    if Backend::parse(url).ok()? != Backend::Sqlite {
        return None;
    }
    let path = match url.strip_prefix("file:") {
        Some(uri) => {
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            let path = path.split('#').next().unwrap_or(path);
            if query.split('&').any(|p| p == "mode=memory") {
                return None;
            }
            // file://host/path: only the path names the file.
            let path = match path.strip_prefix("//") {
                Some(after) => &after[after.find('/').unwrap_or(after.len())..],
                None => path,
            };
            percent_decode(path)
        }
        None => sqlite_path(url).to_owned(),
    };
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Decodes `%XX` escapes of a `file:` URI path (invalid ones stay as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pool of connections to one database.
pub type Pool = r2d2::Pool<Manager>;
/// A connection checked out of the pool.
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// Opens connections of the backend the URL selects, never falling back to
/// the other (a PostgreSQL URL that fails must not become a SQLite file).
/// A URL that [`Backend::parse`] refuses never connects.
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
    backend: Result<Backend, DatabaseError>,
    storage: Storage,
}

impl Manager {
    /// A manager for `url` (see the module documentation for the syntax),
    /// with a [`Storage`] of its own.
    pub fn new(url: &str) -> Manager {
        Manager::sharing(url, &Storage::default())
    }

    /// A manager for `url` whose connections are of `storage`'s generations.
    pub fn sharing(url: &str, storage: &Storage) -> Manager {
        Manager {
            url: url.to_owned(),
            backend: Backend::parse(url),
            storage: storage.clone(),
        }
    }

    /// Opens one connection, with the per-connection settings applied.
    pub fn establish(&self) -> Result<DbConn, ConnectionError> {
        let backend = self
            .backend
            .clone()
            .map_err(|e| ConnectionError::InvalidConnectionUrl(e.to_string()))?;
        match backend {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&postgres_url(&self.url))?;
                // A 2xx must mean the report is on disk, whatever the
                // server's default is.
                conn.batch_execute("SET synchronous_commit = on")
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConn::Pg(conn))
            }
            Backend::Sqlite => {
                let path = sqlite_path(&self.url);
                if let Some(file) = sqlite_file(&self.url).filter(|_| sqlite_may_create(&self.url))
                {
                    // Failing here is left to SQLite to report as it opens.
                    let _ = create_private(&file);
                }
                let mut conn = SqliteConnection::establish(path)?;
                // Checkpoints every 16,384 WAL pages (64 MiB) instead of
                // SQLite's 1,000: with one commit per batch the default
                // checkpointed after nearly every batch, and pages rewritten
                // by every batch (aggregates, hot index pages) were copied
                // back each time. Measured: 19 KB written per report -> 11 KB.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000;
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = FULL;
                     PRAGMA wal_autocheckpoint = 16384;
                     PRAGMA foreign_keys = ON;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConn::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        // Taken before the connection is opened, and given back if opening
        // fails: a connection opened while a failure is recorded belongs to
        // the generation before it, and is closed at its first use.
        let stamp = self.storage.stamp().map_err(r2d2::Error::ConnectionError)?;
        let mut conn = self.establish().map_err(r2d2::Error::ConnectionError)?;
        conn.set_instrumentation(stamp);
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        if !self.storage.is_current(conn) {
            return Err(r2d2::Error::QueryError(DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(RETIRED.to_owned()),
            )));
        }
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        !self.storage.is_current(conn) || r2d2::R2D2Connection::is_broken(conn)
    }
}

/// Why a pool closes a connection instead of handing it out.
const RETIRED: &str = "connection opened before a storage failure";
/// Why no connection is opened now.
const REOPENING: &str = "the database is reopened after a storage failure";

/// What every pool of one database shares: the generation of its
/// connections (see the module documentation), a count of the connections
/// open in each, and the test-only [`Faults`].
///
/// The generation is raised by [`Storage::fail`], by whoever sees a failure
/// (the writer, its sync thread, the checkpointer, or any connection that
/// gets a disk I/O error from SQLite). The writer compares generations to
/// know that a failure happened between a commit and its flush, and resumes
/// only with a connection of the latest generation that passed
/// `store::check_storage`.
#[derive(Debug, Clone, Default)]
pub struct Storage(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// Generation of the connections opened from now on.
    generation: AtomicU64,
    /// Connections open, by generation. Raising the generation takes this
    /// lock too, so that a connection cannot be counted in a generation
    /// older than the one it was allowed to open in.
    open: Mutex<BTreeMap<u64, usize>>,
    io_errors: AtomicU64,
    faults: Faults,
}

impl Storage {
    /// A storage whose flushes and checkpoints fail as `faults` says.
    pub fn new(faults: Faults) -> Storage {
        Storage(Arc::new(Shared {
            faults,
            ..Shared::default()
        }))
    }

    /// The failures injected into flushes and checkpoints.
    pub fn faults(&self) -> &Faults {
        &self.0.faults
    }

    /// The current generation: the number of failures recorded so far.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::SeqCst)
    }

    /// Records a failure: every connection open now is retired (closed when
    /// it is next returned to or taken from its pool), and no connection is
    /// opened until they are all closed. Returns the new generation.
    pub fn fail(&self) -> u64 {
        let _open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        self.0.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records a failure that was an I/O error of the storage (a flush, a
    /// checkpoint, a disk I/O error), counted apart for the metrics.
    pub fn fail_io(&self) -> u64 {
        self.0.io_errors.fetch_add(1, Ordering::Relaxed);
        self.fail()
    }

    /// I/O errors recorded so far.
    pub fn io_errors(&self) -> u64 {
        self.0.io_errors.load(Ordering::Relaxed)
    }

    /// Connections of an older generation than the current one still open.
    pub fn retired_open(&self) -> usize {
        let open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.generation();
        open.range(..current).map(|(_, n)| n).sum()
    }

    /// Whether `conn` belongs to the current generation. A connection
    /// opened outside a pool (by [`Manager::establish`]) belongs to none
    /// and is always current.
    fn is_current(&self, conn: &mut DbConn) -> bool {
        generation_of(conn).is_none_or(|g| g == self.generation())
    }

    /// Counts a connection about to be opened in the current generation,
    /// unless connections of an older one are still open.
    fn stamp(&self) -> Result<Stamp, ConnectionError> {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation();
        let retired: usize = open.range(..generation).map(|(_, n)| n).sum();
        if retired > 0 {
            return Err(ConnectionError::BadConnection(format!(
                "{REOPENING} once the {retired} connection(s) opened before it are closed"
            )));
        }
        *open.entry(generation).or_default() += 1;
        Ok(Stamp {
            generation,
            storage: self.clone(),
        })
    }

    fn closed(&self, generation: u64) {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&generation) {
            *n -= 1;
            if *n == 0 {
                open.remove(&generation);
            }
        }
    }
}

/// The generation `conn` was opened in, when a pool opened it.
pub fn generation_of(conn: &mut DbConn) -> Option<u64> {
    conn.instrumentation()
        .downcast_ref::<Stamp>()
        .map(|s| s.generation)
}

/// Closes the idle connections of `pool` retired by a failure (each one
/// taken is checked, and a retired one is closed instead of handed out).
/// Connections in use are closed when they are returned.
pub fn close_retired(pool: &Pool) {
    let mut current = Vec::new();
    while let Some(conn) = pool.try_get() {
        current.push(conn);
    }
}

/// Carried by each pooled connection (as its diesel instrumentation, the
/// one place a connection can carry data of ours): its generation, kept
/// counted until the connection is dropped. It also watches every statement
/// for SQLite's disk I/O errors, so that a commit or read of any connection
/// that saw the disk fail is a storage failure too: such an error is
/// reported once, and the next flush of the same file may succeed although
/// the data never reached the disk.
struct Stamp {
    generation: u64,
    storage: Storage,
}

impl Instrumentation for Stamp {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery {
            error: Some(error), ..
        } = event
        {
            if is_io_error(error) {
                let generation = self.storage.fail_io();
                tracing::error!(
                    error = %error,
                    generation,
                    "disk I/O error: refusing reports until the database is reopened"
                );
            }
        }
    }
}

impl Drop for Stamp {
    fn drop(&mut self) {
        self.storage.closed(self.generation);
    }
}

/// Whether SQLite reported an I/O error of the disk (`SQLITE_IOERR` and its
/// extended codes, which diesel reports by their message only).
pub fn is_io_error(e: &DieselError) -> bool {
    matches!(e, DieselError::DatabaseError(_, info) if info.message().starts_with("disk I/O error"))
}

/// Logs the pools' errors: retired connections closed, and connections
/// held back until they are, at debug level (they are the design at work);
/// anything else as an error, as r2d2 does.
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<r2d2::Error> for LogErrors {
    fn handle_error(&self, error: r2d2::Error) {
        match &error {
            r2d2::Error::QueryError(DieselError::DatabaseError(_, info))
                if info.message() == RETIRED =>
            {
                tracing::debug!("closed a connection opened before a storage failure")
            }
            r2d2::Error::ConnectionError(ConnectionError::BadConnection(m))
                if m.starts_with(REOPENING) =>
            {
                tracing::debug!(reason = %m, "connection not opened yet")
            }
            _ => tracing::error!(error = %error, "database connection error"),
        }
    }
}

/// Environment variable naming a directory whose files make flushes and
/// checkpoints fail, for tests (see [`Faults`]).
pub const FAULTS_ENV: &str = "ANONSTATS_STORAGE_FAULTS";

/// A storage operation that [`Faults`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flushing commits to disk: the writer's `fdatasync` of the SQLite WAL
    /// or its commit flush on PostgreSQL, and the flushes of a recovery.
    Flush,
    /// A SQLite checkpoint (background or in a recovery).
    Checkpoint,
}

impl Fault {
    fn file_name(self) -> &'static str {
        match self {
            Fault::Flush => "flush",
            Fault::Checkpoint => "checkpoint",
        }
    }
}

/// Fault injection for tests: with a directory set (the hidden
/// [`FAULTS_ENV`] variable), every flush fails with `EIO` while a file
/// named `flush` exists in it, and every checkpoint while one named
/// `checkpoint` does. Without one (always, outside tests) nothing is looked
/// at.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    dir: Option<PathBuf>,
}

impl Faults {
    /// Faults triggered by files in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Faults {
        Faults {
            dir: Some(dir.into()),
        }
    }

    /// The faults [`FAULTS_ENV`] asks for, if any.
    pub fn from_env() -> Faults {
        Faults {
            dir: std::env::var_os(FAULTS_ENV)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The directory watched, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// `EIO` while `fault` is triggered.
    pub fn check(&self, fault: Fault) -> std::io::Result<()> {
        match &self.dir {
            Some(dir) if dir.join(fault.file_name()).exists() => {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
            _ => Ok(()),
        }
    }
}

/// Permission bits of every SQLite file anonstats creates: the database
/// holds pseudonyms, and the generated secret unless `ANONSTATS_SECRET` is
/// set.
pub const SQLITE_FILE_MODE: u32 = 0o600;

/// Creates the SQLite database file, readable and writable by its owner
/// only, if it does not exist yet; an existing file, whatever its mode,
/// is the operator's choice and is left alone.
///
/// Creating the file before SQLite opens it is enough for its companions
/// too: SQLite's unix VFS gives the `-wal`, `-shm` and `-journal` files it
/// creates the database file's permission bits, whatever the umask. That
/// avoids changing the process umask (which would affect every thread and
/// every file, including the opt-in file and logs) and avoids a window in
/// which a `-wal` created world-readable would wait to be chmod-ed.
/// `create_new` makes two processes creating the same file at once safe:
/// the loser finds it there.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SQLITE_FILE_MODE)
        .open(path)
    {
        // The umask may have taken bits away, never added any; setting the
        // mode again makes it exactly owner read-write.
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(SQLITE_FILE_MODE)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether SQLite would create the database file of `url` if it were
/// missing: a `file:` URI does only without `mode=` or with `mode=rwc`, so
/// that a read-only or read-write-only URI still fails on a missing file.
fn sqlite_may_create(url: &str) -> bool {
    let Some(uri) = url.strip_prefix("file:") else {
        return true;
    };
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|p| p.strip_prefix("mode="))
        .all(|mode| mode == "rwc")
}

/// Adds a short connect timeout unless the URL sets one, so that a database
/// outage is answered with 503 quickly instead of hanging requests.
fn postgres_url(url: &str) -> String {
    if url.contains("connect_timeout=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&connect_timeout=2")
    } else {
        format!("{url}?connect_timeout=2")
    }
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

/// Builds a pool of at most `max_size` connections. Connections are opened
/// lazily, so that a collector can start while its database is down.
///
/// Idle connections are checked (`SELECT 1`) when taken from the pool: after
/// a database restart or a network cut, connections that died while idle are
/// dropped and replaced instead of failing the next transaction, so the
/// collector resumes by itself. The check costs one round trip per checkout,
/// which the writer pays once per batch.
pub fn pool(url: &str, max_size: u32) -> Pool {
    pool_sharing(url, max_size, &Storage::default())
}

/// Builds a pool like [`pool`] whose connections are of `storage`'s
/// generations: a failure recorded through any pool of the storage closes
/// the connections of all of them.
pub fn pool_sharing(url: &str, max_size: u32, storage: &Storage) -> Pool {
    r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(2))
        .test_on_check_out(true)
        .error_handler(Box::new(LogErrors))
        .build_unchecked(Manager::sharing(url, storage))
}

/// Applies every pending embedded migration for the connection's backend.
pub fn run_migrations(
    conn: &mut DbConn,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let applied = match conn {
        DbConn::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS)?.len(),
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS)?.len(),
    };
    Ok(applied)
}

/// The URL with any password replaced by `***`, safe to print or log.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let redacted_query = redact_query_password(&rest[authority_end..]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!(
                "{}://{}@{}{}",
                &url[..scheme_end],
                masked,
                &authority[at + 1..],
                redacted_query
            )
        }
        None => format!("{}://{}{}", &url[..scheme_end], authority, redacted_query),
    }
}

fn redact_query_password(path_and_query: &str) -> String {
    let Some(q) = path_and_query.find('?') else {
        return path_and_query.to_owned();
    };
    let params: Vec<String> = path_and_query[q + 1..]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{}?{}", &path_and_query[..q], params.join("&"))
}

/// Connects, applies migrations and returns the pool. A SQLite file is
/// created if missing; a URL that cannot work is refused before connecting.
pub fn prepare_database(url: &str, pool_size: u32) -> anyhow::Result<Pool> {
    prepare_database_sharing(url, pool_size, &Storage::default())
}

/// [`prepare_database`], with a pool of `storage`'s connections.
pub fn prepare_database_sharing(
    url: &str,
    pool_size: u32,
    storage: &Storage,
) -> anyhow::Result<Pool> {
    check(url, Need::CreateIfMissing)?;
    let pool = pool_sharing(url, pool_size, storage);
    let mut conn = pool
        .get()
        .with_context(|| format!("cannot connect to database {}", redact_url(url)))?;
    let applied = run_migrations(&mut conn)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot apply migrations to {}", redact_url(url)))?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(pool)
}

/// Runs `sql` (written with `?` placeholders) as a boxed query with the
/// binds added by `$binds` and loads rows of type `$row`. PostgreSQL wants
/// `$1, $2, ...`. The one place outside the store where the backends
/// differ: reporting reads are plain SQL that both backends read alike.
macro_rules! load_sql {
    ($conn:expr, $sql:expr, $row:ty, |$q:ident| $binds:expr) => {
        match $conn {
            $crate::db::DbConn::Pg(c) => {
                let $q = diesel::sql_query($crate::db::numbered_placeholders($sql)).into_boxed();
                $binds.load::<$row>(c)
            }
            $crate::db::DbConn::Sqlite(c) => {
                let $q = diesel::sql_query($sql).into_boxed();
                $binds.load::<$row>(c)
            }
        }
    };
}
pub(crate) use load_sql;

/// Rewrites `?` placeholders as `$1, $2, ...` (our statements have no `?`
/// inside literals).
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_in_userinfo_and_query() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/stats"),
            "postgres://app:***@db:5432/stats"
        );
        assert_eq!(
            redact_url("postgres://db/stats?user=a&password=s3cret&sslmode=require"),
            "postgres://db/stats?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/stats"),
            "postgres://app@db/stats"
        );
        assert_eq!(redact_url("anonstats.db"), "anonstats.db");
    }

    fn parse(url: &str) -> Result<Backend, DatabaseError> {
        Backend::parse(url)
    }

    #[test]
    fn backend_follows_scheme() {
        assert_eq!(parse("postgresql://x/y"), Ok(Backend::Postgres));
        assert_eq!(parse("postgres://x/y"), Ok(Backend::Postgres));
        assert_eq!(
            parse("postgres://u:p@x/y?sslmode=require"),
            Ok(Backend::Postgres)
        );
        assert_eq!(parse("sqlite://anonstats.db"), Ok(Backend::Sqlite));
        assert_eq!(parse("sqlite:///var/lib/x.db"), Ok(Backend::Sqlite));
        assert_eq!(parse("file:data.db?mode=rwc"), Ok(Backend::Sqlite));
    }

    #[test]
    fn plain_paths_are_sqlite() {
        for path in [
            "anonstats.db",
            "data/a.db",
            "./a.db",
            "../a.db",
            "/var/lib/x.db",
            ":memory:",
            "./backup:2024.db",
            "data/a:b.db",
            "2024:a.db",
        ] {
            assert_eq!(parse(path), Ok(Backend::Sqlite), "{path}");
        }
    }

    #[test]
    fn unknown_or_incomplete_schemes_are_refused() {
        for (url, scheme) in [
            ("mysql://u@h/db", "mysql"),
            ("postgresql:/host/db", "postgresql"),
            ("postgres:", "postgres"),
            ("postgres:db", "postgres"),
            ("POSTGRES://h/db", "POSTGRES"),
            ("sqlite:a.db", "sqlite"),
            ("mariadb://h/db", "mariadb"),
            ("http://h/db", "http"),
            ("backup:2024.db", "backup"),
            ("pg+ssl://h", "pg+ssl"),
        ] {
            match parse(url) {
                Err(DatabaseError::UnknownScheme { scheme: s, .. }) => assert_eq!(s, scheme),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(parse(""), Err(DatabaseError::Empty));
        assert_eq!(parse("sqlite://"), Err(DatabaseError::Empty));
    }

    #[test]
    fn a_refused_url_names_the_accepted_forms_and_hides_the_password() {
        let text = parse("mysql://app:s3cret@db/stats")
            .unwrap_err()
            .to_string();
        assert!(text.contains("`mysql:` is not a known scheme"), "{text}");
        assert!(text.contains(ACCEPTED_FORMS), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let text = parse("postgresql:/host/db").unwrap_err().to_string();
        assert!(text.contains("did you mean postgresql://"), "{text}");
    }

    #[test]
    fn a_refused_url_never_connects() {
        let err = Manager::new("mysql://h/db").establish().err().unwrap();
        assert!(err.to_string().contains("mysql:"), "{err}");
    }

    #[test]
    fn the_sqlite_file_of_each_form() {
        let file = |u: &str| sqlite_file(u).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(file("data/a.db").as_deref(), Some("data/a.db"));
        assert_eq!(file("sqlite://a.db").as_deref(), Some("a.db"));
        assert_eq!(file("sqlite:///var/x.db").as_deref(), Some("/var/x.db"));
        assert_eq!(file("file:a%20b.db?mode=rwc").as_deref(), Some("a b.db"));
        assert_eq!(file("file:///var/x.db").as_deref(), Some("/var/x.db"));
        assert_eq!(
            file("file://localhost/var/x.db").as_deref(),
            Some("/var/x.db")
        );
        assert_eq!(file(":memory:"), None);
        assert_eq!(file("file::memory:"), None);
        assert_eq!(file("file:x?mode=memory&cache=shared"), None);
        assert_eq!(file("postgres://h/db"), None);
        assert_eq!(file("mysql://h/db"), None);
    }

    #[test]
    fn check_says_what_is_wrong_with_a_sqlite_path() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let url = db.to_string_lossy().into_owned();
        assert_eq!(
            check(&url, Need::Existing),
            Err(DatabaseError::Missing { path: db.clone() })
        );
        assert_eq!(check(&url, Need::CreateIfMissing), Ok(Backend::Sqlite));
        std::fs::write(&db, b"").unwrap();
        assert_eq!(check(&url, Need::Existing), Ok(Backend::Sqlite));
        assert_eq!(
            check(&format!("sqlite://{url}"), Need::Existing),
            Ok(Backend::Sqlite)
        );

        let no_dir = dir.path().join("missing").join("a.db");
        let text = check(&no_dir.to_string_lossy(), Need::CreateIfMissing)
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            format!(
                "cannot create the database at {}: directory {} does not exist",
                no_dir.display(),
                dir.path().join("missing").display()
            )
        );
        let under_file = db.join("b.db");
        let text = check(&under_file.to_string_lossy(), Need::CreateIfMissing)
            .unwrap_err()
            .to_string();
        assert!(text.contains("is not a directory"), "{text}");
        assert_eq!(
            check(&dir.path().to_string_lossy(), Need::CreateIfMissing),
            Err(DatabaseError::NotAFile {
                path: dir.path().to_path_buf()
            })
        );
        assert_eq!(check(":memory:", Need::Existing), Ok(Backend::Sqlite));
        assert_eq!(
            check("postgres://h/db", Need::Existing),
            Ok(Backend::Postgres)
        );
    }

    #[test]
    fn a_created_database_is_private_and_an_existing_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let new = dir.path().join("new.db");
        create_private(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
        let existing = dir.path().join("existing.db");
        std::fs::write(&existing, b"").unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
        create_private(&existing).unwrap();
        assert_eq!(mode(&existing), 0o640);
    }

    #[test]
    fn only_uris_that_let_sqlite_create_the_file_create_it() {
        assert!(sqlite_may_create("anonstats.db"));
        assert!(sqlite_may_create("sqlite://anonstats.db"));
        assert!(sqlite_may_create("file:a.db"));
        assert!(sqlite_may_create("file:a.db?mode=rwc&cache=shared"));
        assert!(!sqlite_may_create("file:a.db?mode=ro"));
        assert!(!sqlite_may_create("file:a.db?mode=rw"));
    }

    #[test]
    fn os_reasons_read_as_text() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(os_reason(&e), "permission denied");
    }
}
