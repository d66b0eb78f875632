//! The senders outside a component: connections and datagrams go to the scripted peers of the
//! thread's [`crate::testing::FakeHost`], checked against its `allow_sockets` as the host
//! checks them. Nothing waits: a read with no scripted answer left fails at once as a timeout.

use super::{NetError, MAX_LINE};
use crate::fake;
use std::net::SocketAddr;

/// Sends datagrams to one address.
pub struct UdpSender {
    addr: SocketAddr,
}

impl UdpSender {
    pub fn new(addr: SocketAddr) -> UdpSender {
        UdpSender { addr }
    }

    /// Sends one datagram.
    pub fn send(&mut self, data: &[u8]) -> Result<(), NetError> {
        fake::datagram(self.addr, data)
    }
}

/// A TCP connection to one address, reopened when it breaks.
pub struct TcpSender {
    addr: SocketAddr,
    conn: Option<Stream>,
    timeout_ms: u64,
}

impl TcpSender {
    pub fn new(addr: SocketAddr, timeout_ms: u64) -> TcpSender {
        TcpSender {
            addr,
            conn: None,
            timeout_ms,
        }
    }

    /// Writes `data`, connecting first when needed.
    pub fn send(&mut self, data: &[u8]) -> Result<(), NetError> {
        if self.conn.is_none() {
            self.conn = Some(Stream::connect(self.addr, self.timeout_ms)?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.write_all(data).inspect_err(|_| self.conn = None)
    }
}

/// A TCP conversation with one scripted peer.
pub struct Stream {
    addr: SocketAddr,
    conn: usize,
    timeout_ms: u64,
    tls: bool,
}

impl Stream {
    /// Connects to `addr` (it must be in the FakeHost's `allow_sockets`).
    pub fn connect(addr: SocketAddr, timeout_ms: u64) -> Result<Stream, NetError> {
        let conn = fake::connect(addr)?;
        Ok(Stream {
            addr,
            conn,
            timeout_ms,
            tls: false,
        })
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether [`Stream::start_tls`] succeeded.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Writes all of `data` (the peer records it, and answers each complete line its
    /// replies match).
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), NetError> {
        fake::write(self.addr, self.conn, data)
    }

    /// Reads one of the peer's answered lines, without its line end; with none left, fails as
    /// a read that timed out.
    pub fn read_line(&mut self) -> Result<String, NetError> {
        let line = fake::read_line(self.addr, self.conn).ok_or_else(|| {
            NetError::Transient(
                self.addr,
                format!("no answer within {} ms", self.timeout_ms),
            )
        })?;
        if line.len() > MAX_LINE {
            return Err(NetError::Transient(
                self.addr,
                format!("a line longer than {MAX_LINE} bytes"),
            ));
        }
        Ok(line)
    }

    /// Simulates the TLS handshake (the peer records it; no crypto in a native test).
    pub fn start_tls(&mut self, server_name: &str) -> Result<(), NetError> {
        fake::start_tls(self.addr, server_name)?;
        self.tls = true;
        Ok(())
    }

    /// Ends the conversation.
    pub fn close(self) {}
}
