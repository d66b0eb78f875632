//! What the plugin runtime (herald-runtime) writes to and reads from:
//! plugin state goes to the journal through its `PluginState` trait,
//! plugin-defined series into the host's metric registry, and templates
//! read a run's labels and results through `RunQueries`.

use crate::journal::SharedStore;
use crate::runtime::Services;
use herald_telemetry::Metrics;

/// The runtime's services backed by this journal and metric registry.
pub fn services(journal: &SharedStore, metrics: &Metrics) -> Services {
    Services {
        state: journal.clone(),
        series: metrics.clone(),
        runs: journal.clone(),
    }
}
