//! The router: every area's routes, the middleware, the JSON 404 and 405. The
//! OpenAPI document is assembled here too (`crate::openapi`), above the
//! handlers it describes.

use crate::admin;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(crate::ingest::post_events))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/health", get(admin::health))
        .route("/ready", get(admin::ready))
        .route("/metrics", get(admin::metrics_text))
        .route("/v1/metrics", get(admin::tenant_metrics))
        .route("/v1/plugins", get(admin::list_plugins))
        .route("/v1/admin/reload", get(admin::reload_status))
        .merge(crate::recovery::router())
        .merge(crate::query::router())
        // A known path with another method: a JSON 405 (axum keeps the
        // `Allow` header), not an empty body.
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn(crate::observe::observe))
        // An unknown path gets the JSON error body too, not an empty 404.
        .fallback(not_found)
        // The ingest handler enforces the configured limit itself, with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state.clone())
        // The web UI's pages (`/`, `/runs`, ...): HTML, beside the JSON API,
        // observed like it (request ids, logs, HTTP metrics by route).
        .merge(
            crate::ui::router(state)
                .route_layer(axum::middleware::from_fn(crate::observe::observe)),
        )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}
