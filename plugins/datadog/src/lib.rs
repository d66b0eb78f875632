//! Herald `datadog` sink: what the Datadog callbacks for Ansible do, through the sandbox.
//!
//! - an **event** per run on the Events API (`POST /api/v1/events`): title and text from the
//!   `run_title` / `run_text` templates, `alert_type` `error` or `success`, `date_happened`, the
//!   controller as `host`, an `aggregation_key` per tenant and playbook;
//! - an event per failed or unreachable host (`failure_title`, `failure_text`), as it happens,
//!   with the managed host as `host`; with `run_url` the texts end with the run's link;
//! - **metrics** at the end of each run on the metrics API v2 (`POST /api/v2/series`), all gauges
//!   stamped with the run's end: `<prefix>playbook.duration` (seconds), `playbook.success`,
//!   `playbook.changed`, `task.results{status}` (the PLAY RECAP's totals), `hosts{status}`,
//!   `host.tasks{host,result}` and `host.failed{host}` (each host as a `host` resource);
//! - tags on everything: `playbook:`, `tenant:`, the run's labels (`key:value`) and the
//!   configured `tags`, normalised as Datadog does (lower case; other characters become `_`);
//! - `DD-API-KEY` carries the key (a secret); `site` picks `api.<site>` (`datadoghq.com`,
//!   `datadoghq.eu`, `us3.datadoghq.com`, ...) or `api_url` a proxy;
//! - a run's metrics and event are each sent once: what Datadog accepted is remembered in
//!   `state`, so a retry after a failed event does not send the metrics again;
//! - 2xx ok; 408/429 (`Retry-After`) and 5xx retryable; 400/403 permanent with Datadog's errors.

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::summary::{Observed, RunStatus, RunSummary, RunTracker};
use herald_sdk::text::truncate;
use herald_sdk::{
    failure_reason, log, playbook_name, result_message, state, Event, EventRef, HostFailure,
    Outcome, Plugin,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// Datadog sites (`api.<site>`), from Datadog's "Getting started with Datadog sites".
pub const SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];
/// Limits of the Events API v1.
pub const TITLE_MAX: usize = 100;
pub const TEXT_MAX: usize = 4000;
pub const AGGREGATION_KEY_MAX: usize = 100;
/// Longest tag Datadog keeps.
pub const TAG_MAX: usize = 200;
/// `type` of a gauge in the v2 series API.
pub const GAUGE: u8 = 3;

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API key (a secret: use `${env:...}`).
    pub api_key: String,
    #[serde(default = "default_site")]
    pub site: String,
    /// A base URL instead of `https://api.<site>` (a proxy).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Tags on every event and series (`key:value`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The run's labels as `key:value` tags.
    #[serde(default = "yes")]
    pub labels_as_tags: bool,
    #[serde(default = "default_prefix")]
    pub metric_prefix: String,
    /// An event per run.
    #[serde(default = "yes")]
    pub run_events: bool,
    /// An event per failed or unreachable host.
    #[serde(default = "yes")]
    pub failure_events: bool,
    /// Metrics at the end of each run.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Hosts with per-host series.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
    /// A link appended to the events' text; `{run_id}`, `{tenant}`, `{playbook}` replaced.
    #[serde(default)]
    pub run_url: Option<String>,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_site() -> String {
    "datadoghq.com".into()
}
fn default_prefix() -> String {
    "ansible.".into()
}
fn default_max_hosts() -> usize {
    100
}

/// The default `failure_title`.
pub const FAILURE_TITLE: &str = "\
{{ run.playbook or 'ad-hoc run' }}: {{ event.task or '?' }} {{ event.status }} on {{ event.host or '?' }}";
/// The default `failure_text`.
pub const FAILURE_TEXT: &str = "\
{{ event.message or '(no message)' }}

play: {{ event.play or '-' }}, module: {{ event.task_action or '-' }}, run: {{ run.id }}";
/// The default `run_title`.
pub const RUN_TITLE: &str = "Ansible {{ run.playbook or 'ad-hoc run' }} {{ run.status }}";
/// The default `run_text`: the recap's totals, each failed host with its failed tasks, the link.
pub const RUN_TEXT: &str = "\
{{ summary.hosts }} host(s){% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}: \
ok={{ summary.totals.ok }} changed={{ summary.totals.changed }} failed={{ summary.totals.failures }} \
unreachable={{ summary.totals.unreachable }} skipped={{ summary.totals.skipped }}
{% for h in summary.failed_hosts %}
{{ h.host }} {{ 'unreachable' if h.unreachable else 'failed' }}\
{% for t in h.tasks %}{{ ':' if loop.first else ';' }} {{ t.task }}: {{ t.message | truncate(200) }}{% endfor %}

{% endfor %}
{% if summary.failures_more %}… and {{ summary.failures_more }} more failure(s)
{% endif %}
run: {{ run.id }}";

/// A tag as Datadog stores it: lower case, characters other than letters, digits, `_-:./`
/// replaced by `_`, at most [`TAG_MAX`] characters.
pub fn tag(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || "_-:./".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    truncate(&t, TAG_MAX)
}

/// The configured plugin.
pub struct Datadog {
    c: Config,
    events_url: Url,
    series_url: Url,
    tracker: RunTracker,
}

impl Plugin for Datadog {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] = &[
        ("failure_title", FAILURE_TITLE),
        ("failure_text", FAILURE_TEXT),
        ("run_title", RUN_TITLE),
        ("run_text", RUN_TEXT),
    ];

    fn new(c: Config) -> Result<Self, String> {
        config::header_secret("api_key", Some(&c.api_key))?;
        let base = match &c.api_url {
            Some(u) => config::url("api_url", u)?,
            None => {
                if !SITES.contains(&c.site.as_str()) {
                    return Err(format!(
                        "config key `site`: `{}` is not a Datadog site (one of {}; or set api_url)",
                        c.site,
                        SITES.join(", ")
                    ));
                }
                config::url("site", &format!("https://api.{}", c.site))?
            }
        };
        let key = if c.api_url.is_some() {
            "api_url"
        } else {
            "site"
        };
        let events_url = base.join("/api/v1/events");
        let series_url = base.join("/api/v2/series");
        if c.run_events || c.failure_events {
            herald_sdk::grants::require_http(key, &events_url.as_string())?;
        }
        if c.metrics {
            herald_sdk::grants::require_http(key, &series_url.as_string())?;
        }
        config::check_timeout_ms(c.timeout_ms)?;
        config::not_blank("run_url", c.run_url.as_deref())?;
        config::in_range("max_hosts", c.max_hosts as u64, 0, 1000)?;
        for (i, t) in c.tags.iter().enumerate() {
            if t.trim().is_empty() || t.len() > TAG_MAX {
                return Err(format!(
                    "config key `tags[{i}]`: a tag has 1 to {TAG_MAX} characters"
                ));
            }
        }
        let p = &c.metric_prefix;
        if !p.is_empty()
            && (!p.starts_with(|ch: char| ch.is_ascii_alphabetic())
                || !p
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
        {
            return Err(format!(
                "config key `metric_prefix`: `{p}` must start with a letter and hold only letters, digits, `_` and `.`"
            ));
        }
        Ok(Datadog {
            c,
            events_url,
            series_url,
            tracker: RunTracker::host("datadog:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        let outcome = match self.tracker.observe(event) {
            Observed::AlreadyFinished => Outcome::Ok,
            Observed::Progress(s) => {
                if !self.c.failure_events || HostFailure::of(event).is_none() {
                    return Outcome::Ok;
                }
                match self.failure_event(event, &s) {
                    Ok(Some(body)) => self.post(&self.events_url, &body),
                    Ok(None) => Outcome::Ok,
                    Err(e) => herald_sdk::permanent(e),
                }
            }
            Observed::Finished(s) => {
                let o = self.on_end(event, &s);
                if matches!(o, Outcome::Ok) {
                    state::delete(&parts_key(&s.run_id));
                }
                self.tracker.finish(&s.run_id, o)
            }
        };
        if let Some(p) = failure_reason(&outcome) {
            log::warn(&format!(
                "event {} (run {}): Datadog: {p}",
                event.id, event.run.id
            ));
        }
        outcome
    }
}

fn parts_key(run_id: &str) -> String {
    format!("datadog:sent:{run_id}")
}

impl Datadog {
    /// Tags of `e`'s run: playbook, tenant, the labels, the configured ones.
    pub fn tags(&self, e: &Event) -> Vec<String> {
        let mut t = vec![
            tag(&format!("playbook:{}", playbook_name(&e.run.playbook))),
            tag(&format!("tenant:{}", e.tenant)),
        ];
        if self.c.labels_as_tags {
            if let Ok(v) = serde_json::from_str::<Value>(&e.json) {
                if let Some(labels) = v.get("labels").and_then(Value::as_object) {
                    for (k, v) in labels {
                        if let Some(v) = v.as_str() {
                            t.push(tag(&format!("{k}:{v}")));
                        }
                    }
                }
            }
        }
        t.extend(self.c.tags.iter().map(|x| tag(x)));
        t.dedup();
        t
    }

    /// `text` and, with `run_url`, a blank line and the run's link (kept when the text is cut).
    fn with_link(&self, text: String, s: &RunSummary) -> String {
        match self.c.run_url.as_ref().map(|t| s.run_url(t)) {
            Some(link) => {
                let room = TEXT_MAX.saturating_sub(link.chars().count() + 2);
                format!("{}\n\n{link}", truncate(text.trim_end(), room))
            }
            None => text,
        }
    }

    fn aggregation_key(s_tenant: &str, playbook: &str) -> String {
        truncate(
            &format!("herald:{s_tenant}:{}", playbook_name(playbook)),
            AGGREGATION_KEY_MAX,
        )
    }

    /// The Events API body for a failed or unreachable host.
    pub fn failure_event(&self, e: &EventRef<'_>, s: &RunSummary) -> Result<Option<Value>, String> {
        let Some(what) = HostFailure::of(e) else {
            return Ok(None);
        };
        let host = e.host.as_deref().unwrap_or("?");
        let task = e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("?");
        let title = e.render("failure_title")?.unwrap_or_else(|| {
            format!(
                "{}: {task} {} on {host}",
                playbook_name(&e.run.playbook),
                what.as_str()
            )
        });
        let text = e.render("failure_text")?.unwrap_or_else(|| {
            result_message(e.res.as_deref(), 1500).unwrap_or_else(|| "(no message)".into())
        });
        let text = self.with_link(text, s);
        let mut tags = self.tags(e);
        tags.push(tag(&format!("status:{}", what.as_str())));
        let mut body = json!({
            "title": truncate(&title, TITLE_MAX),
            "text": truncate(&text, TEXT_MAX),
            "alert_type": "error",
            "priority": "normal",
            "date_happened": e.created_ms / 1000,
            "source_type_name": "ansible",
            "aggregation_key": Self::aggregation_key(&e.tenant, &e.run.playbook),
            "tags": tags,
        });
        if let Some(h) = &e.host {
            body["host"] = json!(h);
        }
        Ok(Some(body))
    }

    /// The Events API body for the end of run `s` (`e` is its stats event).
    pub fn run_event(&self, e: &EventRef<'_>, s: &RunSummary) -> Result<Value, String> {
        let status = s.status();
        let title = e.render("run_title")?.unwrap_or_else(|| {
            format!("Ansible {} {}", playbook_name(&s.playbook), status.as_str())
        });
        let text = e.render("run_text")?.unwrap_or_else(|| {
            let mut t = format!(
                "{} host(s): {} failed",
                s.hosts.len(),
                s.failed_hosts().len()
            );
            for f in &s.failures {
                t.push_str(&format!(
                    "\n{} {}: {}",
                    f.host,
                    f.task,
                    truncate(&f.message, 200)
                ));
            }
            t
        });
        let text = self.with_link(text, s);
        let mut tags = self.tags(e);
        tags.push(tag(&format!("status:{}", status.as_str())));
        let mut body = json!({
            "title": truncate(&title, TITLE_MAX),
            "text": truncate(&text, TEXT_MAX),
            "alert_type": if status == RunStatus::Failed { "error" } else { "success" },
            "priority": "normal",
            "date_happened": e.created_ms / 1000,
            "source_type_name": "ansible",
            "aggregation_key": Self::aggregation_key(&s.tenant, &s.playbook),
            "tags": tags,
        });
        if let Some(c) = &s.controller {
            body["host"] = json!(c);
        }
        Ok(body)
    }

    /// The v2 series of run `s`, stamped `at_s`.
    pub fn series(&self, e: &Event, s: &RunSummary, at_s: i64) -> Value {
        let p = &self.c.metric_prefix;
        let base = self.tags(e);
        let status = s.status();
        let mut out = Vec::new();
        let mut gauge =
            |name: &str, value: f64, extra: &[String], host: Option<&str>, unit: Option<&str>| {
                let mut tags = base.clone();
                tags.extend(extra.iter().cloned());
                let mut m = json!({
                    "metric": format!("{p}{name}"),
                    "type": GAUGE,
                    "points": [{ "timestamp": at_s, "value": value }],
                    "tags": tags,
                });
                if let Some(h) = host {
                    m["resources"] = json!([{ "name": h, "type": "host" }]);
                }
                if let Some(u) = unit {
                    m["unit"] = json!(u);
                }
                out.push(m);
            };
        let st = tag(&format!("status:{}", status.as_str()));
        if let Some(d) = s.duration_ms() {
            gauge(
                "playbook.duration",
                d as f64 / 1000.0,
                std::slice::from_ref(&st),
                None,
                Some("second"),
            );
        }
        gauge(
            "playbook.success",
            if status == RunStatus::Failed {
                0.0
            } else {
                1.0
            },
            &[],
            None,
            None,
        );
        let sum = |f: fn(&herald_sdk::summary::HostCounters) -> u32| -> f64 {
            s.hosts.iter().map(f).sum::<u32>() as f64
        };
        gauge(
            "playbook.changed",
            sum(|h| h.changed),
            std::slice::from_ref(&st),
            None,
            None,
        );
        for (name, v) in [
            ("ok", sum(|h| h.ok)),
            ("changed", sum(|h| h.changed)),
            ("failed", sum(|h| h.failures)),
            ("unreachable", sum(|h| h.unreachable)),
            ("skipped", sum(|h| h.skipped)),
            ("rescued", sum(|h| h.rescued)),
            ("ignored", sum(|h| h.ignored)),
        ] {
            gauge("task.results", v, &[format!("status:{name}")], None, None);
        }
        let count = |f: fn(&herald_sdk::summary::HostCounters) -> bool| -> f64 {
            s.hosts.iter().filter(|h| f(h)).count() as f64
        };
        for (name, v) in [
            ("total", s.hosts.len() as f64),
            ("changed", count(|h| h.changed > 0)),
            ("failed", count(|h| h.failures > 0)),
            ("unreachable", count(|h| h.unreachable > 0)),
        ] {
            gauge("hosts", v, &[format!("status:{name}")], None, None);
        }
        for h in s.hosts.iter().take(self.c.max_hosts) {
            let ht = tag(&format!("host:{}", h.host));
            for (name, v) in [
                ("ok", h.ok),
                ("changed", h.changed),
                ("failed", h.failures),
                ("unreachable", h.unreachable),
                ("skipped", h.skipped),
            ] {
                gauge(
                    "host.tasks",
                    v as f64,
                    &[ht.clone(), format!("result:{name}")],
                    Some(&h.host),
                    None,
                );
            }
            let failed = h.failures > 0 || h.unreachable > 0;
            gauge(
                "host.failed",
                if failed { 1.0 } else { 0.0 },
                std::slice::from_ref(&ht),
                Some(&h.host),
                None,
            );
        }
        json!({ "series": out })
    }

    /// The end of run `s`: the metrics, then the run's event, each once.
    fn on_end(&self, e: &EventRef<'_>, s: &RunSummary) -> Outcome {
        let key = parts_key(&s.run_id);
        let mut sent: Vec<String> = state::get_json(&key).unwrap_or_default();
        if self.c.metrics && !sent.iter().any(|p| p == "metrics") {
            let o = self.post(&self.series_url, &self.series(e, s, e.created_ms / 1000));
            if !matches!(o, Outcome::Ok) {
                return o;
            }
            sent.push("metrics".into());
            state::set_json(&key, &sent);
        }
        if self.c.run_events && !sent.iter().any(|p| p == "event") {
            let body = match self.run_event(e, s) {
                Ok(b) => b,
                Err(err) => return herald_sdk::permanent(err),
            };
            return self.post(&self.events_url, &body);
        }
        Outcome::Ok
    }

    fn post(&self, url: &Url, body: &Value) -> Outcome {
        Request::new(Method::Post, url.clone())
            .timeout_ms(self.c.timeout_ms)
            .header("DD-API-KEY", self.c.api_key.clone())
            .json(body)
            .deliver()
            .0
    }
}

herald_sdk::export_plugin!(Datadog);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{event, host_event, stats_event, FakeHost};
    use herald_sdk::{EventKind, Status};

    const API: &str = "https://api.datadoghq.eu";

    fn dd(extra: &str) -> Datadog {
        herald_sdk::build::<Datadog>(&format!(
            r#"{{"api_key":"0123456789abcdef0123456789abcdef","site":"datadoghq.eu"{extra}}}"#
        ))
        .unwrap()
    }

    fn run() -> Vec<Event> {
        let mut start = event(EventKind::PlaybookOnStart, "r1", "site.yml");
        start.json =
            r#"{"uuid":"s","event":"playbook_on_start","labels":{"env":"Prod","team":"web ops"}}"#
                .into();
        let mut f = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "migrate",
            Some(r#"{"msg":"boom"}"#),
        );
        f.sequence = 2;
        f.json = start.json.clone();
        let mut st = stats_event(
            "r1",
            "site.yml",
            &[("web1", 3, 1, 0, 0, 1), ("web2", 1, 0, 1, 0, 0)],
            None,
        );
        st.sequence = 3;
        st.json = start.json.clone();
        vec![start, f, st]
    }

    #[test]
    fn tags_are_normalised() {
        assert_eq!(tag("Playbook:Deploy Web.yml"), "playbook:deploy_web.yml");
        let d = dd(r#","tags":["team:x","Env:CI"]"#);
        let evs = run();
        assert_eq!(
            d.tags(&evs[0]),
            [
                "playbook:site.yml",
                "tenant:acme",
                "env:prod",
                "team:web_ops",
                "team:x",
                "env:ci"
            ]
        );
        assert_eq!(
            dd(r#","labels_as_tags":false"#).tags(&evs[0]),
            ["playbook:site.yml", "tenant:acme"]
        );
    }

    #[test]
    fn a_run_sends_a_failure_event_then_metrics_and_an_event_once() {
        let host = FakeHost::new(&[API]);
        host.respond(
            &format!("{API}/api/v1/events"),
            202,
            &[],
            r#"{"status":"ok"}"#,
        )
        .respond(
            &format!("{API}/api/v2/series"),
            202,
            &[],
            r#"{"errors":[]}"#,
        )
        .respond(&format!("{API}/api/v1/events"), 500, &[], "oops")
        .respond(
            &format!("{API}/api/v1/events"),
            202,
            &[],
            r#"{"status":"ok"}"#,
        );
        let mut d = dd(r#","run_url":"https://h/runs/{run_id}""#);
        let evs = run();
        for e in &evs[..2] {
            assert!(matches!(
                d.handle(&EventRef::from(e.clone()), 1),
                Outcome::Ok
            ));
        }
        // The run event fails once: the retry does not send the metrics again.
        let stats = EventRef::from(evs[2].clone());
        assert!(matches!(d.handle(&stats, 1), Outcome::Retryable(_)));
        assert!(matches!(d.handle(&stats, 2), Outcome::Ok));
        assert!(
            matches!(d.handle(&stats, 3), Outcome::Ok),
            "completed: nothing more"
        );
        let sent = host.requests();
        let paths: Vec<&str> = sent.iter().map(|r| r.url.trim_start_matches(API)).collect();
        assert_eq!(
            paths,
            [
                "/api/v1/events",
                "/api/v2/series",
                "/api/v1/events",
                "/api/v1/events"
            ]
        );
        assert!(sent
            .iter()
            .all(|r| r.header("dd-api-key") == Some("0123456789abcdef0123456789abcdef")));
        let failure = sent[0].json();
        assert_eq!(failure["title"], "site.yml: migrate failed on web2");
        assert_eq!(failure["text"], "boom\n\nhttps://h/runs/r1");
        assert_eq!(failure["host"], "web2");
        assert_eq!(failure["alert_type"], "error");
        assert_eq!(failure["date_happened"], 1_700_000_000);
        assert_eq!(failure["aggregation_key"], "herald:acme:site.yml");
        assert!(failure["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("status:failed")));
        let series = sent[1].json();
        let find = |metric: &str, tag: &str| {
            series["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| {
                    m["metric"] == metric && m["tags"].as_array().unwrap().contains(&json!(tag))
                })
                .map(|m| m["points"][0]["value"].as_f64().unwrap())
        };
        assert_eq!(
            find("ansible.playbook.duration", "status:failed"),
            Some(60.0)
        );
        assert_eq!(find("ansible.playbook.success", "env:prod"), Some(0.0));
        assert_eq!(find("ansible.task.results", "status:ok"), Some(4.0));
        assert_eq!(find("ansible.task.results", "status:failed"), Some(1.0));
        assert_eq!(find("ansible.hosts", "status:failed"), Some(1.0));
        assert_eq!(find("ansible.host.failed", "host:web2"), Some(1.0));
        assert_eq!(find("ansible.host.failed", "host:web1"), Some(0.0));
        assert!(series["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["type"] == GAUGE && m["points"][0]["timestamp"] == 1_700_000_060));
        let end = sent[3].json();
        assert_eq!(end["title"], "Ansible site.yml failed");
        assert_eq!(end["host"], "ctl1");
        assert!(host.state().keys().all(|k| !k.starts_with("datadog:sent:")));
    }

    #[test]
    fn a_refused_key_is_permanent() {
        let host = FakeHost::new(&[API]);
        host.respond(
            &format!("{API}/api/v1/events"),
            403,
            &[],
            r#"{"errors":["Forbidden"]}"#,
        );
        let mut d = dd("");
        match d.handle(&EventRef::from(run()[1].clone()), 1) {
            Outcome::Permanent(p) => assert!(p.contains("403") && p.contains("Forbidden"), "{p}"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let k = r#""api_key":"k""#;
        for (json, want) in [
            (r#"{}"#.to_string(), "missing field `api_key`"),
            (format!(r#"{{{k},"site":"datadoghq.fr"}}"#), "`site`"),
            (format!(r#"{{{k},"api_url":"ftp://x"}}"#), "`api_url`"),
            (format!(r#"{{{k},"tags":[""]}}"#), "`tags[0]`"),
            (
                format!(r#"{{{k},"metric_prefix":"1x"}}"#),
                "`metric_prefix`",
            ),
            (format!(r#"{{{k},"max_hosts":5000}}"#), "`max_hosts`"),
            (format!(r#"{{{k},"apikey":"x"}}"#), "unknown field `apikey`"),
            (r#"{"api_key":" "}"#.to_string(), "`api_key`"),
        ] {
            let err = herald_sdk::build::<Datadog>(&json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
        let d =
            herald_sdk::build::<Datadog>(r#"{"api_key":"k","site":"us5.datadoghq.com"}"#).unwrap();
        assert_eq!(
            d.series_url.as_string(),
            "https://api.us5.datadoghq.com/api/v2/series"
        );
        let d =
            herald_sdk::build::<Datadog>(r#"{"api_key":"k","api_url":"http://127.0.0.1:1/dd"}"#)
                .unwrap();
        assert_eq!(
            d.events_url.as_string(),
            "http://127.0.0.1:1/dd/api/v1/events"
        );
    }
}
