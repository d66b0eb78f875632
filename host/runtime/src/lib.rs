//! The plugin runtime: the one place that owns the wasmtime `Engine`, links
//! the capabilities a plugin may use, and runs calls under their limits.
//!
//! * one `Engine` with the pooling allocator and epoch interruption;
//! * one pre-linked component per component file, for the contract version
//!   it was built against ([`contract`]: 0.2.0 natively, 0.1.0 converted up);
//! * one module per capability a plugin may use ([`capability`]);
//! * one live instance per plugin instance, re-created after any fault
//!   (a trapped instance cannot be entered again);
//! * two clocks per call: the epoch deadline stops guest CPU loops (time the
//!   guest spends blocked on the network does not count), a tokio timeout
//!   stops calls blocked in host calls; memory is capped by a store limiter.

mod cache;
pub mod capability;
pub mod contract;
mod output;

use capability::metrics::PluginSeries;
use capability::state::PluginState;
use contract::{Input, Sink, SinkPre};
use herald_config::{Limits, PluginConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use capability::sockets::socket_allowed;
pub use contract::{Outcome, Prepared, Retry, CONTRACTS};

/// Epoch tick: the granularity of CPU deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Hard cap of any instance's linear memory (the pooling slot size); a
/// configuration fact, so it lives in the config crate.
pub use herald_config::MAX_MEMORY_MIB;

/// Failures of loading a plugin.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    #[error("cannot compile {path}: {message}")]
    Compile { path: String, message: String },
    #[error("the component does not fit the herald:plugin contract: {0}")]
    Link(String),
}

/// Why one call of a plugin failed; each is a fault reason in `/metrics`.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CallError {
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin panicked: {0}")]
    Panic(String),
    #[error("plugin exceeded its CPU time limit ({0} ms)")]
    CpuTimeout(u64),
    #[error("plugin call exceeded its wall time limit ({0} ms); it was blocked or too slow")]
    WallTimeout(u64),
    /// The instance's own `memory_mib`, or the host-wide ceiling across
    /// instances; the message says which.
    #[error("{0}")]
    Memory(String),
    #[error("plugin refused its configuration: {0}")]
    Configure(String),
    #[error("cannot instantiate the plugin: {0}")]
    Instantiate(String),
}

impl CallError {
    /// The `reason` label of `herald_plugin_faults_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Trap(_) => "trap",
            Self::Panic(_) => "panic",
            Self::CpuTimeout(_) => "cpu_timeout",
            Self::WallTimeout(_) => "wall_timeout",
            Self::Memory(_) => "memory",
            Self::Configure(_) => "configure",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

/// What one host log record adds around a plugin's line (time, level,
/// target, the instance, tenant and delivery ids of a JSON log line),
/// charged to `limits.max_log_bytes` with every line.
pub const LOG_RECORD_OVERHEAD: u64 = 512;

/// Longest fault message kept (logs, delivery records, `/v1/plugins`).
pub const MAX_FAULT_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} …[{} more bytes]", &s[..cut], s.len() - cut)
}

/// One fault of one call: a rule the plugin broke. Hard faults (trap, panic,
/// timeouts, memory) end the call; soft faults (`denied_http`,
/// `denied_socket`, `http_limit`, `log_limit`) refuse the one operation and
/// let the call finish. Either way the instance is discarded after the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub reason: &'static str,
    /// What happened, bounded to [`MAX_FAULT_MESSAGE`].
    pub message: String,
    /// How many times it happened in the call.
    pub times: u32,
}

/// What one call did.
#[derive(Debug)]
pub struct CallReport {
    /// The plugin's answer, or why there was none.
    pub result: Result<Outcome, CallError>,
    /// The faults of the call, at most one per reason, hard fault last.
    pub faults: Vec<Fault>,
}

/// Per-call bookkeeping shared with the capability hooks and output streams.
pub struct CallCounters {
    /// Epoch ticks (10 ms) in which the guest ran during this call.
    cpu_ticks: AtomicU64,
    cpu_limit_ticks: AtomicU64,
    /// Why a memory grow was refused during this call, if one was.
    memory_exceeded: Mutex<Option<String>>,
    log_bytes: AtomicU64,
    max_log_bytes: u64,
    http_requests: AtomicU32,
    max_http_requests: u32,
    faults: Mutex<Vec<Fault>>,
    stdout_line: Mutex<Vec<u8>>,
    stderr_line: Mutex<Vec<u8>>,
    /// A panic message seen on stderr during this call.
    panic: Mutex<Option<String>>,
    panic_lines_left: AtomicU32,
}

impl CallCounters {
    fn new(limits: &Limits) -> Self {
        Self {
            cpu_ticks: AtomicU64::new(0),
            cpu_limit_ticks: AtomicU64::new((limits.cpu_ms / EPOCH_TICK.as_millis() as u64).max(1)),
            memory_exceeded: Mutex::new(None),
            log_bytes: AtomicU64::new(0),
            max_log_bytes: limits.max_log_bytes,
            http_requests: AtomicU32::new(0),
            max_http_requests: limits.max_http_requests,
            faults: Mutex::new(Vec::new()),
            stdout_line: Mutex::new(Vec::new()),
            stderr_line: Mutex::new(Vec::new()),
            panic: Mutex::new(None),
            panic_lines_left: AtomicU32::new(0),
        }
    }

    fn reset(&self) {
        self.cpu_ticks.store(0, Ordering::Relaxed);
        *lock(&self.memory_exceeded) = None;
        self.log_bytes.store(0, Ordering::Relaxed);
        self.http_requests.store(0, Ordering::Relaxed);
        lock(&self.faults).clear();
        lock(&self.stdout_line).clear();
        lock(&self.stderr_line).clear();
        *lock(&self.panic) = None;
        self.panic_lines_left.store(0, Ordering::Relaxed);
    }

    /// Records a soft fault; one entry per reason per call.
    pub(crate) fn soft_fault(&self, reason: &'static str, message: impl FnOnce() -> String) {
        let mut faults = lock(&self.faults);
        if let Some(f) = faults.iter_mut().find(|f| f.reason == reason) {
            f.times += 1;
        } else {
            faults.push(Fault {
                reason,
                message: bounded(&message(), MAX_FAULT_MESSAGE),
                times: 1,
            });
        }
    }

    /// Takes one host log record with `n` bytes of the plugin's text out of
    /// the call's log budget: the text plus [`LOG_RECORD_OVERHEAD`], so that
    /// the budget bounds the host log the output becomes, also for a flood
    /// of tiny lines. False (and a `log_limit` fault) when the budget is spent.
    pub(crate) fn take_log_budget(&self, n: usize) -> bool {
        let cost = n as u64 + LOG_RECORD_OVERHEAD;
        let used = self.log_bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        if used > self.max_log_bytes {
            let max = self.max_log_bytes;
            self.soft_fault("log_limit", || {
                format!("the plugin wrote more than {max} bytes of log in one call (limits.max_log_bytes, each line counting {LOG_RECORD_OVERHEAD} bytes more for its host log record); the rest was dropped")
            });
            return false;
        }
        true
    }

    /// Counts one outbound HTTP request; false (and an `http_limit` fault) beyond the limit.
    pub(crate) fn take_http_request(&self, destination: &str) -> bool {
        let n = self.http_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_http_requests {
            let max = self.max_http_requests;
            self.soft_fault("http_limit", || {
                format!("more than {max} outbound HTTP requests in one call (limits.max_http_requests); refused the request to {destination} and the ones after it")
            });
            return false;
        }
        true
    }

    fn line_buffer(&self, stream: output::Stream) -> std::sync::MutexGuard<'_, Vec<u8>> {
        match stream {
            output::Stream::Stdout => lock(&self.stdout_line),
            output::Stream::Stderr => lock(&self.stderr_line),
        }
    }

    /// Keeps Rust's panic report (`... panicked at file:line:col:` and the
    /// message lines after it) for the fault message.
    fn note_stderr(&self, line: &str) {
        if line.contains(" panicked at ") {
            *lock(&self.panic) = Some(bounded(line, MAX_FAULT_MESSAGE));
            self.panic_lines_left.store(3, Ordering::Relaxed);
        } else if self.panic_lines_left.load(Ordering::Relaxed) > 0 {
            self.panic_lines_left.fetch_sub(1, Ordering::Relaxed);
            if line.starts_with("note: run with `RUST_BACKTRACE") {
                self.panic_lines_left.store(0, Ordering::Relaxed);
                return;
            }
            if let Some(p) = lock(&self.panic).as_mut() {
                if p.len() < MAX_FAULT_MESSAGE {
                    p.push(' ');
                    p.push_str(line);
                    *p = bounded(p, MAX_FAULT_MESSAGE);
                }
            }
        }
    }

    /// Writes out partial output lines at the end of a call.
    fn flush_output(&self, ident: &Ident) {
        for stream in [output::Stream::Stdout, output::Stream::Stderr] {
            let line = std::mem::take(&mut *self.line_buffer(stream));
            if !line.is_empty() {
                output::emit_line(self, ident, stream, &line);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The per-store state: the sandbox (WASI context, resources, limits, the
/// call's counters, whose store it is), then one field per capability that
/// keeps per-store state ([`capability`]; `log` needs none of its own).
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limiter: MemoryLimiter,
    counters: Arc<CallCounters>,
    pub(crate) ident: Arc<Ident>,
    pub(crate) http: capability::http::HttpState,
    pub(crate) sockets: capability::sockets::SocketsState,
    pub(crate) metrics: Arc<dyn PluginSeries>,
    pub(crate) state: Arc<dyn PluginState>,
}

impl HostState {
    pub(crate) fn counters(&self) -> &CallCounters {
        &self.counters
    }
}

/// Who a store belongs to.
pub struct Ident {
    pub plugin: Arc<str>,
    pub tenant: Arc<str>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The linear memory of every plugin instance of the host together, held
/// under `runtime.max_plugin_memory_mib`: each store's limiter takes what a
/// memory grows by and gives it all back when the store is dropped.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicU64,
    ceiling: AtomicU64,
}

impl MemoryBudget {
    fn new(ceiling_mib: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            ceiling: AtomicU64::new(ceiling_mib << 20),
        }
    }

    /// Takes `n` bytes; on refusal, the bytes in use and the ceiling.
    fn take(&self, n: u64) -> Result<(), (u64, u64)> {
        let ceiling = self.ceiling.load(Ordering::Relaxed);
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= ceiling)
            });
        match taken {
            Ok(used) => {
                metrics::gauge!("herald_plugin_memory_bytes").set((used + n) as f64);
                Ok(())
            }
            Err(used) => Err((used, ceiling)),
        }
    }

    fn give_back(&self, n: u64) {
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        metrics::gauge!("herald_plugin_memory_bytes").set(before.saturating_sub(n) as f64);
    }

    /// Bytes of linear memory the live instances hold.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// Caps linear memory (the instance's own limit and the host-wide budget)
/// and remembers that it did, so the fault is named.
struct MemoryLimiter {
    max_bytes: usize,
    counters: Arc<CallCounters>,
    budget: Arc<MemoryBudget>,
    /// What this store took from the budget.
    held: u64,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            let message = format!(
                "plugin exceeded its memory limit ({} MiB, limits.memory_mib): growing to {desired} bytes was refused",
                self.max_bytes >> 20
            );
            *lock(&self.counters.memory_exceeded) = Some(message.clone());
            return Err(wasmtime::format_err!("{message}"));
        }
        let grow = desired.saturating_sub(current) as u64;
        if let Err((used, ceiling)) = self.budget.take(grow) {
            let message = format!(
                "the host-wide plugin memory ceiling is reached (runtime.max_plugin_memory_mib = {} MiB; plugin instances hold {} MiB): growing this instance by {} KiB was refused",
                ceiling >> 20,
                used >> 20,
                grow >> 10
            );
            *lock(&self.counters.memory_exceeded) = Some(message.clone());
            return Err(wasmtime::format_err!("{message}"));
        }
        self.held += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Marker error for a CPU deadline, so it can be told apart from other traps.
#[derive(Debug)]
struct CpuDeadline;
impl std::fmt::Display for CpuDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CPU time limit reached")
    }
}
impl std::error::Error for CpuDeadline {}

/// Owns the engine and the linker every plugin is instantiated through.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: Option<Arc<cache::CompileCache>>,
    /// Components in use, by sha256 of their file: instances of the same
    /// file share one compiled, linked copy (its code is the bulk of an
    /// instance's memory). Weak, so a component no instance uses any more
    /// (removed or changed by a reload) is freed.
    loaded: Arc<Mutex<HashMap<String, Weak<SinkPre>>>>,
    /// Keep-alive connections for every instance's outbound HTTP.
    http: capability::http::pool::OutboundPool,
    /// The linear memory of all instances together (`runtime.max_plugin_memory_mib`).
    memory: Arc<MemoryBudget>,
}

/// Herald's engine settings, part of the compile cache key.
const ENGINE_SETTINGS: &str = "component-model,epoch-interruption,pooling(max_memory=1024MiB)";

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption) and starts
    /// the epoch ticker thread, which ends with the engine. Compiled
    /// components are cached in `cache_dir` when given.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(1000)
            .total_core_instances(4000)
            .max_core_instances_per_component(20)
            .total_memories(1000)
            .total_tables(2000)
            .total_stacks(1000)
            .max_memory_size((MAX_MEMORY_MIB as usize) << 20);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("herald-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| LoadError::Engine(e.to_string());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        contract::add_to_linker(&mut linker).map_err(link)?;
        capability::add_to_linker(&mut linker).map_err(link)?;
        let cache =
            cache_dir.map(|dir| Arc::new(cache::CompileCache::new(dir, &engine, ENGINE_SETTINGS)));
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache,
            http: capability::http::pool::OutboundPool::new(),
            loaded: Arc::new(Mutex::new(HashMap::new())),
            memory: Arc::new(MemoryBudget::new(
                herald_config::RuntimeConfig::default().max_plugin_memory_mib,
            )),
        })
    }

    /// Sets the host-wide ceiling on the linear memory of all plugin
    /// instances together (`runtime.max_plugin_memory_mib`). Memory already
    /// held stays; grows beyond the new ceiling are refused.
    pub fn set_memory_ceiling(&self, mib: u64) {
        self.memory.ceiling.store(mib << 20, Ordering::Relaxed);
    }

    /// The host-wide memory budget of plugin instances.
    pub fn memory(&self) -> &MemoryBudget {
        &self.memory
    }

    /// Compiles a component (or loads it from the compile cache) and checks
    /// it against the contract: it must export `herald:plugin/handler` of a
    /// version in [`CONTRACTS`] and import nothing the host does not provide.
    /// Instances of the same file (same sha256) share one loaded copy; a
    /// changed file is a new sha256, so a reload picks up the new code.
    pub fn load(&self, path: &Path) -> Result<LoadedComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Compile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let sha256 = sha256_hex(&bytes);
        // Held while loading, so one file is never compiled twice at once.
        let mut loaded = lock(&self.loaded);
        loaded.retain(|_, pre| pre.strong_count() > 0);
        if let Some(pre) = loaded.get(&sha256).and_then(Weak::upgrade) {
            return Ok(LoadedComponent { pre, sha256 });
        }
        let pre = Arc::new(self.link(path, &bytes, &sha256)?);
        loaded.insert(sha256.clone(), Arc::downgrade(&pre));
        Ok(LoadedComponent { pre, sha256 })
    }

    /// Compiles (or loads from the compile cache) and links one component.
    fn link(&self, path: &Path, bytes: &[u8], sha256: &str) -> Result<SinkPre, LoadError> {
        let compiled = match &self.cache {
            Some(cache) => cache.load(&self.engine, bytes, sha256, path),
            None => Component::new(&self.engine, bytes),
        };
        let component = compiled.map_err(|e| LoadError::Compile {
            path: path.display().to_string(),
            message: format!("{e:#}"),
        })?;
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let version = contract::Version::of(&exports)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            // wasmtime names the first import it cannot satisfy.
            let msg = format!("{e:#}");
            let missing = ty
                .imports(&self.engine)
                .map(|(n, _)| n.to_string())
                .find(|n| msg.contains(&format!("`{n}`")));
            match missing {
                Some(name) => LoadError::Link(format!(
                    "it imports `{name}`, which the host does not provide (a plugin may import herald:plugin/{{log,metrics,state,http}}@0.2.x or herald:plugin/{{log,metrics,state}}@0.1.x, {}, wasi:http/outgoing-handler, wasi:sockets, wasi:clocks, wasi:random, wasi:io and wasi:cli; {msg})",
                    capability::grants::INTERFACE
                )),
                None => LoadError::Link(format!("it cannot be linked: {msg}")),
            }
        })?;
        SinkPre::new(version, pre)
    }
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A compiled, linked component, ready to instantiate; shared by every
/// instance of the same file.
#[derive(Clone)]
pub struct LoadedComponent {
    pre: Arc<SinkPre>,
    /// sha256 of the component file.
    pub sha256: String,
}

impl LoadedComponent {
    /// The `herald:plugin/handler` version the component exports.
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }
}

/// Everything an instance needs besides its component.
pub struct InstanceSpec {
    pub name: Arc<str>,
    pub tenant: Arc<str>,
    pub config_json: String,
    pub limits: Limits,
    pub allow_http: Arc<Vec<capability::http::UrlPrefix>>,
    pub allow_sockets: Arc<Vec<SocketAddr>>,
}

impl InstanceSpec {
    /// Builds the spec of a configured plugin instance.
    pub fn from_config(name: &str, cfg: &PluginConfig) -> Result<InstanceSpec, String> {
        let allow_http = cfg
            .allow_http
            .iter()
            .map(|p| capability::http::UrlPrefix::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let config_json = serde_json::to_string(&cfg.config).map_err(|e| e.to_string())?;
        Ok(InstanceSpec {
            name: name.into(),
            tenant: cfg.tenant.as_str().into(),
            config_json,
            limits: cfg.limits.clone(),
            allow_http: Arc::new(allow_http),
            allow_sockets: Arc::new(cfg.allow_sockets.clone()),
        })
    }
}

/// What the host gives the capabilities to write to: the plugin-state store
/// (the journal) and the sink of plugin-defined series (the metric
/// registry). Cloned into every store of an instance.
#[derive(Clone)]
pub struct Services {
    pub state: Arc<dyn PluginState>,
    pub series: Arc<dyn PluginSeries>,
}

/// One plugin instance: its component, its spec, and the live store when
/// there is one.
pub struct PluginInstance {
    component: LoadedComponent,
    spec: Arc<InstanceSpec>,
    engine: Engine,
    http: capability::http::pool::OutboundPool,
    services: Services,
    memory: Arc<MemoryBudget>,
    live: Option<(Store<HostState>, Sink)>,
    /// Faults of a `configure` that still succeeded, reported with the next call.
    pending_faults: Vec<Fault>,
}

impl PluginInstance {
    /// Creates the instance; nothing runs until the first call.
    pub fn new(
        runtime: &Runtime,
        component: LoadedComponent,
        spec: Arc<InstanceSpec>,
        services: Services,
    ) -> Self {
        Self {
            component,
            spec,
            engine: runtime.engine.clone(),
            http: runtime.http.clone(),
            services,
            memory: runtime.memory.clone(),
            live: None,
            pending_faults: Vec::new(),
        }
    }

    /// The instance's spec.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    /// The `herald:plugin/handler` version its component exports.
    pub fn contract(&self) -> &'static str {
        self.component.contract()
    }

    fn new_store(&self) -> Store<HostState> {
        let counters = Arc::new(CallCounters::new(&self.spec.limits));
        let ident = Arc::new(Ident {
            plugin: self.spec.name.clone(),
            tenant: self.spec.tenant.clone(),
        });
        let mut wasi = WasiCtx::builder();
        // No preopens, no environment, no arguments, empty stdin (the
        // defaults); stdout and stderr go to the host log.
        wasi.stdout(output::PluginOutput {
            stream: output::Stream::Stdout,
            counters: counters.clone(),
            ident: ident.clone(),
        })
        .stderr(output::PluginOutput {
            stream: output::Stream::Stderr,
            counters: counters.clone(),
            ident: ident.clone(),
        });
        let sockets = capability::sockets::SocketsState::grant(
            &mut wasi,
            self.spec.allow_sockets.clone(),
            counters.clone(),
        );
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: (self.spec.limits.memory_mib as usize) << 20,
                counters: counters.clone(),
                budget: self.memory.clone(),
                held: 0,
            },
            http: capability::http::HttpState::new(
                self.spec.allow_http.clone(),
                counters.clone(),
                self.http.clone(),
            ),
            sockets,
            metrics: self.services.series.clone(),
            state: self.services.state.clone(),
            counters,
            ident,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // The deadline fires once per epoch tick in which the guest runs (a
        // guest blocked in a host call runs no code, so its waiting costs at
        // most one tick). Each time, count the tick and yield to the executor,
        // so that a busy guest never holds a worker thread for long.
        store.epoch_deadline_callback(|ctx| {
            let c = &ctx.data().counters;
            let used = c.cpu_ticks.fetch_add(1, Ordering::Relaxed) + 1;
            if used >= c.cpu_limit_ticks.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::new(CpuDeadline));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    fn arm(store: &mut Store<HostState>) {
        store.data().counters.reset();
        store.set_epoch_deadline(1);
    }

    /// Names the hard fault of a failed call.
    fn classify(&self, counters: &CallCounters, err: wasmtime::Error) -> CallError {
        if err.downcast_ref::<CpuDeadline>().is_some() || err.chain().any(|e| e.is::<CpuDeadline>())
        {
            return CallError::CpuTimeout(self.spec.limits.cpu_ms);
        }
        if let Some(message) = lock(&counters.memory_exceeded).clone() {
            return CallError::Memory(message);
        }
        let trap = err.downcast_ref::<wasmtime::Trap>().copied().or_else(|| {
            err.chain()
                .find_map(|e| e.downcast_ref::<wasmtime::Trap>().copied())
        });
        let panic = lock(&counters.panic).clone();
        match (trap, panic) {
            (Some(wasmtime::Trap::UnreachableCodeReached), Some(p)) => CallError::Panic(p),
            (Some(t), _) => CallError::Trap(t.to_string()),
            (None, _) => {
                let root = err
                    .chain()
                    .last()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                CallError::Trap(bounded(&root, MAX_FAULT_MESSAGE))
            }
        }
    }

    /// Ends a call: flushes its output, gathers its faults, and discards the
    /// instance after any fault.
    fn finish<T>(
        &mut self,
        counters: &CallCounters,
        result: Result<T, CallError>,
    ) -> (Result<T, CallError>, Vec<Fault>) {
        counters.flush_output(&Ident {
            plugin: self.spec.name.clone(),
            tenant: self.spec.tenant.clone(),
        });
        let mut faults = std::mem::take(&mut *lock(&counters.faults));
        if let Err(e) = &result {
            faults.push(Fault {
                reason: e.reason(),
                message: bounded(&e.to_string(), MAX_FAULT_MESSAGE),
                times: 1,
            });
        }
        if !faults.is_empty() {
            // A faulty instance is never entered again.
            self.live = None;
        }
        (result, faults)
    }

    /// Instantiates and configures a fresh instance if there is none. Faults
    /// of instantiation and `configure` are returned with the error.
    pub async fn ensure_live(&mut self) -> Result<(), (CallError, Vec<Fault>)> {
        if self.live.is_some() {
            return Ok(());
        }
        let mut store = self.new_store();
        let counters = store.data().counters.clone();
        Self::arm(&mut store);
        metrics::counter!("herald_plugin_instantiations_total",
            "tenant" => self.spec.tenant.to_string(), "plugin" => self.spec.name.to_string())
        .increment(1);
        let wall = Duration::from_millis(self.spec.limits.wall_ms);
        let pre = self.component.pre.clone();
        let sink = match tokio::time::timeout(wall, pre.instantiate(&mut store)).await {
            Err(_) => Err(CallError::WallTimeout(self.spec.limits.wall_ms)),
            Ok(Err(e)) => Err(match self.classify(&counters, e) {
                CallError::Trap(m) => CallError::Instantiate(m),
                other => other,
            }),
            Ok(Ok(s)) => Ok(s),
        };
        let sink = match sink {
            Ok(s) => s,
            Err(e) => {
                let (r, faults) = self.finish::<()>(&counters, Err(e));
                return r.map_err(|e| (e, faults));
            }
        };
        Self::arm(&mut store);
        let config = self.spec.config_json.clone();
        let configured = tokio::time::timeout(wall, sink.configure(&mut store, &config)).await;
        let result = match configured {
            Err(_) => Err(CallError::WallTimeout(self.spec.limits.wall_ms)),
            Ok(Err(e)) => Err(self.classify(&counters, e)),
            Ok(Ok(Err(message))) => Err(CallError::Configure(bounded(&message, MAX_FAULT_MESSAGE))),
            Ok(Ok(Ok(()))) => Ok(()),
        };
        let (result, faults) = self.finish(&counters, result);
        match result {
            // `configure` runs once per instance: an instance that broke a
            // soft rule while configuring (a log flood, a refused request) is
            // kept, and the faults are reported with its first call.
            Ok(()) => {
                self.live = Some((store, sink));
                self.pending_faults = faults;
                Ok(())
            }
            Err(e) => Err((e, faults)),
        }
    }

    /// Delivers one journaled event (its wire-format JSON, as in the
    /// journal) in the shape the component's contract version takes: a 0.2.0
    /// plugin borrows it as a lazily read `event`, a 0.1.0 plugin gets the
    /// whole record. Any fault discards the instance; the next call creates
    /// a new one.
    pub async fn deliver(&mut self, body: &str, attempt: u32) -> CallReport {
        self.call(Input::Journaled(body), attempt).await
    }

    /// Converts a journaled event once into the shape this instance's
    /// contract version takes, for [`Self::handle`] (raw-call benchmarks).
    pub fn prepare(&self, body: &str) -> Result<Prepared, String> {
        self.component.pre.prepare(&self.spec.tenant, body)
    }

    /// Calls `handle` with an event already [prepared](Self::prepare); an
    /// event prepared for another contract version is converted again.
    pub async fn handle(&mut self, event: &Prepared, attempt: u32) -> CallReport {
        self.call(Input::Prepared(event), attempt).await
    }

    async fn call(&mut self, input: Input<'_>, attempt: u32) -> CallReport {
        if let Err((e, faults)) = self.ensure_live().await {
            return CallReport {
                result: Err(e),
                faults,
            };
        }
        let earlier = std::mem::take(&mut self.pending_faults);
        let Some((mut store, sink)) = self.live.take() else {
            // configure had a soft fault; the instance was discarded.
            return CallReport {
                result: Err(CallError::Instantiate(
                    "the fresh instance broke a rule while configuring".into(),
                )),
                faults: earlier,
            };
        };
        let counters = store.data().counters.clone();
        let wall = Duration::from_millis(self.spec.limits.wall_ms);
        Self::arm(&mut store);
        let tenant = self.spec.tenant.clone();
        let call = sink.handle(&mut store, &tenant, input, attempt);
        let result = tokio::time::timeout(wall, call).await;
        let result = match result {
            Err(_) => Err(CallError::WallTimeout(self.spec.limits.wall_ms)),
            Ok(Err(e)) => Err(self.classify(&counters, e)),
            Ok(Ok(outcome)) => Ok(outcome),
        };
        let keep = result.is_ok();
        let (result, mut faults) = self.finish(&counters, result);
        if keep && faults.is_empty() {
            self.live = Some((store, sink));
        }
        faults.splice(0..0, earlier);
        CallReport { result, faults }
    }
}
