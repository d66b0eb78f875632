//! The process's log and trace set-up: the global tracing subscriber, with
//! the log lines on stderr and, when an OTLP endpoint is configured, a
//! `tracing-opentelemetry` layer exporting the spans of target
//! [`herald_telemetry::context::TARGET`] through `opentelemetry-otlp`
//! (HTTP/protobuf or gRPC).

use herald::config::{OtlpProtocol, TelemetryConfig};
use herald_telemetry::context::TARGET;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, OTEL_EXPORTER_OTLP_PROTOCOL};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default, for log shippers).
    Json,
    /// Human-readable lines.
    Text,
}

/// Finished spans held for export (queued or being posted) before new ones
/// are dropped: ingest never waits for the collector.
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// Longest a finished span waits before it is posted.
const FLUSH: Duration = Duration::from_millis(500);
/// Longest one export request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a stop waits for the spans still queued to be sent.
const SHUTDOWN: Duration = Duration::from_secs(2);

/// The installed trace export, flushed by [`Tracing::shutdown`].
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Sends the spans still queued, waiting at most two seconds (an absent
    /// collector does not hold up a stop); call it while the tokio runtime
    /// is still alive.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown_with_timeout(SHUTDOWN);
        }
    }
}

/// Installs the global tracing subscriber; the log level comes from
/// `RUST_LOG` (default `info`) and logs go to stderr. With `telemetry` and an
/// endpoint (config or the standard `OTEL_*` variables), the exported spans
/// go to the collector; must then be called inside a tokio runtime.
pub fn init_logging(format: LogFormat, telemetry: Option<&TelemetryConfig>) -> Tracing {
    let export = telemetry.map(exporter).unwrap_or(Ok(None));
    let provider = match &export {
        Ok(Some((p, _))) => Some(p.clone()),
        _ => None,
    };
    let _ = subscriber(format, provider.as_ref()).try_init();
    match export {
        Ok(Some((_, what))) => tracing::info!("exporting traces over OTLP: {what}"),
        Ok(None) => {}
        Err(e) => tracing::warn!("OTLP trace export disabled: {e}"),
    }
    Tracing { provider }
}

/// The log layer (and the export layer with a provider). Without export,
/// RUST_LOG is a global filter as it always was, so a disabled span or
/// event costs one cached call-site check; with export, each layer filters
/// on its own, so RUST_LOG=warn does not turn the traces off.
fn subscriber(format: LogFormat, provider: Option<&SdkTracerProvider>) -> tracing::Dispatch {
    // The exported spans never show in log lines, whatever RUST_LOG says.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{TARGET}=off").parse().expect("a valid directive"));
    // Colours only on a terminal, not in journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let Some(provider) = provider else {
        return tracing::Dispatch::new(tracing_subscriber::registry().with(fmt).with(filter));
    };
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("herald")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    // Only the spans of TARGET, with their own fields as attributes: no
    // log events as span events, no code locations or thread ids.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO));
    tracing::Dispatch::new(
        tracing_subscriber::registry().with(vec![fmt.with_filter(filter).boxed(), otel.boxed()]),
    )
}

/// A standard variable's value, when set and not blank.
fn env(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The transport: config, then `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else HTTP/protobuf.
fn protocol(cfg: &TelemetryConfig) -> Result<OtlpProtocol, String> {
    if let Some(p) = cfg.otlp_protocol {
        return Ok(p);
    }
    for key in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ] {
        if let Some(v) = env(key) {
            return OtlpProtocol::from_name(&v).ok_or_else(|| {
                format!("{key}={v:?} is not supported (use \"http/protobuf\" or \"grpc\")")
            });
        }
    }
    Ok(OtlpProtocol::HttpProtobuf)
}

/// The traces endpoint: config (a base URL), then
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), then
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL). Over HTTP a base URL gets
/// `/v1/traces`; gRPC takes it as is. `None`: export is off.
fn traces_endpoint(cfg: &TelemetryConfig, protocol: OtlpProtocol) -> Option<String> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let base = |b: &str| match protocol {
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", b.trim().trim_end_matches('/')),
        OtlpProtocol::Grpc => b.trim().to_string(),
    };
    if let Some(e) = cfg
        .otlp_endpoint
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        return Some(base(e));
    }
    if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Some(e);
    }
    env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| base(&e))
}

/// The tracer provider when an endpoint is configured, with a line saying
/// where spans go; an error says why export is off although asked for.
fn exporter(cfg: &TelemetryConfig) -> Result<Option<(SdkTracerProvider, String)>, String> {
    let protocol = protocol(cfg)?;
    let Some(url) = traces_endpoint(cfg, protocol) else {
        return Ok(None);
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid endpoint {url:?}: {e}"))?;
    // Neither transport is built with TLS: a collector on the host or the
    // pod forwards to a TLS backend.
    if uri.scheme_str() != Some("http") {
        return Err(format!("only http:// endpoints are supported, not {url:?}"));
    }
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "no tokio runtime to export from".to_string())?;
    let (exporter, name) = match protocol {
        OtlpProtocol::HttpProtobuf => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .with_timeout(TIMEOUT)
                .build(),
            "http/protobuf",
        ),
        OtlpProtocol::Grpc => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_endpoint(url.clone())
                .with_timeout(TIMEOUT)
                .build(),
            "grpc",
        ),
    };
    let mut exporter = exporter.map_err(|e| e.to_string())?;
    let service = cfg
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "herald".into());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(OnRuntime {
        inner: Arc::new(exporter),
        handle,
        pending: pending.clone(),
        warned: Arc::new(AtomicBool::new(false)),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            // Room for every span `Bounded` lets through: the drops are its.
            .with_max_queue_size(QUEUE + BATCH)
            .with_max_export_batch_size(BATCH)
            .with_scheduled_delay(FLUSH)
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            pending,
        })
        // Every span is exported, as the caller's sampling flag was never
        // honoured: a trace is only made when an endpoint is configured.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource)
        .build();
    Ok(Some((provider, format!("{name} to {url}"))))
}

/// Holds at most [`QUEUE`] finished spans waiting for export and counts the
/// ones it drops (`herald_trace_spans_dropped_total`), so a slow or absent
/// collector costs memory up to a bound and never blocks a span's end.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not exported yet (see [`OnRuntime`]).
    pending: Arc<AtomicUsize>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            herald_telemetry::host().trace_spans_dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Runs each export on the process's tokio runtime (the batch processor's
/// own thread has none, and both transports need one), and counts the
/// outcome (`herald_trace_spans_exported_total{result}`).
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    handle: tokio::runtime::Handle,
    pending: Arc<AtomicUsize>,
    /// One warning per run of failures, not one per batch.
    warned: Arc<AtomicBool>,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        let inner = self.inner.clone();
        let task = self.handle.spawn(async move { inner.export(batch).await });
        let pending = self.pending.clone();
        let warned = self.warned.clone();
        async move {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
            };
            pending.fetch_sub(n, Ordering::Relaxed);
            let label = if result.is_ok() { "ok" } else { "error" };
            herald_telemetry::host()
                .trace_spans_exported
                .with_label_values(&[label])
                .inc_by(n as u64);
            match &result {
                Ok(()) => warned.store(false, Ordering::Relaxed),
                Err(e) => {
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(spans = n, "OTLP trace export failed: {e}");
                    }
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_the_traced_spans_are_disabled_at_their_call_site() {
        let dispatch = subscriber(LogFormat::Json, None);
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!(target: TARGET, "delivery", herald.attempt = 1);
            assert!(span.is_disabled());
            assert!(!tracing::info_span!("delivery").is_disabled());
        });
    }

    // Not the current-thread runtime: the exports run on the runtime while
    // shutdown blocks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn with_export_only_the_traced_spans_reach_the_exporter() {
        let cfg = TelemetryConfig {
            // Nothing listens there: the spans are only built, not received.
            otlp_endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let (provider, what) = exporter(&cfg).unwrap().unwrap();
        assert_eq!(what, "http/protobuf to http://127.0.0.1:9/v1/traces");
        let dispatch = subscriber(LogFormat::Json, Some(&provider));
        tracing::dispatcher::with_default(&dispatch, || {
            let parent = herald_telemetry::context::remote_parent(
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "00f067aa0ba902b7",
            )
            .unwrap();
            let span = tracing::info_span!(target: TARGET, "delivery");
            herald_telemetry::context::set_parent(&span, parent);
            let (trace_id, span_id) = herald_telemetry::context::span_ids(&span).unwrap();
            assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(span_id, "00f067aa0ba902b7");
            // A log span is not exported: it has no trace context.
            let log = tracing::info_span!("request");
            assert!(!log.is_disabled());
            assert_eq!(herald_telemetry::context::span_ids(&log), None);
        });
        let _ = provider.shutdown_with_timeout(Duration::from_millis(100));
    }

    #[test]
    fn endpoint_resolution_prefers_config_and_fits_the_protocol() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318/".into()),
            ..Default::default()
        };
        assert_eq!(
            traces_endpoint(&cfg, OtlpProtocol::HttpProtobuf).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://c:4317".into()),
            otlp_protocol: Some(OtlpProtocol::Grpc),
            ..Default::default()
        };
        assert_eq!(protocol(&cfg), Ok(OtlpProtocol::Grpc));
        assert_eq!(
            traces_endpoint(&cfg, OtlpProtocol::Grpc).as_deref(),
            Some("http://c:4317")
        );
    }
}
