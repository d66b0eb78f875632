//! A plugin built against contract 0.2.0 (`wit/v0.2.0`), as the shipped
//! plugins were before 0.3.0, written on wit-bindgen alone. The host must
//! keep loading it through its 0.2.0 adapter beside 0.3.0 plugins
//! (tests/test_plugins_contract.py): for every event it reads the typed
//! fields from the lent `event` resource and counts `legacy2_events_total`
//! with them as labels.

wit_bindgen::generate!({
    path: "../../../wit/v0.2.0",
    world: "sink",
    generate_all,
});

use exports::herald::plugin::handler::Guest;
use herald::plugin::metrics::{counter_add, Label};
use herald::plugin::types::{Event, Outcome, Status};

struct Legacy2;

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

fn label(name: &str, value: String) -> Label {
    Label {
        name: name.into(),
        value,
    }
}

impl Guest for Legacy2 {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn handle(event: &Event, _attempt: u32) -> Outcome {
        let json = event.json();
        let wire_kind = json
            .split("\"event\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let labels = vec![
            label("kind", wire_kind),
            label("host", event.host().unwrap_or_default()),
            label("status", status_name(event.status()).into()),
            label("task", event.task().map(|t| t.name).unwrap_or_default()),
            label("playbook", event.run().playbook),
            label(
                "stats_hosts",
                event.stats().map_or(0, |s| s.hosts.len()).to_string(),
            ),
        ];
        counter_add(
            "legacy2_events_total",
            "Events seen by the 0.2.0 plugin.",
            &labels,
            1.0,
        );
        Outcome::Ok
    }
}

export!(Legacy2);
