//! The ids a delivery's log lines carry.
//!
//! Every line logged while an event is delivered (the worker's retries and
//! dead letters, the plugin's own `log` calls, its faults) sits in a
//! `delivery` span with the instance, the run and the ingest request that
//! brought the event. The span is made when such a line is logged, not for
//! every delivery: the JSON log layer formats a span's fields when it is
//! made, and a span per delivery cost about a third of the deliveries per
//! second of no-op instances (bench/analysis.md, "A span per delivery").

use std::sync::Arc;

/// Where the delivery spans are, whichever crate logs in them: a filter such
/// as `RUST_LOG=herald_dispatch=warn` keeps applying to them.
pub const TARGET: &str = "herald_dispatch::worker";

/// A delivery under way, as its log lines name it: handed to the plugin
/// instance for the call, so that what the instance logs meanwhile carries
/// the same ids as the worker's lines.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    pub plugin: Arc<str>,
    pub tenant: Arc<str>,
    pub run_id: String,
    pub event_id: i64,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

impl DeliveryLog {
    /// Its `delivery` span (at [`TARGET`]), made now: the instance, the
    /// run and the ingest request that brought the event.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(target: TARGET, "delivery",
            plugin = %self.plugin, tenant = %self.tenant, run_id = %self.run_id,
            delivery_id = %format_args!("{}:{}", self.event_id, self.plugin),
            request_id = self.request_id.as_deref().unwrap_or(""),
            trace_id = self.trace_id.as_deref().unwrap_or(""))
    }
}

/// Runs `log` (a line or a few) inside the delivery's span, when a delivery
/// is under way.
pub fn in_delivery<R>(delivery: Option<&DeliveryLog>, log: impl FnOnce() -> R) -> R {
    match delivery {
        Some(d) => d.span().in_scope(log),
        None => log(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::subscriber::with_default;
    use tracing_subscriber_like::Recorder;

    mod tracing_subscriber_like {
        //! A subscriber that records the span each event is logged in.
        use std::sync::{Arc, Mutex};
        use tracing::span::{Attributes, Id, Record};
        use tracing::{Event, Metadata, Subscriber};

        #[derive(Clone, Default)]
        pub struct Recorder {
            pub spans: Arc<Mutex<Vec<(String, String)>>>,
            pub events: Arc<Mutex<Vec<Option<u64>>>>,
            current: Arc<Mutex<Vec<u64>>>,
        }

        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?};", f.name(), v));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.push_str(&format!("{}={};", f.name(), v));
            }
        }

        impl Subscriber for Recorder {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, a: &Attributes<'_>) -> Id {
                let mut f = Fields(String::new());
                a.record(&mut f);
                let mut spans = self.spans.lock().unwrap();
                spans.push((a.metadata().name().to_string(), f.0));
                Id::from_u64(spans.len() as u64)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, _: &Event<'_>) {
                let current = self.current.lock().unwrap().last().copied();
                self.events.lock().unwrap().push(current);
            }
            fn enter(&self, id: &Id) {
                self.current.lock().unwrap().push(id.into_u64());
            }
            fn exit(&self, _: &Id) {
                self.current.lock().unwrap().pop();
            }
        }
    }

    #[test]
    fn a_line_logged_in_a_delivery_carries_its_ids() {
        let rec = Recorder::default();
        let d = DeliveryLog {
            plugin: "hook".into(),
            tenant: "ops".into(),
            run_id: "r1".into(),
            event_id: 42,
            request_id: Some("req".into()),
            trace_id: None,
        };
        with_default(rec.clone(), || {
            in_delivery(Some(&d), || tracing::warn!("inside"));
            in_delivery(None, || tracing::warn!("outside"));
        });
        let spans = rec.spans.lock().unwrap().clone();
        assert_eq!(spans.len(), 1, "a span only for the line in a delivery");
        assert_eq!(spans[0].0, "delivery");
        for want in [
            "plugin=hook",
            "tenant=ops",
            "run_id=r1",
            "delivery_id=42:hook",
            "request_id=req",
            "trace_id=;",
        ] {
            assert!(spans[0].1.contains(want), "{want} in {}", spans[0].1);
        }
        assert_eq!(*rec.events.lock().unwrap(), vec![Some(1), None]);
    }
}
