//! Catalog, health and readiness endpoints.

use crate::on_both_backends;
use crate::support::*;

async fn catalog_is_public_and_complete(db: TestDb) {
    let app = spawn_app(db).await;
    let reply = app.get("/api/v1/catalog").await;
    assert_eq!(reply.status, 200);
    let catalog = reply.json();
    let passbolt = &catalog["products"]["passbolt"];
    assert!(passbolt["attributes"]["edition"]["values"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("ce")));
    assert_eq!(passbolt["counters"]["users"]["max"], 1_000_000);
    assert!(passbolt["features"]["mfa"].is_object());
}
on_both_backends!(catalog_is_public_and_complete);

async fn health_and_readiness(db: TestDb) {
    let app = spawn_app(db).await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["database"], true);
}
on_both_backends!(health_and_readiness);

async fn unknown_route_is_a_problem_document(db: TestDb) {
    let app = spawn_app(db).await;
    let reply = app.get("/nope").await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    let reply = app.get("/api/v1/reports").await;
    assert_eq!(reply.status, 405);
}
on_both_backends!(unknown_route_is_a_problem_document);
