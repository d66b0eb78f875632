//! The adapter from a journaled wire event to the WIT `event` record of
//! `herald:plugin@0.1.0`. A future contract version gets an adapter beside it.

use super::bindings::herald::plugin::types as wit;
use crate::event::EventKind;
use serde_json::{Map, Value};

/// Builds the typed event a plugin receives from the journaled body.
pub fn to_wit(tenant: &str, body: &str) -> Result<wit::Event, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("journaled event is not JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or("journaled event is not an object")?;
    let name = str_of(obj, "event").unwrap_or_default();
    let kind = EventKind::parse(&name).ok_or_else(|| format!("unknown event kind {name:?}"))?;
    let empty = Map::new();
    let data = obj
        .get("event_data")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let res = data.get("res").and_then(Value::as_object);
    let changed = res
        .and_then(|r| r.get("changed"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let status = status_of(kind, changed);
    let play = str_of(data, "play_uuid").map(|id| wit::Play {
        id,
        name: str_of(data, "play").unwrap_or_default(),
        pattern: str_of(data, "play_pattern"),
    });
    let task = str_of(data, "task_uuid").map(|id| wit::Task {
        id,
        name: str_of(data, "task").unwrap_or_default(),
        action: str_of(data, "task_action").unwrap_or_default(),
        path: str_of(data, "task_path"),
    });
    let timing = match (
        str_of(data, "start").and_then(|s| crate::event::parse_time(&s)),
        str_of(data, "end").and_then(|s| crate::event::parse_time(&s)),
    ) {
        (Some(start_ms), Some(end_ms)) => Some(wit::Timing {
            start_ms,
            end_ms,
            duration_ms: data
                .get("duration")
                .and_then(Value::as_f64)
                .map(|d| (d * 1000.0).round().max(0.0) as u64)
                .unwrap_or_else(|| (end_ms - start_ms).max(0) as u64),
        }),
        _ => None,
    };
    let stats = (kind == EventKind::PlaybookOnStats).then(|| stats_of(data));
    Ok(wit::Event {
        id: str_of(obj, "uuid").unwrap_or_default(),
        parent_id: str_of(obj, "parent_uuid"),
        kind: wit_kind(kind),
        tenant: tenant.to_string(),
        run: wit::Run {
            id: str_of(obj, "run_id").unwrap_or_default(),
            playbook: str_of(data, "playbook").unwrap_or_default(),
            controller: str_of(obj, "controller"),
        },
        sequence: obj.get("counter").and_then(Value::as_u64).unwrap_or(0),
        created_ms: str_of(obj, "created")
            .and_then(|s| crate::event::parse_time(&s))
            .unwrap_or(0),
        play,
        task,
        host: str_of(data, "host"),
        status,
        changed,
        ignore_errors: data
            .get("ignore_errors")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        timing,
        res: res.map(|r| Value::Object(r.clone()).to_string()),
        stats,
        json: body.to_string(),
    })
}

fn str_of(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_string)
}

fn status_of(kind: EventKind, changed: bool) -> Option<wit::Status> {
    use crate::event::Status;
    Some(match Status::of(kind, changed)? {
        Status::Ok => wit::Status::Ok,
        Status::Changed => wit::Status::Changed,
        Status::Failed => wit::Status::Failed,
        Status::Skipped => wit::Status::Skipped,
        Status::Unreachable => wit::Status::Unreachable,
    })
}

fn stats_of(data: &Map<String, Value>) -> wit::Stats {
    let count = |field: &str, host: &str| -> u32 {
        data.get(field)
            .and_then(|m| m.get(host))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32
    };
    let mut hosts: Vec<String> = Vec::new();
    for field in [
        "processed",
        "ok",
        "changed",
        "failures",
        "dark",
        "skipped",
        "rescued",
        "ignored",
    ] {
        if let Some(m) = data.get(field).and_then(Value::as_object) {
            for h in m.keys() {
                if !hosts.contains(h) {
                    hosts.push(h.clone());
                }
            }
        }
    }
    hosts.sort();
    let custom = match data.get("custom_stats").and_then(Value::as_object) {
        Some(c) if !c.is_empty() => Some(Value::Object(c.clone()).to_string()),
        _ => match data.get("artifact_data").and_then(Value::as_object) {
            Some(a) if !a.is_empty() => Some(serde_json::json!({ "_run": a }).to_string()),
            _ => None,
        },
    };
    wit::Stats {
        hosts: hosts
            .iter()
            .map(|h| wit::HostStats {
                host: h.clone(),
                ok: count("ok", h),
                changed: count("changed", h),
                failures: count("failures", h),
                unreachable: count("dark", h),
                skipped: count("skipped", h),
                rescued: count("rescued", h),
                ignored: count("ignored", h),
            })
            .collect(),
        custom,
    }
}

fn wit_kind(kind: EventKind) -> wit::EventKind {
    use wit::EventKind as W;
    use EventKind::*;
    match kind {
        PlaybookOnStart => W::PlaybookOnStart,
        PlaybookOnPlayStart => W::PlaybookOnPlayStart,
        PlaybookOnTaskStart => W::PlaybookOnTaskStart,
        PlaybookOnHandlerTaskStart => W::PlaybookOnHandlerTaskStart,
        PlaybookOnCleanupTaskStart => W::PlaybookOnCleanupTaskStart,
        PlaybookOnNoHostsMatched => W::PlaybookOnNoHostsMatched,
        PlaybookOnNoHostsRemaining => W::PlaybookOnNoHostsRemaining,
        PlaybookOnInclude => W::PlaybookOnInclude,
        PlaybookOnNotify => W::PlaybookOnNotify,
        PlaybookOnVarsPrompt => W::PlaybookOnVarsPrompt,
        PlaybookOnImportForHost => W::PlaybookOnImportForHost,
        PlaybookOnNotImportForHost => W::PlaybookOnNotImportForHost,
        PlaybookOnSetup => W::PlaybookOnSetup,
        PlaybookOnStats => W::PlaybookOnStats,
        RunnerOnStart => W::RunnerOnStart,
        RunnerOnOk => W::RunnerOnOk,
        RunnerOnFailed => W::RunnerOnFailed,
        RunnerOnSkipped => W::RunnerOnSkipped,
        RunnerOnUnreachable => W::RunnerOnUnreachable,
        RunnerOnNoHosts => W::RunnerOnNoHosts,
        RunnerOnAsyncPoll => W::RunnerOnAsyncPoll,
        RunnerOnAsyncOk => W::RunnerOnAsyncOk,
        RunnerOnAsyncFailed => W::RunnerOnAsyncFailed,
        RunnerItemOnOk => W::RunnerItemOnOk,
        RunnerItemOnFailed => W::RunnerItemOnFailed,
        RunnerItemOnSkipped => W::RunnerItemOnSkipped,
        RunnerRetry => W::RunnerRetry,
        RunnerOnFileDiff => W::RunnerOnFileDiff,
        Verbose => W::Verbose,
        Debug => W::Debug,
        Warning => W::Warning,
        Deprecated => W::Deprecated,
        Error => W::Error,
        SystemWarning => W::SystemWarning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_result_gets_status_timing_and_result() {
        let body = json!({"uuid": "u", "event": "runner_on_ok", "counter": 4, "run_id": "r",
            "created": "2026-01-01T00:00:01+00:00", "controller": "ctl",
            "event_data": {"playbook": "site.yml", "play_uuid": "p", "play": "Play", "task_uuid": "t",
              "task": "Touch", "task_action": "command", "host": "h1", "res": {"changed": true, "rc": 0},
              "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:00.250+00:00", "duration": 0.25}});
        let e = to_wit("ops", &body.to_string()).unwrap();
        assert!(matches!(e.status, Some(wit::Status::Changed)));
        assert_eq!(e.timing.as_ref().unwrap().duration_ms, 250);
        assert_eq!(e.run.playbook, "site.yml");
        assert_eq!(e.task.as_ref().unwrap().action, "command");
        assert_eq!(e.sequence, 4);
        assert!(e.res.unwrap().contains("\"rc\":0"));
    }

    #[test]
    fn stats_event_carries_hosts_and_custom_stats() {
        let body = json!({"uuid": "u", "event": "playbook_on_stats", "counter": 9, "run_id": "r",
            "created": "2026-01-01T00:00:01", "event_data": {
              "ok": {"a": 3, "b": 2}, "changed": {"a": 1}, "failures": {"b": 1}, "dark": {},
              "skipped": {}, "rescued": {}, "ignored": {"a": 1}, "processed": {"a": 1, "b": 1},
              "artifact_data": {"x": 1}, "custom_stats": {"_run": {"x": 1}, "a": {"y": 2}}}});
        let e = to_wit("ops", &body.to_string()).unwrap();
        let s = e.stats.unwrap();
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(
            (s.hosts[0].ok, s.hosts[0].changed, s.hosts[0].ignored),
            (3, 1, 1)
        );
        assert_eq!(s.hosts[1].failures, 1);
        assert!(s.custom.unwrap().contains("\"a\":{\"y\":2}"));
    }
}
