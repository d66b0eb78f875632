//! The `state` capability: a small key/value store per plugin instance,
//! kept by the host in the journal across restarts. The runtime sees it only
//! through the journal's plugin-state trait, so any storage backend serves it.

pub use herald_journal::{JournalError as StateError, PluginState};
