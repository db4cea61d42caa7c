//! The dashboard: one page and its assets, embedded in the binary (no CDN,
//! works offline). The page reads the stats API of the same origin.
//!
//! The live dashboard is for maintainers: without a session, `GET /` shows a
//! sign-in form. `POST /signin` (the form) and `GET /signin?token=...` (the
//! link the collector prints when it generates a token) check the token and
//! set an HttpOnly session cookie, which holds no token (see
//! `crate::access`) and which the stats API accepts; `POST /signout` removes
//! it.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use chrono::Utc;

use super::auth;
use crate::access::{SESSION_COOKIE, SESSION_LIFETIME};
use crate::routes::error::ApiError;
use crate::state::AppState;
use crate::store;

const PAGE: &str = include_str!("../../assets/dashboard.html");
const SIGN_IN: &str = include_str!("../../assets/signin.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");
const PUBLIC_SCRIPT: &str = include_str!("../../assets/public.js");

/// Only this origin's scripts, styles and API; no inline code, no framing.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

fn sign_in_page(status: actix_web::http::StatusCode, error: bool) -> HttpResponse {
    let message = if error {
        r#"<p class="error" role="alert">That is not the stats token.</p>"#
    } else {
        ""
    };
    html(status, SIGN_IN.replace("<!--error-->", message))
}

/// The line that says the figures are made up, when the database holds
/// demo data written by `anonstats simulate --database`.
pub(super) async fn synthetic_notice(state: &web::Data<AppState>) -> String {
    let state = state.clone();
    let since = web::block(move || {
        let mut conn = state.pool.get().ok()?;
        store::get_setting(&mut conn, store::SYNTHETIC_SETTING)
            .ok()
            .flatten()
    })
    .await
    .ok()
    .flatten();
    match since {
        // The value is a day this collector's own simulate wrote; it is
        // escaped anyway, as everything put into the page.
        Some(day) => format!(
            r#"<p class="synthetic" id="synthetic" role="note">Demo data: this database holds synthetic reports written by <code>anonstats simulate</code> (since {}). None of these figures describes real installs.</p>"#,
            escape(&day)
        ),
        None => String::new(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /`: the dashboard, or the sign-in form without a session.
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if auth::allowed(&req, &state) {
        let sign_out = r#"<form method="post" action="/signout" class="signout"><button type="submit">Sign out</button></form>"#;
        let notice = synthetic_notice(&state).await;
        html(
            actix_web::http::StatusCode::OK,
            PAGE.replace("<!--signout-->", sign_out)
                .replace("<!--synthetic-->", &notice),
        )
    } else {
        sign_in_page(actix_web::http::StatusCode::OK, false)
    }
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /signin`: a correct token gets a session cookie. The body is read
/// under the request timeout, as every body is.
pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body =
        super::reports::read_body(&req, payload, state.config.limits.request_timeout).await?;
    let form: SignIn = serde_urlencoded::from_bytes(&body).map_err(|_| ApiError::BadBody)?;
    Ok(start_session(&req, &state, &form.token))
}

/// `GET /signin?token=...`: the printed sign-in link. The redirect drops
/// the token from the address bar.
pub async fn sign_in_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SignIn>,
) -> HttpResponse {
    start_session(&req, &state, &query.token)
}

fn start_session(req: &HttpRequest, state: &AppState, token: &str) -> HttpResponse {
    let hash = state.stats.access.current(|| state.pool.try_get());
    if !hash.matches(token) {
        return sign_in_page(actix_web::http::StatusCode::UNAUTHORIZED, true);
    }
    let cookie = Cookie::build(SESSION_COOKIE, hash.session(Utc::now()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_LIFETIME.as_secs() as i64,
        ))
        .finish();
    let mut response = see_other("/");
    let _ = response.add_cookie(&cookie);
    response
}

/// `POST /signout`: forgets the token cookie.
pub async fn sign_out() -> HttpResponse {
    let mut response = see_other("/");
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    let _ = response.add_cookie(&cookie);
    response
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `GET /assets/dashboard.js` and `GET /assets/dashboard.css`.
pub async fn static_asset(name: web::Path<String>) -> HttpResponse {
    let (content_type, body) = match name.as_str() {
        "dashboard.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "dashboard.css" => ("text/css; charset=utf-8", STYLE),
        "public.js" => ("text/javascript; charset=utf-8", PUBLIC_SCRIPT),
        _ => return super::not_found().await,
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}
