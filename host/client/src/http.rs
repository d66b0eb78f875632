//! The typed HTTP client of the API (docs/api.md).

use crate::model::{Accepted, DeadLetterPage, DeliveryPage, ErrorBody, EventPage, RunPage};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one call may take, answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed call, worded for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not an http:// or https:// URL.
    #[error("{url:?} is not an http:// or https:// URL (give --url or HERALD_URL)")]
    BadUrl { url: String },
    /// No token was given.
    #[error("no token: give --token or HERALD_TOKEN")]
    NoToken,
    /// The CA certificate file cannot be read.
    #[error("{}: cannot read the CA certificate", path.display())]
    CaCertRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA certificate file holds no usable PEM certificate.
    #[error("{}: not a PEM certificate (want -----BEGIN CERTIFICATE-----): {detail}", path.display())]
    CaCertPem { path: PathBuf, detail: String },
    /// The HTTP client cannot be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// No answer in time.
    #[error("herald at {base} did not answer within {} s", timeout.as_secs())]
    Timeout { base: String, timeout: Duration },
    /// The request did not get an answer: connection refused, TLS, DNS...
    #[error("cannot reach herald at {base}: {detail}")]
    Unreachable { base: String, detail: String },
    /// Herald answered with an error status; `body` is its JSON error body
    /// (`error` is empty when the answer was not one: then `message` holds
    /// the answer's text).
    #[error("herald answered {status}: {}", describe(body))]
    Api { status: String, body: ErrorBody },
    /// A success answer that is not the JSON the client expects.
    #[error("herald's answer to {path} is not the expected JSON: {detail}")]
    Decode { path: String, detail: String },
}

impl ClientError {
    /// The HTTP status code, for an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => status.split(' ').next()?.parse().ok(),
            _ => None,
        }
    }

    /// The server's JSON error body, for an error answer.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// `message (error)`, or the bare text of an answer that was not an error body.
fn describe(body: &ErrorBody) -> String {
    if body.error.is_empty() {
        body.message.clone()
    } else {
        format!("{} ({})", body.message, body.error)
    }
}

/// An error answer as a [`ClientError::Api`]: the server's JSON error body
/// when it sent one, else its text.
pub(crate) fn api_error(status: reqwest::StatusCode, body: &[u8]) -> ClientError {
    let body = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| ErrorBody {
        error: String::new(),
        message: String::from_utf8_lossy(body).trim().to_string(),
        index: None,
        field: None,
    });
    ClientError::Api {
        status: status.to_string(),
        body,
    }
}

/// A page of a list endpoint: its items and the cursor of the next page.
pub trait Page: DeserializeOwned {
    /// One listed item.
    type Item;
    /// The items and `next_cursor`.
    fn into_parts(self) -> (Vec<Self::Item>, Option<String>);
    /// A page of `items` (every page joined: no `next_cursor`).
    fn from_parts(items: Vec<Self::Item>, next_cursor: Option<String>) -> Self;
}

macro_rules! page {
    ($page:ty, $item:ty) => {
        impl Page for $page {
            type Item = $item;
            fn into_parts(self) -> (Vec<$item>, Option<String>) {
                (self.items, self.next_cursor)
            }
            fn from_parts(items: Vec<$item>, next_cursor: Option<String>) -> Self {
                Self { items, next_cursor }
            }
        }
    };
}
page!(RunPage, crate::model::RunSummary);
page!(EventPage, Value);
page!(DeliveryPage, crate::model::Delivery);
page!(DeadLetterPage, crate::model::DeadLetter);
page!(JsonPage, Value);

/// Any page with its items as the server sent them (for `--output json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonPage {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

/// A path segment (a run id, a dead letter id), percent-encoded.
fn seg(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}

/// A client of one Herald, as one tenant (its token).
///
/// Every list method is generic over the page type: the model's page
/// ([`RunPage`]...) for typed items, or [`JsonPage`] for the items as sent.
pub struct ApiClient {
    base: String,
    token: String,
    timeout: Duration,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the Herald at `url` (http:// or https://) with a tenant
    /// `token`. `ca_cert` is a PEM file of certificates trusted besides the
    /// system's roots, for a server whose certificate a private CA signed (or
    /// a self-signed one).
    pub fn new(url: &str, token: &str, ca_cert: Option<&Path>) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || reqwest::Url::parse(&base).is_err()
        {
            return Err(ClientError::BadUrl {
                url: url.to_string(),
            });
        }
        if token.trim().is_empty() {
            return Err(ClientError::NoToken);
        }
        // reqwest is built without a crypto provider of its own: use ring,
        // as the rest of the host does (a no-op when one is installed).
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut builder = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .user_agent(concat!("herald-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|source| ClientError::CaCertRead {
                path: path.to_path_buf(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::CaCertPem {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(ClientError::CaCertPem {
                    path: path.to_path_buf(),
                    detail: "no certificate in the file".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| ClientError::Setup(chain(&e)))?;
        Ok(ApiClient {
            base,
            token: token.trim().to_string(),
            timeout: DEFAULT_TIMEOUT,
            http,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` with the query `pairs`; decodes the answer as `T`
    /// (`serde_json::Value` keeps it as sent).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        pairs: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let req = self.http.get(format!("{}{path}", self.base)).query(pairs);
        self.send(path, req).await
    }

    /// POSTs `body` as JSON to `path`; decodes the answer as `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(path, req).await
    }

    /// GETs a list: one page, or with `all` every page (following
    /// `next_cursor`) joined into one without a cursor.
    pub async fn list<P: Page>(
        &self,
        path: &str,
        mut pairs: Vec<(&str, String)>,
        all: bool,
    ) -> Result<P, ClientError> {
        let page: P = self.get(path, &pairs).await?;
        if !all {
            return Ok(page);
        }
        let (mut items, mut next) = page.into_parts();
        while let Some(cursor) = next {
            pairs.retain(|(k, _)| *k != "cursor");
            pairs.push(("cursor", cursor));
            let (more, n) = self.get::<P>(path, &pairs).await?.into_parts();
            items.extend(more);
            next = n;
        }
        Ok(P::from_parts(items, None))
    }

    /// `GET /v1/runs`: runs, newest first.
    pub async fn runs<P: Page>(
        &self,
        pairs: Vec<(&str, String)>,
        all: bool,
    ) -> Result<P, ClientError> {
        self.list("/v1/runs", pairs, all).await
    }

    /// `GET /v1/runs/{id}`: a run with its PLAY RECAP and failed tasks
    /// (`T` = [`crate::model::RunDetail`] or `Value`).
    pub async fn run<T: DeserializeOwned>(
        &self,
        id: &str,
        pairs: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.get(&format!("/v1/runs/{}", seg(id)), pairs).await
    }

    /// `GET /v1/runs/{id}/events`: every page of a run's events.
    pub async fn run_events<P: Page>(
        &self,
        id: &str,
        pairs: Vec<(&str, String)>,
    ) -> Result<P, ClientError> {
        self.list(&format!("/v1/runs/{}/events", seg(id)), pairs, true)
            .await
    }

    /// `GET /v1/runs/{id}/artifacts`: a run's `set_stats` data
    /// (`T` = [`crate::model::Artifacts`] or `Value`).
    pub async fn artifacts<T: DeserializeOwned>(&self, id: &str) -> Result<T, ClientError> {
        self.get(&format!("/v1/runs/{}/artifacts", seg(id)), &[])
            .await
    }

    /// `GET /v1/deliveries`.
    pub async fn deliveries<P: Page>(
        &self,
        pairs: Vec<(&str, String)>,
        all: bool,
    ) -> Result<P, ClientError> {
        self.list("/v1/deliveries", pairs, all).await
    }

    /// `GET /v1/dead-letters`, newest first.
    pub async fn dead_letters<P: Page>(
        &self,
        pairs: Vec<(&str, String)>,
        all: bool,
    ) -> Result<P, ClientError> {
        self.list("/v1/dead-letters", pairs, all).await
    }

    /// `POST /v1/dead-letters/{id}/retry`.
    pub async fn retry_dead_letter<T: DeserializeOwned>(&self, id: &str) -> Result<T, ClientError> {
        let path = format!("/v1/dead-letters/{}/retry", seg(id));
        self.post(&path, &serde_json::json!({})).await
    }

    /// `POST /v1/dead-letters/retry`: every dead letter of an instance.
    pub async fn retry_plugin<T: DeserializeOwned>(&self, plugin: &str) -> Result<T, ClientError> {
        self.post(
            "/v1/dead-letters/retry",
            &serde_json::json!({ "plugin": plugin }),
        )
        .await
    }

    /// `POST /v1/runs/{id}/replay`: a run again to one instance.
    pub async fn replay<T: DeserializeOwned>(
        &self,
        run: &str,
        plugin: &str,
    ) -> Result<T, ClientError> {
        let path = format!("/v1/runs/{}/replay", seg(run));
        self.post(&path, &serde_json::json!({ "plugin": plugin }))
            .await
    }

    /// `POST /v1/events`: a batch of events, committed as a whole.
    pub async fn send_events(&self, events: &[Value]) -> Result<Accepted, ClientError> {
        self.post("/v1/events", events).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            path: path.to_string(),
            detail: e.to_string(),
        })
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                base: self.base.clone(),
                timeout: self.timeout,
            }
        } else {
            let mut detail = chain(&e);
            if let Some(hint) = tls_hint(&detail) {
                detail.push_str(" (");
                detail.push_str(hint);
                detail.push(')');
            }
            ClientError::Unreachable {
                base: self.base.clone(),
                detail,
            }
        }
    }
}

/// What to do about a certificate rustls refused, when the cause is a
/// common set-up mistake.
fn tls_hint(detail: &str) -> Option<&'static str> {
    if detail.contains("CaUsedAsEndEntity") {
        // `openssl req -x509` without extensions makes a CA certificate.
        Some("the server's certificate is a CA certificate: serve one with basicConstraints=CA:FALSE, or one signed by that CA")
    } else if detail.contains("UnknownIssuer") {
        Some("the server's certificate is not signed by a trusted CA: give the CA's certificate (PEM) with --ca-cert or HERALD_CA_CERT")
    } else {
        None
    }
}

/// An error and its sources on one line (reqwest's own message alone says
/// only "error sending request"; the cause, such as a refused connection or
/// an unknown certificate issuer, is in the sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunDetail;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn refuses_bad_urls_and_missing_tokens() {
        assert!(matches!(
            ApiClient::new("h:1", "t", None),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            ApiClient::new("http://h:1", " ", None),
            Err(ClientError::NoToken)
        ));
        let c = ApiClient::new("http://h:1/", "t", None).expect("http");
        assert_eq!(c.base(), "http://h:1");
        assert!(ApiClient::new("https://h:1", "t", None).is_ok());
        let err = ApiClient::new("http://h:1", " ", None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("HERALD_TOKEN")));
    }

    #[test]
    fn a_ca_file_must_hold_a_pem_certificate() {
        let dir = std::env::temp_dir().join(format!("herald-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let missing = dir.join("missing.pem");
        let e = ApiClient::new("https://h:1", "t", Some(&missing)).err();
        assert!(matches!(e, Some(ClientError::CaCertRead { .. })), "{e:?}");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let e = ApiClient::new("https://h:1", "t", Some(&junk)).err();
        assert!(
            matches!(&e, Some(ClientError::CaCertPem { .. }))
                && e.as_ref()
                    .is_some_and(|e| e.to_string().contains("junk.pem")),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refused_certificates_get_a_hint() {
        let h = tls_hint("invalid peer certificate: UnknownIssuer");
        assert!(h.is_some_and(|h| h.contains("--ca-cert")), "{h:?}");
        let h = tls_hint("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))");
        assert!(h.is_some_and(|h| h.contains("CA:FALSE")), "{h:?}");
        assert_eq!(tls_hint("tcp connect error: Connection refused"), None);
    }

    #[test]
    fn an_error_answer_carries_the_servers_json_body() {
        let e = api_error(
            reqwest::StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_parameter","message":"status must be one of ...","field":"status"}"#,
        );
        assert_eq!(e.status(), Some(400));
        assert_eq!(
            e.body().and_then(|b| b.field.as_deref()),
            Some("status"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "herald answered 400 Bad Request: status must be one of ... (invalid_parameter)"
        );
        // An answer that is not an error body (a proxy's page): its text.
        let e = api_error(reqwest::StatusCode::BAD_GATEWAY, b"  upstream down\n");
        assert_eq!(
            e.to_string(),
            "herald answered 502 Bad Gateway: upstream down"
        );
        assert_eq!(e.status(), Some(502));
    }

    /// Serves one canned HTTP answer on 127.0.0.1 and returns the base URL
    /// and the request as received.
    async fn one_answer(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn a_real_404_becomes_an_api_error_and_the_token_is_sent() {
        let body = r#"{"error":"not_found","message":"no run \"r 1\""}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (url, seen) = one_answer(answer).await;
        let c = ApiClient::new(&url, "tok", None).expect("client");
        let e = c.run::<RunDetail>("r 1", &[]).await.err();
        let request = seen.await.expect("server");
        assert!(request.starts_with("GET /v1/runs/r%201 "), "{request}");
        assert!(request
            .to_ascii_lowercase()
            .contains("authorization: bearer tok"));
        let e = e.expect("an error");
        assert_eq!(e.status(), Some(404));
        assert_eq!(
            e.to_string(),
            "herald answered 404 Not Found: no run \"r 1\" (not_found)"
        );
    }

    #[tokio::test]
    async fn a_success_answer_that_is_not_the_model_is_a_decode_error() {
        let (url, _seen) = one_answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
        )
        .await;
        let c = ApiClient::new(&url, "tok", None).expect("client");
        let e = c.runs::<RunPage>(vec![], false).await.err();
        assert!(
            matches!(&e, Some(ClientError::Decode { path, .. }) if path == "/v1/runs"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_naming_the_base() {
        // Bind then drop: a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let c = ApiClient::new(&format!("http://127.0.0.1:{port}"), "t", None).expect("client");
        let e = c.get::<Value>("/health", &[]).await.err();
        let text = e.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(e, Some(ClientError::Unreachable { .. }))
                && text.starts_with(&format!("cannot reach herald at http://127.0.0.1:{port}: ")),
            "{text}"
        );
    }
}
