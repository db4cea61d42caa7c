//! `GET /api/v1/stats/...`: the k-anonymous reports over HTTP.
//!
//! JSON by default; CSV with `?format=csv` or `Accept: text/csv`. Every
//! stats route requires the stats token, as `Authorization: Bearer <token>`,
//! or a dashboard session (see `crate::access`).
//! Handlers check the request, run one report on a pooled connection in the
//! blocking pool (reusing a recent result while nothing was stored, see
//! `reporting::cache`), and render it.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth;
use crate::reads::Refused;
use crate::reporting::{output, params, Output, ParamError, Params, Query, Report};
use crate::routes::error::ApiError;
use crate::state::AppState;

/// Registers the stats routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let get = |path: &str, handler| {
        web::resource(format!("/api/v1/stats{path}"))
            .wrap(actix_web::middleware::from_fn(
                super::middleware::limit_requests,
            ))
            .route(handler)
            .default_service(web::to(super::method_not_allowed))
    };
    cfg.service(get("/summary", web::get().to(summary)))
        .service(get("/events", web::get().to(events)))
        .service(get("/versions", web::get().to(versions)))
        .service(get("/attributes/{name}", web::get().to(attribute)))
        .service(get("/counters", web::get().to(counters)))
        .service(get("/features", web::get().to(features)))
        .service(get("/upgrades", web::get().to(upgrades)));
}

async fn summary(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Summary).await
}

async fn events(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Events).await
}

async fn versions(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Versions).await
}

async fn attribute(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Attribute(name.into_inner())).await
}

async fn counters(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Counters).await
}

async fn features(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Features).await
}

async fn upgrades(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    respond(req, state, Report::Upgrades).await
}

/// Response formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// Checks the token and the query, runs `report`, renders it.
async fn respond(
    req: HttpRequest,
    state: web::Data<AppState>,
    report: Report,
) -> Result<HttpResponse, ApiError> {
    auth::require(&req, &state)?;
    let (params, format) = parse_query(req.query_string()).map_err(ApiError::InvalidQuery)?;
    let format = format.unwrap_or_else(|| negotiate(&req));
    let query = Query::resolve(
        &params,
        &state.config.catalog,
        state.config.stats.k,
        state.config.stats.active_days,
        state.config.clock.today(),
    )
    .map_err(ApiError::InvalidQuery)?;
    if let Report::Attribute(name) = &report {
        params::check_attribute(&state.config.catalog, &query.product, name)
            .map_err(ApiError::InvalidQuery)?;
    }
    let out = run(&state, report, query).await?;
    Ok(render(&out, format))
}

/// Runs a report (or reuses its recent result) on a pooled connection, on
/// a read thread.
async fn run(
    state: &web::Data<AppState>,
    report: Report,
    query: Query,
) -> Result<Arc<Output>, ApiError> {
    let reader = state.clone();
    let result = state
        .reads
        .slots
        .run(move || {
            let mut conn = reader.pool.get().map_err(|e| e.to_string())?;
            reader
                .stats
                .cache
                .run(&mut conn, &reader.config.catalog, &report, &query)
                .map_err(|e| e.to_string())
        })
        .await;
    match result {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(error)) => {
            tracing::error!(target: "anonstats::stats", %error, "report failed");
            Err(ApiError::Database)
        }
        Err(Refused::Busy) => Err(ApiError::Busy),
        Err(Refused::Failed) => Err(ApiError::Database),
    }
}

/// Splits the query string into report parameters and `format`. Unknown or
/// repeated parameters are refused, so that a typo is not silently ignored.
fn parse_query(qs: &str) -> Result<(Params, Option<Format>), ParamError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(qs)
        .map_err(|_| ParamError::new("query", "not a valid query string"))?;
    let mut params = Params::default();
    let mut format = None;
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if seen.contains(&name.as_str()) {
            return Err(ParamError::new(name, "given more than once"));
        }
        seen.push(name);
        if name == "format" {
            format = Some(match value.as_str() {
                "json" => Format::Json,
                "csv" => Format::Csv,
                _ => return Err(ParamError::new("format", "must be json or csv")),
            });
        } else if !params.set(name, value.clone()) {
            return Err(ParamError::new(
                name,
                format!(
                    "unknown parameter; accepted: {}, format",
                    Params::NAMES.join(", ")
                ),
            ));
        }
    }
    Ok((params, format))
}

/// CSV when `Accept` lists `text/csv` before `application/json`.
fn negotiate(req: &HttpRequest) -> Format {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for range in accept.split(',') {
        let media = range.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/csv") {
            return Format::Csv;
        }
        if media.eq_ignore_ascii_case("application/json") {
            return Format::Json;
        }
    }
    Format::Json
}

fn render(out: &Output, format: Format) -> HttpResponse {
    let suppressed = output::suppressed(out);
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("Anonstats-Folded", suppressed.folded.to_string()))
        .insert_header(("Anonstats-Omitted", suppressed.omitted.to_string()))
        .insert_header((header::VARY, "Accept"))
        // Live figures are for maintainers: no shared cache may keep them.
        .insert_header((header::CACHE_CONTROL, "no-store"));
    match format {
        Format::Json => response
            .content_type("application/json")
            .body(serde_json::to_string(out).expect("reports serialise")),
        Format::Csv => response
            .content_type("text/csv; charset=utf-8")
            .body(output::csv(out)),
    }
}
