//! The scripted peers of `herald plugin test --sockets FILE`: for every address of the
//! instance's `allow_sockets`, a TCP listener and a UDP socket on 127.0.0.1 stand in for the
//! real server (the runtime redirects the plugin's connections and datagrams to them,
//! [`herald::runtime::capability::sockets::scripted`]). Each peer answers by its rule and
//! writes a transcript of the bytes each way.
//!
//! A rule: `{"address": "10.0.0.5:587", "protocol": "smtp"|"lines", "greeting": "...",
//! "replies": [{"match": "RCPT", "send": "550 5.1.1 no such user", "times": 1}],
//! "fail": "refused"|"timeout"}`. `smtp` is a small mail server (EHLO with STARTTLS and AUTH
//! PLAIN LOGIN, MAIL, RCPT, DATA, QUIT); `lines` (the default) records what arrives and
//! answers only by `replies`. An allowed address without a rule is a `lines` peer that
//! answers nothing.

use anyhow::{bail, Context as _};
use herald::runtime::capability::sockets::scripted::{SocketResponder, Transport};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// One rule of the script.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    address: String,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    replies: Vec<Reply>,
    #[serde(default)]
    fail: Option<Fail>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    #[default]
    Lines,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Fail {
    /// Nothing listens: the connection is refused.
    Refused,
    /// The peer accepts and never answers.
    Timeout,
}

/// An answer to a line that starts with `match` (case-insensitive), at most `times` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    #[serde(rename = "match")]
    prefix: String,
    send: String,
    #[serde(default)]
    times: Option<u32>,
}

/// How a peer behaves.
#[derive(Debug, Clone)]
struct Behaviour {
    protocol: Protocol,
    greeting: Option<String>,
    replies: Vec<Reply>,
    silent: bool,
}

/// Transcript lines: (which peer, line), in the order they happened.
type Transcript = Arc<Mutex<Vec<(String, String)>>>;

fn push(t: &Transcript, peer: &str, line: String) {
    t.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((peer.to_string(), line));
}

/// The peers of one test run.
pub struct Peers {
    tcp: HashMap<SocketAddr, SocketAddr>,
    udp: HashMap<SocketAddr, SocketAddr>,
    transcript: Transcript,
}

impl Peers {
    /// Starts a peer for every address of `allow` (the instance's `allow_sockets`); `rules`
    /// may name only those addresses.
    pub async fn start(allow: &[SocketAddr], rules: Vec<Rule>) -> anyhow::Result<Peers> {
        let mut by_addr: HashMap<SocketAddr, Rule> = HashMap::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let addr: SocketAddr = rule.address.trim().parse().with_context(|| {
                format!("rule {}: address `{}` is not ip:port", i + 1, rule.address)
            })?;
            if !allow.contains(&addr) {
                bail!(
                    "rule {}: {addr} is not in the instance's allow_sockets ({}): the plugin could never reach it",
                    i + 1,
                    if allow.is_empty() {
                        "it is empty".to_string()
                    } else {
                        allow.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                    }
                );
            }
            by_addr.insert(addr, rule);
        }
        let transcript: Transcript = Arc::default();
        let mut peers = Peers {
            tcp: HashMap::new(),
            udp: HashMap::new(),
            transcript: transcript.clone(),
        };
        for addr in allow {
            let rule = by_addr.remove(addr);
            let fail = rule.as_ref().and_then(|r| r.fail);
            let behaviour = Behaviour {
                protocol: rule.as_ref().map(|r| r.protocol).unwrap_or_default(),
                greeting: rule.as_ref().and_then(|r| r.greeting.clone()),
                replies: rule.map(|r| r.replies).unwrap_or_default(),
                silent: fail == Some(Fail::Timeout),
            };
            let tcp = if fail == Some(Fail::Refused) {
                // A port nothing listens on any more.
                std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
            } else {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let local = listener.local_addr()?;
                tokio::spawn(serve_tcp(listener, *addr, behaviour, transcript.clone()));
                local
            };
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            let udp = socket.local_addr()?;
            tokio::spawn(serve_udp(socket, *addr, transcript.clone()));
            peers.tcp.insert(*addr, tcp);
            peers.udp.insert(*addr, udp);
        }
        Ok(peers)
    }

    /// Waits (at most ~1 s) until the peers have written everything the plugin sent, so a
    /// call's transcript is printed under that call.
    pub async fn settle(&self) {
        if self.tcp.is_empty() {
            return;
        }
        let mut last = usize::MAX;
        let mut quiet = 0;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let n = self
                .transcript
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            quiet = if n == last { quiet + 1 } else { 0 };
            last = n;
            if quiet >= 3 {
                break;
            }
        }
    }

    /// The transcript since the last call.
    pub fn drain(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.transcript.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl SocketResponder for Peers {
    fn stand_in(&self, addr: SocketAddr, transport: Transport) -> SocketAddr {
        let map = match transport {
            Transport::Tcp => &self.tcp,
            Transport::Udp => &self.udp,
        };
        map.get(&addr).copied().unwrap_or(addr)
    }

    fn is_stand_in(&self, addr: &SocketAddr) -> bool {
        self.tcp
            .values()
            .chain(self.udp.values())
            .any(|a| a == addr)
    }

    fn tls_started(&self, server_name: &str) {
        push(
            &self.transcript,
            "tls",
            format!("* TLS for {server_name}: simulated (what follows would be encrypted)"),
        );
    }
}

async fn serve_udp(socket: UdpSocket, addr: SocketAddr, t: Transcript) {
    let peer = format!("udp {addr}");
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        push(
            &t,
            &peer,
            format!("> {}", String::from_utf8_lossy(&buf[..n]).trim_end()),
        );
    }
}

async fn serve_tcp(listener: TcpListener, addr: SocketAddr, b: Behaviour, t: Transcript) {
    let mut n = 0;
    while let Ok((stream, _)) = listener.accept().await {
        n += 1;
        let peer = format!("tcp {addr} (connection {n})");
        push(&t, &peer, "* connected".into());
        let (b, t) = (b.clone(), t.clone());
        tokio::spawn(async move {
            let result = match b.protocol {
                Protocol::Lines => serve_lines(stream, &b, &t, &peer).await,
                Protocol::Smtp => serve_smtp(stream, &b, &t, &peer).await,
            };
            let end = match result {
                Ok(()) => "* closed".to_string(),
                Err(e) => format!("* closed: {e}"),
            };
            push(&t, &peer, end);
        });
    }
}

/// The scripted reply to `line`, if a rule has one left.
fn scripted(replies: &mut [Reply], line: &str) -> Option<String> {
    let hit = replies.iter_mut().find(|r| {
        line.to_ascii_lowercase()
            .starts_with(&r.prefix.to_ascii_lowercase())
            && r.times != Some(0)
    })?;
    if let Some(t) = &mut hit.times {
        *t -= 1;
    }
    Some(hit.send.clone())
}

async fn send(
    stream: &mut (impl AsyncWriteExt + Unpin),
    text: &str,
    t: &Transcript,
    peer: &str,
) -> std::io::Result<()> {
    let mut bytes = String::new();
    for line in text.trim_end_matches(['\r', '\n']).split('\n') {
        let line = line.trim_end_matches('\r');
        push(t, peer, format!("< {line}"));
        bytes.push_str(line);
        bytes.push_str("\r\n");
    }
    stream.write_all(bytes.as_bytes()).await
}

/// Takes the next frame off `buf`: an RFC 6587 octet-counted frame (`LEN SP MSG`), a line,
/// or (at the end) whatever is left.
fn next_frame(buf: &mut Vec<u8>, at_end: bool) -> Option<String> {
    let digits = buf.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && buf.get(digits) == Some(&b' ') {
        if let Some(len) = std::str::from_utf8(&buf[..digits])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        {
            if buf.len() >= digits + 1 + len {
                let frame: Vec<u8> = buf.drain(..digits + 1 + len).collect();
                return Some(String::from_utf8_lossy(&frame).into_owned());
            }
            if !at_end {
                return None;
            }
        }
    }
    if let Some(i) = buf.iter().position(|&c| c == b'\n') {
        let line: Vec<u8> = buf.drain(..=i).collect();
        return Some(
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        );
    }
    if at_end && !buf.is_empty() {
        let rest: Vec<u8> = std::mem::take(buf);
        return Some(String::from_utf8_lossy(&rest).into_owned());
    }
    None
}

async fn serve_lines(
    mut stream: TcpStream,
    b: &Behaviour,
    t: &Transcript,
    peer: &str,
) -> std::io::Result<()> {
    let mut replies = b.replies.clone();
    if let (Some(g), false) = (&b.greeting, b.silent) {
        send(&mut stream, g, t, peer).await?;
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        let n = stream.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        while let Some(frame) = next_frame(&mut buf, n == 0) {
            push(t, peer, format!("> {frame}"));
            if !b.silent {
                if let Some(answer) = scripted(&mut replies, &frame) {
                    send(&mut stream, &answer, t, peer).await?;
                }
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}

async fn serve_smtp(
    stream: TcpStream,
    b: &Behaviour,
    t: &Transcript,
    peer: &str,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut replies = b.replies.clone();
    if b.silent {
        // Accepts, records, never answers (not even the greeting).
        let mut line = String::new();
        while read.read_line(&mut line).await? > 0 {
            push(t, peer, format!("> {}", line.trim_end()));
            line.clear();
        }
        return Ok(());
    }
    let greeting = b
        .greeting
        .clone()
        .unwrap_or_else(|| "220 herald-plugin-test ESMTP".into());
    send(&mut write, &greeting, t, peer).await?;
    let (mut data, mut tls, mut secret_lines) = (false, false, 0);
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if data {
            push(t, peer, format!("> {text}"));
            if text == "." {
                data = false;
                let answer =
                    scripted(&mut replies, ".").unwrap_or_else(|| "250 2.0.0 OK: queued".into());
                send(&mut write, &answer, t, peer).await?;
            }
            continue;
        }
        let upper = text.to_ascii_uppercase();
        // Credentials are shown masked: AUTH PLAIN's token, AUTH LOGIN's two answers.
        if secret_lines > 0 {
            secret_lines -= 1;
            push(t, peer, "> ***".into());
            let answer = if secret_lines > 0 {
                "334 UGFzc3dvcmQ6"
            } else {
                "235 2.7.0 Authentication successful"
            };
            send(&mut write, answer, t, peer).await?;
            continue;
        }
        let shown = if upper.starts_with("AUTH PLAIN ") {
            "AUTH PLAIN ***"
        } else {
            text
        };
        push(t, peer, format!("> {shown}"));
        let answer = match scripted(&mut replies, text) {
            Some(a) => a,
            None => {
                let verb = upper.split_whitespace().next().unwrap_or("");
                match verb {
                    "EHLO" => {
                        let mut ext = vec!["250-herald-plugin-test"];
                        if !tls {
                            ext.push("250-STARTTLS");
                        }
                        ext.push("250-AUTH PLAIN LOGIN");
                        ext.push("250 8BITMIME");
                        ext.join("\n")
                    }
                    "HELO" => "250 herald-plugin-test".into(),
                    "STARTTLS" => {
                        tls = true;
                        "220 2.0.0 Ready to start TLS".into()
                    }
                    "AUTH" if upper.starts_with("AUTH PLAIN") => {
                        "235 2.7.0 Authentication successful".into()
                    }
                    "AUTH" if upper == "AUTH LOGIN" => {
                        secret_lines = 2;
                        "334 VXNlcm5hbWU6".into()
                    }
                    "MAIL" | "RCPT" | "RSET" | "NOOP" => "250 2.0.0 OK".into(),
                    "DATA" => "354 End data with <CR><LF>.<CR><LF>".into(),
                    "QUIT" => "221 2.0.0 Bye".into(),
                    _ => "500 5.5.2 Command not recognized".into(),
                }
            }
        };
        if upper == "DATA" && answer.starts_with("354") {
            data = true;
        }
        send(&mut write, &answer, t, peer).await?;
        if upper == "QUIT" {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_octet_counted_or_lines() {
        let mut buf = b"11 <14>1 hello20 <14>1 partial".to_vec();
        assert_eq!(
            next_frame(&mut buf, false).as_deref(),
            Some("11 <14>1 hello")
        );
        // A count whose message has not all arrived waits for more, unless the peer closed.
        assert_eq!(next_frame(&mut buf, false), None);
        assert_eq!(
            next_frame(&mut buf, true).as_deref(),
            Some("20 <14>1 partial")
        );
        let mut lines = b"EHLO x\r\nMAIL FROM:<a@b>\r\npartial".to_vec();
        assert_eq!(next_frame(&mut lines, false).as_deref(), Some("EHLO x"));
        assert_eq!(
            next_frame(&mut lines, false).as_deref(),
            Some("MAIL FROM:<a@b>")
        );
        assert_eq!(next_frame(&mut lines, false), None);
        assert_eq!(next_frame(&mut lines, true).as_deref(), Some("partial"));
        assert!(lines.is_empty());
    }

    #[test]
    fn scripted_replies_match_by_prefix_and_run_out() {
        let mut replies = vec![Reply {
            prefix: "rcpt".into(),
            send: "550 no".into(),
            times: Some(1),
        }];
        assert_eq!(
            scripted(&mut replies, "RCPT TO:<a@b>").as_deref(),
            Some("550 no")
        );
        assert_eq!(scripted(&mut replies, "RCPT TO:<a@b>"), None);
        assert_eq!(scripted(&mut replies, "MAIL FROM:<a@b>"), None);
    }
}
