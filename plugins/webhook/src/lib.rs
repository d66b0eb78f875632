//! Herald `webhook` sink: POSTs each event as JSON to a URL.
//!
//! - body: the event in Herald's wire format (`event.json`, byte for byte), or the fields chosen
//!   by `template`;
//! - headers: `Content-Type: application/json`, the configured `headers`, `Authorization: Bearer`
//!   from `bearer_token`, `X-Herald-Event-Id` and `Idempotency-Key` (the event id, stable across
//!   retries), `X-Herald-Event-Kind`, `X-Herald-Attempt`, and with `hmac_secret` a signature
//!   header (default `X-Herald-Signature: sha256=<hex HMAC-SHA256 of the exact body>`);
//! - `kinds` limits the event kinds sent; others are answered ok without a request;
//! - 2xx ok; 408, 429, 5xx, timeouts and connection errors retryable (honouring `Retry-After`);
//!   other statuses permanent.

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::{
    kind_name, log, parse_kind, status_name, Event, EventKind, EventRef, Outcome, Plugin,
};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to send events (`http://` or `https://`); must match the instance's `allow_http`.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Signs each body with HMAC-SHA256 under this secret.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    /// Header carrying the signature.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Connect / first-byte / between-bytes timeout.
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Event kinds to send (wire names such as `runner_on_failed`); all when absent.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Body template (field selection); the whole event when absent. See the README.
    #[serde(default)]
    pub template: Option<Value>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_signature_header() -> String {
    "X-Herald-Signature".into()
}

/// Headers the webhook sets itself or that HTTP forbids setting.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "x-herald-event-id",
    "x-herald-event-kind",
    "x-herald-attempt",
    "idempotency-key",
];

/// Virtual references usable in a template besides `$.path`.
const REFS: &[&str] = &[
    "$",
    "$id",
    "$parent_id",
    "$kind",
    "$tenant",
    "$run_id",
    "$playbook",
    "$controller",
    "$sequence",
    "$created_ms",
    "$created",
    "$play",
    "$task",
    "$action",
    "$host",
    "$status",
    "$changed",
    "$ignore_errors",
    "$duration_ms",
    "$message",
    "$res",
];

/// A compiled body template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// A fixed value.
    Literal(Value),
    /// `$.a.b.0`: a path into the wire event.
    Path(Vec<String>),
    /// `$id`, `$kind`...: a field of the typed event.
    Ref(String),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

impl Template {
    /// Compiles a template value; `at` is its config path for errors.
    pub fn compile(v: &Value, at: &str) -> Result<Template, String> {
        Ok(match v {
            Value::Object(m) => Template::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), Template::compile(v, &format!("{at}.{k}"))?)))
                    .collect::<Result<_, String>>()?,
            ),
            Value::Array(a) => Template::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| Template::compile(v, &format!("{at}[{i}]")))
                    .collect::<Result<_, String>>()?,
            ),
            Value::String(s) if s.starts_with("$$") => {
                Template::Literal(Value::String(s[1..].to_string()))
            }
            Value::String(s) if s.starts_with("$.") => {
                let parts: Vec<String> = s[2..].split('.').map(str::to_string).collect();
                if parts.iter().any(|p| p.is_empty()) {
                    return Err(format!("config key `{at}`: empty segment in path `{s}`"));
                }
                Template::Path(parts)
            }
            Value::String(s) if s.starts_with('$') => {
                if !REFS.contains(&s.as_str()) {
                    return Err(format!(
                        "config key `{at}`: unknown reference `{s}` (use `$.path.into.event` or one of {}; write `$$` for a literal `$`)",
                        REFS.join(", ")
                    ));
                }
                Template::Ref(s.clone())
            }
            other => Template::Literal(other.clone()),
        })
    }

    /// Renders the template for one event (`wire` is `event.json` parsed).
    pub fn render(&self, event: &Event, wire: &Value) -> Value {
        match self {
            Template::Literal(v) => v.clone(),
            Template::Path(parts) => {
                let mut cur = wire;
                for p in parts {
                    let next = match cur {
                        Value::Object(m) => m.get(p),
                        Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    };
                    match next {
                        Some(n) => cur = n,
                        None => return Value::Null,
                    }
                }
                cur.clone()
            }
            Template::Ref(r) => reference(r, event, wire),
            Template::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, t)| (k.clone(), t.render(event, wire)))
                    .collect::<Map<_, _>>(),
            ),
            Template::Array(items) => {
                Value::Array(items.iter().map(|t| t.render(event, wire)).collect())
            }
        }
    }
}

fn opt_str(s: Option<&str>) -> Value {
    s.map(|s| Value::String(s.to_string()))
        .unwrap_or(Value::Null)
}

fn reference(r: &str, e: &Event, wire: &Value) -> Value {
    match r {
        "$" => wire.clone(),
        "$id" => e.id.clone().into(),
        "$parent_id" => opt_str(e.parent_id.as_deref()),
        "$kind" => kind_name(e.kind).into(),
        "$tenant" => e.tenant.clone().into(),
        "$run_id" => e.run.id.clone().into(),
        "$playbook" => e.run.playbook.clone().into(),
        "$controller" => opt_str(e.run.controller.as_deref()),
        "$sequence" => e.sequence.into(),
        "$created_ms" => e.created_ms.into(),
        "$created" => herald_sdk::time::rfc3339_ms(e.created_ms).into(),
        "$play" => opt_str(e.play.as_ref().map(|p| p.name.as_str())),
        "$task" => opt_str(e.task.as_ref().map(|t| t.name.as_str())),
        "$action" => opt_str(e.task.as_ref().map(|t| t.action.as_str())),
        "$host" => opt_str(e.host.as_deref()),
        "$status" => opt_str(e.status.map(status_name)),
        "$changed" => e.changed.into(),
        "$ignore_errors" => e.ignore_errors.into(),
        "$duration_ms" => e
            .timing
            .as_ref()
            .map(|t| Value::from(t.duration_ms))
            .unwrap_or(Value::Null),
        "$message" => opt_str(herald_sdk::result_message(e.res.as_deref(), 2000).as_deref()),
        "$res" => e
            .res
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The configured webhook.
#[derive(Debug)]
pub struct Webhook {
    url: Url,
    method: Method,
    headers: Vec<(String, String)>,
    bearer_token: Option<String>,
    hmac_secret: Option<Vec<u8>>,
    signature_header: String,
    timeout_ms: u64,
    kinds: Option<BTreeSet<String>>,
    template: Option<Template>,
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Plugin for Webhook {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        let url = config::granted_url("url", &c.url)?;
        let method = match Method::parse(&c.method) {
            Some(m @ (Method::Post | Method::Put)) => m,
            _ => {
                return Err(format!(
                    "config key `method`: `{}` is not supported (use POST or PUT)",
                    c.method
                ))
            }
        };
        config::check_timeout_ms(c.timeout_ms)?;
        if !valid_header_name(&c.signature_header) {
            return Err(format!(
                "config key `signature_header`: `{}` is not a valid header name",
                c.signature_header
            ));
        }
        if let Some(s) = &c.hmac_secret {
            if s.is_empty() {
                return Err("config key `hmac_secret`: must not be empty".into());
            }
        }
        config::header_secret("bearer_token", c.bearer_token.as_deref())?;
        let mut headers = Vec::new();
        for (name, value) in &c.headers {
            let lower = name.to_ascii_lowercase();
            let key = format!("headers.{name}");
            if !valid_header_name(name) {
                return Err(format!("config key `{key}`: not a valid header name"));
            }
            if !config::is_header_value(value) {
                return Err(format!(
                    "config key `{key}`: header values must be single-line text"
                ));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(format!(
                    "config key `{key}`: `{name}` is set by the webhook itself"
                ));
            }
            if c.hmac_secret.is_some() && lower == c.signature_header.to_ascii_lowercase() {
                return Err(format!(
                    "config key `{key}`: `{name}` carries the signature (signature_header)"
                ));
            }
            if c.bearer_token.is_some() && lower == "authorization" {
                return Err(format!("config key `{key}`: set either bearer_token or an Authorization header, not both"));
            }
            headers.push((name.clone(), value.clone()));
        }
        let kinds = match &c.kinds {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    return Err("config key `kinds`: an empty list would send nothing; remove the key to send every kind".into());
                }
                let mut set = BTreeSet::new();
                for (i, k) in list.iter().enumerate() {
                    let kind = parse_kind(k).ok_or_else(|| {
                        format!("config key `kinds[{i}]`: unknown event kind `{k}` (use wire names such as `runner_on_failed`, `playbook_on_stats`)")
                    })?;
                    set.insert(kind_name(kind).to_string());
                }
                Some(set)
            }
        };
        let template = match &c.template {
            None => None,
            Some(v @ Value::Object(_)) => Some(Template::compile(v, "template")?),
            Some(_) => {
                return Err(
                    "config key `template`: must be a table (an object of output fields)".into(),
                )
            }
        };
        Ok(Webhook {
            url,
            method,
            headers,
            bearer_token: c.bearer_token,
            hmac_secret: c.hmac_secret.map(String::into_bytes),
            signature_header: c.signature_header,
            timeout_ms: c.timeout_ms,
            kinds,
            template,
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, attempt: u32) -> Outcome {
        let req = match self.build_request(event, attempt) {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Ok,
            Err(reason) => return herald_sdk::permanent(reason),
        };
        let (outcome, _) = req.deliver();
        match &outcome {
            Outcome::Ok => {}
            Outcome::Retryable(r) => log::warn(&format!(
                "event {}: retryable (attempt {attempt}): {}",
                event.id(),
                r.reason
            )),
            Outcome::Permanent(p) => {
                log::error(&format!("event {}: not delivered: {p}", event.id()))
            }
        }
        outcome
    }
}

impl Webhook {
    /// Whether the event's kind is sent.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|k| k.contains(kind_name(kind)))
    }

    /// The request body for an event: the instance's `body` message template when it has one
    /// (`[plugins.<name>.templates] body = ...`, rendered by the host, sent exactly), else the
    /// config's field-selection `template`, else `json` as it is (no other field is read).
    pub fn body(&self, event: &EventRef<'_>) -> Result<Vec<u8>, String> {
        if let Some(text) = event.render("body")? {
            return Ok(text.into_bytes());
        }
        match &self.template {
            None => Ok(event.json().into_bytes()),
            Some(t) => {
                let event: &Event = event;
                let wire: Value = serde_json::from_str(&event.json).unwrap_or(Value::Null);
                serde_json::to_vec(&t.render(event, &wire))
                    .map_err(|e| format!("cannot render the template: {e}"))
            }
        }
    }

    /// The request for an event, `None` when its kind is not sent.
    pub fn build_request(
        &self,
        event: &EventRef<'_>,
        attempt: u32,
    ) -> Result<Option<Request>, String> {
        let kind = event.kind();
        if !self.wants(kind) {
            return Ok(None);
        }
        let body = self.body(event)?;
        let content_type = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "application/json".into());
        let mut req = Request::new(self.method, self.url.clone())
            .timeout_ms(self.timeout_ms)
            .header(
                "user-agent",
                concat!("herald-webhook/", env!("CARGO_PKG_VERSION")),
            );
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("content-type") && !n.eq_ignore_ascii_case("user-agent") {
                req = req.header(n.clone(), v.clone());
            } else if n.eq_ignore_ascii_case("user-agent") {
                req.headers.retain(|(h, _)| h != "user-agent");
                req = req.header("user-agent", v.clone());
            }
        }
        if let Some(t) = &self.bearer_token {
            req = req.bearer(t);
        }
        let id = event.id();
        req = req
            .header("x-herald-event-id", id.clone())
            .header("idempotency-key", id)
            .header("x-herald-event-kind", kind_name(kind))
            .header("x-herald-attempt", attempt.to_string());
        if let Some(secret) = &self.hmac_secret {
            req = req.header(self.signature_header.clone(), sign(secret, &body));
        }
        Ok(Some(req.body(&content_type, body)))
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

herald_sdk::export_plugin!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{event, host_event};
    use herald_sdk::Status;

    fn hook(json: &str) -> Result<Webhook, String> {
        herald_sdk::build::<Webhook>(json)
    }

    fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn minimal_config_sends_the_wire_event() {
        let w = hook(r#"{"url":"http://127.0.0.1:9000/hook"}"#).unwrap();
        let e = event(EventKind::PlaybookOnStart, "r1", "site.yml");
        let r = w
            .build_request(&EventRef::from(e.clone()), 1)
            .unwrap()
            .unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.url.authority, "127.0.0.1:9000");
        assert_eq!(r.url.path_with_query, "/hook");
        assert_eq!(r.body, e.json.as_bytes());
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "x-herald-event-id"), Some(e.id.as_str()));
        assert_eq!(header(&r, "idempotency-key"), Some(e.id.as_str()));
        assert_eq!(header(&r, "x-herald-event-kind"), Some("playbook_on_start"));
        assert_eq!(header(&r, "x-herald-attempt"), Some("1"));
        assert_eq!(header(&r, "authorization"), None);
        assert_eq!(header(&r, "x-herald-signature"), None);
        assert_eq!(r.timeout_ms, 10_000);
    }

    #[test]
    fn headers_token_signature() {
        let w = hook(
            r#"{"url":"https://hooks.example.com/x","headers":{"X-Team":"ops"},"bearer_token":"tok",
                "hmac_secret":"It's a Secret to Everybody","timeout_ms":2500,"method":"put"}"#,
        )
        .unwrap();
        let mut e = event(EventKind::RunnerOnOk, "r1", "site.yml");
        e.json = "Hello, World!".into();
        let r = w
            .build_request(&EventRef::from(e.clone()), 3)
            .unwrap()
            .unwrap();
        assert_eq!(r.method, Method::Put);
        assert_eq!(header(&r, "x-team"), Some("ops"));
        assert_eq!(header(&r, "authorization"), Some("Bearer tok"));
        assert_eq!(header(&r, "x-herald-attempt"), Some("3"));
        // GitHub's documented example for X-Hub-Signature-256.
        assert_eq!(
            header(&r, "x-herald-signature"),
            Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        );
        assert_eq!(r.timeout_ms, 2500);

        let w =
            hook(r#"{"url":"http://h/","hmac_secret":"s","signature_header":"X-Sig"}"#).unwrap();
        let r = w
            .build_request(&EventRef::from(e.clone()), 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            header(&r, "x-sig"),
            Some(sign(b"s", b"Hello, World!").as_str())
        );
    }

    #[test]
    fn kinds_filter() {
        let w = hook(r#"{"url":"http://h/","kinds":["runner_on_failed","v2_playbook_on_stats","runner-on-unreachable"]}"#)
            .unwrap();
        assert!(w.wants(EventKind::RunnerOnFailed));
        assert!(w.wants(EventKind::PlaybookOnStats));
        assert!(w.wants(EventKind::RunnerOnUnreachable));
        assert!(!w.wants(EventKind::RunnerOnOk));
        let e = event(EventKind::RunnerOnOk, "r1", "p");
        assert!(w
            .build_request(&EventRef::from(e.clone()), 1)
            .unwrap()
            .is_none());
    }

    #[test]
    fn template_selects_fields() {
        let w = hook(
            r#"{"url":"http://h/","template":{
                "source":"herald","id":"$id","kind":"$kind","host":"$host","status":"$status",
                "playbook":"$.event_data.playbook","missing":"$.event_data.nope.deeper",
                "dollar":"$$5","n":3,"nested":{"task":"$task","msg":"$message"},"list":["$run_id", true]}}"#,
        )
        .unwrap();
        let e = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r9",
            "site.yml",
            "web1",
            "install",
            Some(r#"{"msg":"boom"}"#),
        );
        let body: Value = serde_json::from_slice(
            &w.build_request(&EventRef::from(e.clone()), 1)
                .unwrap()
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "source":"herald","id":e.id,"kind":"runner_on_failed","host":"web1","status":"failed",
                "playbook":"site.yml","missing":null,"dollar":"$5","n":3,
                "nested":{"task":"install","msg":"boom"},"list":["r9",true]
            })
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (r#"{}"#, "missing field `url`"),
            (r#"{"url":"ftp://x"}"#, "`url`"),
            (r#"{"url":"http://h","method":"GET"}"#, "`method`"),
            (r#"{"url":"http://h","timeout_ms":0}"#, "`timeout_ms`"),
            (r#"{"url":"http://h","timeout_ms":"5s"}"#, "`timeout_ms`"),
            (
                r#"{"url":"http://h","headers":{"Content-Length":"1"}}"#,
                "`headers.Content-Length`",
            ),
            (
                r#"{"url":"http://h","headers":{"bad name":"1"}}"#,
                "`headers.bad name`",
            ),
            (
                r#"{"url":"http://h","headers":{"X":"a\nb"}}"#,
                "`headers.X`",
            ),
            (r#"{"url":"http://h","headers":{"X":1}}"#, "`headers.X`"),
            (
                r#"{"url":"http://h","bearer_token":"t","headers":{"Authorization":"x"}}"#,
                "`headers.Authorization`",
            ),
            (
                r#"{"url":"http://h","hmac_secret":"s","headers":{"x-herald-signature":"x"}}"#,
                "`headers.x-herald-signature`",
            ),
            (
                r#"{"url":"http://h","kinds":["runner_on_ok","bogus"]}"#,
                "`kinds[1]`",
            ),
            (r#"{"url":"http://h","kinds":[]}"#, "`kinds`"),
            (r#"{"url":"http://h","template":"x"}"#, "`template`"),
            (
                r#"{"url":"http://h","template":{"a":{"b":"$nope"}}}"#,
                "`template.a.b`",
            ),
            (
                r#"{"url":"http://h","template":{"a":"$.x..y"}}"#,
                "`template.a`",
            ),
            (r#"{"url":"http://h","hmac_secret":""}"#, "`hmac_secret`"),
            (
                r#"{"url":"http://h","signature_header":"a b"}"#,
                "`signature_header`",
            ),
            (
                r#"{"url":"http://h","secret":"x"}"#,
                "unknown field `secret`",
            ),
        ];
        for (json, want) in cases {
            let err = hook(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn content_type_and_user_agent_overrides() {
        let w = hook(r#"{"url":"http://h/","headers":{"Content-Type":"application/vnd.x+json","User-Agent":"me"}}"#).unwrap();
        let r = w
            .build_request(&EventRef::from(event(EventKind::RunnerOnOk, "r", "p")), 1)
            .unwrap()
            .unwrap();
        assert_eq!(header(&r, "content-type"), Some("application/vnd.x+json"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(header(&r, "user-agent"), Some("me"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
                .count(),
            1
        );
    }
}
