//! Herald `slack` sink: Slack incoming webhook messages.
//!
//! - an immediate message per failure (host, task, error message, playbook), when
//!   `failure_messages` is on (default);
//! - a run summary at the end of each failed run, and of successful runs with
//!   `notify_on_success`: status, duration, per-host ok/changed/failed/unreachable/skipped,
//!   failed hosts, `set_stats` run values;
//! - Block Kit `blocks` with a plain `text` fallback (notifications and old clients show it);
//!   optional `channel`, `username`, `icon_emoji`/`icon_url` (for legacy webhooks that honour them);
//! - message templates (`[plugins.<name>.templates]`, rendered by the host): `failure_text`
//!   and `summary_text` (defaults below: the failed hosts with their tasks and messages),
//!   `failure_blocks` and `summary_blocks` (a JSON array of Block Kit blocks). A user's
//!   `*_text` without `*_blocks` is sent as the whole message (no blocks), exactly;
//! - 200 `ok` is success; 429 honours `Retry-After`; 5xx retryable; Slack's 4xx plain-text errors
//!   (`invalid_payload`, `channel_not_found`, ...) are permanent and logged.

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

/// Slack's limits (Block Kit reference).
pub const HEADER_MAX: usize = 150;
pub const SECTION_MAX: usize = 3000;
pub const FIELD_MAX: usize = 2000;
pub const FIELDS_MAX: usize = 10;
/// Characters of `text` (Slack truncates messages over 40 000).
pub const TEXT_MAX: usize = 3000;

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The incoming webhook URL (`https://hooks.slack.com/services/...`). It is a secret.
    pub webhook_url: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Send a summary for successful runs too.
    #[serde(default)]
    pub notify_on_success: bool,
    /// Send a message at each failed or unreachable host.
    #[serde(default = "yes")]
    pub failure_messages: bool,
    /// Send the run summary (failed runs; successful ones with `notify_on_success`).
    #[serde(default = "yes")]
    pub run_summary: bool,
    /// Text put before failure messages and failed summaries, such as `<!here>` or `<@U123>`.
    #[serde(default)]
    pub mention: Option<String>,
    /// Hosts listed in a summary's table.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
    /// A link to the run; `{run_id}`, `{tenant}` and `{playbook}` are replaced.
    #[serde(default)]
    pub run_url: Option<String>,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_max_hosts() -> usize {
    20
}

/// Escapes `&`, `<`, `>` for Slack's mrkdwn and plain text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

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

/// The default `failure_text`: a failed or unreachable host's task and message.
pub const FAILURE_TEXT: &str = "\
:x: {{ run.playbook or 'ad-hoc run' }}: task '{{ event.task or '?' }}' {{ event.status }} on {{ event.host or '?' }}: \
{{ event.message or '(no message)' }}";

/// The default `summary_text`: status, duration, the recap's totals, then each failed host
/// with its failed tasks and their messages, the `set_stats` values and the run's link.
pub const SUMMARY_TEXT: &str = "\
{{ ':red_circle:' if run.status == 'failed' else ':large_green_circle:' }} \
{{ run.playbook or 'ad-hoc run' }} {{ run.status }}\
{% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}: \
{{ summary.hosts }} host(s), ok={{ summary.totals.ok }} changed={{ summary.totals.changed }} \
failed={{ summary.totals.failures }} unreachable={{ summary.totals.unreachable }} skipped={{ summary.totals.skipped }}
{% for h in summary.failed_hosts %}
• {{ h.host }} {{ 'unreachable' if h.unreachable else 'failed' }}\
{% for t in h.tasks %}{{ ':' if loop.first else ';' }} task '{{ t.task }}': {{ t.message | truncate(200) }}{% endfor %}

{% endfor %}
{% if summary.failures_more %}… and {{ summary.failures_more }} more failure(s)
{% endif %}
{% if summary.set_stats._run %}stats:{% for k, v in summary.set_stats._run | items %} {{ k }}={{ v | tojson }}{% endfor %}

{% endif %}
{% if run_url %}{{ run_url }}{% endif %}";

/// The configured plugin.
pub struct Slack {
    c: Config,
    url: Url,
    tracker: RunTracker,
}

impl Plugin for Slack {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] = &[
        ("failure_text", FAILURE_TEXT),
        ("summary_text", SUMMARY_TEXT),
    ];

    fn new(c: Config) -> Result<Self, String> {
        let url = config::granted_url("webhook_url", &c.webhook_url)?;
        config::check_timeout_ms(c.timeout_ms)?;
        config::in_range("max_hosts", c.max_hosts as u64, 1, 100)?;
        config::not_blank("channel", c.channel.as_deref())?;
        if c.icon_emoji.is_some() && c.icon_url.is_some() {
            return Err("config key `icon_url`: set either icon_emoji or icon_url".into());
        }
        Ok(Slack {
            c,
            url,
            tracker: RunTracker::host("slack:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        match self.tracker.observe(event) {
            Observed::AlreadyFinished => Outcome::Ok,
            Observed::Progress(s) => match self.failure_message(event, &s) {
                Some(mut msg) => match self.apply_templates(event, &mut msg, "failure", true) {
                    Ok(()) => self.send(&msg, event),
                    Err(e) => herald_sdk::permanent(e),
                },
                None => Outcome::Ok,
            },
            Observed::Finished(s) => {
                let failed = s.status() == RunStatus::Failed;
                let o = match self.summary_message(&s) {
                    Some(mut msg) => {
                        match self.apply_templates(event, &mut msg, "summary", failed) {
                            Ok(()) => self.send(&msg, event),
                            Err(e) => herald_sdk::permanent(e),
                        }
                    }
                    None => Outcome::Ok,
                };
                self.tracker.finish(&s.run_id, o)
            }
        }
    }
}

impl Slack {
    /// Puts the rendered templates of message `kind` (`failure`, `summary`) into `msg`: the
    /// `text` from `<kind>_text` (the default gets the configured `mention` before it when
    /// `mention` holds); the `blocks` from the user's `<kind>_blocks`, none when the user gave
    /// only a text (so it is the whole message), else the built-in blocks.
    pub fn apply_templates(
        &self,
        event: &EventRef<'_>,
        msg: &mut Value,
        kind: &str,
        mention: bool,
    ) -> Result<(), String> {
        let text_name = format!("{kind}_text");
        let blocks_name = format!("{kind}_blocks");
        if let Some(text) = event.render(&text_name)? {
            let user = templates::user_configured(&text_name);
            let text = match (&self.c.mention, user || !mention) {
                (Some(m), false) => format!("{m} {text}"),
                _ => text,
            };
            msg["text"] = json!(truncate(&text, TEXT_MAX));
            if user {
                if let Some(m) = msg.as_object_mut() {
                    m.remove("blocks");
                }
            }
        }
        if templates::user_configured(&blocks_name) {
            if let Some(rendered) = event.render(&blocks_name)? {
                let blocks: Value = serde_json::from_str(&rendered).map_err(|e| {
                    format!("template `{blocks_name}` did not render a JSON array of blocks: {e}")
                })?;
                if !blocks.is_array() {
                    return Err(format!(
                        "template `{blocks_name}` did not render a JSON array of blocks"
                    ));
                }
                msg["blocks"] = blocks;
            }
        }
        Ok(())
    }

    fn send(&self, msg: &Value, event: &Event) -> Outcome {
        let (o, resp) = Request::new(Method::Post, self.url.clone())
            .timeout_ms(self.c.timeout_ms)
            .json(msg)
            .deliver();
        match (&o, resp) {
            (Outcome::Ok, Some(r)) if r.text().trim() != "ok" => log::warn(&format!(
                "event {}: Slack answered {} with `{}` instead of `ok`",
                event.id,
                r.status,
                truncate(&r.text(), 200)
            )),
            (Outcome::Permanent(p), _) => log::error(&format!(
                "event {}: Slack refused the message: {p}",
                event.id
            )),
            (Outcome::Retryable(r), _) => log::warn(&format!(
                "event {}: Slack retryable: {}",
                event.id, r.reason
            )),
            _ => {}
        }
        o
    }

    fn envelope(&self, text: String, blocks: Vec<Value>) -> Value {
        let mut m = json!({ "text": truncate(&text, TEXT_MAX), "blocks": blocks });
        if let Some(c) = &self.c.channel {
            m["channel"] = json!(c);
        }
        if let Some(u) = &self.c.username {
            m["username"] = json!(u);
        }
        if let Some(i) = &self.c.icon_emoji {
            m["icon_emoji"] = json!(i);
        }
        if let Some(i) = &self.c.icon_url {
            m["icon_url"] = json!(i);
        }
        m
    }

    fn context(&self, s: &RunSummary) -> Value {
        let mut parts = vec![
            format!("run `{}`", esc(&s.run_id)),
            format!("tenant `{}`", esc(&s.tenant)),
        ];
        if let Some(c) = &s.controller {
            parts.push(format!("controller `{}`", esc(c)));
        }
        if let Some(l) = self.c.run_url.as_ref().map(|t| s.run_url(t)) {
            parts.push(format!("<{}|open in Herald>", l));
        }
        json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": truncate(&parts.join(" · "), SECTION_MAX) }] })
    }

    /// The message for a failed or unreachable host, if the event is one and messages are on.
    pub fn failure_message(&self, e: &Event, s: &RunSummary) -> Option<Value> {
        if !self.c.failure_messages {
            return None;
        }
        let what = HostFailure::of(e)?.as_str();
        let host = e.host.as_deref().unwrap_or("?");
        let task = e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("?");
        let action = e.task.as_ref().map(|t| t.action.as_str()).unwrap_or("");
        let play = e.play.as_ref().map(|p| p.name.as_str()).unwrap_or("");
        let msg = result_message(e.res.as_deref(), 1500).unwrap_or_else(|| "(no message)".into());
        let pb = playbook_name(&e.run.playbook);
        let mention = self
            .c
            .mention
            .as_ref()
            .map(|m| format!("{m} "))
            .unwrap_or_default();
        let text = format!("{mention}:x: {pb}: task '{task}' {what} on {host}: {msg}");
        let icon = if what == "unreachable" {
            ":no_entry:"
        } else {
            ":x:"
        };
        let body = format!(
            "{mention}{icon} *{}*: task *{}* {what} on `{}`\n```{}```",
            esc(pb),
            esc(task),
            esc(host),
            esc(&truncate(&msg, 2500)).replace("```", "ˋˋˋ")
        );
        let mut fields = vec![json!({"type": "mrkdwn", "text": format!("*Host*\n{}", esc(host))})];
        if !play.is_empty() {
            fields.push(json!({"type": "mrkdwn", "text": truncate(&format!("*Play*\n{}", esc(play)), FIELD_MAX)}));
        }
        if !action.is_empty() {
            fields.push(json!({"type": "mrkdwn", "text": truncate(&format!("*Module*\n`{}`", esc(action)), FIELD_MAX)}));
        }
        if let Some(p) = e.task.as_ref().and_then(|t| t.path.as_deref()) {
            fields.push(json!({"type": "mrkdwn", "text": truncate(&format!("*Task path*\n{}", esc(p)), FIELD_MAX)}));
        }
        let blocks = vec![
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(&body, SECTION_MAX) } }),
            json!({ "type": "section", "fields": fields }),
            self.context(s),
        ];
        Some(self.envelope(text, blocks))
    }

    /// The end-of-run summary, if one is due for this run.
    pub fn summary_message(&self, s: &RunSummary) -> Option<Value> {
        let status = s.status();
        if !self.c.run_summary || (status != RunStatus::Failed && !self.c.notify_on_success) {
            return None;
        }
        let failed = status == RunStatus::Failed;
        let icon = if failed {
            ":red_circle:"
        } else {
            ":large_green_circle:"
        };
        let pb = playbook_name(&s.playbook);
        let duration = s
            .duration_ms()
            .map(human_duration)
            .unwrap_or_else(|| "unknown".into());
        let failed_hosts = s.failed_hosts();
        let total =
            |f: fn(&herald_sdk::summary::HostCounters) -> u32| s.hosts.iter().map(f).sum::<u32>();
        let (ok, changed, failures, unreachable, skipped) = (
            total(|h| h.ok),
            total(|h| h.changed),
            total(|h| h.failures),
            total(|h| h.unreachable),
            total(|h| h.skipped),
        );
        let mention = if failed {
            self.c
                .mention
                .as_ref()
                .map(|m| format!("{m} "))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut text = format!(
            "{mention}{icon} {pb} {} in {duration}: {} host(s), ok={ok} changed={changed} failed={failures} unreachable={unreachable} skipped={skipped}",
            status.as_str(),
            s.hosts.len()
        );
        if !failed_hosts.is_empty() {
            text.push_str(&format!("; failed hosts: {}", failed_hosts.join(", ")));
        }

        let mut blocks = vec![json!({
            "type": "header",
            "text": { "type": "plain_text", "text": truncate(&format!("{pb} {}", status.as_str()), HEADER_MAX), "emoji": true }
        })];
        if !mention.is_empty() {
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(mention.trim(), SECTION_MAX) } }));
        }
        let mut fields = vec![
            format!("*Status*\n{icon} {}", status.as_str()),
            format!("*Duration*\n{duration}"),
            format!("*Hosts*\n{}", s.hosts.len()),
            format!("*Tasks*\nok {ok} · changed {changed} · failed {failures} · unreachable {unreachable} · skipped {skipped}"),
        ];
        if !failed_hosts.is_empty() {
            fields.push(format!("*Failed hosts*\n{}", esc(&failed_hosts.join(", "))));
        }
        blocks.push(json!({
            "type": "section",
            "fields": fields.iter().take(FIELDS_MAX).map(|f| json!({"type": "mrkdwn", "text": truncate(f, FIELD_MAX)})).collect::<Vec<_>>()
        }));
        if !s.hosts.is_empty() {
            let width = s
                .hosts
                .iter()
                .take(self.c.max_hosts)
                .map(|h| h.host.chars().count())
                .max()
                .unwrap_or(4)
                .clamp(4, 40);
            let mut table = format!(
                "{:<width$}  {:>4} {:>7} {:>6} {:>11} {:>7}\n",
                "host", "ok", "changed", "failed", "unreachable", "skipped"
            );
            for h in s.hosts.iter().take(self.c.max_hosts) {
                table.push_str(&format!(
                    "{:<width$}  {:>4} {:>7} {:>6} {:>11} {:>7}\n",
                    truncate(&h.host, width),
                    h.ok,
                    h.changed,
                    h.failures,
                    h.unreachable,
                    h.skipped
                ));
            }
            if s.hosts.len() > self.c.max_hosts {
                table.push_str(&format!(
                    "… and {} more host(s)\n",
                    s.hosts.len() - self.c.max_hosts
                ));
            }
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(&format!("```{}```", esc(&table)), SECTION_MAX) } }));
        }
        if !s.failures.is_empty() {
            let mut lines = String::from("*Failures*\n");
            for f in s.failures.iter().take(10) {
                lines.push_str(&format!(
                    "• `{}` {} *{}*: {}\n",
                    esc(&f.host),
                    if f.unreachable {
                        "unreachable at"
                    } else {
                        "failed"
                    },
                    esc(&f.task),
                    esc(&truncate(&f.message, 200))
                ));
            }
            let more = s.failures.len().saturating_sub(10) + s.failures_dropped as usize;
            if more > 0 {
                lines.push_str(&format!("… and {more} more\n"));
            }
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(&lines, SECTION_MAX) } }));
        }
        if let Some(run) = s.run_custom_stats().filter(|r| !r.is_empty()) {
            let mut lines = String::from("*Custom stats*\n");
            for (k, v) in run.iter().take(20) {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                lines.push_str(&format!("• {}: `{}`\n", esc(k), esc(&truncate(&v, 200))));
            }
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(&lines, SECTION_MAX) } }));
            let compact: Vec<String> = run
                .iter()
                .take(10)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            text.push_str(&format!("; stats: {}", compact.join(" ")));
        }
        blocks.push(self.context(s));
        Some(self.envelope(text, blocks))
    }
}

herald_sdk::export_plugin!(Slack);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::summary::MemoryStore;
    use herald_sdk::testing::{host_event, stats_event};
    use herald_sdk::EventKind;

    fn slack(extra: &str) -> Slack {
        herald_sdk::build::<Slack>(&format!(
            r#"{{"webhook_url":"https://hooks.slack.com/services/T0/B0/XYZ"{extra}}}"#
        ))
        .unwrap()
    }

    fn finished(hosts: &[(&str, u32, u32, u32, u32, u32)], custom: Option<&str>) -> RunSummary {
        let t = RunTracker::with_store("", MemoryStore::default());
        let mut start = herald_sdk::testing::event(EventKind::PlaybookOnStart, "r1", "site.yml");
        start.sequence = 1;
        t.observe(&start);
        let mut f = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install <pkg>",
            Some(r#"{"msg":"No package `nginxx` & more"}"#),
        );
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

    fn check_limits(m: &Value) {
        assert!(m["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
        let blocks = m["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert!(b["text"]["text"].as_str().unwrap().chars().count() <= HEADER_MAX)
                }
                "section" => {
                    if let Some(t) = b["text"]["text"].as_str() {
                        assert!(t.chars().count() <= SECTION_MAX);
                    }
                    if let Some(f) = b["fields"].as_array() {
                        assert!(f.len() <= FIELDS_MAX);
                        assert!(f
                            .iter()
                            .all(|f| f["text"].as_str().unwrap().chars().count() <= FIELD_MAX));
                    }
                    assert!(b.get("text").is_some() || b.get("fields").is_some());
                }
                "context" => assert!(!b["elements"].as_array().unwrap().is_empty()),
                other => panic!("unexpected block {other}"),
            }
        }
    }

    #[test]
    fn failure_message() {
        let s = slack(r##","channel":"#ops","username":"Herald","mention":"<!here>""##);
        let e = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install <pkg>",
            Some(r#"{"msg":"No package `nginxx` & more"}"#),
        );
        let m = s.failure_message(&e, &RunSummary::for_event(&e)).unwrap();
        assert_eq!(
            m["text"],
            "<!here> :x: site.yml: task 'install <pkg>' failed on web2: No package `nginxx` & more"
        );
        assert_eq!(m["channel"], "#ops");
        assert_eq!(m["username"], "Herald");
        let body = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            body.contains("task *install &lt;pkg&gt;* failed on `web2`"),
            "{body}"
        );
        assert!(body.contains("&amp; more"));
        check_limits(&m);

        let mut ign = e.clone();
        ign.ignore_errors = true;
        assert!(s
            .failure_message(&ign, &RunSummary::for_event(&e))
            .is_none());
        let ok = host_event(EventKind::RunnerOnOk, Status::Ok, "r1", "p", "h", "t", None);
        assert!(s.failure_message(&ok, &RunSummary::for_event(&e)).is_none());
        let off = slack(r#","failure_messages":false"#);
        assert!(off
            .failure_message(&e, &RunSummary::for_event(&e))
            .is_none());
    }

    #[test]
    fn run_summaries() {
        let s = slack("");
        let ok = finished(&[("web1", 3, 1, 0, 0, 1)], None);
        assert!(
            s.summary_message(&ok).is_none(),
            "success is quiet by default"
        );
        let s = slack(r#","notify_on_success":true"#);
        let m = s.summary_message(&ok).unwrap();
        assert_eq!(m["text"], ":large_green_circle: site.yml successful in 1m 00s: 1 host(s), ok=3 changed=1 failed=0 unreachable=0 skipped=1");
        check_limits(&m);

        let bad = finished(
            &[("web1", 3, 1, 0, 0, 0), ("web2", 1, 0, 1, 0, 0)],
            Some(r#"{"_run":{"version":"1.2.3","count":4}}"#),
        );
        let m = s.summary_message(&bad).unwrap();
        let text = m["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                ":red_circle: site.yml failed in 1m 00s: 2 host(s), ok=4 changed=1 failed=1"
            ),
            "{text}"
        );
        assert!(text.contains("failed hosts: web2"));
        assert!(text.contains("stats: count=4 version=\"1.2.3\""), "{text}");
        let all = m.to_string();
        assert!(all.contains("Custom stats"));
        assert!(all.contains("*Failures*"));
        assert!(all.contains("web2"));
        check_limits(&m);
    }

    #[test]
    fn big_runs_stay_within_limits() {
        let s = slack(r#","notify_on_success":true,"max_hosts":100"#);
        let names: Vec<String> = (0..300)
            .map(|i| format!("host-{i:03}-{}", "x".repeat(60)))
            .collect();
        let hosts: Vec<(&str, u32, u32, u32, u32, u32)> =
            names.iter().map(|n| (n.as_str(), 1, 1, 1, 0, 0)).collect();
        let m = s.summary_message(&finished(&hosts, None)).unwrap();
        check_limits(&m);
    }

    #[test]
    fn helpers_and_config() {
        assert_eq!(human_duration(4200), "4.2s");
        assert_eq!(human_duration(125_000), "2m 05s");
        assert_eq!(human_duration(3_723_000), "1h 02m 03s");
        assert_eq!(esc("a<b>&c"), "a&lt;b&gt;&amp;c");
        for (json, want) in [
            (r#"{}"#, "missing field `webhook_url`"),
            (r#"{"webhook_url":"slack"}"#, "`webhook_url`"),
            (
                r#"{"webhook_url":"https://h/x","max_hosts":0}"#,
                "`max_hosts`",
            ),
            (
                r#"{"webhook_url":"https://h/x","notify_on_success":"yes"}"#,
                "`notify_on_success`",
            ),
            (
                r#"{"webhook_url":"https://h/x","icon_emoji":":a:","icon_url":"https://i"}"#,
                "`icon_url`",
            ),
            (
                r##"{"webhook_url":"https://h/x","chanel":"#x"}"##,
                "unknown field `chanel`",
            ),
        ] {
            let err = herald_sdk::build::<Slack>(json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
