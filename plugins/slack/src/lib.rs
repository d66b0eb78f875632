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
//!   `failure_blocks` and `summary_blocks` (a JSON array of Block Kit blocks; defaults in
//!   `templates/`, within Block Kit's limits). A user's `*_text` without `*_blocks` is sent
//!   as the whole message (no blocks), exactly;
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

/// The default `failure_blocks` and `summary_blocks` (Block Kit, rendered by the host), and
/// the macros both use.
pub const FAILURE_BLOCKS: &str = include_str!("../templates/failure_blocks.j2");
pub const SUMMARY_BLOCKS: &str = include_str!("../templates/summary_blocks.j2");
pub const BLOCKS_COMMON: &str = include_str!("../templates/common.j2");

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

    /// The texts, and the Block Kit blocks with this instance's `mention`, `max_hosts` and
    /// `run_url` set before them as `cfg_*` variables (JSON strings are Jinja literals).
    fn default_templates(&self) -> Vec<(String, String)> {
        let literal = |v: &Option<String>| {
            v.as_ref()
                .and_then(|s| serde_json::to_string(s).ok())
                .unwrap_or_else(|| "none".into())
        };
        let prelude = format!(
            "{{%- set cfg_mention = {} %}}{{%- set cfg_max_hosts = {} %}}{{%- set cfg_run_url = {} %}}\n{BLOCKS_COMMON}",
            literal(&self.c.mention),
            self.c.max_hosts,
            literal(&self.c.run_url),
        );
        let mut all: Vec<(String, String)> = Self::TEMPLATES
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        all.push((
            "failure_blocks".into(),
            format!("{prelude}{FAILURE_BLOCKS}"),
        ));
        all.push((
            "summary_blocks".into(),
            format!("{prelude}{SUMMARY_BLOCKS}"),
        ));
        all
    }

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
    /// `mention` holds); the `blocks` from `<kind>_blocks` (the user's, else the default), none
    /// when the user gave only a text (so it is the whole message, exactly).
    pub fn apply_templates(
        &self,
        event: &EventRef<'_>,
        msg: &mut Value,
        kind: &str,
        mention: bool,
    ) -> Result<(), String> {
        let text_name = format!("{kind}_text");
        let blocks_name = format!("{kind}_blocks");
        let user_text = templates::user_configured(&text_name);
        if let Some(text) = event.render(&text_name)? {
            let text = match (&self.c.mention, user_text || !mention) {
                (Some(m), false) => format!("{m} {text}"),
                _ => text,
            };
            msg["text"] = json!(truncate(&text, TEXT_MAX));
        }
        if user_text && !templates::user_configured(&blocks_name) {
            return Ok(());
        }
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

    /// The message around `text`: the legacy webhook fields the config sets. Its `blocks`
    /// come from the `*_blocks` templates the host renders ([`Slack::apply_templates`]).
    fn envelope(&self, text: String) -> Value {
        let mut m = json!({ "text": truncate(&text, TEXT_MAX) });
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

    /// The message for a failed or unreachable host, if the event is one and messages are on.
    /// Its text is the fallback of `failure_text` (a native test, where no host renders).
    pub fn failure_message(&self, e: &Event, _s: &RunSummary) -> Option<Value> {
        if !self.c.failure_messages {
            return None;
        }
        let what = HostFailure::of(e)?.as_str();
        let host = e.host.as_deref().unwrap_or("?");
        let task = e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("?");
        let msg = result_message(e.res.as_deref(), 1500).unwrap_or_else(|| "(no message)".into());
        let pb = playbook_name(&e.run.playbook);
        let mention = self
            .c
            .mention
            .as_ref()
            .map(|m| format!("{m} "))
            .unwrap_or_default();
        Some(self.envelope(format!(
            "{mention}:x: {pb}: task '{task}' {what} on {host}: {msg}"
        )))
    }

    /// The end-of-run summary, if one is due for this run. Its text is the fallback of
    /// `summary_text`.
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
        let mention = match (&self.c.mention, failed) {
            (Some(m), true) => format!("{m} "),
            _ => String::new(),
        };
        let mut text = format!(
            "{mention}{icon} {pb} {} in {duration}: {} host(s), ok={} changed={} failed={} unreachable={} skipped={}",
            status.as_str(),
            s.hosts.len(),
            total(|h| h.ok),
            total(|h| h.changed),
            total(|h| h.failures),
            total(|h| h.unreachable),
            total(|h| h.skipped),
        );
        if !failed_hosts.is_empty() {
            text.push_str(&format!("; failed hosts: {}", failed_hosts.join(", ")));
        }
        if let Some(run) = s.run_custom_stats().filter(|r| !r.is_empty()) {
            let compact: Vec<String> = run
                .iter()
                .take(10)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            text.push_str(&format!("; stats: {}", compact.join(" ")));
        }
        Some(self.envelope(text))
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
        assert!(
            m.get("blocks").is_none(),
            "blocks come from the host's templates"
        );
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
        // The blocks of big runs are checked through the host, against the strict fake
        // (tests/test_plugins_http_sinks.py).
    }

    #[test]
    fn helpers_and_config() {
        assert_eq!(human_duration(4200), "4.2s");
        assert_eq!(human_duration(125_000), "2m 05s");
        assert_eq!(human_duration(3_723_000), "1h 02m 03s");
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
