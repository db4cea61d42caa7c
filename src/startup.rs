//! Builds and runs the HTTP server: database, migrations, secret, writer,
//! routes, in that order.

use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::access::{self, Access};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{self, Backend, Pool};
use crate::ingest::{self, Writer};
use crate::intake::Intake;
use crate::limits::{InstanceLimiter, RateLimiter, KEY_ROTATION};
use crate::metrics::Metrics;
use crate::publication::publisher::{self, Publisher};
use crate::retention::Pruner;
use crate::routes;
use crate::secret;
use crate::state::{AppState, IntakeState, OpsState, ReadState, StatsState};

/// Connections of the writer's own pool: the writer, its sync thread and
/// the SQLite checkpointer.
const WRITER_CONNECTIONS: u32 = 3;

/// Where the writer puts the reports a collector accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sink {
    /// The database: a report is answered once it is durable.
    #[default]
    Database,
    /// Nowhere: the writer answers each report `accepted` and drops it
    /// ([`ingest::discard`]). The benchmark's baseline is the collector
    /// built with this sink, so that it differs from the real one by the
    /// storage only. Never for a collector that real clients report to.
    Discard,
}

/// A built collector, bound to its port but not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    writer: Writer,
    pruner: Option<Pruner>,
    publisher: Option<Publisher>,
}

/// Maintainer access: the configured token, or the stored one (generated,
/// and returned in clear once, on the first start).
fn load_access(config: &Config, pool: &Pool) -> anyhow::Result<(Access, Option<String>)> {
    if let Some(token) = &config.stats.token {
        return Ok((Access::configured(token.hash()), None));
    }
    let mut conn = pool.get().context("cannot connect to database")?;
    let (hash, new) =
        access::stored_or_new(&mut conn).context("cannot read or store the stats token")?;
    Ok((Access::stored(hash), new))
}

/// Shows a newly generated token once, as a sign-in link on stderr, as
/// notebook servers do. Not through the log: the token must not end up in
/// log files at every level and format.
fn announce_token(bind: &str, port: u16, token: &str) {
    let host = match bind.rsplit_once(':').map(|(h, _)| h) {
        Some("0.0.0.0") | Some("[::]") | Some("") | None => "127.0.0.1",
        Some(h) => h,
    };
    eprintln!(
        "\nanonstats: the live statistics, the dashboard and /metrics need the stats token. One was generated and only its hash is kept: this is the only time it is shown.\n\n    http://{host}:{port}/signin?token={token}\n\n(API: Authorization: Bearer {token}. `anonstats token` makes a new one.)\n"
    );
}

impl Application {
    /// Prepares the database and binds the listener.
    pub fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_sink(config, Sink::Database)
    }

    /// [`Application::build`], with the writer putting accepted reports
    /// into `sink`. Everything else (database, secret, routes, limits,
    /// server settings) is built alike for every sink.
    pub fn build_with_sink(config: Config, sink: Sink) -> anyhow::Result<Application> {
        // One storage for both pools: a failure seen through either closes
        // the connections of both before reports are acknowledged again.
        let storage = db::Storage::new(db::Faults::from_env());
        if let Some(dir) = storage.faults().dir() {
            tracing::warn!(
                dir = %dir.display(),
                variable = db::FAULTS_ENV,
                "storage fault injection is on: flushes and checkpoints fail while \
                 trigger files exist (for tests only)"
            );
        }
        let pool = db::prepare_database_sharing(&config.database_url, config.pool_size, &storage)?;
        let backend = Backend::parse(&config.database_url)?;
        let pseudonymizer =
            secret::load_pseudonymizer(config.secret.as_deref(), &pool, &config.database_url)?;
        let (access, new_token) = load_access(&config, &pool)?;
        // The writer, its sync thread and the checkpointer have connections
        // of their own: a flood of reads can take every connection of the
        // readers' pool, never one the writer waits for.
        let (ingest, writer) = match sink {
            Sink::Database => {
                let writer_pool =
                    db::pool_sharing(&config.database_url, WRITER_CONNECTIONS, &storage);
                let writer_config = ingest::WriterConfig {
                    sync_queue: ingest::sync_queue(backend),
                    ..config.writer.clone()
                };
                ingest::start(storage, writer_pool, vec![pool.clone()], writer_config)
            }
            Sink::Discard => {
                tracing::warn!(
                    "reports are answered accepted and discarded, never stored \
                     (benchmark baseline)"
                );
                ingest::discard(storage, config.writer.clone())
            }
        };
        let limits = &config.limits;
        let pruned_instances = Arc::new(AtomicU64::new(0));
        let pruner = (config.prune_interval_hours > 0).then(|| {
            Pruner::start(
                pool.clone(),
                config.retention,
                Duration::from_secs(config.prune_interval_hours.saturating_mul(3600)),
                pruned_instances.clone(),
                config.clock,
            )
        });
        let publisher = config.releases.scheduled.then(|| {
            Publisher::start(
                pool.clone(),
                config.catalog.clone(),
                config.releases,
                publisher::CHECK_INTERVAL,
                config.clock,
            )
        });
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            intake: IntakeState {
                service: Intake::new(
                    ingest,
                    pseudonymizer,
                    InstanceLimiter::new(limits.instance_daily_limit),
                    config.clock,
                ),
                limiter: RateLimiter::new(limits.rate_limit, limits.max_sources, KEY_ROTATION),
            },
            reads: ReadState {
                // One slot per connection of the readers' pool.
                slots: crate::reads::Reads::new(
                    config.pool_size as usize,
                    crate::reads::default_threads(),
                    limits.refusal_pause,
                ),
                limiter: RateLimiter::new(limits.read_rate_limit, limits.max_sources, KEY_ROTATION),
            },
            stats: StatsState {
                cache: Default::default(),
                access,
            },
            ops: OpsState {
                metrics: Metrics::default(),
                pruned_instances,
            },
            config: config.clone(),
        });
        if let Clock::Fixed(day) = config.clock {
            tracing::warn!(%day, "the clock is pinned: every report is stamped with this day");
        }
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        // actix counts connections per worker.
        let per_worker_connections = limits.max_connections.div_ceil(workers).max(1);
        let keep_alive = if limits.keep_alive.is_zero() {
            actix_web::http::KeepAlive::Disabled
        } else {
            actix_web::http::KeepAlive::Timeout(limits.keep_alive)
        };
        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let port = listener.local_addr()?.port();
        if let Some(token) = new_token {
            announce_token(&config.bind, port, &token);
        }
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(
                    routes::middleware::access_log,
                ))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .shutdown_timeout(config.shutdown_timeout)
        .client_request_timeout(limits.request_timeout)
        .client_disconnect_timeout(Duration::from_secs(2))
        .keep_alive(keep_alive)
        .max_connections(per_worker_connections)
        .workers(workers)
        // `stop_on_signal` handles them: actix would force a stop on SIGINT.
        .disable_signals();
        let server = server.listen(listener)?.run();
        tracing::info!(
            address = %config.bind,
            port,
            database = %db::redact_url(&config.database_url),
            backend = backend.name(),
            "anonstats collector listening"
        );
        Ok(Application {
            port,
            server,
            writer,
            pruner,
            publisher,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server from elsewhere (tests).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or a stop through the handle), then
    /// finishes in-flight requests and commits everything accepted.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            writer,
            pruner,
            publisher,
            ..
        } = self;
        let result = server.await;
        drop(pruner);
        drop(publisher);
        // The server and every copy of the ingest handle are gone: the writer
        // drains the queue and exits.
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .ok();
        tracing::info!("anonstats collector stopped");
        result
    }
}

/// Runs the collector until a signal stops it (see [`stop_on_signal`]).
pub fn serve(config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config)?;
        actix_web::rt::spawn(stop_on_signal(app.handle()));
        app.run_until_stopped().await.context("server failed")
    })
}

/// Stops the server on SIGTERM or SIGINT (Ctrl-C) alike: no new connections,
/// in-flight requests finish within the shutdown timeout, then the writer
/// commits what was accepted. Only SIGQUIT stops at once.
/// `serve` runs it beside the server; an embedding process (tests) keeps its
/// own signal handling.
pub async fn stop_on_signal(handle: actix_web::dev::ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::warn!("cannot listen for signals: stop the collector with SIGKILL");
        return;
    };
    let graceful = tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => true,
        _ = quit.recv() => false,
    };
    tracing::info!(graceful, "stopping on a signal");
    handle.stop(graceful).await;
}
