//! The plugin runtime: the one place that owns the wasmtime `Engine`, links
//! the capabilities a plugin may use, and runs calls under their limits.
//!
//! * one `Engine` with the pooling allocator and epoch interruption;
//! * one pre-linked component (`SinkPre`) per plugin instance;
//! * one live instance per plugin instance, re-created after any fault
//!   (a trapped instance cannot be entered again);
//! * two clocks per call: the epoch deadline stops guest CPU loops (time the
//!   guest spends blocked on the network does not count), a tokio timeout
//!   stops calls blocked in host calls; memory is capped by a store limiter.

pub mod convert;
mod host_api;
pub mod http;

use crate::config::{Limits, PluginConfig};
use crate::journal::Journal;
use crate::telemetry::Metrics;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host bindings generated from the plugin contract.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "sink",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
        },
    });
}

pub use bindings::exports::herald::plugin::handler::Outcome;
pub use bindings::herald::plugin::types::Event as WitEvent;

/// The contract version this host implements natively.
pub const CONTRACT: &str = "herald:plugin/handler@0.1.0";

/// Epoch tick: the granularity of CPU deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Hard cap of any instance's linear memory (the pooling slot size).
pub const MAX_MEMORY_MIB: u64 = 1024;

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
    #[error("plugin exceeded its CPU time limit ({0} ms)")]
    CpuTimeout(u64),
    #[error("plugin call exceeded its wall time limit ({0} ms)")]
    WallTimeout(u64),
    #[error("plugin exceeded its memory limit ({0} MiB)")]
    Memory(u64),
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
            Self::CpuTimeout(_) => "cpu_timeout",
            Self::WallTimeout(_) => "wall_timeout",
            Self::Memory(_) => "memory",
            Self::Configure(_) => "configure",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

/// Per-call bookkeeping shared with the capability hooks.
#[derive(Default)]
pub struct CallCounters {
    /// Microseconds the current call spent blocked on the network.
    waited_us: AtomicU64,
    memory_exceeded: AtomicBool,
}

impl CallCounters {
    fn add_wait(&self, d: Duration) {
        self.waited_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    fn reset(&self) {
        self.waited_us.store(0, Ordering::Relaxed);
        self.memory_exceeded.store(false, Ordering::Relaxed);
    }
}

/// The per-store state: WASI context, capability hooks and host API handles.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    gate: http::HttpGate,
    limiter: MemoryLimiter,
    call_started: Instant,
    cpu_limit: Duration,
    counters: Arc<CallCounters>,
    pub(crate) ident: Arc<Ident>,
    pub(crate) journal: Journal,
    pub(crate) metrics: Metrics,
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

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// Caps linear memory and remembers that it did, so the fault is named.
struct MemoryLimiter {
    max_bytes: usize,
    counters: Arc<CallCounters>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.counters.memory_exceeded.store(true, Ordering::Relaxed);
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded",
                self.max_bytes
            ));
        }
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
}

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption) and starts
    /// the epoch ticker thread, which ends with the engine.
    pub fn new() -> Result<Runtime, LoadError> {
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
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        host_api::add_to_linker(&mut linker).map_err(link)?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// Compiles a component and checks it against the contract: it must
    /// export `herald:plugin/handler@0.1.x` and import nothing the host does
    /// not provide.
    pub fn load(&self, path: &Path) -> Result<LoadedComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Compile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let sha256 = sha256_hex(&bytes);
        let component = Component::new(&self.engine, &bytes).map_err(|e| LoadError::Compile {
            path: path.display().to_string(),
            message: format!("{e:#}"),
        })?;
        let ty = component.component_type();
        let exports_contract = ty
            .exports(&self.engine)
            .any(|(name, _)| name.starts_with("herald:plugin/handler@0.1."));
        if !exports_contract {
            return Err(LoadError::Link(format!(
                "it does not export {CONTRACT} (is it built against wit/v0.1.0?)"
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = bindings::SinkPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Ok(LoadedComponent { pre, sha256 })
    }
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A compiled, linked component, ready to instantiate.
#[derive(Clone)]
pub struct LoadedComponent {
    pre: bindings::SinkPre<HostState>,
    /// sha256 of the component file.
    pub sha256: String,
}

/// Everything an instance needs besides its component.
pub struct InstanceSpec {
    pub name: Arc<str>,
    pub tenant: Arc<str>,
    pub config_json: String,
    pub limits: Limits,
    pub allow_http: Arc<Vec<http::UrlPrefix>>,
    pub allow_sockets: Arc<Vec<SocketAddr>>,
}

impl InstanceSpec {
    /// Builds the spec of a configured plugin instance.
    pub fn from_config(name: &str, cfg: &PluginConfig) -> Result<InstanceSpec, String> {
        let allow_http = cfg
            .allow_http
            .iter()
            .map(|p| http::UrlPrefix::parse(p))
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

/// One plugin instance: its component, its spec, and the live store when
/// there is one.
pub struct PluginInstance {
    component: LoadedComponent,
    spec: Arc<InstanceSpec>,
    engine: Engine,
    journal: Journal,
    metrics: Metrics,
    live: Option<(Store<HostState>, bindings::Sink)>,
}

impl PluginInstance {
    /// Creates the instance; nothing runs until the first call.
    pub fn new(
        runtime: &Runtime,
        component: LoadedComponent,
        spec: Arc<InstanceSpec>,
        journal: Journal,
        metrics: Metrics,
    ) -> Self {
        Self {
            component,
            spec,
            engine: runtime.engine.clone(),
            journal,
            metrics,
            live: None,
        }
    }

    /// The instance's spec.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    fn new_store(&self) -> Store<HostState> {
        let counters = Arc::new(CallCounters::default());
        let allowed = self.spec.allow_sockets.clone();
        let (plugin, tenant) = (self.spec.name.clone(), self.spec.tenant.clone());
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let ok = match usage {
                    // Binding the ephemeral local end of an outbound socket.
                    SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => addr.port() == 0,
                    SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                        allowed.contains(&addr)
                    }
                    _ => false,
                };
                if !ok {
                    metrics::counter!("herald_plugin_faults_total",
                        "tenant" => tenant.to_string(), "plugin" => plugin.to_string(), "reason" => "denied_socket")
                    .increment(1);
                    tracing::warn!(plugin = %plugin, tenant = %tenant, destination = %addr, ?usage,
                        "socket use refused: not in the instance's allow_sockets");
                }
                Box::pin(async move { ok })
            });
        let ident = Arc::new(Ident {
            plugin: self.spec.name.clone(),
            tenant: self.spec.tenant.clone(),
        });
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            gate: http::HttpGate {
                allow: self.spec.allow_http.clone(),
                counters: counters.clone(),
                plugin: self.spec.name.clone(),
                tenant: self.spec.tenant.clone(),
            },
            limiter: MemoryLimiter {
                max_bytes: (self.spec.limits.memory_mib as usize) << 20,
                counters: counters.clone(),
            },
            call_started: Instant::now(),
            cpu_limit: Duration::from_millis(self.spec.limits.cpu_ms),
            counters,
            ident,
            journal: self.journal.clone(),
            metrics: self.metrics.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // When the deadline passes, subtract the time the guest was blocked
        // on the network; only a guest that really computed that long stops.
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            let waited = Duration::from_micros(s.counters.waited_us.load(Ordering::Relaxed));
            let busy = s.call_started.elapsed().saturating_sub(waited);
            if busy >= s.cpu_limit {
                return Err(wasmtime::Error::new(CpuDeadline));
            }
            let left = (s.cpu_limit - busy).as_millis() as u64 / EPOCH_TICK.as_millis() as u64;
            Ok(UpdateDeadline::Continue(left.max(1)))
        });
        store
    }

    fn arm(store: &mut Store<HostState>) {
        let data = store.data_mut();
        data.call_started = Instant::now();
        data.counters.reset();
        let ticks = (data.cpu_limit.as_millis() as u64 / EPOCH_TICK.as_millis() as u64).max(1);
        store.set_epoch_deadline(ticks);
    }

    fn classify(&self, store: Option<&Store<HostState>>, err: wasmtime::Error) -> CallError {
        if err.downcast_ref::<CpuDeadline>().is_some() || err.chain().any(|e| e.is::<CpuDeadline>())
        {
            return CallError::CpuTimeout(self.spec.limits.cpu_ms);
        }
        if store.is_some_and(|s| s.data().counters.memory_exceeded.load(Ordering::Relaxed)) {
            return CallError::Memory(self.spec.limits.memory_mib);
        }
        CallError::Trap(format!("{err:#}"))
    }

    /// Instantiates and configures a fresh instance if there is none.
    pub async fn ensure_live(&mut self) -> Result<(), CallError> {
        if self.live.is_some() {
            return Ok(());
        }
        let mut store = self.new_store();
        Self::arm(&mut store);
        let wall = Duration::from_millis(self.spec.limits.wall_ms);
        let pre = self.component.pre.clone();
        let sink = match tokio::time::timeout(wall, pre.instantiate_async(&mut store)).await {
            Err(_) => return Err(CallError::WallTimeout(self.spec.limits.wall_ms)),
            Ok(Err(e)) => return Err(CallError::Instantiate(format!("{e:#}"))),
            Ok(Ok(s)) => s,
        };
        Self::arm(&mut store);
        let config = self.spec.config_json.clone();
        let configured = tokio::time::timeout(
            wall,
            sink.herald_plugin_handler()
                .call_configure(&mut store, &config),
        )
        .await;
        match configured {
            Err(_) => Err(CallError::WallTimeout(self.spec.limits.wall_ms)),
            Ok(Err(e)) => Err(self.classify(Some(&store), e)),
            Ok(Ok(Err(message))) => Err(CallError::Configure(message)),
            Ok(Ok(Ok(()))) => {
                self.live = Some((store, sink));
                Ok(())
            }
        }
    }

    /// Delivers one event. Any fault discards the instance; the next call
    /// creates a new one.
    pub async fn handle(&mut self, event: &WitEvent, attempt: u32) -> Result<Outcome, CallError> {
        self.ensure_live().await?;
        let wall = Duration::from_millis(self.spec.limits.wall_ms);
        let (mut store, sink) = self
            .live
            .take()
            .ok_or_else(|| CallError::Instantiate("no instance".into()))?;
        Self::arm(&mut store);
        let result = tokio::time::timeout(
            wall,
            sink.herald_plugin_handler()
                .call_handle(&mut store, event, attempt),
        )
        .await;
        match result {
            Err(_) => Err(CallError::WallTimeout(self.spec.limits.wall_ms)),
            Ok(Err(e)) => Err(self.classify(Some(&store), e)),
            Ok(Ok(outcome)) => {
                self.live = Some((store, sink));
                Ok(outcome)
            }
        }
    }
}
