//! `GET /metrics`: operational counters in the Prometheus text format.

use actix_web::{web, HttpResponse};

use crate::metrics::Gauges;
use crate::startup::AppState;

pub async fn get_metrics(state: web::Data<AppState>) -> HttpResponse {
    let gauges = Gauges {
        queue_capacity: state.ingest.capacity(),
        rate_limit_sources: state.rate_limiter.tracked(),
        limited_instances: state.instance_limiter.tracked(),
        pruned_instances: state
            .pruned_instances
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.render(state.ingest.state(), &gauges))
}
