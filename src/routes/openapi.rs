//! `GET /api/v1/openapi.json`: the published contract.
//!
//! The OpenAPI 3.1 description of every route is kept beside the code, in
//! `assets/openapi.json`, and embedded in the binary. It is written by hand
//! from the handlers; the integration tests drive the real server into every
//! documented status and validate each answer against the document, so the
//! two cannot drift apart unnoticed.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The OpenAPI document, as served.
pub const DOCUMENT: &str = include_str!("../../assets/openapi.json");

pub async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(DOCUMENT)
}
