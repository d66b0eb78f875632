//! Herald's telemetry, shared by every stage that reports: the metric
//! registry ([`metrics::Metrics`], rendered on `/metrics`, with the
//! plugin-defined series), the OTLP trace export ([`otlp`]) and the request
//! correlation ids ([`context`]) that travel from ingest through the journal
//! to the deliveries.
//!
//! The process's set-up (log format, subscriber) belongs to the binary; this
//! crate only holds what the library crates record into.

pub mod context;
pub mod metrics;
pub mod otlp;

pub use context::RequestContext;
pub use metrics::{Metrics, SeriesError, SeriesKind};
