//! What a plugin may use besides its own memory, one module per capability.
//!
//! Each module owns one capability whole: its per-store state (one field of
//! [`crate::HostState`]), its limits, and its `Host` implementation for
//! EVERY contract version that has it (a version's values are converted to
//! the host's model, the latest version's types, at the top of each
//! implementation). Plugin state goes through the journal's trait
//! ([`state::PluginState`]), so the runtime depends on no storage backend;
//! plugin series go into the host's registry (`herald_telemetry::Metrics`).
//!
//! Adding a capability: a module here, a field in [`crate::HostState`] (set
//! in `PluginInstance::new_store`, `src/instance.rs`) when it keeps
//! per-store state, and one line in [`add_to_linker`].

pub mod grants;
pub mod http;
pub mod log;
pub mod metrics;
pub mod sockets;
pub mod state;
pub mod templates;
pub mod textfile;
pub mod tls;

use crate::HostState;
use wasmtime::component::Linker;

/// Links every capability's imports, for every contract version. The WASI
/// base (`wasi:sockets`, clocks, random, io, cli) is linked with the engine;
/// sockets are granted through its address check ([`sockets`]).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    http::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    state::add_to_linker(linker)?;
    grants::add_to_linker(linker)?;
    templates::add_to_linker(linker)?;
    tls::add_to_linker(linker)?;
    textfile::add_to_linker(linker)?;
    Ok(())
}
