//! The `state` capability: a small key/value store per plugin instance,
//! kept by the host (in the journal) across restarts.

/// What a plugin-state backend failed with; shown in the host log only.
pub type StateError = Box<dyn std::error::Error + Send + Sync>;

/// Where plugin state lives: per tenant and instance name. The journal
/// implements it; the runtime only sees this trait.
pub trait PluginState: Send + Sync {
    /// The value of `key`, if set.
    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, StateError>;
    /// Sets `key` to `value`.
    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StateError>;
    /// Removes `key`; removing a missing key is not an error.
    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), StateError>;
    /// Gives state kept by instance name only (an older journal) to `tenant`;
    /// how many keys it took.
    fn claim_state(&self, tenant: &str, plugin: &str) -> Result<usize, StateError>;
}
