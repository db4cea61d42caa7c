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
use crate::validation::parse_uuid;

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
    let query = web::Query::<ForgetQuery>::from_query(req.query_string()).map_err(|_| {
        ApiError::BadParameter {
            name: "query",
            rule: "query",
            detail: "the only query parameter is product=NAME".into(),
        }
    })?;
    let id = parse_uuid(&path).ok_or_else(|| ApiError::BadParameter {
        name: "instance_id",
        rule: "uuid",
        detail: "must be a UUID like 7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6".into(),
    })?;
    let product = match &query.product {
        Some(p) if state.catalog.product(p).is_some() => p.clone(),
        Some(_) => {
            return Err(ApiError::BadParameter {
                name: "product",
                rule: "unknown_product",
                detail: "product is not in the catalog (see GET /api/v1/catalog)".into(),
            })
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
