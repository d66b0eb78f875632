//! What the plugin runtime (herald-runtime) writes to: plugin state goes to
//! the journal through its own trait; plugin-defined series go to the
//! herald lib's metric registry through the runtime's narrow trait.

use crate::journal::SharedStore;
use crate::runtime::capability::metrics::{PluginSeries, SeriesError, SeriesKind};
use crate::runtime::Services;
use herald_telemetry::{self as telemetry, Metrics};
use std::sync::Arc;

/// The metric registry as the runtime's sink of plugin-defined series (a
/// local type: the registry and the trait both live in other crates).
struct RegistrySeries(Metrics);

impl PluginSeries for RegistrySeries {
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
        // A sample past the instance's series cap is counted and warned about
        // once by the registry; the plugin's call goes on either way.
        Metrics::plugin_sample(&self.0, tenant, plugin, kind, name, help, labels, value)?;
        Ok(())
    }
}

/// The runtime's services backed by this journal and metric registry.
pub fn services(journal: &SharedStore, metrics: &Metrics) -> Services {
    Services {
        state: journal.clone(),
        series: Arc::new(RegistrySeries(metrics.clone())),
    }
}
