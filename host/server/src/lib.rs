//! Herald's HTTP API (axum), in the order a request meets it:
//!
//! - [`api`]: the shared state ([`api::AppState`]), the JSON error body
//!   ([`api::ApiError`]), the router and the admin and health routes;
//! - [`observe`]: correlation ids, a span and the request series per request;
//! - [`tenancy`]: bearer tokens, tenants, the admin role and the tenant
//!   ingest limit;
//! - [`ingest`]: `POST /v1/events` — decode, validate, route, commit to the
//!   journal, answer (the journal signals the commit; dispatch listens);
//! - [`query`]: the read API over the journal's `RunQueries` trait, with its
//!   models and the OpenAPI document;
//! - [`recovery`]: dead letters and replay.
//!
//! The server never calls a plugin: it commits, and the dispatcher delivers.

pub mod api;
pub mod ingest;
pub mod observe;
pub mod query;
pub mod recovery;
pub mod tenancy;
