//! The `wasi:sockets` capability: UDP and TCP only to the addresses an
//! instance's `allow_sockets` lists. `wasi:sockets` itself is linked with
//! the WASI base; this module is its gate, set on each store's WASI context.
//! [`scripted`] redirects allowed addresses to local stand-ins for the
//! offline test runner.

pub mod scripted;

use crate::CallCounters;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

/// The socket grant of one store: the instance's `allow_sockets` (for
/// `herald:grants/check`; the WASI check holds its own copy).
pub struct SocketsState {
    pub(crate) allow: Arc<Vec<SocketAddr>>,
    /// The offline runner's stand-ins, when the runtime has them.
    pub(crate) scripted: Option<Arc<dyn scripted::SocketResponder>>,
}

impl SocketsState {
    /// Grants `allow` on `wasi`: connects and sends to a listed address,
    /// binds only of an ephemeral local end, never a listen or accept.
    /// Every refusal is a `denied_socket` fault of the call. With
    /// `scripted`, its stand-ins are admitted too (allowed addresses are
    /// redirected to them before this check).
    pub(crate) fn grant(
        wasi: &mut WasiCtxBuilder,
        allow: Arc<Vec<SocketAddr>>,
        counters: Arc<CallCounters>,
        scripted: Option<Arc<dyn scripted::SocketResponder>>,
    ) -> SocketsState {
        let allowed = allow.clone();
        let stand_ins = scripted.clone();
        wasi.allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let ok = match usage {
                    // Binding the ephemeral local end of an outbound socket.
                    SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => addr.port() == 0,
                    SocketAddrUse::TcpConnect
                    | SocketAddrUse::UdpSend
                    | SocketAddrUse::UdpReceive => {
                        socket_allowed(&allowed, &addr)
                            || stand_ins.as_ref().is_some_and(|s| s.is_stand_in(&addr))
                    }
                    // Listening and accepting: a plugin never serves.
                    _ => false,
                };
                if !ok {
                    counters.soft_fault("denied_socket", || {
                        format!("socket use {usage:?} of {addr} refused: not in the instance's allow_sockets")
                    });
                }
                Box::pin(async move { ok })
            });
        SocketsState { allow, scripted }
    }
}

/// Whether `allowed` (an instance's `allow_sockets`) admits connecting to
/// or sending to `addr`: the one test of sockets, used by the WASI socket
/// check and by `herald:grants/check.allows-socket`.
pub fn socket_allowed(allowed: &[SocketAddr], addr: &SocketAddr) -> bool {
    allowed.contains(addr)
}

/// Whether `allowed` admits connecting to `address`; the error says why.
pub fn explain_socket(allowed: &[SocketAddr], address: &str) -> Result<(), String> {
    let addr: SocketAddr = address.trim().parse().map_err(|_| {
        format!("`{address}` is not an ip:port address (host names are not resolved)")
    })?;
    if socket_allowed(allowed, &addr) {
        return Ok(());
    }
    let listed = if allowed.is_empty() {
        "it is empty".to_string()
    } else {
        let all: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        format!("it lists {}", all.join(", "))
    };
    Err(format!(
        "{addr} is not in allow_sockets ({listed}); add it to the instance's allow_sockets"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_admitted_exactly() {
        let allowed: Vec<SocketAddr> = vec!["127.0.0.1:514".parse().unwrap()];
        assert!(explain_socket(&allowed, "127.0.0.1:514").is_ok());
        let e = explain_socket(&allowed, "127.0.0.1:515").unwrap_err();
        assert!(
            e.contains("127.0.0.1:515 is not in allow_sockets (it lists 127.0.0.1:514)"),
            "{e}"
        );
        let e = explain_socket(&allowed, "localhost:514").unwrap_err();
        assert!(e.contains("not an ip:port address"), "{e}");
        assert!(explain_socket(&[], "127.0.0.1:514")
            .unwrap_err()
            .contains("it is empty"));
    }
}
