//! The dashboard: one page and its two assets, embedded in the binary (no
//! CDN, works offline). The page reads the stats API of the same origin.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");

/// Only this origin's scripts, styles and API; no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// `GET /`: the dashboard page.
pub async fn page() -> HttpResponse {
    let mut response = asset("text/html; charset=utf-8", PAGE);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

/// `GET /assets/dashboard.js` and `GET /assets/dashboard.css`.
pub async fn static_asset(name: web::Path<String>) -> HttpResponse {
    match name.as_str() {
        "dashboard.js" => asset("text/javascript; charset=utf-8", SCRIPT),
        "dashboard.css" => asset("text/css; charset=utf-8", STYLE),
        _ => super::not_found().await,
    }
}
