//! Report intake: `POST /api/v1/reports` and the legacy passbolt endpoint.
//!
//! Nothing here reads the peer address or any header other than the content
//! type and length.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::Outcome;
use crate::validation::{self, Report};

pub async fn post_report(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, "application/json")?;
    let body = read_body(&req, payload).await?;
    let report = validation::parse_v1(&body, &state.catalog).map_err(ApiError::Invalid)?;
    ingest(report, &state).await
}

pub async fn post_legacy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, "application/x-www-form-urlencoded")?;
    let body = read_body(&req, payload).await?;
    let report = validation::parse_legacy(&body, &state.catalog, &state.legacy_product)
        .map_err(ApiError::Invalid)?;
    ingest(report, &state).await
}

async fn ingest(report: Report, state: &AppState) -> Result<HttpResponse, ApiError> {
    let ignored = report.ignored.clone();
    let record = state.anonymize(report);
    match state.ingest.submit(record).await? {
        Outcome::Accepted => {
            tracing::debug!(target: "anonstats::reports", outcome = "accepted");
            Ok(HttpResponse::Accepted().json(json!({"status": "accepted", "ignored": ignored})))
        }
        Outcome::Duplicate => {
            tracing::debug!(target: "anonstats::reports", outcome = "duplicate");
            Ok(HttpResponse::Ok().json(json!({"status": "duplicate"})))
        }
    }
}

/// Accepts the media type with or without parameters (`; charset=utf-8`).
pub(crate) fn require_content_type(
    req: &HttpRequest,
    expected: &'static str,
) -> Result<(), ApiError> {
    let ok = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(expected));
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType { expected })
    }
}

/// Reads the body up to the limit; a declared or actual larger body is
/// refused without reading the rest.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::BytesMut, ApiError> {
    let too_large = ApiError::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    let mut body =
        web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES as u64) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadBody)?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
