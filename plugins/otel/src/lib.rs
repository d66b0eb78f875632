//! Herald `otel` sink: a run's traces and metrics over OTLP/HTTP (protobuf) to a collector.
//!
//! Traces are modelled as the community.general `opentelemetry` callback models them:
//! - one trace per run, whose **trace id is the run id** (its 32 hex digits), as the Herald
//!   callback's `traceparent` carries it, so Herald's own ingest spans and the run's spans join;
//! - a root span named after the playbook (`SERVER`), from the playbook's start to its stats
//!   event, status `ERROR` when a host failed or was unreachable, else `OK`, with
//!   `ansible.session`, `ansible.host.name` (the controller), `ansible.playbook`,
//!   `herald.tenant`, `herald.run_id`;
//! - a child span per task per host (`INTERNAL`), named after the task, from the host's start
//!   of the task to its result, with `ansible.task.module`, `ansible.task.message`,
//!   `ansible.task.name` (`[host] play: task`), `ansible.task.result` (`rc`),
//!   `ansible.task.host.name`, `ansible.task.host.status` (`ok`, `failed`, `skipped`,
//!   `unreachable`, `ignored`), `ansible.task.changed`; a failure is status `ERROR` with the
//!   message and an `exception` event (`message: "..."\nexception: "..."\nstderr: "..."`);
//!   skipped and ignored results are `UNSET`.
//!
//! Metrics at the end of each run (gauges stamped with the run's end): `ansible.playbook.duration`
//! (s), `ansible.playbook.success`, `ansible.playbook.changed`, `ansible.task.results{status}`,
//! `ansible.hosts{status}`, `ansible.host.tasks{host,result}`.
//!
//! Spans wait in the instance's `state` until the end of the run (or until
//! `max_spans_per_request` of them), then go out in one request. The span ids derive from the
//! event ids, a retry sends the same request, and what the collector accepted (traces, then
//! metrics) is remembered so a retry does not send it again. Responses as OTLP/HTTP says: 2xx
//! ok (a `partial_success` is logged); 429, 502, 503, 504 retryable (`Retry-After`); every
//! other status permanent.

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::summary::{HostCounters, Observed, RunStatus, RunSummary, RunTracker};
use herald_sdk::text::truncate;
use herald_sdk::{
    failure_reason, is_host_result, log, playbook_name, result_message, state, Event, EventRef,
    Outcome, Plugin, Status,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status as SpanStatus,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The instrumentation scope of every span and metric.
pub const SCOPE: &str = "herald-otel";
/// Longest attribute value kept (messages).
pub const VALUE_MAX: usize = 4096;

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); `/v1/traces` and
    /// `/v1/metrics` are added, as for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// Extra request headers (an `authorization` for a SaaS collector: use `${env:...}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the resource (the callback's `otel_service_name`).
    #[serde(default = "default_service")]
    pub service_name: String,
    /// More resource attributes (`deployment.environment = "prod"`).
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub traces: bool,
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Spans of a run kept before they are sent mid-run.
    #[serde(default = "default_max_spans")]
    pub max_spans_per_request: usize,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_service() -> String {
    "ansible".into()
}
fn default_max_spans() -> usize {
    100
}

/// One task's result on one host, kept until its span is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpan {
    pub event_id: String,
    pub task: String,
    pub play: String,
    pub action: String,
    pub host: String,
    /// The callback's status: `ok`, `failed`, `skipped`, `unreachable`, `ignored`.
    pub status: String,
    pub changed: bool,
    pub message: String,
    /// The enriched error of a failure (the `exception` event).
    pub error: Option<String>,
    pub rc: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl TaskSpan {
    /// The span record of a host's final result, `None` for other events.
    pub fn of(e: &Event) -> Option<TaskSpan> {
        if !is_host_result(e.kind) {
            return None;
        }
        let res: serde_json::Value = e
            .res
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(serde_json::Value::Null);
        let text = |k: &str| res.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let status = match (e.status, e.ignore_errors) {
            (Some(Status::Failed), true) => "ignored",
            (Some(Status::Failed), false) => "failed",
            (Some(Status::Unreachable), _) => "unreachable",
            (Some(Status::Skipped), _) => "skipped",
            _ => "ok",
        };
        let (message, error) = match status {
            "failed" | "unreachable" | "ignored" => {
                // The result's message, else the exception's last line. (The callback takes the
                // exception first; ansible-core 2.19 sets it to "(traceback unavailable)" for a
                // module that failed without a Python exception, such as `fail`.)
                let message = result_message(e.res.as_deref(), VALUE_MAX)
                    .or_else(|| {
                        text("exception").and_then(|x| x.trim().lines().last().map(str::to_string))
                    })
                    .unwrap_or_else(|| "failed".into());
                let enriched = format!(
                    "message: \"{}\"\nexception: \"{}\"\nstderr: \"{}\"",
                    text("msg").unwrap_or_else(|| "failed".into()),
                    text("exception").unwrap_or_else(|| "None".into()),
                    text("stderr").unwrap_or_else(|| "None".into()),
                );
                (message, Some(truncate(&enriched, VALUE_MAX)))
            }
            "skipped" => (
                text("skip_reason").unwrap_or_else(|| "skipped".into()),
                None,
            ),
            _ => ("success".into(), None),
        };
        let (start_ms, end_ms) = match &e.timing {
            Some(t) => (t.start_ms, t.end_ms.max(t.start_ms)),
            None => (e.created_ms, e.created_ms),
        };
        Some(TaskSpan {
            event_id: e.id.clone(),
            task: e.task.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            play: e.play.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            action: e
                .task
                .as_ref()
                .map(|t| t.action.clone())
                .unwrap_or_default(),
            host: e.host.clone().unwrap_or_default(),
            status: status.into(),
            changed: e.changed,
            message: truncate(&message, VALUE_MAX),
            error,
            rc: res.get("rc").and_then(|v| v.as_i64()).unwrap_or(0),
            start_ms,
            end_ms,
        })
    }
}

/// The trace id of run `run_id`: its 16 bytes when it is a UUID (32 hex digits once the dashes
/// are dropped, as the callback's `traceparent` has it), else the first 16 bytes of its SHA-256.
pub fn trace_id(run_id: &str) -> Vec<u8> {
    let hex: String = run_id.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let bytes: Vec<u8> = (0..16)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        if bytes.len() == 16 && bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
    Sha256::digest(run_id.as_bytes())[..16].to_vec()
}

/// A span id: the first 8 bytes of the SHA-256 of `what` (never all zero in practice).
pub fn span_id(what: &str) -> Vec<u8> {
    let mut id = Sha256::digest(what.as_bytes())[..8].to_vec();
    if id.iter().all(|b| *b == 0) {
        id[7] = 1;
    }
    id
}

/// The root span's id for run `run_id`.
pub fn root_span_id(run_id: &str) -> Vec<u8> {
    span_id(&format!("herald-run:{run_id}"))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}
fn sv(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}
fn iv(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}
fn bv(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}
fn nanos(ms: i64) -> u64 {
    (ms.max(0) as u64) * 1_000_000
}

/// The configured plugin.
pub struct Otel {
    c: Config,
    traces_url: Url,
    metrics_url: Url,
    tracker: RunTracker,
}

impl Plugin for Otel {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        let base = config::url("endpoint", &c.endpoint)?;
        let traces_url = base.join("/v1/traces");
        let metrics_url = base.join("/v1/metrics");
        if !c.traces && !c.metrics {
            return Err(
                "config key `traces`: with both traces and metrics off nothing is sent".into(),
            );
        }
        if c.traces {
            herald_sdk::grants::require_http("endpoint", &traces_url.as_string())?;
        }
        if c.metrics {
            herald_sdk::grants::require_http("endpoint", &metrics_url.as_string())?;
        }
        config::check_timeout_ms(c.timeout_ms)?;
        config::not_blank("service_name", Some(&c.service_name))?;
        config::in_range(
            "max_spans_per_request",
            c.max_spans_per_request as u64,
            1,
            300,
        )?;
        for k in c.headers.keys() {
            let lower = k.to_ascii_lowercase();
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                || ["content-type", "content-length", "host"].contains(&lower.as_str())
            {
                return Err(format!(
                    "config key `headers.{k}`: not a header name the plugin may set"
                ));
            }
        }
        Ok(Otel {
            c,
            traces_url,
            metrics_url,
            tracker: RunTracker::host("otel:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        let (observed, fresh) = self.tracker.observe_fresh(event);
        let outcome = match observed {
            Observed::AlreadyFinished => Outcome::Ok,
            Observed::Progress(s) => {
                if !self.c.traces {
                    return Outcome::Ok;
                }
                let key = spans_key(&s.run_id);
                let mut spans: Vec<TaskSpan> = state::get_json(&key).unwrap_or_default();
                if fresh {
                    if let Some(t) = TaskSpan::of(event) {
                        spans.push(t);
                        state::set_json(&key, &spans);
                    }
                }
                if spans.len() < self.c.max_spans_per_request {
                    return Outcome::Ok;
                }
                let o = self.export_traces(&s, &spans, false);
                if matches!(o, Outcome::Ok) {
                    state::delete(&key);
                }
                o
            }
            Observed::Finished(s) => {
                let o = self.on_end(&s, event);
                if matches!(o, Outcome::Ok) {
                    state::delete(&parts_key(&s.run_id));
                }
                self.tracker.finish(&s.run_id, o)
            }
        };
        if let Some(p) = failure_reason(&outcome) {
            log::warn(&format!(
                "event {} (run {}): OTLP: {p}",
                event.id, event.run.id
            ));
        }
        outcome
    }
}

fn spans_key(run_id: &str) -> String {
    format!("otel:spans:{run_id}")
}
fn parts_key(run_id: &str) -> String {
    format!("otel:sent:{run_id}")
}

impl Otel {
    fn resource(&self, s: &RunSummary) -> Resource {
        let mut attributes = vec![
            sv("service.name", &self.c.service_name),
            sv("telemetry.sdk.name", SCOPE),
            sv("telemetry.sdk.language", "rust"),
        ];
        if let Some(c) = &s.controller {
            attributes.push(sv("host.name", c));
        }
        for (k, v) in &self.c.resource_attributes {
            attributes.push(sv(k, v));
        }
        Resource {
            attributes,
            ..Default::default()
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: SCOPE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }

    /// The child span of one task result of run `s`.
    pub fn task_span(&self, s: &RunSummary, t: &TaskSpan) -> Span {
        let name = format!("[{}] {}: {}", t.host, t.play, t.task);
        let mut attributes = vec![
            sv("ansible.task.module", &t.action),
            sv("ansible.task.message", &t.message),
            sv("ansible.task.name", &name),
            iv("ansible.task.result", t.rc),
            sv("ansible.task.host.name", &t.host),
            sv("ansible.task.host.status", &t.status),
            bv("ansible.task.changed", t.changed),
        ];
        attributes.retain(|a| {
            !matches!(&a.value, Some(AnyValue { value: Some(any_value::Value::StringValue(v)) }) if v.is_empty())
        });
        let (code, message) = match t.status.as_str() {
            "failed" | "unreachable" => (StatusCode::Error, t.message.clone()),
            "skipped" | "ignored" => (StatusCode::Unset, String::new()),
            _ => (StatusCode::Ok, String::new()),
        };
        let events = match (&t.error, code) {
            (Some(err), StatusCode::Error) => vec![span::Event {
                time_unix_nano: nanos(t.end_ms),
                name: "exception".into(),
                attributes: vec![
                    sv("exception.type", "BaseException"),
                    sv("exception.message", err),
                    sv("exception.escaped", "False"),
                ],
                ..Default::default()
            }],
            _ => vec![],
        };
        Span {
            trace_id: trace_id(&s.run_id),
            span_id: span_id(&t.event_id),
            parent_span_id: root_span_id(&s.run_id),
            name: if t.task.is_empty() {
                name.clone()
            } else {
                t.task.clone()
            },
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: nanos(t.start_ms),
            end_time_unix_nano: nanos(t.end_ms),
            attributes,
            events,
            status: Some(SpanStatus {
                message,
                code: code as i32,
            }),
            ..Default::default()
        }
    }

    /// The root span of finished run `s`.
    pub fn root_span(&self, s: &RunSummary, end_ms: i64) -> Span {
        let start = s.started_ms.unwrap_or(end_ms);
        let mut attributes = vec![
            sv("ansible.session", &s.run_id),
            sv("ansible.playbook", playbook_name(&s.playbook)),
            sv("herald.tenant", &s.tenant),
            sv("herald.run_id", &s.run_id),
        ];
        if let Some(c) = &s.controller {
            attributes.push(sv("ansible.host.name", c));
        }
        let failed = s.status() == RunStatus::Failed;
        Span {
            trace_id: trace_id(&s.run_id),
            span_id: root_span_id(&s.run_id),
            name: playbook_name(&s.playbook).to_string(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: nanos(start),
            end_time_unix_nano: nanos(end_ms.max(start)),
            attributes,
            status: Some(SpanStatus {
                message: String::new(),
                code: if failed {
                    StatusCode::Error
                } else {
                    StatusCode::Ok
                } as i32,
            }),
            ..Default::default()
        }
    }

    /// The trace export of `spans` of run `s` (with the root span at its end when `end`).
    pub fn trace_request(
        &self,
        s: &RunSummary,
        spans: &[TaskSpan],
        end: Option<i64>,
    ) -> ExportTraceServiceRequest {
        let mut out: Vec<Span> = spans.iter().map(|t| self.task_span(s, t)).collect();
        if let Some(end_ms) = end {
            out.push(self.root_span(s, end_ms));
        }
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource(s)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(Self::scope()),
                    spans: out,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The metrics export of finished run `s`, stamped `at_ms`.
    pub fn metrics_request(&self, s: &RunSummary, at_ms: i64) -> ExportMetricsServiceRequest {
        let status = s.status();
        let base = vec![
            sv("ansible.playbook", playbook_name(&s.playbook)),
            sv("herald.tenant", &s.tenant),
        ];
        let point = |value: f64, extra: Vec<KeyValue>| {
            let mut attributes = base.clone();
            attributes.extend(extra);
            NumberDataPoint {
                attributes,
                start_time_unix_nano: nanos(s.started_ms.unwrap_or(at_ms)),
                time_unix_nano: nanos(at_ms),
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }
        };
        let gauge =
            |name: &str, unit: &str, description: &str, points: Vec<NumberDataPoint>| Metric {
                name: name.into(),
                description: description.into(),
                unit: unit.into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..Default::default()
            };
        let st = || sv("ansible.playbook.status", status.as_str());
        let sum = |f: fn(&HostCounters) -> u32| s.hosts.iter().map(f).sum::<u32>() as f64;
        let count = |f: fn(&HostCounters) -> bool| s.hosts.iter().filter(|h| f(h)).count() as f64;
        let mut metrics = Vec::new();
        if let Some(d) = s.duration_ms() {
            metrics.push(gauge(
                "ansible.playbook.duration",
                "s",
                "Duration of the run, from the playbook's start to its stats.",
                vec![point(d as f64 / 1000.0, vec![st()])],
            ));
        }
        metrics.push(gauge(
            "ansible.playbook.success",
            "1",
            "1 when no host failed or was unreachable, else 0.",
            vec![point(
                if status == RunStatus::Failed {
                    0.0
                } else {
                    1.0
                },
                vec![],
            )],
        ));
        metrics.push(gauge(
            "ansible.playbook.changed",
            "{task}",
            "Changed results of the run (PLAY RECAP).",
            vec![point(sum(|h| h.changed), vec![st()])],
        ));
        metrics.push(gauge(
            "ansible.task.results",
            "{task}",
            "Task results of the run by status (PLAY RECAP totals).",
            [
                ("ok", sum(|h| h.ok)),
                ("changed", sum(|h| h.changed)),
                ("failed", sum(|h| h.failures)),
                ("unreachable", sum(|h| h.unreachable)),
                ("skipped", sum(|h| h.skipped)),
                ("rescued", sum(|h| h.rescued)),
                ("ignored", sum(|h| h.ignored)),
            ]
            .into_iter()
            .map(|(k, v)| point(v, vec![sv("ansible.task.status", k)]))
            .collect(),
        ));
        metrics.push(gauge(
            "ansible.hosts",
            "{host}",
            "Hosts of the run by state.",
            [
                ("total", s.hosts.len() as f64),
                ("changed", count(|h| h.changed > 0)),
                ("failed", count(|h| h.failures > 0)),
                ("unreachable", count(|h| h.unreachable > 0)),
            ]
            .into_iter()
            .map(|(k, v)| point(v, vec![sv("ansible.host.state", k)]))
            .collect(),
        ));
        metrics.push(gauge(
            "ansible.host.tasks",
            "{task}",
            "Task results per host (PLAY RECAP).",
            s.hosts
                .iter()
                .flat_map(|h| {
                    [
                        ("ok", h.ok),
                        ("changed", h.changed),
                        ("failed", h.failures),
                        ("unreachable", h.unreachable),
                        ("skipped", h.skipped),
                    ]
                    .into_iter()
                    .map(|(k, v)| {
                        point(
                            v as f64,
                            vec![
                                sv("ansible.host.name", &h.host),
                                sv("ansible.task.status", k),
                            ],
                        )
                    })
                    .collect::<Vec<_>>()
                })
                .collect(),
        ));
        metrics.retain(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => !g.data_points.is_empty(),
            _ => true,
        });
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource(s)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(Self::scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn export_traces(&self, s: &RunSummary, spans: &[TaskSpan], end: bool) -> Outcome {
        let end = if end { s.ended_ms } else { None };
        let req = self.trace_request(s, spans, end);
        let (o, body) = self.post(&self.traces_url, req.encode_to_vec());
        if let Some(p) = body
            .and_then(|b| ExportTraceServiceResponse::decode(b.as_slice()).ok())
            .and_then(|r| r.partial_success)
            .filter(|p| p.rejected_spans > 0 || !p.error_message.is_empty())
        {
            log::warn(&format!(
                "run {}: the collector rejected {} span(s): {}",
                s.run_id, p.rejected_spans, p.error_message
            ));
        }
        o
    }

    fn export_metrics(&self, s: &RunSummary, at_ms: i64) -> Outcome {
        let req = self.metrics_request(s, at_ms);
        let (o, body) = self.post(&self.metrics_url, req.encode_to_vec());
        if let Some(p) = body
            .and_then(|b| ExportMetricsServiceResponse::decode(b.as_slice()).ok())
            .and_then(|r| r.partial_success)
            .filter(|p| p.rejected_data_points > 0 || !p.error_message.is_empty())
        {
            log::warn(&format!(
                "run {}: the collector rejected {} data point(s): {}",
                s.run_id, p.rejected_data_points, p.error_message
            ));
        }
        o
    }

    /// The end of run `s`: its remaining spans and root span, then its metrics, each once.
    fn on_end(&self, s: &RunSummary, e: &Event) -> Outcome {
        let key = parts_key(&s.run_id);
        let mut sent: Vec<String> = state::get_json(&key).unwrap_or_default();
        if self.c.traces && !sent.iter().any(|p| p == "traces") {
            let spans: Vec<TaskSpan> = state::get_json(&spans_key(&s.run_id)).unwrap_or_default();
            let o = self.export_traces(s, &spans, true);
            if !matches!(o, Outcome::Ok) {
                return o;
            }
            state::delete(&spans_key(&s.run_id));
            sent.push("traces".into());
            state::set_json(&key, &sent);
        }
        if self.c.metrics && !sent.iter().any(|p| p == "metrics") {
            return self.export_metrics(s, s.ended_ms.unwrap_or(e.created_ms));
        }
        Outcome::Ok
    }

    /// POSTs one protobuf export; OTLP/HTTP retries only 429, 502, 503 and 504.
    fn post(&self, url: &Url, body: Vec<u8>) -> (Outcome, Option<Vec<u8>>) {
        let mut req = Request::new(Method::Post, url.clone())
            .timeout_ms(self.c.timeout_ms)
            .body("application/x-protobuf", body);
        for (k, v) in &self.c.headers {
            req = req.header(k.clone(), v.clone());
        }
        let (o, resp) = req.deliver();
        let status = resp.as_ref().map(|r| r.status).unwrap_or(0);
        let o = match o {
            Outcome::Retryable(r) if status >= 500 && ![502, 503, 504].contains(&status) => {
                herald_sdk::permanent(format!("{} (not retryable in OTLP/HTTP)", r.reason))
            }
            o => o,
        };
        (o, resp.map(|r| r.body))
    }
}

herald_sdk::export_plugin!(Otel);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{event, host_event, stats_event, FakeHost};
    use herald_sdk::EventKind;

    const RUN: &str = "9363c1dd-5a1b-4c2d-8e3f-0123456789ab";
    const URL: &str = "http://127.0.0.1:4318";

    fn otel(extra: &str) -> Otel {
        herald_sdk::build::<Otel>(&format!(r#"{{"endpoint":"{URL}"{extra}}}"#)).unwrap()
    }

    fn run() -> Vec<Event> {
        let mut start = event(EventKind::PlaybookOnStart, RUN, "site.yml");
        start.created_ms -= 5000;
        let mut ok = host_event(
            EventKind::RunnerOnOk,
            Status::Changed,
            RUN,
            "site.yml",
            "web1",
            "install",
            Some(r#"{"rc":0}"#),
        );
        ok.sequence = 2;
        let mut failed = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            RUN,
            "site.yml",
            "web2",
            "migrate",
            Some(r#"{"msg":"boom","rc":3,"stderr":"E1"}"#),
        );
        failed.sequence = 3;
        let mut skipped = host_event(
            EventKind::RunnerOnSkipped,
            Status::Skipped,
            RUN,
            "site.yml",
            "db1",
            "migrate",
            Some(r#"{"skip_reason":"Conditional result was False"}"#),
        );
        skipped.sequence = 4;
        let mut st = stats_event(
            RUN,
            "site.yml",
            &[
                ("web1", 1, 1, 0, 0, 0),
                ("web2", 0, 0, 1, 0, 0),
                ("db1", 0, 0, 0, 0, 1),
            ],
            None,
        );
        st.sequence = 5;
        vec![start, ok, failed, skipped, st]
    }

    #[test]
    fn ids_derive_from_the_run_as_the_callback_does() {
        assert_eq!(
            trace_id(RUN),
            (0..16)
                .map(|i| u8::from_str_radix(
                    &"9363c1dd5a1b4c2d8e3f0123456789ab"[2 * i..2 * i + 2],
                    16
                )
                .unwrap())
                .collect::<Vec<_>>()
        );
        assert_eq!(trace_id("not-a-uuid").len(), 16);
        assert_ne!(span_id("a"), span_id("b"));
        assert_eq!(root_span_id(RUN), root_span_id(RUN));
    }

    #[test]
    fn a_run_exports_its_spans_then_its_metrics_once() {
        let host = FakeHost::new(&[URL]);
        host.respond(&format!("{URL}/v1/traces"), 200, &[], "")
            .respond(
                &format!("{URL}/v1/metrics"),
                503,
                &[("Retry-After", "1")],
                "",
            )
            .respond(&format!("{URL}/v1/metrics"), 200, &[], "");
        host.set_now_ms(0);
        let mut o = otel(
            r#","headers":{"x-api-key":"k"},"resource_attributes":{"deployment.environment":"ci"}"#,
        );
        let evs = run();
        for e in &evs[..4] {
            assert!(matches!(
                o.handle(&EventRef::from(e.clone()), 1),
                Outcome::Ok
            ));
        }
        assert!(
            host.requests().is_empty(),
            "spans wait for the end of the run"
        );
        let stats = EventRef::from(evs[4].clone());
        assert!(matches!(o.handle(&stats, 1), Outcome::Retryable(_)));
        assert!(matches!(o.handle(&stats, 2), Outcome::Ok));
        let sent = host.requests();
        let paths: Vec<&str> = sent.iter().map(|r| r.url.trim_start_matches(URL)).collect();
        assert_eq!(
            paths,
            ["/v1/traces", "/v1/metrics", "/v1/metrics"],
            "traces sent once"
        );
        assert_eq!(
            sent[0].header("content-type"),
            Some("application/x-protobuf")
        );
        assert_eq!(sent[0].header("x-api-key"), Some("k"));

        let req = ExportTraceServiceRequest::decode(sent[0].body.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let res: Vec<&str> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert!(res.contains(&"service.name") && res.contains(&"deployment.environment"));
        let spans = &rs.scope_spans[0].spans;
        assert_eq!(spans.len(), 4);
        let root = &spans[3];
        assert_eq!(root.name, "site.yml");
        assert_eq!(root.kind, span::SpanKind::Server as i32);
        assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.start_time_unix_nano, nanos(evs[0].created_ms));
        assert_eq!(root.end_time_unix_nano, nanos(evs[4].created_ms));
        for sp in &spans[..3] {
            assert_eq!(sp.trace_id, trace_id(RUN));
            assert_eq!(sp.parent_span_id, root.span_id);
        }
        let failed = &spans[1];
        assert_eq!(failed.name, "migrate");
        assert_eq!(
            failed.status.as_ref().unwrap().code,
            StatusCode::Error as i32
        );
        assert_eq!(failed.status.as_ref().unwrap().message, "boom");
        assert_eq!(failed.events[0].name, "exception");
        let attr = |sp: &Span, k: &str| {
            sp.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            attr(failed, "ansible.task.name"),
            Some(any_value::Value::StringValue(
                "[web2] Play one: migrate".into()
            ))
        );
        assert_eq!(
            attr(failed, "ansible.task.result"),
            Some(any_value::Value::IntValue(3))
        );
        assert_eq!(
            attr(&spans[2], "ansible.task.message"),
            Some(any_value::Value::StringValue(
                "Conditional result was False".into()
            ))
        );
        assert_eq!(
            spans[2].status.as_ref().unwrap().code,
            StatusCode::Unset as i32
        );
        assert_eq!(
            attr(&spans[0], "ansible.task.changed"),
            Some(any_value::Value::BoolValue(true))
        );

        let m = ExportMetricsServiceRequest::decode(sent[2].body.as_slice()).unwrap();
        let metrics = &m.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ansible.playbook.duration",
                "ansible.playbook.success",
                "ansible.playbook.changed",
                "ansible.task.results",
                "ansible.hosts",
                "ansible.host.tasks"
            ]
        );
        let Some(metric::Data::Gauge(g)) = &metrics[0].data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(65.0))
        );
        assert!(host
            .state()
            .keys()
            .all(|k| !k.starts_with("otel:spans:") && !k.starts_with("otel:sent:")));
    }

    #[test]
    fn spans_go_out_mid_run_at_the_limit_and_statuses_map_as_otlp_says() {
        let host = FakeHost::new(&[URL]);
        host.respond(&format!("{URL}/v1/traces"), 500, &[], "bad")
            .respond(&format!("{URL}/v1/traces"), 200, &[], "");
        let mut o = otel(r#","max_spans_per_request":2,"metrics":false"#);
        let evs = run();
        assert!(matches!(
            o.handle(&EventRef::from(evs[1].clone()), 1),
            Outcome::Ok
        ));
        match o.handle(&EventRef::from(evs[2].clone()), 1) {
            Outcome::Permanent(p) => {
                assert!(p.contains("HTTP 500") && p.contains("not retryable"), "{p}")
            }
            x => panic!("{x:?}"),
        }
        // Redelivered (the operator requeued it): the same two spans, not three.
        assert!(matches!(
            o.handle(&EventRef::from(evs[2].clone()), 2),
            Outcome::Ok
        ));
        let sent = host.requests();
        assert_eq!(sent[0].body, sent[1].body);
        let req = ExportTraceServiceRequest::decode(sent[1].body.as_slice()).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
    }

    #[test]
    fn config_errors_name_the_key() {
        for (json, want) in [
            (r#"{}"#.to_string(), "missing field `endpoint`"),
            (r#"{"endpoint":"grpc://x:4317"}"#.into(), "`endpoint`"),
            (
                format!(r#"{{"endpoint":"{URL}","traces":false,"metrics":false}}"#),
                "`traces`",
            ),
            (
                format!(r#"{{"endpoint":"{URL}","max_spans_per_request":0}}"#),
                "`max_spans_per_request`",
            ),
            (
                format!(r#"{{"endpoint":"{URL}","headers":{{"Content-Type":"x"}}}}"#),
                "`headers.Content-Type`",
            ),
            (
                format!(r#"{{"endpoint":"{URL}","service_name":" "}}"#),
                "`service_name`",
            ),
            (
                format!(r#"{{"endpoint":"{URL}","protocol":"grpc"}}"#),
                "unknown field `protocol`",
            ),
        ] {
            let err = herald_sdk::build::<Otel>(&json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
