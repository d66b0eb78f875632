//! Putting the stages together: load the config, open the journal, load the
//! plugins, start the dispatcher, serve the API, and reload on SIGHUP or when
//! the file changes.

use crate::config::{
    Config, ConfigError, DeliveryPriority, Problem, StorageBackend, StorageConfig,
};
use crate::dispatch::{Dispatcher, Replica, WorkerSpec};
use crate::journal::{now_ms, Journal, PgJournal, PgOptions, SharedStore};
use crate::runtime::{sha256_hex, InstanceSpec, PluginInstance, Runtime};
use anyhow::Context;
use arc_swap::ArcSwap;
use herald_server::{router, AppState, ReloadStatus};
use herald_telemetry::Metrics;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Compiles, links and configures one plugin instance.
async fn load_one(
    config: &Config,
    name: &str,
    runtime: &Runtime,
    journal: &SharedStore,
    metrics: &Metrics,
) -> Result<WorkerSpec, Problem> {
    let plugin = &config.plugins[name];
    let rt = runtime.clone();
    let path = plugin.component.clone();
    let component = match tokio::task::spawn_blocking(move || rt.load(&path)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(config.plugin_problem(name, "component", &e.to_string())),
        Err(e) => {
            return Err(config.plugin_problem(name, "component", &format!("loading failed: {e}")))
        }
    };
    let spec = InstanceSpec::from_config(name, plugin)
        // Only an `allow_http` prefix can fail here (reported by the config checks too).
        .map_err(|e| config.plugin_problem(name, "allow_http", &e))?;
    let sha256 = component.sha256.clone();
    // State an earlier journal kept by instance name only is this tenant's.
    if let Err(e) = journal.claim_state(&plugin.tenant, name) {
        tracing::warn!(plugin = %name, "cannot assign earlier plugin state to the tenant: {e}");
    }
    let mut instance = PluginInstance::new(
        runtime,
        component,
        Arc::new(spec),
        crate::plugin_services::services(journal, metrics),
    );
    instance.ensure_live().await.map_err(|(e, _)| match e {
        // The plugin's message names the key; point at it in the file.
        crate::runtime::CallError::Configure(msg) => config.plugin_config_problem(name, &msg),
        e => config.plugin_problem(name, "config", &e.to_string()),
    })?;
    Ok(WorkerSpec {
        instance,
        config: plugin.clone(),
        component_sha256: sha256,
    })
}

/// Loads every plugin instance of `config` except those `skip` says are
/// already running unchanged. Returns every problem found.
async fn load_plugins(
    config: &Config,
    runtime: &Runtime,
    journal: &SharedStore,
    metrics: &Metrics,
    skip: impl Fn(&str) -> bool,
) -> Result<Vec<WorkerSpec>, ConfigError> {
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    for name in config.plugins.keys() {
        if skip(name) {
            continue;
        }
        match load_one(config, name, runtime, journal, metrics).await {
            Ok(s) => specs.push(s),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(ConfigError { problems })
    }
}

/// `herald check`: validates the file and loads every plugin without
/// serving. Reports every problem at once: the plugins of a file with
/// problems are still loaded and configured (those that decoded), and their
/// problems added, except those of a key already reported (an unset
/// `${env:...}` is configured as an empty string, and not reported twice).
pub async fn check(path: &Path) -> Result<Config, ConfigError> {
    let (config, mut problems) = Config::load_all(path)?;
    let fail = |e: String| ConfigError {
        problems: vec![config.plugin_problem("", "", &e)],
    };
    let runtime = Runtime::new(Some(config.storage.data_dir().join("cache")))
        .map_err(|e| fail(e.to_string()))?;
    runtime.set_memory_ceiling(config.runtime.max_plugin_memory_mib);
    let dir = std::env::temp_dir().join(format!("herald-check-{}", std::process::id()));
    let journal: SharedStore =
        Arc::new(Journal::open(&dir.join("check.db")).map_err(|e| fail(e.to_string()))?);
    if let Some(options) = pg_options(&config.storage).filter(|o| !o.url.is_empty()) {
        // Reached, not migrated: a check changes nothing.
        let probe = tokio::task::spawn_blocking(move || herald_journal::postgres::probe(&options))
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Err(e) = probe {
            problems.push(config.storage_problem("url", &format!("cannot use the database: {e}")));
        }
    }
    let known: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    // A plugin whose component is missing was reported already.
    let skip = |name: &str| !config.plugins[name].component.is_file();
    // A registry of its own: a check's plugins do not report into the process's.
    let result = load_plugins(&config, &runtime, &journal, &Metrics::default(), skip).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        problems.extend(e.problems.into_iter().filter(|p| {
            !known
                .iter()
                .any(|k| !k.is_empty() && (p.key == *k || p.key.starts_with(&format!("{k}."))))
        }));
    }
    problems.sort_by_key(|p| (p.line, p.column));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { problems })
    }
}

/// The default message templates of plugin instance `name`: its component is
/// loaded and configured as `herald check` does (a scratch journal, nothing
/// sent), and asked what it gave (`herald template render`).
pub async fn plugin_default_templates(
    config: &Config,
    name: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let fail = |e: String| ConfigError {
        problems: vec![config.plugin_problem(name, "component", &e)],
    };
    let runtime = Runtime::new(Some(config.storage.data_dir().join("cache")))
        .map_err(|e| fail(e.to_string()))?;
    runtime.set_memory_ceiling(config.runtime.max_plugin_memory_mib);
    let dir = std::env::temp_dir().join(format!("herald-preview-{}", std::process::id()));
    let journal: SharedStore =
        Arc::new(Journal::open(&dir.join("preview.db")).map_err(|e| fail(e.to_string()))?);
    let loaded = load_one(config, name, &runtime, &journal, &Metrics::default()).await;
    let _ = std::fs::remove_dir_all(&dir);
    match loaded {
        Ok(spec) => Ok(spec.instance.default_templates()),
        Err(p) => Err(ConfigError { problems: vec![p] }),
    }
}

/// Reloads the configuration file: parse and check it, compile and configure
/// new or changed instances off the hot path, then swap. A bad file changes
/// nothing. Instances whose config and component did not change keep
/// running (with their state and queues).
pub async fn reload(state: &AppState, runtime: &Runtime) -> Result<(), ConfigError> {
    let current = state.live.load_full();
    let result = async {
        let mut new = Config::load(&current.path)?;
        if new.server.listen != current.server.listen {
            tracing::warn!("server.listen changed; it takes effect at the next restart");
            new.server.listen = current.server.listen;
        }
        // New instances are configured under the new ceiling.
        runtime.set_memory_ceiling(new.runtime.max_plugin_memory_mib);
        let unchanged = |name: &str| -> bool {
            let cfg = &new.plugins[name];
            let sha = std::fs::read(&cfg.component)
                .map(|b| sha256_hex(&b))
                .unwrap_or_default();
            state.dispatcher.is_unchanged(name, cfg, &sha)
        };
        let specs = load_plugins(&new, runtime, &state.journal, &state.metrics, unchanged).await?;
        Ok::<_, ConfigError>((new, specs))
    }
    .await;
    let mut status = ReloadStatus {
        generation: state
            .reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation
            + 1,
        at_ms: now_ms(),
        ok: false,
        problems: Vec::new(),
    };
    match result {
        Ok((new, specs)) => {
            let removed: Vec<String> = state
                .dispatcher
                .names()
                .into_iter()
                .filter(|n| !new.plugins.contains_key(n))
                .collect();
            let changed: Vec<String> = specs
                .iter()
                .map(|s| s.instance.spec().name.to_string())
                .collect();
            for name in &removed {
                state.dispatcher.remove(name);
            }
            for spec in specs {
                state.dispatcher.add(spec);
            }
            state.live.store(Arc::new(new));
            herald_telemetry::host()
                .config_reloads
                .with_label_values(&["ok"])
                .inc();
            tracing::info!(?removed, started = ?changed, "configuration reloaded");
            status.ok = true;
            *state.reload.lock().unwrap_or_else(|p| p.into_inner()) = status;
            Ok(())
        }
        Err(e) => {
            runtime.set_memory_ceiling(current.runtime.max_plugin_memory_mib);
            herald_telemetry::host()
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            for p in &e.problems {
                tracing::error!(problem = %p, "configuration reload refused; the running configuration stays");
            }
            status.problems = e.problems.iter().map(|p| p.to_string()).collect();
            *state.reload.lock().unwrap_or_else(|p| p.into_inner()) = status;
            Err(e)
        }
    }
}

/// The PostgreSQL options of `[storage]` (backend = "postgres").
pub fn pg_options(storage: &StorageConfig) -> Option<PgOptions> {
    match storage.backend {
        StorageBackend::Postgres => Some(PgOptions {
            url: storage.url.clone().unwrap_or_default(),
            pool_size: storage.pool_size(),
            statement_timeout: storage.statement_timeout(),
            tls_ca_certs: storage.tls_ca_certs.clone(),
        }),
        StorageBackend::Sqlite => None,
    }
}

/// Opens the journal `[storage]` names: the SQLite file, with the lock that
/// keeps one host per file (held until the returned lock is dropped), or
/// the PostgreSQL database, which N hosts share. Also returns how logs name
/// it (a path, or the URL without its password).
pub fn open_journal(
    storage: &StorageConfig,
) -> anyhow::Result<(SharedStore, Option<crate::lock::JournalLock>, String)> {
    match pg_options(storage) {
        Some(options) => {
            let j = PgJournal::open(&options).context("cannot open the PostgreSQL journal")?;
            let label = j.label().to_string();
            Ok((Arc::new(j), None, label))
        }
        None => {
            let path = storage.journal_path();
            let lock = crate::lock::JournalLock::acquire(&path)?;
            let j = Journal::open(&path)?;
            Ok((Arc::new(j), Some(lock), path.display().to_string()))
        }
    }
}

/// `herald migrate`: brings the journal's schema up to date and says what it
/// did. PostgreSQL's migrations run under an advisory lock, so this is safe
/// beside running replicas (each migration is applied once).
pub fn migrate(config: &Config) -> anyhow::Result<String> {
    match pg_options(&config.storage) {
        Some(options) => {
            let m = herald_journal::postgres::migrate(&options)?;
            let db = herald_journal::postgres::redact_url(&options.url);
            Ok(if m.applied.is_empty() {
                format!("{db}: schema is up to date (version {})", m.from)
            } else {
                format!(
                    "{db}: schema version {} -> {} (applied {})",
                    m.from,
                    m.applied.last().copied().unwrap_or(m.from),
                    m.applied
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        }
        None => {
            // SQLite migrates a journal file when it opens it.
            let path = config.storage.journal_path();
            let _lock = crate::lock::JournalLock::acquire(&path)?;
            Journal::open(&path)?;
            Ok(format!("{}: schema is up to date", path.display()))
        }
    }
}

/// `herald serve`: runs until SIGINT or SIGTERM. `config` is loaded by the
/// caller, which sets up tracing from its `[telemetry]` section before
/// anything logs; reloads read its file again.
pub async fn serve(mut config: Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let (journal, _lock, journal_label) = open_journal(&config.storage)?;
    let metrics = Metrics::new();
    let runtime = Runtime::new(Some(config.storage.data_dir().join("cache")))?;
    runtime.set_memory_ceiling(config.runtime.max_plugin_memory_mib);
    let specs = load_plugins(&config, &runtime, &journal, &metrics, |_| false).await?;
    // After the loads, which mark the entries in use.
    let pruning = runtime.clone();
    if let Ok(Some(p)) = tokio::task::spawn_blocking(move || pruning.prune_compile_cache()).await {
        if p.files > 0 {
            tracing::info!(
                files = p.files,
                mib = p.bytes as f64 / (1 << 20) as f64,
                "compile cache: removed entries this host will not load again"
            );
        }
    }
    // Bound (and TLS loaded) before the workers start, so a port in use
    // ends the process with that one error, not with the workers cancelled.
    let listener = std::net::TcpListener::bind(config.server.listen)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls = match &config.server.tls {
        Some(t) => {
            // One process-wide crypto provider; ring is already linked.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot load server.tls ({}, {})",
                            t.cert.display(),
                            t.key.display()
                        )
                    })?,
            )
        }
        None => None,
    };
    let replica = Replica {
        holder: Arc::from(config.storage.replica_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "herald".into());
            format!("{host}:{}", addr.port())
        })),
        lease_ttl: Duration::from_millis(config.storage.lease_ttl_ms.unwrap_or(15_000)),
        share: Default::default(),
    };
    tracing::info!(replica = %replica.holder, "this host's name among the replicas");
    let dispatcher = Arc::new(Dispatcher::start_replica(
        specs,
        journal.clone(),
        delivery_runtimes(config.server.delivery_priority, config.server.delivery_nice)?,
        replica,
    ));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, journal = %journal_label, plugins = config.plugins.len(),
        tenants = config.tenants.len(), "herald is listening on {scheme}://{addr}");
    let watch = config.server.watch_config;
    let state = AppState {
        live: Arc::new(ArcSwap::from_pointee(config)),
        journal,
        dispatcher: dispatcher.clone(),
        metrics,
        limiter: Default::default(),
        reload: Arc::new(Mutex::new(ReloadStatus::default())),
    };
    tokio::spawn(reload_triggers(state.clone(), runtime, watch));
    tokio::spawn(gauges(state.clone()));
    tokio::spawn(retention(state.clone()));
    let app = router(state).into_make_service();
    match tls {
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(app)
                .await?;
        }
        None => {
            axum::serve(tokio::net::TcpListener::from_std(listener)?, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    // Let the workers finish their current delivery and write their outcomes.
    dispatcher.shutdown(Duration::from_secs(5)).await;
    tracing::info!("herald stopped");
    Ok(())
}

/// A file's modification time and size: what the watchers compare.
type Stamp = Option<(Option<std::time::SystemTime>, u64)>;

fn stamp(p: &Path) -> Stamp {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// The stamp of every component file the running configuration uses.
fn component_stamps(config: &Config) -> Vec<(std::path::PathBuf, Stamp)> {
    let mut paths: Vec<_> = config
        .plugins
        .values()
        .map(|p| p.component.clone())
        .collect();
    paths.sort();
    paths.dedup();
    paths.into_iter().map(|p| (p.clone(), stamp(&p))).collect()
}

/// Reloads on SIGHUP, and when `watch` is on, when the file's or one of the
/// plugins' component files' modification time or size changes (checked
/// every second). A rebuilt component is picked up without a signal; the
/// reload compiles it off the hot path and swaps only the instances whose
/// component's hash changed, and one that fails to load leaves the running
/// instance in place (the problem is logged and shown by `GET /v1/admin/reload`).
async fn reload_triggers(state: AppState, runtime: Runtime, watch: bool) {
    let path = state.live.load().path.clone();
    let mut last = stamp(&path);
    let mut components = component_stamps(&state.live.load());
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup_fut = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup_fut = std::future::pending::<()>();
        let reason = tokio::select! {
            _ = hup_fut => "SIGHUP",
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !watch { continue; }
                let file = stamp(&path) != last;
                let changed: Vec<_> = components
                    .iter()
                    .filter(|(p, s)| stamp(p) != *s)
                    .map(|(p, _)| p.display().to_string())
                    .collect();
                if !file && changed.is_empty() { continue; }
                // Let an editor or a build finish writing before reading.
                tokio::time::sleep(Duration::from_millis(200)).await;
                last = stamp(&path);
                if file {
                    "file changed"
                } else {
                    tracing::info!(components = ?changed, "plugin component changed");
                    "component changed"
                }
            }
        };
        tracing::info!(reason, "reloading the configuration");
        let _ = reload(&state, &runtime).await;
        // Watch what the configuration now running uses; after a refused
        // reload, the files as they are now (a broken build is not retried
        // until it changes again).
        components = component_stamps(&state.live.load());
    }
}

/// Refreshes the gauges read from the journal (queue depth, oldest pending
/// age, dead letters, journal size, active runs) every 5 seconds.
async fn gauges(state: AppState) {
    let m = herald_telemetry::host();
    m.build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    let mut known: std::collections::BTreeSet<(String, String)> = Default::default();
    loop {
        let read = crate::journal::blocking(&state.journal, |journal| {
            let depths = journal.queue_depths()?;
            let dead = journal.dead_counts()?;
            let active = journal.active_runs(now_ms() - 3_600_000)?;
            Ok::<_, crate::journal::JournalError>((depths, dead, active, journal.size_bytes()))
        })
        .await;
        if let Ok((depths, dead, active, size)) = read {
            let config = state.live.load();
            let tenant_of = |p: &str| {
                config
                    .plugins
                    .get(p)
                    .map(|c| c.tenant.clone())
                    .unwrap_or_default()
            };
            let now = now_ms();
            let mut seen = std::collections::BTreeSet::new();
            for name in config.plugins.keys() {
                seen.insert((tenant_of(name), name.clone()));
            }
            // Dead letters stay with the tenant of their event, also when
            // the instance name has moved to another tenant since.
            for (plugin, tenant, _) in &dead {
                seen.insert((tenant.clone(), plugin.clone()));
            }
            // Instances with nothing pending read 0, not their last value.
            for (tenant, plugin) in seen.iter().chain(known.iter()) {
                // The queue belongs to the tenant the instance serves now.
                let depth = depths.iter().find(|(p, _, _)| p == plugin).filter(|_| {
                    config
                        .plugins
                        .get(plugin)
                        .is_some_and(|c| &c.tenant == tenant)
                });
                let labels = [tenant.as_str(), plugin.as_str()];
                m.queue_depth
                    .with_label_values(&labels)
                    .set(depth.map(|d| d.1 as i64).unwrap_or(0));
                m.queue_oldest_age_seconds.with_label_values(&labels).set(
                    depth
                        .map(|d| ((now - d.2).max(0) as f64) / 1000.0)
                        .unwrap_or(0.0),
                );
                let d = dead
                    .iter()
                    .find(|(p, t, _)| p == plugin && t == tenant)
                    .map(|d| d.2)
                    .unwrap_or(0);
                m.dead_letters.with_label_values(&labels).set(d as i64);
            }
            known.extend(seen);
            for tenant in config.tenants.keys() {
                let n = active
                    .iter()
                    .find(|(t, _)| t == tenant)
                    .map(|a| a.1)
                    .unwrap_or(0);
                m.runs_active
                    .with_label_values(&[tenant.as_str()])
                    .set(n as i64);
            }
            m.journal_size_bytes
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Removes delivered events (and their runs) older than
/// `storage.retention_days`, a few thousand at a time so ingest never waits
/// long for the write lock, then lets the journal reuse the space.
async fn retention(state: AppState) {
    loop {
        let days = state.live.load().storage.retention_days();
        if days > 0.0 {
            let cutoff = now_ms() - (days * 86_400_000.0) as i64;
            let mut pruned = 0;
            loop {
                let removed =
                    crate::journal::blocking(&state.journal, move |j| j.prune(cutoff, 2000)).await;
                match removed {
                    Ok(by_tenant) => {
                        let total: u64 = by_tenant.values().sum();
                        pruned += total;
                        for (tenant, n) in &by_tenant {
                            state.limiter.stored(tenant, -(*n as i64));
                        }
                        if total > 0 {
                            herald_telemetry::host().journal_pruned_events.inc_by(total);
                            tracing::info!(removed = total, "retention removed delivered events");
                        }
                        if total < 2000 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        tracing::warn!("retention pass failed: {e}");
                        break;
                    }
                }
            }
            if pruned > 0 {
                // Once per pass, so the tables reuse what it freed.
                let reclaimed = crate::journal::blocking(&state.journal, |j| j.reclaim()).await;
                if let Err(e) = reclaimed {
                    tracing::warn!("reclaiming the space retention freed failed: {e}");
                }
            }
        }
        let interval = state.live.load().storage.retention_interval();
        tokio::time::sleep(interval).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The executors the plugin instances' workers run on: one thread per core,
/// each with a current-thread runtime of its own, scheduled by `priority`
/// (their blocking threads too: the journal's reads run there). Under
/// `SCHED_IDLE` a thread per core (an ingest thread that wakes takes its
/// core back at once); at a nice value, one thread fewer than the cores
/// (which only weights the shares). Ingest answers the controllers (a
/// playbook waits for nothing, but its callback's spool does) and goes
/// first when the cores are saturated, however many instances deliver; a
/// backlog is delivered after a burst instead of slowing the burst down.
///
/// A thread per executor, not one work-stealing pool: a worker and the
/// connection tasks of its outbound requests then stay on one thread, and
/// each response wakes only that thread (with a shared pool, an idle thread
/// was woken to steal at every response: a webhook instance lost about a
/// tenth of its rate; bench/analysis.md, "The webhook's sink alone from
/// another process"). A guest that computes yields to the executor at every
/// epoch tick, so the other instances on its thread go on meanwhile.
fn delivery_runtimes(
    priority: DeliveryPriority,
    nice: i32,
) -> anyhow::Result<Vec<tokio::runtime::Handle>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match priority {
        DeliveryPriority::Idle => cores,
        DeliveryPriority::Nice => cores.saturating_sub(1).max(1),
    };
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("herald-delivery")
            .on_thread_start(move || lower_this_thread(priority, nice))
            .enable_all()
            .build()
            .context("cannot start a delivery runtime")?;
        handles.push(runtime.handle().clone());
        // The thread drives its executor for as long as the process lives
        // (a runtime cannot be dropped from async code, and the workers stop,
        // writing their outcomes, before the process exits). It has its
        // blocking threads' name: tools and tests see one group.
        std::thread::Builder::new()
            .name("herald-delivery".into())
            .spawn(move || {
                lower_this_thread(priority, nice);
                runtime.block_on(std::future::pending::<()>())
            })
            .context("cannot start a delivery thread")?;
    }
    Ok(handles)
}

/// Lowers the calling thread below ingest: Linux's `SCHED_IDLE` policy, or
/// `nice` below the process's own nice value (Linux keeps both per thread).
/// Failing only costs the priority, so it is logged, not fatal.
fn lower_this_thread(priority: DeliveryPriority, nice: i32) {
    if priority == DeliveryPriority::Idle {
        // SAFETY: sched_setscheduler reads only the sched_param we pass;
        // pid 0 is this thread. Lowering to SCHED_IDLE needs no privilege.
        // A normal thread that wakes preempts an idle one at once, which is
        // what keeps ingest's latency (nice only weights the shares: see
        // bench/analysis.md, "Delivery threads under SCHED_IDLE").
        let param = libc::sched_param { sched_priority: 0 };
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc == 0 {
            return;
        }
        tracing::warn!(error = %std::io::Error::last_os_error(),
            "cannot put the delivery thread under SCHED_IDLE; it runs at server.delivery_nice instead");
    }
    if nice == 0 {
        return;
    }
    // SAFETY: getpriority/setpriority read no memory of ours. The base is
    // the main thread's (its tid is the pid), not this thread's: a thread
    // starts with its creator's value, and a blocking thread's creator is a
    // delivery thread already lowered. `who` 0 is this thread.
    let rc = unsafe {
        let own = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        libc::setpriority(libc::PRIO_PROCESS, 0, (own + nice).min(19))
    };
    if rc != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(),
            "cannot lower the delivery thread's priority; it shares the cores equally with ingest");
    }
}
