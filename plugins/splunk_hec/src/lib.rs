//! Herald `splunk_hec` sink: Ansible events into Splunk through the HTTP Event Collector.
//!
//! - `POST <url>/services/collector/event` with `Authorization: Splunk <token>` and, when
//!   `channel` is set, `X-Splunk-Request-Channel` (required by tokens with indexer
//!   acknowledgment);
//! - one HEC event per Herald event: `time` (the event's creation, epoch seconds with
//!   milliseconds), `host` (fixed, the managed host with `use_target_host`, else the controller),
//!   `source`, `sourcetype`, `index`, `event` (the event in Herald's wire format, or the output
//!   of the user's `event` template) and indexed `fields` (tenant, run_id, playbook, event_kind,
//!   event_id, status, ansible_host, task, and the configured `fields`);
//! - **batching**: the contract hands the plugin one event per call and wants its outcome, so
//!   events are gathered in the instance's durable `state` (answered ok once stored) and sent
//!   together, several per request ("stacked" JSON objects), when `batch_max_events` or
//!   `batch_max_bytes` is reached, at a failed or unreachable host, at the end of each run, or
//!   at the first event `batch_max_delay_ms` after the oldest stored one;
//!   `batch_max_events = 1` sends each event as it comes;
//! - **idempotent on retry**: a batch is dropped from `state` only after HEC accepted it, a
//!   retried event sends byte for byte the same request, and the ids of the last accepted
//!   events are remembered, so an event delivered again (after a crash) is not sent twice;
//! - 2xx ok; 429 (`Retry-After`), 503 (server busy) and other 5xx retryable; 400/401/403
//!   permanent with HEC's `text`/`code` (the stored batch is kept for a fixed configuration).

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::{
    failure_reason, kind_name, log, metrics, parse_kind, state, status_name, Event, EventKind,
    EventRef, HostFailure, Outcome, Plugin,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The HEC endpoint for JSON events.
pub const EVENT_PATH: &str = "/services/collector/event";
/// State keys.
const BUFFER_KEY: &str = "hec:buffer";
const SENT_KEY: &str = "hec:sent";
/// Ids of accepted events remembered (a redelivered one is not sent again).
pub const SENT_RING: usize = 1000;
/// The host keeps state values up to 256 KiB; a batch stays well under it.
pub const MAX_BATCH_BYTES: usize = 200_000;

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HEC's base URL (`https://splunk.example.com:8088`); `/services/collector/event` is added
    /// unless the path already ends with it (or with `/services/collector`).
    pub url: String,
    /// The HEC token (a secret: use `${env:...}`).
    pub token: String,
    /// `X-Splunk-Request-Channel`: a GUID, required by tokens with indexer acknowledgment.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    #[serde(default = "default_source")]
    pub source: String,
    /// A fixed `host`.
    #[serde(default)]
    pub host: Option<String>,
    /// `host` = the managed host for host events (else the controller).
    #[serde(default)]
    pub use_target_host: bool,
    /// Extra indexed fields on every event.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Event kinds to send (wire names); all when absent.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    #[serde(default = "default_batch_max_delay_ms")]
    pub batch_max_delay_ms: u64,
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_sourcetype() -> String {
    "ansible:herald".into()
}
fn default_source() -> String {
    "herald".into()
}
fn default_batch_max_events() -> usize {
    50
}
fn default_batch_max_bytes() -> usize {
    100_000
}
fn default_batch_max_delay_ms() -> u64 {
    5_000
}

/// Splunk's default fields, which an indexed field may not shadow.
const RESERVED_FIELDS: [&str; 8] = [
    "host",
    "source",
    "sourcetype",
    "index",
    "time",
    "event",
    "fields",
    "punct",
];

/// Whether `s` is a GUID (`8-4-4-4-12` hex digits), the form HEC wants for a channel.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The events stored for the next request, in order.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Herald event ids, one per line.
    pub ids: Vec<String>,
    /// Creation time of the oldest.
    pub first_ms: Option<i64>,
    /// One HEC event (compact JSON) per entry.
    pub lines: Vec<String>,
}

impl Batch {
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(|l| l.len() + 1).sum()
    }
    /// The request body: the events stacked, one per line.
    pub fn body(&self) -> String {
        let mut s = String::with_capacity(self.bytes());
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
    fn load() -> Batch {
        state::get_json(BUFFER_KEY).unwrap_or_default()
    }
    fn save(&self) {
        if self.ids.is_empty() {
            state::delete(BUFFER_KEY)
        } else {
            state::set_json(BUFFER_KEY, self)
        }
    }
}

/// The configured plugin.
pub struct SplunkHec {
    c: Config,
    url: Url,
    kinds: Option<BTreeSet<String>>,
}

impl Plugin for SplunkHec {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        let base = config::url("url", &c.url)?;
        let path = base.path_with_query.split('?').next().unwrap_or("/");
        let url = if path.trim_end_matches('/').ends_with(EVENT_PATH) {
            base.clone()
        } else if path.trim_end_matches('/').ends_with("/services/collector") {
            base.join("event")
        } else {
            base.join(EVENT_PATH)
        };
        herald_sdk::grants::require_http("url", &url.as_string())?;
        config::check_timeout_ms(c.timeout_ms)?;
        config::header_secret("token", Some(&c.token))?;
        if let Some(ch) = &c.channel {
            if !is_guid(ch) {
                return Err(format!(
                    "config key `channel`: `{ch}` is not a GUID (like 0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba)"
                ));
            }
        }
        for (k, v) in [("index", &c.index), ("host", &c.host)] {
            config::not_blank(k, v.as_deref())?;
        }
        config::not_blank("sourcetype", Some(&c.sourcetype))?;
        config::not_blank("source", Some(&c.source))?;
        for k in c.fields.keys() {
            if k.is_empty() || k.starts_with('_') || RESERVED_FIELDS.contains(&k.as_str()) {
                return Err(format!(
                    "config key `fields.{k}`: not a name an indexed field may have (empty, starting with `_`, or one of {})",
                    RESERVED_FIELDS.join(", ")
                ));
            }
        }
        config::in_range("batch_max_events", c.batch_max_events as u64, 1, 1000)?;
        config::in_range(
            "batch_max_bytes",
            c.batch_max_bytes as u64,
            1000,
            MAX_BATCH_BYTES as u64,
        )?;
        config::in_range("batch_max_delay_ms", c.batch_max_delay_ms, 0, 3_600_000)?;
        let kinds = match &c.kinds {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("config key `kinds`: an empty list would send nothing; remove the key to send every kind".into())
            }
            Some(list) => {
                let mut set = BTreeSet::new();
                for (i, k) in list.iter().enumerate() {
                    parse_kind(k).ok_or_else(|| {
                        format!("config key `kinds[{i}]`: unknown event kind `{k}`")
                    })?;
                    set.insert(k.clone());
                }
                Some(set)
            }
        };
        Ok(SplunkHec { c, url, kinds })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        let id = event.id();
        if sent_before(&id) {
            return Outcome::Ok;
        }
        let kind = event.kind();
        let wanted = self
            .kinds
            .as_ref()
            .is_none_or(|k| k.contains(kind_name(kind)));
        let line = if wanted {
            let custom = match event.render("event") {
                Ok(c) => c,
                Err(e) => return herald_sdk::permanent(e),
            };
            Some(self.hec_event(event, custom).to_string())
        } else {
            None
        };
        let mut batch = Batch::load();
        let mut pending = batch.clone();
        if let Some(line) = &line {
            if !pending.ids.contains(&id) {
                pending.ids.push(id.clone());
                pending.lines.push(line.clone());
                pending.first_ms.get_or_insert(event.created_ms);
            }
        }
        if pending.ids.is_empty() {
            return Outcome::Ok;
        }
        let due = pending.ids.len() >= self.c.batch_max_events
            || pending.bytes() >= self.c.batch_max_bytes
            || kind == EventKind::PlaybookOnStats
            || HostFailure::of(event).is_some()
            || pending
                .first_ms
                .is_some_and(|f| event.created_ms - f >= self.c.batch_max_delay_ms as i64);
        if !due {
            if line.is_some() {
                pending.save();
            }
            return Outcome::Ok;
        }
        let outcome = self.send(&pending);
        match &outcome {
            Outcome::Ok => {
                remember_sent(&pending.ids);
                batch = Batch::default();
                batch.save();
                metrics::counter_add(
                    "splunk_hec_events_sent_total",
                    "Events HEC accepted.",
                    &[],
                    pending.ids.len() as f64,
                );
                metrics::counter_add(
                    "splunk_hec_requests_total",
                    "Requests HEC accepted (each a batch of events).",
                    &[],
                    1.0,
                );
            }
            other => {
                let why = failure_reason(other).unwrap_or_default();
                let kept = batch.ids.len();
                if matches!(other, Outcome::Permanent(_)) {
                    log::error(&format!(
                        "event {id}: HEC refused a batch of {} event(s): {why}; {kept} earlier event(s) stay stored for the next request",
                        pending.ids.len()
                    ));
                } else {
                    log::warn(&format!("event {id}: HEC retryable: {why}"));
                }
            }
        }
        outcome
    }
}

impl SplunkHec {
    /// The HEC event for `e`: `event` is the user's `event` template output (JSON when it
    /// parses, else the text) or the wire event.
    pub fn hec_event(&self, e: &Event, custom: Option<String>) -> Value {
        let event = match custom {
            Some(t) => serde_json::from_str::<Value>(&t).unwrap_or(Value::String(t)),
            None => serde_json::from_str::<Value>(&e.json).unwrap_or(Value::String(e.json.clone())),
        };
        let mut fields = Map::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                fields.insert(k.into(), Value::String(v.into()));
            }
        };
        put("tenant", &e.tenant);
        put("run_id", &e.run.id);
        put("playbook", &e.run.playbook);
        put("event_kind", kind_name(e.kind));
        put("event_id", &e.id);
        if let Some(s) = e.status {
            put("status", status_name(s));
        }
        if let Some(h) = &e.host {
            put("ansible_host", h);
        }
        if let Some(t) = &e.task {
            put("task", &t.name);
        }
        for (k, v) in &self.c.fields {
            fields.insert(k.clone(), Value::String(v.clone()));
        }
        let mut out = json!({
            "time": e.created_ms as f64 / 1000.0,
            "source": self.c.source,
            "sourcetype": self.c.sourcetype,
            "event": event,
            "fields": fields,
        });
        let host = self
            .c
            .host
            .clone()
            .or_else(|| {
                if self.c.use_target_host {
                    e.host.clone()
                } else {
                    None
                }
            })
            .or_else(|| e.run.controller.clone());
        if let Some(h) = host {
            out["host"] = json!(h);
        }
        if let Some(i) = &self.c.index {
            out["index"] = json!(i);
        }
        out
    }

    fn send(&self, batch: &Batch) -> Outcome {
        let mut req = Request::new(Method::Post, self.url.clone())
            .timeout_ms(self.c.timeout_ms)
            .header("Authorization", format!("Splunk {}", self.c.token))
            .body("application/json", batch.body());
        if let Some(ch) = &self.c.channel {
            req = req.header("X-Splunk-Request-Channel", ch.clone());
        }
        req.deliver().0
    }
}

fn sent_before(id: &str) -> bool {
    state::get_json::<Vec<String>>(SENT_KEY).is_some_and(|s| s.iter().any(|x| x == id))
}

fn remember_sent(ids: &[String]) {
    let mut sent: Vec<String> = state::get_json(SENT_KEY).unwrap_or_default();
    sent.extend(ids.iter().cloned());
    if sent.len() > SENT_RING {
        let extra = sent.len() - SENT_RING;
        sent.drain(..extra);
    }
    state::set_json(SENT_KEY, &sent);
}

herald_sdk::export_plugin!(SplunkHec);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{event, host_event, stats_event, FakeHost};
    use herald_sdk::Status;

    const BASE: &str = "https://splunk.example.com:8088";
    const URL: &str = "https://splunk.example.com:8088/services/collector/event";
    const CHANNEL: &str = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";

    fn hec(extra: &str) -> SplunkHec {
        herald_sdk::build::<SplunkHec>(&format!(
            r#"{{"url":"{BASE}","token":"11111111-2222-3333-4444-555555555555"{extra}}}"#
        ))
        .unwrap()
    }

    fn ok_event(seq: u64) -> EventRef<'static> {
        let mut e = host_event(
            EventKind::RunnerOnOk,
            Status::Ok,
            "r1",
            "site.yml",
            "web1",
            "ping",
            None,
        );
        e.id = format!("ev-{seq}");
        e.sequence = seq;
        e.created_ms += seq as i64;
        EventRef::from(e)
    }

    fn stacked(body: &str) -> Vec<Value> {
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn hec_event_fields() {
        let h = hec(r#","index":"ansible","use_target_host":true,"fields":{"env":"prod"}"#);
        let e = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install",
            Some(r#"{"msg":"boom"}"#),
        );
        let v = h.hec_event(&e, None);
        assert_eq!(v["time"], json!(1_700_000_000.0));
        assert_eq!(v["host"], "web2");
        assert_eq!(v["index"], "ansible");
        assert_eq!(v["sourcetype"], "ansible:herald");
        assert_eq!(v["source"], "herald");
        assert_eq!(v["event"]["run_id"], "r1");
        assert_eq!(
            v["fields"],
            json!({"tenant":"acme","run_id":"r1","playbook":"site.yml","event_kind":"runner_on_failed",
                   "event_id":"ev-r1-web2-install","status":"failed","ansible_host":"web2","task":"install","env":"prod"})
        );
        // Without use_target_host: the controller; a fixed host wins; a template's text is kept.
        let v = hec("").hec_event(&e, Some("web2 failed".into()));
        assert_eq!(v["host"], "ctl1");
        assert_eq!(v["event"], "web2 failed");
        assert!(v.get("index").is_none());
        assert_eq!(hec(r#","host":"h""#).hec_event(&e, None)["host"], "h");
    }

    #[test]
    fn events_are_batched_and_flushed_at_the_limits() {
        let host = FakeHost::new(&[BASE]);
        host.respond(URL, 200, &[], r#"{"text":"Success","code":0}"#);
        let mut h = hec(&format!(r#","batch_max_events":3,"channel":"{CHANNEL}""#));
        assert!(matches!(h.handle(&ok_event(1), 1), Outcome::Ok));
        assert!(matches!(h.handle(&ok_event(2), 1), Outcome::Ok));
        assert!(host.requests().is_empty(), "stored, not sent");
        // A redelivered stored event is not stored twice.
        assert!(matches!(h.handle(&ok_event(2), 1), Outcome::Ok));
        assert!(matches!(h.handle(&ok_event(3), 1), Outcome::Ok));
        let sent = host.requests();
        assert_eq!(sent.len(), 1);
        let r = &sent[0];
        assert_eq!(r.url, URL);
        assert_eq!(
            r.header("authorization"),
            Some("Splunk 11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(r.header("x-splunk-request-channel"), Some(CHANNEL));
        let evs = stacked(&r.text());
        assert_eq!(
            evs.iter()
                .map(|e| e["fields"]["event_id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["ev-1", "ev-2", "ev-3"]
        );
        assert!(!host.state().contains_key(BUFFER_KEY));
        // Sent before: a redelivery sends nothing.
        assert!(matches!(h.handle(&ok_event(3), 2), Outcome::Ok));
        assert_eq!(host.requests().len(), 1);
        // The end of a run and a failure flush at once.
        assert!(matches!(h.handle(&ok_event(4), 1), Outcome::Ok));
        let mut st = stats_event("r1", "site.yml", &[("web1", 1, 0, 0, 0, 0)], None);
        st.sequence = 5;
        assert!(matches!(h.handle(&EventRef::from(st), 1), Outcome::Ok));
        assert_eq!(stacked(&host.requests()[1].text()).len(), 2);
    }

    #[test]
    fn a_retried_batch_is_the_same_request_and_stays_stored() {
        let host = FakeHost::new(&[BASE]);
        host.set_now_ms(0);
        host.respond(
            URL,
            503,
            &[("Retry-After", "3")],
            r#"{"text":"Server is busy","code":9}"#,
        )
        .respond(URL, 200, &[], r#"{"text":"Success","code":0}"#);
        let mut h = hec(r#","batch_max_events":2"#);
        assert!(matches!(h.handle(&ok_event(1), 1), Outcome::Ok));
        match h.handle(&ok_event(2), 1) {
            Outcome::Retryable(r) => assert_eq!(r.retry_after_ms, Some(3000)),
            o => panic!("{o:?}"),
        }
        assert!(host.state().contains_key(BUFFER_KEY));
        assert!(matches!(h.handle(&ok_event(2), 2), Outcome::Ok));
        let sent = host.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].body, sent[1].body, "byte for byte the same batch");
        assert!(!host.state().contains_key(BUFFER_KEY));
    }

    #[test]
    fn a_refused_token_is_permanent_and_keeps_the_batch() {
        let host = FakeHost::new(&[BASE]);
        host.respond(URL, 403, &[], r#"{"text":"Invalid token","code":4}"#);
        let mut h = hec(r#","batch_max_events":2"#);
        assert!(matches!(h.handle(&ok_event(1), 1), Outcome::Ok));
        match h.handle(&ok_event(2), 1) {
            Outcome::Permanent(p) => assert!(p.contains("Invalid token"), "{p}"),
            o => panic!("{o:?}"),
        }
        let kept: Batch = serde_json::from_str(&host.state()[BUFFER_KEY]).unwrap();
        assert_eq!(kept.ids, ["ev-1"]);
        assert!(host
            .logs()
            .iter()
            .any(|(_, l)| l.contains("1 earlier event(s) stay stored")));
    }

    #[test]
    fn one_event_per_request_and_kinds() {
        let host = FakeHost::new(&[BASE]);
        host.respond(URL, 200, &[], r#"{"text":"Success","code":0}"#);
        let mut h = hec(r#","batch_max_events":1,"kinds":["runner_on_failed"]"#);
        assert!(matches!(h.handle(&ok_event(1), 1), Outcome::Ok));
        assert!(host.requests().is_empty());
        let f = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "p",
            "h",
            "t",
            None,
        );
        assert!(matches!(h.handle(&EventRef::from(f), 1), Outcome::Ok));
        assert_eq!(host.requests().len(), 1);
        // An event of a kind not sent still flushes what is stored (here: nothing).
        let start = event(EventKind::PlaybookOnStart, "r2", "p");
        assert!(matches!(h.handle(&EventRef::from(start), 1), Outcome::Ok));
        assert_eq!(host.requests().len(), 1);
    }

    #[test]
    fn config_errors_name_the_key() {
        assert!(
            is_guid(CHANNEL) && !is_guid("abc") && !is_guid("0aeeac95-ac74-4aa9-b30d-6c4c0ac581bz")
        );
        let url = |extra: &str| format!(r#"{{"url":"{BASE}","token":"t"{extra}}}"#);
        for (json, want) in [
            (
                r#"{"url":"https://s"}"#.to_string(),
                "missing field `token`",
            ),
            (url(r#","channel":"abc""#), "`channel`"),
            (url(r#","batch_max_events":0"#), "`batch_max_events`"),
            (url(r#","batch_max_bytes":300000"#), "`batch_max_bytes`"),
            (url(r#","fields":{"host":"x"}"#), "`fields.host`"),
            (url(r#","kinds":["runner_on_nothing"]"#), "`kinds[0]`"),
            (url(r#","index":" ""#), "`index`"),
            (url(r#","batch":5"#), "unknown field `batch`"),
            (r#"{"url":"https://s","token":" "}"#.to_string(), "`token`"),
        ] {
            let err = herald_sdk::build::<SplunkHec>(&json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
        // The event path is added once.
        for base in [
            BASE,
            "https://splunk.example.com:8088/services/collector",
            URL,
        ] {
            let h = herald_sdk::build::<SplunkHec>(&format!(r#"{{"url":"{base}","token":"t"}}"#))
                .unwrap();
            assert_eq!(h.url.as_string(), URL);
        }
    }
}
