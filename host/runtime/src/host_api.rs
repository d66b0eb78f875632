//! The host side of the plugin's own imports of contract 0.1.0: `log`,
//! `metrics`, `state` (0.2.0 reuses them, see [`super::v0_2`]).

use super::bindings::herald::plugin::{log, metrics as wit_metrics, state, types};
use super::HostState;
use crate::capability::metrics::SeriesKind;
use wasmtime::component::{HasSelf, Linker};

/// Longest log line kept from a plugin; the rest is cut with a marker.
const MAX_LOG_LINE: usize = super::output::MAX_LINE;
/// Longest state key and value.
const MAX_STATE_KEY: usize = 512;
const MAX_STATE_VALUE: usize = 256 * 1024;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    wit_metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if !self
            .counters()
            .take_log_budget(message.len().min(MAX_LOG_LINE))
        {
            return;
        }
        let message = super::bounded(&message, MAX_LOG_LINE);
        let (plugin, tenant) = (&*self.ident.plugin, &*self.ident.tenant);
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "herald::plugin", plugin, tenant, "{message}")
            }
        }
    }
}

impl HostState {
    /// Records one sample of a plugin's own series (both contract versions).
    pub(super) fn sample(
        &mut self,
        kind: SeriesKind,
        name: String,
        help: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) {
        if let Err(e) = self.services.series.plugin_sample(
            &self.ident.tenant,
            &self.ident.plugin,
            kind,
            &name,
            &help,
            labels,
            value,
        ) {
            tracing::warn!(plugin = %self.ident.plugin, tenant = %self.ident.tenant, "plugin metric refused: {e}");
        }
    }
}

fn pairs(labels: Vec<wit_metrics::Label>) -> Vec<(String, String)> {
    labels.into_iter().map(|l| (l.name, l.value)).collect()
}

impl wit_metrics::Host for HostState {
    fn counter_add(
        &mut self,
        name: String,
        help: String,
        labels: Vec<wit_metrics::Label>,
        value: f64,
    ) {
        self.sample(SeriesKind::Counter, name, help, pairs(labels), value)
    }
    fn gauge_set(
        &mut self,
        name: String,
        help: String,
        labels: Vec<wit_metrics::Label>,
        value: f64,
    ) {
        self.sample(SeriesKind::Gauge, name, help, pairs(labels), value)
    }
    fn histogram_observe(
        &mut self,
        name: String,
        help: String,
        labels: Vec<wit_metrics::Label>,
        value: f64,
    ) {
        self.sample(SeriesKind::Histogram, name, help, pairs(labels), value)
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        match self
            .services
            .state
            .state_get(&self.ident.tenant, &self.ident.plugin, &key)
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(plugin = %self.ident.plugin, "plugin state read failed: {e}");
                None
            }
        }
    }
    fn set(&mut self, key: String, value: String) {
        if key.len() > MAX_STATE_KEY || value.len() > MAX_STATE_VALUE {
            tracing::warn!(plugin = %self.ident.plugin, "plugin state write refused: key over {MAX_STATE_KEY} or value over {MAX_STATE_VALUE} bytes");
            return;
        }
        if let Err(e) =
            self.services
                .state
                .state_set(&self.ident.tenant, &self.ident.plugin, &key, &value)
        {
            tracing::error!(plugin = %self.ident.plugin, "plugin state write failed: {e}");
        }
    }
    fn delete(&mut self, key: String) {
        if let Err(e) =
            self.services
                .state
                .state_delete(&self.ident.tenant, &self.ident.plugin, &key)
        {
            tracing::error!(plugin = %self.ident.plugin, "plugin state delete failed: {e}");
        }
    }
}
