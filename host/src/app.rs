//! Putting the stages together: load the config, open the journal, load the
//! plugins, start the dispatcher and serve the API.

use crate::api::{router, AppState};
use crate::config::{Config, ConfigError, Problem, RetryPolicy};
use crate::dispatch::Dispatcher;
use crate::journal::Journal;
use crate::runtime::{InstanceSpec, PluginInstance, Runtime};
use crate::telemetry::Metrics;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Compiles, links and configures every plugin instance of `config`.
/// Returns every problem found, each located at its instance in the file.
pub async fn load_plugins(
    config: &Config,
    runtime: &Runtime,
    journal: &Journal,
    metrics: &Metrics,
) -> Result<Vec<(PluginInstance, RetryPolicy)>, ConfigError> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut instances = Vec::new();
    for (name, plugin) in &config.plugins {
        let rt = runtime.clone();
        let path = plugin.component.clone();
        let component = match tokio::task::spawn_blocking(move || rt.load(&path)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                problems.push(config.plugin_problem(name, "component", &e.to_string()));
                continue;
            }
            Err(e) => {
                problems.push(config.plugin_problem(
                    name,
                    "component",
                    &format!("loading failed: {e}"),
                ));
                continue;
            }
        };
        let spec = match InstanceSpec::from_config(name, plugin) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                problems.push(config.plugin_problem(name, "config", &e));
                continue;
            }
        };
        let mut instance =
            PluginInstance::new(runtime, component, spec, journal.clone(), metrics.clone());
        if let Err(e) = instance.ensure_live().await {
            problems.push(config.plugin_problem(name, "config", &e.to_string()));
            continue;
        }
        instances.push((instance, plugin.retry.clone()));
    }
    if problems.is_empty() {
        Ok(instances)
    } else {
        Err(ConfigError { problems })
    }
}

/// `herald check`: validates the file and loads every plugin without serving.
pub async fn check(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    let runtime = Runtime::new().map_err(|e| ConfigError {
        problems: vec![config.plugin_problem("", "", &e.to_string())],
    })?;
    let dir = std::env::temp_dir().join(format!("herald-check-{}", std::process::id()));
    let journal = Journal::open(&dir.join("check.db")).map_err(|e| ConfigError {
        problems: vec![config.plugin_problem("", "", &e.to_string())],
    })?;
    let result = load_plugins(&config, &runtime, &journal, &Metrics::new()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|_| config)
}

/// `herald serve`: runs until SIGINT or SIGTERM.
pub async fn serve(path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut config = Config::load(path)?;
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let journal_path = config.storage.journal_path();
    let journal = Journal::open(&journal_path)?;
    let metrics = Metrics::new();
    let runtime = Runtime::new()?;
    let instances = load_plugins(&config, &runtime, &journal, &metrics).await?;
    let dispatcher = Arc::new(Dispatcher::start(instances, journal.clone()));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, journal = %journal_path.display(), plugins = config.plugins.len(),
        tenants = config.tenants.len(), "herald is listening on {addr}");
    let state = AppState {
        config: Arc::new(config),
        journal,
        dispatcher,
        metrics,
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("herald stopped");
    Ok(())
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
