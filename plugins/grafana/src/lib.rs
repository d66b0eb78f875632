//! Herald `grafana` sink: Grafana annotations (`POST /api/annotations`).
//!
//! - one **region** annotation per run, from the playbook's start to its end (`time`, `timeEnd`
//!   in epoch ms), sent when the stats event arrives, tagged with the configured `tags` plus
//!   `playbook:<name>` and `status:<successful|failed>`; optional `dashboardUID` and `panelId`
//!   (an organisation-wide annotation without them);
//! - optional **point** annotations for each failed or unreachable host (`failure_annotations`);
//! - `Authorization: Bearer <api_token>` (a service account token), optional `X-Grafana-Org-Id`;
//! - the returned annotation `id` is read and logged; a finished run is remembered in the
//!   instance's `state`, so a re-delivered stats event does not create a second region;
//! - message templates (`[plugins.<name>.templates]`, rendered by the host): `failure_text` and
//!   `run_text`, the annotations' `text`, with defaults that name the failed hosts and tasks;
//! - 2xx ok; 429/5xx/timeouts retryable (with `Retry-After`); other 4xx permanent.

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::summary::{Observed, RunStatus, RunSummary, RunTracker};
use herald_sdk::text::truncate;
use herald_sdk::{
    failure_reason, log, playbook_name, result_message, Event, EventRef, HostFailure, Outcome,
    Plugin,
};
// The unit tests (`use super::*`) build events with it.
#[cfg(test)]
use herald_sdk::Status;
use serde::Deserialize;
use serde_json::{json, Value};

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Grafana's base URL (`https://grafana.example.com`, or with a sub-path).
    pub url: String,
    /// Service account token, sent as `Authorization: Bearer`.
    #[serde(default)]
    pub api_token: Option<String>,
    /// Sent as `X-Grafana-Org-Id`.
    #[serde(default)]
    pub org_id: Option<u64>,
    #[serde(default)]
    pub dashboard_uid: Option<String>,
    #[serde(default)]
    pub panel_id: Option<u64>,
    /// Tags on every annotation (before `playbook:` and `status:`).
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    /// Also a point annotation per failed or unreachable host.
    #[serde(default)]
    pub failure_annotations: bool,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_tags() -> Vec<String> {
    vec!["ansible".into()]
}

/// The configured plugin.
pub struct Grafana {
    c: Config,
    endpoint: Url,
    tracker: RunTracker,
}

impl Plugin for Grafana {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] =
        &[("failure_text", FAILURE_TEXT), ("run_text", RUN_TEXT)];

    fn new(c: Config) -> Result<Self, String> {
        let base = config::url("url", &c.url)?;
        if base.path_with_query.contains('?') {
            return Err("config key `url`: give Grafana's base URL without a query".into());
        }
        if c.panel_id.is_some() && c.dashboard_uid.is_none() {
            return Err("config key `panel_id`: needs dashboard_uid".into());
        }
        config::not_blank("dashboard_uid", c.dashboard_uid.as_deref())?;
        config::header_secret("api_token", c.api_token.as_deref())?;
        for (i, t) in c.tags.iter().enumerate() {
            config::not_blank(&format!("tags[{i}]"), Some(t))?;
        }
        config::check_timeout_ms(c.timeout_ms)?;
        let endpoint = base.join("api/annotations");
        // The URL requests go to, so a path-limited allow_http prefix is judged right.
        herald_sdk::grants::require_http("url", &endpoint.as_string())?;
        Ok(Grafana {
            c,
            endpoint,
            tracker: RunTracker::host("grafana:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        let outcome = match self.tracker.observe(event) {
            Observed::AlreadyFinished => Outcome::Ok,
            Observed::Progress(_) => match self.failure_annotation(event) {
                Some(mut body) => match with_text(event, "failure_text", &mut body) {
                    Ok(()) => self.post(&body).0,
                    Err(e) => herald_sdk::permanent(e),
                },
                None => Outcome::Ok,
            },
            Observed::Finished(s) => {
                let mut body = self.region(&s);
                if let Err(e) = with_text(event, "run_text", &mut body) {
                    return herald_sdk::permanent(e);
                }
                let (o, id) = self.post(&body);
                if let Some(id) = id {
                    log::info(&format!(
                        "run {}: Grafana region annotation id {id}",
                        s.run_id
                    ));
                }
                // Remembered as done: a re-delivered stats event creates no second region.
                self.tracker.finish(&s.run_id, o)
            }
        };
        if let Some(p) = failure_reason(&outcome) {
            log::warn(&format!("event {}: {p}", event.id));
        }
        outcome
    }
}

/// The default `failure_text`: the host, its task and the result's message.
pub const FAILURE_TEXT: &str = "{{ event.host }}: task '{{ event.task }}' {{ event.status }} in \
{{ run.playbook or 'ad-hoc run' }}: {{ event.message }}";

/// The default `run_text` of the run's region: status, counts, each failed host with its
/// failed tasks and messages, the run id and controller.
pub const RUN_TEXT: &str = "Ansible {{ run.playbook or 'ad-hoc run' }} {{ run.status }}: \
{{ summary.hosts }} host(s), {{ summary.recap | selectattr('changed') | list | length }} changed, \
{{ summary.failed_hosts | length }} failed\
{% for h in summary.failed_hosts %}{{ ' (' if loop.first else '; ' }}{{ h.host }}\
{% for t in h.tasks %}: '{{ t.task }}' {{ t.message | truncate(200) }}{% endfor %}\
{{ ')' if loop.last }}{% endfor %}. Run {{ run.id }}{% if run.controller %} on {{ run.controller }}{% endif %}\
{% if run_url %} {{ run_url }}{% endif %}";

/// Puts template `name`'s text (the user's, else the default) into an annotation's `text`.
fn with_text(event: &EventRef<'_>, name: &str, body: &mut Value) -> Result<(), String> {
    if let Some(text) = event.render(name)? {
        body["text"] = json!(truncate(&text, 2000));
    }
    Ok(())
}

impl Grafana {
    fn tags(&self, playbook: &str, status: &str, extra: &[String]) -> Vec<String> {
        let mut t = self.c.tags.clone();
        t.push(format!("playbook:{}", playbook_name(playbook)));
        t.push(format!("status:{status}"));
        t.extend(extra.iter().cloned());
        t
    }

    fn place(&self, mut body: Value) -> Value {
        if let Some(d) = &self.c.dashboard_uid {
            body["dashboardUID"] = json!(d);
        }
        if let Some(p) = self.c.panel_id {
            body["panelId"] = json!(p);
        }
        body
    }

    /// The run's region annotation.
    pub fn region(&self, s: &RunSummary) -> Value {
        let status = match s.status() {
            RunStatus::Failed => "failed",
            _ => "successful",
        };
        let end = s.ended_ms.unwrap_or_default();
        let start = s.started_ms.unwrap_or(end).min(end);
        let changed = s.hosts.iter().filter(|h| h.changed > 0).count();
        let failed = s.failed_hosts();
        let mut text = format!(
            "Ansible {} {status}: {} host(s), {changed} changed, {} failed",
            playbook_name(&s.playbook),
            s.hosts.len(),
            failed.len()
        );
        if !failed.is_empty() {
            text.push_str(&format!(" ({})", failed.join(", ")));
        }
        text.push_str(&format!(". Run {}", s.run_id));
        if let Some(c) = &s.controller {
            text.push_str(&format!(" on {c}"));
        }
        self.place(json!({
            "time": start,
            "timeEnd": end,
            "tags": self.tags(&s.playbook, status, &[]),
            "text": truncate(&text, 2000),
        }))
    }

    /// A point annotation for a failed or unreachable host, when enabled.
    pub fn failure_annotation(&self, e: &Event) -> Option<Value> {
        if !self.c.failure_annotations {
            return None;
        }
        let what = HostFailure::of(e)?.as_str();
        let host = e.host.clone().unwrap_or_default();
        let task = e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("");
        let msg = result_message(e.res.as_deref(), 1000).unwrap_or_default();
        Some(self.place(json!({
            "time": e.created_ms,
            "tags": self.tags(&e.run.playbook, what, &[format!("host:{host}")]),
            "text": truncate(&format!("{host}: task '{task}' {what} in {}: {msg}", playbook_name(&e.run.playbook)), 2000),
        })))
    }

    /// The request for an annotation body.
    pub fn request(&self, body: &Value) -> Request {
        let mut r = Request::new(Method::Post, self.endpoint.clone())
            .timeout_ms(self.c.timeout_ms)
            .header("accept", "application/json");
        if let Some(t) = &self.c.api_token {
            r = r.bearer(t);
        }
        if let Some(o) = self.c.org_id {
            r = r.header("x-grafana-org-id", o.to_string());
        }
        r.json(body)
    }

    /// Sends an annotation; the outcome and the id Grafana returned.
    fn post(&self, body: &Value) -> (Outcome, Option<u64>) {
        let (o, resp) = self.request(body).deliver();
        let id = match (&o, resp) {
            (Outcome::Ok, Some(r)) => annotation_id(&r.body),
            _ => None,
        };
        if matches!(o, Outcome::Ok) && id.is_none() {
            log::warn("Grafana accepted the annotation but returned no id");
        }
        (o, id)
    }
}

/// The `id` of Grafana's answer `{"message":"Annotation added","id":1}`.
pub fn annotation_id(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("id")?
        .as_u64()
}

herald_sdk::export_plugin!(Grafana);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::summary::MemoryStore;
    use herald_sdk::testing::{event, host_event, stats_event};
    use herald_sdk::EventKind;

    fn g(extra: &str) -> Grafana {
        herald_sdk::build::<Grafana>(&format!(
            r#"{{"url":"http://127.0.0.1:3000/grafana/"{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn region_annotation() {
        let t = RunTracker::with_store("", MemoryStore::default());
        let mut start = event(EventKind::PlaybookOnStart, "r1", "site.yml");
        start.sequence = 1;
        t.observe(&start);
        let mut st = stats_event(
            "r1",
            "site.yml",
            &[("web1", 2, 1, 0, 0, 0), ("web2", 1, 0, 1, 0, 0)],
            None,
        );
        st.sequence = 2;
        let s = match t.observe(&st) {
            Observed::Finished(s) => s,
            o => panic!("{o:?}"),
        };
        let gr = g(
            r#","dashboard_uid":"abc","panel_id":4,"tags":["ansible","prod"],"api_token":"glsa_x","org_id":2"#,
        );
        let b = gr.region(&s);
        assert_eq!(b["time"], 1_700_000_000_000i64);
        assert_eq!(b["timeEnd"], 1_700_000_060_000i64);
        assert_eq!(
            b["tags"],
            json!(["ansible", "prod", "playbook:site.yml", "status:failed"])
        );
        assert_eq!(b["dashboardUID"], "abc");
        assert_eq!(b["panelId"], 4);
        assert_eq!(
            b["text"],
            "Ansible site.yml failed: 2 host(s), 1 changed, 1 failed (web2). Run r1 on ctl1"
        );
        let r = gr.request(&b);
        assert_eq!(r.url.path_with_query, "/grafana/api/annotations");
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer glsa_x".into())));
        assert!(r.headers.contains(&("x-grafana-org-id".into(), "2".into())));
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/json".into())));

        let plain = g("").region(&s);
        assert!(plain.get("dashboardUID").is_none() && plain.get("panelId").is_none());
        assert_eq!(plain["tags"][0], "ansible");
    }

    #[test]
    fn failure_points() {
        let e = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install",
            Some(r#"{"msg":"boom"}"#),
        );
        assert!(g("").failure_annotation(&e).is_none());
        let gr = g(r#","failure_annotations":true"#);
        let b = gr.failure_annotation(&e).unwrap();
        assert_eq!(b["time"], e.created_ms);
        assert!(b.get("timeEnd").is_none());
        assert_eq!(
            b["tags"],
            json!(["ansible", "playbook:site.yml", "status:failed", "host:web2"])
        );
        assert_eq!(b["text"], "web2: task 'install' failed in site.yml: boom");
        let ok = host_event(EventKind::RunnerOnOk, Status::Ok, "r1", "p", "h", "t", None);
        assert!(gr.failure_annotation(&ok).is_none());
    }

    #[test]
    fn ids_and_config() {
        assert_eq!(
            annotation_id(br#"{"message":"Annotation added","id":17}"#),
            Some(17)
        );
        assert_eq!(annotation_id(b"nope"), None);
        for (json, want) in [
            (r#"{}"#, "missing field `url`"),
            (r#"{"url":"grafana"}"#, "`url`"),
            (r#"{"url":"http://g","panel_id":1}"#, "`panel_id`"),
            (
                r#"{"url":"http://g","panel_id":-1,"dashboard_uid":"x"}"#,
                "`panel_id`",
            ),
            (r#"{"url":"http://g","tags":["a",""]}"#, "`tags[1]`"),
            (r#"{"url":"http://g","tags":"a"}"#, "`tags`"),
            (
                r#"{"url":"http://g","dashboardUID":"x"}"#,
                "unknown field `dashboardUID`",
            ),
        ] {
            let err = herald_sdk::build::<Grafana>(json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
