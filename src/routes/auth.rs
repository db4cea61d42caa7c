//! The maintainer check shared by the live stats API, the dashboard and
//! `/metrics`: a bearer token or a session cookie (see [`crate::access`]).

use actix_web::http::header;
use actix_web::HttpRequest;
use chrono::Utc;

use crate::access::{Credentials, SESSION_COOKIE};
use crate::routes::error::ApiError;
use crate::state::AppState;

/// What the request presents, without judging it.
fn credentials(req: &HttpRequest) -> Credentials {
    Credentials {
        bearer: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned()),
        session: req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()),
    }
}

/// Whether the request comes from a maintainer. The stored token hash is
/// read again only every few seconds, and then only on an idle connection
/// (`try_get`), so a busy or unreachable database never blocks the check.
pub fn allowed(req: &HttpRequest, state: &AppState) -> bool {
    state
        .stats
        .access
        .allows(&credentials(req), Utc::now(), || state.pool.try_get())
}

/// [`allowed`], as the 401 answer when not.
pub fn require(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if allowed(req, state) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
