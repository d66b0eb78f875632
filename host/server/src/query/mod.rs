//! The query API: runs, their events and `set_stats` artifacts, deliveries,
//! and the OpenAPI document of the whole HTTP API (`GET /openapi.json`).
//!
//! Every endpoint is scoped to the tenant of the bearer token: another
//! tenant's run answers 404, exactly like a run that does not exist. Lists
//! are paged with `limit` and an opaque `cursor` (`next_cursor` of the
//! previous page). Query parameters are validated: an unknown, repeated or
//! malformed one is a 400 `invalid_parameter` naming it in `field`.
//!
//! The handlers read the journal through its [`herald_journal::RunQueries`]
//! trait (the backend's pooled read connections), in `spawn_blocking`.

// The API's JSON shapes live in herald-client, shared with the CLI.
pub use herald_client::model;
pub mod store;

use crate::error::ApiError;
use crate::params::{digits, invalid, path_id};
use crate::params::{once, parsed};
use crate::state::AppState;
use crate::tenancy::tenant_of;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::extract::{Query, QueryRejection};
use herald_event::{EventKind, Status};
use herald_journal::{DeliveryFilter, EventFilter, RunFilter, RunQueries};
use model::*;
use serde::Deserialize;

/// A run without `playbook_on_stats` and without any event for this long is
/// `interrupted` (a `interrupted_after_s` query parameter overrides it per
/// request). An hour: a quiet long task (a package upgrade, a reboot wait)
/// sends no event between its start and its result.
pub const DEFAULT_INTERRUPTED_AFTER_S: i64 = 3600;
/// Page size when `limit` is not given, and its maximum.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
/// At most this many `label` filters.
pub const MAX_LABELS: usize = 8;

/// The query routes, merged into [`crate::router::router`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/events", get(run_events))
        .route("/v1/runs/{id}/artifacts", get(run_artifacts))
        .route("/v1/deliveries", get(list_deliveries))
        .route("/v1/search", get(search))
        .route(
            "/v1/deliveries/{plugin}/{event_uuid}/attempts",
            get(delivery_attempts),
        )
}

fn not_found(run: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no run {run:?}"),
    )
}

/// `GET /v1/runs`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[serde(default, deserialize_with = "once")]
    playbook: Option<String>,
    #[serde(default, deserialize_with = "once")]
    status: Option<String>,
    #[serde(default, deserialize_with = "once")]
    controller: Option<String>,
    #[serde(default, deserialize_with = "once")]
    since: Option<String>,
    #[serde(default, deserialize_with = "once")]
    until: Option<String>,
    #[serde(default)]
    label: Vec<String>,
    #[serde(default, deserialize_with = "once")]
    interrupted_after_s: Option<String>,
    #[serde(default, deserialize_with = "once")]
    limit: Option<String>,
    #[serde(default, deserialize_with = "once")]
    cursor: Option<String>,
}

/// `GET /v1/runs/{id}`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[serde(default, deserialize_with = "once")]
    interrupted_after_s: Option<String>,
}

/// `GET /v1/runs/{id}/events`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default, deserialize_with = "once")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "once")]
    host: Option<String>,
    #[serde(default, deserialize_with = "once")]
    status: Option<String>,
    #[serde(default, deserialize_with = "once")]
    limit: Option<String>,
    #[serde(default, deserialize_with = "once")]
    cursor: Option<String>,
}

/// The query of an endpoint that takes no parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// `GET /v1/deliveries`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    #[serde(default, deserialize_with = "once")]
    run: Option<String>,
    #[serde(default, deserialize_with = "once")]
    plugin: Option<String>,
    #[serde(default, deserialize_with = "once")]
    outcome: Option<String>,
    #[serde(default, deserialize_with = "once")]
    limit: Option<String>,
    #[serde(default, deserialize_with = "once")]
    cursor: Option<String>,
}

/// `limit`: the page size.
fn limit(v: Option<&str>) -> Result<usize, ApiError> {
    match v {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => digits(v)
            .map(|n| n as usize)
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}, not {v:?}"),
                )
            }),
    }
}

/// `interrupted_after_s` as the epoch ms before which a silent run is interrupted.
fn stale_before_ms(v: Option<&str>) -> Result<i64, ApiError> {
    let secs = match v {
        None => DEFAULT_INTERRUPTED_AFTER_S,
        Some(v) => digits(v)
            .map(|n| n as i64)
            .filter(|n| (0..=315_360_000).contains(n))
            .ok_or_else(|| {
                invalid(
                    "interrupted_after_s",
                    format!("interrupted_after_s must be a number of seconds from 0 to 315360000, not {v:?}"),
                )
            })?,
    };
    Ok(herald_journal::now_ms() - secs * 1000)
}

/// `since` / `until`.
fn time(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v else {
        return Ok(None);
    };
    parse_time_param(v).map(Some).ok_or_else(|| {
        invalid(
            name,
            format!("{name} must be an RFC 3339 time (2026-01-31T12:00:00Z), epoch milliseconds or a duration before now (90s, 30m, 1h, 2d, 1w), not {v:?}"),
        )
    })
}

/// `cursor`: the key of a `next_cursor` this endpoint (`kind`) returned.
fn cursor<K: serde::de::DeserializeOwned>(
    kind: &str,
    v: Option<&str>,
) -> Result<Option<K>, ApiError> {
    let Some(v) = v else {
        return Ok(None);
    };
    decode_cursor(kind, v)
        .and_then(|key| serde_json::from_value(key).ok())
        .map(Some)
        .ok_or_else(|| {
            invalid(
                "cursor",
                "cursor is not a next_cursor this endpoint returned",
            )
        })
}

/// RFC 3339 or epoch milliseconds.
fn parse_time_param(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Some(ms) = relative_ms(v) {
        return Some(herald_journal::now_ms() - ms);
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<i64>()
            .ok()
            .filter(|ms| *ms <= 253_402_300_799_999);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&v.to_ascii_uppercase()))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `90s`, `30m`, `1h`, `2d`, `1w` before now, in milliseconds.
fn relative_ms(v: &str) -> Option<i64> {
    let split = v.find(|c: char| !c.is_ascii_digit()).filter(|i| *i > 0)?;
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().ok().filter(|n| *n <= 10_000_000)?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    Some(n * unit_ms)
}

/// Cursors are opaque to clients: hex of a small JSON array tagged with the
/// endpoint they belong to.
fn encode_cursor(kind: &str, key: serde_json::Value) -> String {
    hex::encode(serde_json::json!([kind, key]).to_string())
}

fn decode_cursor(kind: &str, v: &str) -> Option<serde_json::Value> {
    let bytes = hex::decode(v).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let arr = value.as_array()?;
    if arr.len() != 2 || arr[0].as_str()? != kind {
        return None;
    }
    Some(arr[1].clone())
}

fn nonempty<'a>(field: &str, v: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match v {
        Some("") => Err(invalid(field, format!("{field} must not be empty"))),
        other => Ok(other),
    }
}

/// Runs `f` on the journal's queries, off the async threads.
async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn RunQueries) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    herald_journal::blocking(&state.journal, move |j| f(&**j)).await
}

/// A run reference as the API takes it wherever a run id is taken: the
/// id, a unique prefix of it, or `latest` (the tenant's newest run). An
/// unknown reference is given back as it is (the caller answers its 404);
/// an ambiguous prefix is a 400 naming the runs it matches.
pub async fn resolve_run(
    state: &AppState,
    tenant: &str,
    reference: String,
) -> Result<String, ApiError> {
    let (t, r) = (tenant.to_string(), reference.clone());
    let found = herald_journal::blocking(&state.journal, move |j| {
        j.resolve_run(&t, &r).map_err(store::db_error)
    })
    .await?;
    match found {
        herald_journal::RunRef::Found(id) => Ok(id),
        herald_journal::RunRef::NotFound => Ok(reference),
        herald_journal::RunRef::Ambiguous(ids) => Err(invalid(
            "id",
            format!(
                "{reference:?} is the start of several run ids ({}); give more of the id",
                ids.join(", ")
            ),
        )),
    }
}

fn tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    tenant_of(&state.live.load(), headers)
}

/// List runs, newest first.
#[utoipa::path(
    get, path = "/v1/runs", tag = "query",
    params(
        ("playbook" = Option<String>, Query, description = "Glob over the playbook as sent (often a path) or its file name: `*` any characters, `?` one, `[...]` a set; case-sensitive", example = "deploy*.yml"),
        ("status" = Option<RunStatus>, Query, description = "Only runs with this status"),
        ("controller" = Option<String>, Query, description = "Only runs from this controller host name"),
        ("since" = Option<TimeParam>, Query, description = "Only runs started at or after this time (RFC 3339 or epoch ms)"),
        ("until" = Option<TimeParam>, Query, description = "Only runs started before this time (RFC 3339 or epoch ms)"),
        ("label" = Option<Vec<String>>, Query, description = "`key=value`: only runs with this label (`key` alone: with this label key); repeat for several (all must match), at most 8", explode = true, style = Form),
        ("interrupted_after_s" = Option<i64>, Query, minimum = 0, maximum = 315360000, description = "A run without stats and without events for this many seconds is `interrupted` (default 3600)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of runs, newest first", body = RunPage),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunPage>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let p = parsed(q)?;
    let status = match nonempty("status", p.status.as_deref())? {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            invalid(
                "status",
                format!("status must be one of running, ok, failed, unreachable, interrupted, not {s:?}"),
            )
        })?),
    };
    let mut labels = Vec::new();
    for l in &p.label {
        let (k, v) = match l.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (l.as_str(), None),
        };
        if k.is_empty() {
            return Err(invalid(
                "label",
                format!("label must be key=value or key, not {l:?}"),
            ));
        }
        labels.push((k.to_string(), v));
    }
    if labels.len() > MAX_LABELS {
        return Err(invalid(
            "label",
            format!("at most {MAX_LABELS} label filters"),
        ));
    }
    let filter = RunFilter {
        playbook: nonempty("playbook", p.playbook.as_deref())?.map(str::to_string),
        state: status.map(store::run_state),
        controller: nonempty("controller", p.controller.as_deref())?.map(str::to_string),
        since_ms: time("since", p.since.as_deref())?,
        until_ms: time("until", p.until.as_deref())?,
        labels,
        stale_before_ms: stale_before_ms(p.interrupted_after_s.as_deref())?,
        after: cursor::<(i64, String)>("runs", p.cursor.as_deref())?,
        limit: limit(p.limit.as_deref())?,
    };
    let (items, next) = read(&state, move |j| {
        store::list_runs(j, &tenant, &filter).map_err(store::db_error)
    })
    .await?;
    Ok(Json(RunPage {
        items,
        next_cursor: next.map(|k| encode_cursor("runs", serde_json::json!(k))),
    }))
}

/// A run: context, status, timing, per-host stats and failed tasks.
#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "query",
    params(
        ("id" = String, Path, description = "The run id"),
        ("interrupted_after_s" = Option<i64>, Query, minimum = 0, maximum = 315360000, description = "A run without stats and without events for this many seconds is `interrupted` (default 3600)"),
    ),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 404, description = "The tenant has no such run", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> Result<Json<RunDetail>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let id = resolve_run(&state, &tenant, path_id(id)?).await?;
    let p = parsed(q)?;
    let stale = stale_before_ms(p.interrupted_after_s.as_deref())?;
    let run = id.clone();
    read(&state, move |j| {
        store::run_detail(j, &tenant, &run, stale).map_err(store::db_error)
    })
    .await?
    .map(Json)
    .ok_or_else(|| not_found(&id))
}

/// A run's events in order (`counter`), as they were sent.
#[utoipa::path(
    get, path = "/v1/runs/{id}/events", tag = "query",
    params(
        ("id" = String, Path, description = "The run id"),
        ("kind" = Option<String>, Query, description = "Event names, comma-separated (`runner_on_failed,runner_on_unreachable`)", example = "runner_on_failed"),
        ("host" = Option<String>, Query, description = "Only events of this host (`event_data.host`)"),
        ("status" = Option<String>, Query, description = "Only host results with this status: ok, changed, failed, unreachable, skipped", example = "failed"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the run's events", body = EventPage),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 404, description = "The tenant has no such run", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let id = resolve_run(&state, &tenant, path_id(id)?).await?;
    let p = parsed(q)?;
    let mut kinds = Vec::new();
    if let Some(list) = nonempty("kind", p.kind.as_deref())? {
        for name in list.split(',').map(|n| n.trim_matches(' ')) {
            kinds.push(EventKind::parse(name).ok_or_else(|| {
                invalid(
                    "kind",
                    format!("unknown event name {name:?} (see docs/wire-format.md)"),
                )
            })?);
        }
    }
    let status = match nonempty("status", p.status.as_deref())? {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<Status>(serde_json::json!(s)).map_err(|_| {
                invalid(
                    "status",
                    format!("status must be one of ok, changed, failed, unreachable, skipped, not {s:?}"),
                )
            })?,
        ),
    };
    let filter = EventFilter {
        kinds,
        host: nonempty("host", p.host.as_deref())?.map(str::to_string),
        status,
        after: cursor::<(i64, i64)>("events", p.cursor.as_deref())?,
        limit: limit(p.limit.as_deref())?,
    };
    let run = id.clone();
    let (items, next) = read(&state, move |j| {
        store::run_events(j, &tenant, &run, &filter).map_err(store::db_error)
    })
    .await?
    .ok_or_else(|| not_found(&id))?;
    Ok(Json(EventPage {
        items,
        next_cursor: next.map(|k| encode_cursor("events", serde_json::json!(k))),
    }))
}

/// `set_stats` data of a run: run-wide (`_run`, the AWX artifacts shape) and per host.
#[utoipa::path(
    get, path = "/v1/runs/{id}/artifacts", tag = "query",
    params(("id" = String, Path, description = "The run id")),
    responses(
        (status = 200, description = "The run's set_stats data (empty objects until the run ends)", body = Artifacts),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 404, description = "The tenant has no such run", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_artifacts(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<NoQuery>, QueryRejection>,
) -> Result<Json<Artifacts>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let id = resolve_run(&state, &tenant, path_id(id)?).await?;
    parsed(q)?;
    let run = id.clone();
    read(&state, move |j| {
        store::artifacts(j, &tenant, &run).map_err(store::db_error)
    })
    .await?
    .map(Json)
    .ok_or_else(|| not_found(&id))
}

/// Deliveries of the tenant's events to its plugin instances, in journal order.
#[utoipa::path(
    get, path = "/v1/deliveries", tag = "query",
    params(
        ("run" = Option<String>, Query, description = "Only deliveries of this run's events"),
        ("plugin" = Option<String>, Query, description = "Only deliveries to this plugin instance"),
        ("outcome" = Option<Outcome>, Query, description = "Only deliveries in this state"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let p = parsed(q)?;
    let outcome = match nonempty("outcome", p.outcome.as_deref())? {
        None => None,
        Some(s) => Some(Outcome::parse(s).ok_or_else(|| {
            invalid(
                "outcome",
                format!("outcome must be one of pending, done, dead, not {s:?}"),
            )
        })?),
    };
    let run = match nonempty("run", p.run.as_deref())? {
        Some(r) => Some(resolve_run(&state, &tenant, r.to_string()).await?),
        None => None,
    };
    let filter = DeliveryFilter {
        run,
        plugin: nonempty("plugin", p.plugin.as_deref())?.map(str::to_string),
        state: outcome.map(store::delivery_state),
        after: cursor::<(i64, String)>("deliveries", p.cursor.as_deref())?,
        limit: limit(p.limit.as_deref())?,
    };
    let (items, next) = read(&state, move |j| {
        store::deliveries(j, &tenant, &filter).map_err(store::db_error)
    })
    .await?;
    Ok(Json(DeliveryPage {
        items,
        next_cursor: next.map(|k| encode_cursor("deliveries", serde_json::json!(k))),
    }))
}

/// `GET /v1/search`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[serde(default, deserialize_with = "once")]
    q: Option<String>,
    #[serde(default, deserialize_with = "once")]
    limit: Option<String>,
}

/// Hosts and tasks by name across runs.
#[utoipa::path(
    get, path = "/v1/search", tag = "query",
    params(
        ("q" = String, Query, min_length = 1, description = "Part of a host or task name (case-insensitive)", example = "web"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "At most this many hosts and this many tasks (default 50)"),
    ),
    responses(
        (status = 200, description = "Matching hosts (per run) and tasks, newest first, among the tenant's newest 200,000 events", body = SearchResult),
        (status = 400, description = "A query parameter is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchResult>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let p = parsed(q)?;
    let pattern = nonempty("q", p.q.as_deref())?
        .map(str::to_string)
        .ok_or_else(|| invalid("q", "q is required: part of a host or task name"))?;
    let limit = limit(p.limit.as_deref())?;
    let (hosts, tasks) = herald_journal::blocking(&state.journal, move |j| {
        Ok::<_, ApiError>((
            j.host_runs(&tenant, &pattern, false, limit)
                .map_err(store::db_error)?,
            j.search_tasks(&tenant, &pattern, limit)
                .map_err(store::db_error)?,
        ))
    })
    .await?;
    Ok(Json(SearchResult {
        hosts: hosts
            .into_iter()
            .map(|h| HostMatch {
                host: h.host,
                run_id: h.run_id,
                playbook: h.playbook,
                ok: h.ok,
                changed: h.changed,
                failed: h.failed,
                unreachable: h.unreachable,
                skipped: h.skipped,
                last_at: store::rfc3339(h.last_ms),
            })
            .collect(),
        tasks: tasks
            .into_iter()
            .map(|t| TaskMatch {
                task: t.task,
                play: t.play,
                run_id: t.run_id,
                playbook: t.playbook,
                event_uuid: t.uuid,
                started_at: store::rfc3339(t.created_ms),
            })
            .collect(),
    }))
}

/// What each attempt of one delivery sent and what the sink answered.
#[utoipa::path(
    get, path = "/v1/deliveries/{plugin}/{event_uuid}/attempts", tag = "query",
    params(
        ("plugin" = String, Path, description = "The plugin instance"),
        ("event_uuid" = String, Path, description = "The event's uuid"),
    ),
    responses(
        (status = 200, description = "The delivery's recorded attempts, oldest first", body = DeliveryAttempts),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 404, description = "The tenant has no such event", body = ErrorBody),
        (status = 503, description = "The journal cannot be read", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delivery_attempts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((plugin, uuid)): Path<(String, String)>,
    q: Result<Query<NoQuery>, QueryRejection>,
) -> Result<Json<DeliveryAttempts>, ApiError> {
    let tenant = tenant(&state, &headers)?;
    parsed(q)?;
    let (p, u) = (plugin.clone(), uuid.clone());
    let found = herald_journal::blocking(&state.journal, move |j| {
        j.delivery_attempts(&tenant, &p, &u)
            .map_err(store::db_error)
    })
    .await?;
    let (ev, attempts) = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no event {uuid:?}"),
        )
    })?;
    Ok(Json(DeliveryAttempts {
        plugin,
        run_id: ev.run_id,
        event_uuid: ev.uuid,
        event: ev.kind,
        attempts: attempts
            .into_iter()
            .map(|a| Attempt {
                attempt: a.attempt,
                at: store::rfc3339(a.at_ms),
                duration_ms: a.duration_ms,
                outcome: a.outcome,
                message: a.message,
                requests: a
                    .requests
                    .into_iter()
                    .map(|r| SentRequest {
                        method: r.method,
                        url: r.url,
                        status: r.status,
                        latency_ms: r.latency_ms,
                        body: r.body,
                        error: r.error,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_epoch_ms() {
        assert_eq!(parse_time_param("0"), Some(0));
        assert_eq!(parse_time_param("1795255200500"), Some(1_795_255_200_500));
        assert_eq!(
            parse_time_param("2026-11-21T10:00:00.5Z"),
            Some(1_795_255_200_500)
        );
        assert_eq!(
            parse_time_param("2026-11-21t12:00:00.5+02:00"),
            Some(1_795_255_200_500)
        );
        assert_eq!(parse_time_param("yesterday"), None);
        let hour_ago = parse_time_param("1h").unwrap();
        assert!((herald_journal::now_ms() - 3_600_000 - hour_ago).abs() < 5_000);
        assert_eq!(parse_time_param("1y"), None);
        assert_eq!(parse_time_param("h"), None);
        assert_eq!(parse_time_param("-5"), None);
        assert_eq!(parse_time_param("99999999999999999999"), None);
    }

    #[test]
    fn cursors_round_trip_and_are_tied_to_their_endpoint() {
        let c = encode_cursor("runs", serde_json::json!([5, "r"]));
        assert_eq!(decode_cursor("runs", &c), Some(serde_json::json!([5, "r"])));
        assert_eq!(decode_cursor("events", &c), None);
        assert_eq!(decode_cursor("runs", "zz"), None);
    }

    #[test]
    fn limits_and_cursors_name_their_parameter() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some("500")).ok(), Some(500));
        for bad in ["0", "501", "ten", "+5", ""] {
            assert_eq!(
                limit(Some(bad)).err().and_then(|e| e.field),
                Some("limit".to_string())
            );
        }
        let c = encode_cursor("runs", serde_json::json!([5, "r"]));
        assert_eq!(
            cursor::<(i64, String)>("runs", Some(&c)).ok(),
            Some(Some((5, "r".to_string())))
        );
        // Another endpoint's cursor, or the right tag with the wrong key.
        assert!(cursor::<(i64, String)>("deliveries", Some(&c)).is_err());
        assert!(cursor::<(i64, i64)>("runs", Some(&c)).is_err());
    }
}
