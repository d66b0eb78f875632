//! `herald-client`: the request/response models of Herald's HTTP API and a
//! typed client of that API.
//!
//! - [`model`]: the JSON shapes the server serializes and the client reads,
//!   with their OpenAPI schemas (utoipa). Needs no HTTP stack: the server
//!   uses it with `default-features = false`.
//! - [`ApiClient`] (feature `client`, default): reqwest over rustls (http and
//!   https, an optional private CA), answers decoded into the models, failures
//!   as a typed [`ClientError`] carrying the server's JSON error body.
//! - [`table`] (feature `client`): the models as plain-text tables for people.
//!
//! The command line itself (clap) lives in the `herald` binary; this crate
//! never depends on it.

pub mod model;

#[cfg(feature = "client")]
mod http;
#[cfg(feature = "client")]
pub mod table;

#[cfg(feature = "client")]
pub use http::{ApiClient, ClientError, JsonPage, Page, DEFAULT_TIMEOUT};
