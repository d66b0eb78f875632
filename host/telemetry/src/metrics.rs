//! Metrics: the one `prometheus` registry of the process. Herald's own
//! series are typed handles created and registered once ([`host`]); the
//! series plugins define through the `metrics` import live in a collector of
//! the same registry ([`Metrics::plugin_sample`]); `/metrics` renders both
//! with `prometheus::TextEncoder`.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

/// Histogram buckets (seconds) for latencies, also used for plugin histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Most series one plugin instance (tenant + instance name) may define, over
/// all its families. Beyond it samples of new series are refused (existing
/// ones keep updating), counted in `herald_plugin_series_refused_total` and
/// logged once per instance:
/// a plugin that puts an unbounded value (a task name, a host) in a label
/// would otherwise grow the host's memory and every scrape without end.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// The process-wide registry: Herald's series and the plugins' series.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Herald's own series, created and registered once; call sites keep (or
/// look up without allocating) the labelled child they need.
pub struct HostMetrics {
    /// `herald_events_ingested_total{tenant,kind}`
    pub events_ingested: IntCounterVec,
    /// `herald_events_duplicate_total{tenant}`
    pub events_duplicate: IntCounterVec,
    /// `herald_ingest_batches_total{tenant,status}`
    pub ingest_batches: IntCounterVec,
    /// `herald_ingest_bytes_total{tenant}`
    pub ingest_bytes: IntCounterVec,
    /// `herald_callback_dropped_events_total{tenant}`
    pub callback_dropped_events: IntCounterVec,
    /// `herald_journal_commit_seconds`
    pub journal_commit_seconds: Histogram,
    /// `herald_journal_checkpoint_seconds`
    pub journal_checkpoint_seconds: Histogram,
    /// `herald_journal_commits_total{result}`
    pub journal_commits: IntCounterVec,
    /// `herald_journal_pruned_events_total`
    pub journal_pruned_events: IntCounter,
    /// `herald_lease_events_total{event}`: claim, takeover, lost, released, fenced.
    pub lease_events: IntCounterVec,
    /// `herald_lease_held{plugin}`: 1 while this replica delivers for the instance.
    pub lease_held: IntGaugeVec,
    /// `herald_deliveries_total{tenant,plugin,outcome}`
    pub deliveries: IntCounterVec,
    /// `herald_delivery_seconds{tenant,plugin}`
    pub delivery_seconds: HistogramVec,
    /// `herald_plugin_faults_total{tenant,plugin,reason}`
    pub plugin_faults: IntCounterVec,
    /// `herald_plugin_instantiations_total{tenant,plugin}`
    pub plugin_instantiations: IntCounterVec,
    /// `herald_plugin_state{tenant,plugin,state}`
    pub plugin_state: IntGaugeVec,
    /// `herald_template_renders_total{tenant,plugin,outcome}`
    pub template_renders: IntCounterVec,
    /// `herald_plugin_breaker_opened_total{tenant,plugin}`
    pub plugin_breaker_opened: IntCounterVec,
    /// `herald_plugin_series_refused_total{tenant,plugin}`
    pub plugin_series_refused: IntCounterVec,
    /// `herald_plugin_memory_bytes`
    pub plugin_memory_bytes: IntGauge,
    /// `herald_compile_cache_total{result}`
    pub compile_cache: IntCounterVec,
    /// `herald_http_requests_total{method,route,status}`
    pub http_requests: IntCounterVec,
    /// `herald_http_request_duration_seconds{method,route}`
    pub http_request_duration_seconds: HistogramVec,
    /// `herald_config_reloads_total{result}`
    pub config_reloads: IntCounterVec,
    /// `herald_trace_spans_exported_total{result}`
    pub trace_spans_exported: IntCounterVec,
    /// `herald_trace_spans_dropped_total`
    pub trace_spans_dropped: IntCounter,
    /// `herald_build_info{version}`
    pub build_info: IntGaugeVec,
    /// `herald_dead_letters{tenant,plugin}`
    pub dead_letters: IntGaugeVec,
    /// `herald_journal_size_bytes`
    pub journal_size_bytes: IntGauge,
    /// `herald_queue_depth{tenant,plugin}`
    pub queue_depth: IntGaugeVec,
    /// `herald_queue_oldest_age_seconds{tenant,plugin}`
    pub queue_oldest_age_seconds: GaugeVec,
    /// `herald_runs_active{tenant}`
    pub runs_active: IntGaugeVec,
}

/// Registers `c` in the process registry; the names are fixed and unique,
/// so a failure is a programming error caught by the unit tests.
fn reg<C: Collector + Clone + 'static>(c: C) -> C {
    let mut order = LABEL_ORDER.write().unwrap_or_else(|p| p.into_inner());
    for desc in c.desc() {
        order.insert(desc.fq_name.clone(), desc.variable_labels.clone());
    }
    drop(order);
    if let Err(e) = REGISTRY.register(Box::new(c.clone())) {
        tracing::error!("metric registration failed: {e}");
    }
    c
}

/// The label names of each of Herald's families in the order they were
/// declared. The `prometheus` crate sorts a sample's labels by name; the
/// host's series have always been written in declaration order
/// (`{tenant="a",plugin="p",outcome="ok"}`), which dashboards' and tests'
/// literal matches rely on, so [`encode`] puts them back in that order.
static LABEL_ORDER: LazyLock<RwLock<HashMap<String, Vec<String>>>> =
    LazyLock::new(Default::default);

/// Puts the labels of Herald's own samples back in declaration order (see
/// [`LABEL_ORDER`]); plugin series keep the sorted order they always had.
fn declared_label_order(families: &mut [MetricFamily]) {
    let order = LABEL_ORDER.read().unwrap_or_else(|p| p.into_inner());
    for mf in families.iter_mut() {
        let Some(names) = order.get(mf.name()) else {
            continue;
        };
        if names.len() < 2 {
            continue;
        }
        for m in mf.mut_metric().iter_mut() {
            let pos = |l: &proto::LabelPair| names.iter().position(|n| n == l.name());
            m.mut_label().sort_by_key(|l| pos(l).unwrap_or(usize::MAX));
        }
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    reg(IntCounter::new(name, help).expect("valid metric name"))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    reg(IntGauge::new(name, help).expect("valid metric name"))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric name"))
}

fn histogram(name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    reg(Histogram::with_opts(opts).expect("valid metric name"))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    reg(HistogramVec::new(opts, labels).expect("valid metric name"))
}

const TP: &[&str] = &["tenant", "plugin"];

static HOST: LazyLock<HostMetrics> = LazyLock::new(|| {
    HostMetrics {
    events_ingested: counter_vec(
        "herald_events_ingested_total",
        "Events committed to the journal, by tenant and kind.",
        &["tenant", "kind"],
    ),
    events_duplicate: counter_vec(
        "herald_events_duplicate_total",
        "Events refused as duplicates (same tenant and uuid).",
        &["tenant"],
    ),
    ingest_batches: counter_vec(
        "herald_ingest_batches_total",
        "Ingest requests by tenant and HTTP status.",
        &["tenant", "status"],
    ),
    ingest_bytes: counter_vec(
        "herald_ingest_bytes_total",
        "Bytes of accepted ingest bodies (decompressed).",
        &["tenant"],
    ),
    callback_dropped_events: counter_vec(
        "herald_callback_dropped_events_total",
        "Events the senders' spools dropped (X-Herald-Dropped).",
        &["tenant"],
    ),
    journal_commit_seconds: histogram(
        "herald_journal_commit_seconds",
        "Time to commit one ingest batch.",
    ),
    journal_checkpoint_seconds: histogram(
        "herald_journal_checkpoint_seconds",
        "Time of one background WAL checkpoint.",
    ),
    journal_commits: counter_vec(
        "herald_journal_commits_total",
        "Journal write transactions by result (ok, error).",
        &["result"],
    ),
    lease_events: counter_vec(
        "herald_lease_events_total",
        "Plugin instance leases by event: claim, takeover (of an expired holder's), lost, released, fenced (outcomes refused).",
        &["event"],
    ),
    lease_held: gauge_vec(
        "herald_lease_held",
        "1 while this replica holds the instance's lease and delivers for it.",
        &["plugin"],
    ),
    journal_pruned_events: counter(
        "herald_journal_pruned_events_total",
        "Events removed by retention pruning.",
    ),
    deliveries: counter_vec(
        "herald_deliveries_total",
        "Delivery attempts by tenant, plugin instance and outcome (ok, retry, dead).",
        &["tenant", "plugin", "outcome"],
    ),
    delivery_seconds: histogram_vec(
        "herald_delivery_seconds",
        "Time of one plugin call, by tenant and plugin instance.",
        TP,
    ),
    plugin_faults: counter_vec(
        "herald_plugin_faults_total",
        "Plugin faults by tenant, instance and reason (trap, panic, cpu_timeout, wall_timeout, memory, denied_http, denied_socket, http_limit, log_limit, configure, instantiate).",
        &["tenant", "plugin", "reason"],
    ),
    plugin_instantiations: counter_vec(
        "herald_plugin_instantiations_total",
        "Plugin instances created (the first, and one after each fault).",
        TP,
    ),
    template_renders: counter_vec(
        "herald_template_renders_total",
        "Message template renders for plugins, by outcome (ok, failed: a runtime error or a limit).",
        &["tenant", "plugin", "outcome"],
    ),
    plugin_state: gauge_vec(
        "herald_plugin_state",
        "1 for the state a plugin instance is in (running, paused by its circuit breaker, probing), 0 for the others.",
        &["tenant", "plugin", "state"],
    ),
    plugin_breaker_opened: counter_vec(
        "herald_plugin_breaker_opened_total",
        "Times a plugin instance's circuit breaker opened (the instance was paused).",
        TP,
    ),
    plugin_series_refused: counter_vec(
        "herald_plugin_series_refused_total",
        "Samples of new plugin-defined series refused because the plugin instance reached its cap on series.",
        TP,
    ),
    plugin_memory_bytes: gauge(
        "herald_plugin_memory_bytes",
        "Linear memory held by all plugin instances together (bounded by runtime.max_plugin_memory_mib).",
    ),
    compile_cache: counter_vec(
        "herald_compile_cache_total",
        "Component loads by compile cache result (hit, miss, corrupt).",
        &["result"],
    ),
    http_requests: counter_vec(
        "herald_http_requests_total",
        "HTTP requests by method, route template and status.",
        &["method", "route", "status"],
    ),
    http_request_duration_seconds: histogram_vec(
        "herald_http_request_duration_seconds",
        "HTTP request latency by method and route template.",
        &["method", "route"],
    ),
    config_reloads: counter_vec(
        "herald_config_reloads_total",
        "Configuration reloads by result.",
        &["result"],
    ),
    trace_spans_exported: counter_vec(
        "herald_trace_spans_exported_total",
        "Spans posted to the OTLP endpoint, by result (ok, error).",
        &["result"],
    ),
    trace_spans_dropped: counter(
        "herald_trace_spans_dropped_total",
        "Spans dropped because the OTLP export queue was full.",
    ),
    build_info: gauge_vec(
        "herald_build_info",
        "Always 1; labels carry the version of the running host.",
        &["version"],
    ),
    dead_letters: gauge_vec(
        "herald_dead_letters",
        "Dead-lettered deliveries currently in the journal, by tenant and plugin instance.",
        TP,
    ),
    journal_size_bytes: gauge(
        "herald_journal_size_bytes",
        "Size of the journal database file (with its WAL).",
    ),
    queue_depth: gauge_vec(
        "herald_queue_depth",
        "Pending deliveries per plugin instance.",
        TP,
    ),
    queue_oldest_age_seconds: reg(
        GaugeVec::new(
            Opts::new(
                "herald_queue_oldest_age_seconds",
                "Age of the oldest pending delivery per plugin instance.",
            ),
            TP,
        )
        .expect("valid metric name"),
    ),
    runs_active: gauge_vec(
        "herald_runs_active",
        "Runs with recent events and no final stats event yet, by tenant.",
        &["tenant"],
    ),
}
});

/// Herald's own series (registered in [`registry`] on first use).
pub fn host() -> &'static HostMetrics {
    &HOST
}

/// One tenant's ingest series, resolved once per tenant (see
/// [`ingest_for`]) so that a batch does not hash its label sets again.
pub struct TenantIngest {
    /// `herald_ingest_batches_total{tenant,status="202"}`, the common case.
    pub accepted_batches: IntCounter,
    /// `herald_ingest_bytes_total{tenant}`
    pub bytes: IntCounter,
    /// `herald_events_duplicate_total{tenant}`
    pub duplicate: IntCounter,
    /// `herald_callback_dropped_events_total{tenant}`
    pub callback_dropped: IntCounter,
    tenant: String,
    /// `herald_events_ingested_total{tenant,kind}` by kind, filled as kinds
    /// arrive (a few dozen at most: the kind names are a fixed table).
    kinds: RwLock<Vec<(&'static str, IntCounter)>>,
}

impl TenantIngest {
    /// Adds `n` to `herald_events_ingested_total{tenant,kind}`.
    pub fn ingested(&self, kind: &'static str, n: u64) {
        let known = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known.iter().find(|(k, _)| *k == kind) {
            c.inc_by(n);
            return;
        }
        drop(known);
        let c = host()
            .events_ingested
            .with_label_values(&[self.tenant.as_str(), kind]);
        c.inc_by(n);
        let mut known = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        if !known.iter().any(|(k, _)| *k == kind) {
            known.push((kind, c));
        }
    }
}

static INGEST: LazyLock<RwLock<HashMap<String, Arc<TenantIngest>>>> =
    LazyLock::new(Default::default);

/// The ingest series of `tenant`, created on its first batch. Tenants are
/// the configured ones (a request without a valid token never gets here),
/// so the map stays as small as the configuration.
pub fn ingest_for(tenant: &str) -> Arc<TenantIngest> {
    if let Some(t) = INGEST.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
        return t.clone();
    }
    let h = host();
    let t = Arc::new(TenantIngest {
        accepted_batches: h.ingest_batches.with_label_values(&[tenant, "202"]),
        bytes: h.ingest_bytes.with_label_values(&[tenant]),
        duplicate: h.events_duplicate.with_label_values(&[tenant]),
        callback_dropped: h.callback_dropped_events.with_label_values(&[tenant]),
        tenant: tenant.to_string(),
        kinds: RwLock::new(Vec::new()),
    });
    INGEST
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(tenant.to_string())
        .or_insert(t)
        .clone()
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

/// Why a plugin's sample was refused.
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

/// What became of an accepted sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Added to its series.
    Stored,
    /// A new series beyond [`MAX_SERIES_PER_PLUGIN`]: counted in
    /// `herald_plugin_series_refused_total`, logged the first time.
    OverCap,
}

struct Family {
    kind: SeriesKind,
    help: String,
    series: BTreeMap<Vec<(String, String)>, Value>,
}

enum Value {
    Scalar(f64),
    Histogram {
        /// Per-bucket (not cumulative) counts, one per [`LATENCY_BUCKETS`].
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Default)]
struct PluginSeries {
    families: BTreeMap<String, Family>,
    /// Series per (tenant, plugin instance), for the cap.
    per_plugin: HashMap<(String, String), usize>,
    /// Instances already warned about reaching the cap.
    warned: HashSet<(String, String)>,
}

/// The plugins' series as a `prometheus` collector, so that the registry
/// gathers and encodes them with Herald's own.
#[derive(Clone, Default)]
struct PluginCollector(Arc<Mutex<PluginSeries>>);

impl Collector for PluginCollector {
    fn desc(&self) -> Vec<&Desc> {
        // The families are not known in advance (plugins declare them at
        // run time), which the registry allows for one such collector.
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.0.lock().unwrap_or_else(|p| p.into_inner());
        series
            .families
            .iter()
            .filter(|(_, f)| !f.series.is_empty())
            .map(|(name, f)| family_proto(name, f))
            .collect()
    }
}

fn family_proto(name: &str, f: &Family) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(f.help.clone());
    mf.set_field_type(match f.kind {
        SeriesKind::Counter => MetricType::COUNTER,
        SeriesKind::Gauge => MetricType::GAUGE,
        SeriesKind::Histogram => MetricType::HISTOGRAM,
    });
    let metrics = f
        .series
        .iter()
        .map(|(labels, value)| {
            let mut m = proto::Metric::default();
            m.set_label(
                labels
                    .iter()
                    .map(|(k, v)| {
                        let mut lp = proto::LabelPair::default();
                        lp.set_name(k.clone());
                        lp.set_value(v.clone());
                        lp
                    })
                    .collect(),
            );
            match value {
                Value::Scalar(v) if f.kind == SeriesKind::Counter => {
                    let mut c = proto::Counter::default();
                    c.set_value(*v);
                    m.set_counter(c);
                }
                Value::Scalar(v) => {
                    let mut g = proto::Gauge::default();
                    g.set_value(*v);
                    m.set_gauge(g);
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let mut h = proto::Histogram::default();
                    h.set_sample_count(*count);
                    h.set_sample_sum(*sum);
                    let mut cumulative = 0;
                    h.set_bucket(
                        LATENCY_BUCKETS
                            .iter()
                            .zip(buckets)
                            .map(|(bound, n)| {
                                cumulative += n;
                                let mut b = proto::Bucket::default();
                                b.set_upper_bound(*bound);
                                b.set_cumulative_count(cumulative);
                                b
                            })
                            .collect(),
                    );
                    m.set_histogram(h);
                }
            }
            m
        })
        .collect();
    mf.set_metric(metrics);
    mf
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// The registry `/metrics` renders, holding Herald's series (in the process
/// registry) and the plugin-defined ones.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    plugins: PluginCollector,
}

static PROCESS: LazyLock<Metrics> = LazyLock::new(|| {
    let _ = host();
    Metrics::in_registry(REGISTRY.clone())
});

impl Default for Metrics {
    /// A registry of its own, holding only plugin series (for tests).
    fn default() -> Self {
        Self::in_registry(Registry::new())
    }
}

impl Metrics {
    /// The process-wide registry with Herald's series and the plugins'.
    pub fn new() -> Self {
        PROCESS.clone()
    }

    fn in_registry(registry: Registry) -> Self {
        let plugins = PluginCollector::default();
        if let Err(e) = registry.register(Box::new(plugins.clone())) {
            tracing::error!("plugin series registration failed: {e}");
        }
        Self { registry, plugins }
    }

    /// Records a plugin-defined sample. `tenant` and `plugin` labels are
    /// added by the host and override any the plugin sent.
    #[allow(clippy::too_many_arguments)]
    pub fn plugin_sample(
        &self,
        tenant: &str,
        plugin: &str,
        kind: SeriesKind,
        name: &str,
        help: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<Recorded, SeriesError> {
        if !valid_name(name, true) {
            return Err(SeriesError::Name(name.into()));
        }
        if name.starts_with("herald_") {
            return Err(SeriesError::Reserved(name.into()));
        }
        let mut key: Vec<(String, String)> = Vec::with_capacity(labels.len() + 2);
        for (k, v) in labels {
            // `le` is the bucket label of a histogram's samples.
            if !valid_name(&k, false) || k.starts_with("__") || k == "le" {
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
        let mut guard = self.plugins.0.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        if let Some(f) = state.families.get(name) {
            if f.kind != kind {
                return Err(SeriesError::KindMismatch {
                    name: name.into(),
                    existing: f.kind.as_str(),
                    wanted: kind.as_str(),
                });
            }
        }
        let is_new = !state
            .families
            .get(name)
            .is_some_and(|f| f.series.contains_key(&key));
        if is_new {
            let owner = (tenant.to_string(), plugin.to_string());
            let count = state.per_plugin.entry(owner.clone()).or_insert(0);
            if *count >= MAX_SERIES_PER_PLUGIN {
                host()
                    .plugin_series_refused
                    .with_label_values(&[tenant, plugin])
                    .inc();
                if state.warned.insert(owner) {
                    tracing::warn!(tenant, plugin, metric = name, limit = MAX_SERIES_PER_PLUGIN,
                        "plugin reached its cap on metric series; samples of new series are refused (herald_plugin_series_refused_total)");
                }
                return Ok(Recorded::OverCap);
            }
            *count += 1;
        }
        let family = state
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                kind,
                help: help.to_string(),
                series: BTreeMap::new(),
            });
        match kind {
            SeriesKind::Counter => {
                if let Value::Scalar(v) = family.series.entry(key).or_insert(Value::Scalar(0.0)) {
                    *v += value;
                }
            }
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
                    // The first bucket that holds it; above the last: +Inf only.
                    if let Some(i) = LATENCY_BUCKETS.iter().position(|b| value <= *b) {
                        buckets[i] += 1;
                    }
                    *sum += value;
                    *count += 1;
                }
            }
        }
        Ok(Recorded::Stored)
    }

    /// Prometheus text exposition (format 0.0.4) of every series.
    pub fn render(&self) -> String {
        encode(self.registry.gather())
    }

    /// The series of one tenant: the samples whose `tenant` label is exactly
    /// `tenant` (Herald's series of its ingest, journal and plugin instances,
    /// and its plugins' own series). Series without a `tenant` label
    /// (process-wide ones) are left out, and so are families left empty.
    pub fn render_tenant(&self, tenant: &str) -> String {
        let mut families = self.registry.gather();
        for mf in &mut families {
            mf.mut_metric().retain(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "tenant" && l.value() == tenant)
            });
        }
        families.retain(|mf| !mf.get_metric().is_empty());
        encode(families)
    }
}

fn encode(mut families: Vec<MetricFamily>) -> String {
    declared_label_order(&mut families);
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!("metrics encoding failed: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
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
            text.contains("# HELP ansible_runs_total Runs.\n# TYPE ansible_runs_total counter\n"),
            "{text}"
        );
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
        let m = Metrics::default();
        let add = |tenant: &str, kind, name: &str, labels: Vec<(String, String)>, v| {
            m.plugin_sample(tenant, "p", kind, name, "Help.", labels, v)
                .unwrap();
        };
        add("t", SeriesKind::Counter, "a_total", vec![], 1.0);
        add("u", SeriesKind::Counter, "a_total", vec![], 2.0);
        // A label value that looks like a tenant label is only a value.
        add(
            "u",
            SeriesKind::Counter,
            "a_total",
            vec![("playbook".into(), "tenant=\"t\"".into())],
            3.0,
        );
        add("tt", SeriesKind::Counter, "a_total", vec![], 4.0);
        add("u", SeriesKind::Gauge, "b", vec![], 5.0);
        add("t", SeriesKind::Histogram, "h", vec![], 0.7);
        let got = m.render_tenant("t");
        let mut expected = String::from(
            "# HELP a_total Help.\n# TYPE a_total counter\na_total{plugin=\"p\",tenant=\"t\"} 1\n\
             # HELP h Help.\n# TYPE h histogram\n",
        );
        for b in LATENCY_BUCKETS {
            let n = if *b >= 0.7 { 1 } else { 0 };
            expected.push_str(&format!(
                "h_bucket{{plugin=\"p\",tenant=\"t\",le=\"{b}\"}} {n}\n"
            ));
        }
        expected.push_str(
            "h_bucket{plugin=\"p\",tenant=\"t\",le=\"+Inf\"} 1\n\
             h_sum{plugin=\"p\",tenant=\"t\"} 0.7\nh_count{plugin=\"p\",tenant=\"t\"} 1\n",
        );
        assert_eq!(got, expected);
        assert_eq!(m.render_tenant("nobody"), "");
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::default();
        for v in [0.003, 20.0, 99.0] {
            m.plugin_sample(
                "t",
                "p",
                SeriesKind::Histogram,
                "run_seconds",
                "Run time.",
                vec![],
                v,
            )
            .unwrap();
        }
        let text = m.render();
        for (le, n) in [
            ("0.0025", 0),
            ("0.005", 1),
            ("10", 1),
            ("30", 2),
            ("+Inf", 3),
        ] {
            let line = format!("run_seconds_bucket{{plugin=\"p\",tenant=\"t\",le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("run_seconds_count{plugin=\"p\",tenant=\"t\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn a_plugin_past_its_series_cap_is_counted_and_keeps_its_old_series() {
        let m = Metrics::default();
        let sample = |tenant: &str, plugin: &str, host: String| {
            m.plugin_sample(
                tenant,
                plugin,
                SeriesKind::Counter,
                "task_runs_total",
                "Runs.",
                vec![("host".into(), host)],
                1.0,
            )
            .unwrap()
        };
        let dropped = || {
            host()
                .plugin_series_refused
                .with_label_values(&["capt", "greedy"])
                .get()
        };
        let before = dropped();
        for i in 0..MAX_SERIES_PER_PLUGIN {
            assert_eq!(sample("capt", "greedy", format!("h{i}")), Recorded::Stored);
        }
        assert_eq!(
            sample("capt", "greedy", "one-more".into()),
            Recorded::OverCap
        );
        assert_eq!(
            sample("capt", "greedy", "two-more".into()),
            Recorded::OverCap
        );
        assert_eq!(dropped() - before, 2);
        // Existing series still update; other instances have their own cap.
        assert_eq!(sample("capt", "greedy", "h0".into()), Recorded::Stored);
        assert_eq!(sample("capt", "other", "x".into()), Recorded::Stored);
        let text = m.render();
        assert!(text.contains("task_runs_total{host=\"h0\",plugin=\"greedy\",tenant=\"capt\"} 2\n"));
        assert!(!text.contains("one-more"));
        // The drop counter is one of Herald's series, on /metrics.
        let all = Metrics::new().render();
        assert!(
            all.contains(
                "herald_plugin_series_refused_total{tenant=\"capt\",plugin=\"greedy\"} 2\n"
            ),
            "{all}"
        );
    }

    #[test]
    fn host_series_keep_their_names_and_help() {
        let h = host();
        h.deliveries.with_label_values(&["t", "p", "ok"]).inc_by(5);
        h.queue_oldest_age_seconds
            .with_label_values(&["t", "p"])
            .set(1.5);
        let text = Metrics::new().render();
        assert!(text.contains("# HELP herald_deliveries_total Delivery attempts by tenant, plugin instance and outcome (ok, retry, dead).\n# TYPE herald_deliveries_total counter\n"), "{text}");
        assert!(
            text.contains("herald_deliveries_total{tenant=\"t\",plugin=\"p\",outcome=\"ok\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("herald_queue_oldest_age_seconds{tenant=\"t\",plugin=\"p\"} 1.5\n"));
        // Every family registered (a name clash would leave one out).
        assert!(text.contains("# TYPE herald_journal_pruned_events_total counter"));
        assert!(text.contains("# TYPE herald_journal_size_bytes gauge"));
    }
}
