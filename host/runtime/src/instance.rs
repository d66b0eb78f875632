//! The life of one plugin instance: its spec, a fresh store with every
//! capability granted, instantiation and `configure` under the wall clock,
//! each call under its limits, the faults named, and the instance discarded
//! after any fault (a trapped instance cannot be entered again).

use crate::capability::state::{PendingState, PluginState};
use crate::contract::{Input, Prepared, Sink};
use crate::limits::{lock, CallCounters, CpuDeadline, MemoryBudget, MemoryLimiter};
use crate::{
    bounded, capability, output, CallError, CallReport, Fault, HostState, Ident, LoadedComponent,
    Runtime, MAX_FAULT_MESSAGE,
};
use herald_config::{Limits, PluginConfig};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

/// Everything an instance needs besides its component.
pub struct InstanceSpec {
    pub name: Arc<str>,
    pub tenant: Arc<str>,
    pub config_json: String,
    pub limits: Limits,
    pub allow_http: Arc<Vec<capability::http::UrlPrefix>>,
    pub allow_sockets: Arc<Vec<SocketAddr>>,
    /// The instance's message templates, compiled when the config loaded.
    pub templates: Option<Arc<herald_templates::TemplateSet>>,
    /// What `wasi:tls` trusts for this instance (web roots + `tls_ca_file`).
    pub tls: capability::tls::TlsRoots,
    /// The one file the instance may write (`herald:textfile`), if granted.
    pub textfile: Option<Arc<std::path::PathBuf>>,
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
            templates: cfg.compiled_templates.clone(),
            tls: capability::tls::TlsRoots::new(
                cfg.tls_ca_certs
                    .as_deref()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            )?,
            textfile: cfg.textfile.clone().map(Arc::new),
        })
    }
}

/// What the host gives the capabilities to write to and read from: the
/// plugin-state store (the journal), the sink of plugin-defined series (the
/// metric registry) and the run reads templates need (the journal). Cloned
/// into every store of an instance.
#[derive(Clone)]
pub struct Services {
    pub state: Arc<dyn PluginState>,
    pub series: herald_telemetry::Metrics,
    pub runs: Arc<dyn herald_journal::RunQueries>,
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
    sockets: Option<Arc<dyn capability::sockets::scripted::SocketResponder>>,
    live: Option<(Store<HostState>, Sink)>,
    /// Faults of a `configure` that still succeeded, reported with the next call.
    pending_faults: Vec<Fault>,
    /// The delivery the next calls are for (see [`Self::set_delivery_log`]).
    delivery: Option<Arc<herald_telemetry::DeliveryLog>>,
    /// The `state` writes its calls made that the journal may not have yet
    /// (kept across a store replaced after a fault).
    pending_state: PendingState,
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
            sockets: runtime.sockets.clone(),
            live: None,
            pending_faults: Vec::new(),
            delivery: None,
            pending_state: PendingState::default(),
        }
    }

    /// Another instance of the same component and spec (a shard of the
    /// same `[plugins.NAME]`): a store of its own, made at its first call.
    /// Both then write the same `state`, so neither keeps a copy of it.
    pub fn sibling(&self) -> Self {
        self.pending_state.share();
        let pending_state = PendingState::default();
        pending_state.share();
        Self {
            component: self.component.clone(),
            spec: self.spec.clone(),
            engine: self.engine.clone(),
            http: self.http.clone(),
            services: self.services.clone(),
            memory: self.memory.clone(),
            sockets: self.sockets.clone(),
            live: None,
            pending_faults: Vec::new(),
            delivery: None,
            pending_state,
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

    /// The default message templates (name, source) the live instance's
    /// plugin gave while configuring (contract 0.3.0); empty without a live
    /// instance or defaults. For previews (`herald template render`).
    pub fn default_templates(&self) -> Vec<(String, String)> {
        self.live
            .as_ref()
            .map(|(store, _)| store.data().templates.defaults())
            .unwrap_or_default()
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
            self.sockets.clone(),
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
            pending_state: self.pending_state.clone(),
            templates: capability::templates::TemplatesState::new(
                self.spec.templates.clone(),
                self.spec.limits.render_limits(),
                self.services.runs.clone(),
            ),
            tls: match &self.sockets {
                Some(stand_ins) => capability::sockets::scripted::clear_tls(stand_ins.clone()),
                None => self.spec.tls.ctx(),
            },
            textfile: self.spec.textfile.clone(),
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
        herald_telemetry::host()
            .plugin_instantiations
            .with_label_values(&[&*self.spec.tenant, &*self.spec.name])
            .inc();
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

    /// The `state` writes of this instance's calls, for its worker to hand
    /// to the journal's writer with their deliveries' outcomes.
    pub fn pending_state(&self) -> &PendingState {
        &self.pending_state
    }

    /// Names the delivery the next calls are for: what the instance logs
    /// during them (its `log` calls, its output, refused state or metric
    /// writes) is in that delivery's span, with its run and request ids.
    pub fn set_delivery_log(&mut self, log: herald_telemetry::DeliveryLog) {
        self.delivery = Some(Arc::new(log));
    }

    /// Converts a journaled event once into the shape this instance's
    /// contract version takes, for [`Self::handle`] (raw-call benchmarks).
    pub fn prepare(&self, body: &str) -> Result<Prepared, crate::contract::EventError> {
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
                requests: Vec::new(),
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
                requests: Vec::new(),
            };
        };
        let counters = store.data().counters.clone();
        counters.set_delivery(self.delivery.clone());
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
        let requests = counters.take_requests();
        CallReport {
            result,
            faults,
            requests,
        }
    }
}
