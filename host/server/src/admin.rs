//! Health, readiness, metrics, the plugin list and the reload status.

use crate::error::ApiError;
use crate::state::{AppState, ReloadStatus};
use crate::tenancy::{bearer, require_admin};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_config::MetricsAuth;
use serde_json::json;

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/health", tag = "meta",
    responses((status = 200, description = "The host is up", body = crate::query::model::Health))
)]
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 when the journal takes writes, the configuration is
/// loaded and every configured plugin instance runs; 503 with the failing
/// checks otherwise.
#[utoipa::path(
    get, path = "/ready", tag = "meta",
    responses(
        (status = 200, description = "Ready: the journal takes writes (as ingest would: after a failed commit, only once a write of its size succeeds again) and every plugin instance runs", body = crate::query::model::Readiness),
        (status = 503, description = "Not ready; `checks` says which check failed and why", body = crate::query::model::Readiness),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut journal_check = match tokio::time::timeout(
        std::time::Duration::from_secs(3),
        herald_journal::blocking(&state.journal, |j| j.probe_writable()),
    )
    .await
    {
        Ok(Ok(())) => json!({"ok": true}),
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string()}),
        Err(_) => json!({"ok": false, "error": "the journal did not answer within 3 s"}),
    };
    if let Some((tenants, since_ms)) = state.journal.held_back() {
        // Not a failed check: ingest goes on, delivery waits for it.
        journal_check["delivery_held_back"] = json!({"tenants": tenants, "since_ms": since_ms,
            "reason": "a write transaction still running on the database server (any of its databases) holds newer events back from delivery until it ends"});
    }
    let config = state.live.load();
    let running = state.dispatcher.names();
    let missing: Vec<&String> = config
        .plugins
        .keys()
        .filter(|n| !running.contains(n))
        .collect();
    let plugins_check = if missing.is_empty() {
        json!({"ok": true, "running": running.len()})
    } else {
        json!({"ok": false, "error": format!("not running: {missing:?}")})
    };
    let ok = journal_check["ok"] == true && plugins_check["ok"] == true;
    let leases = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        herald_journal::blocking(&state.journal, |j| j.leases()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let me = state.dispatcher.replica().holder.to_string();
    let now = herald_journal::now_ms();
    let holds: Vec<&str> = if leases.is_empty() {
        // One host on its own journal delivers for every instance.
        running.iter().map(String::as_str).collect()
    } else {
        leases
            .iter()
            .filter(|l| l.holder == me && l.expires_ms >= now)
            .map(|l| l.plugin.as_str())
            .collect()
    };
    let leases: Vec<serde_json::Value> = leases
        .iter()
        .map(|l| {
            json!({"plugin": l.plugin, "holder": l.holder, "token": l.token,
                   "expires_ms": l.expires_ms, "expired": l.expires_ms < now})
        })
        .collect();
    let body = json!({
        "status": if ok { "ready" } else { "unready" },
        "checks": {"journal": journal_check, "config": {"ok": true}, "plugins": plugins_check},
        "replica": {"id": me, "holds": holds, "leases": leases},
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: every series. With `server.metrics_auth = "token"` it
/// needs a metrics or admin token.
#[utoipa::path(
    get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "The metrics of the host and every tenant's plugins, Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "`server.metrics_auth = \"token\"` and the request carries no bearer token", body = crate::query::model::ErrorBody),
        (status = 403, description = "The token is neither a metrics nor an admin token", body = crate::query::model::ErrorBody),
    )
)]
pub async fn metrics_text(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let config = state.live.load();
    if config.server.metrics_auth == MetricsAuth::Token {
        let token = bearer(&headers)?;
        if !config.is_metrics_token(token) {
            let message = if config.tenant_for_token(token).is_some() {
                "/metrics shows every tenant and needs a metrics or admin token (server.metrics_tokens); a tenant reads its own series at /v1/metrics"
            } else {
                "/metrics needs a metrics or admin token (server.metrics_tokens)"
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.render(),
    )
        .into_response())
}

/// `GET /v1/metrics` (tenant token): the caller's tenant's series only, in
/// the same Prometheus text format (Herald's series labelled with the
/// tenant and the series of its plugin instances).
#[utoipa::path(
    get, path = "/v1/metrics", tag = "meta",
    responses(
        (status = 200, description = "The caller's tenant's series only, Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "No valid tenant token", body = crate::query::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn tenant_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = crate::tenancy::tenant_of(&state.live.load(), &headers)?;
    let text = state.metrics.render_tenant(&tenant);
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}

/// `GET /v1/plugins` (admin): every running plugin instance with its
/// delivery counts, limits and state: `running`, `paused` (circuit breaker
/// open) or `probing` (half-open), with the breaker's details.
#[utoipa::path(
    get, path = "/v1/plugins", tag = "admin",
    responses(
        (status = 200, description = "`{plugins: [{name, tenant, component, contract, allow_http, allow_sockets, routes, state, breaker, limits, deliveries: {pending, done, dead}}]}`", body = Object),
        (status = 401, description = "Missing token", body = crate::query::model::ErrorBody),
        (status = 403, description = "Not an admin token (`server.admin_tokens`)", body = crate::query::model::ErrorBody),
        (status = 503, description = "The journal cannot be read", body = crate::query::model::ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn list_plugins(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.live.load_full();
    require_admin(&config, &headers)?;
    let journal = state.journal.clone();
    type Row = (
        String,
        Option<herald_dispatch::BreakerStatus>,
        Option<&'static str>,
    );
    let names: Vec<Row> = state
        .dispatcher
        .names()
        .into_iter()
        .map(|n| {
            let status = state.dispatcher.status(&n);
            let contract = state.dispatcher.contract(&n);
            (n, status, contract)
        })
        .collect();
    let rows = herald_journal::blocking(&journal, move |journal| {
        Ok::<_, ApiError>(
            names
                .into_iter()
                .map(|(n, status, contract)| {
                    let counts = journal.delivery_counts(&n).unwrap_or_default();
                    (n, status, contract, counts)
                })
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    let plugins: Vec<_> = rows
        .into_iter()
        .filter_map(|(name, status, contract, (pending, done, dead))| {
            let p = config.plugins.get(&name)?;
            let state = status.as_ref().map_or("running", |s| s.state.as_str());
            Some(json!({
                "name": name,
                "tenant": p.tenant,
                "component": p.component.display().to_string(),
                "contract": contract,
                "allow_http": p.allow_http,
                "allow_sockets": p.allow_sockets,
                "routes": p.routes.len(),
                "state": state,
                "breaker": status,
                "limits": {
                    "memory_mib": p.limits.memory_mib,
                    "cpu_ms": p.limits.cpu_ms,
                    "wall_ms": p.limits.wall_ms,
                    "max_log_bytes": p.limits.max_log_bytes,
                    "max_http_requests": p.limits.max_http_requests,
                },
                "deliveries": {"pending": pending, "done": done, "dead": dead},
            }))
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })))
}

/// `GET /v1/admin/reload` (admin): the last reload's outcome.
#[utoipa::path(
    get, path = "/v1/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "The last configuration reload's outcome", body = ReloadStatus),
        (status = 401, description = "Missing token", body = crate::query::model::ErrorBody),
        (status = 403, description = "Not an admin token (`server.admin_tokens`)", body = crate::query::model::ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn reload_status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ReloadStatus>, ApiError> {
    require_admin(&state.live.load(), &headers)?;
    Ok(Json(
        state
            .reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    ))
}
