//! The outbound HTTP capability: `wasi:http` requests pass only to the URL
//! prefixes an instance's `allow_http` lists.
//!
//! Prefixes are compared after normalising: scheme and host lowercased, the
//! default port (80, 443) filled in, and the path matched on `/` boundaries.
//! Names are not resolved: `localhost` and `127.0.0.1` are different
//! destinations, so list the one the plugin's config uses.
//!
//! Allowed requests go out through the runtime's keep-alive pool
//! ([`pool`]), with the guest's timeouts or the host's defaults.
//! Contract 0.2.0's one-call `http.send` ([`HttpGate::send_one`]) passes the
//! same gate and pool as `wasi:http`.

pub(crate) mod pool;
pub mod record;
pub mod scripted;

use crate::contract::{v0_2, v0_3};
use crate::{CallCounters, HostState};
use http::Uri;
use pool::OutboundPool;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

// The allow-list is configuration data: it lives in the config crate so that
// `herald check` needs no runtime; these names keep the runtime's paths.
pub use herald_config::allow::{admits, explain, UrlPrefix};

/// Links `wasi:http/outgoing-handler` (every version) and `http.send` (0.2.0, 0.3.0).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    v0_2::http::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_3::http::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// The HTTP capability of one store: wasmtime-wasi-http's context and the gate.
pub struct HttpState {
    pub(crate) ctx: WasiHttpCtx,
    pub(crate) gate: HttpGate,
}

impl HttpState {
    /// The grant of an instance's `allow_http`, through the runtime's pool.
    pub(crate) fn new(
        allow: Arc<Vec<UrlPrefix>>,
        counters: Arc<CallCounters>,
        pool: OutboundPool,
    ) -> HttpState {
        HttpState {
            ctx: WasiHttpCtx::new(),
            gate: HttpGate {
                allow,
                counters,
                pool,
            },
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.gate,
        }
    }
}

/// The `wasi:http` hooks of one plugin instance.
pub struct HttpGate {
    pub(crate) allow: Arc<Vec<UrlPrefix>>,
    pub(crate) counters: Arc<CallCounters>,
    /// The runtime's keep-alive connections.
    pub(crate) pool: OutboundPool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl HttpGate {
    /// The gate both ways out (`wasi:http`, `http.send`) pass: the
    /// destination must be in `allow_http` (else a `denied_http` fault), and
    /// the call must have requests left (else an `http_limit` fault). The
    /// error says why, without the URL.
    fn admit(&self, uri: &Uri) -> Result<(), &'static str> {
        let destination = redact_query(uri);
        if !admits(&self.allow, uri) {
            self.counters.soft_fault("denied_http", || {
                format!("outbound HTTP request to {destination} refused: not in the instance's allow_http")
            });
            return Err("the destination is not in the instance's allow_http");
        }
        if !self.counters.take_http_request(&destination) {
            return Err("more than limits.max_http_requests requests in one call");
        }
        Ok(())
    }
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let (slot, started) = record::start(request.method().as_str(), request.uri());
        self.counters.record_request(&slot);
        if let Err(why) = self.admit(request.uri()) {
            record::lock_set(&slot, |r| r.error = Some(why.to_string()));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // Guests may pass no options: never inherit the 600 s defaults.
        let options = options.unwrap_or_default();
        let connect = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
        let between_bytes = options
            .between_bytes_timeout
            .unwrap_or(BETWEEN_BYTES_TIMEOUT);
        let pool = self.pool.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let response = pool.send(request, connect, first_byte, between_bytes).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    record::lock_set(&slot, |r| {
                        r.latency_ms = latency_ms;
                        r.error = Some(e.to_string());
                    });
                    return Err(e);
                }
            };
            record::lock_set(&slot, |r| {
                r.latency_ms = latency_ms;
                r.status = Some(response.status().as_u16());
            });
            // The plugin reads the body after the head: its first bytes
            // are copied into the record as they pass.
            let response = response.map(|body| {
                body.map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        record::append_body(&slot, data);
                    }
                    frame
                })
                .boxed_unsync()
            });
            // The pool drives its connections in tasks of its own.
            Ok((
                response,
                Box::new(async { Ok(()) })
                    as Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// A request sent in one call (`herald:plugin/http.send`, contract 0.2.0).
pub struct OneShotRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Connect, first-byte and between-bytes timeout; the defaults when `None`.
    pub timeout: Option<Duration>,
}

/// The whole answer to a [`OneShotRequest`].
pub struct OneShotResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// At most [`MAX_RESPONSE_BODY`] bytes.
    pub body: Vec<u8>,
}

/// Why a [`OneShotRequest`] got no answer. Messages never hold the URL's
/// path or query (a Slack webhook's path is its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneShotError {
    Denied(String),
    Timeout(String),
    Transport(String),
    Invalid(String),
}

/// Longest response body read for `http.send`; the rest is left unread.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;

/// Hop-by-hop and framing headers, which the host sets (wasi:http forbids
/// the same ones).
const HOST_SET_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

impl HttpGate {
    /// Sends one request through the allow-list and the pool, and reads the
    /// whole response (up to [`MAX_RESPONSE_BODY`]).
    pub async fn send_one(&self, req: OneShotRequest) -> Result<OneShotResponse, OneShotError> {
        use http_body_util::BodyExt;
        let method = match req.method.to_ascii_uppercase().as_str() {
            "GET" => http::Method::GET,
            "POST" => http::Method::POST,
            "PUT" => http::Method::PUT,
            "PATCH" => http::Method::PATCH,
            "DELETE" => http::Method::DELETE,
            "HEAD" => http::Method::HEAD,
            "OPTIONS" => http::Method::OPTIONS,
            _ => {
                return Err(OneShotError::Invalid(format!(
                    "method {:?} is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
                    req.method
                )))
            }
        };
        let uri: Uri = req
            .url
            .parse()
            .map_err(|e| OneShotError::Invalid(format!("URL is not valid: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(OneShotError::Invalid(
                "URL must be absolute, http:// or https://".into(),
            ));
        }
        let (slot, started) = record::start(method.as_str(), &uri);
        self.counters.record_request(&slot);
        if let Err(why) = self.admit(&uri) {
            record::lock_set(&slot, |r| r.error = Some(why.to_string()));
            return Err(OneShotError::Denied(why.into()));
        }
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in &req.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OneShotError::Invalid(format!("header name {name:?} is not valid")))?;
            if name == http::header::CONTENT_LENGTH {
                continue;
            }
            if HOST_SET_HEADERS.contains(&name.as_str()) {
                return Err(OneShotError::Invalid(format!(
                    "header `{name}` is set by the host"
                )));
            }
            let value = http::HeaderValue::from_bytes(value).map_err(|_| {
                OneShotError::Invalid(format!("the value of header `{name}` is not valid"))
            })?;
            request = request.header(name, value);
        }
        let body: WasiBody = http_body_util::Full::new(bytes::Bytes::from(req.body))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = request
            .body(body)
            .map_err(|e| OneShotError::Invalid(e.to_string()))?;
        let connect = req.timeout.unwrap_or(CONNECT_TIMEOUT);
        let first_byte = req.timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
        let between_bytes = req.timeout.unwrap_or(BETWEEN_BYTES_TIMEOUT);
        let response = self
            .pool
            .send(request, connect, first_byte, between_bytes)
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        record::lock_set(&slot, |r| {
            r.latency_ms = latency_ms;
            match &response {
                Ok(resp) => r.status = Some(resp.status().as_u16()),
                Err(e) => r.error = Some(e.to_string()),
            }
        });
        let response = response.map_err(|e| one_shot_error(&e))?;
        let (parts, mut incoming) = response.into_parts();
        let status = parts.status.as_u16();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        body.extend_from_slice(&data);
                        if body.len() >= MAX_RESPONSE_BODY {
                            body.truncate(MAX_RESPONSE_BODY);
                            break;
                        }
                    }
                }
                // A success whose body never came is no success; otherwise
                // the status says enough.
                Err(e) if body.is_empty() && parts.status.is_success() => {
                    return Err(one_shot_error(&e));
                }
                Err(_) => break,
            }
        }
        record::append_body(&slot, &body);
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        Ok(OneShotResponse {
            status,
            headers,
            body,
        })
    }
}

/// Implements one version's `http.send` over [`HttpGate::send_one`].
macro_rules! http_send_host {
    ($version:ident) => {
        impl $version::http::Host for HostState {
            async fn send(
                &mut self,
                request: $version::http::Request,
            ) -> wasmtime::Result<Result<$version::http::Response, $version::http::Error>> {
                use $version::http::{Error, Response};
                let request = OneShotRequest {
                    method: request.method,
                    url: request.url,
                    headers: request.headers,
                    body: request.body,
                    timeout: request
                        .timeout_ms
                        .map(|ms| Duration::from_millis(u64::from(ms))),
                };
                Ok(match self.http.gate.send_one(request).await {
                    Ok(r) => Ok(Response {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    }),
                    Err(OneShotError::Denied(m)) => Err(Error::Denied(m)),
                    Err(OneShotError::Timeout(m)) => Err(Error::Timeout(m)),
                    Err(OneShotError::Transport(m)) => Err(Error::Transport(m)),
                    Err(OneShotError::Invalid(m)) => Err(Error::Invalid(m)),
                })
            }
        }
    };
}

http_send_host!(v0_2);
http_send_host!(v0_3);

/// Sorts a `wasi:http` error into the kinds `http.send` reports.
fn one_shot_error(e: &HttpError) -> OneShotError {
    let message = e.to_string();
    match e {
        HttpError::HttpRequestDenied => OneShotError::Denied(message),
        HttpError::DnsTimeout
        | HttpError::ConnectionTimeout
        | HttpError::ConnectionReadTimeout
        | HttpError::ConnectionWriteTimeout
        | HttpError::HttpResponseTimeout => OneShotError::Timeout(message),
        HttpError::HttpRequestUriInvalid
        | HttpError::HttpRequestUriTooLong
        | HttpError::HttpRequestMethodInvalid => OneShotError::Invalid(message),
        _ => OneShotError::Transport(message),
    }
}

/// The URI without its query string, which may carry credentials.
fn redact_query(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?"),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock;

    fn gate(allow: &str) -> HttpGate {
        HttpGate {
            allow: Arc::new(vec![UrlPrefix::parse(allow).unwrap()]),
            counters: Arc::new(CallCounters::new(&herald_config::Limits::default())),
            pool: OutboundPool::new(),
        }
    }

    fn one_shot(method: &str, url: &str, headers: &[(&str, &str)]) -> OneShotRequest {
        OneShotRequest {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: Vec::new(),
            timeout: Some(Duration::from_millis(200)),
        }
    }

    #[tokio::test]
    async fn one_shot_requests_are_checked_before_anything_is_sent() {
        let g = gate("http://127.0.0.1:9");
        let err = |r: Result<OneShotResponse, OneShotError>| r.err().expect("refused");
        let invalid = |e: OneShotError| matches!(e, OneShotError::Invalid(_));
        assert!(invalid(err(g
            .send_one(one_shot("BREW", "http://127.0.0.1:9/", &[]))
            .await)));
        assert!(invalid(err(g
            .send_one(one_shot("GET", "/relative", &[]))
            .await)));
        assert!(invalid(err(g
            .send_one(one_shot("GET", "ftp://127.0.0.1:9/", &[]))
            .await)));
        assert!(invalid(err(g
            .send_one(one_shot("GET", "http://127.0.0.1:9/", &[("host", "x")]))
            .await)));
        assert!(invalid(err(g
            .send_one(one_shot("GET", "http://127.0.0.1:9/", &[("bad name", "x")]))
            .await)));
        let denied = err(g
            .send_one(one_shot("GET", "http://127.0.0.1:10/secret/path", &[]))
            .await);
        assert!(
            matches!(&denied, OneShotError::Denied(m) if !m.contains("secret")),
            "{denied:?}"
        );
        assert_eq!(lock(&g.counters.faults)[0].reason, "denied_http");
    }
}
