//! What every handler can reach: the shared state of the server.

use crate::tenancy::Limiter;
use arc_swap::ArcSwap;
use herald_config::Config;
use herald_dispatch::Dispatcher;
use herald_journal::SharedStore;
use herald_telemetry::Metrics;
use std::sync::{Arc, Mutex};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The running configuration; swapped whole by a reload.
    pub live: Arc<ArcSwap<Config>>,
    pub journal: SharedStore,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Metrics,
    pub limiter: Arc<Limiter>,
    pub reload: Arc<Mutex<ReloadStatus>>,
}

/// The outcome of the last configuration reload.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadStatus {
    /// Counts reload attempts since the start.
    pub generation: u64,
    /// When it happened (epoch ms); 0 if there was none yet.
    pub at_ms: i64,
    pub ok: bool,
    /// Every problem of a refused reload, as `herald check` prints them.
    pub problems: Vec<String>,
}
