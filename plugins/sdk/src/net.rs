//! UDP and TCP senders over the raw `wasi:sockets` bindings (Rust `std::net` is not usable on
//! wasm32-wasip2 for this). Destinations are `ip:port` addresses: the host grants only the
//! addresses in the instance's `allow_sockets` and does no name lookup.
//!
//! A sender keeps its socket between calls (one plugin instance lives across many events) and
//! reconnects after an error. Errors say whether they may pass ([`NetError::retryable`]).

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

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The host refused the address: not in the instance's `allow_sockets`.
    Denied(SocketAddr),
    /// Connection refused, reset, timeout...: may pass.
    Transient(SocketAddr, String),
}

impl NetError {
    pub fn retryable(&self) -> bool {
        matches!(self, NetError::Transient(..))
    }
    /// The outcome for this error.
    pub fn outcome(&self) -> crate::Outcome {
        if self.retryable() {
            crate::retryable(self.to_string(), None)
        } else {
            crate::permanent(self.to_string())
        }
    }
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Denied(a) => write!(
                f,
                "destination {a} not allowed by the instance's allow_sockets (refused by the host)"
            ),
            NetError::Transient(a, d) => write!(f, "cannot reach {a}: {d}"),
        }
    }
}

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
