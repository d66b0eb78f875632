//! The host's imports outside a component (native `cargo test`): calls go to the
//! [`crate::testing::FakeHost`] the test installed, and panic with a clear message when there
//! is none (a test failure, not an abort of the test binary).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One request a plugin sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SentRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SentRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

pub(crate) struct Route {
    pub prefix: String,
    pub answers: Vec<Result<crate::http::Response, crate::http::Error>>,
    pub hits: usize,
}

/// A scripted socket peer: its greeting, its replies by line prefix, what it received.
#[derive(Default)]
pub(crate) struct Peer {
    pub greeting: Option<String>,
    pub replies: Vec<(String, String)>,
    pub refuse: bool,
    /// Everything written to it over TCP, every connection in order.
    pub received: Vec<u8>,
    pub datagrams: Vec<Vec<u8>>,
    /// Per connection: the partial line written so far, the lines answered and not yet read.
    pub conns: Vec<(Vec<u8>, std::collections::VecDeque<String>)>,
    /// `server_name` of every TLS start.
    pub tls: Vec<String>,
}

/// A metric the plugin recorded: (name, labels, value).
pub type RecordedMetric = (String, Vec<(String, String)>, f64);

#[derive(Default)]
pub(crate) struct Inner {
    pub allow_http: Vec<String>,
    pub allow_sockets: Vec<std::net::SocketAddr>,
    pub peers: std::collections::HashMap<std::net::SocketAddr, Peer>,
    pub routes: Vec<Route>,
    pub requests: Vec<SentRequest>,
    pub logs: Vec<(String, String)>,
    pub metrics: Vec<RecordedMetric>,
    pub state: BTreeMap<String, String>,
    pub now_ms: Option<i64>,
}

thread_local! {
    pub(crate) static CURRENT: RefCell<Option<Rc<RefCell<Inner>>>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&mut Inner) -> T) -> T {
    let host = CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(|| {
        panic!("herald_sdk: no host outside a component; create a herald_sdk::testing::FakeHost in the test")
    });
    let mut inner = host.borrow_mut();
    f(&mut inner)
}

/// Whether `url` is under the `allow_http` prefix `prefix` (scheme and authority equal, path
/// under the prefix's path), as the host tests it.
pub(crate) fn admits(prefix: &str, url: &str) -> bool {
    match (
        crate::http::Url::parse(prefix),
        crate::http::Url::parse(url),
    ) {
        (Ok(p), Ok(u)) => {
            let base = p.path_with_query.trim_end_matches('/');
            p.scheme == u.scheme
                && p.authority == u.authority
                && (base.is_empty()
                    || u.path_with_query == base
                    || u.path_with_query.starts_with(&format!("{base}/"))
                    || u.path_with_query.starts_with(&format!("{base}?")))
        }
        _ => false,
    }
}

pub(crate) fn log(level: &str, msg: &str) {
    with(|h| h.logs.push((level.to_string(), msg.to_string())))
}

pub(crate) fn metric(name: &str, labels: &[(&str, &str)], value: f64) {
    assert!(
        !name.starts_with("herald_"),
        "metric {name}: names starting with herald_ are the host's"
    );
    with(|h| {
        h.metrics.push((
            name.to_string(),
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
        ))
    })
}

pub(crate) fn state_get(key: &str) -> Option<String> {
    with(|h| h.state.get(key).cloned())
}

pub(crate) fn state_set(key: &str, value: &str) {
    with(|h| {
        h.state.insert(key.to_string(), value.to_string());
    })
}

pub(crate) fn state_delete(key: &str) {
    with(|h| {
        h.state.remove(key);
    })
}

pub(crate) fn now_ms() -> i64 {
    let fixed = CURRENT.with(|c| c.borrow().as_ref().and_then(|h| h.borrow().now_ms));
    fixed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

pub(crate) fn send(
    req: &crate::http::Request,
) -> Result<crate::http::Response, crate::http::Error> {
    let url = req.url.as_string();
    with(|h| {
        if !h.allow_http.iter().any(|p| admits(p, &url)) {
            return Err(crate::http::Error::Denied {
                origin: req.url.origin(),
            });
        }
        h.requests.push(SentRequest {
            method: req.method.as_str().to_string(),
            url: url.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        });
        let route = h
            .routes
            .iter_mut()
            .find(|r| url.starts_with(&r.prefix))
            .unwrap_or_else(|| {
                panic!("the plugin sent {} {url}, which nothing is scripted to answer (FakeHost::respond)", req.method.as_str())
            });
        let answer = route.answers[route.hits.min(route.answers.len() - 1)].clone();
        route.hits += 1;
        answer
    })
}

/// The scripted peer of `addr`; panics (a test failure) when the plugin reaches an address the
/// test scripted nothing for, and answers `Denied` for one outside `allow_sockets`.
fn peer<T>(
    addr: std::net::SocketAddr,
    f: impl FnOnce(&mut Peer) -> Result<T, crate::net::NetError>,
) -> Result<T, crate::net::NetError> {
    with(|h| {
        if !h.allow_sockets.contains(&addr) {
            return Err(crate::net::NetError::Denied(addr));
        }
        let p = h.peers.get_mut(&addr).unwrap_or_else(|| {
            panic!("the plugin reached {addr}, which no peer is scripted for (FakeHost::peer)")
        });
        f(p)
    })
}

pub(crate) fn datagram(
    addr: std::net::SocketAddr,
    data: &[u8],
) -> Result<(), crate::net::NetError> {
    peer(addr, |p| {
        p.datagrams.push(data.to_vec());
        Ok(())
    })
}

pub(crate) fn connect(addr: std::net::SocketAddr) -> Result<usize, crate::net::NetError> {
    peer(addr, |p| {
        if p.refuse {
            return Err(crate::net::NetError::Transient(
                addr,
                "connection refused (FakeHost)".into(),
            ));
        }
        let answers = p.greeting.iter().cloned().collect();
        p.conns.push((Vec::new(), answers));
        Ok(p.conns.len() - 1)
    })
}

pub(crate) fn write(
    addr: std::net::SocketAddr,
    conn: usize,
    data: &[u8],
) -> Result<(), crate::net::NetError> {
    peer(addr, |p| {
        p.received.extend_from_slice(data);
        let replies = p.replies.clone();
        let (partial, answers) = &mut p.conns[conn];
        partial.extend_from_slice(data);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']).to_ascii_lowercase();
            if let Some((_, reply)) = replies
                .iter()
                .find(|(prefix, _)| line.starts_with(&prefix.to_ascii_lowercase()))
            {
                answers.extend(
                    reply
                        .split('\n')
                        .map(|l| l.trim_end_matches('\r').to_string()),
                );
            }
        }
        Ok(())
    })
}

pub(crate) fn read_line(addr: std::net::SocketAddr, conn: usize) -> Option<String> {
    peer(addr, |p| Ok(p.conns[conn].1.pop_front()))
        .ok()
        .flatten()
}

pub(crate) fn start_tls(
    addr: std::net::SocketAddr,
    server_name: &str,
) -> Result<(), crate::net::NetError> {
    peer(addr, |p| {
        p.tls.push(server_name.to_string());
        Ok(())
    })
}
