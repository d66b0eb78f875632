//! The senders over the raw `wasi:sockets` bindings (inside a component). Compiled natively
//! too, for its unit tests; the native build uses [`super::fake`].
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

use super::{NetError, MAX_LINE};
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::io::poll;
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::bindings::wasi::sockets::instance_network::instance_network;
use crate::bindings::wasi::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, Network,
};
use crate::bindings::wasi::sockets::tcp::TcpSocket;
use crate::bindings::wasi::sockets::tcp_create_socket::create_tcp_socket;
use crate::bindings::wasi::sockets::udp::{
    IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream, UdpSocket,
};
use crate::bindings::wasi::sockets::udp_create_socket::create_udp_socket;
use std::net::SocketAddr;

fn wasi_addr(a: SocketAddr) -> IpSocketAddress {
    match a {
        SocketAddr::V4(v4) => {
            let o = v4.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (o[0], o[1], o[2], o[3]),
            })
        }
        SocketAddr::V6(v6) => {
            let s = v6.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: v6.flowinfo(),
                address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                scope_id: v6.scope_id(),
            })
        }
    }
}

fn unspecified(a: SocketAddr) -> IpSocketAddress {
    match a {
        SocketAddr::V4(_) => IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port: 0,
            address: (0, 0, 0, 0),
        }),
        SocketAddr::V6(_) => IpSocketAddress::Ipv6(Ipv6SocketAddress {
            port: 0,
            flow_info: 0,
            address: (0, 0, 0, 0, 0, 0, 0, 0),
            scope_id: 0,
        }),
    }
}

fn family(a: SocketAddr) -> IpAddressFamily {
    match a {
        SocketAddr::V4(_) => IpAddressFamily::Ipv4,
        SocketAddr::V6(_) => IpAddressFamily::Ipv6,
    }
}

fn map(addr: SocketAddr, e: ErrorCode) -> NetError {
    match e {
        ErrorCode::AccessDenied | ErrorCode::NotSupported => NetError::Denied(addr),
        other => NetError::Transient(addr, format!("{other:?}")),
    }
}

// Fields drop in declaration order: streams before their socket, as wasi requires.
struct UdpConn {
    _incoming: IncomingDatagramStream,
    outgoing: OutgoingDatagramStream,
    _socket: UdpSocket,
    _network: Network,
}

/// Sends datagrams to one address.
pub struct UdpSender {
    addr: SocketAddr,
    conn: Option<UdpConn>,
}

impl UdpSender {
    pub fn new(addr: SocketAddr) -> UdpSender {
        UdpSender { addr, conn: None }
    }

    fn connect(&self) -> Result<UdpConn, NetError> {
        let network = instance_network();
        let socket = create_udp_socket(family(self.addr)).map_err(|e| map(self.addr, e))?;
        socket
            .start_bind(&network, unspecified(self.addr))
            .map_err(|e| map(self.addr, e))?;
        loop {
            match socket.finish_bind() {
                Ok(()) => break,
                Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
                Err(e) => return Err(map(self.addr, e)),
            }
        }
        let (incoming, outgoing) = socket
            .stream(Some(wasi_addr(self.addr)))
            .map_err(|e| map(self.addr, e))?;
        Ok(UdpConn {
            _incoming: incoming,
            outgoing,
            _socket: socket,
            _network: network,
        })
    }

    /// Sends one datagram.
    pub fn send(&mut self, data: &[u8]) -> Result<(), NetError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_ref().expect("connected above");
        let result = (|| {
            loop {
                match conn.outgoing.check_send() {
                    Ok(0) => conn.outgoing.subscribe().block(),
                    Ok(_) => break,
                    Err(e) => return Err(e),
                }
            }
            let sent = conn.outgoing.send(&[OutgoingDatagram {
                data: data.to_vec(),
                remote_address: None,
            }])?;
            if sent == 1 {
                Ok(())
            } else {
                Err(ErrorCode::WouldBlock)
            }
        })();
        result.map_err(|e| {
            self.conn = None;
            map(self.addr, e)
        })
    }
}

struct TcpConn {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
    _network: Network,
}

/// A TCP connection to one address, reopened when it breaks.
pub struct TcpSender {
    addr: SocketAddr,
    timeout_ms: u64,
    conn: Option<TcpConn>,
}

impl TcpSender {
    pub fn new(addr: SocketAddr, timeout_ms: u64) -> TcpSender {
        TcpSender {
            addr,
            timeout_ms,
            conn: None,
        }
    }

    fn connect(&self) -> Result<TcpConn, NetError> {
        let network = instance_network();
        let socket = create_tcp_socket(family(self.addr)).map_err(|e| map(self.addr, e))?;
        socket
            .start_connect(&network, wasi_addr(self.addr))
            .map_err(|e| map(self.addr, e))?;
        let deadline =
            monotonic_clock::subscribe_duration(self.timeout_ms.saturating_mul(1_000_000));
        loop {
            match socket.finish_connect() {
                Ok((input, output)) => {
                    return Ok(TcpConn {
                        input,
                        output,
                        _socket: socket,
                        _network: network,
                    });
                }
                Err(ErrorCode::WouldBlock) => {
                    let ready = socket.subscribe();
                    let which = poll::poll(&[&ready, &deadline]);
                    if which.contains(&1) && !which.contains(&0) {
                        return Err(NetError::Transient(
                            self.addr,
                            format!("connect timed out after {} ms", self.timeout_ms),
                        ));
                    }
                }
                Err(e) => return Err(map(self.addr, e)),
            }
        }
    }

    /// Whether the peer closed the connection (a non-blocking read sees the end of stream).
    fn peer_closed(conn: &TcpConn) -> bool {
        matches!(
            conn.input.read(1),
            Err(StreamError::Closed) | Err(StreamError::LastOperationFailed(_))
        )
    }

    fn write_all(conn: &TcpConn, data: &[u8]) -> Result<(), String> {
        for chunk in data.chunks(4096) {
            conn.output
                .blocking_write_and_flush(chunk)
                .map_err(|e| match e {
                    StreamError::Closed => "connection closed".to_string(),
                    StreamError::LastOperationFailed(err) => err.to_debug_string(),
                })?;
        }
        Ok(())
    }

    /// Writes `data`, (re)connecting first when needed. One retry on a fresh connection when
    /// a kept connection turns out to be broken.
    pub fn send(&mut self, data: &[u8]) -> Result<(), NetError> {
        if let Some(conn) = &self.conn {
            if !Self::peer_closed(conn) && Self::write_all(conn, data).is_ok() {
                return Ok(());
            }
            self.conn = None;
        }
        let conn = self.connect()?;
        match Self::write_all(&conn, data) {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => Err(NetError::Transient(self.addr, e)),
        }
    }
}

/// A blocking TCP conversation with one granted address, optionally turned into TLS by the host.
/// Every read waits at most the stream's timeout.
pub struct Stream {
    // Dropped in this order: the streams, then the TLS connection they belong to, then the
    // socket and its network (wasi requires children first).
    input: Option<InputStream>,
    output: Option<OutputStream>,
    tls: Option<crate::tls_bindings::wasi::tls::types::ClientConnection>,
    _socket: TcpSocket,
    _network: Network,
    addr: SocketAddr,
    timeout_ms: u64,
    buf: Vec<u8>,
}

impl Stream {
    /// Connects to `addr` (it must be in the instance's `allow_sockets`), waiting at most
    /// `timeout_ms`, which also bounds each later read.
    pub fn connect(addr: SocketAddr, timeout_ms: u64) -> Result<Stream, NetError> {
        let conn = TcpSender::new(addr, timeout_ms).connect()?;
        Ok(Stream {
            input: Some(conn.input),
            output: Some(conn.output),
            tls: None,
            _socket: conn._socket,
            _network: conn._network,
            addr,
            timeout_ms,
            buf: Vec::new(),
        })
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether [`Stream::start_tls`] succeeded.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn closed(&self, what: &str) -> NetError {
        NetError::Transient(self.addr, what.to_string())
    }

    /// Writes all of `data` and flushes it.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), NetError> {
        let output = self
            .output
            .as_ref()
            .ok_or_else(|| self.closed("connection closed"))?;
        for chunk in data.chunks(4096) {
            output
                .blocking_write_and_flush(chunk)
                .map_err(|e| match e {
                    StreamError::Closed => {
                        NetError::Transient(self.addr, "connection closed by the peer".into())
                    }
                    StreamError::LastOperationFailed(err) => {
                        NetError::Transient(self.addr, err.to_debug_string())
                    }
                })?;
        }
        Ok(())
    }

    /// Reads one line, without its `\r\n` or `\n`. Fails when the peer closes the connection,
    /// when no line comes within the timeout, or on a line longer than [`MAX_LINE`].
    pub fn read_line(&mut self) -> Result<String, NetError> {
        let deadline =
            monotonic_clock::subscribe_duration(self.timeout_ms.saturating_mul(1_000_000));
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(self.closed(&format!("a line longer than {MAX_LINE} bytes")));
            }
            let input = self
                .input
                .as_ref()
                .ok_or_else(|| self.closed("connection closed"))?;
            match input.read(4096) {
                Ok(bytes) if bytes.is_empty() => {
                    let ready = input.subscribe();
                    let which = poll::poll(&[&ready, &deadline]);
                    if which.contains(&1) && !which.contains(&0) {
                        return Err(
                            self.closed(&format!("no answer within {} ms", self.timeout_ms))
                        );
                    }
                }
                Ok(bytes) => self.buf.extend_from_slice(&bytes),
                Err(StreamError::Closed) => {
                    return Err(self.closed("connection closed by the peer"))
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(NetError::Transient(self.addr, e.to_debug_string()))
                }
            }
        }
    }

    /// Turns the connection into TLS: the host does the handshake on it, checking that the
    /// server's certificate is valid for `server_name` (a DNS name or an IP address) and chains
    /// to a trusted root. Bytes already read and not consumed are an error (a server may not
    /// speak before the handshake).
    pub fn start_tls(&mut self, server_name: &str) -> Result<(), NetError> {
        use crate::tls_bindings::wasi::tls::types::{ClientHandshake, FutureClientStreams};
        if !self.buf.is_empty() {
            return Err(NetError::Tls(
                self.addr,
                "the server sent data before the TLS handshake".into(),
            ));
        }
        let (Some(input), Some(output)) = (self.input.take(), self.output.take()) else {
            return Err(self.closed("connection closed"));
        };
        let handshake = ClientHandshake::new(server_name, input, output);
        let future: FutureClientStreams = ClientHandshake::finish(handshake);
        let deadline =
            monotonic_clock::subscribe_duration(self.timeout_ms.saturating_mul(1_000_000));
        loop {
            match future.get() {
                None => {
                    let ready = future.subscribe();
                    let which = poll::poll(&[&ready, &deadline]);
                    if which.contains(&1) && !which.contains(&0) {
                        return Err(self.closed(&format!(
                            "TLS handshake not done within {} ms",
                            self.timeout_ms
                        )));
                    }
                }
                Some(Ok(Ok((conn, input, output)))) => {
                    self.input = Some(input);
                    self.output = Some(output);
                    self.tls = Some(conn);
                    return Ok(());
                }
                Some(Ok(Err(e))) => return Err(NetError::Tls(self.addr, e.to_debug_string())),
                Some(Err(())) => {
                    return Err(NetError::Tls(
                        self.addr,
                        "handshake already consumed".into(),
                    ))
                }
            }
        }
    }

    /// Ends the conversation: closes TLS's sending side (a close_notify) when there is TLS.
    pub fn close(mut self) {
        if let Some(tls) = &self.tls {
            tls.close_output();
        }
        self.input = None;
        self.output = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors() {
        let a: SocketAddr = "127.0.0.1:514".parse().unwrap();
        let d = NetError::Denied(a);
        assert!(!d.retryable());
        assert_eq!(d.to_string(), "destination 127.0.0.1:514 not allowed by the instance's allow_sockets (refused by the host)");
        assert!(matches!(
            map(a, ErrorCode::AccessDenied),
            NetError::Denied(_)
        ));
        assert!(map(a, ErrorCode::ConnectionRefused).retryable());
        match wasi_addr("[::1]:6514".parse().unwrap()) {
            IpSocketAddress::Ipv6(v6) => assert_eq!((v6.port, v6.address.7), (6514, 1)),
            _ => panic!(),
        }
    }
}
