//! The `log` capability: a plugin's own log lines, written to the host log
//! under `herald::plugin` with its instance and tenant, charged to the
//! call's `limits.max_log_bytes`.

use crate::contract::{v0_1, v0_2, v0_3, Level};
use crate::HostState;
use wasmtime::component::{HasSelf, Linker};

/// Longest log line kept from a plugin; the rest is cut with a marker.
const MAX_LOG_LINE: usize = crate::output::MAX_LINE;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_2::log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_3::log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl HostState {
    /// Writes one plugin log line, if the call's log budget allows.
    fn plugin_log(&mut self, level: Level, message: String) {
        if !self
            .counters()
            .take_log_budget(message.len().min(MAX_LOG_LINE))
        {
            return;
        }
        let message = crate::bounded(&message, MAX_LOG_LINE);
        let (plugin, tenant) = (&*self.ident.plugin, &*self.ident.tenant);
        self.counters().in_delivery(|| match level {
            Level::Trace => {
                tracing::trace!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "herald::plugin", plugin, tenant, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "herald::plugin", plugin, tenant, "{message}")
            }
        })
    }
}

impl v0_1::log::Host for HostState {
    fn log(&mut self, level: v0_1::log::Level, message: String) {
        self.plugin_log(level.into(), message)
    }
}

impl v0_2::log::Host for HostState {
    fn log(&mut self, level: v0_2::log::Level, message: String) -> wasmtime::Result<()> {
        self.plugin_log(level.into(), message);
        Ok(())
    }
}

impl v0_3::log::Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.plugin_log(level, message);
        Ok(())
    }
}
