//! The router: every area's routes, the middleware, the JSON 404. The
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
