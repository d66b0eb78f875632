//! Message templates (contract 0.3.0): the instance's `[plugins.<name>.templates]` in
//! herald.toml, in Jinja2 syntax, rendered by the host against the current event, its run and,
//! at the end of a run, the run's summary (PLAY RECAP, failed hosts with their tasks and
//! messages, `set_stats`, `run_url`). A plugin gives its defaults as [`crate::Plugin::TEMPLATES`]
//! (or builds them from its config in [`crate::Plugin::default_templates`]);
//! a user's template of the same name replaces the default exactly.
//!
//! ```ignore
//! const TEMPLATES: &'static [(&'static str, &'static str)] = &[
//!     ("text", "{{ run.playbook }} {{ run.status }}"),
//! ];
//! // in handle:
//! let text = match event.render("text") {
//!     Ok(Some(t)) => t,
//!     Ok(None) => fallback,
//!     Err(e) => return herald_sdk::permanent(e),
//! };
//! ```

use crate::bindings::herald::plugin::templates as t;
use crate::bindings::herald::plugin::types::Event;

/// The names of the templates the user configured for this instance (without the defaults).
pub fn configured() -> Vec<String> {
    t::configured()
}

/// Gives the host the plugin's default templates; an error names the template, line and
/// column that do not compile. Called by `export_plugin!` after `Plugin::new`; nothing is sent
/// for a plugin without defaults.
pub fn set_defaults(defaults: &[(String, String)]) -> Result<(), String> {
    if defaults.is_empty() {
        return Ok(());
    }
    t::set_defaults(defaults)
}

/// Renders template `name` against the lent event; see [`crate::EventRef::render`].
pub(crate) fn render(name: &str, event: &Event) -> Result<Option<String>, String> {
    match t::render(name, event) {
        Ok(text) => Ok(Some(text)),
        Err(t::RenderError::NotConfigured) => Ok(None),
        Err(t::RenderError::Failed(m)) => Err(m),
    }
}

/// The text of one human-readable field: template `name` rendered by the host (the user's,
/// else the plugin's default), else `fallback()` (a native test, where no host renders). A
/// failed render is `Err` with the template's message: answer it with [`crate::permanent`].
pub fn text(
    event: &crate::EventRef<'_>,
    name: &str,
    fallback: impl FnOnce() -> String,
) -> Result<String, String> {
    Ok(event.render(name)?.unwrap_or_else(fallback))
}

/// Whether the user configured template `name` for this instance (`false` outside the host).
/// A plugin that builds structured output around a default text (Slack's blocks) sends only
/// the user's text when the user gave one, so the user gets exactly theirs.
pub fn user_configured(name: &str) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        configured().iter().any(|n| n == name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = name;
        false
    }
}
