//! `DELETE /api/v1/instances/{instance_id}`: erasure without identity.
//!
//! Whoever holds an install's id can have its stored state erased; the
//! collector only hashes what it is given, exactly as on ingest, so it
//! learns nothing it did not have. The answer is the same whether or not
//! anything was stored, so the route cannot be used to test whether an id
//! ever reported.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::ingest::IngestError;
use crate::startup::AppState;
use crate::store;
use crate::validation::{parse_uuid, Violation};

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetQuery {
    /// The product the install reported as (default: the catalog's default
    /// product); part of the pseudonym.
    product: Option<String>,
}

pub async fn delete_instance(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<ForgetQuery>::from_query(req.query_string())
        .map_err(|_| bad("query", "query", "the only query parameter is product=NAME"))?;
    let id = parse_uuid(&path).ok_or_else(|| {
        bad(
            "instance_id",
            "uuid",
            "must be a UUID like 7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6",
        )
    })?;
    let product = match &query.product {
        Some(p) if state.catalog.product(p).is_some() => p.clone(),
        Some(_) => {
            return Err(bad(
                "product",
                "unknown_product",
                "product is not in the catalog (see GET /api/v1/catalog)",
            ))
        }
        None => state
            .catalog
            .default_product()
            .unwrap_or_default()
            .to_owned(),
    };
    let hash = state.pseudonymizer.instance_hash(&product, &id);
    let pool = state.pool.clone();
    web::block(move || -> Result<bool, IngestError> {
        let mut conn = pool.get().map_err(|_| IngestError::Unavailable)?;
        let mut attempt = 1;
        loop {
            match store::forget_instance(&mut conn, &hash) {
                Ok(found) => return Ok(found),
                Err(e) if store::is_retryable(&e) && attempt < 3 => attempt += 1,
                Err(e) => {
                    tracing::error!(error = %e, "instance not forgotten");
                    return Err(IngestError::Unavailable);
                }
            }
        }
    })
    .await
    .map_err(|_| ApiError::Ingest(IngestError::Unavailable))??;
    // Whether anything was found is deliberately neither answered nor logged.
    Ok(HttpResponse::Accepted().json(json!({"status": "forgotten"})))
}

fn bad(field: &str, rule: &'static str, detail: &str) -> ApiError {
    ApiError::BadParameter(Violation {
        field: field.to_owned(),
        // A parameter, not a place in a request body.
        pointer: String::new(),
        rule,
        detail: detail.to_owned(),
    })
}
