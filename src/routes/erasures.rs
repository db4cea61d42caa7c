//! `POST /api/v1/erasures`: erasure without identity, and the retired
//! `DELETE /api/v1/instances/{instance_id}`.
//!
//! The id travels in the body, never in the URL, so that no access log,
//! here or in a proxy in front, can record it. The answer is the same
//! whether or not anything was stored (see [`crate::erasure`]).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::reports::{read_body, require_content_type, require_utf8};
use crate::erasure;
use crate::routes::error::ApiError;
use crate::state::AppState;
use crate::validation;

/// The route that replaced the id-in-the-path one.
pub const ERASURES_PATH: &str = "/api/v1/erasures";

pub async fn post_erasure(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_content_type(&req, "application/json")?;
    require_utf8(&req)?;
    let body = read_body(&req, payload, state.config.limits.request_timeout).await?;
    let request = validation::parse_erasure(&body, &state.config.catalog)
        .map_err(ApiError::InvalidErasure)?;
    erasure::erase(
        &state.intake.service,
        &state.reads.slots,
        &state.stats.cache,
        request,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "forgotten"})))
}

/// The old route put the clear id in the URL, where proxies log it: it is
/// refused without looking at the id, so that old clients learn to move
/// rather than keep leaking.
pub async fn retired_delete_instance() -> Result<HttpResponse, ApiError> {
    Err(ApiError::Gone {
        replacement: "POST /api/v1/erasures with a JSON body {\"instance_id\": \"...\", \"product\": \"...\"}",
        link: ERASURES_PATH,
    })
}
