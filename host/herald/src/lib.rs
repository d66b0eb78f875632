//! Herald's host: durable ingest of Ansible events and their delivery to
//! sandboxed WebAssembly plugins.
//!
//! Data flows one way through the modules:
//! [`ingest`] (HTTP, auth, validation) → [`journal`] (SQLite, committed before
//! the answer) → [`dispatch`] (per-instance workers, retries) → [`runtime`]
//! (wasmtime, capabilities, limits). [`config`] feeds them all, [`api`] holds
//! the routes and [`telemetry`] the metrics and traces.

// The wire event and routes live in the herald-event crate; these keep the
// `crate::event` / `crate::routes` paths the modules use.
pub use herald_event as event;
pub use herald_event::routes;
// `herald.toml` lives in the herald-config crate.
pub use herald_config as config;
// The plugin runtime (wasmtime, contracts, capabilities) is the herald-runtime crate.
pub use herald_runtime as runtime;
// The journal (storage traits + SQLite backend) lives in the herald-journal crate.
pub use herald_journal as journal;
// The HTTP API (routes, auth, ingest, query, recovery) is the herald-server crate.
pub use herald_server::{api, ingest, query, recovery, tenancy};
// Delivery (workers, retries, breaker, pacing) is the herald-dispatch crate.
pub use herald_dispatch as dispatch;
// Metrics, OTLP export and correlation ids live in the herald-telemetry crate.
pub use herald_telemetry as telemetry;
pub mod app;
pub mod client;
pub mod lock;
pub mod plugin_services;
