//! Herald `pagerduty` sink: PagerDuty Events API v2 with an incident lifecycle.
//!
//! - **trigger** (`POST /v2/enqueue`, `event_action: trigger`) when a host fails a task (not
//!   ignored) or is unreachable: at the failure itself (`trigger_at = "failure"`, default) or once
//!   at the end of the run (`"end"`). The `dedup_key` is stable per tenant and playbook
//!   (`granularity = "run"`) or per tenant, playbook and host (`"host"`), so repeated failures
//!   update one incident instead of opening new ones;
//! - **resolve** when a later run of the same playbook (and host) ends without failure: the
//!   instance remembers open incidents in its durable `state`;
//! - optional **change event** (`POST /v2/change/enqueue`) at the end of every run;
//! - summary at most 1024 characters, severity from the config, `custom_details` with the failed
//!   tasks and their messages;
//! - message templates (`[plugins.<name>.templates]`, rendered by the host): `failure_summary`,
//!   `run_summary` (the failed run's incident with `granularity = "run"`), `host_summaries`
//!   (each host's incident at the end of a run with `granularity = "host"`: a JSON object of
//!   host → summary) and `change_summary`, with defaults that name the failed hosts, tasks and
//!   messages;
//! - 202 ok; 429 and 5xx retryable (with `Retry-After`); 400 and other 4xx permanent.

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::summary::{Failure, Observed, RunStatus, RunSummary, RunTracker};
use herald_sdk::text::truncate;
use herald_sdk::{
    failure_reason, log, playbook_name, state, Event, EventKind, EventRef, HostFailure, Outcome,
    Plugin,
};
// The unit tests (`use super::*`) build events with it.
#[cfg(test)]
use herald_sdk::Status;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
pub const DEDUP_MAX: usize = 255;
/// Failures listed in `custom_details`.
pub const DETAILS_FAILURES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Run,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerAt {
    Failure,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The integration's routing (integration) key.
    pub routing_key: String,
    #[serde(default = "default_events_url")]
    pub events_url: String,
    #[serde(default = "default_change_url")]
    pub change_events_url: String,
    /// `run` (one incident per tenant + playbook) or `host` (per tenant + playbook + host).
    #[serde(default = "default_granularity")]
    pub granularity: Granularity,
    /// `failure` (trigger as each failure arrives) or `end` (once, at the end of the run).
    #[serde(default = "default_trigger_at")]
    pub trigger_at: TriggerAt,
    #[serde(default = "default_sev_failed")]
    pub severity_failed: Severity,
    #[serde(default = "default_sev_unreachable")]
    pub severity_unreachable: Severity,
    /// Also send a change event at the end of every run.
    #[serde(default)]
    pub change_events: bool,
    /// `payload.source`; default: the run's controller, else `herald`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    /// A link added to each event; `{run_id}`, `{tenant}` and `{playbook}` are replaced.
    #[serde(default)]
    pub run_url: Option<String>,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_events_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}
fn default_change_url() -> String {
    "https://events.pagerduty.com/v2/change/enqueue".into()
}
fn default_granularity() -> Granularity {
    Granularity::Run
}
fn default_trigger_at() -> TriggerAt {
    TriggerAt::Failure
}
fn default_sev_failed() -> Severity {
    Severity::Error
}
fn default_sev_unreachable() -> Severity {
    Severity::Critical
}

/// A remembered open incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Open {
    pub run_id: String,
    pub opened_ms: i64,
}

/// The configured plugin.
pub struct PagerDuty {
    c: Config,
    events_url: Url,
    change_url: Url,
    tracker: RunTracker,
    /// The current event's summaries from the templates.
    custom: Custom,
}

/// Summaries rendered from the templates for the current event.
#[derive(Debug, Default)]
struct Custom {
    failure: Option<String>,
    run: Option<String>,
    change: Option<String>,
    /// Per host, the summary of its incident at the end of a run (`granularity = "host"`).
    hosts: Option<std::collections::BTreeMap<String, String>>,
}

/// The default `failure_summary` (an incident at a failed or unreachable host).
pub const FAILURE_SUMMARY: &str =
    "Ansible {{ run.playbook or 'ad-hoc run' }}: task '{{ event.task }}' \
{{ event.status }} on {{ event.host }}: {{ event.message }}";

/// The default `run_summary` (an incident for a failed run): each failed host with its failed
/// tasks and their messages.
pub const RUN_SUMMARY: &str = "Ansible {{ run.playbook or 'ad-hoc run' }} failed on \
{{ summary.failed_hosts | length }} host(s): \
{% for h in summary.failed_hosts %}{{ h.host }}{% if h.unreachable %} (unreachable){% endif %}\
{% for t in h.tasks %} '{{ t.task }}': {{ t.message | truncate(150) }}{% endfor %}{{ '; ' if not loop.last }}\
{% endfor %}";

/// The default `host_summaries` (`granularity = "host"`, at the end of a run): a JSON object
/// whose keys are the failed hosts and whose values are the summaries of their incidents. One
/// render gives every host's summary (a template is rendered against an event, not a host).
pub const HOST_SUMMARIES: &str = r#"{{ '{' }}{% for h in summary.failed_hosts %}{{ h.host | tojson }}: {{ ("Ansible " ~ (run.playbook or "ad-hoc run") ~ ": " ~ (("task '" ~ h.tasks[0].task ~ "' " ~ ("unreachable" if h.unreachable else "failed") ~ " on " ~ h.host ~ ": " ~ h.tasks[0].message) if h.tasks else h.host ~ " failed")) | tojson }}{{ ", " if not loop.last }}{% endfor %}{{ '}' }}"#;

/// The default `change_summary` (the change event at the end of a run).
pub const CHANGE_SUMMARY: &str = "Ansible {{ run.playbook or 'ad-hoc run' }} {{ run.status }}: \
{{ summary.hosts }} host(s), {{ summary.recap | selectattr('changed') | list | length }} changed\
{% for h in summary.recap | selectattr('changed') %}{{ ' (' if loop.first else ', ' }}{{ h.host }}{{ ')' if loop.last }}{% endfor %}";

/// FNV-1a 64-bit: a stable hash for long dedup keys.
fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `herald:<tenant>:<playbook>[:<host>]`, shortened with a hash when over 255 characters.
pub fn dedup_key(tenant: &str, playbook: &str, host: Option<&str>) -> String {
    let mut k = format!("herald:{tenant}:{playbook}");
    if let Some(h) = host {
        k.push(':');
        k.push_str(h);
    }
    if k.chars().count() > DEDUP_MAX {
        let hash = format!(":{:016x}", fnv64(&k));
        let head: String = k.chars().take(DEDUP_MAX - hash.len()).collect();
        k = head + &hash;
    }
    k
}

fn failure_json(f: &Failure) -> Value {
    json!({
        "host": f.host, "task": f.task, "action": f.action, "play": f.play,
        "message": f.message, "unreachable": f.unreachable,
    })
}

impl Plugin for PagerDuty {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] = &[
        ("failure_summary", FAILURE_SUMMARY),
        ("run_summary", RUN_SUMMARY),
        ("change_summary", CHANGE_SUMMARY),
        ("host_summaries", HOST_SUMMARIES),
    ];

    fn new(c: Config) -> Result<Self, String> {
        if c.routing_key.trim().is_empty() || c.routing_key.chars().any(char::is_whitespace) {
            return Err("config key `routing_key`: must be a non-empty key without spaces".into());
        }
        let events_url = config::url("events_url", &c.events_url)?;
        let change_url = config::url("change_events_url", &c.change_events_url)?;
        herald_sdk::grants::require_http("events_url", &events_url.as_string())?;
        // Change events are sent only when enabled; their URL need not be allowed otherwise.
        if c.change_events {
            herald_sdk::grants::require_http("change_events_url", &change_url.as_string())?;
        }
        config::check_timeout_ms(c.timeout_ms)?;
        for (k, v) in [
            ("source", &c.source),
            ("component", &c.component),
            ("group", &c.group),
            ("class", &c.class),
        ] {
            config::not_blank(k, v.as_deref())?;
        }
        Ok(PagerDuty {
            c,
            events_url,
            change_url,
            tracker: RunTracker::host("pagerduty:"),
            custom: Custom::default(),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        // The summaries from the templates (rendered by the host), for the messages this
        // event may send; `None` keeps the built-in text (native tests).
        self.custom = Custom::default();
        let rendered = if event.kind() == EventKind::PlaybookOnStats {
            event.render("run_summary").and_then(|run| {
                Ok(Custom {
                    run,
                    change: if self.c.change_events {
                        event.render("change_summary")?
                    } else {
                        None
                    },
                    failure: None,
                    hosts: if self.c.granularity == Granularity::Host {
                        event
                            .render("host_summaries")?
                            .map(|t| parse_host_summaries(&t))
                            .transpose()?
                    } else {
                        None
                    },
                })
            })
        } else if HostFailure::of(event).is_some() {
            event.render("failure_summary").map(|failure| Custom {
                failure,
                ..Custom::default()
            })
        } else {
            Ok(Custom::default())
        };
        match rendered {
            Ok(c) => self.custom = c,
            Err(e) => return herald_sdk::permanent(e),
        }
        let outcome = match self.tracker.observe(event) {
            Observed::AlreadyFinished => Outcome::Ok,
            Observed::Progress(summary) => self.on_progress(event, &summary),
            Observed::Finished(summary) => self
                .tracker
                .finish(&summary.run_id, self.on_end(&summary, event.created_ms)),
        };
        if let Some(p) = failure_reason(&outcome) {
            log::warn(&format!("event {} (run {}): {p}", event.id, event.run.id));
        }
        outcome
    }
}

impl PagerDuty {
    fn dedup(&self, s: &RunSummary, host: Option<&str>) -> String {
        match self.c.granularity {
            Granularity::Run => dedup_key(&s.tenant, &s.playbook, None),
            Granularity::Host => dedup_key(&s.tenant, &s.playbook, host),
        }
    }

    fn severity(&self, unreachable: bool) -> Severity {
        if unreachable {
            self.c.severity_unreachable
        } else {
            self.c.severity_failed
        }
    }

    fn source(&self, s: &RunSummary) -> String {
        self.c
            .source
            .clone()
            .or_else(|| s.controller.clone())
            .unwrap_or_else(|| "herald".into())
    }

    fn links(&self, s: &RunSummary) -> Vec<Value> {
        match &self.c.run_url {
            Some(t) => vec![json!({ "href": s.run_url(t), "text": "Herald run" })],
            None => vec![],
        }
    }

    /// The `trigger` body for failures `fs` (the newest last) of run `s`.
    pub fn trigger_body(
        &self,
        s: &RunSummary,
        host: Option<&str>,
        fs: &[&Failure],
        at_ms: i64,
        summary: String,
    ) -> Value {
        let unreachable = fs.iter().any(|f| f.unreachable);
        let severity = fs
            .iter()
            .map(|f| self.severity(f.unreachable))
            .max()
            .unwrap_or(self.c.severity_failed);
        let mut details = json!({
            "tenant": s.tenant,
            "playbook": s.playbook,
            "run_id": s.run_id,
            "controller": s.controller,
            "failures": fs.iter().rev().take(DETAILS_FAILURES).rev().map(|f| failure_json(f)).collect::<Vec<_>>(),
        });
        if fs.len() > DETAILS_FAILURES {
            details["failures_not_listed"] = json!(fs.len() - DETAILS_FAILURES);
        }
        if let Some(h) = host {
            details["host"] = json!(h);
        }
        if !s.hosts.is_empty() {
            // The SDK's per-host counters serialize with the same keys (`host`, `ok`, ...).
            details["hosts"] = json!(s.hosts);
        }
        let mut payload = json!({
            "summary": truncate(&summary, SUMMARY_MAX),
            "source": self.source(s),
            "severity": severity.as_str(),
            "timestamp": herald_sdk::time::rfc3339_ms(at_ms),
            "custom_details": details,
        });
        let class = self.c.class.clone().unwrap_or_else(|| {
            if unreachable {
                "unreachable".into()
            } else {
                "task failure".into()
            }
        });
        payload["class"] = json!(class);
        if let Some(c) = &self.c.component {
            payload["component"] = json!(c);
        }
        payload["group"] = json!(self.c.group.clone().unwrap_or_else(|| s.playbook.clone()));
        json!({
            "routing_key": self.c.routing_key,
            "event_action": "trigger",
            "dedup_key": self.dedup(s, host),
            "client": "Herald",
            "payload": payload,
            "links": self.links(s),
        })
    }

    /// The `resolve` body for an incident.
    pub fn resolve_body(&self, dedup_key: &str) -> Value {
        json!({ "routing_key": self.c.routing_key, "event_action": "resolve", "dedup_key": dedup_key })
    }

    /// The change event body at the end of run `s`.
    pub fn change_body(&self, s: &RunSummary) -> Value {
        let status = s.status();
        let changed: Vec<&str> = s
            .hosts
            .iter()
            .filter(|h| h.changed > 0)
            .map(|h| h.host.as_str())
            .collect();
        let summary = format!(
            "Ansible {} {}: {} host(s), {} changed{}",
            playbook_name(&s.playbook),
            status.as_str(),
            s.hosts.len(),
            changed.len(),
            if changed.is_empty() {
                String::new()
            } else {
                format!(" ({})", changed.join(", "))
            }
        );
        json!({
            "routing_key": self.c.routing_key,
            "payload": {
                "summary": truncate(&summary, SUMMARY_MAX),
                "source": self.source(s),
                "timestamp": herald_sdk::time::rfc3339_ms(s.ended_ms.unwrap_or_default()),
                "custom_details": {
                    "tenant": s.tenant, "playbook": s.playbook, "run_id": s.run_id, "status": status.as_str(),
                    "duration_ms": s.duration_ms(), "changed_hosts": changed,
                    "failed_hosts": s.failed_hosts(), "results": s.results,
                },
            },
            "links": self.links(s),
        })
    }

    fn post(&self, url: &Url, body: &Value) -> Outcome {
        Request::new(Method::Post, url.clone())
            .timeout_ms(self.c.timeout_ms)
            .json(body)
            .deliver()
            .0
    }

    fn open_key(dedup: &str) -> String {
        format!("pagerduty:open:{dedup}")
    }

    fn trigger(
        &self,
        s: &RunSummary,
        host: Option<&str>,
        fs: &[&Failure],
        at_ms: i64,
        summary: String,
    ) -> Outcome {
        let body = self.trigger_body(s, host, fs, at_ms, summary);
        let o = self.post(&self.events_url, &body);
        if matches!(o, Outcome::Ok) {
            let key = body["dedup_key"].as_str().unwrap_or_default().to_string();
            state::set_json(
                &Self::open_key(&key),
                &Open {
                    run_id: s.run_id.clone(),
                    opened_ms: at_ms,
                },
            );
        }
        o
    }

    fn on_progress(&self, e: &Event, s: &RunSummary) -> Outcome {
        if self.c.trigger_at != TriggerAt::Failure {
            return Outcome::Ok;
        }
        let Some(what) = HostFailure::of(e) else {
            return Outcome::Ok;
        };
        let this = Failure::from_event(e, what == HostFailure::Unreachable, SUMMARY_MAX);
        let host = this.host.as_str();
        let fs: Vec<&Failure> = match self.c.granularity {
            Granularity::Run => s.failures.iter().collect(),
            Granularity::Host => s.failures.iter().filter(|f| f.host == host).collect(),
        };
        let summary = self.custom.failure.clone().unwrap_or_else(|| {
            format!(
                "Ansible {}: task '{}' {} on {host}: {}",
                playbook_name(&s.playbook),
                this.task,
                what.as_str(),
                this.message
            )
        });
        // The summary holds this failure unless the list was full.
        let mut fs = fs;
        if !fs.iter().any(|f| f.event_id == e.id) {
            fs.push(&this);
        }
        let host_key = if self.c.granularity == Granularity::Host {
            Some(host)
        } else {
            None
        };
        self.trigger(s, host_key, &fs, e.created_ms, summary)
    }

    fn on_end(&self, s: &RunSummary, at_ms: i64) -> Outcome {
        let failed_hosts = s.failed_hosts();
        match self.c.granularity {
            Granularity::Run => {
                let key = self.dedup(s, None);
                if s.status() == RunStatus::Failed {
                    let open: Option<Open> = state::get_json(&Self::open_key(&key));
                    if self.c.trigger_at == TriggerAt::End
                        || open.is_none_or(|o| o.run_id != s.run_id)
                    {
                        let fs: Vec<&Failure> = s.failures.iter().collect();
                        let summary = self
                            .custom
                            .run
                            .clone()
                            .unwrap_or_else(|| end_summary(s, &failed_hosts));
                        let o = self.trigger(s, None, &fs, at_ms, summary);
                        if !matches!(o, Outcome::Ok) {
                            return o;
                        }
                    }
                } else if let Some(o) = self.resolve_if_open(&key) {
                    return o;
                }
            }
            Granularity::Host => {
                let mut hosts: Vec<String> = s.hosts.iter().map(|h| h.host.clone()).collect();
                for f in &s.failures {
                    if !hosts.contains(&f.host) {
                        hosts.push(f.host.clone());
                    }
                }
                for host in hosts {
                    let key = self.dedup(s, Some(&host));
                    if failed_hosts.contains(&host) {
                        let open: Option<Open> = state::get_json(&Self::open_key(&key));
                        if self.c.trigger_at == TriggerAt::End
                            || open.is_none_or(|o| o.run_id != s.run_id)
                        {
                            let fs: Vec<&Failure> =
                                s.failures.iter().filter(|f| f.host == host).collect();
                            let summary = self
                                .custom
                                .hosts
                                .as_ref()
                                .and_then(|m| m.get(&host).cloned())
                                .unwrap_or_else(|| host_end_summary(s, &host, &fs));
                            let o = self.trigger(s, Some(&host), &fs, at_ms, summary);
                            if !matches!(o, Outcome::Ok) {
                                return o;
                            }
                        }
                    } else if let Some(o) = self.resolve_if_open(&key) {
                        return o;
                    }
                }
            }
        }
        if self.c.change_events {
            let mut body = self.change_body(s);
            if let Some(c) = &self.custom.change {
                body["payload"]["summary"] = json!(truncate(c, SUMMARY_MAX));
            }
            let o = self.post(&self.change_url, &body);
            if !matches!(o, Outcome::Ok) {
                return o;
            }
        }
        Outcome::Ok
    }

    /// Resolves an open incident; `Some(outcome)` only when the resolve failed.
    fn resolve_if_open(&self, key: &str) -> Option<Outcome> {
        let open: Option<Open> = state::get_json(&Self::open_key(key));
        open.as_ref()?;
        let o = self.post(&self.events_url, &self.resolve_body(key));
        if matches!(o, Outcome::Ok) {
            state::delete(&Self::open_key(key));
            log::info(&format!("resolved PagerDuty incident {key}"));
            None
        } else {
            Some(o)
        }
    }
}

/// Summary of a failed run.
pub fn end_summary(s: &RunSummary, failed_hosts: &[String]) -> String {
    let first = s
        .failures
        .first()
        .map(|f| format!("; first: task '{}' on {}: {}", f.task, f.host, f.message))
        .unwrap_or_default();
    format!(
        "Ansible {} failed on {} host(s) ({}){first}",
        playbook_name(&s.playbook),
        failed_hosts.len(),
        failed_hosts.join(", ")
    )
}

/// The `host_summaries` template's output: a JSON object of host → summary.
fn parse_host_summaries(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "template `host_summaries` did not render a JSON object of host: summary strings: {e}"
        )
    })
}

/// The built-in summary of a host's incident at the end of a run (native tests, and a host the
/// `host_summaries` template left out).
fn host_end_summary(s: &RunSummary, host: &str, fs: &[&Failure]) -> String {
    match fs.first() {
        Some(f) => format!(
            "Ansible {}: task '{}' {} on {host}: {}",
            playbook_name(&s.playbook),
            f.task,
            if f.unreachable {
                "unreachable"
            } else {
                "failed"
            },
            f.message
        ),
        None => format!("Ansible {}: {host} failed", playbook_name(&s.playbook)),
    }
}

herald_sdk::export_plugin!(PagerDuty);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::summary::MemoryStore;
    use herald_sdk::testing::{host_event, stats_event};
    use herald_sdk::EventKind;

    fn pd(extra: &str) -> PagerDuty {
        herald_sdk::build::<PagerDuty>(&format!(
            r#"{{"routing_key":"R123456789abcdef0123456789abcdef"{extra}}}"#
        ))
        .unwrap()
    }

    fn failed_summary() -> RunSummary {
        let t = RunTracker::with_store("", MemoryStore::default());
        let mut f = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install",
            Some(r#"{"msg":"No package matching 'nginxx'"}"#),
        );
        f.sequence = 2;
        t.observe(&f);
        let mut u = host_event(
            EventKind::RunnerOnUnreachable,
            Status::Unreachable,
            "r1",
            "site.yml",
            "db1",
            "install",
            Some(r#"{"msg":"ssh: connect to host db1 port 22: timed out"}"#),
        );
        u.sequence = 3;
        t.observe(&u);
        let mut st = stats_event(
            "r1",
            "site.yml",
            &[
                ("web1", 2, 1, 0, 0, 0),
                ("web2", 1, 0, 1, 0, 0),
                ("db1", 0, 0, 0, 1, 0),
            ],
            None,
        );
        st.sequence = 4;
        match t.observe(&st) {
            Observed::Finished(s) => s,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn dedup_keys_are_stable_and_bounded() {
        assert_eq!(dedup_key("acme", "site.yml", None), "herald:acme:site.yml");
        assert_eq!(
            dedup_key("acme", "site.yml", Some("web1")),
            "herald:acme:site.yml:web1"
        );
        let long = "p".repeat(400);
        let k = dedup_key("acme", &long, None);
        assert_eq!(k.chars().count(), DEDUP_MAX);
        assert_eq!(k, dedup_key("acme", &long, None));
        assert_ne!(k, dedup_key("acme", &format!("{long}x"), None));
    }

    #[test]
    fn trigger_shape() {
        let p = pd(r#","component":"nginx","run_url":"https://herald.example/runs/{run_id}""#);
        let s = failed_summary();
        let fs: Vec<&Failure> = s.failures.iter().collect();
        let b = p.trigger_body(
            &s,
            None,
            &fs,
            1_700_000_000_000,
            end_summary(&s, &s.failed_hosts()),
        );
        assert_eq!(b["routing_key"], "R123456789abcdef0123456789abcdef");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "herald:acme:site.yml");
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(b["payload"]["source"], "ctl1");
        assert_eq!(b["payload"]["component"], "nginx");
        assert_eq!(b["payload"]["group"], "site.yml");
        assert_eq!(b["payload"]["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(b["payload"]["summary"], "Ansible site.yml failed on 2 host(s) (db1, web2); first: task 'install' on web2: No package matching 'nginxx'");
        let details = &b["payload"]["custom_details"];
        assert_eq!(details["failures"].as_array().unwrap().len(), 2);
        assert_eq!(details["failures"][1]["unreachable"], true);
        assert_eq!(details["hosts"].as_array().unwrap().len(), 3);
        assert_eq!(b["links"][0]["href"], "https://herald.example/runs/r1");

        let long = "x".repeat(5000);
        let b = p.trigger_body(&s, Some("web2"), &fs[..1], 0, long);
        assert_eq!(
            b["payload"]["summary"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
        assert_eq!(b["payload"]["severity"], "error");
        assert_eq!(b["payload"]["custom_details"]["host"], "web2");
    }

    #[test]
    fn host_granularity_keys() {
        let p = pd(r#","granularity":"host","severity_failed":"warning""#);
        let s = failed_summary();
        let fs: Vec<&Failure> = s.failures.iter().filter(|f| f.host == "web2").collect();
        let b = p.trigger_body(&s, Some("web2"), &fs, 0, "x".into());
        assert_eq!(b["dedup_key"], "herald:acme:site.yml:web2");
        assert_eq!(b["payload"]["severity"], "warning");
    }

    #[test]
    fn resolve_and_change_shapes() {
        let p = pd("");
        assert_eq!(
            p.resolve_body("herald:acme:site.yml"),
            json!({"routing_key":"R123456789abcdef0123456789abcdef","event_action":"resolve","dedup_key":"herald:acme:site.yml"})
        );
        let s = failed_summary();
        let c = p.change_body(&s);
        assert_eq!(
            c["payload"]["summary"],
            "Ansible site.yml failed: 3 host(s), 1 changed (web1)"
        );
        assert_eq!(
            c["payload"]["custom_details"]["failed_hosts"],
            json!(["db1", "web2"])
        );
        assert!(c.get("event_action").is_none());
    }

    #[test]
    fn config_errors() {
        let cases = [
            (r#"{}"#, "missing field `routing_key`"),
            (r#"{"routing_key":""}"#, "`routing_key`"),
            (
                r#"{"routing_key":"k","granularity":"play"}"#,
                "`granularity`",
            ),
            (
                r#"{"routing_key":"k","severity_failed":"fatal"}"#,
                "`severity_failed`",
            ),
            (r#"{"routing_key":"k","trigger_at":"now"}"#, "`trigger_at`"),
            (r#"{"routing_key":"k","events_url":"x"}"#, "`events_url`"),
            (r#"{"routing_key":"k","source":" "}"#, "`source`"),
            (
                r#"{"routing_key":"k","dedup":"x"}"#,
                "unknown field `dedup`",
            ),
        ];
        for (json, want) in cases {
            let err = herald_sdk::build::<PagerDuty>(json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn host_summaries_parse_as_a_json_object() {
        let m =
            parse_host_summaries(r#"{"web2": "Ansible site.yml: task 'x' failed on web2: boom"}"#)
                .unwrap();
        assert_eq!(m["web2"], "Ansible site.yml: task 'x' failed on web2: boom");
        let err = parse_host_summaries("web2: boom").unwrap_err();
        assert!(
            err.starts_with("template `host_summaries` did not render a JSON object"),
            "{err}"
        );
        assert!(parse_host_summaries(r#"{"web2": 1}"#).is_err());
    }
}
