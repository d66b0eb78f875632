//! A small blocking HTTP client over the host's one-call `http.send` (contract 0.2.0), and the
//! mapping of HTTP answers to [`Outcome`]s that every HTTP sink shares.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | ok |
//! | 408, 429, 5xx | retryable, after `Retry-After` (seconds or HTTP date) when given |
//! | timeouts, DNS and connection errors | retryable |
//! | other 1xx/3xx/4xx | permanent, with the status and a bounded piece of the body |
//! | destination outside the instance's `allow_http` | permanent: "destination ... not allowed" |
//!
//! The host checks the destination against the instance's `allow_http`, keeps connections
//! alive, and reads at most 1 MiB of the response body. One request is one host call (the same
//! exchange over `wasi:http` takes about 35).
//!
//! Error reasons never contain the URL's path or query (which can hold secrets, as Slack
//! webhook URLs do): only `scheme://authority`.

use crate::{permanent, retryable, text, Outcome};

/// Most of a response body the host reads (`http.send`); the rest is not read.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;
/// Characters of a response body quoted in a failure reason.
pub const REASON_BODY_CHARS: usize = 300;
/// Default timeout when a request sets none.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// HTTP methods the helper sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// Parses `GET`, `POST`, `PUT`, `PATCH`, `DELETE` (any case).
    pub fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "PATCH" => Some(Method::Patch),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A parsed `http` or `https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as written (lower-cased).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_with_query: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL. Userinfo and fragments are refused.
    pub fn parse(s: &str) -> Result<Url, String> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!("`{s}` is not an absolute URL (expected http:// or https://)")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "unsupported URL scheme `{scheme}` (expected http or https)"
            ));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("URL `{s}` has no host"));
        }
        if authority.contains('@') {
            return Err(
                "URLs with user:password@ are not supported; use the headers or token keys".into(),
            );
        }
        if authority.chars().any(|c| c.is_whitespace()) || path.chars().any(|c| c.is_whitespace()) {
            return Err("URL contains whitespace".into());
        }
        if path.contains('#') {
            return Err("URL fragments (#...) are not sent over HTTP; remove it".into());
        }
        if let Some((_, port)) = authority.rsplit_once(':') {
            if !authority.ends_with(']') && port.parse::<u16>().is_err() {
                return Err(format!("invalid port in URL authority `{authority}`"));
            }
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            scheme,
            authority: authority.to_ascii_lowercase(),
            path_with_query: path,
        })
    }

    /// `scheme://authority` (safe to log: no path, no query).
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// This URL with `path` appended to its path (one `/` between them; query dropped).
    pub fn join(&self, path: &str) -> Url {
        let base = self
            .path_with_query
            .split('?')
            .next()
            .unwrap_or("/")
            .trim_end_matches('/');
        let path = path.trim_start_matches('/');
        Url {
            path_with_query: format!("{base}/{path}"),
            ..self.clone()
        }
    }

    pub fn as_string(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme, self.authority, self.path_with_query
        )
    }
}

/// An outgoing request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Connect, first-byte and between-bytes timeout (wasi:http `request-options`).
    pub timeout_ms: u64,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Sets `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", format!("Bearer {token}"))
    }
    /// Sets the body and its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.body = body.into();
        self
    }
    /// Serializes `value` as the JSON body.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Request {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.body("application/json", body)
    }
    pub fn timeout_ms(mut self, ms: u64) -> Request {
        self.timeout_ms = ms;
        self
    }

    /// Sends the request and reads the whole response (the host reads at most 1 MiB of it).
    pub fn send(&self) -> Result<Response, Error> {
        host::send(self)
    }

    /// Sends the request and maps the answer with [`Response::outcome`] /
    /// [`Error::outcome`]. The response is returned too when there was one.
    pub fn deliver(&self) -> (Outcome, Option<Response>) {
        match self.send() {
            Ok(resp) => (
                resp.outcome_at(crate::time::now_ms(), &self.url),
                Some(resp),
            ),
            Err(e) => (e.outcome(), None),
        }
    }
}

/// A response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("invalid JSON in the response: {e}"))
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The outcome for this answer (see the module docs), `now_ms` for HTTP-date `Retry-After`.
    pub fn outcome_at(&self, now_ms: i64, url: &Url) -> Outcome {
        classify(
            self.status,
            self.header("retry-after"),
            &self.body,
            now_ms,
            &url.origin(),
        )
    }
}

/// Maps an HTTP status to an outcome. `origin` (`scheme://host:port`) names the sink in reasons.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now_ms: i64,
    origin: &str,
) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Ok;
    }
    let snippet = text::body_snippet(body, REASON_BODY_CHARS);
    let reason = if snippet.is_empty() {
        format!("HTTP {status} from {origin}")
    } else {
        format!("HTTP {status} from {origin}: {snippet}")
    };
    if status == 408 || status == 429 || (500..600).contains(&status) {
        let delay = retry_after.and_then(|v| crate::time::parse_retry_after(v, now_ms));
        return retryable(reason, delay);
    }
    if (300..400).contains(&status) {
        return permanent(format!(
            "{reason} (redirects are not followed; configure the final URL)"
        ));
    }
    permanent(reason)
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host refused the destination: it is not in the instance's `allow_http`.
    Denied { origin: String },
    /// A timeout (connect, first byte, between bytes).
    Timeout { origin: String, detail: String },
    /// DNS, connection, TLS or protocol trouble that may pass.
    Transient { origin: String, detail: String },
    /// A request that can never be sent (bad header, invalid URI...).
    Invalid { origin: String, detail: String },
}

impl Error {
    /// The outcome for this error: denied and invalid are permanent, the rest retryable.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Denied { .. } | Error::Invalid { .. } => permanent(self.to_string()),
            Error::Timeout { .. } | Error::Transient { .. } => retryable(self.to_string(), None),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Denied { origin } => write!(
                f,
                "destination {origin} not allowed by the instance's allow_http (refused by the host)"
            ),
            Error::Timeout { origin, detail } => write!(f, "timeout talking to {origin}: {detail}"),
            Error::Transient { origin, detail } => write!(f, "cannot reach {origin}: {detail}"),
            Error::Invalid { origin, detail } => write!(f, "invalid request to {origin}: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

mod host {
    use super::{Error, Request, Response};
    use crate::bindings::herald::plugin::http as h;

    /// Natively (tests): the installed FakeHost answers.
    #[cfg(not(target_family = "wasm"))]
    pub(super) fn send(req: &Request) -> Result<Response, Error> {
        crate::fake::send(req)
    }

    /// Sends `req` with the host's one-call `http.send`.
    #[cfg(target_family = "wasm")]
    pub(super) fn send(req: &Request) -> Result<Response, Error> {
        let request = h::Request {
            method: req.method.as_str().to_string(),
            url: req.url.as_string(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
                .collect(),
            body: req.body.clone(),
            timeout_ms: Some(u32::try_from(req.timeout_ms).unwrap_or(u32::MAX)),
        };
        match h::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(map_error(e, req.url.origin())),
        }
    }

    /// Sorts the host's answer into the SDK's errors.
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
    pub(super) fn map_error(e: h::Error, origin: String) -> Error {
        match e {
            h::Error::Denied(_) => Error::Denied { origin },
            h::Error::Timeout(detail) => Error::Timeout { origin, detail },
            h::Error::Transport(detail) => Error::Transient { origin, detail },
            h::Error::Invalid(detail) => Error::Invalid { origin, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(o: &Outcome) -> String {
        match o {
            Outcome::Ok => "ok".into(),
            Outcome::Retryable(r) => format!("retry:{:?}:{}", r.retry_after_ms, r.reason),
            Outcome::Permanent(p) => format!("permanent:{p}"),
        }
    }

    #[test]
    fn urls() {
        let u = Url::parse("HTTPS://Example.com:8443/a/b?x=1").unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.authority, "example.com:8443");
        assert_eq!(u.path_with_query, "/a/b?x=1");
        assert_eq!(u.origin(), "https://example.com:8443");
        assert_eq!(Url::parse("http://h").unwrap().path_with_query, "/");
        assert_eq!(Url::parse("http://h?x").unwrap().path_with_query, "/?x");
        assert_eq!(
            Url::parse("http://h/base/")
                .unwrap()
                .join("/api/x")
                .path_with_query,
            "/base/api/x"
        );
        assert_eq!(
            Url::parse("http://h").unwrap().join("api").path_with_query,
            "/api"
        );
        assert!(Url::parse("ftp://h/").is_err());
        assert!(Url::parse("h/x").is_err());
        assert!(Url::parse("http://u:p@h/").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://[::1]:80/").is_ok());
    }

    #[test]
    fn status_classification() {
        let o = "http://sink:80";
        assert!(matches!(classify(200, None, b"", 0, o), Outcome::Ok));
        assert!(matches!(classify(204, None, b"", 0, o), Outcome::Ok));
        assert_eq!(
            reason(&classify(429, Some("7"), b"slow down", 0, o)),
            "retry:Some(7000):HTTP 429 from http://sink:80: slow down"
        );
        assert_eq!(
            reason(&classify(503, None, b"", 0, o)),
            "retry:None:HTTP 503 from http://sink:80"
        );
        assert_eq!(
            reason(&classify(
                503,
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                b"",
                784_111_767_000,
                o
            )),
            "retry:Some(10000):HTTP 503 from http://sink:80"
        );
        assert!(reason(&classify(408, None, b"", 0, o)).starts_with("retry:"));
        assert_eq!(
            reason(&classify(400, None, b"bad\nfield", 0, o)),
            "permanent:HTTP 400 from http://sink:80: bad field"
        );
        assert!(reason(&classify(404, None, b"", 0, o)).starts_with("permanent:HTTP 404"));
        assert!(reason(&classify(301, None, b"", 0, o)).contains("redirects are not followed"));
        let long = "x".repeat(5000);
        assert!(
            reason(&classify(400, None, long.as_bytes(), 0, o))
                .chars()
                .count()
                < 400
        );
    }

    #[test]
    fn error_outcomes() {
        let d = Error::Denied {
            origin: "https://evil:443".into(),
        };
        assert_eq!(
            reason(&d.outcome()),
            "permanent:destination https://evil:443 not allowed by the instance's allow_http (refused by the host)"
        );
        let t = Error::Timeout {
            origin: "http://a".into(),
            detail: "ConnectionTimeout".into(),
        };
        assert!(reason(&t.outcome()).starts_with("retry:None:timeout"));
        let c = Error::Transient {
            origin: "http://a".into(),
            detail: "ConnectionRefused".into(),
        };
        assert!(reason(&c.outcome()).starts_with("retry:"));
        let i = Error::Invalid {
            origin: "http://a".into(),
            detail: "x".into(),
        };
        assert!(reason(&i.outcome()).starts_with("permanent:"));
    }

    #[test]
    fn error_mapping() {
        use crate::bindings::herald::plugin::http::Error as H;
        let map = |e| host::map_error(e, "http://o:1".into());
        assert_eq!(
            map(H::Denied("x".into())),
            Error::Denied {
                origin: "http://o:1".into()
            }
        );
        assert!(
            matches!(map(H::Timeout("t".into())), Error::Timeout { detail, .. } if detail == "t")
        );
        assert!(
            matches!(map(H::Transport("r".into())), Error::Transient { detail, .. } if detail == "r")
        );
        assert!(
            matches!(map(H::Invalid("i".into())), Error::Invalid { detail, .. } if detail == "i")
        );
        assert!(matches!(
            map(H::Denied("x".into())).outcome(),
            Outcome::Permanent(_)
        ));
    }

    #[test]
    fn request_builder() {
        let r = Request::new(Method::Post, Url::parse("http://h/x").unwrap())
            .bearer("t")
            .body("text/plain", "a")
            .json(&serde_json::json!({"a": 1}))
            .timeout_ms(5);
        assert_eq!(r.body, br#"{"a":1}"#);
        assert_eq!(
            r.headers
                .iter()
                .filter(|(n, _)| n == "content-type")
                .count(),
            1
        );
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer t".into())));
        assert_eq!(r.timeout_ms, 5);
        assert_eq!(Method::parse("put"), Some(Method::Put));
    }
}
