//! HTTP routes. Handlers parse, call one function, and map errors; they
//! never touch SQL.

mod auth;
mod catalog;
mod dashboard;
mod erasures;
pub mod error;
mod health;
mod metrics;
pub mod middleware;
mod openapi;
mod public;
mod reports;
mod stats;

use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse, ResponseError};

use crate::routes::error::ApiError;
use crate::routes::middleware::{limit_requests, limit_sources};

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/reports")
            .wrap(from_fn(limit_sources))
            .route(web::post().to(reports::post_report))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/statistics/install.json")
            .wrap(from_fn(limit_sources))
            .route(web::post().to(reports::post_legacy))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/api/v1/catalog", web::get().to(catalog::get_catalog))
    .route("/api/v1/openapi.json", web::get().to(openapi::get_openapi))
    .service(
        web::resource("/")
            .wrap(from_fn(limit_requests))
            .route(web::get().to(dashboard::page))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/assets/{name}", web::get().to(dashboard::static_asset))
    .service(
        web::resource("/signin")
            .wrap(from_fn(limit_requests))
            .route(web::post().to(dashboard::sign_in))
            .route(web::get().to(dashboard::sign_in_link))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/signout", web::post().to(dashboard::sign_out))
    .service(
        web::resource(erasures::ERASURES_PATH)
            .wrap(from_fn(limit_requests))
            .route(web::post().to(erasures::post_erasure))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/instances/{instance_id}")
            .route(web::delete().to(erasures::retired_delete_instance))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/healthz", web::get().to(health::healthz))
    .service(
        web::resource("/readyz")
            .wrap(from_fn(limit_requests))
            .route(web::get().to(health::readyz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .wrap(from_fn(limit_requests))
            .route(web::get().to(metrics::get_metrics))
            .default_service(web::to(method_not_allowed)),
    );
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
