//! Request correlation and trace context: the ids one API request carries
//! through ingest into the journal and on to the deliveries it causes.
//!
//! Traces are `tracing` spans with the target [`TARGET`]; the binary
//! installs a `tracing-opentelemetry` layer that exports exactly those spans
//! (and keeps them out of the log lines). Without that layer (no endpoint
//! configured) every such span is disabled at its call site, so it costs a
//! cached interest check and nothing else. The incoming W3C `traceparent` is
//! read with OpenTelemetry's [`TraceContextPropagator`].

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the spans exported over OTLP (`ingest`,
/// `journal.commit`, `delivery`); log lines never show them.
pub const TARGET: &str = "herald::otel";

/// Correlation ids of one API request, set by the HTTP layer's `observe`
/// middleware and read by the handlers (ingest stores them with each event,
/// so the deliveries an event causes log the same ids and their spans are
/// children of the ingest span).
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// From `X-Request-Id` when it is a sane token, else generated; echoed in the answer.
    pub request_id: String,
    /// W3C trace id (32 hex): the exported span's, else the incoming
    /// `traceparent`'s, else generated.
    pub trace_id: String,
    /// This request's own span id (16 hex; the `ingest` span of
    /// `POST /v1/events`, stored with the events so delivery spans are its
    /// children).
    pub span_id: String,
    /// The exported `ingest` span (disabled when traces are off, and on
    /// other routes).
    pub span: tracing::Span,
}

/// Reads `traceparent` (and `tracestate`) from HTTP headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's trace context from the W3C `traceparent` header (an empty
/// context when it is absent or malformed).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    // From an empty context, not the thread's current one: a request's
    // parent is what it carries, nothing else.
    TraceContextPropagator::new()
        .extract_with_context(&opentelemetry::Context::new(), &Headers(headers))
}

/// The (trace id, span id) in hex of a context's span, when valid.
pub fn ids_of(cx: &opentelemetry::Context) -> Option<(String, String)> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The ids of an exported span (`None` when it is disabled). Builds the
/// span: set its parent before.
pub fn span_ids(span: &tracing::Span) -> Option<(String, String)> {
    if span.is_disabled() {
        return None;
    }
    ids_of(&span.context())
}

/// A remote parent made of ids stored in the journal (hex), so a delivery
/// minutes later is a child of the ingest span; `None` when malformed.
pub fn remote_parent(trace_id: &str, span_id: &str) -> Option<opentelemetry::Context> {
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    sc.is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(sc))
}

/// Makes `parent` the parent of an exported span (before it is built; a
/// no-op when the span is disabled).
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    if !span.is_disabled() {
        // Fails only when the span was already built, which the callers
        // here rule out.
        let _ = span.set_parent(parent);
    }
}

/// Marks an exported span as failed (status ERROR with `message`).
pub fn set_error(span: &tracing::Span, message: impl Into<String>) {
    if !span.is_disabled() {
        span.set_status(opentelemetry::trace::Status::error(message.into()));
    }
}

/// A random id of `bytes` bytes in hex (never all zero), for the ids a
/// request needs when no exported span gives them.
pub fn random_hex(bytes: usize) -> String {
    loop {
        let mut v = vec![0u8; bytes];
        rand::fill(&mut v[..]);
        if v.iter().any(|b| *b != 0) {
            return hex::encode(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_extracted_strictly() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        assert_eq!(
            ids_of(&extract(&h)),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            h.insert("traceparent", http::HeaderValue::from_static(bad));
            assert_eq!(ids_of(&extract(&h)), None, "{bad}");
        }
        assert_eq!(ids_of(&extract(&http::HeaderMap::new())), None);
    }

    #[test]
    fn stored_ids_make_a_remote_parent() {
        let cx = remote_parent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7").unwrap();
        assert!(cx.span().span_context().is_remote());
        assert_eq!(
            ids_of(&cx),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        assert!(remote_parent("", "00f067aa0ba902b7").is_none());
        assert!(remote_parent("4bf92f3577b34da6a3ce929d0e0e4736", "0000000000000000").is_none());
    }

    #[test]
    fn without_the_export_layer_spans_are_disabled() {
        let span = tracing::info_span!(target: TARGET, "ingest");
        assert!(span.is_disabled());
        assert_eq!(span_ids(&span), None);
        assert_eq!(random_hex(8).len(), 16);
    }
}
