//! `GET /metrics`: operational counters in the Prometheus text format.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth;
use crate::metrics::Gauges;
use crate::routes::error::ApiError;
use crate::state::AppState;

/// The counters, for maintainers: the same token as the live stats.
pub async fn get_metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::require(&req, &state)?;
    let gauges = Gauges {
        queue_capacity: state.intake.service.ingest().capacity(),
        rate_limit_sources: state.intake.limiter.tracked(),
        pruned_instances: state
            .ops
            .pruned_instances
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(
            state
                .ops
                .metrics
                .render(state.intake.service.ingest().state(), &gauges),
        ))
}
