//! HTTP routes. Handlers parse, call one function, and map errors; they
//! never touch SQL.

mod auth;
mod catalog;
mod dashboard;
mod health;
mod instances;
mod metrics;
mod openapi;
mod public;
pub(crate) mod reports;
mod stats;

use actix_web::{web, HttpResponse, ResponseError};

use crate::error::ApiError;
use crate::ratelimit;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/reports")
            .wrap(actix_web::middleware::from_fn(ratelimit::limit_sources))
            .route(web::post().to(reports::post_report))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/statistics/install.json")
            .wrap(actix_web::middleware::from_fn(ratelimit::limit_sources))
            .route(web::post().to(reports::post_legacy))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/api/v1/catalog", web::get().to(catalog::get_catalog))
    .route("/api/v1/openapi.json", web::get().to(openapi::get_openapi))
    .route("/", web::get().to(dashboard::page))
    .route("/assets/{name}", web::get().to(dashboard::static_asset))
    .route("/signin", web::post().to(dashboard::sign_in))
    .route("/signin", web::get().to(dashboard::sign_in_link))
    .route("/signout", web::post().to(dashboard::sign_out))
    .service(
        web::resource("/api/v1/instances/{instance_id}")
            .route(web::delete().to(instances::delete_instance))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(metrics::get_metrics));
    stats::configure(cfg);
    public::configure(cfg);
}

async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// Answer for every unknown path.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
