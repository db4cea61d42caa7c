//! The baseline server: the collector's HTTP stack without storage.
//!
//! It answers `POST /api/v1/reports` like the collector up to the point
//! where the collector hands the record to its writer: same actix-web
//! settings, access log, media-type check and body limit, the same
//! `validation::parse_v1` and `anonymize::anonymize`, and the same `202`
//! body. It stores nothing, so its rate is the ceiling any durable ingest
//! can approach on the machine it runs on.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde_json::json;

use crate::anonymize::{self, Pseudonymizer};
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::routes::reports::{read_body, require_content_type, require_utf8};
use crate::validation;

/// Flags of the hidden `bench-baseline` command.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub bind: String,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long)]
    pub workers: Option<usize>,
}

struct BaselineState {
    catalog: Arc<Catalog>,
    pseudonymizer: Pseudonymizer,
}

async fn post_report(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<BaselineState>,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, "application/json")?;
    require_utf8(&req)?;
    let timeout = crate::ratelimit::Limits::default().request_timeout;
    let body = read_body(&req, payload, timeout).await?;
    let report = validation::parse_v1(&body, &state.catalog).map_err(ApiError::Invalid)?;
    let ignored = report.ignored.clone();
    let record = anonymize::anonymize(report, &state.pseudonymizer, Utc::now().date_naive());
    // Where the collector queues the record for its writer.
    std::hint::black_box(record);
    Ok(HttpResponse::Accepted().json(json!({"status": "accepted", "ignored": ignored})))
}

/// Serves until SIGTERM/SIGINT.
pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let state = web::Data::new(BaselineState {
            catalog: Arc::new(Catalog::builtin()),
            pseudonymizer: Pseudonymizer::new(anonymize::generate_secret().as_bytes()),
        });
        let listener = TcpListener::bind(&args.bind)
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let port = listener.local_addr()?.port();
        // The same settings as `startup::Application::build`.
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(crate::startup::access_log))
                .route(
                    crate::bench::load::REPORTS_PATH,
                    web::post().to(post_report),
                )
        })
        .shutdown_timeout(5)
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(2))
        .keep_alive(Duration::from_secs(15));
        if let Some(w) = args.workers {
            server = server.workers(w);
        }
        let server = server.listen(listener)?.run();
        tracing::info!(port, "anonstats benchmark baseline listening");
        server.await.context("baseline server failed")
    })
}
