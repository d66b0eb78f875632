//! The instance's node_exporter textfile, over the host's `herald:textfile/file@0.1.0`
//! (`wit/textfile-v0.1.0`): the one `.prom` file the instance's `textfile` grant names, replaced
//! whole and atomically by the host on each [`write`]. The plugin names no path.
//!
//! ```ignore
//! if c.textfile && !herald_sdk::textfile::granted() {
//!     return Err("config key `textfile`: the instance has no `textfile` grant".into());
//! }
//! herald_sdk::textfile::write(&exposition)?;
//! ```
//!
//! Outside the host (native unit tests) nothing is granted.

/// Whether the instance has a textfile granted.
pub fn granted() -> bool {
    #[cfg(target_family = "wasm")]
    {
        crate::textfile_bindings::herald::textfile::file::granted()
    }
    #[cfg(not(target_family = "wasm"))]
    {
        false
    }
}

/// Replaces the textfile's content (Prometheus text format, at most 4 MiB), atomically.
pub fn write(content: &str) -> Result<(), String> {
    #[cfg(target_family = "wasm")]
    {
        crate::textfile_bindings::herald::textfile::file::write(content)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        let _ = content;
        Err("no textfile outside the host".into())
    }
}
