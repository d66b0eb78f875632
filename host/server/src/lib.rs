//! Herald's HTTP API (axum), in the order a request meets it:
//!
//! - [`error`] ([`ApiError`], the JSON error body), [`state`] ([`AppState`])
//!   and [`params`] (ids and digits in requests) at the bottom;
//! - [`observe`]: correlation ids, a span and the request series per request;
//! - [`tenancy`]: bearer tokens, tenants, the admin role and the tenant
//!   ingest limit;
//! - [`ingest`]: `POST /v1/events` — decode, validate, route, commit to the
//!   journal, answer (the journal signals the commit; dispatch listens);
//! - [`query`]: the read API over the journal's `RunQueries` trait, with its
//!   models and the OpenAPI document;
//! - [`recovery`]: dead letters and replay;
//! - [`admin`]: health, readiness, metrics, plugin list, reload status;
//! - [`ui`]: the web UI (herald-ui) with what only the server knows;
//! - [`openapi`] and [`router`] at the top: the document and the router
//!   assembled from every area.
//!
//! The server never calls a plugin: it commits, and the dispatcher delivers.

pub mod admin;
pub mod error;
pub mod ingest;
pub mod observe;
pub mod openapi;
pub mod params;
pub mod query;
pub mod recovery;
pub mod router;
pub mod state;
pub mod tenancy;
pub mod ui;

pub use error::ApiError;
pub use router::router;
pub use state::{AppState, ReloadStatus};
