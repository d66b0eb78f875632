//! The `state` capability: a small key/value store per plugin instance,
//! kept by the host in the journal across restarts. The runtime sees it only
//! through the journal's plugin-state trait, so any storage backend serves it.

pub use herald_journal::{JournalError as StateError, PluginState};

use crate::contract::{v0_1, v0_2, v0_3};
use crate::HostState;
use wasmtime::component::{HasSelf, Linker};

/// Longest state key and value.
const MAX_STATE_KEY: usize = 512;
const MAX_STATE_VALUE: usize = 256 * 1024;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_2::state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_3::state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// A store failure never reaches the plugin (the contract has no error for
/// it): it is logged, and a read answers "absent".
impl HostState {
    fn state_get(&mut self, key: String) -> Option<String> {
        match self
            .state
            .state_get(&self.ident.tenant, &self.ident.plugin, &key)
        {
            Ok(v) => v,
            Err(e) => {
                self.counters().in_delivery(|| tracing::error!(plugin = %self.ident.plugin, "plugin state read failed: {e}"));
                None
            }
        }
    }

    fn state_set(&mut self, key: String, value: String) {
        if key.len() > MAX_STATE_KEY || value.len() > MAX_STATE_VALUE {
            self.counters().in_delivery(|| tracing::warn!(plugin = %self.ident.plugin, "plugin state write refused: key over {MAX_STATE_KEY} or value over {MAX_STATE_VALUE} bytes"));
            return;
        }
        if let Err(e) = self
            .state
            .state_set(&self.ident.tenant, &self.ident.plugin, &key, &value)
        {
            self.counters().in_delivery(
                || tracing::error!(plugin = %self.ident.plugin, "plugin state write failed: {e}"),
            );
        }
    }

    fn state_delete(&mut self, key: String) {
        if let Err(e) = self
            .state
            .state_delete(&self.ident.tenant, &self.ident.plugin, &key)
        {
            self.counters().in_delivery(
                || tracing::error!(plugin = %self.ident.plugin, "plugin state delete failed: {e}"),
            );
        }
    }
}

impl v0_1::state::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.state_get(key)
    }
    fn set(&mut self, key: String, value: String) {
        self.state_set(key, value)
    }
    fn delete(&mut self, key: String) {
        self.state_delete(key)
    }
}

impl v0_2::state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.state_get(key))
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        self.state_set(key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.state_delete(key);
        Ok(())
    }
}

impl v0_3::state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.state_get(key))
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        self.state_set(key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.state_delete(key);
        Ok(())
    }
}
