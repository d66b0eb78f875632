//! `herald:grants/check@0.1.0` (`wit/grants-v0.1.0`): a plugin asks, while
//! it configures, whether its instance's `allow_http` / `allow_sockets`
//! admit a destination of its config, so a destination the sandbox would
//! refuse at every delivery fails `herald check` and the load instead, with
//! the config key named. Linked for every plugin; a component need not
//! import it. The answers come from the same tests the HTTP gate and the
//! socket check apply ([`super::http::explain`], [`super::sockets::explain_socket`]).

use crate::HostState;
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

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    check::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl check::Host for HostState {
    fn allows_http(&mut self, url: String) -> Result<(), String> {
        super::http::explain(&self.http.gate.allow, &url)
    }

    fn allows_socket(&mut self, address: String) -> Result<(), String> {
        super::sockets::explain_socket(&self.sockets.allow, &address)
    }
}
