//! The scheduled releases of `serve`: a thread that publishes one release
//! per period of the cadence, like retention's `Pruner`.
//!
//! Several collectors sharing a database may all run it: the release date
//! is the table's primary key, so a second collector's insert of the same
//! day is refused and it moves on.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::publish;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::db::Pool;
use crate::release::{Mechanism, ReleaseError, Settings};
use crate::store;

/// How often the thread looks whether a release is due.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The scheduled release thread; stops when dropped.
pub struct Publisher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Looks now and then every `interval` whether today's period has a
    /// release yet, and publishes one if not.
    pub fn start(
        pool: Pool,
        catalog: Arc<Catalog>,
        settings: Settings,
        interval: Duration,
        clock: Clock,
    ) -> Publisher {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("anonstats-releases".into())
            .spawn(move || loop {
                run_once(&pool, &catalog, &settings, clock);
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .expect("spawn release thread");
        Publisher {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_once(pool: &Pool, catalog: &Catalog, settings: &Settings, clock: Clock) {
    let today = clock.today();
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(%error, "release check failed: no database connection");
            return;
        }
    };
    match store::releases::latest_date(&mut conn) {
        Ok(latest) if !settings.cadence.due(today, latest) => return,
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "release check failed");
            return;
        }
    }
    match publish(
        &mut conn,
        catalog,
        settings,
        today,
        &mut Mechanism::from_os(),
    ) {
        Ok(stored) => tracing::info!(
            date = %stored.date,
            rho = stored.rho,
            sha256 = %stored.sha256,
            "public release published"
        ),
        Err(ReleaseError::AlreadyPublished(_)) => {}
        // Retried at the next check; the budget frees up as old releases
        // leave the 365-day window.
        Err(error) => tracing::warn!(%error, "public release not published"),
    }
}
