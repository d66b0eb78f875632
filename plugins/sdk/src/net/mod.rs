//! UDP and TCP senders over the raw `wasi:sockets` bindings (Rust `std::net` is not usable on
//! wasm32-wasip2 for this). Destinations are `ip:port` addresses: the host grants only the
//! addresses in the instance's `allow_sockets` and does no name lookup.
//!
//! A sender keeps its socket between calls (one plugin instance lives across many events) and
//! reconnects after an error. Errors say whether they may pass ([`NetError::retryable`]).
//!
//! [`Stream`] is a TCP conversation (a line-based protocol such as SMTP) that the host can turn
//! into TLS in place ([`Stream::start_tls`], `wasi:tls`): STARTTLS, or TLS from the first byte.
//! The host verifies the server's certificate against the public web roots and the instance's
//! `tls_ca_file`; the plugin holds no root store and no crypto.
//!
//! Outside a component (a native `cargo test`), the same types talk to the
//! [`crate::testing::FakeHost`]'s scripted peers instead ([`FakeHost::peer`]).
//!
//! [`FakeHost::peer`]: crate::testing::FakeHost::peer

use std::net::SocketAddr;

#[cfg(not(target_family = "wasm"))]
mod fake;
mod wasi;

#[cfg(not(target_family = "wasm"))]
pub use fake::{Stream, TcpSender, UdpSender};
#[cfg(target_family = "wasm")]
pub use wasi::{Stream, TcpSender, UdpSender};

/// Longest line [`Stream::read_line`] accepts (SMTP allows 512 octets for a reply line; a
/// server's greeting or EHLO lines are far shorter).
pub const MAX_LINE: usize = 8192;

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The host refused the address: not in the instance's `allow_sockets`.
    Denied(SocketAddr),
    /// Connection refused, reset, timeout...: may pass.
    Transient(SocketAddr, String),
    /// The TLS handshake failed (the certificate is not trusted or names another server, no
    /// common protocol): fixed in the configuration, not by retrying.
    Tls(SocketAddr, String),
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
            NetError::Tls(a, d) => write!(f, "TLS with {a} failed: {d}"),
        }
    }
}
