//! `GET /openapi.json`: the OpenAPI 3.1 document of the ingest and query
//! API, generated from the handlers' annotations and the answer types.

use super::model::*;
use axum::response::IntoResponse;
use axum::Json;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald API",
        description = "Ingest of Ansible playbook events (ansible-runner job events plus Herald's envelope, docs/wire-format.md) and queries over the journalled runs, events, set_stats artifacts and plugin deliveries. Every call is scoped to the tenant of its bearer token.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::ingest::post_events,
        super::list_runs,
        super::get_run,
        super::run_events,
        super::run_artifacts,
        super::list_deliveries,
        crate::recovery::list,
        crate::recovery::retry_one,
        crate::recovery::retry_all,
        crate::recovery::replay,
        serve,
    ),
    components(schemas(EventKindName, TimeParam, EventDoc, EventBatch)),
    modifiers(&BearerAuth),
    tags(
        (name = "ingest", description = "Sending events"),
        (name = "query", description = "Runs, events, artifacts and deliveries"),
        (name = "recovery", description = "Dead letters and replay"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("A tenant token (`herald token new`)".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The document, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        serde_json::to_value(&doc).unwrap_or_default()
    })
}

/// This OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn serve() -> impl IntoResponse {
    Json(document().clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn covers_ingest_and_query() {
        let doc = super::document();
        for path in [
            "/v1/events",
            "/v1/runs",
            "/v1/runs/{id}",
            "/v1/runs/{id}/events",
            "/v1/runs/{id}/artifacts",
            "/v1/deliveries",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
        assert!(doc["components"]["schemas"].get("EventKindName").is_some());
    }
}
