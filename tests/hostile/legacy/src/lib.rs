//! A plugin built against contract 0.1.0 (`wit/v0.1.0`), as plugins were
//! before 0.2.0, written on wit-bindgen alone. The host must keep loading
//! it through its 0.1.0 adapter (tests/test_plugins_contract.py): for every
//! event it counts `legacy_events_total` with labels read from the typed
//! record, and answers `permanent` for the kinds listed in `refuse`.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "sink",
    generate_all,
});

use exports::herald::plugin::handler::Guest;
use herald::plugin::metrics::{counter_add, Label};
use herald::plugin::types::{Event, EventKind, Outcome, Status};
use std::cell::RefCell;

thread_local! {
    static REFUSE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Legacy;

fn status_name(s: Option<Status>) -> &'static str {
    match s {
        None => "none",
        Some(Status::Ok) => "ok",
        Some(Status::Changed) => "changed",
        Some(Status::Failed) => "failed",
        Some(Status::Unreachable) => "unreachable",
        Some(Status::Skipped) => "skipped",
    }
}

impl Guest for Legacy {
    /// `{"refuse": ["runner_on_failed", ...]}`: event kinds (wire names) to refuse.
    fn configure(config: String) -> Result<(), String> {
        let refuse: Vec<String> = config
            .split("\"refuse\"")
            .nth(1)
            .map(|rest| {
                rest.split(']')
                    .next()
                    .unwrap_or("")
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        REFUSE.with(|r| *r.borrow_mut() = refuse);
        Ok(())
    }

    fn handle(event: Event, _attempt: u32) -> Outcome {
        // The wire name is in `json`; the typed fields are checked against it by the test.
        let wire_kind = event
            .json
            .split("\"event\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let stats_hosts = event.stats.as_ref().map_or(0, |s| s.hosts.len());
        let labels = vec![
            Label {
                name: "kind".into(),
                value: wire_kind.clone(),
            },
            Label {
                name: "host".into(),
                value: event.host.clone().unwrap_or_default(),
            },
            Label {
                name: "status".into(),
                value: status_name(event.status).into(),
            },
            Label {
                name: "task".into(),
                value: event
                    .task
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
            },
            Label {
                name: "playbook".into(),
                value: event.run.playbook.clone(),
            },
            Label {
                name: "stats_hosts".into(),
                value: stats_hosts.to_string(),
            },
        ];
        counter_add(
            "legacy_events_total",
            "Events seen by the 0.1.0 plugin.",
            &labels,
            1.0,
        );
        if event.kind == EventKind::PlaybookOnStats && event.stats.is_none() {
            return Outcome::Permanent("stats event without stats".into());
        }
        if REFUSE.with(|r| r.borrow().contains(&wire_kind)) {
            return Outcome::Permanent(format!("legacy plugin refuses {wire_kind}"));
        }
        Outcome::Ok
    }
}

export!(Legacy);
