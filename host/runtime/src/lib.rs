//! The plugin runtime: the one place that owns the wasmtime `Engine`, links
//! the capabilities a plugin may use, and runs calls under their limits.
//!
//! * one `Engine` with the pooling allocator and epoch interruption;
//! * one pre-linked component per component file, for the contract version
//!   it was built against ([`contract`]: 0.3.0 natively, 0.2.0 and 0.1.0
//!   converted up);
//! * one module per capability a plugin may use ([`capability`]);
//! * one live instance per plugin instance, re-created after any fault
//!   (a trapped instance cannot be entered again);
//! * two clocks per call: the epoch deadline stops guest CPU loops (time the
//!   guest spends blocked on the network does not count), a tokio timeout
//!   stops calls blocked in host calls; memory is capped by a store limiter.

mod cache;
pub mod capability;
pub mod contract;
mod instance;
mod limits;
mod output;

use capability::state::PluginState;
use contract::SinkPre;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use cache::Pruned as CachePruned;
pub use capability::http::record::OutboundRequest;
pub use capability::sockets::socket_allowed;
pub use capability::state::PendingState;
pub use contract::{Outcome, Prepared, Retry, CONTRACTS};
pub use instance::{InstanceSpec, PluginInstance, Services};
pub use limits::{
    bounded, CallCounters, Fault, MemoryBudget, LOG_RECORD_OVERHEAD, MAX_FAULT_MESSAGE,
};
use limits::{lock, MemoryLimiter, EPOCH_TICK};

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

/// What one call did.
#[derive(Debug)]
pub struct CallReport {
    /// The plugin's answer, or why there was none.
    pub result: Result<Outcome, CallError>,
    /// The faults of the call, at most one per reason, hard fault last.
    pub faults: Vec<Fault>,
    /// The outbound HTTP requests the call made, in order (at most
    /// [`capability::http::record::MAX_RECORDED`]), with what came back.
    pub requests: Vec<OutboundRequest>,
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
    pub(crate) metrics: herald_telemetry::Metrics,
    pub(crate) state: Arc<dyn PluginState>,
    pub(crate) pending_state: capability::state::PendingState,
    pub(crate) templates: capability::templates::TemplatesState,
    pub(crate) tls: wasmtime_wasi_tls::WasiTlsCtx,
    /// The instance's granted textfile, if any.
    pub(crate) textfile: Option<Arc<std::path::PathBuf>>,
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
    /// The offline runner's socket stand-ins (`None` in `herald serve`).
    sockets: Option<Arc<dyn capability::sockets::scripted::SocketResponder>>,
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
            sockets: None,
        })
    }

    /// This runtime with its instances' outbound HTTP (`http.send` and
    /// `wasi:http`) answered by `responder` instead of the network, after the
    /// same allow-list and limit checks: the offline test runner's fake.
    pub fn with_outbound(
        mut self,
        responder: Arc<dyn capability::http::scripted::Responder>,
    ) -> Runtime {
        self.http = capability::http::pool::OutboundPool::scripted(responder);
        self
    }

    /// This runtime with its instances' connections and datagrams to the
    /// addresses of their `allow_sockets` sent to `responder`'s loopback
    /// stand-ins instead, and TLS over them simulated: the offline test
    /// runner's fake. Other addresses are refused as in `herald serve`.
    pub fn with_scripted_sockets(
        mut self,
        responder: Arc<dyn capability::sockets::scripted::SocketResponder>,
    ) -> Result<Runtime, LoadError> {
        let mut linker = (*self.linker).clone();
        capability::sockets::scripted::shadow(&mut linker)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        self.linker = Arc::new(linker);
        self.sockets = Some(responder);
        Ok(self)
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

    /// Removes the compile cache's entries this host will not load again
    /// (another build's, or unused for 30 days) and leftovers of interrupted
    /// writes; `None` without a cache. Blocks on the file system.
    pub fn prune_compile_cache(&self) -> Option<CachePruned> {
        self.cache.as_ref().map(|c| c.prune())
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
                    "it imports `{name}`, which the host does not provide (a plugin may import herald:plugin/{{log,metrics,state,http,templates}}@0.3.x, herald:plugin/{{log,metrics,state,http}}@0.2.x or herald:plugin/{{log,metrics,state}}@0.1.x, {}, {}, {}, wasi:http/outgoing-handler, wasi:sockets, wasi:clocks, wasi:random, wasi:io and wasi:cli; {msg})",
                    capability::grants::INTERFACE,
                    capability::tls::INTERFACE,
                    capability::textfile::INTERFACE
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
