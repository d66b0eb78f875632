//! Contract `herald:plugin@0.1.0`, kept for plugins built against it: its
//! bindings, its values converted UP to the host's model (the latest
//! version's types), and the one conversion DOWN its export needs: 0.1.0's
//! `handle` takes the whole event record, built here from an [`EventView`].

use super::{event::EventError, latest, map_event_kind, EventView, Level, Outcome, Retry};

/// Host bindings generated from `wit/v0.1.0`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "sink",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
        },
    });
}

use bindings::exports::herald::plugin::handler;
pub use bindings::herald::plugin::{log, metrics, state, types};

/// The 0.1.0 event record.
pub use types::Event;

/// The contract version of this module.
pub const CONTRACT: &str = "herald:plugin/handler@0.1.0";
/// The export names of the versions this module loads (any 0.1.x).
pub(crate) const EXPORT_PREFIX: &str = "herald:plugin/handler@0.1.";

/// Builds the 0.1.0 record of a journaled event.
pub fn event(tenant: &str, body: &str) -> Result<Event, EventError> {
    super::event::parse(body).map(|view| record(view, tenant, body))
}

/// Moves a view's fields into the 0.1.0 record.
fn record(view: EventView, tenant: &str, body: &str) -> Event {
    Event {
        id: view.id,
        parent_id: view.parent_id,
        kind: map_event_kind!(view.kind, latest::EventKind => types::EventKind),
        tenant: tenant.to_string(),
        run: types::Run {
            id: view.run.id,
            playbook: view.run.playbook,
            controller: view.run.controller,
        },
        sequence: view.sequence,
        created_ms: view.created_ms,
        play: view.play.map(|p| types::Play {
            id: p.id,
            name: p.name,
            pattern: p.pattern,
        }),
        task: view.task.map(|t| types::Task {
            id: t.id,
            name: t.name,
            action: t.action,
            path: t.path,
        }),
        host: view.host,
        status: view.status.map(|s| match s {
            latest::Status::Ok => types::Status::Ok,
            latest::Status::Changed => types::Status::Changed,
            latest::Status::Failed => types::Status::Failed,
            latest::Status::Unreachable => types::Status::Unreachable,
            latest::Status::Skipped => types::Status::Skipped,
        }),
        changed: view.changed,
        ignore_errors: view.ignore_errors,
        timing: view.timing.map(|t| types::Timing {
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            duration_ms: t.duration_ms,
        }),
        res: view.res,
        stats: view.stats.map(|s| types::Stats {
            hosts: s
                .hosts
                .into_iter()
                .map(|h| types::HostStats {
                    host: h.host,
                    ok: h.ok,
                    changed: h.changed,
                    failures: h.failures,
                    unreachable: h.unreachable,
                    skipped: h.skipped,
                    rescued: h.rescued,
                    ignored: h.ignored,
                })
                .collect(),
            custom: s.custom,
        }),
        json: body.to_string(),
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
    use serde_json::json;

    #[test]
    fn the_record_carries_every_field_of_the_view() {
        let body = json!({"uuid": "u", "event": "runner_on_ok", "counter": 4, "run_id": "r",
            "created": "2026-01-01T00:00:01+00:00", "controller": "ctl", "parent_uuid": "t",
            "event_data": {"playbook": "site.yml", "play_uuid": "p", "play": "Play", "play_pattern": "all",
              "task_uuid": "t", "task": "Touch", "task_action": "command", "task_path": "/x.yml:3",
              "host": "h1", "ignore_errors": true, "res": {"changed": true, "rc": 0},
              "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:00.250+00:00"}})
        .to_string();
        let e = event("ops", &body).unwrap();
        assert_eq!(
            (e.id.as_str(), e.tenant.as_str(), e.json.as_str()),
            ("u", "ops", body.as_str())
        );
        assert!(matches!(e.kind, types::EventKind::RunnerOnOk));
        assert!(matches!(e.status, Some(types::Status::Changed)));
        assert_eq!(e.parent_id.as_deref(), Some("t"));
        assert_eq!(
            (
                e.run.id.as_str(),
                e.run.playbook.as_str(),
                e.run.controller.as_deref()
            ),
            ("r", "site.yml", Some("ctl"))
        );
        assert_eq!(
            e.play.as_ref().and_then(|p| p.pattern.as_deref()),
            Some("all")
        );
        assert_eq!(
            e.task.as_ref().and_then(|t| t.path.as_deref()),
            Some("/x.yml:3")
        );
        assert_eq!(e.timing.as_ref().map(|t| t.duration_ms), Some(250));
        assert!(e.changed && e.ignore_errors);
        assert_eq!((e.sequence, e.host.as_deref()), (4, Some("h1")));

        let stats = json!({"uuid": "s", "event": "playbook_on_stats", "run_id": "r",
            "event_data": {"ok": {"a": 3}, "failures": {"a": 1}, "custom_stats": {"a": {"y": 2}}}});
        let s = event("ops", &stats.to_string()).unwrap().stats.unwrap();
        assert_eq!(
            (s.hosts[0].host.as_str(), s.hosts[0].ok, s.hosts[0].failures),
            ("a", 3, 1)
        );
        assert!(s.custom.is_some_and(|c| c.contains("\"y\":2")));
    }

    #[test]
    fn outcomes_and_levels_convert_up() {
        let o: Outcome = handler::Outcome::Retryable(types::Retry {
            reason: "busy".into(),
            retry_after_ms: Some(5),
        })
        .into();
        assert!(
            matches!(o, Outcome::Retryable(r) if r.reason == "busy" && r.retry_after_ms == Some(5))
        );
        let l: Level = log::Level::Warn.into();
        assert!(matches!(l, Level::Warn));
    }
}
