//! The HTTP layer's observation middleware: correlation ids, a span per
//! request and the request series.

use herald_telemetry::context::{self, RequestContext};

/// The route whose requests get an exported `ingest` span.
const INGEST_ROUTE: &str = "/v1/events";

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
        .unwrap_or_else(|| context::random_hex(16));
    // The caller's W3C trace context (OpenTelemetry's propagator).
    let parent = context::extract(req.headers());
    // `POST /v1/events` is traced: its `ingest` span (disabled, so free,
    // when no exporter is installed) is a child of the caller's span, and
    // its ids are the ones stored with the events.
    let ingest_span = if route == INGEST_ROUTE && req.method() == axum::http::Method::POST {
        let span = tracing::info_span!(target: context::TARGET, "ingest",
            otel.kind = "server",
            http.request.method = "POST",
            http.route = INGEST_ROUTE,
            herald.request_id = %request_id,
            herald.tenant = tracing::field::Empty,
            herald.accepted = tracing::field::Empty,
            herald.duplicates = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty);
        context::set_parent(&span, parent.clone());
        span
    } else {
        tracing::Span::none()
    };
    let (trace_id, span_id) = context::span_ids(&ingest_span)
        .or_else(|| context::ids_of(&parent).map(|(t, _)| (t, context::random_hex(8))))
        .unwrap_or_else(|| (context::random_hex(16), context::random_hex(8)));
    let ctx = RequestContext {
        request_id: request_id.clone(),
        trace_id: trace_id.clone(),
        span_id,
        span: ingest_span,
    };
    req.extensions_mut().insert(ctx);
    let span = tracing::info_span!("request", %request_id, %trace_id, %method, %route);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let m = herald_telemetry::host();
    m.http_requests
        .with_label_values(&[method.as_str(), route.as_str(), resp.status().as_str()])
        .inc();
    m.http_request_duration_seconds
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}
