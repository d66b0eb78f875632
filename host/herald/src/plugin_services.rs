//! What the plugin runtime (herald-runtime) writes to: plugin state goes to
//! the journal through its own trait; plugin-defined series go to the
//! herald lib's metric registry through the runtime's narrow trait.

use crate::journal::Journal;
use crate::runtime::capability::metrics::{PluginSeries, SeriesError, SeriesKind};
use crate::runtime::Services;
use crate::telemetry::{self, Metrics};
use std::sync::Arc;

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
