//! What a plugin may use besides its own memory, one module per capability.
//! The storage and telemetry a capability writes to are reached through the
//! narrow traits defined here ([`state::PluginState`],
//! [`metrics::PluginSeries`]), so the runtime depends on no storage backend
//! and no metrics library.

pub mod metrics;
pub mod state;
