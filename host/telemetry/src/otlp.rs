//! Optional OpenTelemetry trace export over OTLP/HTTP with protobuf.
//!
//! A small hand-written exporter: the few OTLP messages Herald needs
//! (`ExportTraceServiceRequest` → `ResourceSpans` → `ScopeSpans` → `Span`)
//! are encoded by hand, and a background task batches finished spans and
//! posts them to `<endpoint>/v1/traces`. Off unless an endpoint is
//! configured (`[telemetry] otlp_endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
//! variables). Spans are dropped, never queued without bound, when the
//! collector is slow or away.

use bytes::Bytes;
use herald_config::TelemetryConfig;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Span kinds (OTLP `Span.SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Attr {
    fn from(v: &str) -> Self {
        Attr::Str(v.to_string())
    }
}
impl From<String> for Attr {
    fn from(v: String) -> Self {
        Attr::Str(v)
    }
}
impl From<i64> for Attr {
    fn from(v: i64) -> Self {
        Attr::Int(v)
    }
}
impl From<u32> for Attr {
    fn from(v: u32) -> Self {
        Attr::Int(v as i64)
    }
}
impl From<usize> for Attr {
    fn from(v: usize) -> Self {
        Attr::Int(v as i64)
    }
}
impl From<bool> for Attr {
    fn from(v: bool) -> Self {
        Attr::Bool(v)
    }
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(String, Attr)>,
    /// `Some(message)` marks the span as failed (status ERROR).
    pub error: Option<String>,
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Decodes `n` bytes of hex; `None` when malformed or all zero.
pub fn id_from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = hex::decode(s).ok()?;
    let a: [u8; N] = v.try_into().ok()?;
    if a.iter().all(|b| *b == 0) {
        None
    } else {
        Some(a)
    }
}

/// A random non-zero 8-byte span id, hex encoded.
pub fn new_span_id() -> String {
    loop {
        let mut v = [0u8; 8];
        rand::fill(&mut v[..]);
        if v.iter().any(|b| *b != 0) {
            return hex::encode(v);
        }
    }
}

struct Exporter {
    tx: mpsc::Sender<SpanData>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Spans buffered before new ones are dropped.
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// Longest a finished span waits before it is posted.
const FLUSH: Duration = Duration::from_millis(500);

/// Resolves the traces URL: config, then `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// (a full URL), then `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL).
pub fn traces_url(cfg: &TelemetryConfig) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let base = |b: &str| format!("{}/v1/traces", b.trim().trim_end_matches('/'));
    if let Some(e) = cfg
        .otlp_endpoint
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        return Some(base(e));
    }
    if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Some(e.trim().to_string());
    }
    env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| base(&e))
}

/// Starts the exporter when an endpoint is configured (once per process).
/// Must be called inside a tokio runtime.
pub fn init(cfg: &TelemetryConfig) {
    let Some(url) = traces_url(cfg) else {
        return;
    };
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("OTLP trace export disabled: invalid endpoint {url:?}: {e}");
            return;
        }
    };
    if uri.scheme_str() != Some("http") {
        tracing::warn!(
            "OTLP trace export disabled: only http:// endpoints are supported, not {url:?}"
        );
        return;
    }
    let service = cfg
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "herald".into());
    let (tx, rx) = mpsc::channel(QUEUE);
    if EXPORTER.set(Exporter { tx }).is_ok() {
        tracing::info!(endpoint = %url, "exporting traces over OTLP/HTTP");
        tokio::spawn(run(uri, service, rx));
    }
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Hands a finished span to the exporter (dropped when export is off or the
/// queue is full).
pub fn record(span: SpanData) {
    if let Some(e) = EXPORTER.get() {
        if e.tx.try_send(span).is_err() {
            metrics::counter!("herald_trace_spans_dropped_total").increment(1);
        }
    }
}

async fn run(uri: http::Uri, service: String, mut rx: mpsc::Receiver<SpanData>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut warned = false;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let body = encode_request(&service, &batch);
        let req = match http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
        {
            Ok(r) => r,
            Err(_) => continue,
        };
        let result = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
        let failure = match result {
            Ok(Ok(resp)) if resp.status().is_success() => None,
            Ok(Ok(resp)) => Some(format!("the collector answered {}", resp.status())),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("timed out".into()),
        };
        match failure {
            None => {
                metrics::counter!("herald_trace_spans_exported_total", "result" => "ok")
                    .increment(batch.len() as u64);
                warned = false;
            }
            Some(e) => {
                metrics::counter!("herald_trace_spans_exported_total", "result" => "error")
                    .increment(batch.len() as u64);
                if !warned {
                    tracing::warn!(spans = batch.len(), "OTLP trace export failed: {e}");
                    warned = true;
                }
            }
        }
    }
}

// --- protobuf encoding -------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`
fn key_value(k: &str, v: &Attr) -> Vec<u8> {
    // AnyValue { string string_value = 1; bool bool_value = 2; int64 int_value = 3; }
    let mut any = Vec::new();
    match v {
        Attr::Str(s) => bytes_field(&mut any, 1, s.as_bytes()),
        Attr::Bool(b) => varint_field(&mut any, 2, *b as u64),
        Attr::Int(i) => varint_field(&mut any, 3, *i as u64),
    }
    let mut kv = Vec::new();
    bytes_field(&mut kv, 1, k.as_bytes());
    bytes_field(&mut kv, 2, &any);
    kv
}

/// `Span` (opentelemetry/proto/trace/v1/trace.proto).
fn encode_span(s: &SpanData) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    bytes_field(&mut out, 1, &s.trace_id);
    bytes_field(&mut out, 2, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        bytes_field(&mut out, 4, p);
    }
    bytes_field(&mut out, 5, s.name.as_bytes());
    varint_field(&mut out, 6, s.kind as u64);
    fixed64_field(&mut out, 7, s.start_ns);
    fixed64_field(&mut out, 8, s.end_ns.max(s.start_ns));
    for (k, v) in &s.attributes {
        bytes_field(&mut out, 9, &key_value(k, v));
    }
    // Status { string message = 2; StatusCode code = 3; } — ERROR = 2.
    if let Some(msg) = &s.error {
        let mut status = Vec::new();
        bytes_field(&mut status, 2, msg.as_bytes());
        varint_field(&mut status, 3, 2);
        bytes_field(&mut out, 15, &status);
    }
    out
}

/// `ExportTraceServiceRequest` holding one resource and one scope.
pub fn encode_request(service: &str, spans: &[SpanData]) -> Vec<u8> {
    // Resource { repeated KeyValue attributes = 1; }
    let mut resource = Vec::new();
    bytes_field(
        &mut resource,
        1,
        &key_value("service.name", &Attr::Str(service.into())),
    );
    bytes_field(
        &mut resource,
        1,
        &key_value(
            "service.version",
            &Attr::Str(env!("CARGO_PKG_VERSION").into()),
        ),
    );
    // InstrumentationScope { string name = 1; string version = 2; }
    let mut scope = Vec::new();
    bytes_field(&mut scope, 1, b"herald");
    bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
    let mut scope_spans = Vec::new();
    bytes_field(&mut scope_spans, 1, &scope);
    for s in spans {
        bytes_field(&mut scope_spans, 2, &encode_span(s));
    }
    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
    let mut resource_spans = Vec::new();
    bytes_field(&mut resource_spans, 1, &resource);
    bytes_field(&mut resource_spans, 2, &scope_spans);
    // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
    let mut req = Vec::new();
    bytes_field(&mut req, 1, &resource_spans);
    req
}

/// Builds and records a span from hex ids (ignored when export is off or an
/// id is malformed).
#[allow(clippy::too_many_arguments)]
pub fn emit(
    name: &str,
    kind: Kind,
    trace_id: &str,
    span_id: &str,
    parent_span_id: Option<&str>,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(String, Attr)>,
    error: Option<String>,
) {
    if !enabled() {
        return;
    }
    let (Some(trace_id), Some(span_id)) = (id_from_hex::<16>(trace_id), id_from_hex::<8>(span_id))
    else {
        return;
    };
    record(SpanData {
        trace_id,
        span_id,
        parent_span_id: parent_span_id.and_then(id_from_hex::<8>),
        name: name.to_string(),
        kind,
        start_ns,
        end_ns,
        attributes,
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_a_span_encode_like_protobuf() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let span = SpanData {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: "x".into(),
            kind: Kind::Server,
            start_ns: 1,
            end_ns: 2,
            attributes: vec![("a".into(), Attr::Int(-1))],
            error: None,
        };
        let enc = encode_span(&span);
        // trace_id: field 1, length 16
        assert_eq!(&enc[..2], &[0x0a, 16]);
        // negative int64 takes ten bytes as a varint
        assert!(enc
            .windows(10)
            .any(|w| w == [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
    }

    #[test]
    fn endpoint_resolution_prefers_config() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318/".into()),
            service_name: None,
        };
        assert_eq!(traces_url(&cfg).as_deref(), Some("http://c:4318/v1/traces"));
    }
}
