//! Herald `teams` sink: Microsoft Teams through a Workflows ("Post to a channel when a webhook
//! request is received") webhook. The classic Office 365 connectors were retired; Workflows
//! webhooks take a `message` whose attachment is an Adaptive Card.
//!
//! - an Adaptive Card per failed or unreachable host (title, the error message, facts: host,
//!   task, module, play, task path, playbook, run, tenant), when `failure_messages` is on;
//! - an Adaptive Card per run summary at the end of each failed run, and of successful runs with
//!   `notify_on_success`: title, text (recap totals and each failed host with its failed tasks),
//!   facts (status, duration, hosts, task results), the PLAY RECAP per host, the failures and the
//!   `set_stats` run values, and an "Open run" button with `run_url`;
//! - message templates (`[plugins.<name>.templates]`, rendered by the host): `failure_title`,
//!   `failure_text`, `summary_title`, `summary_text` (defaults below), and `failure_card` /
//!   `summary_card` (no default): a user template rendering a whole Adaptive Card (JSON object)
//!   that replaces the built one;
//! - cards stay under Teams' message size (about 28 KB): the recap and failure lists are cut
//!   first, then the text;
//! - 2xx (Workflows answers 202) is success; 429 honours `Retry-After`; 5xx retryable; other 4xx
//!   permanent (logged with the answer). Reasons name only the webhook's origin (its URL holds
//!   a signature).

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::summary::{Observed, RunStatus, RunSummary, RunTracker};
use herald_sdk::templates;
use herald_sdk::text::truncate;
use herald_sdk::{
    log, playbook_name, result_message, Event, EventRef, HostFailure, Outcome, Plugin,
};
// The unit tests (`use super::*`) build events with it.
#[cfg(test)]
use herald_sdk::Status;
use serde::Deserialize;
use serde_json::{json, Value};

/// The attachment content type of an Adaptive Card.
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
/// The schema version of the cards (Teams renders 1.0 to 1.5).
pub const CARD_VERSION: &str = "1.4";
/// Bytes of a whole message body the plugin stays under (Teams refuses messages over ~28 KB).
pub const MESSAGE_MAX_BYTES: usize = 27_000;
/// Characters of a title and of a text block.
pub const TITLE_MAX: usize = 300;
pub const TEXT_MAX: usize = 5000;
/// Characters of a fact's value.
pub const FACT_MAX: usize = 500;

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Workflows webhook URL (`https://....logic.azure.com/workflows/...&sig=...` or
    /// `https://....environment.api.powerplatform.com/...`). It is a secret.
    pub webhook_url: String,
    /// Send a summary for successful runs too.
    #[serde(default)]
    pub notify_on_success: bool,
    /// Send a card at each failed or unreachable host.
    #[serde(default = "yes")]
    pub failure_messages: bool,
    /// Send the run summary (failed runs; successful ones with `notify_on_success`).
    #[serde(default = "yes")]
    pub run_summary: bool,
    /// Hosts listed in a summary's PLAY RECAP.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
    /// Failures listed in a summary.
    #[serde(default = "default_max_failures")]
    pub max_failures: usize,
    /// A link to the run (an "Open run" button); `{run_id}`, `{tenant}`, `{playbook}` replaced.
    #[serde(default)]
    pub run_url: Option<String>,
    /// Cards take the channel's full width (`msteams.width = "Full"`).
    #[serde(default = "yes")]
    pub full_width: bool,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_max_hosts() -> usize {
    20
}
fn default_max_failures() -> usize {
    10
}

/// The default `failure_title`.
pub const FAILURE_TITLE: &str = "\
{{ run.playbook or 'ad-hoc run' }}: task '{{ event.task or '?' }}' {{ event.status }} on {{ event.host or '?' }}";

/// The default `failure_text`: the result's message.
pub const FAILURE_TEXT: &str = "{{ event.message or '(no message)' }}";

/// The default `summary_title`.
pub const SUMMARY_TITLE: &str = "{{ run.playbook or 'ad-hoc run' }} {{ run.status }}";

/// The default `summary_text`: the recap's totals, then each failed host with its failed
/// tasks and their messages (a Markdown list, which Teams renders).
pub const SUMMARY_TEXT: &str = "\
{{ summary.hosts }} host(s){% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}: \
ok={{ summary.totals.ok }} changed={{ summary.totals.changed }} failed={{ summary.totals.failures }} \
unreachable={{ summary.totals.unreachable }} skipped={{ summary.totals.skipped }}
{% for h in summary.failed_hosts %}

- {{ h.host }} {{ 'unreachable' if h.unreachable else 'failed' }}\
{% for t in h.tasks %}{{ ':' if loop.first else ';' }} task '{{ t.task }}': {{ t.message | truncate(200) }}{% endfor %}

{% endfor %}
{% if summary.failures_more %}

… and {{ summary.failures_more }} more failure(s)
{% endif %}";

/// `1h 02m 03s`, `2m 05s`, `4.2s`.
pub fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h {:02}m {:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// A fact of a `FactSet`.
fn fact(title: &str, value: &str) -> Value {
    json!({ "title": title, "value": truncate(value, FACT_MAX) })
}

fn text_block(text: &str) -> Value {
    json!({ "type": "TextBlock", "text": truncate(text, TEXT_MAX), "wrap": true })
}

/// The configured plugin.
pub struct Teams {
    c: Config,
    url: Url,
    tracker: RunTracker,
}

/// One card's parts, before it is assembled.
#[derive(Debug, Clone, Default)]
pub struct Card {
    pub title: String,
    /// `Attention` (failures) or `Good`.
    pub color: &'static str,
    pub text: String,
    pub facts: Vec<Value>,
    /// Further elements (recap, failures, stats), cut from the end when the card is too big.
    pub sections: Vec<Vec<Value>>,
    pub link: Option<String>,
}

impl Plugin for Teams {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] = &[
        ("failure_title", FAILURE_TITLE),
        ("failure_text", FAILURE_TEXT),
        ("summary_title", SUMMARY_TITLE),
        ("summary_text", SUMMARY_TEXT),
    ];

    fn new(c: Config) -> Result<Self, String> {
        let url = config::granted_url("webhook_url", &c.webhook_url)?;
        config::check_timeout_ms(c.timeout_ms)?;
        config::in_range("max_hosts", c.max_hosts as u64, 1, 100)?;
        config::in_range("max_failures", c.max_failures as u64, 1, 50)?;
        config::not_blank("run_url", c.run_url.as_deref())?;
        Ok(Teams {
            c,
            url,
            tracker: RunTracker::host("teams:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        match self.tracker.observe(event) {
            Observed::AlreadyFinished => Outcome::Ok,
            Observed::Progress(s) => match self.failure_card(event, &s) {
                Some(card) => match self.render(event, card, "failure") {
                    Ok(msg) => self.send(&msg, event),
                    Err(e) => herald_sdk::permanent(e),
                },
                None => Outcome::Ok,
            },
            Observed::Finished(s) => {
                let o = match self.summary_card(&s) {
                    Some(card) => match self.render(event, card, "summary") {
                        Ok(msg) => self.send(&msg, event),
                        Err(e) => herald_sdk::permanent(e),
                    },
                    None => Outcome::Ok,
                };
                self.tracker.finish(&s.run_id, o)
            }
        }
    }
}

impl Teams {
    /// The message for `card` of `kind` (`failure`, `summary`): the user's `<kind>_card`
    /// template when configured (a whole Adaptive Card), else the built card with its title and
    /// text from `<kind>_title` and `<kind>_text` (the built-in text in native tests).
    pub fn render(
        &self,
        event: &EventRef<'_>,
        mut card: Card,
        kind: &str,
    ) -> Result<Value, String> {
        let card_name = format!("{kind}_card");
        if templates::user_configured(&card_name) {
            if let Some(rendered) = event.render(&card_name)? {
                let content: Value = serde_json::from_str(&rendered).map_err(|e| {
                    format!("template `{card_name}` did not render a JSON Adaptive Card: {e}")
                })?;
                if content.get("type").and_then(Value::as_str) != Some("AdaptiveCard") {
                    return Err(format!(
                        "template `{card_name}` did not render an object with \"type\": \"AdaptiveCard\""
                    ));
                }
                return Ok(envelope(content));
            }
        }
        if let Some(t) = event.render(&format!("{kind}_title"))? {
            card.title = t;
        }
        if let Some(t) = event.render(&format!("{kind}_text"))? {
            card.text = t;
        }
        Ok(self.message(card))
    }

    /// The Workflows message for `card`, within [`MESSAGE_MAX_BYTES`].
    pub fn message(&self, mut card: Card) -> Value {
        loop {
            let msg = envelope(self.content(&card));
            let size = serde_json::to_vec(&msg).map(|v| v.len()).unwrap_or(0);
            if size <= MESSAGE_MAX_BYTES {
                return msg;
            }
            // Too big: drop the last element of the last section, then the text's tail.
            if let Some(last) = card.sections.last_mut() {
                last.pop();
                if last.len() <= 1 {
                    card.sections.pop();
                }
            } else if card.text.chars().count() > 200 {
                let keep = card.text.chars().count() / 2;
                card.text = truncate(&card.text, keep);
            } else {
                card.facts.truncate(card.facts.len() / 2);
                if card.facts.is_empty() {
                    return msg;
                }
            }
        }
    }

    /// The Adaptive Card of `card`.
    pub fn content(&self, card: &Card) -> Value {
        let mut body = vec![json!({
            "type": "TextBlock",
            "text": truncate(&card.title, TITLE_MAX),
            "size": "Large",
            "weight": "Bolder",
            "color": card.color,
            "wrap": true,
        })];
        if !card.text.trim().is_empty() {
            body.push(text_block(card.text.trim_end()));
        }
        if !card.facts.is_empty() {
            body.push(json!({ "type": "FactSet", "facts": card.facts }));
        }
        for s in &card.sections {
            body.extend(s.iter().cloned());
        }
        let mut content = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": CARD_VERSION,
            "body": body,
        });
        if let Some(url) = &card.link {
            content["actions"] =
                json!([{ "type": "Action.OpenUrl", "title": "Open run", "url": url }]);
        }
        if self.c.full_width {
            content["msteams"] = json!({ "width": "Full" });
        }
        content
    }

    fn send(&self, msg: &Value, event: &Event) -> Outcome {
        let (o, resp) = Request::new(Method::Post, self.url.clone())
            .timeout_ms(self.c.timeout_ms)
            .json(msg)
            .deliver();
        match (&o, resp) {
            (Outcome::Permanent(p), _) => {
                log::error(&format!("event {}: Teams refused the card: {p}", event.id))
            }
            (Outcome::Retryable(r), _) => log::warn(&format!(
                "event {}: Teams retryable: {}",
                event.id, r.reason
            )),
            _ => {}
        }
        o
    }

    fn run_facts(s: &RunSummary) -> Vec<Value> {
        let mut f = vec![fact("Run", &s.run_id), fact("Tenant", &s.tenant)];
        if let Some(c) = &s.controller {
            f.push(fact("Controller", c));
        }
        f
    }

    /// The card for a failed or unreachable host, if the event is one and cards are on.
    pub fn failure_card(&self, e: &Event, s: &RunSummary) -> Option<Card> {
        if !self.c.failure_messages {
            return None;
        }
        let what = HostFailure::of(e)?.as_str();
        let host = e.host.as_deref().unwrap_or("?");
        let task = e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("?");
        let pb = playbook_name(&e.run.playbook);
        let mut facts = vec![fact("Host", host), fact("Task", task)];
        if let Some(t) = &e.task {
            if !t.action.is_empty() {
                facts.push(fact("Module", &t.action));
            }
            if let Some(p) = &t.path {
                facts.push(fact("Task path", p));
            }
        }
        if let Some(p) = e.play.as_ref().filter(|p| !p.name.is_empty()) {
            facts.push(fact("Play", &p.name));
        }
        facts.push(fact("Playbook", pb));
        facts.extend(Self::run_facts(s));
        Some(Card {
            title: format!("{pb}: task '{task}' {what} on {host}"),
            color: "Attention",
            text: result_message(e.res.as_deref(), 1500).unwrap_or_else(|| "(no message)".into()),
            facts,
            sections: vec![],
            link: self.c.run_url.as_ref().map(|t| s.run_url(t)),
        })
    }

    /// The end-of-run summary card, if one is due for this run.
    pub fn summary_card(&self, s: &RunSummary) -> Option<Card> {
        let status = s.status();
        if !self.c.run_summary || (status != RunStatus::Failed && !self.c.notify_on_success) {
            return None;
        }
        let pb = playbook_name(&s.playbook);
        let duration = s.duration_ms().map(human_duration);
        let total =
            |f: fn(&herald_sdk::summary::HostCounters) -> u32| s.hosts.iter().map(f).sum::<u32>();
        let (ok, changed, failures, unreachable, skipped) = (
            total(|h| h.ok),
            total(|h| h.changed),
            total(|h| h.failures),
            total(|h| h.unreachable),
            total(|h| h.skipped),
        );
        let mut text = format!(
            "{} host(s){}: ok={ok} changed={changed} failed={failures} unreachable={unreachable} skipped={skipped}",
            s.hosts.len(),
            duration.as_ref().map(|d| format!(" in {d}")).unwrap_or_default()
        );
        for f in s.failures.iter().take(self.c.max_failures) {
            text.push_str(&format!(
                "\n\n- {} {}: task '{}': {}",
                f.host,
                if f.unreachable {
                    "unreachable"
                } else {
                    "failed"
                },
                f.task,
                truncate(&f.message, 200)
            ));
        }
        let failed_hosts = s.failed_hosts();
        let mut facts = vec![
            fact("Status", status.as_str()),
            fact("Duration", duration.as_deref().unwrap_or("unknown")),
            fact("Hosts", &s.hosts.len().to_string()),
            fact(
                "Task results",
                &format!("ok {ok} · changed {changed} · failed {failures} · unreachable {unreachable} · skipped {skipped}"),
            ),
        ];
        if !failed_hosts.is_empty() {
            facts.push(fact("Failed hosts", &failed_hosts.join(", ")));
        }
        facts.extend(Self::run_facts(s));

        let mut sections = Vec::new();
        if !s.hosts.is_empty() {
            let mut recap: Vec<Value> = s
                .hosts
                .iter()
                .take(self.c.max_hosts)
                .map(|h| {
                    fact(
                        &h.host,
                        &format!(
                            "ok {} · changed {} · failed {} · unreachable {} · skipped {}",
                            h.ok, h.changed, h.failures, h.unreachable, h.skipped
                        ),
                    )
                })
                .collect();
            if s.hosts.len() > self.c.max_hosts {
                recap.push(fact(
                    "…",
                    &format!("{} more host(s)", s.hosts.len() - self.c.max_hosts),
                ));
            }
            sections.push(vec![
                json!({ "type": "TextBlock", "text": "PLAY RECAP", "weight": "Bolder", "separator": true, "wrap": true }),
                json!({ "type": "FactSet", "facts": recap }),
            ]);
        }
        if !s.failures.is_empty() {
            let mut part = vec![
                json!({ "type": "TextBlock", "text": "Failures", "weight": "Bolder", "separator": true, "wrap": true }),
            ];
            for f in s.failures.iter().take(self.c.max_failures) {
                part.push(json!({
                    "type": "TextBlock",
                    "wrap": true,
                    "text": truncate(&format!(
                        "{} {} '{}': {}",
                        f.host,
                        if f.unreachable { "unreachable at" } else { "failed" },
                        f.task,
                        truncate(&f.message, 300)
                    ), TEXT_MAX),
                }));
            }
            let more =
                s.failures.len().saturating_sub(self.c.max_failures) + s.failures_dropped as usize;
            if more > 0 {
                part.push(text_block(&format!("… and {more} more")));
            }
            sections.push(part);
        }
        if let Some(run) = s.run_custom_stats().filter(|r| !r.is_empty()) {
            let stats: Vec<Value> = run
                .iter()
                .take(20)
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    fact(k, &v)
                })
                .collect();
            sections.push(vec![
                json!({ "type": "TextBlock", "text": "Custom stats", "weight": "Bolder", "separator": true, "wrap": true }),
                json!({ "type": "FactSet", "facts": stats }),
            ]);
        }
        Some(Card {
            title: format!("{pb} {}", status.as_str()),
            color: if status == RunStatus::Failed {
                "Attention"
            } else {
                "Good"
            },
            text,
            facts,
            sections,
            link: self.c.run_url.as_ref().map(|t| s.run_url(t)),
        })
    }
}

/// The Workflows webhook body for an Adaptive Card.
pub fn envelope(content: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{ "contentType": CARD_CONTENT_TYPE, "contentUrl": null, "content": content }],
    })
}

herald_sdk::export_plugin!(Teams);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::summary::MemoryStore;
    use herald_sdk::testing::{host_event, stats_event, FakeHost};
    use herald_sdk::EventKind;

    const URL: &str = "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=S3CR3T";

    fn teams(extra: &str) -> Teams {
        herald_sdk::build::<Teams>(&format!(r#"{{"webhook_url":"{URL}"{extra}}}"#)).unwrap()
    }

    fn failed() -> Event {
        host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install pkg",
            Some(r#"{"msg":"No package nginxx"}"#),
        )
    }

    fn finished(hosts: &[(&str, u32, u32, u32, u32, u32)], custom: Option<&str>) -> RunSummary {
        let t = RunTracker::with_store("", MemoryStore::default());
        let mut start = herald_sdk::testing::event(EventKind::PlaybookOnStart, "r1", "site.yml");
        start.sequence = 1;
        t.observe(&start);
        let mut f = failed();
        f.sequence = 2;
        if hosts.iter().any(|h| h.3 > 0) {
            t.observe(&f);
        }
        let mut st = stats_event("r1", "site.yml", hosts, custom);
        st.sequence = 3;
        match t.observe(&st) {
            Observed::Finished(s) => s,
            o => panic!("{o:?}"),
        }
    }

    /// The card's shape as the fake (plugins/testing/fakes.py) checks it.
    fn check(msg: &Value) {
        assert_eq!(msg["type"], "message");
        let att = msg["attachments"].as_array().unwrap();
        assert_eq!(att.len(), 1);
        assert_eq!(att[0]["contentType"], CARD_CONTENT_TYPE);
        let c = &att[0]["content"];
        assert_eq!(c["type"], "AdaptiveCard");
        assert_eq!(c["version"], CARD_VERSION);
        for b in c["body"].as_array().unwrap() {
            match b["type"].as_str().unwrap() {
                "TextBlock" => assert!(!b["text"].as_str().unwrap().is_empty()),
                "FactSet" => {
                    for f in b["facts"].as_array().unwrap() {
                        assert!(f["title"].is_string() && f["value"].is_string(), "{f}");
                    }
                }
                other => panic!("unexpected element {other}"),
            }
        }
        assert!(serde_json::to_vec(msg).unwrap().len() <= MESSAGE_MAX_BYTES);
    }

    #[test]
    fn failure_card() {
        let t = teams(r#","run_url":"https://herald.example.com/runs/{run_id}""#);
        let e = failed();
        let card = t.failure_card(&e, &RunSummary::for_event(&e)).unwrap();
        assert_eq!(card.title, "site.yml: task 'install pkg' failed on web2");
        assert_eq!(card.text, "No package nginxx");
        let m = t.message(card);
        check(&m);
        let c = &m["attachments"][0]["content"];
        assert_eq!(c["body"][0]["color"], "Attention");
        assert_eq!(c["actions"][0]["url"], "https://herald.example.com/runs/r1");
        assert_eq!(c["msteams"]["width"], "Full");
        let facts = c["body"][2]["facts"].as_array().unwrap();
        assert!(facts.contains(&json!({"title": "Module", "value": "ansible.builtin.command"})));
        assert!(facts.contains(&json!({"title": "Play", "value": "Play one"})));

        let mut ign = e.clone();
        ign.ignore_errors = true;
        assert!(t.failure_card(&ign, &RunSummary::for_event(&e)).is_none());
        let ok = host_event(EventKind::RunnerOnOk, Status::Ok, "r1", "p", "h", "t", None);
        assert!(t.failure_card(&ok, &RunSummary::for_event(&e)).is_none());
        assert!(teams(r#","failure_messages":false"#)
            .failure_card(&e, &RunSummary::for_event(&e))
            .is_none());
    }

    #[test]
    fn summary_cards() {
        let ok = finished(&[("web1", 3, 1, 0, 0, 1)], None);
        assert!(
            teams("").summary_card(&ok).is_none(),
            "success is quiet by default"
        );
        let t = teams(r#","notify_on_success":true,"full_width":false"#);
        let card = t.summary_card(&ok).unwrap();
        assert_eq!(card.title, "site.yml successful");
        assert_eq!(card.color, "Good");
        assert_eq!(
            card.text,
            "1 host(s) in 1m 00s: ok=3 changed=1 failed=0 unreachable=0 skipped=1"
        );
        let m = t.message(card);
        check(&m);
        assert!(m["attachments"][0]["content"].get("msteams").is_none());

        let bad = finished(
            &[("web1", 3, 1, 0, 0, 0), ("web2", 1, 0, 1, 0, 0)],
            Some(r#"{"_run":{"version":"1.2.3","count":4}}"#),
        );
        let card = t.summary_card(&bad).unwrap();
        assert_eq!(card.color, "Attention");
        assert!(
            card.text
                .ends_with("\n\n- web2 failed: task 'install pkg': No package nginxx"),
            "{}",
            card.text
        );
        let m = t.message(card);
        check(&m);
        let all = m.to_string();
        assert!(all.contains(r#"{"title":"web2","value":"ok 1 · changed 0 · failed 1 · unreachable 0 · skipped 0"}"#), "{all}");
        assert!(all.contains(r#"{"title":"version","value":"1.2.3"}"#));
        assert!(all.contains(r#"{"title":"Failed hosts","value":"web2"}"#));
    }

    #[test]
    fn big_runs_stay_under_the_size_limit() {
        let t = teams(r#","notify_on_success":true,"max_hosts":100"#);
        let names: Vec<String> = (0..300)
            .map(|i| format!("host-{i:03}-{}", "x".repeat(200)))
            .collect();
        let hosts: Vec<(&str, u32, u32, u32, u32, u32)> =
            names.iter().map(|n| (n.as_str(), 1, 1, 1, 0, 0)).collect();
        let mut card = t.summary_card(&finished(&hosts, None)).unwrap();
        card.text = "y".repeat(40_000);
        let m = t.message(card);
        check(&m);
        // The recap was cut, not the title and facts.
        let c = &m["attachments"][0]["content"];
        assert_eq!(c["body"][0]["text"], "site.yml failed");
        assert!(c["body"][2]["facts"].as_array().unwrap().len() >= 4);
    }

    #[test]
    fn handle_posts_the_card_and_maps_answers() {
        let host = FakeHost::new(&["https://prod-01.westeurope.logic.azure.com"]);
        host.set_now_ms(0);
        host.respond(URL, 429, &[("Retry-After", "7")], "")
            .respond(URL, 202, &[], "")
            .respond(
                URL,
                400,
                &[],
                r#"{"error":{"code":"InvalidRequestContent"}}"#,
            );
        let mut t = teams("");
        let e = EventRef::from(failed());
        match t.handle(&e, 1) {
            Outcome::Retryable(r) => {
                assert_eq!(r.retry_after_ms, Some(7000));
                assert!(!r.reason.contains("S3CR3T"), "{}", r.reason);
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(t.handle(&e, 2), Outcome::Ok));
        match t.handle(&e, 3) {
            Outcome::Permanent(p) => {
                assert!(p.contains("HTTP 400") && !p.contains("S3CR3T"), "{p}")
            }
            o => panic!("{o:?}"),
        }
        let sent = host.requests();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[0].header("content-type"), Some("application/json"));
        check(&sent[0].json());
        // An ok event sends nothing.
        let ok = EventRef::from(host_event(
            EventKind::RunnerOnOk,
            Status::Ok,
            "r1",
            "p",
            "h",
            "t",
            None,
        ));
        assert!(matches!(t.handle(&ok, 1), Outcome::Ok));
        assert_eq!(host.requests().len(), 3);
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_eq!(human_duration(125_000), "2m 05s");
        for (json, want) in [
            (r#"{}"#.to_string(), "missing field `webhook_url`"),
            (r#"{"webhook_url":"teams"}"#.into(), "`webhook_url`"),
            (
                format!(r#"{{"webhook_url":"{URL}","max_hosts":0}}"#),
                "`max_hosts`",
            ),
            (
                format!(r#"{{"webhook_url":"{URL}","max_failures":51}}"#),
                "`max_failures`",
            ),
            (
                format!(r#"{{"webhook_url":"{URL}","run_url":" "}}"#),
                "`run_url`",
            ),
            (
                format!(r#"{{"webhook_url":"{URL}","notify":true}}"#),
                "unknown field `notify`",
            ),
        ] {
            let err = herald_sdk::build::<Teams>(&json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
