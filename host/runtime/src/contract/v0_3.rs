//! Contract `herald:plugin@0.3.0`, the latest: its bindings (whose types
//! are the host's model, see [`super`]) and the `event` resource whose
//! fields a plugin reads on demand (0.2.0 lends the same resource, its
//! fields converted down in [`super::v0_2`]). The capabilities it imports
//! (`log`, `metrics`, `state`, `http`, `templates`) are implemented in
//! `crate::capability`.
//!
//! The event is kept as its journaled JSON text. `json` and `tenant` hand
//! that out as it is; the first typed field parses the text once per call
//! into an [`EventView`], and every later field is a copy out of that view.

use super::event::EventError;
use super::EventView;
use crate::HostState;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

/// Host bindings generated from `wit/v0.3.0`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.3.0",
        world: "sink",
        imports: { "herald:plugin/http.send": async | trappable, default: trappable },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "herald:plugin/types.event": super::LazyEvent,
        },
    });
}

pub use bindings::herald::plugin::{http, log, metrics, state, templates, types};
pub use types::{EventKind, Status};

/// The contract version of this module.
pub const CONTRACT: &str = "herald:plugin/handler@0.3.0";
/// The export names of the versions this module loads (any 0.3.x).
pub(crate) const EXPORT_PREFIX: &str = "herald:plugin/handler@0.3.";

/// One event lent to one `handle` call: its journaled text, parsed on the
/// first typed read.
pub struct LazyEvent {
    tenant: Arc<str>,
    body: String,
    parsed: Option<Result<EventView, EventError>>,
}

impl LazyEvent {
    pub(crate) fn new(tenant: Arc<str>, body: String) -> LazyEvent {
        LazyEvent {
            tenant,
            body,
            parsed: None,
        }
    }

    fn parsed(&mut self) -> Result<&EventView, &EventError> {
        let body = &self.body;
        self.parsed
            .get_or_insert_with(|| super::event::parse(body))
            .as_ref()
    }

    /// The tenant that sent the event.
    pub(crate) fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// The journaled text of the event.
    pub(crate) fn body(&self) -> &str {
        &self.body
    }

    /// Why the event could not be read, if a field read found it unreadable;
    /// the call's answer is then replaced by a permanent failure.
    pub(crate) fn unreadable(&self) -> Option<&EventError> {
        match &self.parsed {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Links the contract's own types: the `event` resource.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl HostState {
    /// Reads one typed field; an unreadable event reads as `fallback` (and
    /// the call's answer is replaced, see [`LazyEvent::unreadable`]).
    pub(super) fn field<T>(
        &mut self,
        event: &Resource<LazyEvent>,
        read: impl FnOnce(&EventView) -> T,
        fallback: T,
    ) -> wasmtime::Result<T> {
        let lazy = self.table.get_mut(event)?;
        Ok(lazy.parsed().map(read).unwrap_or(fallback))
    }
}

impl types::Host for HostState {}

impl types::HostEvent for HostState {
    fn id(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<String> {
        self.field(&event, |e| e.id.clone(), String::new())
    }
    fn parent_id(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.parent_id.clone(), None)
    }
    fn kind(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<types::EventKind> {
        self.field(&event, |e| e.kind, types::EventKind::Verbose)
    }
    fn tenant(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<String> {
        Ok(self.table.get(&event)?.tenant.to_string())
    }
    fn run(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<types::Run> {
        let empty = types::Run {
            id: String::new(),
            playbook: String::new(),
            controller: None,
        };
        self.field(&event, |e| e.run.clone(), empty)
    }
    fn sequence(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<u64> {
        self.field(&event, |e| e.sequence, 0)
    }
    fn created_ms(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<i64> {
        self.field(&event, |e| e.created_ms, 0)
    }
    fn play(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Play>> {
        self.field(&event, |e| e.play.clone(), None)
    }
    fn task(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Task>> {
        self.field(&event, |e| e.task.clone(), None)
    }
    fn host(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.host.clone(), None)
    }
    fn status(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Status>> {
        self.field(&event, |e| e.status, None)
    }
    fn changed(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<bool> {
        self.field(&event, |e| e.changed, false)
    }
    fn ignore_errors(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<bool> {
        self.field(&event, |e| e.ignore_errors, false)
    }
    fn timing(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Timing>> {
        self.field(&event, |e| e.timing, None)
    }
    fn res(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.res.clone(), None)
    }
    fn stats(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Stats>> {
        self.field(&event, |e| e.stats.clone(), None)
    }
    fn json(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<String> {
        Ok(self.table.get(&event)?.body.clone())
    }
    fn drop(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<()> {
        // The host lends events (`borrow<event>`) and removes them itself
        // after the call; a guest never owns one.
        if event.owned() {
            self.table.delete(event)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"uuid":"u1","event":"runner_on_ok","counter":7,"run_id":"r1","created":"2026-01-01T00:00:00Z","event_data":{"host":"web1","task":"t","task_uuid":"t1","res":{"changed":true}}}"#;

    #[test]
    fn an_event_is_parsed_once_on_the_first_typed_read() {
        let mut lazy = LazyEvent::new("acme".into(), BODY.into());
        assert!(lazy.parsed.is_none());
        let e = lazy
            .parsed()
            .map(|e| (e.host.clone(), e.sequence, e.status))
            .map_err(|e| e.to_string());
        assert_eq!(
            e,
            Ok((Some("web1".to_string()), 7, Some(types::Status::Changed)))
        );
        assert!(lazy.parsed.is_some() && lazy.unreadable().is_none());
    }

    #[test]
    fn an_unreadable_event_is_reported_not_trapped() {
        let mut lazy = LazyEvent::new("acme".into(), "{not json".into());
        assert!(lazy.unreadable().is_none(), "nothing read yet");
        assert!(lazy.parsed().is_err());
        assert!(lazy
            .unreadable()
            .is_some_and(|e| e.to_string().contains("not JSON")));
    }
}
