//! `GET /api/v1/catalog`: exactly what may be collected.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub async fn get_catalog(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.config.catalog.as_ref())
}
