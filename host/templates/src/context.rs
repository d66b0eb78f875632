//! What a template sees: the current event, its run, and at the end of a
//! run (`playbook_on_stats`) the summary a person wants. Built from the
//! journaled event (already censored by the callback: `no_log` results
//! arrive as `{"censored": ...}`, redacted keys as `********`) and from
//! what the journal knows of the run ([`RunFacts`]); nothing else reaches a
//! template, so nothing the journal does not hold can leak into a message.
//!
//! The reference of every field is in docs/configuration.md ("Templates").

use herald_event::{host_stats, parse_time, EventKind, Status};
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Failed tasks kept in a summary (more are counted in `failures_more`).
pub const MAX_FAILURES: usize = 50;
/// Characters kept of a failure message.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// What the journal knows of an event's run, beyond the event itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// The run's labels (merged over its events).
    pub labels: BTreeMap<String, String>,
    /// Creation time of the run's `playbook_on_start`, else of its first event.
    pub start_ms: Option<i64>,
    pub playbook: Option<String>,
    pub controller: Option<String>,
    /// The run's host result events (journaled bodies) in counter order:
    /// read only for an end-of-run event, where the summary needs them.
    pub results: Vec<String>,
}

/// The run id of a journaled event and whether it ends its run
/// (`playbook_on_stats`), read without building a context: what the caller
/// needs to ask the journal for the run's facts first.
pub fn run_key(body: &str) -> Option<(String, bool)> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        event: Cow<'a, str>,
        #[serde(borrow)]
        run_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        runner_ident: Option<Cow<'a, str>>,
    }
    let k: Key<'_> = serde_json::from_str(body).ok()?;
    let run = k.run_id.or(k.runner_ident)?.into_owned();
    Some((run, k.event == "playbook_on_stats"))
}

impl RunFacts {
    /// The facts of a run from its events (journaled bodies, in counter
    /// order), as the journal would give them: labels merged (the first
    /// value of each key), the start of `playbook_on_start` (else of the
    /// first event), and the failed and unreachable results. For previews
    /// of recorded runs (`herald template render`).
    pub fn from_events(bodies: &[String]) -> RunFacts {
        let mut facts = RunFacts::default();
        let mut first_ms = None;
        for body in bodies {
            let Ok(Read { kind, top, data }) = read(body) else {
                continue;
            };
            let created = string(&top, "created").and_then(|c| parse_time(&c));
            first_ms = first_ms.or(created);
            if kind == EventKind::PlaybookOnStart && facts.start_ms.is_none() {
                facts.start_ms = created;
            }
            if let Some(labels) = top.get("labels").and_then(Value::as_object) {
                for (k, v) in labels {
                    if let Some(v) = v.as_str() {
                        facts
                            .labels
                            .entry(k.clone())
                            .or_insert_with(|| v.to_string());
                    }
                }
            }
            if facts.playbook.is_none() {
                facts.playbook = string(&data, "playbook");
            }
            if facts.controller.is_none() {
                facts.controller = string(&top, "controller");
            }
            if matches!(
                kind,
                EventKind::RunnerOnFailed
                    | EventKind::RunnerOnAsyncFailed
                    | EventKind::RunnerOnUnreachable
            ) {
                facts.results.push(body.clone());
            }
        }
        facts.start_ms = facts.start_ms.or(first_ms);
        facts
    }
}

/// The whole context of one render; serialised into the template's
/// variables `event`, `run`, `summary`, `run_url`, `plugin` and `tenant`.
///
/// A call renders several templates on one context (a Slack message: its
/// text, its blocks, `run_url`), so the template value of every field but
/// `run_url` is built at the first render and kept: change those fields
/// before rendering, not between renders.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub event: EventContext,
    pub run: RunContext,
    /// Present on `playbook_on_stats` only.
    pub summary: Option<Summary>,
    /// The instance's `run_url` template's output, when it has one.
    pub run_url: Option<String>,
    /// The plugin instance's name.
    pub plugin: String,
    pub tenant: String,
    /// The template value of the fields above but `run_url`, built once.
    #[serde(skip)]
    value: std::sync::OnceLock<minijinja::Value>,
}

/// The current event.
#[derive(Debug, Clone, Serialize)]
pub struct EventContext {
    pub id: String,
    /// The ansible-runner event name (`runner_on_failed`, `playbook_on_stats`, ...).
    pub kind: String,
    pub sequence: u64,
    pub created_ms: i64,
    pub host: Option<String>,
    pub play: Option<String>,
    pub task: Option<String>,
    pub task_action: Option<String>,
    pub task_path: Option<String>,
    /// `ok`, `changed`, `failed`, `unreachable`, `skipped` for host results.
    pub status: Option<&'static str>,
    pub changed: bool,
    pub ignore_errors: bool,
    pub duration_ms: Option<u64>,
    /// The module's result as journaled (censored and redacted by the callback).
    pub res: Option<Value>,
    /// The result's message: `msg`, else `stderr`, `reason`, `message`, `stdout`.
    pub message: Option<String>,
}

/// The run the event belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct RunContext {
    pub id: String,
    pub playbook: String,
    pub controller: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub start_ms: Option<i64>,
    /// From the start to this event (to the stats event: the whole run).
    pub duration_ms: Option<u64>,
    /// `running` until the stats event; then `failed` when a host failed or
    /// was unreachable, else `successful`.
    pub status: &'static str,
}

/// One host's PLAY RECAP line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecapLine {
    pub host: String,
    pub ok: u64,
    pub changed: u64,
    pub unreachable: u64,
    pub failures: u64,
    pub skipped: u64,
    pub rescued: u64,
    pub ignored: u64,
}

/// A host's failed (not ignored) or unreachable task.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedTask {
    pub host: String,
    pub task: String,
    pub play: String,
    pub action: String,
    pub message: String,
    pub unreachable: bool,
}

/// A host that failed or was unreachable, with its failed tasks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedHost {
    pub host: String,
    pub unreachable: bool,
    pub tasks: Vec<FailedTask>,
}

/// The end-of-run summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The PLAY RECAP, one line per host, in host order.
    pub recap: Vec<RecapLine>,
    /// Hosts with a failure or unreachable in the recap (or a failed task).
    pub failed_hosts: Vec<FailedHost>,
    /// Names of the unreachable hosts.
    pub unreachable_hosts: Vec<String>,
    /// Every failed (not ignored) or unreachable task, in run order (at most 50).
    pub failures: Vec<FailedTask>,
    /// Failed tasks beyond the first 50.
    pub failures_more: usize,
    /// The recap's counters summed over the hosts (`host` is empty).
    pub totals: RecapLine,
    /// Sum of the recap's `changed`.
    pub changed: u64,
    /// Number of hosts in the recap.
    pub hosts: usize,
    /// All of `set_stats` (`{"_run": {...}, "<host>": {...}}`), else the
    /// `artifact_data` an AWX/ansible-runner import carries; `{}` without.
    pub set_stats: Value,
}

/// Why a context cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("journaled event is not a JSON object")]
    NotAnObject,
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
}

fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The message of a result, as a person reads it, at most `max` characters.
pub fn result_message(res: &Value, max: usize) -> Option<String> {
    for key in ["msg", "stderr", "reason", "message", "stdout"] {
        match res.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Some(cut(s.trim(), max)),
            Some(other @ (Value::Array(_) | Value::Object(_))) => {
                return Some(cut(&other.to_string(), max))
            }
            _ => {}
        }
    }
    None
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One journaled event, read.
struct Read {
    kind: EventKind,
    top: Map<String, Value>,
    data: Map<String, Value>,
}

fn read(body: &str) -> Result<Read, ContextError> {
    let Ok(Value::Object(mut top)) = serde_json::from_str::<Value>(body) else {
        return Err(ContextError::NotAnObject);
    };
    let name = string(&top, "event").unwrap_or_default();
    let kind = EventKind::parse(&name).ok_or(ContextError::UnknownKind(name))?;
    let data = match top.remove("event_data") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    Ok(Read { kind, top, data })
}

impl Context {
    /// The context of the journaled event `body` for instance `plugin` of
    /// `tenant`; `run` adds what the journal knows of the run (labels,
    /// start, and for an end-of-run event its results, for the summary).
    pub fn new(
        tenant: &str,
        plugin: &str,
        body: &str,
        run: Option<&RunFacts>,
    ) -> Result<Context, ContextError> {
        let Read { kind, top, data } = read(body)?;
        let res = data.get("res").filter(|v| v.is_object()).cloned();
        let changed = res
            .as_ref()
            .and_then(|r| r.get("changed"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let created_ms = string(&top, "created")
            .and_then(|c| parse_time(&c))
            .unwrap_or(0);
        let duration_ms = data
            .get("duration")
            .and_then(Value::as_f64)
            .map(|s| (s * 1000.0).round().max(0.0) as u64)
            .or_else(|| {
                let start = parse_time(data.get("start")?.as_str()?)?;
                let end = parse_time(data.get("end")?.as_str()?)?;
                u64::try_from(end - start).ok()
            });
        let event = EventContext {
            id: string(&top, "uuid").unwrap_or_default(),
            kind: kind.as_str().to_string(),
            sequence: top.get("counter").and_then(Value::as_u64).unwrap_or(0),
            created_ms,
            host: string(&data, "host"),
            play: string(&data, "play"),
            task: string(&data, "task"),
            task_action: string(&data, "task_action"),
            task_path: string(&data, "task_path"),
            status: Status::of(kind, changed).map(Status::as_str),
            changed,
            ignore_errors: data
                .get("ignore_errors")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            duration_ms,
            message: res
                .as_ref()
                .and_then(|r| result_message(r, MAX_MESSAGE_CHARS)),
            res,
        };
        let mut labels: BTreeMap<String, String> = top
            .get("labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let summary = (kind == EventKind::PlaybookOnStats)
            .then(|| summary(&data, run.map(|r| r.results.as_slice()).unwrap_or(&[])));
        let start_ms = run.and_then(|r| r.start_ms);
        if let Some(r) = run {
            for (k, v) in &r.labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let status = match &summary {
            None => "running",
            Some(s) if !s.failed_hosts.is_empty() => "failed",
            Some(_) => "successful",
        };
        let run_context = RunContext {
            id: string(&top, "run_id")
                .or_else(|| string(&top, "runner_ident"))
                .unwrap_or_default(),
            playbook: string(&data, "playbook")
                .or_else(|| run.and_then(|r| r.playbook.clone()))
                .unwrap_or_default(),
            controller: string(&top, "controller")
                .or_else(|| run.and_then(|r| r.controller.clone())),
            labels,
            start_ms,
            duration_ms: start_ms.and_then(|s| u64::try_from(created_ms - s).ok()),
            status,
        };
        Ok(Context {
            event,
            run: run_context,
            summary,
            run_url: None,
            plugin: plugin.to_string(),
            tenant: tenant.to_string(),
            value: std::sync::OnceLock::new(),
        })
    }

    /// What a template sees: the fields, converted to template values once
    /// per context, and the current `run_url`.
    pub(crate) fn value(&self) -> minijinja::Value {
        let base = self.value.get_or_init(|| {
            minijinja::context! {
                event => minijinja::Value::from_serialize(&self.event),
                run => minijinja::Value::from_serialize(&self.run),
                summary => minijinja::Value::from_serialize(&self.summary),
                plugin => self.plugin.as_str(),
                tenant => self.tenant.as_str(),
            }
        });
        minijinja::context! { run_url => self.run_url.as_deref(), ..base.clone() }
    }
}

/// The fields of a result event the summary reads.
#[derive(serde::Deserialize)]
struct ResultRead<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    event_data: ResultData<'a>,
}

#[derive(serde::Deserialize, Default)]
struct ResultData<'a> {
    #[serde(borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow)]
    task: Option<Cow<'a, str>>,
    #[serde(borrow)]
    play: Option<Cow<'a, str>>,
    #[serde(borrow)]
    task_action: Option<Cow<'a, str>>,
    ignore_errors: Option<bool>,
    res: Option<ResultMessage>,
}

/// The keys of a result that may hold its message ([`result_message`]'s).
#[derive(serde::Deserialize)]
struct ResultMessage {
    msg: Option<Value>,
    stderr: Option<Value>,
    reason: Option<Value>,
    message: Option<Value>,
    stdout: Option<Value>,
}

impl ResultMessage {
    fn message(self, max: usize) -> Option<String> {
        let mut res = Map::new();
        for (k, v) in [
            ("msg", self.msg),
            ("stderr", self.stderr),
            ("reason", self.reason),
            ("message", self.message),
            ("stdout", self.stdout),
        ] {
            if let Some(v) = v {
                res.insert(k.to_string(), v);
            }
        }
        result_message(&Value::Object(res), max)
    }
}

/// The end-of-run summary from the stats event's data and the run's results.
fn summary(data: &Map<String, Value>, results: &[String]) -> Summary {
    let recap: Vec<RecapLine> = host_stats(data)
        .into_iter()
        .map(|(host, c)| RecapLine {
            host,
            ok: c.ok,
            changed: c.changed,
            unreachable: c.unreachable,
            failures: c.failures,
            skipped: c.skipped,
            rescued: c.rescued,
            ignored: c.ignored,
        })
        .collect();
    let mut failures = Vec::new();
    let mut failures_more = 0;
    for body in results {
        // A typed read of the few fields a failure needs: much cheaper than a
        // whole `Value` for each of the run's failed results.
        let Ok(r) = serde_json::from_str::<ResultRead<'_>>(body) else {
            continue;
        };
        let Some(kind) = EventKind::parse(&r.event) else {
            continue;
        };
        let data = r.event_data;
        let unreachable = kind == EventKind::RunnerOnUnreachable;
        let failed = matches!(
            kind,
            EventKind::RunnerOnFailed | EventKind::RunnerOnAsyncFailed
        ) && !data.ignore_errors.unwrap_or(false);
        if !(failed || unreachable) {
            continue;
        }
        if failures.len() == MAX_FAILURES {
            failures_more += 1;
            continue;
        }
        let own = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned).unwrap_or_default();
        failures.push(FailedTask {
            host: own(data.host),
            task: own(data.task),
            play: own(data.play),
            action: own(data.task_action),
            message: data
                .res
                .and_then(|r| r.message(MAX_MESSAGE_CHARS))
                .unwrap_or_default(),
            unreachable,
        });
    }
    // A host failed when its recap says so, or when a failed task of it was
    // seen (a recap cut short by an interrupted run).
    let mut failed_hosts: Vec<FailedHost> = recap
        .iter()
        .filter(|l| l.failures > 0 || l.unreachable > 0)
        .map(|l| FailedHost {
            host: l.host.clone(),
            unreachable: l.unreachable > 0,
            tasks: Vec::new(),
        })
        .collect();
    for f in &failures {
        match failed_hosts.iter_mut().find(|h| h.host == f.host) {
            Some(h) => h.tasks.push(f.clone()),
            None => failed_hosts.push(FailedHost {
                host: f.host.clone(),
                unreachable: f.unreachable,
                tasks: vec![f.clone()],
            }),
        }
    }
    let set_stats = data
        .get("custom_stats")
        .filter(|v| v.is_object())
        .or_else(|| data.get("artifact_data").filter(|v| v.is_object()))
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let sum = |f: fn(&RecapLine) -> u64| recap.iter().map(f).sum::<u64>();
    let totals = RecapLine {
        host: String::new(),
        ok: sum(|l| l.ok),
        changed: sum(|l| l.changed),
        unreachable: sum(|l| l.unreachable),
        failures: sum(|l| l.failures),
        skipped: sum(|l| l.skipped),
        rescued: sum(|l| l.rescued),
        ignored: sum(|l| l.ignored),
    };
    Summary {
        totals,
        changed: recap.iter().map(|l| l.changed).sum(),
        hosts: recap.len(),
        unreachable_hosts: recap
            .iter()
            .filter(|l| l.unreachable > 0)
            .map(|l| l.host.clone())
            .collect(),
        recap,
        failed_hosts,
        failures,
        failures_more,
        set_stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = r#"{"uuid":"s","event":"playbook_on_stats","counter":9,"run_id":"r1","created":"2026-01-01T00:01:05Z","labels":{"env":"prod"},"event_data":{"playbook":"site.yml","ok":{"web1":2,"db1":3},"changed":{"db1":1},"failures":{"web1":1},"dark":{},"custom_stats":{"_run":{"version":"1.2"}}}}"#;
    const FAILED: &str = r#"{"uuid":"f","event":"runner_on_failed","counter":5,"run_id":"r1","created":"2026-01-01T00:01:00Z","event_data":{"host":"web1","play":"deploy","task":"restart app","task_action":"service","res":{"msg":"unit app.service not found","changed":false}}}"#;
    const IGNORED: &str = r#"{"uuid":"g","event":"runner_on_failed","counter":6,"run_id":"r1","created":"2026-01-01T00:01:01Z","event_data":{"host":"db1","task":"probe","ignore_errors":true,"res":{"msg":"ignored"}}}"#;

    #[test]
    fn the_summary_names_failed_hosts_and_tasks() {
        let facts = RunFacts {
            start_ms: parse_time("2026-01-01T00:00:00Z"),
            labels: BTreeMap::from([("team".into(), "web".into())]),
            results: vec![FAILED.into(), IGNORED.into()],
            ..Default::default()
        };
        let c = Context::new("acme", "slack", STATS, Some(&facts)).unwrap();
        let s = c.summary.as_ref().unwrap();
        assert_eq!(s.hosts, 2);
        assert_eq!(s.changed, 1);
        assert_eq!((s.totals.ok, s.totals.failures), (5, 1));
        assert_eq!(s.failed_hosts.len(), 1);
        assert_eq!(s.failed_hosts[0].host, "web1");
        assert_eq!(s.failed_hosts[0].tasks[0].task, "restart app");
        assert_eq!(
            s.failed_hosts[0].tasks[0].message,
            "unit app.service not found"
        );
        assert_eq!(s.failures.len(), 1, "an ignored failure is not a failure");
        assert_eq!(s.set_stats["_run"]["version"], "1.2");
        assert_eq!(c.run.status, "failed");
        assert_eq!(c.run.duration_ms, Some(65_000));
        assert_eq!(c.run.playbook, "site.yml");
        assert_eq!(c.run.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(c.run.labels.get("team").map(String::as_str), Some("web"));
    }

    #[test]
    fn a_host_event_has_its_status_and_message() {
        let c = Context::new("acme", "slack", FAILED, None).unwrap();
        assert_eq!(c.event.status, Some("failed"));
        assert_eq!(c.event.host.as_deref(), Some("web1"));
        assert_eq!(
            c.event.message.as_deref(),
            Some("unit app.service not found")
        );
        assert!(c.summary.is_none());
        assert_eq!(c.run.status, "running");
    }

    #[test]
    fn facts_from_a_recorded_run_match_the_journal_s() {
        let start = r#"{"uuid":"a","event":"playbook_on_start","counter":1,"run_id":"r1","created":"2026-01-01T00:00:00Z","controller":"ctl","labels":{"env":"prod"},"event_data":{"playbook":"site.yml"}}"#;
        let bodies = vec![
            start.to_string(),
            FAILED.to_string(),
            IGNORED.to_string(),
            STATS.to_string(),
        ];
        let facts = RunFacts::from_events(&bodies);
        assert_eq!(facts.start_ms, parse_time("2026-01-01T00:00:00Z"));
        assert_eq!(facts.controller.as_deref(), Some("ctl"));
        assert_eq!(
            facts.results.len(),
            2,
            "failed results, ignored ones included (the summary drops them)"
        );
        let c = Context::new("acme", "p", STATS, Some(&facts)).unwrap();
        assert_eq!(c.summary.unwrap().failures.len(), 1);
        assert_eq!(c.run.controller.as_deref(), Some("ctl"));
    }

    #[test]
    fn a_bad_event_is_an_error() {
        assert_eq!(
            Context::new("a", "p", "[]", None).unwrap_err(),
            ContextError::NotAnObject
        );
        assert!(matches!(
            Context::new("a", "p", r#"{"event":"nope"}"#, None),
            Err(ContextError::UnknownKind(_))
        ));
    }
}
