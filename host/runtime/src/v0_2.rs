//! The host side of `herald:plugin@0.2.0`: the `event` resource whose
//! fields a plugin reads on demand, the one-call `http.send`, and `log`,
//! `metrics` and `state`, which are 0.1.0's under the new version.
//!
//! The event is kept as its journaled JSON text. `json` and `tenant` hand
//! that out as it is; the first typed field parses the text once per call,
//! with the same typed parse as the 0.1.0 adapter ([`super::convert`]), and
//! every later field is a copy out of that parse.

use super::bindings as v01;
use super::http::{OneShotError, OneShotRequest};
use super::HostState;
use crate::capability::metrics::SeriesKind;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, Resource};

/// Host bindings generated from `wit/v0.2.0`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
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

use bindings::herald::plugin::{http as wit_http, log, metrics as wit_metrics, state, types};

/// The contract version of this module.
pub const CONTRACT: &str = "herald:plugin/handler@0.2.0";

/// One event lent to one `handle` call: its journaled text, parsed on the
/// first typed read.
pub struct LazyEvent {
    tenant: Arc<str>,
    body: String,
    parsed: Option<Result<v01::herald::plugin::types::Event, String>>,
}

impl LazyEvent {
    pub(super) fn new(tenant: Arc<str>, body: String) -> LazyEvent {
        LazyEvent {
            tenant,
            body,
            parsed: None,
        }
    }

    fn parsed(&mut self) -> Result<&v01::herald::plugin::types::Event, &str> {
        let (tenant, body) = (&self.tenant, &self.body);
        self.parsed
            .get_or_insert_with(|| super::convert::to_wit(tenant, body))
            .as_ref()
            .map_err(String::as_str)
    }

    /// Why the event could not be read, if a field read found it unreadable;
    /// the call's answer is then replaced by a permanent failure.
    pub(super) fn unreadable(&self) -> Option<&str> {
        match &self.parsed {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Links the 0.2.0 imports (the `wasi:*` ones are shared with 0.1.0).
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    wit_metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    wit_http::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// Maps a 0.1.0 value to its identical 0.2.0 twin.
trait Twin<T> {
    fn twin(self) -> T;
}

impl<A: Twin<B>, B> Twin<Option<B>> for Option<A> {
    fn twin(self) -> Option<B> {
        self.map(Twin::twin)
    }
}

/// Same-named variants of two generated enums.
macro_rules! twin_enum {
    ($from:path => $to:path { $($v:ident),* $(,)? }) => {
        impl Twin<$to> for $from {
            fn twin(self) -> $to {
                match self { $(<$from>::$v => <$to>::$v),* }
            }
        }
    };
}

/// Same-named fields of two generated records.
macro_rules! twin_record {
    ($from:path => $to:ident { $($f:ident),* $(,)? }) => {
        impl Twin<types::$to> for $from {
            fn twin(self) -> types::$to {
                types::$to { $($f: self.$f.twin()),* }
            }
        }
    };
}

/// Plain values are the same type in both versions.
macro_rules! twin_self {
    ($($t:ty),*) => { $(impl Twin<$t> for $t { fn twin(self) -> $t { self } })* };
}
twin_self!(String, u32, u64, i64);

impl<A: Twin<B>, B> Twin<Vec<B>> for Vec<A> {
    fn twin(self) -> Vec<B> {
        self.into_iter().map(Twin::twin).collect()
    }
}

mod old {
    pub use super::v01::herald::plugin::types::*;
}

twin_enum!(old::EventKind => types::EventKind {
    PlaybookOnStart, PlaybookOnPlayStart, PlaybookOnTaskStart, PlaybookOnHandlerTaskStart,
    PlaybookOnCleanupTaskStart, PlaybookOnNoHostsMatched, PlaybookOnNoHostsRemaining,
    PlaybookOnInclude, PlaybookOnNotify, PlaybookOnVarsPrompt, PlaybookOnImportForHost,
    PlaybookOnNotImportForHost, PlaybookOnSetup, PlaybookOnStats, RunnerOnStart, RunnerOnOk,
    RunnerOnFailed, RunnerOnSkipped, RunnerOnUnreachable, RunnerOnNoHosts, RunnerOnAsyncPoll,
    RunnerOnAsyncOk, RunnerOnAsyncFailed, RunnerItemOnOk, RunnerItemOnFailed,
    RunnerItemOnSkipped, RunnerRetry, RunnerOnFileDiff, Verbose, Debug, Warning, Deprecated,
    Error, SystemWarning,
});
twin_enum!(old::Status => types::Status { Ok, Changed, Failed, Unreachable, Skipped });
twin_record!(old::Run => Run { id, playbook, controller });
twin_record!(old::Play => Play { id, name, pattern });
twin_record!(old::Task => Task { id, name, action, path });
twin_record!(old::Timing => Timing { start_ms, end_ms, duration_ms });
twin_record!(old::HostStats => HostStats {
    host, ok, changed, failures, unreachable, skipped, rescued, ignored
});
twin_record!(old::Stats => Stats { hosts, custom });

impl HostState {
    /// Reads one typed field; an unreadable event reads as `fallback` (and
    /// the call's answer is replaced, see [`LazyEvent::unreadable`]).
    fn field<T>(
        &mut self,
        event: &Resource<LazyEvent>,
        read: impl FnOnce(&old::Event) -> T,
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
        self.field(&event, |e| e.kind.twin(), types::EventKind::Verbose)
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
        self.field(&event, |e| e.run.clone().twin(), empty)
    }
    fn sequence(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<u64> {
        self.field(&event, |e| e.sequence, 0)
    }
    fn created_ms(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<i64> {
        self.field(&event, |e| e.created_ms, 0)
    }
    fn play(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Play>> {
        self.field(&event, |e| e.play.clone().twin(), None)
    }
    fn task(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Task>> {
        self.field(&event, |e| e.task.clone().twin(), None)
    }
    fn host(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.host.clone(), None)
    }
    fn status(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Status>> {
        self.field(&event, |e| e.status.twin(), None)
    }
    fn changed(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<bool> {
        self.field(&event, |e| e.changed, false)
    }
    fn ignore_errors(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<bool> {
        self.field(&event, |e| e.ignore_errors, false)
    }
    fn timing(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Timing>> {
        self.field(&event, |e| e.timing.twin(), None)
    }
    fn res(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.res.clone(), None)
    }
    fn stats(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Stats>> {
        self.field(&event, |e| e.stats.clone().twin(), None)
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

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => v01::herald::plugin::log::Level::Trace,
            log::Level::Debug => v01::herald::plugin::log::Level::Debug,
            log::Level::Info => v01::herald::plugin::log::Level::Info,
            log::Level::Warn => v01::herald::plugin::log::Level::Warn,
            log::Level::Error => v01::herald::plugin::log::Level::Error,
        };
        v01::herald::plugin::log::Host::log(self, level, message);
        Ok(())
    }
}

impl HostState {
    fn sample_v0_2(
        &mut self,
        kind: SeriesKind,
        name: String,
        help: String,
        labels: Vec<wit_metrics::Label>,
        value: f64,
    ) -> wasmtime::Result<()> {
        let labels = labels.into_iter().map(|l| (l.name, l.value)).collect();
        self.sample(kind, name, help, labels, value);
        Ok(())
    }
}

impl wit_metrics::Host for HostState {
    fn counter_add(&mut self, n: String, h: String, l: Vec<wit_metrics::Label>, v: f64) -> Done {
        self.sample_v0_2(SeriesKind::Counter, n, h, l, v)
    }
    fn gauge_set(&mut self, n: String, h: String, l: Vec<wit_metrics::Label>, v: f64) -> Done {
        self.sample_v0_2(SeriesKind::Gauge, n, h, l, v)
    }
    fn histogram_observe(
        &mut self,
        n: String,
        h: String,
        l: Vec<wit_metrics::Label>,
        v: f64,
    ) -> Done {
        self.sample_v0_2(SeriesKind::Histogram, n, h, l, v)
    }
}

/// What an import that returns nothing answers (it may trap).
type Done = wasmtime::Result<()>;

impl state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(v01::herald::plugin::state::Host::get(self, key))
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        v01::herald::plugin::state::Host::set(self, key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        v01::herald::plugin::state::Host::delete(self, key);
        Ok(())
    }
}

impl wit_http::Host for HostState {
    async fn send(
        &mut self,
        request: wit_http::Request,
    ) -> wasmtime::Result<Result<wit_http::Response, wit_http::Error>> {
        let request = OneShotRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        Ok(match self.gate.send_one(request).await {
            Ok(r) => Ok(wit_http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(OneShotError::Denied(m)) => Err(wit_http::Error::Denied(m)),
            Err(OneShotError::Timeout(m)) => Err(wit_http::Error::Timeout(m)),
            Err(OneShotError::Transport(m)) => Err(wit_http::Error::Transport(m)),
            Err(OneShotError::Invalid(m)) => Err(wit_http::Error::Invalid(m)),
        })
    }
}

/// Maps a 0.2.0 answer to the dispatcher's (0.1.0's, the same shape).
pub(super) fn outcome(o: bindings::exports::herald::plugin::handler::Outcome) -> super::Outcome {
    use bindings::exports::herald::plugin::handler::Outcome as New;
    match o {
        New::Ok => super::Outcome::Ok,
        New::Retryable(r) => super::Outcome::Retryable(old::Retry {
            reason: r.reason,
            retry_after_ms: r.retry_after_ms,
        }),
        New::Permanent(reason) => super::Outcome::Permanent(reason),
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
            .map(|e| (e.host.clone(), e.sequence, e.status.twin()));
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
        assert!(lazy.unreadable().is_some_and(|e| e.contains("not JSON")));
    }
}
