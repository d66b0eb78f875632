//! The `metrics` capability: series a plugin defines itself, recorded into
//! the host's registry (herald-telemetry's `Metrics`: validation, the
//! per-instance series cap) and exported on `/metrics` with `tenant` and
//! `plugin` labels.

use crate::contract::{v0_1, v0_2, v0_3};
use crate::HostState;
use herald_telemetry::SeriesKind;
use wasmtime::component::{HasSelf, Linker};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_2::metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_3::metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl HostState {
    /// Records one sample of a plugin's own series; a refused sample is
    /// logged and the call goes on.
    fn sample(
        &mut self,
        kind: SeriesKind,
        name: String,
        help: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) {
        if let Err(e) = self.metrics.plugin_sample(
            &self.ident.tenant,
            &self.ident.plugin,
            kind,
            &name,
            &help,
            labels,
            value,
        ) {
            self.counters().in_delivery(|| tracing::warn!(plugin = %self.ident.plugin, tenant = %self.ident.tenant, "plugin metric refused: {e}"));
        }
    }
}

/// Implements one version's `metrics` interface over [`HostState::sample`];
/// `$done` wraps what an import returns (0.2.0's imports may trap).
macro_rules! metrics_host {
    ($version:ident, $ret:ty, $done:expr) => {
        impl $version::metrics::Host for HostState {
            fn counter_add(
                &mut self,
                name: String,
                help: String,
                labels: Vec<$version::metrics::Label>,
                value: f64,
            ) -> $ret {
                let labels = labels.into_iter().map(|l| (l.name, l.value)).collect();
                $done(self.sample(SeriesKind::Counter, name, help, labels, value))
            }
            fn gauge_set(
                &mut self,
                name: String,
                help: String,
                labels: Vec<$version::metrics::Label>,
                value: f64,
            ) -> $ret {
                let labels = labels.into_iter().map(|l| (l.name, l.value)).collect();
                $done(self.sample(SeriesKind::Gauge, name, help, labels, value))
            }
            fn histogram_observe(
                &mut self,
                name: String,
                help: String,
                labels: Vec<$version::metrics::Label>,
                value: f64,
            ) -> $ret {
                let labels = labels.into_iter().map(|l| (l.name, l.value)).collect();
                $done(self.sample(SeriesKind::Histogram, name, help, labels, value))
            }
        }
    };
}

metrics_host!(v0_1, (), |()| ());
metrics_host!(v0_2, wasmtime::Result<()>, |()| Ok(()));
metrics_host!(v0_3, wasmtime::Result<()>, |()| Ok(()));
