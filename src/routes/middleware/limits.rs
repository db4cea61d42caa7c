//! The per-source limits as middleware, in front of the routes that do
//! work: a refused request is answered 429 before its body is read.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::client_ip::source_address;
use crate::limits::{retry_seconds, RateLimiter};
use crate::metrics::ReportOutcome;
use crate::routes::error::ApiError;
use crate::state::AppState;

/// How long the request's source must wait under the limiter `which`
/// picks, or `None` when it may go on (or the limit is off).
fn wait_of(req: &ServiceRequest, which: fn(&AppState) -> &RateLimiter) -> Option<Duration> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let limiter = which(state);
    if !limiter.limit().enabled() {
        return None;
    }
    let limits = &state.config.limits;
    // Only the configured header's values: any other is the client's to forge.
    let values: Vec<&str> = limits
        .client_ip_header
        .into_iter()
        .flat_map(|h| req.headers().get_all(h.name()))
        .filter_map(|v| v.to_str().ok())
        .collect();
    let source = source_address(
        req.peer_addr().map(|a| a.ip()),
        &values,
        &limits.trusted_proxies,
        limits.client_ip_header,
    )?;
    limiter.check(source).err()
}

/// Answers `error` instead of calling the route, after the refusal pause.
///
/// A flooding source answered at once would send its next request at once:
/// tens of thousands of refusals a second, each parsed and answered on the
/// workers that also take the reports. Holding the answer costs only a
/// timer, and a client that waits for each answer (almost every flood tool,
/// and every well-behaved client) then sends one request per connection and
/// pause. The connections it can hold are bounded by `--max-connections`.
async fn refuse<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    let pause = req
        .app_data::<web::Data<AppState>>()
        .map_or(Duration::ZERO, |s| s.config.limits.refusal_pause);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    req.into_response(error.error_response())
        .map_into_right_body()
}

/// Middleware for the report intake routes: refuses a request with 429 when
/// its source has no token left, before the body is read.
pub async fn limit_sources(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match wait_of(&req, |s| &s.intake.limiter) {
        Some(wait) => {
            if let Some(state) = req.app_data::<web::Data<AppState>>() {
                state.ops.metrics.report(ReportOutcome::RateLimited);
            }
            let retry_after = retry_seconds(wait);
            Ok(refuse(req, ApiError::RateLimited { retry_after }).await)
        }
        None => next.call(req).await.map(|r| r.map_into_left_body()),
    }
}

/// Middleware for every other route that does work: refuses a request with
/// 429 when its source spent its budget, keyed as intake's is (a keyed hash
/// of the address, in memory only).
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match wait_of(&req, |s| &s.reads.limiter) {
        Some(wait) => {
            let retry_after = retry_seconds(wait);
            Ok(refuse(req, ApiError::RequestsLimited { retry_after }).await)
        }
        None => next.call(req).await.map(|r| r.map_into_left_body()),
    }
}
