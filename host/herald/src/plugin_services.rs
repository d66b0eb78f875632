//! What the plugin runtime (herald-runtime) writes to, implemented by the
//! herald lib's journal and metric registry: the runtime sees only its
//! narrow traits, so a storage or telemetry crate swaps in here.

use crate::journal::Journal;
use crate::runtime::capability::metrics::{PluginSeries, SeriesError, SeriesKind};
use crate::runtime::capability::state::{PluginState, StateError};
use crate::runtime::Services;
use crate::telemetry::{self, Metrics};
use std::sync::Arc;

impl PluginState for Journal {
    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, StateError> {
        Ok(Journal::state_get(self, tenant, plugin, key)?)
    }
    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StateError> {
        Ok(Journal::state_set(self, tenant, plugin, key, value)?)
    }
    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), StateError> {
        Ok(Journal::state_delete(self, tenant, plugin, key)?)
    }
    fn claim_state(&self, tenant: &str, plugin: &str) -> Result<usize, StateError> {
        Ok(Journal::claim_state(self, tenant, plugin)?)
    }
}

impl PluginSeries for Metrics {
    fn plugin_sample(
        &self,
        tenant: &str,
        plugin: &str,
        kind: SeriesKind,
        name: &str,
        help: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), SeriesError> {
        let kind = match kind {
            SeriesKind::Counter => telemetry::SeriesKind::Counter,
            SeriesKind::Gauge => telemetry::SeriesKind::Gauge,
            SeriesKind::Histogram => telemetry::SeriesKind::Histogram,
        };
        Ok(Metrics::plugin_sample(
            self, tenant, plugin, kind, name, help, labels, value,
        )?)
    }
}

/// The runtime's services backed by this journal and metric registry.
pub fn services(journal: &Journal, metrics: &Metrics) -> Services {
    Services {
        state: Arc::new(journal.clone()),
        series: Arc::new(metrics.clone()),
    }
}
