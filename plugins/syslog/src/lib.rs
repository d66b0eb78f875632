//! Herald `syslog` sink: RFC 5424 messages over UDP (RFC 5426, one message per datagram) or TCP
//! (RFC 6587 octet counting, or newline framing).
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`:
//! - PRI: `facility * 8 + severity`; severity from the event: failed → err, unreachable → crit,
//!   changed → notice, ok and skipped → info, ignored failures → warning; a run ending with a
//!   failed host → err, else notice; Ansible `warning`/`deprecated` → warning, `error` → err,
//!   `verbose`/`debug` → debug; other events → info;
//! - TIMESTAMP: the event's creation time (UTC, milliseconds);
//! - HOSTNAME: `hostname` from the config, else the managed host (with `use_target_host`), else
//!   the run's controller, else `-`;
//! - APP-NAME: `app_name` (default `ansible`); PROCID: the run id; MSGID: the event kind;
//! - SD: `[herald@32473 tenant=.. run_id=.. playbook=.. event_id=.. play_id=.. task_id=.. host=..
//!   status=..]` (the SD-ID is configurable);
//! - MSG: a one-line description (UTF-8, bounded by `max_message_bytes`): the instance's
//!   `message` template when it has one (rendered by the host for every event), else for the
//!   end of a run the `summary_message` template (default: the recap, then each failed host with
//!   its failed tasks and messages), else the built-in description. Line breaks become spaces.
//!
//! The destination is an `ip:port`, reachable only if the instance's `allow_sockets` lists it.
//!
//! Prefer TCP (`transport = "tcp"`): UDP may lose datagrams under load (bursts, a busy receiver,
//! full socket buffers) without anyone noticing, since a datagram counts as delivered once it is
//! sent; over TCP a failed send is retried and, in the end, dead-lettered.

use herald_sdk::config;
use herald_sdk::net::{NetError, TcpSender, UdpSender};
use herald_sdk::summary::{Observed, RunStatus, RunTracker};
use herald_sdk::text::{one_line, truncate_bytes};
use herald_sdk::{
    kind_name, log, playbook_name, result_message, status_name, Event, EventKind, EventRef,
    Outcome, Plugin, Status,
};
use serde::Deserialize;
use std::net::SocketAddr;

/// Syslog severities (RFC 5424 table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `LEN SP MSG` (RFC 6587 3.4.1).
    OctetCounting,
    /// `MSG LF` (RFC 6587 3.4.2), for receivers without octet counting.
    Newline,
}

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The receiver, `ip:port` (no host names: the host does no DNS for plugins).
    pub address: String,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// TCP framing.
    #[serde(default = "default_framing")]
    pub framing: Framing,
    /// `kern`, `user`, `daemon`, ..., `local0`-`local7`.
    #[serde(default = "default_facility")]
    pub facility: String,
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// A fixed HOSTNAME; default: the run's controller.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Use the managed host as HOSTNAME for host events.
    #[serde(default)]
    pub use_target_host: bool,
    /// Events less severe than this are not sent.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    #[serde(default = "default_sd_id")]
    pub sd_id: String,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// TCP connect timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_transport() -> Transport {
    Transport::Udp
}
fn default_framing() -> Framing {
    Framing::OctetCounting
}
fn default_facility() -> String {
    "local0".into()
}
fn default_app_name() -> String {
    "ansible".into()
}
fn default_min_severity() -> Severity {
    Severity::Info
}
fn default_sd_id() -> String {
    "herald@32473".into()
}
fn default_max_message_bytes() -> usize {
    2048
}
fn default_timeout_ms() -> u64 {
    5_000
}

/// Facility number for a name.
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 16] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
    ];
    let n = name.trim().to_ascii_lowercase();
    if let Some(i) = NAMES.iter().position(|x| *x == n) {
        return Some(i as u8);
    }
    let d = n.strip_prefix("local")?.parse::<u8>().ok()?;
    (d <= 7).then_some(16 + d)
}

/// The severity of an event.
pub fn severity(e: &Event, run_failed: bool) -> Severity {
    match e.kind {
        EventKind::PlaybookOnStats => {
            return if run_failed {
                Severity::Err
            } else {
                Severity::Notice
            }
        }
        EventKind::Warning | EventKind::Deprecated | EventKind::SystemWarning => {
            return Severity::Warning
        }
        EventKind::Error => return Severity::Err,
        EventKind::Verbose | EventKind::Debug => return Severity::Debug,
        EventKind::PlaybookOnNoHostsRemaining => return Severity::Err,
        _ => {}
    }
    match e.status {
        Some(Status::Failed) if e.ignore_errors => Severity::Warning,
        Some(Status::Failed) => Severity::Err,
        Some(Status::Unreachable) => Severity::Crit,
        Some(Status::Changed) => Severity::Notice,
        Some(Status::Ok) | Some(Status::Skipped) => Severity::Info,
        None if e.changed => Severity::Notice,
        None => Severity::Info,
    }
}

/// Printable US-ASCII (33..=126) of at most `max` characters, `-` when empty (RFC 5424 header fields).
pub fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped.
pub fn sd_escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn valid_sd_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| ('!'..='~').contains(&c) && !matches!(c, '=' | ']' | '"' | ' '))
}

/// The configured plugin.
pub struct Syslog {
    c: Config,
    addr: SocketAddr,
    facility: u8,
    udp: Option<UdpSender>,
    tcp: Option<TcpSender>,
    tracker: RunTracker,
}

/// The default `summary_message`: the PLAY RECAP, then each failed host with its failed tasks
/// and their messages.
pub const SUMMARY_MESSAGE: &str = "playbook {{ run.playbook or 'ad-hoc run' }} finished \
{{ run.status }}{% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}: \
{% for h in summary.recap %}{{ h.host }} ok={{ h.ok }} changed={{ h.changed }} failed={{ h.failures }} \
unreachable={{ h.unreachable }} skipped={{ h.skipped }} rescued={{ h.rescued }} ignored={{ h.ignored }}\
{{ '; ' if not loop.last }}{% endfor %}\
{% for h in summary.failed_hosts %}{{ ' | failed: ' if loop.first else '; ' }}{{ h.host }}\
{% for t in h.tasks %} task '{{ t.task }}': {{ t.message | truncate(300) }}{% endfor %}{% endfor %}";

impl Plugin for Syslog {
    type Config = Config;

    const TEMPLATES: &'static [(&'static str, &'static str)] =
        &[("summary_message", SUMMARY_MESSAGE)];

    fn new(c: Config) -> Result<Self, String> {
        let addr: SocketAddr = c
            .address
            .trim()
            .parse()
            .map_err(|_| format!("config key `address`: `{}` is not an ip:port address (host names are not resolved)", c.address))?;
        if addr.port() == 0 {
            return Err("config key `address`: port 0 is not a destination".into());
        }
        herald_sdk::grants::require_socket("address", &addr.to_string())?;
        let facility = facility(&c.facility).ok_or_else(|| {
            format!("config key `facility`: unknown facility `{}` (kern, user, daemon, auth, syslog, cron, local0-local7, ...)", c.facility)
        })?;
        if c.app_name.is_empty()
            || c.app_name.len() > 48
            || header_field(&c.app_name, 48) != c.app_name
        {
            return Err(
                "config key `app_name`: 1-48 printable ASCII characters without spaces".into(),
            );
        }
        if let Some(h) = &c.hostname {
            if h.is_empty() || h.len() > 255 || header_field(h, 255) != *h {
                return Err(
                    "config key `hostname`: 1-255 printable ASCII characters without spaces".into(),
                );
            }
        }
        if !valid_sd_name(&c.sd_id) {
            return Err("config key `sd_id`: 1-32 printable ASCII characters without `=`, `]`, `\"` or spaces (such as `herald@32473`)".into());
        }
        config::in_range("max_message_bytes", c.max_message_bytes as u64, 64, 65_000)?;
        if c.transport == Transport::Udp && c.framing != Framing::OctetCounting {
            return Err("config key `framing`: only applies to transport = \"tcp\"".into());
        }
        config::check_timeout_ms(c.timeout_ms)?;
        let (udp, tcp) = match c.transport {
            Transport::Udp => (Some(UdpSender::new(addr)), None),
            Transport::Tcp => (None, Some(TcpSender::new(addr, c.timeout_ms))),
        };
        Ok(Syslog {
            addr,
            facility,
            udp,
            tcp,
            c,
            tracker: RunTracker::host("syslog:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        // The run summary tells the stats event whether the run failed.
        let run_failed = match event.kind {
            EventKind::PlaybookOnStats => match self.tracker.observe(event) {
                Observed::Finished(s) => s.status() == RunStatus::Failed,
                _ => event
                    .stats
                    .as_ref()
                    .is_some_and(|s| s.hosts.iter().any(|h| h.failures > 0 || h.unreachable > 0)),
            },
            _ => {
                self.tracker.observe(event);
                false
            }
        };
        let sev = severity(event, run_failed);
        if sev > self.c.min_severity {
            return self.done(event, Outcome::Ok);
        }
        let text = match self.template_text(event) {
            Ok(t) => t,
            Err(e) => return self.done(event, herald_sdk::permanent(e)),
        };
        let msg = self.format_text(event, sev, text);
        let framed = self.frame(&msg);
        let result = match (&mut self.udp, &mut self.tcp) {
            (Some(u), _) => u.send(&framed),
            (_, Some(t)) => t.send(&framed),
            _ => Ok(()),
        };
        let outcome = match result {
            Ok(()) => Outcome::Ok,
            Err(e @ NetError::Denied(_)) => {
                log::error(&format!("event {}: {e}", event.id));
                e.outcome()
            }
            Err(e) => {
                log::warn(&format!("event {}: {e}", event.id));
                e.outcome()
            }
        };
        self.done(event, outcome)
    }
}

impl Syslog {
    fn done(&self, event: &Event, o: Outcome) -> Outcome {
        if event.kind == EventKind::PlaybookOnStats {
            self.tracker.finish(&event.run.id, o)
        } else {
            o
        }
    }

    /// The destination address.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// One RFC 5424 message (without transport framing).
    pub fn format(&self, e: &Event, sev: Severity) -> Vec<u8> {
        self.format_text(e, sev, None)
    }

    /// The message text from the templates: `message` (the user's, for any event), else
    /// `summary_message` at the end of a run; `None` for the built-in description.
    fn template_text(&self, event: &EventRef<'_>) -> Result<Option<String>, String> {
        if let Some(t) = event.render("message")? {
            return Ok(Some(t));
        }
        if event.kind() == EventKind::PlaybookOnStats {
            return event.render("summary_message");
        }
        Ok(None)
    }

    /// [`Self::format`] with `text` (one line is made of it) instead of the built-in description.
    pub fn format_text(&self, e: &Event, sev: Severity, text: Option<String>) -> Vec<u8> {
        let pri = self.facility as u32 * 8 + sev as u32;
        let ts = herald_sdk::time::rfc3339_ms(e.created_ms);
        let host_src = self
            .c
            .hostname
            .clone()
            .or_else(|| {
                if self.c.use_target_host {
                    e.host.clone()
                } else {
                    None
                }
            })
            .or_else(|| e.run.controller.clone())
            .unwrap_or_default();
        let hostname = header_field(&host_src, 255);
        let procid = header_field(&e.run.id, 128);
        let msgid = header_field(kind_name(e.kind), 32);
        let mut sd = format!("[{}", self.c.sd_id);
        let mut param = |k: &str, v: &str| {
            sd.push_str(&format!(" {k}=\"{}\"", sd_escape(v)));
        };
        param("tenant", &e.tenant);
        param("run_id", &e.run.id);
        if !e.run.playbook.is_empty() {
            param("playbook", &e.run.playbook);
        }
        param("event_id", &e.id);
        param("seq", &e.sequence.to_string());
        if let Some(p) = &e.play {
            param("play_id", &p.id);
        }
        if let Some(t) = &e.task {
            param("task_id", &t.id);
            param("action", &t.action);
        }
        if let Some(h) = &e.host {
            param("host", h);
        }
        if let Some(s) = e.status {
            param("status", status_name(s));
        }
        if let Some(t) = &e.timing {
            param("duration_ms", &t.duration_ms.to_string());
        }
        sd.push(']');
        let text = match text {
            Some(t) => one_line(&t),
            None => message_text(e),
        };
        let text = truncate_bytes(&text, self.c.max_message_bytes);
        format!(
            "<{pri}>1 {ts} {hostname} {} {procid} {msgid} {sd} {text}",
            self.c.app_name
        )
        .into_bytes()
    }

    /// The bytes on the wire for one message.
    pub fn frame(&self, msg: &[u8]) -> Vec<u8> {
        match (self.c.transport, self.c.framing) {
            (Transport::Udp, _) => msg.to_vec(),
            (Transport::Tcp, Framing::OctetCounting) => {
                let mut out = format!("{} ", msg.len()).into_bytes();
                out.extend_from_slice(msg);
                out
            }
            (Transport::Tcp, Framing::Newline) => {
                let mut out: Vec<u8> = msg
                    .iter()
                    .map(|&b| if b == b'\n' { b' ' } else { b })
                    .collect();
                out.push(b'\n');
                out
            }
        }
    }
}

/// A one-line description of the event.
pub fn message_text(e: &Event) -> String {
    let pb = playbook_name(&e.run.playbook);
    let task = e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("");
    let host = e.host.as_deref().unwrap_or("");
    let msg = result_message(e.res.as_deref(), 4000).map(|m| one_line(&m));
    let s = match e.kind {
        EventKind::PlaybookOnStart => format!("playbook {pb} started"),
        EventKind::PlaybookOnPlayStart => format!(
            "play '{}' started",
            e.play.as_ref().map(|p| p.name.as_str()).unwrap_or("")
        ),
        EventKind::PlaybookOnTaskStart
        | EventKind::PlaybookOnHandlerTaskStart
        | EventKind::PlaybookOnCleanupTaskStart => {
            format!("task '{task}' started")
        }
        EventKind::PlaybookOnStats => {
            let hosts = e
                .stats
                .as_ref()
                .map(|s| {
                    s.hosts
                        .iter()
                        .map(|h| {
                            format!(
                                "{} ok={} changed={} failed={} unreachable={} skipped={} rescued={} ignored={}",
                                h.host, h.ok, h.changed, h.failures, h.unreachable, h.skipped, h.rescued, h.ignored
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            format!("playbook {pb} finished: {hosts}")
        }
        _ if e.status.is_some() => {
            let what = match e.status {
                Some(Status::Failed) if e.ignore_errors => "failed (ignored)",
                Some(s) => status_name(s),
                None => "",
            };
            let mut t = format!("{host} {what}: task '{task}'");
            if matches!(e.status, Some(Status::Failed | Status::Unreachable)) {
                if let Some(m) = &msg {
                    t.push_str(": ");
                    t.push_str(m);
                }
            }
            t
        }
        _ => {
            let mut t = kind_name(e.kind).replace('_', " ");
            if !host.is_empty() {
                t = format!("{host} {t}");
            }
            if !task.is_empty() {
                t.push_str(&format!(": task '{task}'"));
            }
            if let Some(m) = msg {
                t.push_str(": ");
                t.push_str(&m);
            }
            t
        }
    };
    one_line(&s)
}

herald_sdk::export_plugin!(Syslog);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{event, host_event, stats_event};

    fn sl(extra: &str) -> Syslog {
        herald_sdk::build::<Syslog>(&format!(r#"{{"address":"127.0.0.1:5514"{extra}}}"#)).unwrap()
    }

    #[test]
    fn rfc5424_message() {
        let s = sl(r#","facility":"local3""#);
        let e = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install",
            Some(r#"{"msg":"No package \"x\"\nfound"}"#),
        );
        let m = String::from_utf8(s.format(&e, severity(&e, false))).unwrap();
        // local3 (19) * 8 + err (3) = 155
        assert_eq!(
            m,
            "<155>1 2023-11-14T22:13:20.000Z ctl1 ansible r1 runner_on_failed [herald@32473 tenant=\"acme\" run_id=\"r1\" playbook=\"site.yml\" event_id=\"ev-r1-web2-install\" seq=\"1\" play_id=\"play-1\" task_id=\"task-install\" action=\"ansible.builtin.command\" host=\"web2\" status=\"failed\" duration_ms=\"1500\"] web2 failed: task 'install': No package \"x\" found"
        );
        let t = sl(r#","use_target_host":true,"app_name":"deploy""#);
        let m = String::from_utf8(t.format(&e, Severity::Err)).unwrap();
        assert!(
            m.starts_with("<131>1 2023-11-14T22:13:20.000Z web2 deploy r1 runner_on_failed ["),
            "{m}"
        );
        let fixed = sl(r#","hostname":"ansible-ctl""#);
        assert!(String::from_utf8(fixed.format(&e, Severity::Err))
            .unwrap()
            .contains(" ansible-ctl ansible r1 "));
        let mut no_ctl = event(EventKind::PlaybookOnStart, "r 1", "");
        no_ctl.run.controller = None;
        let m = String::from_utf8(s.format(&no_ctl, Severity::Info)).unwrap();
        assert!(
            m.starts_with(
                "<158>1 2023-11-14T22:13:20.000Z - ansible r_1 playbook_on_start [herald@32473 "
            ),
            "{m}"
        );
        assert!(m.ends_with("] playbook ad-hoc run started"));
    }

    #[test]
    fn severities() {
        let f = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r",
            "p",
            "h",
            "t",
            None,
        );
        assert_eq!(severity(&f, false), Severity::Err);
        let mut ign = f.clone();
        ign.ignore_errors = true;
        assert_eq!(severity(&ign, false), Severity::Warning);
        let u = host_event(
            EventKind::RunnerOnUnreachable,
            Status::Unreachable,
            "r",
            "p",
            "h",
            "t",
            None,
        );
        assert_eq!(severity(&u, false), Severity::Crit);
        let c = host_event(
            EventKind::RunnerOnOk,
            Status::Changed,
            "r",
            "p",
            "h",
            "t",
            None,
        );
        assert_eq!(severity(&c, false), Severity::Notice);
        let o = host_event(EventKind::RunnerOnOk, Status::Ok, "r", "p", "h", "t", None);
        assert_eq!(severity(&o, false), Severity::Info);
        let st = stats_event("r", "p", &[("h", 1, 0, 1, 0, 0)], None);
        assert_eq!(severity(&st, true), Severity::Err);
        assert_eq!(severity(&st, false), Severity::Notice);
        assert_eq!(
            severity(&event(EventKind::Verbose, "r", "p"), false),
            Severity::Debug
        );
        assert!(
            Severity::Debug > Severity::Info,
            "min_severity compares by number"
        );
    }

    #[test]
    fn framing() {
        let t = sl(r#","transport":"tcp""#);
        assert_eq!(
            t.frame(b"<14>1 - - - - - - hi"),
            b"20 <14>1 - - - - - - hi".to_vec()
        );
        let n = sl(r#","transport":"tcp","framing":"newline""#);
        assert_eq!(n.frame(b"a\nb"), b"a b\n".to_vec());
        assert_eq!(sl("").frame(b"x"), b"x".to_vec());
        // UTF-8 length counts bytes.
        assert_eq!(t.frame("é".as_bytes())[..2], *b"2 ");
    }

    #[test]
    fn stats_text_and_limits() {
        let st = stats_event(
            "r",
            "site.yml",
            &[("web1", 3, 1, 0, 0, 1), ("db", 0, 0, 0, 1, 0)],
            None,
        );
        assert_eq!(
            message_text(&st),
            "playbook site.yml finished: web1 ok=3 changed=1 failed=0 unreachable=0 skipped=1 rescued=0 ignored=0; db ok=0 changed=0 failed=0 unreachable=1 skipped=0 rescued=0 ignored=0"
        );
        let s = sl(r#","max_message_bytes":64"#);
        let long = "x".repeat(1000);
        let e = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r",
            "p",
            "h",
            "t",
            Some(&format!(r#"{{"msg":"{long}"}}"#)),
        );
        let m = String::from_utf8(s.format(&e, Severity::Err)).unwrap();
        let msg = m.rsplit_once("] ").unwrap().1;
        assert!(msg.len() <= 64 + 3, "{}", msg.len());
        assert_eq!(sd_escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(header_field("a b\u{e9}", 10), "a_b_");
        assert_eq!(facility("LOCAL7"), Some(23));
        assert_eq!(facility("user"), Some(1));
        assert_eq!(facility("local8"), None);
    }

    #[test]
    fn config_errors() {
        for (json, want) in [
            (r#"{}"#, "missing field `address`"),
            (r#"{"address":"syslog.example.com:514"}"#, "`address`"),
            (r#"{"address":"127.0.0.1:0"}"#, "`address`"),
            (
                r#"{"address":"127.0.0.1:514","transport":"tls"}"#,
                "`transport`",
            ),
            (
                r#"{"address":"127.0.0.1:514","facility":"local9"}"#,
                "`facility`",
            ),
            (
                r#"{"address":"127.0.0.1:514","app_name":"my app"}"#,
                "`app_name`",
            ),
            (r#"{"address":"127.0.0.1:514","hostname":""}"#, "`hostname`"),
            (r#"{"address":"127.0.0.1:514","sd_id":"a=b"}"#, "`sd_id`"),
            (
                r#"{"address":"127.0.0.1:514","min_severity":"loud"}"#,
                "`min_severity`",
            ),
            (
                r#"{"address":"127.0.0.1:514","framing":"newline"}"#,
                "`framing`",
            ),
            (
                r#"{"address":"127.0.0.1:514","max_message_bytes":10}"#,
                "`max_message_bytes`",
            ),
            (
                r#"{"address":"127.0.0.1:514","port":514}"#,
                "unknown field `port`",
            ),
        ] {
            let err = herald_sdk::build::<Syslog>(json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert_eq!(sl(r#","transport":"tcp""#).address().port(), 5514);
        let v6 = herald_sdk::build::<Syslog>(r#"{"address":"[::1]:6514"}"#).unwrap();
        assert!(v6.address().is_ipv6());
    }
}
