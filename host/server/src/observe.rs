//! The HTTP layer's observation middleware: correlation ids, a span per
//! request and the request series.

use herald_telemetry::context::{parse_traceparent, RequestContext};
use herald_telemetry::otlp;

fn random_hex(bytes: usize) -> String {
    let mut v = vec![0u8; bytes];
    rand::fill(&mut v[..]);
    hex::encode(v)
}

/// Middleware: correlation ids, a span per request, `X-Request-Id` echoed,
/// and `herald_http_requests_total` / `herald_http_request_duration_seconds`
/// by method, route template and status.
pub async fn observe(
    matched: Option<axum::extract::MatchedPath>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_string();
    let route = matched
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| random_hex(16));
    let (trace_id, parent_span_id) = match req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
    {
        Some((t, s)) => (t, Some(s)),
        None => (random_hex(16), None),
    };
    let ctx = RequestContext {
        request_id: request_id.clone(),
        trace_id: trace_id.clone(),
        parent_span_id,
        span_id: otlp::new_span_id(),
    };
    req.extensions_mut().insert(ctx);
    let span = tracing::info_span!("request", %request_id, %trace_id, %method, %route);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!("herald_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("herald_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}
