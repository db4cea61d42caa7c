//! Report intake: `POST /api/v1/reports` and the legacy passbolt endpoint.
//!
//! Nothing here reads the peer address or any header other than the content
//! type and length (the per-source rate limit runs before, in
//! [`crate::routes::middleware`], and keeps nothing of the address).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use std::time::Duration;

use crate::config::MAX_BODY_BYTES;
use crate::ingest::IngestError;
use crate::metrics::{Metrics, ReportOutcome};
use crate::routes::error::ApiError;
use crate::state::AppState;
use crate::store::Outcome;
use crate::validation::{self, Report};

pub async fn post_report(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = intake_v1(&req, payload, &state).await;
    count(&state.ops.metrics, &result);
    result
}

pub async fn post_legacy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = intake_legacy(&req, payload, &state).await;
    count(&state.ops.metrics, &result);
    result
}

async fn intake_v1(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    require_content_type(req, "application/json")?;
    require_utf8(req)?;
    let payload = refuse_early(payload, state).await?;
    let body = read_body(req, payload, state.config.limits.request_timeout).await?;
    let report = validation::parse_v1(&body, &state.config.catalog).map_err(ApiError::Invalid)?;
    ingest(report, state).await
}

async fn intake_legacy(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    require_content_type(req, "application/x-www-form-urlencoded")?;
    let payload = refuse_early(payload, state).await?;
    let body = read_body(req, payload, state.config.limits.request_timeout).await?;
    let report =
        validation::parse_legacy(&body, &state.config.catalog, &state.config.legacy_product)
            .map_err(ApiError::Invalid)?;
    ingest(report, state).await
}

/// Refuses at once when the writer could not take a report now (see
/// `Ingest::check_room`), before the body is parsed, validated and
/// anonymised, so that refusals under overload leave the CPU to the writer.
/// The body is still drained, unparsed: the HTTP stack closes a connection
/// whose request body was left unread, and every refused client would then
/// reconnect to retry.
async fn refuse_early(payload: web::Payload, state: &AppState) -> Result<web::Payload, ApiError> {
    match state.intake.service.check_room() {
        Ok(()) => Ok(payload),
        Err(e) => {
            let _ =
                tokio::time::timeout(state.config.limits.request_timeout, discard_body(payload))
                    .await;
            Err(e.into())
        }
    }
}

/// Reads and drops a body, up to the body limit (a larger one is left
/// unread, and its connection closed).
async fn discard_body(mut payload: web::Payload) {
    let mut read = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        read += chunk.len();
        if read > MAX_BODY_BYTES {
            return;
        }
    }
}

/// Counts the outcome of one report request for `GET /metrics`.
fn count(metrics: &Metrics, result: &Result<HttpResponse, ApiError>) {
    let outcome = match result {
        Ok(r) if r.status().as_u16() == 202 => ReportOutcome::Accepted,
        Ok(_) => ReportOutcome::Duplicate,
        Err(ApiError::Invalid(invalid)) => {
            metrics.rejected(invalid.0.iter().map(|v| v.rule));
            return;
        }
        Err(ApiError::PayloadTooLarge { .. }) => ReportOutcome::TooLarge,
        Err(ApiError::UnsupportedMediaType { .. }) => ReportOutcome::UnsupportedMediaType,
        Err(ApiError::Ingest(IngestError::Overloaded)) => ReportOutcome::Overloaded,
        Err(ApiError::Ingest(_)) => ReportOutcome::Unavailable,
        Err(ApiError::InstanceLimited { .. }) => ReportOutcome::InstanceLimited,
        Err(ApiError::RateLimited { .. }) => ReportOutcome::RateLimited,
        Err(_) => ReportOutcome::BadRequest,
    };
    metrics.report(outcome);
}

async fn ingest(report: Report, state: &AppState) -> Result<HttpResponse, ApiError> {
    let receipt = state.intake.service.accept(report).await?;
    match receipt.outcome {
        Outcome::Accepted => {
            tracing::debug!(target: "anonstats::reports", outcome = "accepted");
            Ok(HttpResponse::Accepted()
                .json(json!({"status": "accepted", "ignored": receipt.ignored})))
        }
        Outcome::Duplicate => {
            tracing::debug!(target: "anonstats::reports", outcome = "duplicate");
            Ok(HttpResponse::Ok().json(json!({"status": "duplicate"})))
        }
    }
}

/// Accepts the media type with or without parameters (`; charset=utf-8`).
pub(super) fn require_content_type(
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

/// JSON is UTF-8 (RFC 8259): a body declared in another charset is refused
/// rather than misread.
pub(super) fn require_utf8(req: &HttpRequest) -> Result<(), ApiError> {
    let charset = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(';').skip(1))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii") => Ok(()),
        Some(_) => Err(ApiError::UnsupportedMediaType {
            expected: "application/json; charset=utf-8",
        }),
    }
}

/// Reads the body up to the limit and within the request timeout; a
/// declared or actual larger body is refused without reading the rest, and a
/// client trickling its body cannot hold a worker.
pub(super) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    timeout: Duration,
) -> Result<web::BytesMut, ApiError> {
    tokio::time::timeout(timeout, read_body_unbounded(req, payload))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

async fn read_body_unbounded(
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
