//! Fresh databases for the tests, and raw reads of everything they hold.
//!
//! A SQLite database is a new file in a temporary directory, migrated by
//! whatever opens it first (the collector, a command). A PostgreSQL database
//! is a copy (`CREATE DATABASE ... TEMPLATE`) of a template migrated once:
//! the template is named after a hash of `migrations/postgres`, so that test
//! processes running at the same time, even of checkouts whose migrations
//! differ, share it when their migrations are the same and never touch it
//! otherwise. It is built under an advisory lock, under a temporary name
//! that is renamed once the migrations are applied, and kept on the server
//! for the next run; it accepts no connections, so that nothing holds it
//! while it is copied. (`ALTER DATABASE ... IS_TEMPLATE false` lets it be
//! dropped.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anonstats::db::{DbConn, Manager};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use sha2::{Digest, Sha256};

use super::{Backend, POSTGRES_ENV};

/// A fresh database, removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Holds the SQLite file's directory until the database is dropped.
    _dir: Option<tempfile::TempDir>,
    admin_url: Option<String>,
    name: String,
}

/// The configured PostgreSQL server's URL, without TLS, if any.
fn postgres_admin_url() -> Option<String> {
    let url = std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty())?;
    // A local test server needs no TLS; without it, no thread of the test
    // process is inside OpenSSL when the process exits (its exit handlers
    // then free what such a thread still uses).
    Some(if url.contains("sslmode=") {
        url
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    })
}

fn execute(conn: &mut PgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A hash of every file of the PostgreSQL migrations, names included.
fn migrations_hash() -> String {
    fn walk(dir: &Path, hasher: &mut Sha256) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            hasher.update(path.file_name().unwrap().as_encoded_bytes());
            if path.is_dir() {
                walk(&path, hasher);
            } else {
                hasher.update(std::fs::read(&path).unwrap());
            }
        }
    }
    let mut hasher = Sha256::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"),
        &mut hasher,
    );
    hex::encode(hasher.finalize())
}

/// The name of the migrated template database, built if the server does
/// not have it yet; once per test process.
fn template(admin_url: &str) -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let name = format!("anonstats_template_{}", &migrations_hash()[..16]);
        let mut admin = PgConnection::establish(admin_url).expect("connect to test PostgreSQL");
        // One process at a time builds it; the others wait, then find it.
        execute(&mut admin, "SELECT pg_advisory_lock(7305261)");
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let found = diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM pg_database WHERE datname = '{name}'"
        ))
        .get_result::<Found>(&mut admin)
        .expect("look for the template")
        .n;
        if found == 0 {
            // A build that was interrupted left this behind.
            let partial = format!("{name}_partial");
            execute(
                &mut admin,
                &format!("DROP DATABASE IF EXISTS {partial} WITH (FORCE)"),
            );
            execute(&mut admin, &format!("CREATE DATABASE {partial}"));
            {
                let mut conn = Manager::new(&replace_database(admin_url, &partial))
                    .establish()
                    .expect("connect to the template");
                anonstats::db::run_migrations(&mut conn).expect("migrate the template");
            }
            execute(
                &mut admin,
                &format!("ALTER DATABASE {partial} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
            );
            execute(
                &mut admin,
                &format!("ALTER DATABASE {partial} RENAME TO {name}"),
            );
        }
        execute(&mut admin, "SELECT pg_advisory_unlock(7305261)");
        name
    })
}

impl TestDb {
    /// A fresh database of `backend` (PostgreSQL must be configured).
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("anonstats.db");
                TestDb {
                    backend,
                    url: path.to_string_lossy().into_owned(),
                    _dir: Some(dir),
                    admin_url: None,
                    name: String::new(),
                }
            }
            Backend::Postgres => Self::postgres().expect("postgres configured"),
        }
    }

    /// A fresh, migrated PostgreSQL database, if a server is configured.
    pub fn postgres() -> Option<TestDb> {
        let admin_url = postgres_admin_url()?;
        let template = template(&admin_url);
        let name = format!("anonstats_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url).expect("connect to test PostgreSQL");
        execute(
            &mut admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        );
        let url = replace_database(&admin_url, &name);
        Some(TestDb {
            backend: Backend::Postgres,
            url,
            _dir: None,
            admin_url: Some(admin_url),
            name,
        })
    }

    /// The PostgreSQL database's name (empty on SQLite).
    pub fn database_name(&self) -> &str {
        &self.name
    }

    /// The URL of the PostgreSQL server's maintenance database (`None` on
    /// SQLite), for what must be done from outside the test database.
    pub fn admin_url(&self) -> Option<&str> {
        self.admin_url.as_deref()
    }

    /// A direct connection for inspecting what was stored.
    pub fn conn(&self) -> DbConn {
        Manager::new(&self.url)
            .establish()
            .expect("connect to test database")
    }

    /// Path of the SQLite file (SQLite only).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Sqlite).then(|| PathBuf::from(&self.url))
    }

    /// Every stored text value of every user table, with its table and
    /// column, for privacy checks.
    pub fn all_text(&self) -> Vec<(String, String, String)> {
        let mut conn = self.conn();
        let columns: Vec<(String, String)> = match self.backend {
            Backend::Sqlite => {
                #[derive(QueryableByName)]
                struct T {
                    #[diesel(sql_type = Text)]
                    name: String,
                }
                let tables: Vec<T> = diesel::sql_query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .load(&mut conn)
                .unwrap();
                let mut out = Vec::new();
                for t in tables {
                    let cols: Vec<T> = diesel::sql_query(format!(
                        "SELECT name FROM pragma_table_info('{}')",
                        t.name
                    ))
                    .load(&mut conn)
                    .unwrap();
                    out.extend(cols.into_iter().map(|c| (t.name.clone(), c.name)));
                }
                out
            }
            Backend::Postgres => {
                #[derive(QueryableByName)]
                struct TC {
                    #[diesel(sql_type = Text)]
                    table_name: String,
                    #[diesel(sql_type = Text)]
                    column_name: String,
                    #[diesel(sql_type = Text)]
                    data_type: String,
                }
                let rows: Vec<TC> = diesel::sql_query(
                    "SELECT table_name::text AS table_name, column_name::text AS column_name,
                            data_type::text AS data_type
                     FROM information_schema.columns c WHERE table_schema = 'public'
                     AND EXISTS (SELECT 1 FROM information_schema.tables t
                                 WHERE t.table_schema = 'public' AND t.table_name = c.table_name
                                 AND t.table_type = 'BASE TABLE')",
                )
                .load(&mut conn)
                .unwrap();
                // Binary columns are marked so that they are read as hex.
                rows.into_iter()
                    .map(|r| {
                        let column = if r.data_type == "bytea" {
                            format!("\u{0}{}", r.column_name)
                        } else {
                            r.column_name
                        };
                        (r.table_name, column)
                    })
                    .collect()
            }
        };
        #[derive(QueryableByName)]
        struct V {
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            v: Option<String>,
        }
        let mut out = Vec::new();
        for (table, column) in columns {
            let (column, binary) = match column.strip_prefix('\u{0}') {
                Some(c) => (c.to_owned(), true),
                None => (column, false),
            };
            let cast = match self.backend {
                Backend::Sqlite => format!("CASE WHEN typeof(\"{column}\") = 'blob' THEN lower(hex(\"{column}\")) ELSE CAST(\"{column}\" AS TEXT) END"),
                Backend::Postgres if binary => format!("encode(\"{column}\", 'hex')"),
                Backend::Postgres => format!("CAST(\"{column}\" AS TEXT)"),
            };
            let values: Vec<V> = diesel::sql_query(format!("SELECT {cast} AS v FROM \"{table}\""))
                .load(&mut conn)
                .unwrap();
            out.extend(
                values
                    .into_iter()
                    .filter_map(|v| v.v)
                    .map(|v| (table.clone(), column.clone(), v)),
            );
        }
        out
    }

    /// The whole database as bytes: the SQLite file and its WAL, or a
    /// pg_dump of the PostgreSQL database.
    pub fn raw_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let mut bytes = std::fs::read(&self.url).expect("read SQLite file");
                for suffix in ["-wal", "-journal"] {
                    if let Ok(extra) = std::fs::read(format!("{}{suffix}", self.url)) {
                        bytes.extend(extra);
                    }
                }
                bytes
            }
            Backend::Postgres => {
                let out = Command::new("pg_dump")
                    .arg("--no-owner")
                    .arg(&self.url)
                    .output()
                    .expect("run pg_dump (PostgreSQL client tools must be installed)");
                assert!(
                    out.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(admin_url) = &self.admin_url {
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut admin);
            }
        }
    }
}

/// Replaces the database name of a PostgreSQL URL.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// Runs a query returning one BIGINT column named `n`.
pub fn scalar(conn: &mut DbConn, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<N>(conn).expect(sql).n
}
