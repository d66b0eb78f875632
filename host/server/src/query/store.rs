//! The query API's reads: the journal's [`RunQueries`] give its own records,
//! mapped here to the API's models. No SQL here: the journal backend owns it.

use super::model::*;
use crate::error::ApiError;
use herald_event::EventKind;
use herald_journal::{
    DeliveryFilter, DeliveryRecord, DeliveryState, EventFilter, JournalError, Page, RunFilter,
    RunQueries, RunRecord, RunState,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The answer when the journal cannot be read.
pub fn db_error(e: JournalError) -> ApiError {
    tracing::error!("query failed: {e}");
    ApiError::unavailable(format!("the journal cannot be read: {e}"))
}

/// RFC 3339 (UTC, milliseconds) of epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The journal's state of a run for the API's status (and back, for filters).
pub fn run_status(s: RunState) -> RunStatus {
    match s {
        RunState::Running => RunStatus::Running,
        RunState::Ok => RunStatus::Ok,
        RunState::Failed => RunStatus::Failed,
        RunState::Unreachable => RunStatus::Unreachable,
        RunState::Interrupted => RunStatus::Interrupted,
    }
}

/// The journal's run state an API status filter asks for.
pub fn run_state(s: RunStatus) -> RunState {
    match s {
        RunStatus::Running => RunState::Running,
        RunStatus::Ok => RunState::Ok,
        RunStatus::Failed => RunState::Failed,
        RunStatus::Unreachable => RunState::Unreachable,
        RunStatus::Interrupted => RunState::Interrupted,
    }
}

/// The journal's delivery state an API outcome filter asks for.
pub fn delivery_state(o: Outcome) -> DeliveryState {
    match o {
        Outcome::Pending => DeliveryState::Pending,
        Outcome::Done => DeliveryState::Done,
        Outcome::Dead => DeliveryState::Dead,
    }
}

fn outcome(s: DeliveryState) -> Outcome {
    match s {
        DeliveryState::Pending => Outcome::Pending,
        DeliveryState::Done => Outcome::Done,
        DeliveryState::Dead => Outcome::Dead,
    }
}

fn parse_body(body: &str) -> Map<String, Value> {
    serde_json::from_str(body).unwrap_or_default()
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

struct Enriched {
    summary: RunSummary,
    context: Map<String, Value>,
    stats: Option<Map<String, Value>>,
}

fn enrich(row: RunRecord) -> Enriched {
    let context = row
        .start
        .as_ref()
        .map(|s| parse_body(&s.body))
        .and_then(|b| b.get("event_data")?.get("herald")?.as_object().cloned())
        .unwrap_or_default();
    let ended_ms = row.stats.as_ref().map(|s| s.created_ms);
    let stats_data = row
        .stats
        .as_ref()
        .map(|s| parse_body(&s.body))
        .and_then(|b| b.get("event_data")?.as_object().cloned());
    let summary = RunSummary {
        playbook: row.playbook,
        controller: row.controller.or_else(|| str_field(&context, "controller")),
        user: str_field(&context, "user"),
        ansible_version: str_field(&context, "ansible_version"),
        check_mode: context.get("check_mode").and_then(Value::as_bool),
        status: run_status(row.state),
        labels: row.labels,
        started_at: rfc3339(row.first_ms),
        ended_at: ended_ms.map(rfc3339),
        last_event_at: rfc3339(row.last_ms),
        duration_s: ended_ms.map(|e| (e - row.first_ms).max(0) as f64 / 1000.0),
        events: row.events,
        id: row.id,
    };
    Enriched {
        summary,
        context,
        stats: stats_data,
    }
}

/// `GET /v1/runs`: a page of runs and the key to continue after it.
pub fn list_runs(
    j: &dyn RunQueries,
    tenant: &str,
    f: &RunFilter,
) -> Result<Page<RunSummary, (i64, String)>, JournalError> {
    let (rows, next) = j.list_runs(tenant, f)?;
    Ok((rows.into_iter().map(|r| enrich(r).summary).collect(), next))
}

/// Per-host stats from a `playbook_on_stats` event's `event_data`, as
/// herald-event reads them.
pub fn hosts_from_stats(data: &Map<String, Value>) -> BTreeMap<String, HostStats> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    herald_event::host_stats(data)
        .into_iter()
        .map(|(h, c)| {
            (
                h,
                HostStats {
                    ok: n(c.ok),
                    changed: n(c.changed),
                    unreachable: n(c.unreachable),
                    failures: n(c.failures),
                    skipped: n(c.skipped),
                    rescued: n(c.rescued),
                    ignored: n(c.ignored),
                },
            )
        })
        .collect()
}

/// Marks the failures a `rescue` section took over. Ansible counts a rescued
/// failure in `rescued` instead of `failures`, and a host whose failure is
/// not rescued leaves the play: so of a host's failures that were not
/// ignored, in order, the first `rescued` ones are the rescued ones.
fn mark_rescued(tasks: &mut [FailedTask], hosts: &BTreeMap<String, HostStats>) {
    let mut left: BTreeMap<String, i64> = BTreeMap::new();
    for t in tasks.iter_mut() {
        let Some(host) = t.host.clone() else {
            continue;
        };
        if t.outcome != TaskOutcome::Failed || t.ignored {
            continue;
        }
        let n = left
            .entry(host)
            .or_insert_with_key(|h| hosts.get(h).map_or(0, |s| s.rescued));
        if *n > 0 {
            *n -= 1;
            t.rescued = true;
        }
    }
}

fn event_data(body: &Map<String, Value>) -> Map<String, Value> {
    body.get("event_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn message_of(res: Option<&Value>) -> Option<String> {
    let res = res?;
    for key in ["msg", "stderr", "reason", "module_stderr"] {
        match res.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return Some(s.clone()),
            Some(v @ (Value::Array(_) | Value::Object(_))) => return Some(v.to_string()),
            _ => {}
        }
    }
    None
}

/// `GET /v1/runs/{id}`; `None` when the tenant has no such run.
pub fn run_detail(
    j: &dyn RunQueries,
    tenant: &str,
    run: &str,
    stale_before_ms: i64,
) -> Result<Option<RunDetail>, JournalError> {
    let Some(row) = j.run(tenant, run, stale_before_ms)? else {
        return Ok(None);
    };
    let e = enrich(row);
    let mut failed_tasks = Vec::new();
    let mut tally: BTreeMap<String, HostStats> = BTreeMap::new();
    for ev in j.run_results(tenant, run)? {
        let body = parse_body(&ev.body);
        let data = event_data(&body);
        let host = str_field(&data, "host");
        let ignored = data.get("ignore_errors").and_then(Value::as_bool) == Some(true);
        let changed = data
            .get("res")
            .and_then(|r| r.get("changed"))
            .and_then(Value::as_bool)
            == Some(true);
        // The journal keeps the kind's name; herald-event owns the names.
        let kind = EventKind::parse(&ev.kind);
        if e.stats.is_none() {
            if let Some(h) = &host {
                let t = tally.entry(h.clone()).or_default();
                match kind {
                    Some(EventKind::RunnerOnOk) => {
                        t.ok += 1;
                        if changed {
                            t.changed += 1;
                        }
                    }
                    Some(EventKind::RunnerOnFailed) if ignored => t.ignored += 1,
                    Some(EventKind::RunnerOnFailed) => t.failures += 1,
                    Some(EventKind::RunnerOnSkipped) => t.skipped += 1,
                    _ => t.unreachable += 1,
                }
            }
        }
        let outcome = match kind {
            Some(EventKind::RunnerOnFailed) => TaskOutcome::Failed,
            Some(EventKind::RunnerOnUnreachable) => TaskOutcome::Unreachable,
            _ => continue,
        };
        failed_tasks.push(FailedTask {
            host,
            task: str_field(&data, "task"),
            task_action: str_field(&data, "task_action"),
            task_path: str_field(&data, "task_path"),
            play: str_field(&data, "play"),
            outcome,
            ignored,
            rescued: false,
            message: message_of(data.get("res")),
            counter: ev.counter,
            event_uuid: ev.uuid,
            at: rfc3339(ev.created_ms),
        });
    }
    let (stats_source, hosts) = match &e.stats {
        Some(data) => {
            let hosts = hosts_from_stats(data);
            mark_rescued(&mut failed_tasks, &hosts);
            (StatsSource::Stats, hosts)
        }
        None => (StatsSource::Events, tally),
    };
    let limit = str_field(&e.context, "limit");
    let tags = e
        .context
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(RunDetail {
        summary: e.summary,
        limit,
        tags,
        context: e.context,
        stats_source,
        hosts,
        failed_tasks,
    }))
}

/// `GET /v1/runs/{id}/artifacts`; `None` when the tenant has no such run.
pub fn artifacts(
    j: &dyn RunQueries,
    tenant: &str,
    run: &str,
) -> Result<Option<Artifacts>, JournalError> {
    let Some(stats) = j.run_stats(tenant, run)? else {
        return Ok(None);
    };
    let data = stats
        .map(|s| event_data(&parse_body(&s.body)))
        .unwrap_or_default();
    let custom = data
        .get("custom_stats")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let run_data = data
        .get("artifact_data")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .or_else(|| custom.get("_run").and_then(Value::as_object))
        .cloned()
        .unwrap_or_default();
    // Per-host data is an object per host (what Ansible aggregates); anything
    // else a sender put there is not a host's data.
    let hosts = custom
        .into_iter()
        .filter(|(k, v)| k != "_run" && v.is_object())
        .collect();
    Ok(Some(Artifacts {
        run: run_data,
        hosts,
    }))
}

/// `GET /v1/runs/{id}/events`: `None` when the tenant has no such run.
#[allow(clippy::type_complexity)]
pub fn run_events(
    j: &dyn RunQueries,
    tenant: &str,
    run: &str,
    f: &EventFilter,
) -> Result<Option<(Vec<Value>, Option<(i64, i64)>)>, JournalError> {
    Ok(j.run_events(tenant, run, f)?.map(|(bodies, next)| {
        let items = bodies
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
            .collect();
        (items, next)
    }))
}

fn delivery(d: DeliveryRecord) -> Delivery {
    let outcome = outcome(d.state);
    Delivery {
        plugin: d.plugin,
        run_id: d.run_id,
        outcome,
        attempts: d.attempts,
        created_at: rfc3339(d.first_at_ms),
        next_attempt_at: (outcome == Outcome::Pending).then(|| rfc3339(d.next_at_ms)),
        updated_at: rfc3339(d.updated_ms),
        last_error: d.last_error,
        event_uuid: d.event_uuid,
        event: d.kind,
        counter: d.counter,
    }
}

/// `GET /v1/deliveries`.
pub fn deliveries(
    j: &dyn RunQueries,
    tenant: &str,
    f: &DeliveryFilter,
) -> Result<Page<Delivery, (i64, String)>, JournalError> {
    let (rows, next) = j.deliveries(tenant, f)?;
    Ok((rows.into_iter().map(delivery).collect(), next))
}
