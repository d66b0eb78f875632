//! Herald `email` sink: mail over SMTP.
//!
//! - a mail per failed or unreachable host (`failure_mails`, on by default), and a summary
//!   mail at the end of each run (`summary = "always"`, `"failed"` or `"never"`);
//! - each mail has a plain-text and an HTML part, from message templates the user may replace
//!   (`failure_subject`, `failure_text`, `failure_html`, `summary_subject`, `summary_text`,
//!   `summary_html`; an HTML template that renders empty leaves a text-only mail);
//! - several recipients; `Message-ID` is `<event id>.herald@<from's domain>`, so a mail sent
//!   again after a retry is recognisable as the same one (at-least-once delivery);
//! - SMTP over `wasi:sockets` to an `ip:port` of the instance's `allow_sockets`: STARTTLS
//!   (default, required when `tls = "starttls"`), implicit TLS (`tls = "implicit"`, port 465)
//!   or none (`tls = "none"`, a local relay); TLS is done by the host (`wasi:tls`), which
//!   checks the server's certificate for `server_name` against the public roots and the
//!   instance's `tls_ca_file`. AUTH PLAIN or LOGIN, only over TLS;
//! - a 4xx reply, a timeout or a broken connection is retryable; a 5xx reply (or a TLS
//!   failure, a missing STARTTLS) is permanent and dead-letters the event with the server's
//!   reply. A recipient refused with a 5xx is skipped (logged, counted) while the others get
//!   the mail.

pub mod mime;
pub mod smtp;

use herald_sdk::net::{NetError, Stream};
use herald_sdk::{
    config, grants, is_host_result, log, metrics, playbook_name, result_message, EventKind,
    EventRef, HostFailure, Outcome, Plugin,
};
use mime::{Mail, Mailbox};
use serde::Deserialize;
use smtp::{AuthMechanism, Credentials, Security, Session, SmtpError};
use std::net::SocketAddr;

/// When the run summary mail goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryWhen {
    Always,
    Failed,
    Never,
}

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SMTP server, `ip:port` (no name lookup); must be in `allow_sockets`.
    pub server: String,
    /// `starttls` (default), `implicit` or `none`.
    #[serde(default = "default_tls")]
    pub tls: Security,
    /// The name the server's certificate must be valid for (required unless `tls = "none"`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Our name in EHLO (default: the domain of `from`).
    #[serde(default)]
    pub helo: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// A secret: give it as `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<String>,
    /// `auto` (PLAIN if offered, else LOGIN), `plain` or `login`.
    #[serde(default = "default_auth")]
    pub auth: AuthMechanism,
    /// `Herald <herald@example.com>` or `herald@example.com`.
    pub from: String,
    /// One or more recipients.
    pub to: Vec<String>,
    /// A mail per failed or unreachable host.
    #[serde(default = "yes")]
    pub failure_mails: bool,
    /// `always` (default), `failed` (only runs with a failed or unreachable host) or `never`.
    #[serde(default = "default_summary")]
    pub summary: SummaryWhen,
    /// Bounds connecting and each wait for the server.
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_tls() -> Security {
    Security::Starttls
}
fn default_auth() -> AuthMechanism {
    AuthMechanism::Auto
}
fn default_summary() -> SummaryWhen {
    SummaryWhen::Always
}
fn yes() -> bool {
    true
}

/// Most recipients of one mail.
pub const MAX_RECIPIENTS: usize = 100;

/// The default `failure_subject`.
pub const FAILURE_SUBJECT: &str = "\
[Herald] {{ run.playbook | basename or 'ad-hoc run' }}: {{ event.task or '?' }} {{ event.status }} on {{ event.host or '?' }}";

/// The default `failure_text`.
pub const FAILURE_TEXT: &str = "\
Task '{{ event.task or '?' }}' {{ event.status }} on {{ event.host or '?' }}.

Playbook:   {{ run.playbook or 'ad-hoc run' }}
Play:       {{ event.play or '' }}
Task:       {{ event.task or '' }}{% if event.task_path %} ({{ event.task_path }}){% endif %}

Module:     {{ event.task_action or '' }}
Host:       {{ event.host or '' }}
Controller: {{ run.controller or '' }}
Run:        {{ run.id }}
When:       {{ event.created_ms | datetime }}

{{ event.message or '(no message)' }}
{% if run_url %}

{{ run_url }}
{% endif %}";

/// The default `failure_html` (every value escaped: task names and messages are not HTML).
pub const FAILURE_HTML: &str = "\
<!DOCTYPE html>
<html><body style=\"font-family: sans-serif\">
<p><b>Task '{{ (event.task or '?') | e }}' {{ event.status | e }} on {{ (event.host or '?') | e }}.</b></p>
<table>
<tr><td>Playbook</td><td>{{ (run.playbook or 'ad-hoc run') | e }}</td></tr>
<tr><td>Play</td><td>{{ (event.play or '') | e }}</td></tr>
<tr><td>Task</td><td>{{ (event.task or '') | e }}{% if event.task_path %} <small>{{ event.task_path | e }}</small>{% endif %}</td></tr>
<tr><td>Module</td><td><code>{{ (event.task_action or '') | e }}</code></td></tr>
<tr><td>Host</td><td>{{ (event.host or '') | e }}</td></tr>
<tr><td>Controller</td><td>{{ (run.controller or '') | e }}</td></tr>
<tr><td>Run</td><td><code>{{ run.id | e }}</code></td></tr>
<tr><td>When</td><td>{{ event.created_ms | datetime }}</td></tr>
</table>
<pre>{{ (event.message or '(no message)') | e }}</pre>
{% if run_url %}<p><a href=\"{{ run_url | e }}\">Open the run</a></p>{% endif %}
</body></html>";

/// The default `summary_subject`.
pub const SUMMARY_SUBJECT: &str = "\
[Herald] {{ run.playbook | basename or 'ad-hoc run' }} {{ run.status }}\
{% if summary.failed_hosts %}: {{ summary.failed_hosts | length }} host(s) failed{% endif %}";

/// The default `summary_text`: status, duration, the PLAY RECAP, the failed hosts with their
/// tasks and messages, the `set_stats` values and the run's link.
pub const SUMMARY_TEXT: &str = "\
{{ run.playbook or 'ad-hoc run' }} {{ run.status }}\
{% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}.

Run:        {{ run.id }}
Controller: {{ run.controller or '' }}

PLAY RECAP
{% for h in summary.recap %}
{{ h.host }}: ok={{ h.ok }} changed={{ h.changed }} unreachable={{ h.unreachable }} failed={{ h.failures }} skipped={{ h.skipped }} rescued={{ h.rescued }} ignored={{ h.ignored }}
{% endfor %}
{% if summary.failed_hosts %}

FAILED
{% for h in summary.failed_hosts %}
{{ h.host }} ({{ 'unreachable' if h.unreachable else 'failed' }})
{% for t in h.tasks %}
  - {{ t.task }}: {{ t.message | truncate(500) }}
{% endfor %}
{% endfor %}
{% if summary.failures_more %}... and {{ summary.failures_more }} more failure(s)
{% endif %}
{% endif %}
{% if summary.set_stats._run %}

Stats:{% for k, v in summary.set_stats._run | items %} {{ k }}={{ v | tojson }}{% endfor %}

{% endif %}
{% if run_url %}

{{ run_url }}
{% endif %}";

/// The default `summary_html`.
pub const SUMMARY_HTML: &str = "\
<!DOCTYPE html>
<html><body style=\"font-family: sans-serif\">
<p><b>{{ (run.playbook or 'ad-hoc run') | e }} {{ run.status | e }}</b>\
{% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}</p>
<p>Run <code>{{ run.id | e }}</code>{% if run.controller %} on {{ run.controller | e }}{% endif %}</p>
<table border=\"1\" cellspacing=\"0\" cellpadding=\"3\">
<tr><th>host</th><th>ok</th><th>changed</th><th>unreachable</th><th>failed</th><th>skipped</th><th>rescued</th><th>ignored</th></tr>
{% for h in summary.recap %}
<tr><td>{{ h.host | e }}</td><td>{{ h.ok }}</td><td>{{ h.changed }}</td><td>{{ h.unreachable }}</td><td>{{ h.failures }}</td><td>{{ h.skipped }}</td><td>{{ h.rescued }}</td><td>{{ h.ignored }}</td></tr>
{% endfor %}
</table>
{% if summary.failed_hosts %}
<h3>Failed</h3>
<ul>
{% for h in summary.failed_hosts %}
<li>{{ h.host | e }} ({{ 'unreachable' if h.unreachable else 'failed' }})<ul>
{% for t in h.tasks %}
<li>{{ t.task | e }}: <pre>{{ t.message | truncate(500) | e }}</pre></li>
{% endfor %}
</ul></li>
{% endfor %}
</ul>
{% endif %}
{% if run_url %}<p><a href=\"{{ run_url | e }}\">Open the run</a></p>{% endif %}
</body></html>";

/// The configured plugin.
pub struct Email {
    c: Config,
    server: SocketAddr,
    from: Mailbox,
    to: Vec<Mailbox>,
    helo: String,
    credentials: Option<Credentials>,
}

impl Plugin for Email {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] = &[
        ("failure_subject", FAILURE_SUBJECT),
        ("failure_text", FAILURE_TEXT),
        ("failure_html", FAILURE_HTML),
        ("summary_subject", SUMMARY_SUBJECT),
        ("summary_text", SUMMARY_TEXT),
        ("summary_html", SUMMARY_HTML),
    ];

    fn new(c: Config) -> Result<Self, String> {
        let server: SocketAddr = c.server.trim().parse().map_err(|_| {
            format!(
                "config key `server`: `{}` is not an ip:port address (host names are not resolved; set server_name for TLS)",
                c.server
            )
        })?;
        grants::require_socket("server", &c.server)?;
        config::check_timeout_ms(c.timeout_ms)?;
        let from = Mailbox::parse(&c.from).map_err(|e| format!("config key `from`: {e}"))?;
        if c.to.is_empty() || c.to.len() > MAX_RECIPIENTS {
            return Err(format!(
                "config key `to`: expected 1 to {MAX_RECIPIENTS} recipients"
            ));
        }
        let to =
            c.to.iter()
                .enumerate()
                .map(|(i, a)| Mailbox::parse(a).map_err(|e| format!("config key `to[{i}]`: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
        match (&c.server_name, c.tls) {
            (None, Security::Starttls | Security::Implicit) => {
                return Err("config key `server_name`: required with TLS: the name the server's certificate is for (`mail.example.com`)".into())
            }
            (Some(n), _) if n.trim().is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err("config key `server_name`: expected a DNS name or an IP address".into())
            }
            _ => {}
        }
        let credentials = match (&c.username, &c.password) {
            (None, None) => None,
            (Some(_), None) => return Err("config key `password`: required with `username`".into()),
            (None, Some(_)) => return Err("config key `username`: required with `password`".into()),
            (Some(u), Some(p)) => {
                if c.tls == Security::None {
                    return Err("config key `username`: AUTH is refused with tls = \"none\": it would send the password in clear; use \"starttls\" or \"implicit\"".into());
                }
                if u.is_empty() || u.contains(['\r', '\n', '\0']) || p.contains(['\r', '\n', '\0'])
                {
                    return Err("config key `username`: user name and password must be non-empty single lines".into());
                }
                Some(Credentials {
                    username: u.clone(),
                    password: p.clone(),
                    mechanism: c.auth,
                })
            }
        };
        let helo = match &c.helo {
            Some(h)
                if h.trim().is_empty()
                    || h.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err("config key `helo`: expected a host name".into())
            }
            Some(h) => h.clone(),
            None => from.domain().to_string(),
        };
        Ok(Email {
            c,
            server,
            from,
            to,
            helo,
            credentials,
        })
    }

    fn handle(&mut self, e: &EventRef<'_>, _attempt: u32) -> Outcome {
        let kind = e.kind();
        let which = if kind == EventKind::PlaybookOnStats {
            let failed = e
                .stats
                .as_ref()
                .is_some_and(|s| s.hosts.iter().any(|h| h.failures > 0 || h.unreachable > 0));
            match self.c.summary {
                SummaryWhen::Always => "summary",
                SummaryWhen::Failed if failed => "summary",
                _ => return Outcome::Ok,
            }
        } else if self.c.failure_mails && is_host_result(kind) && HostFailure::of(e).is_some() {
            "failure"
        } else {
            return Outcome::Ok;
        };
        let parts = match self.render(e, which) {
            Ok(p) => p,
            Err(m) => return herald_sdk::permanent(m),
        };
        self.send(e, which, &parts)
    }
}

/// A mail's rendered texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl Email {
    /// The subject, text and HTML of mail `which` (`failure`, `summary`) for `e`: the host's
    /// renders of the templates; natively (no host) a plain fallback.
    pub fn render(&self, e: &EventRef<'_>, which: &str) -> Result<Parts, String> {
        let subject = herald_sdk::templates::text(e, &format!("{which}_subject"), || {
            let pb = playbook_name(&e.run.playbook);
            match which {
                "failure" => format!(
                    "[Herald] {pb}: {} {} on {}",
                    e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("?"),
                    HostFailure::of(e).map(|f| f.as_str()).unwrap_or("failed"),
                    e.host.as_deref().unwrap_or("?")
                ),
                _ => format!("[Herald] {pb} finished"),
            }
        })?;
        let text = herald_sdk::templates::text(e, &format!("{which}_text"), || {
            result_message(e.res.as_deref(), 2000).unwrap_or_default()
        })?;
        let html = e.render(&format!("{which}_html"))?;
        Ok(Parts {
            subject,
            text,
            html,
        })
    }

    /// The whole message of `parts` for event `e`.
    pub fn message(&self, e: &EventRef<'_>, parts: &Parts) -> Vec<u8> {
        let id = e.id();
        let message_id = format!("{id}.herald@{}", self.from.domain());
        let extra = [
            ("X-Herald-Event-Id", id.clone()),
            ("X-Herald-Run-Id", e.run.id.clone()),
        ];
        Mail {
            from: &self.from,
            to: &self.to,
            subject: &parts.subject,
            text: &parts.text,
            html: parts.html.as_deref(),
            message_id: &message_id,
            date_ms: e.created_ms,
            extra: &extra,
        }
        .render()
    }

    fn send(&self, e: &EventRef<'_>, which: &str, parts: &Parts) -> Outcome {
        let message = self.message(e, parts);
        let rcpt: Vec<String> = self.to.iter().map(|m| m.address.clone()).collect();
        let session = Session {
            security: self.c.tls,
            server_name: self.c.server_name.as_deref().unwrap_or(""),
            helo: &self.helo,
            credentials: self.credentials.as_ref(),
        };
        let envelope = smtp::Envelope {
            from: &self.from.address,
            to: &rcpt,
            message: &message,
        };
        let mut conn = match Stream::connect(self.server, self.c.timeout_ms) {
            Ok(s) => Conn(s),
            Err(err) => {
                log::warn(&format!("event {}: {err}", e.id()));
                return err.outcome();
            }
        };
        let result = smtp::send(&mut conn, &session, &envelope);
        conn.0.close();
        let labels = [("kind", which)];
        match result {
            Ok(d) => {
                for (addr, reply) in &d.refused {
                    log::warn(&format!(
                        "event {}: the server refused recipient {addr}: {reply}",
                        e.id()
                    ));
                    metrics::counter_add(
                        "email_recipients_refused_total",
                        "Recipients the SMTP server refused for good (5xx)",
                        &labels,
                        1.0,
                    );
                }
                metrics::counter_add(
                    "email_mails_sent_total",
                    "Mails the SMTP server accepted",
                    &labels,
                    1.0,
                );
                log::info(&format!(
                    "event {}: {which} mail to {} recipient(s): {}",
                    e.id(),
                    d.accepted.len(),
                    d.queued
                ));
                Outcome::Ok
            }
            Err(SmtpError::Transient(m)) => {
                log::warn(&format!(
                    "event {}: {which} mail not sent, will retry: {m}",
                    e.id()
                ));
                herald_sdk::retryable(m, None)
            }
            Err(SmtpError::Permanent(m)) => {
                log::error(&format!("event {}: {which} mail refused: {m}", e.id()));
                herald_sdk::permanent(m)
            }
        }
    }
}

/// The SDK's stream as an SMTP transport.
struct Conn(Stream);

fn net(e: NetError) -> SmtpError {
    match e {
        NetError::Transient(..) => SmtpError::Transient(e.to_string()),
        NetError::Denied(_) | NetError::Tls(..) => SmtpError::Permanent(e.to_string()),
    }
}

impl smtp::Transport for Conn {
    fn read_line(&mut self) -> Result<String, String> {
        self.0.read_line().map_err(|e| e.to_string())
    }
    fn write_all(&mut self, data: &[u8]) -> Result<(), String> {
        self.0.write_all(data).map_err(|e| e.to_string())
    }
    fn start_tls(&mut self, server_name: &str) -> Result<(), SmtpError> {
        self.0.start_tls(server_name).map_err(net)
    }
}

herald_sdk::export_plugin!(Email);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::{Run, Status, Task};

    fn cfg(extra: serde_json::Value) -> Result<Email, String> {
        let mut base = serde_json::json!({
            "server": "127.0.0.1:587",
            "server_name": "mail.example.com",
            "from": "Herald <herald@example.com>",
            "to": ["ops@example.com", "Dev <dev@example.com>"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        herald_sdk::build::<Email>(&base.to_string())
    }

    #[test]
    fn config_is_checked_naming_the_key() {
        let e = cfg(serde_json::json!({})).unwrap();
        assert_eq!(e.helo, "example.com");
        assert_eq!(e.c.tls, Security::Starttls);
        let err = |x| cfg(x).err().unwrap();
        assert!(err(serde_json::json!({"server": "mail:25"})).starts_with("config key `server`"));
        assert!(
            err(serde_json::json!({"server_name": null})).starts_with("config key `server_name`")
        );
        assert!(err(serde_json::json!({"to": []})).starts_with("config key `to`"));
        assert!(err(serde_json::json!({"to": ["ok@example.com", "bad"]}))
            .starts_with("config key `to[1]`"));
        assert!(err(serde_json::json!({"from": "x"})).starts_with("config key `from`"));
        assert!(err(serde_json::json!({"username": "u"})).starts_with("config key `password`"));
        assert!(
            err(serde_json::json!({"tls": "none", "username": "u", "password": "p"}))
                .contains("in clear")
        );
        assert!(err(serde_json::json!({"tls": "ssl"})).starts_with("config key `tls`"));
        assert!(err(serde_json::json!({"tsl": "none"})).contains("unknown field `tsl`"));
        let ok = cfg(serde_json::json!({"tls": "none", "server_name": null, "summary": "failed"}))
            .unwrap();
        assert_eq!(ok.c.summary, SummaryWhen::Failed);
        // The password is never in the Debug form.
        let e = cfg(serde_json::json!({"username": "u", "password": "hunter2"})).unwrap();
        assert!(!format!("{:?}", e.credentials).contains("hunter2"));
    }

    fn failed_event() -> herald_sdk::Event {
        herald_sdk::Event {
            id: "0f8e9d2c-1111-4222-8333-444455556666".into(),
            parent_id: None,
            kind: EventKind::RunnerOnFailed,
            tenant: "t".into(),
            run: Run {
                id: "run-1".into(),
                playbook: "site.yml".into(),
                controller: None,
            },
            sequence: 7,
            created_ms: 1_796_487_003_000,
            play: None,
            task: Some(Task {
                id: "t".into(),
                name: "Migrate".into(),
                action: "command".into(),
                path: None,
            }),
            host: Some("web1".into()),
            status: Some(Status::Failed),
            changed: false,
            ignore_errors: false,
            timing: None,
            res: Some(r#"{"msg": "migration 42 failed"}"#.into()),
            stats: None,
            json: String::new(),
        }
    }

    /// An SMTP server's answers, as a FakeHost peer scripts them (lines matched by prefix).
    const SMTP: &[(&str, &str)] = &[
        (
            "EHLO",
            "250-mail.example.com\n250-STARTTLS\n250 AUTH PLAIN LOGIN",
        ),
        ("STARTTLS", "220 2.0.0 go ahead"),
        ("AUTH PLAIN", "235 2.7.0 ok"),
        ("MAIL FROM", "250 2.1.0 ok"),
        ("RCPT TO:<dev@", "550 5.1.1 no such user"),
        ("RCPT TO", "250 2.1.5 ok"),
        ("DATA", "354 go ahead"),
        (".", "250 2.0.0 queued"),
        ("QUIT", "221 bye"),
    ];

    #[test]
    fn handle_talks_smtp_to_the_fake_hosts_peer() {
        let host = herald_sdk::testing::FakeHost::new(&[]);
        host.allow_sockets(&["127.0.0.1:587"]).peer(
            "127.0.0.1:587",
            Some("220 mail.example.com ESMTP"),
            SMTP,
        );
        let mut email = cfg(serde_json::json!({"username": "u", "password": "hunter2"})).unwrap();
        let e: EventRef<'static> = failed_event().into();
        // One of the two recipients is refused: the mail still goes to the other.
        let o = email.handle(&e, 1);
        assert!(matches!(o, Outcome::Ok), "{o:?}");
        let sent = String::from_utf8(host.received("127.0.0.1:587")).unwrap();
        assert!(
            sent.starts_with("EHLO example.com\r\nSTARTTLS\r\nEHLO example.com\r\nAUTH PLAIN "),
            "{sent}"
        );
        assert!(
            sent.contains("RCPT TO:<ops@example.com>\r\nRCPT TO:<dev@example.com>\r\nDATA\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("Subject: [Herald] site.yml: Migrate failed on web1\r\n"),
            "{sent}"
        );
        assert!(sent.ends_with("\r\n.\r\nQUIT\r\n"), "{sent}");
        assert_eq!(
            host.tls_started("127.0.0.1:587"),
            vec!["mail.example.com".to_string()]
        );
        // No STARTTLS offered: permanent, nothing sent after EHLO.
        host.peer(
            "127.0.0.1:587",
            Some("220 hi"),
            &[("EHLO", "250 AUTH PLAIN")],
        );
        let o = email.handle(&e, 1);
        assert!(
            matches!(&o, Outcome::Permanent(m) if m.contains("does not offer STARTTLS")),
            "{o:?}"
        );
        // Refused: retryable; outside allow_sockets: the host's refusal.
        host.refuse("127.0.0.1:587");
        assert!(matches!(email.handle(&e, 1), Outcome::Retryable(_)));
        host.allow_sockets(&[]);
        let o = email.handle(&e, 1);
        assert!(
            matches!(&o, Outcome::Permanent(m) if m.contains("not allowed by the instance's allow_sockets")),
            "{o:?}"
        );
    }

    #[test]
    fn the_message_id_comes_from_the_event_id() {
        let email = cfg(serde_json::json!({})).unwrap();
        let e: EventRef<'static> = failed_event().into();
        let parts = email.render(&e, "failure").unwrap();
        assert_eq!(parts.subject, "[Herald] site.yml: Migrate failed on web1");
        assert_eq!(parts.text, "migration 42 failed");
        let m = String::from_utf8(email.message(&e, &parts)).unwrap();
        assert!(
            m.contains("Message-ID: <0f8e9d2c-1111-4222-8333-444455556666.herald@example.com>\r\n"),
            "{m}"
        );
        assert!(m.contains("X-Herald-Run-Id: run-1\r\n"));
        assert!(m.contains("Date: Sat, 05 Dec 2026 16:10:03 +0000\r\n"));
        // Sent again (a retry), the message is the same, byte for byte.
        assert_eq!(email.message(&e, &parts), email.message(&e, &parts));
    }
}
