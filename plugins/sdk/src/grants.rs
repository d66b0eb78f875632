//! Checks of the config's destinations against the instance's grants, over the host's
//! `herald:grants/check@0.1.0` (`wit/grants-v0.1.0`).
//!
//! Call them from [`crate::Plugin::new`], once per destination key, and return the error: the
//! host then refuses the configuration (`herald check`, load and reload) with the file, line and
//! column of that key, instead of loading a plugin whose every delivery the sandbox refuses.
//!
//! ```ignore
//! herald_sdk::grants::require_http("url", &c.url)?;
//! herald_sdk::grants::require_socket("address", &c.address)?;
//! ```
//!
//! The host answers with the same tests it applies to each request (no name resolution:
//! `localhost` and `127.0.0.1` differ), and its reasons name only the URL's origin, never its
//! path or query. Outside the host (native unit tests) every destination is allowed.

/// Ok when the instance's `allow_http` admits `url`; else
/// ``config key `<key>`: <why>``, the form the host locates in the file.
pub fn require_http(key: &str, url: &str) -> Result<(), String> {
    allows_http(url).map_err(|why| format!("config key `{key}`: {why}"))
}

/// Ok when the instance's `allow_sockets` admits `address` (`ip:port`); else
/// ``config key `<key>`: <why>``.
pub fn require_socket(key: &str, address: &str) -> Result<(), String> {
    allows_socket(address).map_err(|why| format!("config key `{key}`: {why}"))
}

#[cfg(target_family = "wasm")]
fn allows_http(url: &str) -> Result<(), String> {
    crate::grants_bindings::herald::grants::check::allows_http(url)
}

#[cfg(target_family = "wasm")]
fn allows_socket(address: &str) -> Result<(), String> {
    crate::grants_bindings::herald::grants::check::allows_socket(address)
}

// Native builds (unit tests) have no host to ask.
#[cfg(not(target_family = "wasm"))]
fn allows_http(_url: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(not(target_family = "wasm"))]
fn allows_socket(_address: &str) -> Result<(), String> {
    Ok(())
}
