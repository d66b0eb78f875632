//! Herald's telemetry, shared by every stage that reports: the metric
//! registry ([`metrics::Metrics`], rendered on `/metrics`, with the
//! plugin-defined series) and the trace context ([`context`]): the
//! correlation ids that travel from ingest through the journal to the
//! deliveries, and the helpers the stages use on their exported spans.
//!
//! The process's set-up (log format, subscriber, the OTLP exporter) belongs
//! to the binary; this crate only holds what the library crates record into.

pub mod context;
pub mod delivery_log;
pub mod metrics;

pub use context::RequestContext;
pub use delivery_log::{in_delivery, DeliveryLog};
pub use metrics::{
    host, ingest_for, HostMetrics, Metrics, Recorded, SeriesError, SeriesKind, TenantIngest,
};
