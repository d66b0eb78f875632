//! `herald-config`: `herald.toml` → [`Config`]: parsing, defaults, secret
//! references and validation.
//!
//! Every problem is reported with the file, line and column it comes from,
//! and all problems are collected before the load fails, so one `herald
//! check` shows everything to fix.

pub mod allow;

/// Hard cap of any instance's linear memory in MiB: the runtime's pooling
/// slot size, and the largest `limits.memory_mib` a config may ask for.
pub const MAX_MEMORY_MIB: u64 = 1024;

use herald_event::routes::Routes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in the configuration, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted key (`plugins.slack.tenant`), empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl Problem {
    fn line_col_pair(&self) -> (usize, usize) {
        (self.line, self.column)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems of a configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The whole configuration, with defaults applied and paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub telemetry: TelemetryConfig,
    pub runtime: RuntimeConfig,
    pub tenants: BTreeMap<String, TenantConfig>,
    pub plugins: BTreeMap<String, PluginConfig>,
}

/// `[runtime]`: limits of the plugin runtime as a whole.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Ceiling on the linear memory of all plugin instances together, in
    /// MiB (default 2048). A grow that would go beyond it is refused: that
    /// call faults with reason `memory`.
    pub max_plugin_memory_mib: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_plugin_memory_mib: 2048,
        }
    }
}

/// `[telemetry]`: optional OpenTelemetry trace export.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP base endpoint (`http://collector:4318`, or `http://collector:4317`
    /// for gRPC). Over HTTP, spans are posted to `<endpoint>/v1/traces` as
    /// protobuf. When unset, the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (base) variables apply; with none of
    /// them, no trace is exported.
    pub otlp_endpoint: Option<String>,
    /// OTLP transport. When unset, the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// variables apply, else HTTP with protobuf.
    pub otlp_protocol: Option<OtlpProtocol>,
    /// `service.name` of the exported spans (default `OTEL_SERVICE_NAME`, else `herald`).
    pub service_name: Option<String>,
}

/// `[telemetry] otlp_protocol`: how spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`POST <endpoint>/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC (`TraceService/Export` on the endpoint).
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    /// Parses the values of `OTEL_EXPORTER_OTLP_PROTOCOL` this host speaks.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim() {
            "http/protobuf" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes (after decompression too).
    pub body_limit: usize,
    /// Hashes of admin tokens (`sha256:<hex>`), for admin endpoints such as
    /// `GET /v1/plugins`. Admin tokens are not tenant tokens.
    pub admin_tokens: Vec<String>,
    /// Reload the configuration when the file or a plugin component file changes
    /// (SIGHUP always reloads).
    pub watch_config: bool,
    /// Serve HTTPS with this certificate and key (PEM files); plain HTTP
    /// when absent.
    pub tls: Option<TlsConfig>,
    /// Who may read `GET /metrics`, which shows every tenant's series.
    pub metrics_auth: MetricsAuth,
    /// Hashes of the tokens (`sha256:<hex>`) that may read `GET /metrics`
    /// when `metrics_auth = "token"` (admin tokens may too): the scraper's.
    pub metrics_tokens: Vec<String>,
    /// How the threads that deliver to plugins are scheduled beside ingest
    /// (what controllers wait on). Read at start.
    pub delivery_priority: DeliveryPriority,
    /// With `delivery_priority = "nice"`: how far (0-19, added to the host's
    /// nice value) the delivery threads run below ingest.
    pub delivery_nice: i32,
}

/// `server.delivery_priority`: how the delivery threads share the cores
/// with ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryPriority {
    /// Linux's `SCHED_IDLE`: the delivery threads run on what ingest (and
    /// every other thread of normal priority) leaves, and give the core up
    /// the moment one of those wakes. They are not starved outright (the
    /// kernel still gives them a small share), so leases are renewed.
    #[default]
    Idle,
    /// `delivery_nice` below the host's own nice value.
    Nice,
}

/// `server.metrics_auth`: who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsAuth {
    /// Anyone who can reach the port (the default, as before).
    #[default]
    Public,
    /// A bearer token of `metrics_tokens` or `admin_tokens`.
    Token,
}

/// `[server.tls]`: the certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
            body_limit: 10 * 1024 * 1024,
            admin_tokens: Vec::new(),
            watch_config: true,
            tls: None,
            metrics_auth: MetricsAuth::Public,
            metrics_tokens: Vec::new(),
            delivery_priority: DeliveryPriority::Idle,
            delivery_nice: DEFAULT_DELIVERY_NICE,
        }
    }
}

/// `server.delivery_nice` unless set (with `delivery_priority = "nice"`): a
/// background priority, as for batch work beside a service.
pub const DEFAULT_DELIVERY_NICE: i32 = 10;

/// Where the journal lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// An embedded SQLite file (`path`): one host.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`url`): N replicas share it.
    Postgres,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `"sqlite"` (default) or `"postgres"`.
    pub backend: StorageBackend,
    /// Directory for the journal and the compile cache; default
    /// `$XDG_DATA_HOME/herald` (`~/.local/share/herald`).
    pub data_dir: Option<PathBuf>,
    /// SQLite journal file; default `<data_dir>/herald.db`.
    pub path: Option<PathBuf>,
    /// PostgreSQL connection URL (`postgres://user@host:5432/herald`);
    /// `${env:NAME}` and `${file:PATH}` are resolved, so the password need
    /// not be in the file. Never logged.
    pub url: Option<String>,
    /// Most PostgreSQL connections this host opens (default 16).
    pub pool_size: Option<usize>,
    /// Longest a PostgreSQL statement may run, in ms (default 30000).
    pub statement_timeout_ms: Option<u64>,
    /// This host's name among the replicas sharing the database (default
    /// `<hostname>:<listen port>`, the same across restarts).
    pub replica_id: Option<String>,
    /// How long a replica's lease on a plugin instance lasts unless renewed,
    /// in ms (default 15000): a replica that dies is taken over after this.
    pub lease_ttl_ms: Option<u64>,
    /// Days to keep delivered events and their runs (default 30); 0 keeps
    /// them forever.
    /// Events still pending or dead-lettered are kept.
    pub retention_days: Option<f64>,
    /// How often retention looks for events to remove, in ms (default
    /// 60000, at least 1000).
    pub retention_interval_ms: Option<u64>,
    /// A PEM file of CA certificates trusted for PostgreSQL's TLS
    /// certificate besides the public web roots (the URL's `sslmode` says
    /// whether it is checked). Relative to the config file.
    pub tls_ca_file: Option<PathBuf>,
    /// The certificates of `tls_ca_file` (DER), read when the configuration
    /// loaded.
    #[serde(skip)]
    pub tls_ca_certs: Vec<Vec<u8>>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("data_dir", &self.data_dir)
            .field("path", &self.path)
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("replica_id", &self.replica_id)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .field("retention_days", &self.retention_days)
            .field("retention_interval_ms", &self.retention_interval_ms)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl StorageConfig {
    /// The data directory, resolved.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("herald");
        }
        match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".local/share/herald"),
            None => PathBuf::from("herald-data"),
        }
    }

    /// Retention in days (default 30; 0 keeps everything).
    pub fn retention_days(&self) -> f64 {
        self.retention_days.unwrap_or(30.0).max(0.0)
    }

    /// The time between two retention passes (default 60 s).
    pub fn retention_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.retention_interval_ms.unwrap_or(60_000).max(1000))
    }

    /// PostgreSQL pool size (default 16).
    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or(16)
    }

    /// PostgreSQL statement timeout (default 30 s).
    pub fn statement_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.statement_timeout_ms.unwrap_or(30_000))
    }

    /// The journal file, resolved.
    pub fn journal_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| self.data_dir().join("herald.db"))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Token hashes, each `sha256:<64 hex digits>` (see `herald token new`).
    pub tokens: Vec<String>,
    /// Sustained ingest rate in events per second (token bucket); none = unlimited.
    #[serde(default)]
    pub max_events_per_second: Option<f64>,
    /// Burst size of the rate limit, in events (default: one second's worth).
    #[serde(default)]
    pub burst: Option<f64>,
    /// Journal quota: most events kept for the tenant; none = unlimited.
    #[serde(default)]
    pub max_stored_events: Option<u64>,
}

/// One plugin instance: a component, the tenant it serves, its config and grants.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub tenant: String,
    /// Path of the `.wasm` component, relative to the config file.
    pub component: PathBuf,
    /// Optional pin: the component file's sha256 (hex).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Passed to the plugin's `configure` as JSON; `${env:NAME}` and
    /// `${file:PATH}` references in strings are resolved at load.
    #[serde(default)]
    pub config: toml::Table,
    /// URL prefixes (`scheme://host[:port][/path]`) the plugin may call.
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// `ip:port` addresses the plugin may reach over TCP or UDP.
    #[serde(default)]
    pub allow_sockets: Vec<SocketAddr>,
    /// A PEM file of CA certificates the host trusts, besides the public
    /// web roots, when it does TLS for the plugin over a granted socket
    /// (`wasi:tls`: SMTP STARTTLS, syslog over TLS). Relative to the config
    /// file; read and checked when the configuration loads.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The one file the plugin may write (`herald:textfile`): a `.prom` file
    /// in a directory node_exporter's textfile collector reads. Relative to
    /// the config file; its directory must exist; no two instances share one.
    #[serde(default)]
    pub textfile: Option<PathBuf>,
    /// The certificates of `tls_ca_file` (DER), read when the configuration
    /// loaded.
    #[serde(skip)]
    pub tls_ca_certs: Option<Arc<Vec<Vec<u8>>>>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Circuit breaker: pause the instance after repeated failures.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Which events the instance receives; none = all of its tenant's.
    #[serde(default)]
    pub routes: Vec<herald_event::routes::RouteConfig>,
    /// Most calls per second to the plugin (the sink's own rate limit), so
    /// Herald does not cause the 429s it would then have to retry.
    #[serde(default)]
    pub rate_limit: Option<SinkRateLimit>,
    /// Delivery streams of the instance (1 to 64): runs are split among them
    /// by a hash of the run id, so a run's events stay in order while other
    /// runs are delivered beside it, on this replica or others (each shard
    /// has its own lease). The rate limit and circuit breaker are the
    /// instance's, shared by its shards.
    #[serde(default = "one_shard")]
    pub shards: u32,
    /// Message templates by name (Jinja2 syntax): inline text, or
    /// `{ file = "path" }` relative to the config file. The plugin renders
    /// them (contract 0.3.0); the `run_url` template is the context's link.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateSource>,
    /// The templates compiled when the configuration loaded (`None` when
    /// the instance has none).
    #[serde(skip)]
    pub compiled_templates: Option<Arc<herald_templates::TemplateSet>>,
}

fn one_shard() -> u32 {
    1
}

/// Whether `file` can be an instance's textfile: a `.prom` file name (the
/// only files node_exporter's textfile collector reads) in an existing
/// directory, not already another instance's (`taken`: path to instance).
fn check_textfile(file: &Path, taken: &HashMap<PathBuf, String>) -> Result<(), String> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.ends_with(".prom") || name.len() <= ".prom".len() {
        return Err(format!(
            "{} must be a `.prom` file (node_exporter's textfile collector reads only *.prom)",
            file.display()
        ));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    if file.is_dir() {
        return Err(format!("{} is a directory", file.display()));
    }
    if let Some(other) = taken.get(file) {
        return Err(format!(
            "{} is already plugins.{other}'s textfile; each instance needs a file of its own",
            file.display()
        ));
    }
    Ok(())
}

/// The `sslmode` of a PostgreSQL URL or libpq `key=value` string, if set.
fn sslmode_of(url: &str) -> Option<String> {
    let pairs: Vec<&str> = match url.split_once('?') {
        Some((_, query)) if url.contains("://") => query.split('&').collect(),
        _ => url.split_whitespace().collect(),
    };
    pairs.iter().find_map(|kv| match kv.split_once('=') {
        Some(("sslmode", v)) => Some(v.trim_matches('\'').to_string()),
        _ => None,
    })
}

/// The certificates (DER) of a PEM file; an error names the file and says
/// what is wrong with it.
fn read_ca_certs(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            file.display()
        ));
    }
    Ok(certs)
}

/// Where a template's text is: inline, or in a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "a template: a string, or a table `{ file = \"path\" }`"
)]
pub enum TemplateSource {
    Inline(String),
    File(TemplateFile),
}

/// `{ file = "path" }`: a template kept in its own file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    /// Relative to the config file; resolved when the configuration loads.
    pub file: PathBuf,
}

/// A token bucket for one plugin instance's deliveries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkRateLimit {
    /// Sustained deliveries per second.
    pub per_second: f64,
    /// Deliveries that may go at once after a quiet period (default 1).
    #[serde(default = "one")]
    pub burst: f64,
}

fn one() -> f64 {
    1.0
}

/// Resource limits of one plugin instance, applied to every call (and to the
/// instantiation and `configure` call of a fresh instance).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory cap in MiB (store limiter), 1 to 1024 (the pooling
    /// allocator's slot size, the hard cap of any instance).
    pub memory_mib: u64,
    /// Guest execution time per call in milliseconds, counted in 10 ms epoch
    /// ticks in which the guest ran (time blocked in host calls such as HTTP
    /// does not count). At least 10.
    pub cpu_ms: u64,
    /// Wall time per call in milliseconds, including blocked host calls.
    pub wall_ms: u64,
    /// Bytes of log per call: `log` import lines plus the plugin's stdout and
    /// stderr. Beyond it the rest is dropped and the call is a `log_limit` fault.
    pub max_log_bytes: u64,
    /// Outbound HTTP requests per call. Beyond it requests are refused
    /// (`HttpRequestDenied` for the plugin) and the call is an `http_limit` fault.
    pub max_http_requests: u32,
    /// Fuel of one template render (about one unit per template
    /// instruction); an endless or huge loop is stopped when it runs out.
    pub template_fuel: u64,
    /// Bytes one template render may produce; the render stops past it.
    pub template_max_bytes: u64,
}

impl Limits {
    /// The bounds of one template render: `template_fuel`,
    /// `template_max_bytes` (each at least 1) and herald-templates' depth.
    pub fn render_limits(&self) -> herald_templates::RenderLimits {
        herald_templates::RenderLimits {
            fuel: self.template_fuel.max(1),
            max_output: usize::try_from(self.template_max_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            ..Default::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            cpu_ms: 1_000,
            wall_ms: 30_000,
            max_log_bytes: 64 * 1024,
            max_http_requests: 16,
            template_fuel: 100_000,
            template_max_bytes: 64 * 1024,
        }
    }
}

/// The failure policy of one plugin instance: a circuit breaker. After
/// `open_after` consecutive failed calls the instance is paused (its
/// deliveries wait, nothing is dead-lettered meanwhile) for `pause_ms`, then
/// one delivery probes it: success closes the breaker, failure pauses it again
/// for twice as long, up to `max_pause_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailurePolicy {
    /// Consecutive failed calls that open the breaker; 0 = never pause (keep
    /// retrying under the retry policy only).
    pub open_after: u32,
    /// What counts as a failed call: `failures` (sandbox faults and retryable
    /// answers) or `faults` (sandbox faults only).
    pub count: FailureCount,
    /// First pause in milliseconds.
    pub pause_ms: u64,
    /// Longest pause in milliseconds (the pause doubles after each failed probe).
    pub max_pause_ms: u64,
}

/// Which calls count towards opening the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCount {
    /// Sandbox faults (traps, timeouts, limits, denials) and retryable answers.
    Failures,
    /// Sandbox faults only.
    Faults,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            open_after: 5,
            count: FailureCount::Failures,
            pause_ms: 5_000,
            max_pause_ms: 60_000,
        }
    }
}

/// Retry policy of one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// First backoff delay in milliseconds.
    pub initial_ms: u64,
    /// Largest backoff delay in milliseconds.
    pub max_ms: u64,
    /// Attempts before the event is dead-lettered.
    pub max_attempts: u32,
    /// Age (since it was accepted) after which an undelivered event is
    /// dead-lettered instead of retried, in milliseconds.
    pub max_age_ms: u64,
    /// Longest wait a sink's `Retry-After` can ask for, in milliseconds
    /// (default one hour); a longer one is cut to this. A wait beyond what
    /// is left of `max_age_ms` dead-letters the delivery instead.
    pub max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 60_000,
            max_attempts: 12,
            max_age_ms: 24 * 3600 * 1000,
            max_retry_after_ms: 3600 * 1000,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter for the given (1-based) attempt.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
            .min(self.max_ms)
            .max(1);
        Duration::from_millis(rand::random_range(exp / 2..=exp))
    }
}

#[derive(Debug, Default)]
struct RawConfig {
    tenant_names: std::collections::BTreeSet<String>,
    server: ServerConfig,
    storage: StorageConfig,
    telemetry: TelemetryConfig,
    runtime: RuntimeConfig,
    tenants: BTreeMap<String, TenantConfig>,
    plugins: BTreeMap<String, PluginConfig>,
}

/// Decodes one section, recording a located problem for each thing wrong
/// in it: after a problem the offending key (for a missing key, the table
/// lacking it) is dropped and the section decoded again, so one pass
/// reports every problem, not just serde's first (a key missing from the
/// section gets a stand-in, so the next missing one is found too). Returns
/// what decoded once the bad keys were dropped (defaults in their place),
/// unless a stand-in was needed.
fn decode<T: serde::de::DeserializeOwned>(
    mut value: toml::Value,
    at: &[&str],
    locator: &Locator,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let at: Vec<String> = at.iter().map(|s| s.to_string()).collect();
    let mut dropped: Vec<Vec<String>> = Vec::new();
    let mut stand_ins: Vec<Vec<String>> = Vec::new();
    // Each round drops a key, so this ends; the bound is a safety net.
    for _ in 0..256 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return stand_ins.is_empty().then_some(v),
            Err(e) => e,
        };
        let mut path = at.clone();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => path.push(key.clone()),
                serde_path_to_error::Segment::Seq { index } => path.push(format!("[{index}]")),
                _ => {}
            }
        }
        // toml adds "\nin `key`"; the key is reported on its own.
        let message = e.inner().to_string();
        let message = message
            .split("\nin `")
            .next()
            .unwrap_or("")
            .trim()
            .replace('\n', " ");
        let missing = message.starts_with("missing field `");
        // "unknown field `x`" / "missing field `x`" name the key themselves.
        let named = ["unknown field `", "missing field `"].iter().find_map(|p| {
            let rest = message.strip_prefix(p)?;
            rest.split('`').next().map(str::to_string)
        });
        if let Some(k) = named {
            if path.last() != Some(&k) {
                path.push(k);
            }
        }
        // A stand-in of the wrong type: its key was reported as missing.
        if stand_ins.iter().any(|s| path.starts_with(s)) {
            return None;
        }
        // A key dropped for being wrong is not reported again as missing.
        if !(missing && dropped.iter().any(|d| path.starts_with(d))) {
            problems.push(locator.at(&path, &message));
        }
        // A key missing from the section itself: an empty string stands in
        // so serde goes on to the next missing key (what decodes is not used).
        if missing && path.len() == at.len() + 1 {
            if let toml::Value::Table(t) = &mut value {
                t.insert(path[at.len()].clone(), toml::Value::String(String::new()));
                stand_ins.push(path);
                continue;
            }
        }
        let mut drop = path;
        if missing {
            drop.pop();
        }
        // A bad array element drops the whole array (indices stay true).
        while drop.last().is_some_and(|s| s.starts_with('[')) {
            drop.pop();
        }
        if drop.len() <= at.len() || !remove_at(&mut value, &drop[at.len()..]) {
            return None;
        }
        dropped.push(drop);
    }
    None
}

/// Removes the key at `path` (array elements as `[i]`) from `value`.
fn remove_at(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut v = value;
    for seg in parents {
        let next = match (seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')), v) {
            (Some(i), toml::Value::Array(a)) => i.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            (None, toml::Value::Table(t)) => t.get_mut(seg),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match v {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

fn is_token_hash(t: &str) -> bool {
    t.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The hex sha256 of a token, as stored in `tenants.<name>.tokens`.
pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

impl Config {
    /// Reads and validates `path`. Checks everything that can be checked
    /// without loading components; the runtime checks those.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (config, problems) = Self::load_all(path)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Like [`Config::load`], but also returns the usable part of a file
    /// with problems (sections and instances that decoded), so `herald
    /// check` can load those plugins and report their problems too. Fails
    /// only when the file cannot be read or is not valid TOML.
    pub fn load_all(path: &Path) -> Result<(Config, Vec<Problem>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.to_owned(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse_all(path, &text)
    }

    /// Validates configuration text that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let (config, problems) = Self::parse_all(path, text)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// [`Config::parse`] returning the usable part and every problem; see
    /// [`Config::load_all`].
    pub fn parse_all(path: &Path, text: &str) -> Result<(Config, Vec<Problem>), ConfigError> {
        let locator = Locator::new(path, text);
        if !locator.syntax.is_empty() {
            return Err(ConfigError {
                problems: locator.syntax.clone(),
            });
        }
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| locator.line_col(s.start))
                .unwrap_or((0, 0));
            ConfigError {
                problems: vec![Problem {
                    file: path.to_owned(),
                    line,
                    column,
                    key: String::new(),
                    message: e.message().trim().to_string(),
                }],
            }
        })?;
        // Each section is decoded on its own so that one run reports the
        // problems of every section, not just the first.
        let mut problems = Vec::new();
        let mut raw = RawConfig::default();
        let mut misplaced: Vec<String> = Vec::new();
        for (key, value) in table {
            match key.as_str() {
                "server" => {
                    if let Some(v) = decode(value, &["server"], &locator, &mut problems) {
                        raw.server = v;
                    }
                }
                "storage" => {
                    if let Some(v) = decode(value, &["storage"], &locator, &mut problems) {
                        raw.storage = v;
                    }
                }
                "telemetry" => {
                    if let Some(v) = decode(value, &["telemetry"], &locator, &mut problems) {
                        raw.telemetry = v;
                    }
                }
                "runtime" => {
                    if let Some(v) = decode(value, &["runtime"], &locator, &mut problems) {
                        raw.runtime = v;
                    }
                }
                "tenants" | "plugins" => {
                    let toml::Value::Table(entries) = value else {
                        problems.push(locator.problem(
                            &[],
                            &key,
                            "expected a table of named entries",
                        ));
                        continue;
                    };
                    for (name, v) in entries {
                        let at = [key.as_str(), name.as_str()];
                        if key == "tenants" {
                            // Known even when invalid, so its plugins are not reported too.
                            raw.tenant_names.insert(name.clone());
                            if let Some(t) = decode(v, &at, &locator, &mut problems) {
                                raw.tenants.insert(name, t);
                            }
                        } else if let Some(p) = decode(v, &at, &locator, &mut problems) {
                            raw.plugins.insert(name, p);
                        }
                    }
                }
                other => {
                    const SECTIONS: [&str; 6] = [
                        "server",
                        "storage",
                        "telemetry",
                        "runtime",
                        "tenants",
                        "plugins",
                    ];
                    let near = SECTIONS
                        .iter()
                        .find(|s| strsim::levenshtein(s, other) <= 2)
                        .copied();
                    let message = match near {
                        Some(s) => {
                            format!("unknown top-level table `{other}`; did you mean `{s}`?")
                        }
                        None => format!(
                            "unknown top-level table `{other}`; expected {}",
                            SECTIONS.join(", ")
                        ),
                    };
                    problems.push(locator.problem(&[], other, &message));
                    // `[plugin.x]` beside `[plugins.x.config]`: the missing
                    // keys of `plugins.x` are that typo, not problems of their own.
                    if let (Some(s), toml::Value::Table(t)) = (near, &value) {
                        misplaced.extend(t.keys().map(|k| format!("{s}.{k}.")));
                    }
                }
            }
        }
        problems.retain(|p| {
            !(p.message.starts_with("missing field `")
                && misplaced.iter().any(|m| p.key.starts_with(m.as_str())))
        });
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut config = Config {
            path: path.to_owned(),
            server: raw.server,
            storage: raw.storage,
            telemetry: raw.telemetry,
            runtime: raw.runtime,
            tenants: raw.tenants,
            plugins: BTreeMap::new(),
        };
        if let Some(tls) = &mut config.server.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
            for (key, p) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !p.is_file() {
                    problems.push(locator.problem(
                        &["server", "tls"],
                        key,
                        &format!("no PEM file at {}", p.display()),
                    ));
                }
            }
        }
        if let Some(d) = &config.storage.data_dir {
            config.storage.data_dir = Some(base.join(d));
        }
        if let Some(p) = &config.storage.path {
            config.storage.path = Some(base.join(p));
        }
        if let Some(file) = &config.storage.tls_ca_file {
            let file = base.join(file);
            match read_ca_certs(&file) {
                Ok(certs) => config.storage.tls_ca_certs = certs,
                Err(msg) => problems.push(locator.problem(&["storage"], "tls_ca_file", &msg)),
            }
            config.storage.tls_ca_file = Some(file);
        }
        match (config.storage.backend, &mut config.storage.url) {
            (StorageBackend::Postgres, None) => problems.push(locator.problem(
                &["storage"],
                "url",
                "backend = \"postgres\" needs `url` (postgres://user@host:5432/database)",
            )),
            (StorageBackend::Postgres, Some(url)) => {
                if url.contains("${") {
                    match substitute(url, &base) {
                        Ok(v) => *url = v,
                        Err(m) => problems.push(locator.problem(&["storage"], "url", &m)),
                    }
                }
                let u = url.trim();
                if let Some(mode) = sslmode_of(u) {
                    const MODES: [&str; 6] = [
                        "disable",
                        "allow",
                        "prefer",
                        "require",
                        "verify-ca",
                        "verify-full",
                    ];
                    if !MODES.contains(&mode.as_str()) {
                        problems.push(locator.problem(
                            &["storage"],
                            "url",
                            &format!("sslmode `{mode}`: expected one of {}", MODES.join(", ")),
                        ));
                    }
                }
                let scheme = u.starts_with("postgres://") || u.starts_with("postgresql://");
                if !scheme && !u.contains('=') {
                    problems.push(locator.problem(
                        &["storage"],
                        "url",
                        "expected postgres://user@host:5432/database (or libpq's key=value form)",
                    ));
                }
            }
            (StorageBackend::Sqlite, Some(_)) => problems.push(locator.problem(
                &["storage"],
                "url",
                "`url` is for backend = \"postgres\"; the SQLite journal is `path`",
            )),
            (StorageBackend::Sqlite, None) => {}
        }
        if config.storage.lease_ttl_ms.is_some_and(|t| t < 1000) {
            problems.push(locator.problem(
                &["storage"],
                "lease_ttl_ms",
                "expected at least 1000 (a lease is renewed every third of it)",
            ));
        }
        if config
            .storage
            .retention_interval_ms
            .is_some_and(|t| t < 1000)
        {
            problems.push(locator.problem(
                &["storage"],
                "retention_interval_ms",
                "expected at least 1000",
            ));
        }
        if config.storage.pool_size == Some(0) {
            problems.push(locator.problem(&["storage"], "pool_size", "expected at least 1"));
        }
        if config.storage.statement_timeout_ms == Some(0) {
            problems.push(locator.problem(
                &["storage"],
                "statement_timeout_ms",
                "expected at least 1",
            ));
        }
        let ceiling = config.runtime.max_plugin_memory_mib;
        if ceiling == 0 {
            problems.push(locator.problem(
                &["runtime"],
                "max_plugin_memory_mib",
                "expected at least 1",
            ));
        }
        let mut seen_tokens = BTreeMap::new();
        for t in &config.server.admin_tokens {
            if !is_token_hash(t) {
                problems.push(locator.problem(
                    &["server"],
                    "admin_tokens",
                    "expected `sha256:<64 hex digits>`, the hash of a token (`herald token new`)",
                ));
            }
        }
        for t in &config.server.metrics_tokens {
            if !is_token_hash(t) {
                problems.push(locator.problem(
                    &["server"],
                    "metrics_tokens",
                    "expected `sha256:<64 hex digits>`, the hash of a token (`herald token new`)",
                ));
            }
        }
        if !(0..=19).contains(&config.server.delivery_nice) {
            problems.push(locator.problem(
                &["server"],
                "delivery_nice",
                "expected 0 (the same priority as ingest) to 19",
            ));
        }
        if config.server.metrics_auth == MetricsAuth::Token
            && config.server.metrics_tokens.is_empty()
            && config.server.admin_tokens.is_empty()
        {
            problems.push(locator.problem(
                &["server"],
                "metrics_auth",
                "\"token\" needs a token to read /metrics: add its hash to server.metrics_tokens (or server.admin_tokens)",
            ));
        }
        for (name, tenant) in &config.tenants {
            if tenant.tokens.is_empty() {
                problems.push(locator.problem(
                    &["tenants", name],
                    "tokens",
                    "a tenant needs at least one token hash (`herald token new` prints one)",
                ));
            }
            for t in &tenant.tokens {
                if !is_token_hash(t) {
                    problems.push(locator.problem(
                        &["tenants", name],
                        "tokens",
                        "expected `sha256:<64 hex digits>`, the hash of a token (`herald token new`); plain tokens are not stored",
                    ));
                } else if config
                    .server
                    .admin_tokens
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(t))
                {
                    problems.push(locator.problem(
                        &["tenants", name],
                        "tokens",
                        "this token hash is also in server.admin_tokens; a token is either a tenant's or the admin's, give each its own (`herald token new`)",
                    ));
                } else if config
                    .server
                    .metrics_tokens
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(t))
                {
                    // A metrics token reads every tenant's series: one that is
                    // also a tenant's would let that tenant see the others.
                    problems.push(locator.problem(
                        &["tenants", name],
                        "tokens",
                        "this token hash is also in server.metrics_tokens, which read every tenant's series; give the scraper its own token (`herald token new`)",
                    ));
                } else if let Some(other) = seen_tokens.insert(t.to_lowercase(), name.clone()) {
                    problems.push(locator.problem(
                        &["tenants", name],
                        "tokens",
                        &format!("this token hash is already used by tenant {other:?}"),
                    ));
                }
            }
        }
        let mut textfiles: HashMap<PathBuf, String> = HashMap::new();
        for (name, mut plugin) in raw.plugins {
            let table = ["plugins", name.as_str()];
            if name.contains(herald_event::shard::SEPARATOR) {
                problems.push(locator.problem(
                    &table,
                    "",
                    &format!(
                        "an instance name may not contain {:?}: it names the instance's shards",
                        herald_event::shard::SEPARATOR
                    ),
                ));
            }
            if !raw.tenant_names.contains(&plugin.tenant) {
                problems.push(locator.problem(
                    &table,
                    "tenant",
                    &format!(
                        "unknown tenant {:?}; expected one of the [tenants.*] tables",
                        plugin.tenant
                    ),
                ));
            }
            plugin.component = base.join(&plugin.component);
            if !plugin.component.is_file() {
                problems.push(locator.problem(
                    &table,
                    "component",
                    &format!("no component file at {}", plugin.component.display()),
                ));
            } else if let Some(pin) = &plugin.sha256 {
                match std::fs::read(&plugin.component) {
                    Ok(bytes) => {
                        let actual = hex::encode(Sha256::digest(&bytes));
                        if !actual.eq_ignore_ascii_case(pin.trim_start_matches("sha256:")) {
                            problems.push(locator.problem(
                                &table,
                                "sha256",
                                &format!(
                                    "the component's sha256 is {actual}, not the pinned {pin}"
                                ),
                            ));
                        }
                    }
                    Err(e) => problems.push(locator.problem(
                        &table,
                        "component",
                        &format!("cannot read {}: {e}", plugin.component.display()),
                    )),
                }
            }
            if let Some(file) = &plugin.tls_ca_file {
                let file = base.join(file);
                match read_ca_certs(&file) {
                    Ok(certs) => plugin.tls_ca_certs = Some(Arc::new(certs)),
                    Err(msg) => problems.push(locator.problem(&table, "tls_ca_file", &msg)),
                }
                plugin.tls_ca_file = Some(file);
            }
            if let Some(file) = &plugin.textfile {
                let file = base.join(file);
                match check_textfile(&file, &textfiles) {
                    Ok(()) => {
                        textfiles.insert(file.clone(), name.clone());
                    }
                    Err(msg) => problems.push(locator.problem(&table, "textfile", &msg)),
                }
                plugin.textfile = Some(file);
            }
            for prefix in &plugin.allow_http {
                if let Err(e) = crate::allow::UrlPrefix::parse(prefix) {
                    problems.push(locator.problem(&table, "allow_http", &e));
                }
            }
            let limits_table = [&table[..], &["limits"]].concat();
            let max_mib = crate::MAX_MEMORY_MIB;
            if plugin.limits.memory_mib == 0 || plugin.limits.memory_mib > max_mib {
                problems.push(locator.problem(
                    &limits_table,
                    "memory_mib",
                    &format!("expected 1 to {max_mib}"),
                ));
            } else if ceiling > 0 && plugin.limits.memory_mib > ceiling {
                problems.push(locator.problem(
                    &limits_table,
                    "memory_mib",
                    &format!("{} MiB is over runtime.max_plugin_memory_mib ({ceiling} MiB), the ceiling of all instances together", plugin.limits.memory_mib),
                ));
            }
            if plugin.limits.cpu_ms < 10 {
                problems.push(locator.problem(
                    &limits_table,
                    "cpu_ms",
                    "expected at least 10 (the CPU clock ticks every 10 ms)",
                ));
            }
            if plugin.limits.wall_ms == 0 {
                problems.push(locator.problem(&limits_table, "wall_ms", "expected at least 1"));
            }
            let fp = &plugin.failure_policy;
            let fp_table = [&table[..], &["failure_policy"]].concat();
            if fp.pause_ms == 0 {
                problems.push(locator.problem(&fp_table, "pause_ms", "expected at least 1"));
            }
            if fp.max_pause_ms < fp.pause_ms {
                problems.push(locator.problem(
                    &fp_table,
                    "max_pause_ms",
                    "expected at least pause_ms",
                ));
            }
            if let Some(r) = &plugin.rate_limit {
                if !(r.per_second > 0.0 && r.burst >= 1.0) {
                    problems.push(locator.problem(
                        &[&table[..], &["rate_limit"]].concat(),
                        "per_second",
                        "expected per_second > 0 and burst >= 1",
                    ));
                }
            }
            let max_shards = herald_event::shard::MAX_SHARDS;
            if plugin.shards == 0 || plugin.shards > max_shards {
                problems.push(locator.problem(
                    &table,
                    "shards",
                    &format!("expected 1 to {max_shards}"),
                ));
            }
            if plugin.shards > 1 && plugin.textfile.is_some() {
                problems.push(locator.problem(
                    &table,
                    "shards",
                    "an instance with a textfile has one shard: its shards would each write the whole file",
                ));
            }
            if plugin.retry.max_attempts == 0 {
                problems.push(locator.problem(
                    &[&table[..], &["retry"]].concat(),
                    "max_attempts",
                    "expected at least 1",
                ));
            }
            match Routes::compile(&plugin.routes) {
                Ok(_) => {}
                Err(errors) => {
                    for (n, field, msg) in errors {
                        let index = format!("[{}]", n - 1);
                        let route = [&table[..], &["routes", index.as_str()]].concat();
                        problems.push(locator.problem(&route, field, &format!("route {n}: {msg}")));
                    }
                }
            }
            for (key, value) in [
                ("template_fuel", plugin.limits.template_fuel),
                ("template_max_bytes", plugin.limits.template_max_bytes),
            ] {
                if value == 0 {
                    problems.push(locator.problem(&limits_table, key, "expected at least 1"));
                }
            }
            if !plugin.templates.is_empty() {
                let limits = plugin.limits.render_limits();
                match compile_templates(&plugin.templates, &table, &base, &locator, limits) {
                    Ok(set) => plugin.compiled_templates = Some(Arc::new(set)),
                    Err(found) => problems.extend(found),
                }
            }
            let config_path = [&table[..], &["config"]].concat();
            for (key, msg) in resolve_secrets(&mut plugin.config, &base) {
                problems.push(locator.problem(&config_path, &key, &msg));
            }
            config.plugins.insert(name, plugin);
        }
        Ok((config, problems))
    }

    /// Builds a problem located at a key of `[storage]` (e.g. the database
    /// cannot be reached at `url`).
    pub fn storage_problem(&self, key: &str, message: &str) -> Problem {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        Locator::new(&self.path, &text).problem(&["storage"], key, message)
    }

    /// Builds a problem located at a plugin instance, for errors found while
    /// loading its component (compile, missing import).
    pub fn plugin_problem(&self, plugin: &str, key: &str, message: &str) -> Problem {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        Locator::new(&self.path, &text).problem(&["plugins", plugin], key, message)
    }

    /// Builds the problem of a plugin's `configure` refusal, located at the
    /// key of `[plugins.<plugin>.config]` the message names (the SDK's
    /// ``config key `a.b`: ...``, serde's ``unknown field `x` `` or
    /// ``missing field `x` ``), else at the config table.
    pub fn plugin_config_problem(&self, plugin: &str, message: &str) -> Problem {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let locator = Locator::new(&self.path, &text);
        let mut path: Vec<String> = vec!["plugins".into(), plugin.into(), "config".into()];
        let (key, rest) = config_key_of(message);
        if let Some(key) = key {
            path.extend(key_segments(&key));
        }
        // serde_json's " at line 1 column 26" is a position in the JSON the
        // host made, not in the file.
        let rest = match rest.rfind(" at line ") {
            Some(i)
                if rest[i + 9..].split_once(" column ").is_some_and(|(l, c)| {
                    [l, c]
                        .iter()
                        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                }) =>
            {
                &rest[..i]
            }
            _ => rest,
        };
        locator.at(&path, &format!("plugin refused its configuration: {rest}"))
    }

    /// Whether `token` is an admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        let hash = token_hash(token);
        self.server
            .admin_tokens
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&hash))
    }

    /// Whether `token` may read `GET /metrics` under `metrics_auth = "token"`
    /// (a metrics token or an admin token).
    pub fn is_metrics_token(&self, token: &str) -> bool {
        let hash = token_hash(token);
        self.is_admin_token(token)
            || self
                .server
                .metrics_tokens
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&hash))
    }

    /// The tenant a token belongs to.
    pub fn tenant_for_token(&self, token: &str) -> Option<&str> {
        let hash = token_hash(token);
        self.tenants
            .iter()
            .find(|(_, t)| t.tokens.iter().any(|h| h.eq_ignore_ascii_case(&hash)))
            .map(|(n, _)| n.as_str())
    }
}

/// The config key a plugin's configure error names, and the message
/// without the SDK's ``config key `...`: `` prefix (the key is shown on its own).
fn config_key_of(message: &str) -> (Option<String>, &str) {
    let m = message.trim();
    let inner = m.strip_prefix("invalid config: ").unwrap_or(m);
    if let Some(rest) = inner.strip_prefix("config key `") {
        if let Some((key, tail)) = rest.split_once('`') {
            let tail = tail.trim_start_matches(':').trim_start();
            return (Some(key.to_string()), tail);
        }
    }
    for p in ["unknown field `", "missing field `"] {
        if let Some(rest) = inner.strip_prefix(p) {
            if let Some((key, _)) = rest.split_once('`') {
                return (Some(key.to_string()), inner);
            }
        }
    }
    (None, m)
}

/// `a.b[2].c` as path segments `a`, `b`, `[2]`, `c`.
fn key_segments(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(name.to_string());
        }
        while let Some(end) = idx.find(']') {
            out.push(idx[..=end].to_string());
            idx = &idx[end + 1..];
        }
    }
    out
}

/// Replaces `${env:NAME}` and `${file:PATH}` in every string of `table`.
/// Returns (key, message) for every reference that cannot be resolved; each
/// is replaced by an empty string meanwhile, so the plugin can still be
/// configured by `herald check` and report its other problems.
fn resolve_secrets(table: &mut toml::Table, base: &Path) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (key, value) in table.iter_mut() {
        resolve_value(value, base, key, &mut errors);
    }
    errors
}

fn resolve_value(
    value: &mut toml::Value,
    base: &Path,
    key: &str,
    errors: &mut Vec<(String, String)>,
) {
    match value {
        toml::Value::String(s) if s.contains("${") => match substitute(s, base) {
            Ok(v) => *s = v,
            Err(m) => {
                errors.push((key.to_string(), m));
                s.clear();
            }
        },
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                resolve_value(v, base, &format!("{key}[{i}]"), errors);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                resolve_value(v, base, &format!("{key}.{k}"), errors);
            }
        }
        _ => {}
    }
}

fn substitute(s: &str, base: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` reference".to_string())?;
        let reference = &after[..end];
        let resolved = if let Some(name) = reference.strip_prefix("env:") {
            std::env::var(name).map_err(|_| {
                format!("environment variable {name} (from `${{env:{name}}}`) is not set")
            })?
        } else if let Some(file) = reference.strip_prefix("file:") {
            let p = base.join(file);
            std::fs::read_to_string(&p)
                .map_err(|e| {
                    format!(
                        "cannot read secret file {} (from `${{file:…}}`): {e}",
                        p.display()
                    )
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        } else {
            return Err(format!(
                "unknown reference `${{{reference}}}`; expected `${{env:NAME}}` or `${{file:PATH}}`"
            ));
        };
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Compiles an instance's templates; every template that does not compile
/// (or whose file cannot be read) is a problem at its own file, line and
/// column: in its template file, or inside the config file for an inline
/// template.
fn compile_templates(
    templates: &BTreeMap<String, TemplateSource>,
    table: &[&str],
    base: &Path,
    locator: &Locator,
    limits: herald_templates::RenderLimits,
) -> Result<herald_templates::TemplateSet, Vec<Problem>> {
    let at = [table, &["templates"]].concat();
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let mut files = HashMap::new();
    for (name, source) in templates {
        match source {
            TemplateSource::Inline(text) => sources.push((name.clone(), text.clone())),
            TemplateSource::File(f) => {
                let path = base.join(&f.file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        sources.push((name.clone(), text));
                        files.insert(name.clone(), path);
                    }
                    Err(e) => problems.push(locator.problem(
                        &at,
                        name,
                        &format!("cannot read the template file {}: {e}", path.display()),
                    )),
                }
            }
        }
    }
    let set = herald_templates::TemplateSet::compile(sources, limits);
    match set {
        Ok(set) if problems.is_empty() => Ok(set),
        Ok(_) => Err(problems),
        Err(errors) => {
            for e in errors {
                let key = [&at[..], &[e.name.as_str()]].concat().join(".");
                let message = format!("template `{}`: {}", e.name, e.message);
                let problem = match files.get(&e.name) {
                    Some(path) => Problem {
                        file: path.clone(),
                        line: e.line,
                        column: e.column,
                        key,
                        message,
                    },
                    None => {
                        let mut path: Vec<String> = at.iter().map(|s| s.to_string()).collect();
                        path.push(e.name.clone());
                        let (line, column) = locator.inside_string(&path, e.line, e.column);
                        Problem {
                            file: locator.file.to_owned(),
                            line,
                            column,
                            key,
                            message,
                        }
                    }
                };
                problems.push(problem);
            }
            Err(problems)
        }
    }
}

/// Finds where tables and keys are in the file, for error positions, from
/// the TOML parser's spans: a key at its own line and column, inline tables
/// (`rate_limit = {…}`) and arrays of tables included.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset of each key by path (array elements as `[i]`): the key
    /// itself, or the `[header]` of a table.
    spans: HashMap<Vec<String>, usize>,
    /// Byte offset of each value by path (where a string's quotes open).
    values: HashMap<Vec<String>, usize>,
    /// Syntax errors of the text (empty when it is valid TOML).
    syntax: Vec<Problem>,
}

impl<'a> Locator<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        let (doc, errors) = toml::de::DeTable::parse_recoverable(text);
        let mut locator = Self {
            file,
            text,
            spans: HashMap::new(),
            values: HashMap::new(),
            syntax: Vec::new(),
        };
        locator.index(doc.get_ref(), &mut Vec::new());
        for e in errors {
            let span = e.span();
            let (line, column) = span
                .clone()
                .map(|s| locator.line_col(s.start))
                .unwrap_or((0, 0));
            let mut message = e.message().trim().to_string();
            // The parser says "duplicate key"; name it.
            if message == "duplicate key" {
                if let Some(name) = span.and_then(|s| text.get(s)) {
                    message = format!("duplicate key `{}`", name.trim_matches('"'));
                }
            }
            locator.syntax.push(Problem {
                file: file.to_owned(),
                line,
                column,
                key: String::new(),
                message,
            });
        }
        locator
    }

    fn index(&mut self, table: &toml::de::DeTable<'_>, path: &mut Vec<String>) {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            // A `[header]` table starts before its last key: point at the `[`.
            let at = key.span().start.min(value.span().start);
            self.spans.insert(path.clone(), at);
            self.values.insert(path.clone(), value.span().start);
            self.index_value(value.get_ref(), path);
            path.pop();
        }
    }

    fn index_value(&mut self, value: &toml::de::DeValue<'_>, path: &mut Vec<String>) {
        match value {
            toml::de::DeValue::Table(t) => self.index(t, path),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    self.spans.insert(path.clone(), item.span().start);
                    self.index_value(item.get_ref(), path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
            .chars()
            .count()
            + 1;
        (line, column)
    }

    /// The file position of `line`:`column` (1-based) of the text of the
    /// string value at `path`: exact for literal strings (`'...'`,
    /// `\'\'\'...\'\'\'`) and for basic strings without escapes before the spot.
    fn inside_string(&self, path: &[String], line: usize, column: usize) -> (usize, usize) {
        let Some(&start) = self.values.get(path) else {
            return self.at(path, "").line_col_pair();
        };
        let rest = &self.text[start.min(self.text.len())..];
        let mut open = if rest.starts_with("\"\"\"") || rest.starts_with("\'\'\'") {
            3
        } else {
            1
        };
        // A newline right after a multi-line string's opening quotes is not
        // part of the string.
        if open == 3 {
            if rest[3..].starts_with("\r\n") {
                open += 2;
            } else if rest[3..].starts_with('\n') {
                open += 1;
            }
        }
        let (l0, c0) = self.line_col(start + open);
        if line <= 1 {
            (l0, c0 + column.saturating_sub(1))
        } else {
            (l0 + line - 1, column)
        }
    }

    /// A problem of `key` inside the table `table`.
    fn problem(&self, table: &[&str], key: &str, message: &str) -> Problem {
        let mut path: Vec<String> = table.iter().map(|s| s.to_string()).collect();
        if !key.is_empty() {
            path.extend(key_segments(key));
        }
        self.at(&path, message)
    }

    /// A problem at `path`, located at the key, or at the nearest table
    /// that holds it when the key is not in the file (a missing key).
    fn at(&self, path: &[String], message: &str) -> Problem {
        let (line, column) = (0..=path.len())
            .rev()
            .find_map(|n| self.spans.get(&path[..n]))
            .map(|&o| self.line_col(o))
            .unwrap_or((1, 1));
        // Array positions are in the message ("route 2: ..."), not the key.
        let key = path
            .iter()
            .filter(|s| !s.starts_with('['))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(".");
        Problem {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("herald-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn template_errors_are_located_in_their_file() {
        let d = tmpdir("templates");
        write(&d, "p.wasm", "x");
        write(
            &d,
            "text.j2",
            "Run {{ run.id }}\n{% for h in summary.failed_hosts %}\n{{ h.host }\n",
        );
        let hash = token_hash("t");
        let text = format!(
            "[tenants.ops]\ntokens = [\"{hash}\"]\n[plugins.p]\ntenant = \"ops\"\ncomponent = \"p.wasm\"\n[plugins.p.templates]\nok = \"fine {{{{ event.host }}}}\"\nsummary = '{{{{ event.host | nope( }}}}'\nblock = \"\"\"\nline one\n  {{% if x %}}\n\"\"\"\ntext = {{ file = \"text.j2\" }}\ngone = {{ file = \"missing.j2\" }}\n"
        );
        let p = write(&d, "herald.toml", &text);
        let err = Config::load(&p).unwrap_err();
        let found: Vec<_> = err
            .problems
            .iter()
            .map(|p| {
                (
                    p.file.file_name().unwrap().to_string_lossy().to_string(),
                    p.line,
                    p.column,
                    p.key.as_str(),
                )
            })
            .collect();
        // `summary` is on line 8 of herald.toml; the error is at the `}}`
        // that closes `nope(`, 23 characters into the string, which starts
        // after `summary = '` (11 characters).
        assert!(
            found.contains(&("herald.toml".into(), 8, 34, "plugins.p.templates.summary")),
            "{found:?}\n{err}"
        );
        // The multi-line string's text starts on line 10; the error is on its
        // line 2 (the unclosed `if`, reported at the end of the text).
        assert!(
            found.iter().any(|(f, l, _, k)| f == "herald.toml"
                && *l >= 10
                && *k == "plugins.p.templates.block"),
            "{found:?}\n{err}"
        );
        assert!(
            found.contains(&("text.j2".into(), 3, 11, "plugins.p.templates.text")),
            "{found:?}\n{err}"
        );
        assert!(
            err.problems
                .iter()
                .any(|p| p.key == "plugins.p.templates.gone"
                    && p.message.contains("cannot read the template file")),
            "{err}"
        );
        assert!(!err.to_string().contains("plugins.p.templates.ok"), "{err}");

        // Without the broken ones the instance has its compiled templates.
        let text = format!(
            "[tenants.ops]\ntokens = [\"{hash}\"]\n[plugins.p]\ntenant = \"ops\"\ncomponent = \"p.wasm\"\n[plugins.p.templates]\nok = \"fine {{{{ event.host }}}}\"\n"
        );
        let p = write(&d, "herald.toml", &text);
        let config = Config::load(&p).unwrap();
        let set = config.plugins["p"].compiled_templates.as_ref().unwrap();
        assert_eq!(set.names(), vec!["ok".to_string()]);
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let d = tmpdir("problems");
        let text = "[tenants.ops]\ntokens = [\"plain-token\"]\n\n[plugins.hook]\ntenant = \"nobody\"\ncomponent = \"missing.wasm\"\n".to_string();
        let p = write(&d, "herald.toml", &text);
        let err = Config::load(&p).unwrap_err();
        let keys: Vec<_> = err
            .problems
            .iter()
            .map(|p| (p.key.as_str(), p.line))
            .collect();
        assert!(keys.contains(&("tenants.ops.tokens", 2)), "{keys:?}");
        assert!(keys.contains(&("plugins.hook.tenant", 5)), "{keys:?}");
        assert!(keys.contains(&("plugins.hook.component", 6)), "{keys:?}");
    }

    #[test]
    fn tls_ca_file_and_textfile_are_read_and_checked_at_their_key() {
        let d = tmpdir("grants");
        write(&d, "p.wasm", "x");
        // A real PEM certificate block is only base64 between the markers for this check.
        write(
            &d,
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        );
        write(&d, "junk.pem", "not a certificate\n");
        std::fs::create_dir_all(d.join("tf")).unwrap();
        let head = format!("[tenants.ops]\ntokens = [\"sha256:{}\"]\n", "ab".repeat(32));
        let inst = |name: &str, extra: &str| {
            format!("[plugins.{name}]\ntenant = \"ops\"\ncomponent = \"p.wasm\"\n{extra}\n")
        };
        let ok = format!(
            "{head}{}{}",
            inst("a", "tls_ca_file = \"ca.pem\"\ntextfile = \"tf/a.prom\""),
            inst("b", "textfile = \"tf/b.prom\"")
        );
        let c = Config::load(&write(&d, "herald.toml", &ok)).unwrap();
        let a = &c.plugins["a"];
        assert_eq!(
            a.tls_ca_certs.as_deref(),
            Some(&vec![vec![0x30, 0x03, 0x02, 0x01, 0x00]])
        );
        assert_eq!(a.textfile.as_deref(), Some(d.join("tf/a.prom").as_path()));
        let bad = format!(
            "{head}{}{}",
            inst("a", "tls_ca_file = \"junk.pem\"\ntextfile = \"tf/a.txt\""),
            inst("b", "textfile = \"nowhere/b.prom\"")
        );
        let err = Config::load(&write(&d, "herald.toml", &bad)).unwrap_err();
        let got: Vec<(String, usize, String)> = err
            .problems
            .iter()
            .map(|p| (p.key.clone(), p.line, p.message.clone()))
            .collect();
        assert!(
            got.iter().any(|(k, l, m)| k == "plugins.a.tls_ca_file"
                && *l == 6
                && m.contains("holds no PEM certificate")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|(k, l, m)| k == "plugins.a.textfile"
                && *l == 7
                && m.contains("must be a `.prom` file")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|(k, l, m)| k == "plugins.b.textfile"
                && *l == 11
                && m.contains("does not exist")),
            "{got:?}"
        );
        let shared = format!(
            "{head}{}{}",
            inst("a", "textfile = \"tf/x.prom\""),
            inst("b", "textfile = \"tf/x.prom\"")
        );
        let err = Config::load(&write(&d, "herald.toml", &shared)).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
        assert!(
            err.problems[0]
                .message
                .contains("already plugins.a's textfile"),
            "{:?}",
            err.problems
        );
    }

    #[test]
    fn problems_of_every_section_are_reported_together() {
        let d = tmpdir("many");
        let text = "[server]\nport = 3\n\n[tenants.a]\ntokens = \"x\"\n\n[plugins.p]\ntenant = \"a\"\ncomponent = \"c.wasm\"\n\n[plugins.p.limits]\nmemory_mib = \"lots\"\n\n[plugins.q]\ncomponent = \"c.wasm\"\n";
        let p = write(&d, "herald.toml", text);
        let err = Config::load(&p).unwrap_err();
        let got: Vec<(String, usize)> = err
            .problems
            .iter()
            .map(|p| (p.key.clone(), p.line))
            .collect();
        assert!(got.contains(&("server.port".into(), 2)), "{got:?}");
        assert!(got.contains(&("tenants.a.tokens".into(), 5)), "{got:?}");
        assert!(
            got.contains(&("plugins.p.limits.memory_mib".into(), 12)),
            "{got:?}"
        );
        assert!(got.iter().any(|(k, _)| k == "plugins.q.tenant"), "{got:?}");
    }

    #[test]
    fn otlp_protocol_takes_the_two_standard_names() {
        let d = tmpdir("otlp-protocol");
        let p = write(
            &d,
            "herald.toml",
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\notlp_protocol = \"grpc\"\n",
        );
        let c = Config::load(&p).unwrap();
        assert_eq!(c.telemetry.otlp_protocol, Some(OtlpProtocol::Grpc));
        let p = write(
            &d,
            "herald.toml",
            "[telemetry]\notlp_protocol = \"http/json\"\n",
        );
        let err = Config::load(&p).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
        assert_eq!(
            (err.problems[0].key.as_str(), err.problems[0].line),
            ("telemetry.otlp_protocol", 2)
        );
        assert_eq!(
            OtlpProtocol::from_name("http/protobuf"),
            Some(OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(OtlpProtocol::from_name("http/json"), None);
    }

    #[test]
    fn unknown_keys_are_syntax_errors_with_position() {
        let d = tmpdir("unknown");
        let p = write(
            &d,
            "herald.toml",
            "[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n",
        );
        let err = Config::load(&p).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].line, 3);
        assert!(
            err.problems[0].message.contains("port"),
            "{}",
            err.problems[0].message
        );
    }

    #[test]
    fn secrets_are_resolved_from_env_and_files() {
        let d = tmpdir("secrets");
        write(&d, "secret.txt", "s3cret\n");
        std::env::set_var("HERALD_TEST_SECRET_X", "from-env");
        write(&d, "p.wasm", "not really wasm");
        let text = "[tenants.ops]\ntokens = [\"sha256:".to_string()
            + &"a".repeat(64)
            + "\"]\n[plugins.p]\ntenant = \"ops\"\ncomponent = \"p.wasm\"\n[plugins.p.config]\na = \"${env:HERALD_TEST_SECRET_X}\"\nb = \"x-${file:secret.txt}-y\"\n";
        let p = write(&d, "herald.toml", &text);
        let c = Config::load(&p).unwrap();
        let cfg = &c.plugins["p"].config;
        assert_eq!(cfg["a"].as_str(), Some("from-env"));
        assert_eq!(cfg["b"].as_str(), Some("x-s3cret-y"));
    }

    #[test]
    fn tokens_map_to_tenants_by_hash() {
        let d = tmpdir("tokens");
        let text = format!("[tenants.ops]\ntokens = [\"{}\"]\n", token_hash("t0k"));
        let p = write(&d, "herald.toml", &text);
        let c = Config::load(&p).unwrap();
        assert_eq!(c.tenant_for_token("t0k"), Some("ops"));
        assert_eq!(c.tenant_for_token("other"), None);
    }

    fn problems_of(text: &str, name: &str) -> Vec<(usize, usize, String, String)> {
        let d = tmpdir(name);
        let p = write(&d, "herald.toml", text);
        let (_, problems) = Config::load_all(&p).unwrap();
        problems
            .into_iter()
            .map(|p| (p.line, p.column, p.key, p.message))
            .collect()
    }

    /// `[server]` with `lines`, beside one tenant: the config and each
    /// problem's (line, key, message).
    fn with_server(name: &str, lines: &str) -> (Config, Vec<(usize, String, String)>) {
        let d = tmpdir(name);
        let hash = format!("sha256:{}", "ab".repeat(32));
        let text = format!("[server]\n{lines}[tenants.ops]\ntokens = [\"{hash}\"]\n");
        let p = write(&d, "herald.toml", &text);
        let (config, problems) = Config::load_all(&p).unwrap();
        let at = problems
            .into_iter()
            .map(|p| (p.line, p.key, p.message))
            .collect();
        (config, at)
    }

    #[test]
    fn delivery_priority_and_nice() {
        let (config, at) = with_server("delivery-default", "");
        assert!(at.is_empty(), "{at:?}");
        assert_eq!(config.server.delivery_priority, DeliveryPriority::Idle);
        assert_eq!(config.server.delivery_nice, DEFAULT_DELIVERY_NICE);
        let (config, at) = with_server(
            "delivery-nice",
            "delivery_priority = \"nice\"\ndelivery_nice = 0\n",
        );
        assert!(at.is_empty(), "{at:?}");
        assert_eq!(config.server.delivery_priority, DeliveryPriority::Nice);
        assert_eq!(config.server.delivery_nice, 0);
        let (_, at) = with_server("delivery-bad-nice", "delivery_nice = 20\n");
        assert_eq!(
            at,
            vec![(
                2,
                "server.delivery_nice".to_string(),
                "expected 0 (the same priority as ingest) to 19".to_string()
            )]
        );
        let (_, at) = with_server("delivery-bad-priority", "delivery_priority = \"low\"\n");
        assert!(
            at.iter()
                .any(|(line, key, _)| *line == 2 && key == "server.delivery_priority"),
            "{at:?}"
        );
    }

    #[test]
    fn shards_are_bounded_and_names_keep_clear_of_their_separator() {
        let d = tmpdir("shards");
        write(&d, "c.wasm", "");
        let text = "[tenants.ops]\ntokens = [\"x\"]\n[plugins.a]\ntenant = \"ops\"\ncomponent = \"c.wasm\"\nshards = 0\n[plugins.b]\ntenant = \"ops\"\ncomponent = \"c.wasm\"\nshards = 65\n[plugins.\"c#1\"]\ntenant = \"ops\"\ncomponent = \"c.wasm\"\n[plugins.d]\ntenant = \"ops\"\ncomponent = \"c.wasm\"\nshards = 4\n";
        let p = write(&d, "herald.toml", text);
        let (config, problems) = Config::load_all(&p).unwrap();
        let at: Vec<(usize, String, String)> = problems
            .into_iter()
            .map(|p| (p.line, p.key, p.message))
            .collect();
        assert!(
            at.contains(&(6, "plugins.a.shards".into(), "expected 1 to 64".into())),
            "{at:?}"
        );
        assert!(
            at.contains(&(10, "plugins.b.shards".into(), "expected 1 to 64".into())),
            "{at:?}"
        );
        assert!(
            at.iter().any(|(l, k, m)| *l == 11
                && k.starts_with("plugins.")
                && m.contains("may not contain '#'")),
            "{at:?}"
        );
        assert!(
            !at.iter().any(|(_, k, _)| k.starts_with("plugins.d")),
            "{at:?}"
        );
        assert_eq!(config.plugins["d"].shards, 4);
    }

    #[test]
    fn storage_bounds_are_located() {
        let got = problems_of(
            "[storage]\nretention_interval_ms = 10\nlease_ttl_ms = 999\npool_size = 0\n",
            "storage-bounds",
        );
        let at: Vec<_> = got
            .iter()
            .map(|(l, _, k, m)| (*l, k.as_str(), m.as_str()))
            .collect();
        for want in [
            (2, "storage.retention_interval_ms", "expected at least 1000"),
            (4, "storage.pool_size", "expected at least 1"),
        ] {
            assert!(at.contains(&want), "{want:?} in {at:?}");
        }
        assert!(
            at.iter()
                .any(|(l, k, _)| *l == 3 && *k == "storage.lease_ttl_ms"),
            "{at:?}"
        );
        let c: StorageConfig = toml::from_str("retention_interval_ms = 5000").unwrap();
        assert_eq!(c.retention_interval(), std::time::Duration::from_secs(5));
        assert_eq!(
            StorageConfig::default().retention_interval(),
            std::time::Duration::from_secs(60)
        );
    }

    #[test]
    fn problems_inside_inline_tables_are_at_their_own_column() {
        let hash = format!("sha256:{}", "a".repeat(64));
        let text = format!(
            "[tenants.ops]\ntokens = [\"{hash}\"]\n[plugins.p]\ntenant = \"ops\"\ncomponent = \"c.wasm\"\nrate_limit = {{ burst = 2, per_second = \"x\", nope = 1 }}\n[[plugins.p.routes]]\nlabels = {{ env = 1 }}\n"
        );
        let got = problems_of(&text, "inline");
        let at: Vec<_> = got
            .iter()
            .map(|(l, c, k, _)| (*l, *c, k.as_str()))
            .collect();
        assert!(
            at.contains(&(6, 27, "plugins.p.rate_limit.per_second")),
            "{got:?}"
        );
        assert!(
            at.contains(&(6, 45, "plugins.p.rate_limit.nope")),
            "{got:?}"
        );
        assert!(
            at.contains(&(8, 12, "plugins.p.routes.labels.env")),
            "{got:?}"
        );
    }

    #[test]
    fn every_error_of_a_section_and_of_a_route_is_reported() {
        let text = "[server]\nbody_limit = \"big\"\nwatch_config = 3\nport = 1\n[tenants.a]\ntokens = []\n[plugins.p]\ntenant = \"a\"\ncomponent = \"c.wasm\"\n[[plugins.p.routes]]\nkinds = [\"nope\"]\nplaybooks = [\"a[\"]\nhosts = [\"b[\"]\n";
        let got = problems_of(text, "all");
        let at: Vec<_> = got.iter().map(|(l, _, k, _)| (*l, k.as_str())).collect();
        for want in [
            (2, "server.body_limit"),
            (3, "server.watch_config"),
            (4, "server.port"),
            (11, "plugins.p.routes.kinds"),
            (12, "plugins.p.routes.playbooks"),
            (13, "plugins.p.routes.hosts"),
        ] {
            assert!(at.contains(&want), "{want:?} in {got:?}");
        }
    }

    #[test]
    fn every_missing_key_of_a_table_is_reported() {
        let text = "[tenants.a]\n\n[plugins.q]\nretry = { max_attempts = 2 }\n";
        let got = problems_of(text, "missing");
        let mut at: Vec<_> = got.iter().map(|(l, _, k, _)| (*l, k.as_str())).collect();
        at.sort();
        assert_eq!(
            at,
            [
                (1, "tenants.a.tokens"),
                (3, "plugins.q.component"),
                (3, "plugins.q.tenant")
            ],
            "{got:?}"
        );
    }

    #[test]
    fn a_duplicate_key_is_named_and_located() {
        let d = tmpdir("dup");
        let p = write(
            &d,
            "herald.toml",
            "[server]\nwatch_config = true\nwatch_config = false\n",
        );
        let err = Config::load(&p).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let p = &err.problems[0];
        assert_eq!((p.line, p.column), (3, 1));
        assert_eq!(p.message, "duplicate key `watch_config`");
    }

    #[test]
    fn a_typo_of_plugins_says_so_without_a_missing_field() {
        let hash = format!("sha256:{}", "a".repeat(64));
        let text = format!("[tenants.ops]\ntokens = [\"{hash}\"]\n[plugin.syslog]\ntenant = \"ops\"\n[plugins.syslog.config]\naddress = \"x\"\n");
        let got = problems_of(&text, "typo");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            got[0],
            (
                3,
                2,
                "plugin".to_string(),
                "unknown top-level table `plugin`; did you mean `plugins`?".to_string()
            )
        );
    }

    #[test]
    fn a_token_of_a_tenant_and_the_admin_is_refused() {
        let hash = token_hash("both");
        let text = format!(
            "[server]\nadmin_tokens = [\"{hash}\"]\n[tenants.ops]\ntokens = [\"{hash}\"]\n"
        );
        let got = problems_of(&text, "admin");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0, got[0].2.as_str()), (4, "tenants.ops.tokens"));
        assert!(got[0].3.contains("also in server.admin_tokens"), "{got:?}");
    }

    #[test]
    fn a_token_of_a_tenant_and_the_metrics_scraper_is_refused() {
        let hash = token_hash("both");
        let text = format!(
            "[server]\nmetrics_tokens = [\"{hash}\"]\n[tenants.ops]\ntokens = [\"{hash}\"]\n"
        );
        let got = problems_of(&text, "metrics");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0, got[0].2.as_str()), (4, "tenants.ops.tokens"));
        assert!(
            got[0].3.contains("also in server.metrics_tokens"),
            "{got:?}"
        );
    }

    #[test]
    fn every_unset_secret_is_reported_and_left_empty() {
        let d = tmpdir("unset");
        write(&d, "p.wasm", "x");
        let hash = format!("sha256:{}", "a".repeat(64));
        let text = format!("[tenants.ops]\ntokens = [\"{hash}\"]\n[plugins.p]\ntenant = \"ops\"\ncomponent = \"p.wasm\"\n[plugins.p.config]\na = \"${{env:HERALD_TEST_UNSET_A}}\"\nb = {{ c = [\"${{env:HERALD_TEST_UNSET_B}}\"] }}\n");
        let p = write(&d, "herald.toml", &text);
        let (config, problems) = Config::load_all(&p).unwrap();
        let at: Vec<_> = problems.iter().map(|p| (p.line, p.key.as_str())).collect();
        assert_eq!(at, [(7, "plugins.p.config.a"), (8, "plugins.p.config.b.c")]);
        assert_eq!(config.plugins["p"].config["a"].as_str(), Some(""));
    }

    #[test]
    fn a_plugins_refusal_is_located_at_the_key_it_names() {
        let d = tmpdir("refusal");
        let text = "[plugins.p]\ntenant = \"ops\"\n[plugins.p.config]\nurl = \"x\"\nheaders = { X-A = 1 }\n";
        let p = write(&d, "herald.toml", text);
        let c = Config {
            path: p,
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            telemetry: TelemetryConfig::default(),
            runtime: RuntimeConfig::default(),
            tenants: BTreeMap::new(),
            plugins: BTreeMap::new(),
        };
        let pr = c.plugin_config_problem("p", "config key `url`: http://x:80 is not in allow_http");
        assert_eq!(
            (pr.line, pr.column, pr.key.as_str()),
            (4, 1, "plugins.p.config.url")
        );
        assert_eq!(
            pr.message,
            "plugin refused its configuration: http://x:80 is not in allow_http"
        );
        let pr = c.plugin_config_problem(
            "p",
            "config key `headers.X-A`: invalid type: integer `1`, expected a string at line 1 column 30",
        );
        assert_eq!((pr.line, pr.column), (5, 13));
        assert!(pr.message.ends_with("expected a string"), "{}", pr.message);
        let pr = c.plugin_config_problem("p", "invalid config: missing field `method`");
        assert_eq!((pr.line, pr.key.as_str()), (3, "plugins.p.config.method"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryPolicy {
            initial_ms: 100,
            max_ms: 1000,
            max_attempts: 5,
            max_age_ms: 1000,
            max_retry_after_ms: 1000,
        };
        for _ in 0..50 {
            assert!(r.backoff(1) <= Duration::from_millis(100));
            assert!(r.backoff(10) <= Duration::from_millis(1000));
            assert!(r.backoff(10) >= Duration::from_millis(500));
        }
    }
}
