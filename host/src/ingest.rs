//! `POST /v1/events`: authenticate the tenant, read and validate the batch,
//! commit it to the journal, and only then answer 202.

use crate::api::{ApiError, AppState};
use crate::event::{validate, WireEvent};
use crate::telemetry::RequestContext;
use crate::tenancy::tenant_of;
use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::io::Read;

/// Body format of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonArray,
    Ndjson,
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::JsonArray),
        "application/x-ndjson" | "application/jsonlines" | "application/jsonl" => Ok(Format::Ndjson),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/json (an array of events) or application/x-ndjson, not {ct:?}"),
        )),
    }
}

fn decode(headers: &HeaderMap, body: bytes::Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            // Read one byte past the limit to tell "exactly at" from "over".
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request(
                        "invalid_body",
                        format!("the gzip body cannot be decompressed: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            Ok(out)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Encoding {other:?} is not supported; use gzip or none"),
        )),
    }
}

fn parse(format: Format, bytes: &[u8]) -> Result<Vec<WireEvent>, ApiError> {
    let values: Vec<Value> = match format {
        Format::JsonArray => {
            let v: Value = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
            })?;
            match v {
                Value::Array(items) => items,
                Value::Object(_) => vec![v],
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_body",
                        "the body must be a JSON array of events",
                    ))
                }
            }
        }
        Format::Ndjson => {
            let mut items = Vec::new();
            for (i, line) in bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .enumerate()
            {
                let v: Value = serde_json::from_slice(line).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_json",
                        format!("event {i} is not valid JSON: {e}"),
                    )
                    .at(i, "")
                })?;
                items.push(v);
            }
            items
        }
    };
    if values.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the batch holds no event",
        ));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            validate(v).map_err(|e| {
                ApiError::bad_request(
                    "invalid_event",
                    format!(
                        "event {i}: {}: {}",
                        if e.field.is_empty() {
                            "(event)"
                        } else {
                            &e.field
                        },
                        e.message
                    ),
                )
                .at(i, &e.field)
            })
        })
        .collect()
}

/// The ingest handler.
#[utoipa::path(
    post, path = "/v1/events", tag = "ingest",
    request_body(
        description = "A batch of events: a JSON array (`application/json`) or one event per line (`application/x-ndjson`); optionally `Content-Encoding: gzip`",
        content(
            (crate::query::model::EventBatch = "application/json"),
            (crate::query::model::EventDoc = "application/x-ndjson"),
        )
    ),
    params(("X-Herald-Dropped" = Option<u64>, Header, description = "Events the sender's spool dropped since its last batch")),
    responses(
        (status = 202, description = "The whole batch is committed to the journal", body = crate::query::model::Accepted),
        (status = 400, description = "Malformed JSON or an invalid event; `index` and `field` name the culprit; nothing of the batch is stored", body = crate::query::model::ErrorBody),
        (status = 401, description = "Missing or unknown token", body = crate::query::model::ErrorBody),
        (status = 413, description = "The body is over `server.body_limit` (also after decompression)", body = crate::query::model::ErrorBody),
        (status = 415, description = "Neither JSON nor NDJSON, or an unknown Content-Encoding", body = crate::query::model::ErrorBody),
        (status = 429, description = "The tenant's ingest rate limit is reached (see Retry-After)", body = crate::query::model::ErrorBody),
        (status = 503, description = "The journal cannot commit; retry later", body = crate::query::model::ErrorBody),
        (status = 507, description = "The tenant's journal quota is full", body = crate::query::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_events(
    State(state): State<AppState>,
    request_context: Option<axum::Extension<RequestContext>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = request_context.map(|axum::Extension(c)| c);
    let started_ns = crate::otlp::now_ns();
    let result = ingest(&state, &headers, body, ctx.as_ref()).await;
    if let Some(c) = ctx.as_ref().filter(|_| crate::otlp::enabled()) {
        ingest_span(c, started_ns, &result);
    }
    match result {
        Ok((tenant, accepted, duplicates)) => {
            batch_metric(&tenant, StatusCode::ACCEPTED);
            (
                StatusCode::ACCEPTED,
                Json(json!({"accepted": accepted, "duplicates": duplicates})),
            )
                .into_response()
        }
        Err((tenant, e)) => {
            batch_metric(tenant.as_deref().unwrap_or(""), e.status);
            if e.status.is_server_error() {
                tracing::error!(
                    tenant = tenant.as_deref().unwrap_or(""),
                    "ingest failed: {}",
                    e.message
                );
            } else {
                tracing::info!(
                    tenant = tenant.as_deref().unwrap_or(""),
                    status = e.status.as_u16(),
                    "ingest refused: {}",
                    e.message
                );
            }
            e.into_response()
        }
    }
}

/// The OTLP `ingest` span of one `POST /v1/events` (child of the caller's
/// `traceparent` when there was one).
fn ingest_span(
    c: &RequestContext,
    started_ns: u64,
    result: &Result<(String, usize, usize), (Option<String>, ApiError)>,
) {
    use crate::otlp::Attr;
    let mut attrs: Vec<(String, Attr)> = vec![
        ("http.request.method".into(), "POST".into()),
        ("http.route".into(), "/v1/events".into()),
        ("herald.request_id".into(), c.request_id.clone().into()),
    ];
    let (status, tenant, error) = match result {
        Ok((tenant, accepted, duplicates)) => {
            attrs.push(("herald.accepted".into(), (*accepted).into()));
            attrs.push(("herald.duplicates".into(), (*duplicates).into()));
            (202, Some(tenant.clone()), None)
        }
        Err((tenant, e)) => (
            e.status.as_u16(),
            tenant.clone(),
            e.status.is_server_error().then(|| e.message.clone()),
        ),
    };
    attrs.push(("http.response.status_code".into(), (status as i64).into()));
    if let Some(t) = tenant {
        attrs.push(("herald.tenant".into(), t.into()));
    }
    crate::otlp::emit(
        "ingest",
        crate::otlp::Kind::Server,
        &c.trace_id,
        &c.span_id,
        c.parent_span_id.as_deref(),
        started_ns,
        crate::otlp::now_ns(),
        attrs,
        error,
    );
}

fn batch_metric(tenant: &str, status: StatusCode) {
    metrics::counter!("herald_ingest_batches_total", "tenant" => tenant.to_string(), "status" => status.as_u16().to_string())
        .increment(1);
}

async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    request_context: Option<&RequestContext>,
) -> Result<(String, usize, usize), (Option<String>, ApiError)> {
    let config = state.live.load_full();
    let tenant = tenant_of(&config, headers).map_err(|e| (None, e))?;
    let t = Some(tenant.clone());
    let tenant_cfg = &config.tenants[&tenant];
    let format = format_of(headers).map_err(|e| (t.clone(), e))?;
    let limit = config.server.body_limit;
    let raw = to_bytes(body, limit)
        .await
        .map_err(|_| (t.clone(), ApiError::too_large(limit)))?;
    let bytes = decode(headers, raw, limit).map_err(|e| (t.clone(), e))?;
    let events = parse(format, &bytes).map_err(|e| (t.clone(), e))?;
    if let Some(n) = headers
        .get("x-herald-dropped")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if n > 0 {
            metrics::counter!("herald_callback_dropped_events_total", "tenant" => tenant.clone())
                .increment(n);
            tracing::warn!(tenant = %tenant, dropped = n, "a sender reports events its spool dropped");
        }
    }
    state
        .limiter
        .admit(&tenant, tenant_cfg, events.len())
        .map_err(|wait| (t.clone(), ApiError::rate_limited(wait)))?;
    let quota_journal = state.journal.clone();
    let quota_tenant = tenant.clone();
    if !state
        .limiter
        .within_quota(&tenant, tenant_cfg, events.len(), move || {
            quota_journal.event_count(&quota_tenant).unwrap_or(0)
        })
    {
        return Err((
            t.clone(),
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
                format!(
                    "the tenant's journal quota of {} events is full",
                    tenant_cfg.max_stored_events.unwrap_or(0)
                ),
            ),
        ));
    }
    let targets = state.dispatcher.targets(&tenant, &events);
    let journal = state.journal.clone();
    let owned_tenant = tenant.clone();
    let kinds: Vec<&'static str> = events.iter().map(|e| e.kind.as_str()).collect();
    let context =
        request_context.map(|c| (c.request_id.clone(), c.trace_id.clone(), c.span_id.clone()));
    let first_run = events.first().map(|e| e.run_id.clone()).unwrap_or_default();
    let event_count = events.len();
    let commit_started_ns = crate::otlp::now_ns();
    let committed = journal.commit(owned_tenant, events, targets, context).await;
    if let Some(c) = request_context.filter(|_| crate::otlp::enabled()) {
        crate::otlp::emit(
            "journal.commit",
            crate::otlp::Kind::Internal,
            &c.trace_id,
            &crate::otlp::new_span_id(),
            Some(&c.span_id),
            commit_started_ns,
            crate::otlp::now_ns(),
            vec![
                ("herald.tenant".into(), tenant.clone().into()),
                ("herald.events".into(), event_count.into()),
            ],
            committed.as_ref().err().map(|e| e.to_string()),
        );
    }
    let committed = committed.map_err(|e| {
        (
            t.clone(),
            ApiError::unavailable(format!("the journal cannot commit: {e}")),
        )
    })?;
    metrics::counter!("herald_ingest_bytes_total", "tenant" => tenant.clone())
        .increment(bytes.len() as u64);
    if committed.duplicates > 0 {
        metrics::counter!("herald_events_duplicate_total", "tenant" => tenant.clone())
            .increment(committed.duplicates as u64);
    }
    for (kind, _) in kinds
        .iter()
        .zip(&committed.inserted)
        .filter(|(_, stored)| **stored)
    {
        metrics::counter!("herald_events_ingested_total", "tenant" => tenant.clone(), "kind" => *kind).increment(1);
    }
    if committed.accepted > 0 {
        state.limiter.stored(&tenant, committed.accepted as i64);
        state.dispatcher.notify_tenant(&tenant);
    }
    tracing::info!(tenant = %tenant, run_id = %first_run, accepted = committed.accepted,
        duplicates = committed.duplicates, "batch committed");
    Ok((tenant, committed.accepted, committed.duplicates))
}
