//! Dead letters and replay: `GET /v1/dead-letters`, retrying one dead letter
//! or all of an instance's, and re-delivering a recorded run to one instance.
//! Every call is scoped to the caller's tenant.

use crate::error::ApiError;
use crate::params::{once, parsed};
use crate::state::AppState;
use crate::tenancy::tenant_of;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::{Query, QueryRejection};
use herald_journal::DeadLetter;
use serde::Deserialize;
use serde_json::{json, Value};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/dead-letters", get(list))
        .route("/v1/dead-letters/retry", post(retry_all))
        .route("/v1/dead-letters/{id}/retry", post(retry_one))
        .route("/v1/runs/{id}/replay", post(replay))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this plugin instance's dead letters.
    #[serde(default, deserialize_with = "once")]
    plugin: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, deserialize_with = "once")]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "once")]
    cursor: Option<String>,
}

/// A dead letter's id: `<event id>:<plugin instance>`.
fn id_of(d: &DeadLetter) -> String {
    format!("{}:{}", d.event_id, d.plugin)
}

fn parse_id(id: &str) -> Result<(i64, String), ApiError> {
    id.split_once(':')
        // Digits only: `+5` and `-1` are not ids (the OpenAPI pattern says so too).
        .and_then(|(e, p)| Some((crate::params::digits(e)? as i64, p.to_string())))
        .filter(|(_, p)| !p.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "a dead letter id is `<event id>:<plugin instance>`",
            )
            .with_field("id")
        })
}

/// The instance must exist and belong to the caller's tenant; otherwise it
/// does not exist for the caller.
fn own_plugin(state: &AppState, tenant: &str, plugin: &str) -> Result<(), ApiError> {
    let config = state.live.load();
    match config.plugins.get(plugin) {
        Some(p) if p.tenant == tenant => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no plugin instance {plugin:?} for this tenant"),
        )),
    }
}

async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn herald_journal::Store) -> Result<T, herald_journal::JournalError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    herald_journal::blocking(&state.journal, move |j| f(&**j))
        .await
        .map_err(ApiError::from)
}

/// Dead letters of the caller's tenant, newest first.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "recovery",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of dead letters: `{items: [{id, plugin, event_id, uuid, run_id, kind, attempts, reason, dead_at_ms}], next_cursor}`", body = Object),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = crate::query::model::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = crate::query::model::ErrorBody),
        (status = 503, description = "The journal cannot be read", body = crate::query::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_of(&state.live.load(), &headers)?;
    let q = parsed(q)?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => crate::params::digits(l)
            .map(|n| n as usize)
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    "limit must be an integer from 1 to 1000",
                )
                .with_field("limit")
            })?,
    };
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(crate::params::digits(c).map(|n| n as i64).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "cursor must be a next_cursor value from a previous page",
            )
            .with_field("cursor")
        })?),
    };
    if q.plugin.as_deref() == Some("") {
        return Err(
            ApiError::bad_request("invalid_parameter", "plugin must not be empty")
                .with_field("plugin"),
        );
    }
    let plugin = q.plugin.clone();
    let rows = blocking(&state, move |j| {
        j.dead_letters(&tenant, plugin.as_deref(), limit + 1, before)
    })
    .await?;
    let more = rows.len() > limit;
    let items: Vec<Value> = rows
        .iter()
        .take(limit)
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["id"] = json!(id_of(d));
            v
        })
        .collect();
    let next = if more {
        rows.get(limit - 1).map(|d| d.event_id.to_string())
    } else {
        None
    };
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

/// Queues one dead letter again.
#[utoipa::path(
    post, path = "/v1/dead-letters/{id}/retry", tag = "recovery",
    params(("id" = String, Path, description = "`<event id>:<plugin instance>`, from the list")),
    responses(
        (status = 200, description = "`{requeued: 1}`", body = Object),
        (status = 400, description = "The id is malformed", body = crate::query::model::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = crate::query::model::ErrorBody),
        (status = 404, description = "No such dead letter for this tenant", body = crate::query::model::ErrorBody),
        (status = 503, description = "The journal cannot be written", body = crate::query::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_of(&state.live.load(), &headers)?;
    let id = crate::params::path_id(id)?;
    let (event_id, plugin) = parse_id(&id)?;
    own_plugin(&state, &tenant, &plugin)?;
    let p = plugin.clone();
    let n = blocking(&state, move |j| j.requeue_dead(&tenant, &p, Some(event_id))).await?;
    if n == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter {id:?}"),
        ));
    }
    tracing::info!(plugin = %plugin, event_id, "dead letter queued again");
    Ok(Json(json!({"requeued": n})))
}

/// Names a plugin instance of the caller's tenant.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginBody {
    plugin: String,
}

fn plugin_body(
    body: Result<Json<PluginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<String, ApiError> {
    body.map(|Json(b)| b.plugin).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected a JSON body {{\"plugin\": \"<instance>\"}}: {e}"),
        )
        .with_field("plugin")
    })
}

/// Queues every dead letter of one plugin instance again.
#[utoipa::path(
    post, path = "/v1/dead-letters/retry", tag = "recovery",
    request_body = PluginBody,
    responses(
        (status = 200, description = "`{requeued: N}`", body = Object),
        (status = 400, description = "The body is not `{\"plugin\": \"<instance>\"}`", body = crate::query::model::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = crate::query::model::ErrorBody),
        (status = 404, description = "No such plugin instance for this tenant", body = crate::query::model::ErrorBody),
        (status = 503, description = "The journal cannot be written", body = crate::query::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PluginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_of(&state.live.load(), &headers)?;
    let plugin = plugin_body(body)?;
    own_plugin(&state, &tenant, &plugin)?;
    let p = plugin.clone();
    let n = blocking(&state, move |j| j.requeue_dead(&tenant, &p, None)).await?;
    tracing::info!(plugin = %plugin, count = n, "dead letters queued again");
    Ok(Json(json!({"requeued": n})))
}

/// Queues every recorded event of a run again for one plugin instance.
#[utoipa::path(
    post, path = "/v1/runs/{id}/replay", tag = "recovery",
    params(("id" = String, Path, description = "The run id")),
    request_body = PluginBody,
    responses(
        (status = 200, description = "`{requeued: N}`", body = Object),
        (status = 400, description = "The body is not `{\"plugin\": \"<instance>\"}`", body = crate::query::model::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = crate::query::model::ErrorBody),
        (status = 404, description = "No such plugin instance or run for this tenant", body = crate::query::model::ErrorBody),
        (status = 503, description = "The journal cannot be written", body = crate::query::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    run: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<PluginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_of(&state.live.load(), &headers)?;
    let run = crate::query::resolve_run(&state, &tenant, crate::params::path_id(run)?).await?;
    let plugin = plugin_body(body)?;
    own_plugin(&state, &tenant, &plugin)?;
    let (p, r) = (plugin.clone(), run.clone());
    let n = blocking(&state, move |j| j.replay_run(&tenant, &r, &p)).await?;
    if n == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no run {run:?}"),
        ));
    }
    tracing::info!(plugin = %plugin, run_id = %run, events = n, "run queued for replay");
    Ok(Json(json!({"requeued": n})))
}
