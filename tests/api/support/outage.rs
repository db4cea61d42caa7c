//! Taking storage away from a running collector and giving it back: the
//! database itself ([`TestDb::take_away`]), the network between a collector
//! and PostgreSQL ([`Relay`]), the free space of the disk ([`SmallDisk`]).

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anonstats::db::DbConn;
use diesel::connection::SimpleConnection;

use super::{Backend, TestDb};

/// A database taken away by [`TestDb::take_away`]; it is back after
/// [`Outage::bring_back`], or when this is dropped.
pub struct Outage<'a> {
    db: &'a TestDb,
    /// The connection that holds the SQLite lock, or the PostgreSQL
    /// server's, that undoes the outage.
    blocker: Option<DbConn>,
}

impl TestDb {
    /// Takes the database away from every collector using it. SQLite is
    /// locked by another connection for longer than the collector's busy
    /// timeout; a PostgreSQL database is renamed once its connections are
    /// ended, so that reconnecting fails too.
    pub fn take_away(&self) -> Outage<'_> {
        let blocker = match self.backend {
            Backend::Sqlite => {
                let mut blocker = self.conn();
                blocker.batch_execute("BEGIN EXCLUSIVE").unwrap();
                blocker
            }
            Backend::Postgres => {
                let name = self.database_name();
                let mut admin = anonstats::db::Manager::new(self.admin_url().unwrap())
                    .establish()
                    .expect("connect to the PostgreSQL server");
                // The collector's pools may reconnect between the two
                // statements.
                for attempt in 1.. {
                    let renamed = admin.batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'; ALTER DATABASE {name} RENAME TO {name}_gone"
                    ));
                    match renamed {
                        Ok(()) => break,
                        Err(e) if attempt >= 20 => panic!("cannot take {name} away: {e}"),
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                admin
            }
        };
        Outage {
            db: self,
            blocker: Some(blocker),
        }
    }
}

impl Outage<'_> {
    /// Gives the database back: the lock is released, or the PostgreSQL
    /// database has its name again.
    pub fn bring_back(mut self) {
        self.end().expect("bring the database back");
    }

    fn end(&mut self) -> Result<(), diesel::result::Error> {
        let Some(mut blocker) = self.blocker.take() else {
            return Ok(());
        };
        match self.db.backend {
            Backend::Sqlite => blocker.batch_execute("ROLLBACK"),
            Backend::Postgres => {
                let name = self.db.database_name();
                blocker.batch_execute(&format!("ALTER DATABASE {name}_gone RENAME TO {name}"))
            }
        }
    }
}

impl Drop for Outage<'_> {
    /// A test that failed during the outage still leaves a database that
    /// can be dropped.
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// A TCP relay between collectors and the PostgreSQL server of a test
/// database that can cut every connection and refuse new ones, without
/// touching the shared server.
pub struct Relay {
    /// The test database's URL through the relay.
    pub url: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

/// `host:port` of a PostgreSQL URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let host_port = rest.split(['/', '?']).next().unwrap();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

impl Relay {
    /// A relay in front of the server of `db` (PostgreSQL only).
    pub fn in_front_of(db: &TestDb) -> Relay {
        assert_eq!(db.backend, Backend::Postgres, "a relay is for PostgreSQL");
        let upstream = authority(&db.url);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut open = o.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        let url = db
            .url
            .replacen(&authority(&db.url), &format!("127.0.0.1:{port}"), 1);
        assert_ne!(url, db.url);
        Relay { url, cut, open }
    }

    /// Cuts every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A small tmpfs, unmounted when dropped.
pub struct SmallDisk {
    /// Where it is mounted.
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes`, if this process may.
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    /// Fills the disk up with a file, whose path it returns.
    pub fn fill(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
