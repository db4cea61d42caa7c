//! Liveness and readiness.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;
use crate::store;

/// The process is alive and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The collector can store reports now: the database answers, the writer's
/// last transaction committed and its queue has room.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let writer = state.intake.service.ingest().state();
    // While the writer knows the database is down, say so at once instead
    // of waiting for a connection attempt to time out.
    let pool = state.pool.clone();
    let database = !writer.database_down()
        && web::block(move || {
            let mut conn = pool.get_timeout(Duration::from_secs(1)).ok()?;
            store::ping(&mut conn).ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
    let queue_ok = writer.queue_depth() < state.intake.service.ingest().capacity();
    let ready = database && writer.healthy() && queue_ok;
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": database,
        "writer": writer.healthy(),
        "queue_depth": writer.queue_depth(),
        "queue_capacity": state.intake.service.ingest().capacity(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}
