//! The keep-alive connection pool behind plugins' outbound `wasi:http`
//! requests (the allow-list check happens before, in [`super`]).
//!
//! One pool per [`crate::Runtime`], keyed by scheme and authority (hyper_util's
//! legacy client), with one client per thread: a connection's task runs on
//! the thread that opened it, and the server's delivery threads each run
//! their own executor, so a response wakes nothing on another thread (a
//! shared client cost a webhook instance about a tenth of its rate in
//! cross-thread wake-ups: bench/analysis.md, "The webhook's sink alone from
//! another process"). wasmtime's stock `default_send_request` opens a new TCP
//! (and TLS) connection per request; reusing them costs about a quarter of
//! the CPU per request. What keeps reuse safe for at-least-once delivery:
//!
//! * a request is sent again on a fresh connection only when hyper hands it
//!   back unsent (the pooled connection was found closed before any byte was
//!   written: `retry_canceled_requests`); once bytes were written, any
//!   failure reaches the plugin as an error, which it reports as retryable;
//! * HTTP/1 answers are read in order on a connection, and bytes arriving on
//!   an idle connection close it, so a response always belongs to its request;
//! * idle connections are dropped after [`IDLE_TIMEOUT`], below the common
//!   server keep-alive timeouts (Apache, Node.js: 5 s), which narrows the
//!   window in which a server closes a connection just as it is reused.
//!
//! Connections are made like `default_send_request` makes them: the host
//! name is resolved by the system resolver, https uses rustls with the
//! webpki roots.

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use thiserror::Error;
use thread_local::ThreadLocal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per destination.
const MAX_IDLE_PER_HOST: usize = 16;
/// Connect timeout when a connection is opened outside a request's scope.
const FALLBACK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The connect timeout of the request being sent; the connector only
    /// sees the URI.
    static CONNECT_TIMEOUT: Duration;
}

/// Why a connection could not be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("the URI has no authority")]
    NoAuthority,
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Io(io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("invalid TLS server name: {0}")]
    ServerName(String),
}

/// The shared outbound client; cheap to clone.
#[derive(Clone)]
pub struct OutboundPool {
    /// Each thread's client and its connections, made on first use.
    clients: Arc<ThreadLocal<Client<Connector, WasiBody>>>,
    /// Answers instead of the network (`herald plugin test`), when set.
    responder: Option<Arc<dyn super::scripted::Responder>>,
}

impl Default for OutboundPool {
    fn default() -> Self {
        Self::new()
    }
}

impl OutboundPool {
    /// An empty pool; connections are made on first use.
    pub fn new() -> OutboundPool {
        OutboundPool {
            clients: Arc::new(ThreadLocal::new()),
            responder: None,
        }
    }

    /// This thread's client.
    fn client(&self) -> &Client<Connector, WasiBody> {
        self.clients.get_or(|| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .pool_timer(TokioTimer::new())
                .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
                .retry_canceled_requests(true)
                .build(Connector::default())
        })
    }

    /// A pool whose requests `responder` answers; nothing reaches the network.
    pub fn scripted(responder: Arc<dyn super::scripted::Responder>) -> OutboundPool {
        OutboundPool {
            responder: Some(responder),
            ..OutboundPool::new()
        }
    }

    async fn answer_scripted(
        responder: &dyn super::scripted::Responder,
        request: Request<WasiBody>,
    ) -> Result<Response<WasiBody>, HttpError> {
        use super::scripted::{ScriptedFailure, ScriptedRequest};
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|_| HttpError::HttpRequestDenied)?
            .to_bytes();
        let req = ScriptedRequest {
            method: parts.method.to_string(),
            url: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            body,
        };
        let answer = responder.answer(&req).map_err(|f| match f {
            ScriptedFailure::ConnectionRefused => HttpError::ConnectionRefused,
            ScriptedFailure::Timeout => HttpError::ConnectionReadTimeout,
        })?;
        let mut response = Response::builder().status(answer.status);
        for (name, value) in &answer.headers {
            response = response.header(name.as_str(), value.as_str());
        }
        let body: WasiBody = http_body_util::Full::new(answer.body)
            .map_err(|never| match never {})
            .boxed_unsync();
        response
            .body(body)
            .map_err(|e| HttpError::InternalError(Some(e.to_string())))
    }

    /// Sends `request` (absolute URI) and waits for the response head. The
    /// connect timeout bounds opening a connection, `connect + first_byte`
    /// bounds the wait for the head, `between_bytes` each wait for body data.
    pub async fn send(
        &self,
        request: Request<WasiBody>,
        connect: Duration,
        first_byte: Duration,
        between_bytes: Duration,
    ) -> Result<Response<WasiBody>, HttpError> {
        if let Some(r) = &self.responder {
            return Self::answer_scripted(r.as_ref(), request).await;
        }
        let sent = CONNECT_TIMEOUT.scope(connect, self.client().request(request));
        let response = match tokio::time::timeout(connect.saturating_add(first_byte), sent).await {
            // The error default_send_request gives for a first-byte timeout.
            Err(_) => return Err(HttpError::ConnectionReadTimeout),
            Ok(Err(e)) => return Err(map_error(&e)),
            Ok(Ok(r)) => r,
        };
        // Tokio panics on a zero interval.
        let between_bytes = between_bytes.max(Duration::from_nanos(1));
        let mut timeout = tokio::time::interval(between_bytes);
        timeout.reset();
        Ok(response.map(|incoming| ResponseBody { incoming, timeout }.boxed_unsync()))
    }
}

/// Maps a client error to the `wasi:http` error the plugin sees.
fn map_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::NoAuthority => HttpError::HttpRequestUriInvalid,
                ConnectError::Timeout => HttpError::ConnectionTimeout,
                ConnectError::Io(io) => {
                    HttpError::Connect(io::Error::new(io.kind(), io.to_string()))
                }
                ConnectError::Tls(io) => HttpError::Tls(io::Error::new(io.kind(), io.to_string())),
                ConnectError::ServerName(_) => HttpError::HttpRequestUriInvalid,
            };
        }
        // The guest's request body failed (e.g. a wrong content-length).
        if let Some(HttpError::HttpRequestBodySize(n)) = s.downcast_ref::<HttpError>() {
            return HttpError::HttpRequestBodySize(*n);
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return HttpError::HttpResponseTimeout;
            }
            if h.is_incomplete_message() {
                return HttpError::HttpResponseIncomplete;
            }
        }
        source = s.source();
    }
    if e.is_connect() {
        return HttpError::ConnectionRefused;
    }
    HttpError::HttpProtocolError
}

/// The response body with the between-bytes timeout (as in
/// `default_send_request`).
struct ResponseBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.incoming)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::Body::size_hint(&self.incoming)
    }
}

/// Opens TCP connections, and TLS over them for https.
#[derive(Clone, Default)]
struct Connector {
    tls: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

impl Connector {
    /// The TLS client configuration of `default_send_request` (webpki roots,
    /// no client auth), built on first use.
    fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                };
                Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            })
            .clone()
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<TokioIo<Stream>, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> ConnectFuture {
        // Read here: the connect future may finish in a background task.
        let timeout = CONNECT_TIMEOUT
            .try_with(|t| *t)
            .unwrap_or(FALLBACK_CONNECT_TIMEOUT);
        let tls = (uri.scheme() == Some(&Scheme::HTTPS)).then(|| self.tls_config());
        Box::pin(async move {
            let authority = uri.authority().ok_or(ConnectError::NoAuthority)?;
            let address = match authority.port() {
                Some(_) => authority.to_string(),
                None => format!("{authority}:{}", if tls.is_some() { 443 } else { 80 }),
            };
            let connect = async {
                let tcp = TcpStream::connect(&address)
                    .await
                    .map_err(ConnectError::Io)?;
                // Requests are small and answered one at a time.
                let _ = tcp.set_nodelay(true);
                let Some(config) = tls else {
                    return Ok(Stream::Plain(tcp));
                };
                let name = tls_server_name(&address)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(tls)))
            };
            match tokio::time::timeout(timeout, connect).await {
                Err(_) => Err(ConnectError::Timeout),
                Ok(stream) => stream.map(TokioIo::new),
            }
        })
    }
}

/// The rustls server name of `host:port` (as `default_send_request` does).
fn tls_server_name(address: &str) -> Result<rustls::pki_types::ServerName<'static>, ConnectError> {
    use rustls::pki_types::ServerName;
    if let Ok(addr) = address.parse::<std::net::SocketAddr>() {
        return Ok(ServerName::from(addr.ip()));
    }
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    ServerName::try_from(host)
        .map(|n| n.to_owned())
        .map_err(|e| ConnectError::ServerName(e.to_string()))
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Asks the kernel to acknowledge the next segments at once. On a reused
    /// connection Linux delays ACKs (up to 40 ms); a sink that writes the
    /// response head and body in two sends with Nagle on (Python's
    /// http.server does) then holds the body until that ACK, so every
    /// answer took ~44 ms. The flag is not sticky, so it is set again after
    /// each read and write.
    fn quickack(&self) {
        #[cfg(target_os = "linux")]
        {
            let tcp = match self {
                Stream::Plain(s) => s,
                Stream::Tls(s) => s.get_ref().0,
            };
            let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = match this {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if matches!(read, Poll::Ready(Ok(()))) {
            this.quickack();
        }
        read
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match this {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if matches!(written, Poll::Ready(Ok(_))) {
            this.quickack();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match this {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if matches!(written, Poll::Ready(Ok(_))) {
            this.quickack();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A sink that answers each request with its `x-id` header, writes the
    /// head and the body in two sends (as Python's http.server does), and
    /// closes every connection `close_after` after its answer, so the
    /// client meets connections closed while idle.
    async fn closing_sink(close_after: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        // One request: head plus its content-length body.
                        let (head_end, length) = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                                let length = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .unwrap_or(0);
                                break (end + 4, length);
                            }
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        while buf.len() < head_end + length {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let id = head
                            .lines()
                            .find_map(|l| l.strip_prefix("x-id:"))
                            .map(|v| v.trim().to_string())
                            .unwrap_or_default();
                        buf.drain(..head_end + length);
                        record.lock().unwrap().push(id.clone());
                        let answer =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", id.len());
                        if conn.write_all(answer.as_bytes()).await.is_err()
                            || conn.write_all(id.as_bytes()).await.is_err()
                        {
                            return;
                        }
                        // Close while idle, unless the next request is already here.
                        if buf.is_empty() {
                            tokio::select! {
                                _ = tokio::time::sleep(close_after) => return,
                                r = conn.read(&mut chunk) => match r {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                },
                            }
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    fn request(url: &str, id: &str) -> Request<WasiBody> {
        let text = format!("{{\"id\":\"{id}\"}}");
        let length = text.len();
        let body = Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync();
        Request::post(format!("{url}/hook"))
            .header("x-id", id)
            .header("content-length", length.to_string())
            .body(body)
            .unwrap()
    }

    /// The at-least-once rule for a reused connection: a 2xx reaches the
    /// caller only as the sink's answer to that very request, whatever the
    /// timing of the sink closing idle connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_success_is_always_the_answer_to_that_request() {
        let pool = OutboundPool::new();
        let errors = AtomicUsize::new(0);
        for close_ms in [0u64, 1, 2, 5] {
            let (url, seen) = closing_sink(Duration::from_millis(close_ms)).await;
            for i in 0..60 {
                let id = format!("{close_ms}-{i}");
                // Pauses around the sink's close time race reuse against it.
                tokio::time::sleep(Duration::from_micros((i % 7) * 400)).await;
                let sent = pool
                    .send(
                        request(&url, &id),
                        Duration::from_secs(5),
                        Duration::from_secs(5),
                        Duration::from_secs(5),
                    )
                    .await;
                match sent {
                    Ok(response) => {
                        assert_eq!(response.status(), 200);
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(body, id.as_bytes(), "an answer to another request");
                        assert!(
                            seen.lock().unwrap().contains(&id),
                            "a 2xx for a request the sink never received"
                        );
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        // A request written just as the sink closes the connection fails
        // (the plugin retries it later); it must never look like a success.
        // Most requests still go through.
        assert!(
            errors.load(Ordering::Relaxed) < 120,
            "{errors:?} failed requests"
        );
    }

    /// Sends `n` requests one after the other, reading each answer whole.
    async fn send_in_turn(pool: &OutboundPool, url: &str, n: usize) {
        for i in 0..n {
            let response = pool
                .send(
                    request(url, &i.to_string()),
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            response.into_body().collect().await.unwrap();
        }
    }

    /// A sink writing head and body in two sends (Nagle on) answers a
    /// reused connection without waiting for a delayed ACK (~40 ms each).
    #[tokio::test]
    async fn split_answers_are_not_held_by_delayed_acks() {
        let (url, _) = closing_sink(Duration::from_secs(30)).await;
        let pool = OutboundPool::new();
        let started = std::time::Instant::now();
        send_in_turn(&pool, &url, 50).await;
        // About 2 s when ACKs are delayed; a few ms when they are not.
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1000),
            "50 requests took {took:?}"
        );
    }

    /// Sequential requests reuse one connection.
    #[tokio::test]
    async fn connections_are_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        let pool = OutboundPool::new();
        send_in_turn(&pool, &url, 20).await;
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
    }

    /// An unreachable destination is a connect error, not a hang.
    #[tokio::test]
    async fn connect_errors_are_mapped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let pool = OutboundPool::new();
        let err = pool
            .send(
                request(&url, "x"),
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err:?}");
    }
}
