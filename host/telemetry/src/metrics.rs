//! Herald's own Prometheus series (through the `metrics` facade) and the
//! series plugins define through the `metrics` import, rendered together on
//! `/metrics`.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Histogram buckets (seconds) for latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "herald_events_ingested_total",
        "Events committed to the journal, by tenant and kind."
    );
    describe_counter!(
        "herald_events_duplicate_total",
        "Events refused as duplicates (same tenant and uuid)."
    );
    describe_counter!(
        "herald_ingest_batches_total",
        "Ingest requests by tenant and HTTP status."
    );
    describe_counter!(
        "herald_ingest_bytes_total",
        "Bytes of accepted ingest bodies (decompressed)."
    );
    describe_counter!(
        "herald_callback_dropped_events_total",
        "Events the senders' spools dropped (X-Herald-Dropped)."
    );
    describe_histogram!(
        "herald_journal_commit_seconds",
        "Time to commit one ingest batch."
    );
    describe_counter!(
        "herald_deliveries_total",
        "Delivery attempts by tenant, plugin instance and outcome (ok, retry, dead)."
    );
    describe_histogram!(
        "herald_delivery_seconds",
        "Time of one plugin call, by tenant and plugin instance."
    );
    describe_counter!(
        "herald_plugin_faults_total",
        "Plugin faults by tenant, instance and reason (trap, panic, cpu_timeout, wall_timeout, memory, denied_http, denied_socket, http_limit, log_limit, configure, instantiate)."
    );
    describe_counter!(
        "herald_plugin_instantiations_total",
        "Plugin instances created (the first, and one after each fault)."
    );
    metrics::describe_gauge!(
        "herald_plugin_state",
        "1 for the state a plugin instance is in (running, paused by its circuit breaker, probing), 0 for the others."
    );
    describe_counter!(
        "herald_plugin_breaker_opened_total",
        "Times a plugin instance's circuit breaker opened (the instance was paused)."
    );
    describe_counter!(
        "herald_compile_cache_total",
        "Component loads by compile cache result (hit, miss, corrupt)."
    );
    use metrics::{describe_gauge, Unit};
    describe_counter!(
        "herald_http_requests_total",
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        "herald_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template."
    );
    describe_counter!(
        "herald_journal_commits_total",
        "Journal write transactions by result (ok, error)."
    );
    describe_counter!(
        "herald_journal_pruned_events_total",
        "Events removed by retention pruning."
    );
    describe_counter!(
        "herald_config_reloads_total",
        "Configuration reloads by result."
    );
    describe_counter!(
        "herald_trace_spans_exported_total",
        "Spans posted to the OTLP endpoint, by result (ok, error)."
    );
    describe_counter!(
        "herald_trace_spans_dropped_total",
        "Spans dropped because the OTLP export queue was full."
    );
    describe_gauge!(
        "herald_build_info",
        "Always 1; labels carry the version of the running host."
    );
    describe_gauge!(
        "herald_dead_letters",
        "Dead-lettered deliveries currently in the journal, by tenant and plugin instance."
    );
    describe_gauge!(
        "herald_journal_size_bytes",
        Unit::Bytes,
        "Size of the journal database file (with its WAL)."
    );
    describe_gauge!(
        "herald_queue_depth",
        "Pending deliveries per plugin instance."
    );
    describe_gauge!(
        "herald_queue_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest pending delivery per plugin instance."
    );
    describe_gauge!(
        "herald_plugin_memory_bytes",
        Unit::Bytes,
        "Linear memory held by all plugin instances together (bounded by runtime.max_plugin_memory_mib)."
    );
    describe_gauge!(
        "herald_runs_active",
        "Runs with recent events and no final stats event yet, by tenant."
    );
}

/// Herald's metric registry plus the plugin-defined series.
#[derive(Clone, Default)]
pub struct Metrics {
    plugin_series: Arc<Mutex<BTreeMap<String, Family>>>,
}

/// Kind of a plugin-defined series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
    Histogram,
}

impl SeriesKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

struct Family {
    kind: SeriesKind,
    help: String,
    series: BTreeMap<Vec<(String, String)>, Value>,
}

enum Value {
    Scalar(f64),
    Histogram {
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// Why a plugin's series was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SeriesError {
    #[error("invalid metric name {0:?}")]
    Name(String),
    #[error("metric names starting with `herald_` are reserved for the host: {0:?}")]
    Reserved(String),
    #[error("invalid label name {0:?}")]
    Label(String),
    #[error("{name:?} is already a {existing}, not a {wanted}")]
    KindMismatch {
        name: String,
        existing: &'static str,
        wanted: &'static str,
    },
    #[error("counter {0:?} cannot decrease")]
    Negative(String),
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

impl Metrics {
    /// Creates the registry and installs Herald's recorder (once per process).
    pub fn new() -> Self {
        let _ = prometheus();
        Self::default()
    }

    /// Records a plugin-defined sample. `tenant` and `plugin` labels are
    /// added by the host and override any the plugin sent.
    pub fn plugin_sample(
        &self,
        tenant: &str,
        plugin: &str,
        kind: SeriesKind,
        name: &str,
        help: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), SeriesError> {
        if !valid_name(name, true) {
            return Err(SeriesError::Name(name.into()));
        }
        if name.starts_with("herald_") {
            return Err(SeriesError::Reserved(name.into()));
        }
        let mut key: Vec<(String, String)> = Vec::with_capacity(labels.len() + 2);
        for (k, v) in labels {
            if !valid_name(&k, false) || k.starts_with("__") {
                return Err(SeriesError::Label(k));
            }
            if k != "tenant" && k != "plugin" {
                key.push((k, v));
            }
        }
        key.push(("tenant".into(), tenant.into()));
        key.push(("plugin".into(), plugin.into()));
        key.sort();
        if kind == SeriesKind::Counter && value < 0.0 {
            return Err(SeriesError::Negative(name.into()));
        }
        let mut families = self.plugin_series.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        if family.kind != kind {
            return Err(SeriesError::KindMismatch {
                name: name.into(),
                existing: family.kind.as_str(),
                wanted: kind.as_str(),
            });
        }
        match kind {
            SeriesKind::Counter => match family.series.entry(key).or_insert(Value::Scalar(0.0)) {
                Value::Scalar(v) => *v += value,
                Value::Histogram { .. } => {}
            },
            SeriesKind::Gauge => {
                family.series.insert(key, Value::Scalar(value));
            }
            SeriesKind::Histogram => {
                let entry = family
                    .series
                    .entry(key)
                    .or_insert_with(|| Value::Histogram {
                        buckets: vec![0; LATENCY_BUCKETS.len()],
                        sum: 0.0,
                        count: 0,
                    });
                if let Value::Histogram {
                    buckets,
                    sum,
                    count,
                } = entry
                {
                    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                        if value <= *b {
                            buckets[i] += 1;
                        }
                    }
                    *sum += value;
                    *count += 1;
                }
            }
        }
        Ok(())
    }

    /// Prometheus text exposition (format 0.0.4) of every series.
    pub fn render(&self) -> String {
        let mut out = prometheus().map(|h| h.render()).unwrap_or_default();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let families = self.plugin_series.lock().unwrap_or_else(|p| p.into_inner());
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, value) in &family.series {
                match value {
                    Value::Scalar(v) => {
                        let _ = writeln!(out, "{name}{} {}", fmt_labels(labels, None), fmt_f64(*v));
                    }
                    Value::Histogram {
                        buckets,
                        sum,
                        count,
                    } => {
                        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                            let le = fmt_f64(*b);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                fmt_labels(labels, Some(&le)),
                                buckets[i]
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            fmt_labels(labels, Some("+Inf"))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            fmt_labels(labels, None),
                            fmt_f64(*sum)
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", fmt_labels(labels, None));
                    }
                }
            }
        }
        out
    }
}

/// The series of one tenant out of a Prometheus text exposition: the
/// samples whose `tenant` label is exactly `tenant` (Herald's series of its
/// ingest, journal and plugin instances, and its plugins' own series), with
/// the `# HELP`/`# TYPE` lines of the families that keep a sample. Series
/// without a `tenant` label (process-wide ones) are left out.
pub fn tenant_series(text: &str, tenant: &str) -> String {
    let mut out = String::new();
    // The comment lines of the current family, written before its first kept sample.
    let mut header: Vec<&str> = Vec::new();
    let mut header_family = "";
    let mut header_written = false;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let family = rest.split(' ').next().unwrap_or("");
            if family != header_family {
                header.clear();
                header_family = family;
                header_written = false;
            }
            header.push(line);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if label_value(line, "tenant").as_deref() != Some(tenant) {
            continue;
        }
        if !header_written {
            for h in header.drain(..) {
                out.push_str(h);
                out.push('\n');
            }
            header_written = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The (unescaped) value of label `name` of one sample line
/// (`metric{a="x",b="y"} 1`); `None` when it has no such label or the line
/// is malformed. Values are read with their escapes, so a value that
/// contains `tenant="..."` is never mistaken for the label.
fn label_value(line: &str, name: &str) -> Option<String> {
    let open = line.find(['{', ' '])?;
    if line.as_bytes()[open] != b'{' {
        return None;
    }
    let mut chars = line[open + 1..].chars();
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            if c == '}' {
                return None;
            }
            key.push(c);
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        if key.trim() == name {
            return Some(value);
        }
        match chars.next()? {
            ',' => {
                // Prometheus allows a trailing comma before `}`.
                if chars.clone().next() == Some('}') {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_labels(labels: &[(String, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_series_get_tenant_labels_and_cannot_take_herald_names() {
        let m = Metrics::default();
        m.plugin_sample(
            "t",
            "p",
            SeriesKind::Counter,
            "ansible_runs_total",
            "Runs.",
            vec![("playbook".into(), "site.yml".into())],
            2.0,
        )
        .unwrap();
        m.plugin_sample(
            "t",
            "p",
            SeriesKind::Counter,
            "ansible_runs_total",
            "Runs.",
            vec![
                ("playbook".into(), "site.yml".into()),
                ("tenant".into(), "spoof".into()),
            ],
            1.0,
        )
        .unwrap();
        assert_eq!(
            m.plugin_sample(
                "t",
                "p",
                SeriesKind::Gauge,
                "herald_events_ingested_total",
                "",
                vec![],
                1.0
            ),
            Err(SeriesError::Reserved("herald_events_ingested_total".into()))
        );
        assert!(matches!(
            m.plugin_sample(
                "t",
                "p",
                SeriesKind::Gauge,
                "ansible_runs_total",
                "",
                vec![],
                1.0
            ),
            Err(SeriesError::KindMismatch { .. })
        ));
        assert!(m
            .plugin_sample("t", "p", SeriesKind::Gauge, "bad name", "", vec![], 1.0)
            .is_err());
        let text = m.render();
        assert!(
            text.contains(
                "ansible_runs_total{playbook=\"site.yml\",plugin=\"p\",tenant=\"t\"} 3\n"
            ),
            "{text}"
        );
        assert!(!text.contains("spoof"));
    }

    #[test]
    fn a_tenant_gets_only_its_own_series_with_their_headers() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n\
            a_total{tenant=\"t\",plugin=\"p\"} 1\n\
            a_total{tenant=\"u\",plugin=\"q\"} 2\n\
            a_total{plugin=\"x\",playbook=\"tenant=\\\"t\\\"\",tenant=\"u\"} 3\n\
            a_total{tenant=\"tt\"} 4\n\
            # HELP b B.\n# TYPE b gauge\nb{tenant=\"u\"} 5\n\
            # TYPE h histogram\nh_bucket{tenant=\"t\",le=\"1\"} 6\nh_sum{tenant=\"t\"} 7\nh_count{tenant=\"t\"} 1\n\
            herald_build_info{version=\"1\"} 1\nherald_journal_size_bytes 9\n";
        let got = tenant_series(text, "t");
        assert_eq!(
            got,
            "# HELP a_total A.\n# TYPE a_total counter\na_total{tenant=\"t\",plugin=\"p\"} 1\n\
             # TYPE h histogram\nh_bucket{tenant=\"t\",le=\"1\"} 6\nh_sum{tenant=\"t\"} 7\nh_count{tenant=\"t\"} 1\n"
        );
        assert_eq!(tenant_series(text, "nobody"), "");
        assert_eq!(
            label_value("m{a=\"x\\\\\",tenant=\"v\"} 1", "tenant").as_deref(),
            Some("v")
        );
        assert_eq!(label_value("m 1", "tenant"), None);
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::default();
        m.plugin_sample(
            "t",
            "p",
            SeriesKind::Histogram,
            "run_seconds",
            "Run time.",
            vec![],
            0.003,
        )
        .unwrap();
        m.plugin_sample(
            "t",
            "p",
            SeriesKind::Histogram,
            "run_seconds",
            "Run time.",
            vec![],
            20.0,
        )
        .unwrap();
        let text = m.render();
        assert!(
            text.contains("run_seconds_bucket{plugin=\"p\",tenant=\"t\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("run_seconds_bucket{plugin=\"p\",tenant=\"t\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("run_seconds_count{plugin=\"p\",tenant=\"t\"} 2"),
            "{text}"
        );
    }
}
