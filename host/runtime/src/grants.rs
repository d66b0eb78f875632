//! `herald:grants/check@0.1.0` (`wit/grants-v0.1.0`): a plugin asks, while
//! it configures, whether its instance's `allow_http` / `allow_sockets`
//! admit a destination of its config, so a destination the sandbox would
//! refuse at every delivery fails `herald check` and the load instead, with
//! the config key named. Linked for every plugin; a component need not
//! import it. The answers come from the same tests the HTTP gate and the
//! socket check apply ([`super::http::admits`], [`super::socket_allowed`]).

use super::HostState;
use std::net::SocketAddr;
use wasmtime::component::{HasSelf, Linker};

/// Host bindings of the grants package.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/grants-v0.1.0",
        world: "grants",
    });
}

use bindings::herald::grants::check;

/// The interface's name, as the load-time import check lists it.
pub const INTERFACE: &str = "herald:grants/check@0.1.0";

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    check::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl check::Host for HostState {
    fn allows_http(&mut self, url: String) -> Result<(), String> {
        super::http::explain(&self.gate.allow, &url)
    }

    fn allows_socket(&mut self, address: String) -> Result<(), String> {
        explain_socket(&self.allow_sockets, &address)
    }
}

/// Whether `allowed` admits connecting to `address`; the error says why.
pub fn explain_socket(allowed: &[SocketAddr], address: &str) -> Result<(), String> {
    let addr: SocketAddr = address.trim().parse().map_err(|_| {
        format!("`{address}` is not an ip:port address (host names are not resolved)")
    })?;
    if super::socket_allowed(allowed, &addr) {
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
