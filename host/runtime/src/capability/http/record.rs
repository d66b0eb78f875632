//! What a call's outbound requests were: method, URL without credentials,
//! status, latency and the first bytes of the answer, bounded, so the
//! journal can show for each delivery attempt what was sent and what the
//! sink answered.
//!
//! The URL keeps its scheme, host, port and path; user info is dropped, every
//! query value is replaced by `***`, and so is a path segment that looks like
//! a credential (8 characters or more with a digit, or 24 or more: a Slack or
//! Discord webhook's path is its secret). A response head that names a
//! credential field (`token`, `secret`, `password`, `key`, `authorization`)
//! is kept only as JSON with those values masked, or withheld.

use http::Uri;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many bytes of a response body are kept.
pub const BODY_HEAD: usize = 512;
/// At most this many requests of one call are kept (the later ones are counted).
pub const MAX_RECORDED: usize = 16;

/// One outbound request of a call and what came back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: String,
    /// Without user info, query values or credential-like path segments.
    pub url: String,
    /// The response's status; `None` when none came (refused, timeout, denied).
    pub status: Option<u16>,
    /// From sending to the response head (or the failure).
    pub latency_ms: u64,
    /// The first [`BODY_HEAD`] bytes of the response body the plugin read.
    pub body: Vec<u8>,
    /// Why there was no response.
    pub error: Option<String>,
}

/// A request being recorded: shared with the response body, which fills in
/// its first bytes as the plugin reads them.
pub(crate) type Slot = Arc<Mutex<OutboundRequest>>;

/// Starts the record of a request.
pub(crate) fn start(method: &str, uri: &Uri) -> (Slot, Instant) {
    let slot = Arc::new(Mutex::new(OutboundRequest {
        method: method.to_string(),
        url: display_url(uri),
        ..Default::default()
    }));
    (slot, Instant::now())
}

/// Changes the record.
pub(crate) fn lock_set(slot: &Slot, f: impl FnOnce(&mut OutboundRequest)) {
    f(&mut crate::limits::lock(slot));
}

/// Appends body bytes, up to [`BODY_HEAD`].
pub(crate) fn append_body(slot: &Slot, data: &[u8]) {
    let mut r = crate::limits::lock(slot);
    let room = BODY_HEAD.saturating_sub(r.body.len());
    if room > 0 {
        r.body.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// The record as it is now, its body head cleaned of credentials.
pub(crate) fn finish(slot: &Slot) -> OutboundRequest {
    let mut r = crate::limits::lock(slot).clone();
    r.body = clean_body(&r.body);
    r
}

fn looks_secret(segment: &str) -> bool {
    (segment.len() >= 8 && segment.bytes().any(|b| b.is_ascii_digit())) || segment.len() >= 24
}

/// `scheme://host[:port]/path?key=***`, without user info or secrets.
pub fn display_url(uri: &Uri) -> String {
    let mut out = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.host().unwrap_or("?")
    );
    if let Some(p) = uri.port_u16() {
        out.push_str(&format!(":{p}"));
    }
    let path: Vec<&str> = uri
        .path()
        .split('/')
        .map(|s| if looks_secret(s) { "***" } else { s })
        .collect();
    out.push_str(&path.join("/"));
    if let Some(q) = uri.query() {
        let keys: Vec<String> = q
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let k = kv.split('=').next().unwrap_or_default();
                format!("{}=***", if looks_secret(k) { "***" } else { k })
            })
            .collect();
        out.push('?');
        out.push_str(&keys.join("&"));
    }
    out
}

const SECRET_KEYS: [&str; 6] = [
    "token",
    "secret",
    "password",
    "key",
    "authorization",
    "credential",
];

fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s))
}

fn mask(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if secret_key(k) {
                    *v = serde_json::Value::String("***".into());
                } else {
                    mask(v);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask),
        _ => {}
    }
}

/// The body head, unless it names a credential field: then its JSON with
/// those values masked, or a note that it was withheld.
fn clean_body(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    if !SECRET_KEYS
        .iter()
        .any(|s| text.to_ascii_lowercase().contains(s))
    {
        return head.to_vec();
    }
    match serde_json::from_slice::<serde_json::Value>(head) {
        Ok(mut v) => {
            mask(&mut v);
            v.to_string().into_bytes()
        }
        Err(_) => b"[withheld: the answer names a credential field]".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials() {
        let u = |s: &str| display_url(&s.parse::<Uri>().unwrap());
        assert_eq!(
            u("https://user:pw@hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx"),
            "https://hooks.slack.com/services/***/***/***"
        );
        assert_eq!(
            u("http://127.0.0.1:8080/v1/events?token=s3cr3t&x=1"),
            "http://127.0.0.1:8080/v1/events?token=***&x=***"
        );
        assert_eq!(
            u("https://example.com/api/webhook"),
            "https://example.com/api/webhook"
        );
    }

    #[test]
    fn body_heads_are_bounded_and_masked() {
        let (slot, _) = start("POST", &"http://h/x".parse().unwrap());
        append_body(&slot, &[b'a'; 400]);
        append_body(&slot, &[b'b'; 400]);
        assert_eq!(finish(&slot).body.len(), BODY_HEAD);
        let masked: serde_json::Value = serde_json::from_slice(&clean_body(
            br#"{"ok":true,"access_token":"xyz","nested":{"api_key":"k"}}"#,
        ))
        .unwrap();
        assert_eq!(
            masked,
            serde_json::json!({"ok": true, "access_token": "***", "nested": {"api_key": "***"}})
        );
        assert_eq!(
            clean_body(br#"{"password":"abc"#),
            b"[withheld: the answer names a credential field]".to_vec()
        );
        assert_eq!(clean_body(b"ok"), b"ok".to_vec());
    }
}
