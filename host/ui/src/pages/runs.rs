//! The runs list, a run's page and an event's page.

use super::{pretty, read, render};
use crate::session::Session;
use crate::view::{self, Chrome};
use crate::{Ui, UiError};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use herald_event::EventKind;
use herald_journal::{OutlineRow, RunFilter, RunRecord, RunRef, RunState};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A run without stats and without events for this long is incomplete
/// (the query API's default too).
const INCOMPLETE_AFTER_MS: i64 = 3600 * 1000;
const PAGE: usize = 50;
/// At most this many timeline rows and failures on a run's page.
const MAX_TASKS: usize = 1000;
const MAX_FAILURES: usize = 200;

/// `GET /runs`'s query (the filter form).
#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    #[serde(default)]
    playbook: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    controller: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

/// A row of the runs list.
pub struct RunRow {
    pub id: String,
    pub short: String,
    pub playbook: String,
    pub status: &'static str,
    pub incomplete: bool,
    pub controller: String,
    pub started: String,
    pub started_iso: String,
    pub duration: String,
    pub events: i64,
    pub labels: Vec<String>,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    chrome: Chrome,
    q: RunsQuery,
    statuses: Vec<&'static str>,
    rows: Vec<RunRow>,
    live: bool,
    self_url: String,
    next_url: Option<String>,
    error: Option<String>,
}

/// `since` / `until`: `1h`, `30m`, `2d` before now, a date, or RFC 3339.
pub fn parse_time(v: &str, now_ms: i64) -> Option<i64> {
    let v = v.trim();
    if let Some(ms) = herald_event_duration(v) {
        return Some(now_ms - ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// `90s`, `30m`, `1h`, `2d`, `1w` in milliseconds.
fn herald_event_duration(v: &str) -> Option<i64> {
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().ok().filter(|n| *n <= 10_000_000)?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    Some(n * unit_ms)
}

fn status_name(s: RunState) -> &'static str {
    match s {
        RunState::Interrupted => "incomplete",
        other => other.as_str(),
    }
}

fn row(r: RunRecord) -> RunRow {
    let ended = r.stats.as_ref().map(|s| s.created_ms);
    RunRow {
        short: view::short(&r.id).to_string(),
        playbook: r.playbook.clone().unwrap_or_else(|| "(no playbook)".into()),
        status: status_name(r.state),
        incomplete: r.state == RunState::Interrupted,
        controller: r.controller.clone().unwrap_or_default(),
        started: view::time(r.first_ms),
        started_iso: view::iso(r.first_ms),
        duration: match ended {
            Some(e) => view::duration(e - r.first_ms),
            None => format!("{}…", view::duration(r.last_ms - r.first_ms)),
        },
        events: r.events,
        labels: r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        id: r.id,
    }
}

fn encode_cursor(k: &(i64, String)) -> String {
    hex::encode(format!("{}:{}", k.0, k.1))
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let s = String::from_utf8(hex::decode(c).ok()?).ok()?;
    let (ms, id) = s.split_once(':')?;
    Some((ms.parse().ok()?, id.to_string()))
}

fn query_string(q: &RunsQuery, cursor: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("playbook", &q.playbook),
        ("status", &q.status),
        ("controller", &q.controller),
        ("label", &q.label),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}={}", view::url(v)));
        }
    }
    if let Some(c) = cursor {
        parts.push(format!("cursor={c}"));
    }
    if parts.is_empty() {
        "/runs".into()
    } else {
        format!("/runs?{}", parts.join("&"))
    }
}

/// `GET /runs`: the tenant's runs, newest first, filtered, paged by key.
pub async fn list(
    State(ui): State<Ui>,
    s: Session,
    Query(q): Query<RunsQuery>,
) -> Result<Response, UiError> {
    let now = herald_journal::now_ms();
    let mut error = None;
    let mut filter = RunFilter {
        stale_before_ms: now - INCOMPLETE_AFTER_MS,
        limit: PAGE,
        ..Default::default()
    };
    let text = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    filter.playbook = text(&q.playbook);
    filter.controller = text(&q.controller);
    if !q.status.is_empty() {
        let name = if q.status == "incomplete" {
            "interrupted"
        } else {
            q.status.as_str()
        };
        match RunState::parse(name) {
            Some(st) => filter.state = Some(st),
            None => error = Some(format!("Unknown status {:?}.", q.status)),
        }
    }
    if let Some(l) = text(&q.label) {
        filter.labels.push(match l.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (l, None),
        });
    }
    for (name, v, slot) in [
        ("since", &q.since, &mut filter.since_ms),
        ("until", &q.until, &mut filter.until_ms),
    ] {
        if v.trim().is_empty() {
            continue;
        }
        match parse_time(v, now) {
            Some(ms) => *slot = Some(ms),
            None => {
                error = Some(format!(
                    "{name}: {v:?} is not a duration (1h, 30m, 2d), a date (2026-12-05) or an RFC 3339 time."
                ))
            }
        }
    }
    if !q.cursor.is_empty() {
        match decode_cursor(&q.cursor) {
            Some(k) => filter.after = Some(k),
            None => error = Some("The page link is not one this list made.".into()),
        }
    }
    let tenant = s.tenant.clone();
    let (rows, next) = if error.is_some() {
        (Vec::new(), None)
    } else {
        read(&ui, move |j| Ok(j.list_runs(&tenant, &filter)?)).await?
    };
    let rows: Vec<RunRow> = rows.into_iter().map(row).collect();
    let live = rows.iter().any(|r| r.status == "running");
    let page = RunsPage {
        chrome: Chrome::new(&s, "runs"),
        self_url: query_string(&q, Some(q.cursor.as_str()).filter(|c| !c.is_empty())),
        next_url: next.map(|k| query_string(&q, Some(&encode_cursor(&k)))),
        statuses: vec!["running", "ok", "failed", "unreachable", "incomplete"],
        q,
        rows,
        live,
        error,
    };
    render(&page)
}

/// A host's line of the PLAY RECAP.
pub struct RecapRow {
    pub host: String,
    pub ok: u64,
    pub changed: u64,
    pub unreachable: u64,
    pub failures: u64,
    pub skipped: u64,
    pub rescued: u64,
    pub ignored: u64,
}

impl RecapRow {
    fn bad(&self) -> bool {
        self.failures > 0 || self.unreachable > 0
    }
}

/// A failed or unreachable host result.
pub struct Failure {
    pub host: String,
    pub task: String,
    pub play: String,
    pub kind: &'static str,
    pub ignored: bool,
    pub message: String,
    pub uuid: String,
    pub at: String,
}

/// A line of the timeline: a play or a task.
pub struct Line {
    pub play: bool,
    pub name: String,
    pub action: String,
    pub start: String,
    pub duration: String,
    /// Offset and width of the bar, in percent of the run.
    pub left: String,
    pub width: String,
    pub ok: u64,
    pub changed: u64,
    pub failed: u64,
    pub unreachable: u64,
    pub skipped: u64,
    pub uuid: String,
}

struct Span {
    play: bool,
    name: String,
    action: String,
    start_ms: i64,
    end_ms: i64,
    counts: [u64; 5],
    uuid: String,
}

/// The run's deliveries to one instance.
pub struct DeliveryRow {
    pub plugin: String,
    pub pending: u64,
    pub done: u64,
    pub dead: u64,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Chrome,
    id: String,
    playbook: String,
    status: &'static str,
    incomplete: bool,
    live: bool,
    started: String,
    duration: String,
    controller: String,
    context: Vec<(String, String)>,
    labels: Vec<String>,
    events: i64,
    recap_from_stats: bool,
    recap: Vec<RecapRow>,
    failures: Vec<Failure>,
    more_failures: usize,
    timeline: Vec<Line>,
    more_tasks: usize,
    artifacts: Option<String>,
    deliveries: Vec<DeliveryRow>,
    plugins: Vec<String>,
    notice: Option<String>,
}

/// `GET /runs/{id}`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    notice: Option<String>,
}

fn parse(body: &str) -> Map<String, Value> {
    serde_json::from_str(body).unwrap_or_default()
}

fn event_data(body: &Map<String, Value>) -> Map<String, Value> {
    body.get("event_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn is_task_start(kind: &str) -> bool {
    matches!(
        EventKind::parse(kind),
        Some(
            EventKind::PlaybookOnTaskStart
                | EventKind::PlaybookOnHandlerTaskStart
                | EventKind::PlaybookOnCleanupTaskStart
        )
    )
}

/// Result kinds in the order of a line's counts.
fn result_slot(kind: &str, changed: bool) -> Option<usize> {
    Some(match EventKind::parse(kind)? {
        EventKind::RunnerOnOk if changed => 1,
        EventKind::RunnerOnOk => 0,
        EventKind::RunnerOnFailed => 2,
        EventKind::RunnerOnUnreachable => 3,
        EventKind::RunnerOnSkipped => 4,
        _ => return None,
    })
}

/// Plays and tasks with their times and per-status counts. A task ends at
/// its last result, or at the next task's start if it has none.
fn timeline(outline: &[OutlineRow], run_start: i64, run_end: i64) -> (Vec<Line>, usize) {
    let mut spans: Vec<Span> = Vec::new();
    let mut play_idx: Option<usize> = None;
    let mut task_idx: Option<usize> = None;
    for r in outline {
        let kind = r.kind.as_str();
        if EventKind::parse(kind) == Some(EventKind::PlaybookOnPlayStart) {
            spans.push(Span {
                play: true,
                name: r.play.clone().unwrap_or_else(|| "(play)".into()),
                action: String::new(),
                start_ms: r.created_ms,
                end_ms: r.created_ms,
                counts: [0; 5],
                uuid: r.uuid.clone(),
            });
            play_idx = Some(spans.len() - 1);
            task_idx = None;
        } else if is_task_start(kind) {
            if let Some(t) = task_idx {
                if spans[t].end_ms == spans[t].start_ms {
                    spans[t].end_ms = r.created_ms;
                }
            }
            spans.push(Span {
                play: false,
                name: r.task.clone().unwrap_or_else(|| "(task)".into()),
                action: r.task_action.clone().unwrap_or_default(),
                start_ms: r.created_ms,
                end_ms: r.created_ms,
                counts: [0; 5],
                uuid: r.uuid.clone(),
            });
            task_idx = Some(spans.len() - 1);
        } else if let Some(slot) = result_slot(kind, r.changed) {
            for i in [task_idx, play_idx].into_iter().flatten() {
                let sp = &mut spans[i];
                sp.counts[slot] += 1;
                sp.end_ms = sp.end_ms.max(r.created_ms);
            }
        }
        if let Some(p) = play_idx {
            spans[p].end_ms = spans[p].end_ms.max(r.created_ms);
        }
    }
    let total = (run_end - run_start).max(1) as f64;
    let more = spans.len().saturating_sub(MAX_TASKS);
    let lines = spans
        .into_iter()
        .take(MAX_TASKS)
        .map(|sp| {
            let left = ((sp.start_ms - run_start).max(0) as f64 / total * 100.0).min(100.0);
            let width =
                ((sp.end_ms - sp.start_ms).max(0) as f64 / total * 100.0).clamp(0.3, 100.0 - left);
            Line {
                play: sp.play,
                name: sp.name,
                action: sp.action,
                start: view::time(sp.start_ms),
                duration: view::duration(sp.end_ms - sp.start_ms),
                left: format!("{left:.2}"),
                width: format!("{width:.2}"),
                ok: sp.counts[0],
                changed: sp.counts[1],
                failed: sp.counts[2],
                unreachable: sp.counts[3],
                skipped: sp.counts[4],
                uuid: sp.uuid,
            }
        })
        .collect();
    (lines, more)
}

/// The PLAY RECAP: from the stats event when the run has one, else tallied
/// from the results so far; failed and unreachable hosts first.
fn recap(stats: Option<&Map<String, Value>>, outline: &[OutlineRow]) -> Vec<RecapRow> {
    let mut rows: Vec<RecapRow> = match stats {
        Some(data) => herald_event::host_stats(data)
            .into_iter()
            .map(|(host, c)| RecapRow {
                host,
                ok: c.ok,
                changed: c.changed,
                unreachable: c.unreachable,
                failures: c.failures,
                skipped: c.skipped,
                rescued: c.rescued,
                ignored: c.ignored,
            })
            .collect(),
        None => {
            let mut tally: BTreeMap<String, RecapRow> = BTreeMap::new();
            for r in outline {
                let Some(host) = &r.host else { continue };
                let Some(slot) = result_slot(&r.kind, r.changed) else {
                    continue;
                };
                let t = tally.entry(host.clone()).or_insert_with(|| RecapRow {
                    host: host.clone(),
                    ok: 0,
                    changed: 0,
                    unreachable: 0,
                    failures: 0,
                    skipped: 0,
                    rescued: 0,
                    ignored: 0,
                });
                match slot {
                    0 => t.ok += 1,
                    1 => {
                        t.ok += 1;
                        t.changed += 1
                    }
                    2 if r.ignored => t.ignored += 1,
                    2 => t.failures += 1,
                    3 => t.unreachable += 1,
                    _ => t.skipped += 1,
                }
            }
            tally.into_values().collect()
        }
    };
    rows.sort_by(|a, b| b.bad().cmp(&a.bad()).then_with(|| a.host.cmp(&b.host)));
    rows
}

/// Failed and unreachable results, those that failed the run first
/// (ignored failures last).
fn failures(outline: &[OutlineRow]) -> (Vec<Failure>, usize) {
    let mut out: Vec<Failure> = outline
        .iter()
        .filter_map(|r| {
            let kind = match EventKind::parse(&r.kind)? {
                EventKind::RunnerOnFailed => "failed",
                EventKind::RunnerOnUnreachable => "unreachable",
                _ => return None,
            };
            Some(Failure {
                host: r.host.clone().unwrap_or_default(),
                task: r.task.clone().unwrap_or_default(),
                play: r.play.clone().unwrap_or_default(),
                kind,
                ignored: r.ignored,
                message: r.message.clone().unwrap_or_default(),
                uuid: r.uuid.clone(),
                at: view::time(r.created_ms),
            })
        })
        .collect();
    out.sort_by_key(|f| f.ignored);
    let more = out.len().saturating_sub(MAX_FAILURES);
    out.truncate(MAX_FAILURES);
    (out, more)
}

/// The run's `set_stats` data: `artifact_data` (the AWX shape) and the
/// per-host `custom_stats`, as one pretty JSON; `None` when there is none.
fn artifacts(stats: &Map<String, Value>) -> Option<String> {
    let mut out = Map::new();
    if let Some(a) = stats
        .get("artifact_data")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        out.insert("_run".into(), Value::Object(a.clone()));
    }
    if let Some(c) = stats.get("custom_stats").and_then(Value::as_object) {
        for (k, v) in c {
            if !out.contains_key(k) && v.as_object().is_some_and(|m| !m.is_empty()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    (!out.is_empty()).then(|| pretty(&Value::Object(out)))
}

/// Resolves `latest` or a prefix to a run id: `Ok(None)` when `reference`
/// is already the id.
async fn resolve(ui: &Ui, tenant: &str, reference: &str) -> Result<Option<String>, UiError> {
    let (t, r) = (tenant.to_string(), reference.to_string());
    match read(ui, move |j| Ok(j.resolve_run(&t, &r)?)).await? {
        RunRef::Found(id) if id == reference => Ok(None),
        RunRef::Found(id) => Ok(Some(id)),
        RunRef::NotFound => Err(UiError::NotFound(format!("no run {reference:?}"))),
        RunRef::Ambiguous(ids) => Err(UiError::BadRequest(format!(
            "{reference:?} names several runs: {}",
            ids.join(", ")
        ))),
    }
}

/// `GET /runs/{id}`: a run (the id, a unique prefix of it, or `latest`).
pub async fn run(
    State(ui): State<Ui>,
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<Response, UiError> {
    if let Some(full) = resolve(&ui, &s.tenant, &id).await? {
        return Ok(Redirect::to(&format!("/runs/{}", view::url(&full))).into_response());
    }
    let tenant = s.tenant.clone();
    let run_id = id.clone();
    let stale = herald_journal::now_ms() - INCOMPLETE_AFTER_MS;
    // Three independent reads on the backend's pool, side by side: the
    // outline of a long run and its delivery counts each scan the run.
    let (t2, r2, t3, r3) = (
        tenant.clone(),
        run_id.clone(),
        tenant.clone(),
        run_id.clone(),
    );
    let (rec, outline, counts) = tokio::join!(
        read(&ui, move |j| Ok(j.run(&tenant, &run_id, stale)?)),
        read(&ui, move |j| Ok(j.run_outline(&t2, &r2)?)),
        read(&ui, move |j| Ok(j.run_delivery_counts(&t3, &r3)?)),
    );
    let rec = rec?.ok_or_else(|| UiError::NotFound(format!("no run {id:?}")))?;
    let (outline, counts) = (outline?.unwrap_or_default(), counts?);
    let stats = rec.stats.as_ref().map(|b| event_data(&parse(&b.body)));
    let context: Map<String, Value> = rec
        .start
        .as_ref()
        .map(|b| parse(&b.body))
        .and_then(|b| b.get("event_data")?.get("herald")?.as_object().cloned())
        .unwrap_or_default();
    let end_ms = rec
        .stats
        .as_ref()
        .map_or(rec.last_ms, |b| b.created_ms.max(rec.first_ms));
    let (timeline, more_tasks) = timeline(&outline, rec.first_ms, end_ms);
    let (failures, more_failures) = failures(&outline);
    let mut ctx = Vec::new();
    for key in [
        "user",
        "ansible_version",
        "check_mode",
        "limit",
        "tags",
        "awx_job_id",
    ] {
        match context.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::String(v)) => ctx.push((key.to_string(), v.clone())),
            Some(v) => ctx.push((key.to_string(), v.to_string())),
        }
    }
    let mut plugins: Vec<String> = ui
        .host
        .plugins()
        .into_iter()
        .filter(|p| p.tenant == s.tenant)
        .map(|p| p.name)
        .collect();
    plugins.sort();
    let page = RunPage {
        chrome: Chrome::new(&s, "runs"),
        playbook: rec
            .playbook
            .clone()
            .unwrap_or_else(|| "(no playbook)".into()),
        status: status_name(rec.state),
        incomplete: rec.state == RunState::Interrupted,
        live: rec.state == RunState::Running,
        started: view::time(rec.first_ms),
        duration: match &rec.stats {
            Some(b) => view::duration(b.created_ms - rec.first_ms),
            None => format!("{} so far", view::duration(rec.last_ms - rec.first_ms)),
        },
        controller: rec.controller.clone().unwrap_or_default(),
        context: ctx,
        labels: rec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        events: rec.events,
        recap_from_stats: stats.is_some(),
        recap: recap(stats.as_ref(), &outline),
        failures,
        more_failures,
        timeline,
        more_tasks,
        artifacts: stats.as_ref().and_then(artifacts),
        deliveries: counts
            .into_iter()
            .map(|c| DeliveryRow {
                plugin: c.plugin,
                pending: c.pending,
                done: c.done,
                dead: c.dead,
            })
            .collect(),
        plugins,
        notice: q.notice,
        id: rec.id,
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    uuid: String,
    run_id: String,
    kind: String,
    counter: i64,
    at: String,
    host: String,
    task: String,
    json: String,
}

/// `GET /events/{uuid}`: one event, its JSON as stored (the callback
/// redacted it before sending).
pub async fn event(
    State(ui): State<Ui>,
    s: Session,
    Path(uuid): Path<String>,
) -> Result<Response, UiError> {
    let tenant = s.tenant.clone();
    let u = uuid.clone();
    let ev = read(&ui, move |j| Ok(j.event(&tenant, &u)?))
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no event {uuid:?}")))?;
    let body: Value = serde_json::from_str(&ev.body).unwrap_or(Value::Null);
    let data = body.get("event_data");
    let field = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let page = EventPage {
        chrome: Chrome::new(&s, "runs"),
        host: field("host"),
        task: field("task"),
        json: pretty(&body),
        uuid: ev.uuid,
        run_id: ev.run_id,
        kind: ev.kind,
        counter: ev.counter,
        at: view::time(ev.created_ms),
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_dates_or_rfc3339() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_time("1h", now), Some(now - 3_600_000));
        assert_eq!(parse_time("90s", now), Some(now - 90_000));
        assert_eq!(parse_time("2d", now), Some(now - 2 * 86_400_000));
        assert_eq!(parse_time("1970-01-02", now), Some(86_400_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", now), Some(1000));
        for bad in ["", "h", "1y", "-1h", "yesterday"] {
            assert_eq!(parse_time(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip() {
        let k = (17, "run:a".to_string());
        assert_eq!(decode_cursor(&encode_cursor(&k)), Some(k));
        assert_eq!(decode_cursor("zz"), None);
    }

    fn row(
        counter: i64,
        kind: &str,
        ms: i64,
        host: Option<&str>,
        task: Option<&str>,
    ) -> OutlineRow {
        OutlineRow {
            uuid: format!("u{counter}"),
            counter,
            kind: kind.into(),
            created_ms: ms,
            host: host.map(Into::into),
            play: Some("p".into()),
            task: task.map(Into::into),
            task_action: None,
            changed: false,
            ignored: false,
            message: None,
        }
    }

    #[test]
    fn timeline_times_tasks_by_their_results() {
        let outline = vec![
            row(1, "playbook_on_play_start", 0, None, None),
            row(2, "playbook_on_task_start", 100, None, Some("one")),
            row(3, "runner_on_ok", 400, Some("a"), Some("one")),
            row(4, "runner_on_failed", 900, Some("b"), Some("one")),
            row(5, "playbook_on_task_start", 1000, None, Some("two")),
            row(6, "playbook_on_task_start", 1500, None, Some("three")),
        ];
        let (lines, more) = timeline(&outline, 0, 2000);
        assert_eq!(more, 0);
        let names: Vec<_> = lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["p", "one", "two", "three"]);
        assert_eq!(lines[1].duration, "800 ms");
        assert_eq!((lines[1].ok, lines[1].failed), (1, 1));
        // No results: until the next task's start.
        assert_eq!(lines[2].duration, "500 ms");
        assert_eq!((lines[0].ok, lines[0].failed), (1, 1));
        let (recap, _) = (recap(None, &outline), ());
        assert_eq!(recap[0].host, "b", "the failed host first");
        assert_eq!(recap[0].failures, 1);
        let (f, _) = failures(&outline);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].host.as_str(), f[0].task.as_str()), ("b", "one"));
    }
}
