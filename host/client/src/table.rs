//! The API's answers as plain-text tables for people: left-aligned columns two
//! spaces apart, no borders, no trailing blanks (so `awk`/`split()` read
//! them), rendered by comfy-table.

use crate::model::{
    Artifacts, DeadLetterPage, DeliveryAttempts, DeliveryPage, EventPage, HostStats, RunDetail,
    RunPage, SearchResult,
};
use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table};
use serde_json::Value;
use std::fmt::Write as _;

/// Left-aligned columns separated by two spaces, one line per row, after a
/// header line. Cells are printed whole (never wrapped).
pub fn table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r.iter().map(|c| c.as_ref()));
    }
    let last = headers.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        // Two spaces between columns, none before the first or after the last.
        col.set_padding((0, if i == last { 0 } else { 2 }));
        col.set_cell_alignment(CellAlignment::Left);
        col.set_constraint(ColumnConstraint::ContentWidth);
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A text cell: `-` when absent, line breaks and tabs as spaces.
fn text(v: Option<&str>) -> String {
    match v {
        None => "-".into(),
        Some(s) => s.replace(['\n', '\t'], " "),
    }
}

/// A JSON value as a cell: strings bare, booleans yes/no, others compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => text(Some(s)),
        Value::Bool(b) => yes(*b),
        other => other.to_string(),
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn duration(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into())
}

fn more(next_cursor: Option<&str>, out: &mut String) {
    if let Some(c) = next_cursor {
        let _ = writeln!(out, "(more: --cursor {c}, or --all)");
    }
}

/// `herald runs list`.
pub fn runs(page: &RunPage) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.status.as_str().into(),
                text(r.playbook.as_deref()),
                text(r.controller.as_deref()),
                text(r.user.as_deref()),
                r.started_at.clone(),
                duration(r.duration_s),
                r.events.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "STATUS",
            "PLAYBOOK",
            "CONTROLLER",
            "USER",
            "STARTED",
            "DURATION",
            "EVENTS",
        ],
        &rows,
    );
    more(page.next_cursor.as_deref(), &mut out);
    out
}

/// `herald runs show`: the run's fields, its PLAY RECAP and failed tasks.
pub fn run(run: &RunDetail) -> String {
    let s = &run.summary;
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let or_dash = |v: String| if v.is_empty() { "-".into() } else { v };
    let fields: Vec<Vec<String>> = [
        ("Run", s.id.clone()),
        ("Playbook", text(s.playbook.as_deref())),
        ("Status", s.status.as_str().into()),
        ("Controller", text(s.controller.as_deref())),
        ("User", text(s.user.as_deref())),
        ("Ansible", text(s.ansible_version.as_deref())),
        (
            "Check mode",
            s.check_mode.map(yes).unwrap_or_else(|| "-".into()),
        ),
        ("Limit", text(run.limit.as_deref())),
        ("Tags", or_dash(run.tags.join(","))),
        ("Labels", or_dash(labels.join(", "))),
        ("Started", s.started_at.clone()),
        ("Ended", text(s.ended_at.as_deref())),
        ("Duration", duration(s.duration_s)),
        ("Events", s.events.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    // A key-value list: no header line.
    let mut out = table(&["", ""], &fields);
    out.drain(..out.find('\n').map_or(0, |i| i + 1));
    let source = if run.stats_source == crate::model::StatsSource::Events {
        " (no stats event yet: tallied from the events received)"
    } else {
        ""
    };
    let _ = writeln!(out, "\nPLAY RECAP{source}");
    let hosts: Vec<Vec<String>> = run
        .hosts
        .iter()
        .map(|(h, st)| {
            let HostStats {
                ok,
                changed,
                unreachable,
                failures,
                skipped,
                rescued,
                ignored,
            } = st;
            let mut row = vec![h.clone()];
            row.extend(
                [
                    ok,
                    changed,
                    unreachable,
                    failures,
                    skipped,
                    rescued,
                    ignored,
                ]
                .map(ToString::to_string),
            );
            row
        })
        .collect();
    out.push_str(&table(
        &[
            "HOST",
            "OK",
            "CHANGED",
            "UNREACHABLE",
            "FAILED",
            "SKIPPED",
            "RESCUED",
            "IGNORED",
        ],
        &hosts,
    ));
    let failed: Vec<Vec<String>> = run
        .failed_tasks
        .iter()
        .map(|t| {
            vec![
                text(t.host.as_deref()),
                text(t.task.as_deref()),
                match t.outcome {
                    crate::model::TaskOutcome::Failed => "failed".into(),
                    crate::model::TaskOutcome::Unreachable => "unreachable".into(),
                },
                yes(t.ignored),
                yes(t.rescued),
                text(t.message.as_deref()),
            ]
        })
        .collect();
    if !failed.is_empty() {
        out.push_str("\nFAILED TASKS\n");
        out.push_str(&table(
            &["HOST", "TASK", "OUTCOME", "IGNORED", "RESCUED", "MESSAGE"],
            &failed,
        ));
    }
    out
}

/// `herald runs events`.
pub fn events(page: &EventPage) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|e| {
            let d = &e["event_data"];
            let changed = d["res"]["changed"].as_bool() == Some(true);
            let status = herald_event_status(e["event"].as_str().unwrap_or_default(), changed);
            vec![
                cell(&e["counter"]),
                cell(&e["event"]),
                cell(&d["host"]),
                cell(&d["task"]),
                status.into(),
                if status == "-" {
                    "-".into()
                } else {
                    yes(changed)
                },
                duration(d["duration"].as_f64()),
                cell(&e["created"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "COUNTER", "EVENT", "HOST", "TASK", "STATUS", "CHANGED", "DURATION", "CREATED",
        ],
        &rows,
    );
    more(page.next_cursor.as_deref(), &mut out);
    out
}

/// A host result's status, as the API's `status` filter names it; `-` for
/// events that are not host results.
fn herald_event_status(kind: &str, changed: bool) -> &'static str {
    match kind {
        "runner_on_ok" if changed => "changed",
        "runner_on_ok" => "ok",
        "runner_on_failed" => "failed",
        "runner_on_unreachable" => "unreachable",
        "runner_on_skipped" => "skipped",
        _ => "-",
    }
}

/// `herald runs artifacts`: SCOPE KEY VALUE rows, the run's own data first;
/// values other than strings as compact JSON.
pub fn artifacts(a: &Artifacts) -> String {
    let mut rows: Vec<Vec<String>> = a
        .run
        .iter()
        .map(|(k, v)| vec!["run".to_string(), k.clone(), cell(v)])
        .collect();
    for (host, data) in &a.hosts {
        for (k, v) in data.as_object().into_iter().flatten() {
            rows.push(vec![host.clone(), k.clone(), cell(v)]);
        }
    }
    if rows.is_empty() {
        return "no set_stats data in this run\n".to_string();
    }
    table(&["SCOPE", "KEY", "VALUE"], &rows)
}

/// `herald deliveries list`: newest first, grouped per run (the run with
/// the newest delivery first, each run's deliveries newest first).
pub fn deliveries(page: &DeliveryPage) -> String {
    let mut newest: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for d in &page.items {
        let n = newest
            .entry(d.run_id.as_str())
            .or_insert(d.updated_at.as_str());
        if d.updated_at.as_str() > *n {
            *n = d.updated_at.as_str();
        }
    }
    let mut items: Vec<_> = page.items.iter().collect();
    // RFC 3339 times of one format compare as text.
    items.sort_by(|a, b| {
        newest[b.run_id.as_str()]
            .cmp(newest[a.run_id.as_str()])
            .then_with(|| a.run_id.cmp(&b.run_id))
            .then_with(|| b.counter.cmp(&a.counter))
            .then_with(|| a.plugin.cmp(&b.plugin))
    });
    let rows: Vec<Vec<String>> = items
        .into_iter()
        .map(|d| {
            vec![
                d.plugin.clone(),
                d.run_id.clone(),
                d.counter.to_string(),
                d.event.clone(),
                d.outcome.as_str().into(),
                d.attempts.to_string(),
                text(d.next_attempt_at.as_deref()),
                text(d.last_error.as_deref()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PLUGIN",
            "RUN",
            "COUNTER",
            "EVENT",
            "OUTCOME",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "LAST ERROR",
        ],
        &rows,
    );
    more(page.next_cursor.as_deref(), &mut out);
    out
}

/// `herald dlq list`.
pub fn dead_letters(page: &DeadLetterPage) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.plugin.clone(),
                d.run_id.clone(),
                d.kind.clone(),
                d.attempts.to_string(),
                text(Some(&d.reason)),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "PLUGIN", "RUN", "KIND", "ATTEMPTS", "REASON"],
        &rows,
    );
    more(page.next_cursor.as_deref(), &mut out);
    out
}

/// `herald deliveries attempts`: each attempt, then its requests.
pub fn attempts(a: &DeliveryAttempts) -> String {
    if a.attempts.is_empty() {
        return format!(
            "no attempt recorded for {} to {}: not attempted yet, or delivered at its first attempt without an outbound request\n",
            a.event, a.plugin
        );
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for t in &a.attempts {
        let first = vec![
            t.attempt.to_string(),
            t.at.clone(),
            t.outcome.clone(),
            format!("{}ms", t.duration_ms),
        ];
        if t.requests.is_empty() {
            let mut r = first.clone();
            r.extend([
                "-".into(),
                "-".into(),
                "-".into(),
                text(t.message.as_deref()),
            ]);
            rows.push(r);
        }
        for (i, q) in t.requests.iter().enumerate() {
            let mut r = if i == 0 {
                first.clone()
            } else {
                vec!["".into(); 4]
            };
            r.push(format!("{} {}", q.method, q.url));
            r.push(q.status.map_or_else(|| "-".into(), |s| s.to_string()));
            r.push(format!("{}ms", q.latency_ms));
            let answer = match &q.error {
                Some(e) => e.clone(),
                None => q.body.clone(),
            };
            r.push(text(Some(&answer)));
            rows.push(r);
        }
        if let (Some(m), false) = (&t.message, t.requests.is_empty()) {
            rows.push(vec![
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "message".into(),
                "".into(),
                "".into(),
                text(Some(m)),
            ]);
        }
    }
    table(
        &[
            "ATTEMPT", "AT", "OUTCOME", "TOOK", "REQUEST", "STATUS", "LATENCY", "ANSWER",
        ],
        &rows,
    )
}

/// `herald search`: matching hosts (per run), then tasks.
pub fn search(r: &SearchResult) -> String {
    let mut out = String::new();
    if r.hosts.is_empty() {
        out.push_str("no host matches\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .hosts
            .iter()
            .map(|h| {
                vec![
                    h.host.clone(),
                    h.run_id.clone(),
                    text(h.playbook.as_deref()),
                    h.ok.to_string(),
                    h.changed.to_string(),
                    h.failed.to_string(),
                    h.unreachable.to_string(),
                    h.skipped.to_string(),
                    h.last_at.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "HOST",
                "RUN",
                "PLAYBOOK",
                "OK",
                "CHANGED",
                "FAILED",
                "UNREACHABLE",
                "SKIPPED",
                "LAST RESULT",
            ],
            &rows,
        ));
    }
    out.push('\n');
    if r.tasks.is_empty() {
        out.push_str("no task matches\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.task.clone(),
                    text(t.play.as_deref()),
                    t.run_id.clone(),
                    text(t.playbook.as_deref()),
                    t.started_at.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["TASK", "PLAY", "RUN", "PLAYBOOK", "STARTED"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_without_borders_or_trailing_blanks() {
        let t = table(&["A", "BB"], &[vec!["xxx", "1"], vec!["y", "22"]]);
        assert_eq!(t, "A    BB\nxxx  1\ny    22\n");
        // Wide cells are not wrapped, whatever the terminal.
        let long = "x".repeat(300);
        let t = table(&["K", "V"], &[vec!["k", long.as_str()]]);
        assert_eq!(t.lines().nth(1), Some(format!("k  {long}").as_str()));
        // A header alone when there is no row.
        assert_eq!(table::<String>(&["ID", "STATUS"], &[]), "ID  STATUS\n");
    }

    #[test]
    fn artifacts_list_run_then_host_values() {
        let a: Artifacts = serde_json::from_value(json!({
            "run": {"version": "1.2", "count": 3},
            "hosts": {"web1": {"ok": true, "list": [1, 2]}}
        }))
        .expect("artifacts");
        assert_eq!(
            artifacts(&a),
            "SCOPE  KEY      VALUE\n\
             run    count    3\n\
             run    version  1.2\n\
             web1   list     [1,2]\n\
             web1   ok       yes\n"
        );
        let empty: Artifacts =
            serde_json::from_value(json!({"run": {}, "hosts": {}})).expect("artifacts");
        assert_eq!(artifacts(&empty), "no set_stats data in this run\n");
    }

    fn summary() -> Value {
        json!({
            "id": "r1", "playbook": "site.yml", "controller": "ctl", "user": null,
            "ansible_version": "2.17.0", "check_mode": false, "status": "failed",
            "labels": {"env": "prod", "team": "ops"},
            "started_at": "2026-11-21T10:00:00Z", "ended_at": "2026-11-21T10:00:12Z",
            "last_event_at": "2026-11-21T10:00:12Z", "duration_s": 12.04, "events": 42
        })
    }

    #[test]
    fn runs_list_one_row_per_run_and_the_cursor_hint() {
        let page: RunPage =
            serde_json::from_value(json!({"items": [summary()], "next_cursor": "c2"}))
                .expect("page");
        let out = runs(&page);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "ID",
                "STATUS",
                "PLAYBOOK",
                "CONTROLLER",
                "USER",
                "STARTED",
                "DURATION",
                "EVENTS"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "r1",
                "failed",
                "site.yml",
                "ctl",
                "-",
                "2026-11-21T10:00:00Z",
                "12.0s",
                "42"
            ]
        );
        assert_eq!(out.lines().nth(2), Some("(more: --cursor c2, or --all)"));
    }

    #[test]
    fn a_run_shows_its_fields_recap_and_failed_tasks() {
        let mut v = summary();
        let extra = json!({
            "limit": null, "tags": ["a", "b"], "context": {}, "stats_source": "stats",
            "hosts": {"web1": {"ok": 3, "changed": 1, "unreachable": 0, "failures": 1,
                               "skipped": 0, "rescued": 0, "ignored": 0}},
            "failed_tasks": [{"host": "web1", "task": "migrate", "task_action": "command",
                              "task_path": null, "play": "p", "outcome": "failed",
                              "ignored": false, "rescued": false,
                              "message": "migration\nfailed", "counter": 7,
                              "event_uuid": "u7", "at": "2026-11-21T10:00:10Z"}]
        });
        for (k, x) in extra.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        let detail: RunDetail = serde_json::from_value(v).expect("detail");
        let out = run(&detail);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Run         r1");
        assert_eq!(lines[2], "Status      failed");
        assert!(lines.contains(&"Check mode  no"), "{out}");
        assert!(lines.contains(&"Tags        a,b"), "{out}");
        assert!(lines.contains(&"Labels      env=prod, team=ops"), "{out}");
        assert!(lines.contains(&"Limit       -"), "{out}");
        let recap = out.find("\nPLAY RECAP\n").expect("recap");
        let rows: Vec<Vec<&str>> = out[recap..]
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            rows.contains(&vec!["web1", "3", "1", "0", "1", "0", "0", "0"]),
            "{out}"
        );
        assert!(
            out.contains("\nFAILED TASKS\n") && out.contains("migration failed"),
            "{out}"
        );
    }

    #[test]
    fn deliveries_and_dead_letters_name_their_columns() {
        let page: DeliveryPage = serde_json::from_value(json!({"items": [{
            "plugin": "hook", "run_id": "r1", "event_uuid": "u", "event": "runner_on_ok",
            "counter": 3, "outcome": "pending", "attempts": 2, "last_error": "HTTP 500",
            "created_at": "t0", "updated_at": "t1", "next_attempt_at": "t2"}],
            "next_cursor": null}))
        .expect("deliveries");
        let out = deliveries(&page);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][..2], ["PLUGIN", "RUN"]);
        assert_eq!(
            lines[1],
            [
                "hook",
                "r1",
                "3",
                "runner_on_ok",
                "pending",
                "2",
                "t2",
                "HTTP",
                "500"
            ]
        );
        assert_eq!(lines.len(), 2);
        let dl: DeadLetterPage = serde_json::from_value(json!({"items": [{
            "id": "5:hook", "plugin": "hook", "event_id": 5, "uuid": "u", "run_id": "r1",
            "kind": "runner_on_ok", "attempts": 1, "reason": "HTTP 400", "dead_at_ms": 1}],
            "next_cursor": "5"}))
        .expect("dead letters");
        let out = dead_letters(&dl);
        assert!(out.starts_with("ID      PLUGIN  RUN  KIND"), "{out}");
        assert!(
            out.contains("\n5:hook  hook    r1   runner_on_ok  1         HTTP 400\n"),
            "{out}"
        );
        assert!(out.ends_with("(more: --cursor 5, or --all)\n"), "{out}");
    }
}
