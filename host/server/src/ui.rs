//! The web UI (herald-ui) mounted at `/`: what only the server knows —
//! whose a token is, the plugin instances and their breakers — answered
//! from the live configuration and the dispatcher.

use crate::state::AppState;
use herald_ui::{Host, PluginInfo, Principal, Ui};
use std::sync::Arc;

struct ServerHost {
    state: AppState,
    tls: bool,
}

impl Host for ServerHost {
    fn principal(&self, token: &str) -> Option<Principal> {
        let config = self.state.live.load();
        // A tenant's token first: a token that is both acts as the tenant.
        if let Some(t) = config.tenant_for_token(token) {
            return Some(Principal::Tenant(t.to_string()));
        }
        config.is_admin_token(token).then_some(Principal::Admin)
    }

    fn tenants(&self) -> Vec<String> {
        self.state.live.load().tenants.keys().cloned().collect()
    }

    fn plugins(&self) -> Vec<PluginInfo> {
        let config = self.state.live.load();
        let d = &self.state.dispatcher;
        d.names()
            .into_iter()
            .filter_map(|name| {
                let p = config.plugins.get(&name)?;
                let status = d.status(&name);
                Some(PluginInfo {
                    tenant: p.tenant.clone(),
                    contract: d.contract(&name).map(str::to_string),
                    state: status
                        .as_ref()
                        .map_or("running", |s| s.state.as_str())
                        .to_string(),
                    consecutive_failures: status.as_ref().map_or(0, |s| s.consecutive_failures),
                    opened: status.as_ref().map_or(0, |s| s.opened),
                    faults: status.as_ref().map_or(0, |s| s.faults),
                    last_error: status
                        .and_then(|s| s.last_fault)
                        .map(|f| (f.reason.to_string(), f.message, f.at_ms)),
                    name,
                })
            })
            .collect()
    }

    fn tls(&self) -> bool {
        self.tls
    }
}

/// The UI's router over the server's state.
pub fn router(state: AppState) -> axum::Router {
    let tls = state.live.load().server.tls.is_some();
    let journal = state.journal.clone();
    herald_ui::router(Ui::new(journal, Arc::new(ServerHost { state, tls })))
}
