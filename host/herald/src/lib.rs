//! Herald's host: durable ingest of Ansible events and their delivery to
//! sandboxed WebAssembly plugins.
//!
//! Data flows one way through the modules:
//! [`ingest`] (HTTP, auth, validation) → [`journal`] (SQLite, committed before
//! the answer) → [`dispatch`] (per-instance workers, retries) → [`runtime`]
//! (wasmtime, capabilities, limits). [`config`] feeds them all, [`api`] holds
//! the routes and [`telemetry`] the logs and metrics.

pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod dispatch;
pub mod event;
pub mod ingest;
pub mod journal;
pub mod lock;
pub mod otlp;
pub mod query;
pub mod recovery;
pub mod routes;
pub mod runtime;
pub mod telemetry;
pub mod tenancy;
