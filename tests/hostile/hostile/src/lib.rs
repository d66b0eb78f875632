//! A hostile Herald plugin: its `mode` (from the instance's config) picks one
//! way of trying to hurt the host, another plugin or another tenant. The
//! host must survive every one of them, count the fault with the right
//! reason, and keep delivering for everyone else (tests/test_sandbox.py).
//!
//! | mode | what it does | expected fault |
//! |---|---|---|
//! | `ok` | nothing, answers ok | none |
//! | `loop` | spins forever | `cpu_timeout` |
//! | `memory` | allocates 1 MiB blocks forever | `memory` |
//! | `recursion` | recurses without end with big frames: Rust's stack in linear memory overflows | `trap` (out of bounds) |
//! | `stack` | recurses without end with small frames: the wasm call stack overflows | `trap` (call stack exhausted) |
//! | `panic` | panics with a message | `panic` |
//! | `http` | one request to `url` | `denied_http` when `url` is not allowed |
//! | `http_many` | `count` requests to `url` | `http_limit` beyond the limit |
//! | `wasi_http` | one request to `url` through raw `wasi:http` instead of `http.send` | `denied_http` when `url` is not allowed |
//! | `tcp` / `udp` | connects / sends to `address` | `denied_socket` |
//! | `tcp_listen` | binds `address` and listens | `denied_socket` |
//! | `escape` | reads a file, the environment and stdin; answers `permanent("ESCAPED ...")` if any works | none |
//! | `log_flood` | `count` log lines through `log`, stdout and stderr | `log_limit` |
//! | `log_tiny` | `count` one-byte lines on stdout | `log_limit` |
//! | `hold` | allocates `count` MiB when configured and keeps it; answers ok | `memory` when the host-wide ceiling refuses it |
//! | `block` | a request to `url` that never answers, with a long timeout | `wall_timeout` |
//! | `huge_error` | answers retryable with a `count`-byte reason | none (the host bounds it) |
//! | `huge_panic` | panics with a `count`-byte message | `panic` |

use herald_sdk::bindings::wasi::sockets::instance_network::instance_network;
use herald_sdk::bindings::wasi::sockets::network::{
    IpAddressFamily, IpSocketAddress, Ipv4SocketAddress,
};
use herald_sdk::bindings::wasi::sockets::tcp_create_socket::create_tcp_socket;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::net::{TcpSender, UdpSender};
use herald_sdk::{log, ok, permanent, retryable, EventRef, Outcome, Plugin};
use serde::Deserialize;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::SocketAddr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    /// Only misbehave on events whose host is this (so a test can mix good and bad events).
    #[serde(default)]
    only_host: Option<String>,
}

pub struct Hostile {
    config: Config,
    /// Memory kept for the instance's life (`hold`).
    _held: Vec<Vec<u8>>,
}

impl Plugin for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let mut held = Vec::new();
        if config.mode == "hold" {
            for i in 0..config.count.unwrap_or(1) {
                let mut b = vec![0u8; 1 << 20];
                b[4096] = i as u8;
                held.push(black_box(b));
            }
        }
        Ok(Hostile {
            config,
            _held: held,
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, attempt: u32) -> Outcome {
        if let Some(h) = &self.config.only_host {
            if event.host.as_deref() != Some(h.as_str()) {
                return ok();
            }
        }
        let count = self.config.count.unwrap_or(1);
        match self.config.mode.as_str() {
            "ok" => ok(),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "memory" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut b = vec![0u8; 1 << 20];
                    b[4096] = blocks.len() as u8;
                    blocks.push(black_box(b));
                }
            }
            "recursion" => {
                let n = recurse(black_box(0));
                permanent(format!("recursion ended at {n}?"))
            }
            "stack" => {
                let n = deep(black_box(u32::MAX));
                permanent(format!("recursion ended at {n}?"))
            }
            "panic" => panic!(
                "hostile plugin panicked on purpose (event {}, attempt {attempt})",
                event.id
            ),
            "huge_panic" => panic!("{}", "P".repeat(count as usize)),
            "http" | "block" => {
                let url = match Url::parse(self.config.url.as_deref().unwrap_or("")) {
                    Ok(u) => u,
                    Err(e) => return permanent(e),
                };
                let timeout = if self.config.mode == "block" {
                    600_000
                } else {
                    5_000
                };
                let req = Request::new(Method::Post, url)
                    .timeout_ms(timeout)
                    .body("application/json", event.json.clone());
                req.deliver().0
            }
            "wasi_http" => match wasi_post(self.config.url.as_deref().unwrap_or(""), &event.json())
            {
                Ok(status) if (200..300).contains(&status) => ok(),
                Ok(status) => retryable(format!("HTTP {status}"), None),
                Err(e) => permanent(e),
            },
            "http_many" => {
                let url = match Url::parse(self.config.url.as_deref().unwrap_or("")) {
                    Ok(u) => u,
                    Err(e) => return permanent(e),
                };
                let mut sent = 0;
                let mut refused = 0;
                for _ in 0..count {
                    match Request::new(Method::Post, url.clone())
                        .body("application/json", event.json.clone())
                        .send()
                    {
                        Ok(_) => sent += 1,
                        Err(_) => refused += 1,
                    }
                }
                log::info(&format!("http_many: {sent} sent, {refused} refused"));
                ok()
            }
            "tcp" | "udp" => {
                let addr: SocketAddr = match self.config.address.as_deref().unwrap_or("").parse() {
                    Ok(a) => a,
                    Err(e) => return permanent(format!("bad address: {e}")),
                };
                let result = if self.config.mode == "tcp" {
                    TcpSender::new(addr, 2_000).send(b"hostile\n")
                } else {
                    UdpSender::new(addr).send(b"hostile\n")
                };
                match result {
                    Ok(()) => ok(),
                    Err(e) => e.outcome(),
                }
            }
            "tcp_listen" => listen(self.config.address.as_deref().unwrap_or("")),
            "escape" => escape(),
            "log_flood" => {
                let line = "x".repeat(200);
                for i in 0..count {
                    log::info(&format!("flood {i} {line}"));
                    println!("stdout flood {i} {line}");
                    eprintln!("stderr flood {i} {line}");
                }
                let _ = std::io::stdout().flush();
                ok()
            }
            "log_tiny" => {
                let mut out = std::io::stdout().lock();
                for _ in 0..count {
                    let _ = out.write_all(b"x\n");
                }
                let _ = out.flush();
                ok()
            }
            "hold" => ok(),
            "huge_error" => retryable("E".repeat(count as usize), None),
            other => permanent(format!("unknown mode {other:?}")),
        }
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let frame = black_box([n; 32]);
    let deeper = recurse(black_box(n + 1));
    deeper.wrapping_add(frame[(n % 32) as usize])
}

#[inline(never)]
fn deep(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        deep(n - 1).wrapping_mul(3).wrapping_add(n)
    }
}

/// Binds a TCP socket to `address` and listens on it (a plugin must not serve).
fn listen(address: &str) -> Outcome {
    let addr: std::net::SocketAddrV4 = match address.parse() {
        Ok(a) => a,
        Err(e) => return permanent(format!("bad address: {e}")),
    };
    let network = instance_network();
    let socket = match create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(s) => s,
        Err(e) => return ok_if_refused("create", e),
    };
    let o = addr.ip().octets();
    let local = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: addr.port(),
        address: (o[0], o[1], o[2], o[3]),
    });
    if let Err(e) = socket.start_bind(&network, local) {
        return ok_if_refused("bind", e);
    }
    loop {
        match socket.finish_bind() {
            Ok(()) => break,
            Err(herald_sdk::bindings::wasi::sockets::network::ErrorCode::WouldBlock) => {
                socket.subscribe().block()
            }
            Err(e) => return ok_if_refused("bind", e),
        }
    }
    if let Err(e) = socket.start_listen() {
        return ok_if_refused("listen", e);
    }
    loop {
        match socket.finish_listen() {
            Ok(()) => break,
            Err(herald_sdk::bindings::wasi::sockets::network::ErrorCode::WouldBlock) => {
                socket.subscribe().block()
            }
            Err(e) => return ok_if_refused("listen", e),
        }
    }
    permanent(format!("ESCAPED: listening on {address}"))
}

fn ok_if_refused(
    step: &str,
    e: herald_sdk::bindings::wasi::sockets::network::ErrorCode,
) -> Outcome {
    log::info(&format!("sandbox held: {step} refused: {e:?}"));
    ok()
}

/// Tries files, the environment and stdin; any success is an escape.
fn escape() -> Outcome {
    let mut escaped = Vec::new();
    for path in ["/etc/passwd", "/etc/hostname", ".", "/"] {
        match std::fs::read_to_string(path) {
            Ok(s) => escaped.push(format!("read {path} ({} bytes)", s.len())),
            Err(e) => log::info(&format!("sandbox held: read {path}: {e}")),
        }
        if let Ok(entries) = std::fs::read_dir(path) {
            escaped.push(format!("listed {path} ({} entries)", entries.count()));
        }
    }
    if std::fs::write("/tmp/herald-hostile-was-here", b"x").is_ok() {
        escaped.push("wrote /tmp/herald-hostile-was-here".into());
    }
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    if !vars.is_empty() {
        escaped.push(format!(
            "saw {} environment variables ({})",
            vars.len(),
            vars.join(",")
        ));
    }
    for name in ["HOME", "PATH", "HERALD_HOSTILE_SECRET"] {
        if let Ok(v) = std::env::var(name) {
            escaped.push(format!("read ${name} ({} bytes)", v.len()));
        }
    }
    if !std::env::args().collect::<Vec<_>>().is_empty() {
        log::info("args present (harmless)");
    }
    let mut buf = [0u8; 64];
    match std::io::stdin().read(&mut buf) {
        Ok(n) if n > 0 => escaped.push(format!("read {n} bytes from stdin")),
        Ok(_) => log::info("sandbox held: stdin is empty"),
        Err(e) => log::info(&format!("sandbox held: stdin: {e}")),
    }
    if escaped.is_empty() {
        log::info("sandbox held: no file, no environment, no stdin");
        ok()
    } else {
        permanent(format!("ESCAPED: {}", escaped.join("; ")))
    }
}

herald_sdk::export_plugin!(Hostile);

/// POSTs `body` to `url` (`http://host:port/path`) through raw `wasi:http`, the way a plugin that
/// does not use `http.send` would; returns the status.
fn wasi_post(url: &str, body: &str) -> Result<u16, String> {
    use herald_sdk::bindings::wasi::http::outgoing_handler;
    use herald_sdk::bindings::wasi::http::types::{
        Fields, Method as WMethod, OutgoingBody, OutgoingRequest, Scheme,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or("wasi_http takes an http:// url")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .map_err(|e| format!("{e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let _ = request.set_method(&WMethod::Post);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let outgoing = request.body().map_err(|_| "no body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("refused: {e:?}"))?;
    {
        let stream = outgoing.write().map_err(|_| "no body stream")?;
        for chunk in body.as_bytes().chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        _ => Err("no response".into()),
    }
}
