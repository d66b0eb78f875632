//! Contract `herald:plugin@0.2.0`, kept for plugins built against it: its
//! bindings, the `event` resource (the same lazily read [`LazyEvent`] as
//! 0.3.0's, its typed fields converted DOWN from the model here), and its
//! outcome and log level converted UP to the model. It has every interface
//! of 0.3.0 but `templates`; the capabilities implement its `Host` traits.

pub use super::v0_3::LazyEvent;
use super::{latest, map_event_kind, Level, Outcome, Retry};
use crate::HostState;
use latest::types as model;
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

use bindings::exports::herald::plugin::handler;
pub use bindings::herald::plugin::{http, log, metrics, state, types};

/// The contract version of this module.
pub const CONTRACT: &str = "herald:plugin/handler@0.2.0";
/// The export names of the versions this module loads (any 0.2.x).
pub(crate) const EXPORT_PREFIX: &str = "herald:plugin/handler@0.2.";

/// Links the contract's own types: the `event` resource.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

fn run(r: &model::Run) -> types::Run {
    types::Run {
        id: r.id.clone(),
        playbook: r.playbook.clone(),
        controller: r.controller.clone(),
    }
}

fn play(p: &model::Play) -> types::Play {
    types::Play {
        id: p.id.clone(),
        name: p.name.clone(),
        pattern: p.pattern.clone(),
    }
}

fn task(t: &model::Task) -> types::Task {
    types::Task {
        id: t.id.clone(),
        name: t.name.clone(),
        action: t.action.clone(),
        path: t.path.clone(),
    }
}

fn status(s: latest::Status) -> types::Status {
    match s {
        latest::Status::Ok => types::Status::Ok,
        latest::Status::Changed => types::Status::Changed,
        latest::Status::Failed => types::Status::Failed,
        latest::Status::Unreachable => types::Status::Unreachable,
        latest::Status::Skipped => types::Status::Skipped,
    }
}

fn stats(s: &model::Stats) -> types::Stats {
    types::Stats {
        hosts: s
            .hosts
            .iter()
            .map(|h| types::HostStats {
                host: h.host.clone(),
                ok: h.ok,
                changed: h.changed,
                failures: h.failures,
                unreachable: h.unreachable,
                skipped: h.skipped,
                rescued: h.rescued,
                ignored: h.ignored,
            })
            .collect(),
        custom: s.custom.clone(),
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
        self.field(
            &event,
            |e| map_event_kind!(e.kind, latest::EventKind => types::EventKind),
            types::EventKind::Verbose,
        )
    }
    fn tenant(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<String> {
        Ok(self.table.get(&event)?.tenant().to_string())
    }
    fn run(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<types::Run> {
        let empty = types::Run {
            id: String::new(),
            playbook: String::new(),
            controller: None,
        };
        self.field(&event, |e| run(&e.run), empty)
    }
    fn sequence(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<u64> {
        self.field(&event, |e| e.sequence, 0)
    }
    fn created_ms(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<i64> {
        self.field(&event, |e| e.created_ms, 0)
    }
    fn play(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Play>> {
        self.field(&event, |e| e.play.as_ref().map(play), None)
    }
    fn task(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Task>> {
        self.field(&event, |e| e.task.as_ref().map(task), None)
    }
    fn host(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.host.clone(), None)
    }
    fn status(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Status>> {
        self.field(&event, |e| e.status.map(status), None)
    }
    fn changed(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<bool> {
        self.field(&event, |e| e.changed, false)
    }
    fn ignore_errors(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<bool> {
        self.field(&event, |e| e.ignore_errors, false)
    }
    fn timing(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Timing>> {
        self.field(
            &event,
            |e| {
                e.timing.map(|t| types::Timing {
                    start_ms: t.start_ms,
                    end_ms: t.end_ms,
                    duration_ms: t.duration_ms,
                })
            },
            None,
        )
    }
    fn res(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<String>> {
        self.field(&event, |e| e.res.clone(), None)
    }
    fn stats(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<Option<types::Stats>> {
        self.field(&event, |e| e.stats.as_ref().map(stats), None)
    }
    fn json(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<String> {
        Ok(self.table.get(&event)?.body().to_string())
    }
    fn drop(&mut self, event: Resource<LazyEvent>) -> wasmtime::Result<()> {
        // The host lends events (`borrow<event>`) and removes them itself.
        if event.owned() {
            self.table.delete(event)?;
        }
        Ok(())
    }
}

impl From<handler::Outcome> for Outcome {
    fn from(o: handler::Outcome) -> Self {
        match o {
            handler::Outcome::Ok => Self::Ok,
            handler::Outcome::Retryable(r) => Self::Retryable(Retry {
                reason: r.reason,
                retry_after_ms: r.retry_after_ms,
            }),
            handler::Outcome::Permanent(reason) => Self::Permanent(reason),
        }
    }
}

impl From<log::Level> for Level {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Trace => Self::Trace,
            log::Level::Debug => Self::Debug,
            log::Level::Info => Self::Info,
            log::Level::Warn => Self::Warn,
            log::Level::Error => Self::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_convert_down_and_outcomes_up() {
        let view = super::super::event::parse(
            r#"{"uuid":"u","event":"runner_on_failed","counter":2,"run_id":"r","created":"2026-01-01T00:00:00Z","event_data":{"playbook":"p.yml","play":"P","play_uuid":"pu","task":"T","task_uuid":"tu","task_action":"command","host":"h"}}"#,
        )
        .unwrap();
        let r = run(&view.run);
        assert_eq!((r.id.as_str(), r.playbook.as_str()), ("r", "p.yml"));
        assert!(matches!(
            view.status.map(status),
            Some(types::Status::Failed)
        ));
        assert_eq!(
            view.task.as_ref().map(task).map(|t| t.name),
            Some("T".into())
        );
        assert_eq!(
            view.play.as_ref().map(play).map(|p| p.id),
            Some("pu".into())
        );
        let o: Outcome = handler::Outcome::Permanent("no".into()).into();
        assert!(matches!(o, Outcome::Permanent(m) if m == "no"));
        let l: Level = log::Level::Error.into();
        assert!(matches!(l, Level::Error));
    }
}
