//! `POST /v1/events`: authenticate the tenant, read and validate the batch,
//! commit it to the journal, and only then answer 202.

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenancy::tenant_of;
use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_event::{parse_array, parse_event, validate, EventKind, RunOutcome, WireEvent};
use herald_telemetry::RequestContext;
use serde_json::{json, Value};
use std::io::Read;
use std::sync::Arc;

/// The most one request's `X-Herald-Dropped` adds to
/// `herald_callback_dropped_events_total`: a sender cannot inflate it without bound.
pub const MAX_DROPPED_PER_REQUEST: u64 = 1_000_000;

/// `X-Herald-Dropped`: absent is 0; anything but an integer from 0 to
/// 2^53−1 is refused, naming the header.
fn dropped_of(headers: &HeaderMap) -> Result<u64, ApiError> {
    let Some(v) = headers.get("x-herald-dropped") else {
        return Ok(0);
    };
    v.to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n <= herald_event::MAX_SAFE_INTEGER)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                format!(
                    "X-Herald-Dropped must be an integer from 0 to {}",
                    herald_event::MAX_SAFE_INTEGER
                ),
            )
            .with_field("X-Herald-Dropped")
        })
}

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
        "" | "identity" => Ok(Vec::from(body)),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            // Every member of a multi-member body (`cat a.gz b.gz`), not only
            // the first; the limit holds for all of them together. Read one
            // byte past it to tell "exactly at" from "over".
            flate2::read::MultiGzDecoder::new(&body[..])
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

/// Validates a batch. Each event is checked on its text by the fast path
/// (`event::parse_event`) and journaled as sent; a batch it does not accept
/// as a whole goes through the reference (`parse_values`), which names the
/// first error exactly as before or, for the rare valid events only it
/// handles, journals them serialised again.
fn parse(format: Format, bytes: Vec<u8>) -> Result<Vec<WireEvent>, ApiError> {
    let text = match String::from_utf8(bytes) {
        Ok(text) => Arc::new(text),
        Err(e) => return parse_values(format, e.as_bytes()),
    };
    let fast = match format {
        Format::JsonArray => parse_array(&text),
        Format::Ndjson => parse_lines(&text),
    };
    match fast {
        Some(events) => Ok(events),
        None => parse_values(format, text.as_bytes()),
    }
}

/// The fast path for NDJSON: one event per non-blank line; `None` when the
/// reference must decide (also for a batch without events).
fn parse_lines(text: &Arc<String>) -> Option<Vec<WireEvent>> {
    let mut events = Vec::with_capacity(text.len() / 1024 + 1);
    let mut start = 0;
    for line in text.split('\n') {
        let line_start = start;
        start += line.len() + 1;
        // The same blank-line rule as the reference.
        if line.bytes().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let ws = |c: char| matches!(c, ' ' | '\t' | '\r');
        let lead = line.len() - line.trim_start_matches(ws).len();
        let end = line_start + line.trim_end_matches(ws).len();
        events.push(parse_event(text, line_start + lead, end)?);
    }
    (!events.is_empty()).then_some(events)
}

/// The reference: every event parsed into a `Value` and checked by `validate`.
fn parse_values(format: Format, bytes: &[u8]) -> Result<Vec<WireEvent>, ApiError> {
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
    params(("X-Herald-Dropped" = Option<i64>, Header, minimum = 0, maximum = 9007199254740991_i64, description = "Events the sender's spool dropped since its last batch; counted in `herald_callback_dropped_events_total` once the batch is committed and held new events (at most 1000000 per request)")),
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
    let result = ingest(&state, &headers, body, ctx.as_ref()).await;
    if let Some(c) = ctx.as_ref().filter(|c| !c.span.is_disabled()) {
        record_ingest(&c.span, &result);
    }
    match result {
        // The 202 of a committed batch was counted with its other series.
        Ok((_tenant, accepted, duplicates)) => (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": accepted, "duplicates": duplicates})),
        )
            .into_response(),
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

/// Records the outcome of one `POST /v1/events` on its exported `ingest`
/// span (made by the `observe` middleware, a child of the caller's
/// `traceparent` when there was one).
fn record_ingest(
    span: &tracing::Span,
    result: &Result<(String, usize, usize), (Option<String>, ApiError)>,
) {
    let (status, tenant) = match result {
        Ok((tenant, accepted, duplicates)) => {
            span.record("herald.accepted", *accepted as i64);
            span.record("herald.duplicates", *duplicates as i64);
            (202, Some(tenant))
        }
        Err((tenant, e)) => {
            if e.status.is_server_error() {
                herald_telemetry::context::set_error(span, e.message.clone());
            }
            (e.status.as_u16(), tenant.as_ref())
        }
    };
    span.record("http.response.status_code", status as i64);
    if let Some(t) = tenant {
        span.record("herald.tenant", t.as_str());
    }
}

/// Counts a refused batch (rare: looked up by its label set each time).
fn batch_metric(tenant: &str, status: StatusCode) {
    herald_telemetry::host()
        .ingest_batches
        .with_label_values(&[tenant, status.as_str()])
        .inc();
}

/// A run's start (`outcome` none) or end in a batch, logged once stored.
struct Milestone {
    index: usize,
    run_id: String,
    playbook: String,
    outcome: Option<&'static str>,
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
    // Read now, counted only once the batch is committed (below).
    let dropped = dropped_of(headers).map_err(|e| (t.clone(), e))?;
    let limit = config.server.body_limit;
    let raw = to_bytes(body, limit)
        .await
        .map_err(|_| (t.clone(), ApiError::too_large(limit)))?;
    let bytes = decode(headers, raw, limit).map_err(|e| (t.clone(), e))?;
    let body_bytes = bytes.len();
    let events = parse(format, bytes).map_err(|e| (t.clone(), e))?;
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
    let journal = state.journal.clone();
    let owned_tenant = tenant.clone();
    let kinds: Vec<&'static str> = events.iter().map(|e| e.kind.as_str()).collect();
    let context =
        request_context.map(|c| (c.request_id.clone(), c.trace_id.clone(), c.span_id.clone()));
    let first_run = events.first().map(|e| e.run_id.clone()).unwrap_or_default();
    // A run's start and end are INFO lines (once each: a duplicate is not
    // stored); the batches between them are DEBUG.
    let milestones: Vec<Milestone> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let outcome = match e.kind {
                EventKind::PlaybookOnStart => None,
                // One parse per run, of its last event.
                EventKind::PlaybookOnStats => Some(RunOutcome::of_stats(e.body()).as_str()),
                _ => return None,
            };
            Some(Milestone {
                index: i,
                run_id: e.run_id.clone(),
                playbook: e.playbook().unwrap_or_default().to_string(),
                outcome,
            })
        })
        .collect();
    let event_count = events.len();
    // The exported `journal.commit` span, a child of the ingest span
    // (disabled, so free, when no exporter is installed).
    let commit_span = match request_context {
        Some(c) if !c.span.is_disabled() => tracing::info_span!(
            target: herald_telemetry::context::TARGET, parent: &c.span, "journal.commit",
            herald.tenant = %tenant, herald.events = event_count as i64),
        _ => tracing::Span::none(),
    };
    let committed = herald_journal::commit(&*journal, owned_tenant, events, context).await;
    if let Err(e) = &committed {
        herald_telemetry::context::set_error(&commit_span, e.to_string());
    }
    drop(commit_span);
    let committed = committed.map_err(|e| {
        (
            t.clone(),
            ApiError::unavailable(format!("the journal cannot commit: {e}")),
        )
    })?;
    // The tenant's series, resolved once per tenant, not per batch.
    let meters = herald_telemetry::ingest_for(&tenant);
    meters.accepted_batches.inc();
    meters.bytes.inc_by(body_bytes as u64);
    if committed.duplicates > 0 {
        meters.duplicate.inc_by(committed.duplicates as u64);
    }
    // One counter update per kind, not per event: a batch is mostly one kind.
    let mut per_kind: Vec<(&'static str, u64)> = Vec::new();
    for (kind, _) in kinds
        .iter()
        .zip(&committed.inserted)
        .filter(|(_, stored)| **stored)
    {
        match per_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => per_kind.push((kind, 1)),
        }
    }
    for (kind, n) in per_kind {
        meters.ingested(kind, n);
    }
    if committed.accepted > 0 {
        state.limiter.stored(&tenant, committed.accepted as i64);
    }
    // The sender's report of what its spool dropped, counted once: a batch
    // resent after a lost answer holds only duplicates and the same report.
    if dropped > 0 && committed.accepted > 0 {
        let n = dropped.min(MAX_DROPPED_PER_REQUEST);
        meters.callback_dropped.inc_by(n);
        tracing::warn!(tenant = %tenant, dropped = n, "a sender reports events its spool dropped");
    }
    for m in milestones
        .iter()
        .filter(|m| committed.inserted.get(m.index).copied().unwrap_or(false))
    {
        let (run_id, playbook) = (&m.run_id, &m.playbook);
        match m.outcome {
            None => {
                tracing::info!(tenant = %tenant, run_id = %run_id, playbook = %playbook, "run started")
            }
            Some(outcome) => {
                tracing::info!(tenant = %tenant, run_id = %run_id, playbook = %playbook,
                outcome, "run finished")
            }
        }
    }
    // DEBUG: a line per request would be most of an INFO log (a callback
    // sends a batch about every second while a playbook runs);
    // `herald_ingest_batches_total` counts them.
    tracing::debug!(tenant = %tenant, run_id = %first_run, accepted = committed.accepted,
        duplicates = committed.duplicates, "batch committed");
    Ok((tenant, committed.accepted, committed.duplicates))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"uuid": "a", "event": "verbose", "counter": 1, "created": "2026-01-01T00:00:00", "run_id": "r"}"#;

    #[test]
    fn ndjson_bodies_are_the_lines_as_sent() {
        let b = A.replace("\"a\"", "\"b\"");
        let body = format!("{A}\r\n\n  \n{b}");
        let events = parse(Format::Ndjson, body.into_bytes()).unwrap();
        let bodies: Vec<&str> = events.iter().map(WireEvent::body).collect();
        assert_eq!(bodies, [A, b.as_str()]);
    }

    #[test]
    fn errors_name_the_event_and_field() {
        let bad = A.replace("\"counter\": 1", "\"counter\": -1");
        let e = parse(Format::Ndjson, format!("{A}\n{bad}\n").into_bytes()).unwrap_err();
        assert_eq!(
            (e.error, e.index, e.field.as_deref()),
            ("invalid_event", Some(1), Some("counter"))
        );
        assert_eq!(
            e.message,
            "event 1: counter: must be an integer from 0 to 9007199254740991"
        );
        // Invalid JSON in a later line wins over an invalid field, as before.
        let e = parse(Format::Ndjson, format!("{bad}\n{{\n").into_bytes()).unwrap_err();
        assert_eq!((e.error, e.index), ("invalid_json", Some(1)));
        let e = parse(Format::JsonArray, format!("[{A}, {bad}]").into_bytes()).unwrap_err();
        assert_eq!((e.index, e.field.as_deref()), (Some(1), Some("counter")));
        let e = parse(Format::JsonArray, b"[]".to_vec()).unwrap_err();
        assert_eq!(e.error, "invalid_body");
        let e = parse(Format::Ndjson, vec![b'{', 0xff, b'}']).unwrap_err();
        assert_eq!((e.error, e.index), ("invalid_json", Some(0)));
    }

    fn gzip(text: &str) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    fn gzip_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        h
    }

    #[test]
    fn every_gzip_member_is_read() {
        let b = A.replace("\"a\"", "\"b\"");
        // What `cat a.gz b.gz` makes: two complete gzip members.
        let mut body = gzip(&format!("{A}\n"));
        body.extend(gzip(&format!("{b}\n")));
        let out = decode(&gzip_headers(), body.into(), 1 << 20).unwrap();
        let events = parse(Format::Ndjson, out).unwrap();
        let uuids: Vec<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
        assert_eq!(uuids, ["a", "b"]);
    }

    #[test]
    fn the_decompressed_limit_holds_across_members() {
        // Each member alone is under the limit; together they are over it.
        let part = " ".repeat(600);
        let mut body = gzip(&part);
        body.extend(gzip(&part));
        let e = decode(&gzip_headers(), body.clone().into(), 1000).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            decode(&gzip_headers(), body.into(), 1200).unwrap().len(),
            1200
        );
        // Bytes after a member that are not another member are refused, not ignored.
        let mut body = gzip(A);
        body.extend(b"trailing");
        let e = decode(&gzip_headers(), body.into(), 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_batch_the_fast_path_leaves_is_still_accepted() {
        // A null run_id with a runner_ident: only the reference handles it.
        let odd = A.replace(
            "\"run_id\": \"r\"",
            "\"run_id\": null, \"runner_ident\": \"i\"",
        );
        let events = parse(Format::Ndjson, format!("{A}\n{odd}").into_bytes()).unwrap();
        assert_eq!(events[1].run_id, "i");
        let body: Value = serde_json::from_str(events[1].body()).unwrap();
        assert_eq!(body["run_id"], "i");
    }
}
