//! The access log: one line per request, without anything that could name
//! the client.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// One line per request: method, route, status, size and duration. Never the
/// address, the user agent or the raw path (which any client can fill with
/// anything): the route pattern is logged instead.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // A method token is the client's to choose: only the standard ones are
    // logged as such.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    };
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let res = next.call(req).await?;
    let size = match res.response().body().size() {
        actix_web::body::BodySize::Sized(n) => n,
        _ => 0,
    };
    tracing::info!(
        target: "anonstats::access",
        method = %method,
        path = %route,
        status = res.status().as_u16(),
        size,
        duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        "request"
    );
    Ok(res)
}
