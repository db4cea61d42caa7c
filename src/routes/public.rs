//! The public routes: differentially private releases, no token.
//!
//! Every answer is read from the stored releases (the `releases` table),
//! never from live data, so that polling them between two releases gives
//! the same bytes. Releases are JSON by default, CSV with `?format=csv`;
//! `.../release.csv` and `.../manifest.json` are the open-data download of
//! one release.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;

use crate::db::DbConn;
use crate::publication;
use crate::reads::Refused;
use crate::release::{self, Stored};
use crate::routes::error::ApiError;
use crate::state::AppState;
use crate::validation::Violation;

const PAGE: &str = include_str!("../../assets/public.html");

/// Registers the public routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let get = |path: &str, handler| {
        web::resource(path.to_owned())
            .wrap(actix_web::middleware::from_fn(
                super::middleware::limit_requests,
            ))
            .route(handler)
            .default_service(web::to(super::method_not_allowed))
    };
    cfg.service(get("/api/v1/public/releases/latest", web::get().to(latest)))
        .service(get("/api/v1/public/ledger", web::get().to(ledger)))
        .service(get(
            "/api/v1/public/releases/{date}/release.csv",
            web::get().to(download_csv),
        ))
        .service(get(
            "/api/v1/public/releases/{date}/manifest.json",
            web::get().to(manifest),
        ))
        .service(get("/api/v1/public/releases/{date}", web::get().to(dated)))
        .service(get("/public", web::get().to(page)));
}

/// Runs `f` on a pooled connection, on a read thread.
async fn read<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce(&mut DbConn) -> diesel::QueryResult<T> + Send + 'static,
) -> Result<T, ApiError> {
    let pool = state.pool.clone();
    let result = state
        .reads
        .slots
        .run(move || {
            let mut conn = pool.get().map_err(|_| ApiError::Database)?;
            f(&mut conn).map_err(|e| {
                tracing::error!(error = %e, "public release not read");
                ApiError::Database
            })
        })
        .await;
    match result {
        Ok(answer) => answer,
        Err(Refused::Busy) => Err(ApiError::Busy),
        Err(Refused::Failed) => Err(ApiError::Database),
    }
}

fn bad(field: &str, rule: &'static str, detail: &str) -> ApiError {
    ApiError::BadParameter(Violation {
        field: field.to_owned(),
        pointer: String::new(),
        rule,
        detail: detail.to_owned(),
    })
}

fn parse_date(s: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == s)
        .ok_or_else(|| bad("date", "date", "must be a day as YYYY-MM-DD"))
}

/// Whether `?format=csv` was asked for.
fn wants_csv(req: &HttpRequest) -> Result<bool, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    match pairs.iter().rev().find(|(k, _)| k == "format") {
        None => Ok(false),
        Some((_, v)) if v == "json" => Ok(false),
        Some((_, v)) if v == "csv" => Ok(true),
        Some(_) => Err(bad("format", "enum", "must be json or csv")),
    }
}

/// A release as JSON (the stored bytes) or CSV.
fn render(stored: &Stored, csv: bool) -> Result<HttpResponse, ApiError> {
    let mut res = public_ok();
    if csv {
        let release = parsed(stored)?;
        let body = release::csv(&release);
        res.insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
            .insert_header((
                header::ETAG,
                format!("\"{}\"", release::sha256_hex(body.as_bytes())),
            ));
        Ok(res.body(body))
    } else {
        res.insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::ETAG, format!("\"{}\"", stored.sha256)));
        Ok(res.body(stored.body.clone()))
    }
}

fn parsed(stored: &Stored) -> Result<release::Release, ApiError> {
    stored.release().map_err(|e| {
        tracing::error!(error = %e, date = %stored.date, "stored release unreadable");
        ApiError::Database
    })
}

/// `GET /api/v1/public/releases/latest`
async fn latest(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let csv = wants_csv(&req)?;
    let stored = read(&state, publication::latest)
        .await?
        .ok_or(ApiError::NotFound)?;
    render(&stored, csv)
}

/// `GET /api/v1/public/releases/{date}`
async fn dated(
    req: HttpRequest,
    state: web::Data<AppState>,
    date: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let csv = wants_csv(&req)?;
    let (_, stored) = stored_on(&state, &date).await?;
    render(&stored, csv)
}

/// The release of the day a path names: 400 for a malformed day, 404 for
/// a day without a release.
async fn stored_on(
    state: &web::Data<AppState>,
    date: &str,
) -> Result<(NaiveDate, Stored), ApiError> {
    let date = parse_date(date)?;
    let stored = read(state, move |c| publication::on(c, date))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((date, stored))
}

/// A 200 for the public files: any origin may fetch them, and caches may
/// keep them, since a release never changes.
fn public_ok() -> actix_web::HttpResponseBuilder {
    let mut ok = HttpResponse::Ok();
    ok.insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    ok
}

/// `GET /api/v1/public/releases/{date}/release.csv`: the open-data file.
async fn download_csv(
    state: web::Data<AppState>,
    date: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (date, stored) = stored_on(&state, &date).await?;
    let body = release::csv(&parsed(&stored)?);
    Ok(public_ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"anonstats-release-{date}.csv\""),
        ))
        .body(body))
}

/// `GET /api/v1/public/releases/{date}/manifest.json`
async fn manifest(
    state: web::Data<AppState>,
    date: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, stored) = stored_on(&state, &date).await?;
    let m = release::manifest(&stored, &parsed(&stored)?);
    Ok(public_ok().json(m))
}

/// `GET /api/v1/public/ledger`
async fn ledger(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let budget = state.config.releases.budget;
    let l = read(&state, move |c| publication::read_ledger(c, budget)).await?;
    Ok(public_ok().json(l))
}

/// `GET /public`: the page of the latest release (drawn by public.js).
/// `GET /public`: the page; it says so when the database holds demo data,
/// whose releases describe no real installs.
async fn page(state: web::Data<AppState>) -> HttpResponse {
    let notice = super::dashboard::synthetic_notice(&state).await;
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, super::dashboard::CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(PAGE.replace("<!--synthetic-->", &notice))
}
