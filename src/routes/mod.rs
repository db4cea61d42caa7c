//! HTTP routes. Handlers parse, call one function, and map errors; they
//! never touch SQL.

mod catalog;
mod health;
pub(crate) mod reports;

use actix_web::{web, HttpResponse, ResponseError};

use crate::error::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/reports")
            .route(web::post().to(reports::post_report))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/statistics/install.json")
            .route(web::post().to(reports::post_legacy))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/api/v1/catalog", web::get().to(catalog::get_catalog))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz));
}

async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// Answer for every unknown path.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
