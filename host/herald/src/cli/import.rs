//! `herald import`: send runs recorded by ansible-runner (its
//! `artifacts/<ident>/job_events/*.json`) to Herald.

use super::ApiArgs;
use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;

/// `herald import`: send recorded ansible-runner job events to Herald.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// An ansible-runner artifacts directory (`artifacts/<ident>/`), its
    /// `job_events/` folder, or a private data directory holding `artifacts/`.
    pub dir: std::path::PathBuf,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// Every `job_events/` folder under `dir` (the folder itself, an artifacts
/// ident folder, or a private data dir with several runs), each with the run
/// ident it belongs to.
fn job_event_dirs(dir: &std::path::Path) -> anyhow::Result<Vec<(std::path::PathBuf, String)>> {
    let ident_of = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    if dir.file_name().is_some_and(|n| n == "job_events") {
        let ident = dir.parent().map(ident_of).unwrap_or_default();
        return Ok(vec![(dir.to_path_buf(), ident)]);
    }
    if dir.join("job_events").is_dir() {
        return Ok(vec![(dir.join("job_events"), ident_of(dir))]);
    }
    let artifacts = if dir.join("artifacts").is_dir() {
        dir.join("artifacts")
    } else {
        dir.to_path_buf()
    };
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&artifacts).with_context(|| artifacts.display().to_string())?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.join("job_events").is_dir() {
            found.push((p.join("job_events"), ident_of(&p)));
        }
    }
    found.sort();
    if found.is_empty() {
        anyhow::bail!(
            "{}: no job_events/ folder found (give an ansible-runner artifacts directory)",
            dir.display()
        );
    }
    Ok(found)
}

/// `herald import`: every recorded run under `args.dir`, in batches.
pub(super) async fn import(args: ImportArgs) -> anyhow::Result<String> {
    let c = args.api.client()?;
    let mut out = String::new();
    let (mut total, mut dups) = (0u64, 0u64);
    for (dir, ident) in job_event_dirs(&args.dir)? {
        let mut events: Vec<(u64, std::path::PathBuf, Value)> = Vec::new();
        let entries = std::fs::read_dir(&dir).with_context(|| dir.display().to_string())?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            let mut v: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a JSON event", path.display()))?;
            // A run recorded by ansible-runner has no Herald run id: its ident is one.
            if v.get("run_id").is_none() && v.get("runner_ident").is_none() {
                v["runner_ident"] = Value::String(ident.clone());
            }
            let counter = v.get("counter").and_then(Value::as_u64).unwrap_or(0);
            events.push((counter, path, v));
        }
        events.sort_by_key(|(c, _, _)| *c);
        distinct_uuids(events.iter_mut().map(|(c, _, v)| (*c, v)));
        for chunk in events.chunks(args.batch.max(1)) {
            let body: Vec<Value> = chunk.iter().map(|(_, _, v)| v.clone()).collect();
            let answer = c.send_events(&body).await.map_err(|e| {
                // Name the file behind a refused event (`index` in the batch).
                let file = e
                    .body()
                    .and_then(|b| b.index)
                    .and_then(|i| chunk.get(usize::try_from(i).ok()?))
                    .map(|(_, p, _)| format!(" ({})", p.display()))
                    .unwrap_or_default();
                anyhow::anyhow!("{e}{file}")
            })?;
            total += answer.accepted;
            dups += answer.duplicates;
        }
        let _ = writeln!(out, "{}: {} events", dir.display(), events.len());
    }
    let _ = writeln!(out, "imported {total} events ({dups} already known)");
    Ok(out)
}

/// Gives every event of one recorded run its own uuid, so the host (which
/// deduplicates by uuid) stores them all. ansible-runner reuses a task's uuid
/// for its start event, so a handler that runs twice has two events with one
/// uuid. The first keeps it; each repeat gets `<uuid>-<counter>` (stable:
/// importing again derives the same ids, and nothing is stored twice), and
/// the later events whose `parent_uuid` is the repeated uuid point at the
/// repeat instead, until the next repeat. `events` must be in counter order.
fn distinct_uuids<'a>(events: impl Iterator<Item = (u64, &'a mut Value)>) {
    use std::collections::{HashMap, HashSet};
    let mut seen: HashSet<String> = HashSet::new();
    // Original uuid -> the uuid its latest occurrence was given.
    let mut latest: HashMap<String, String> = HashMap::new();
    for (counter, v) in events {
        let parent = v.get("parent_uuid").and_then(Value::as_str);
        if let Some(new_parent) = parent.and_then(|p| latest.get(p)) {
            v["parent_uuid"] = Value::String(new_parent.clone());
        }
        let Some(uuid) = v.get("uuid").and_then(Value::as_str).map(str::to_owned) else {
            continue; // the host refuses it, naming the file
        };
        if seen.insert(uuid.clone()) {
            continue;
        }
        let mut derived = format!("{uuid}-{counter}");
        let mut n = 1u32;
        while seen.contains(&derived) {
            n += 1;
            derived = format!("{uuid}-{counter}-{n}");
        }
        seen.insert(derived.clone());
        v["uuid"] = Value::String(derived.clone());
        if let Some(data) = v.get_mut("event_data").and_then(Value::as_object_mut) {
            // ansible-runner repeats the event's uuid in event_data
            if data.get("uuid").and_then(Value::as_str) == Some(uuid.as_str()) {
                data.insert("uuid".into(), Value::String(derived.clone()));
            }
        }
        latest.insert(uuid, derived);
    }
}

#[cfg(test)]
mod import_tests {
    use super::distinct_uuids;
    use serde_json::{json, Value};

    #[test]
    fn a_repeated_uuid_gets_a_stable_distinct_one_and_its_children_follow() {
        let mut events: Vec<(u64, Value)> = vec![
            (
                8,
                json!({"uuid": "h", "event": "playbook_on_task_start", "event_data": {"uuid": "h"}}),
            ),
            (9, json!({"uuid": "a", "parent_uuid": "h"})),
            (
                25,
                json!({"uuid": "h", "event": "playbook_on_task_start", "event_data": {"uuid": "h"}}),
            ),
            (26, json!({"uuid": "b", "parent_uuid": "h"})),
            (27, json!({"uuid": "h-27"})),
            (30, json!({"uuid": "h"})),
        ];
        distinct_uuids(events.iter_mut().map(|(c, v)| (*c, v)));
        let ids: Vec<&str> = events
            .iter()
            .map(|(_, v)| v["uuid"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(ids, ["h", "a", "h-25", "b", "h-27", "h-30"]);
        assert_eq!(events[1].1["parent_uuid"], "h");
        assert_eq!(events[3].1["parent_uuid"], "h-25");
        assert_eq!(events[2].1["event_data"]["uuid"], "h-25");
        // A uuid already taken by a later event's own id is not given twice.
        let mut clash: Vec<(u64, Value)> = vec![
            (1, json!({"uuid": "x"})),
            (2, json!({"uuid": "x-3"})),
            (3, json!({"uuid": "x"})),
        ];
        distinct_uuids(clash.iter_mut().map(|(c, v)| (*c, v)));
        assert_eq!(clash[2].1["uuid"], "x-3-2");
    }
}
