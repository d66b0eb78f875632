//! Herald's web UI, served by `herald serve` at `/`: server-rendered pages
//! (askama templates compiled into the binary, a vendored htmx for live
//! refresh, hand-written CSS), readable without JavaScript.
//!
//! - [`session`]: sign in with a tenant or admin token, the session cookie,
//!   CSRF tokens on every form;
//! - [`pages`]: the handlers, one module per area (runs, exploration,
//!   deliveries and plugins);
//! - [`view`]: formatting shared by the templates (times, durations).
//!
//! The UI reads the journal only through its traits ([`herald_journal::Store`]),
//! so it works on every storage backend. What only the server knows (which
//! token is whose, the plugin instances and their breakers) it asks through
//! [`Host`], which the server implements: this crate never depends on the
//! server.

pub mod pages;
pub mod session;
pub mod view;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use herald_journal::SharedStore;
use std::sync::Arc;

/// Who a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A tenant's token: sees and acts on that tenant's data only.
    Tenant(String),
    /// An admin token (`server.admin_tokens`): picks the tenant to look at
    /// when signing in, may act on it.
    Admin,
}

/// A plugin instance as the plugins page shows it.
#[derive(Debug, Clone, Default)]
pub struct PluginInfo {
    pub name: String,
    pub tenant: String,
    /// The contract version the component implements (`None`: not loaded).
    pub contract: Option<String>,
    /// `running`, `paused`, `half_open`, `disabled`.
    pub state: String,
    pub consecutive_failures: u32,
    /// Times the breaker opened since the instance started.
    pub opened: u64,
    /// Faults (traps, timeouts, limits) since the instance started.
    pub faults: u64,
    /// The last fault: reason, message, epoch ms.
    pub last_error: Option<(String, String, i64)>,
}

/// What the UI asks of the server that runs it.
pub trait Host: Send + Sync + 'static {
    /// The principal of a token, or `None` for an unknown token. Asked on
    /// every request, so a token removed by a reload ends its sessions.
    fn principal(&self, token: &str) -> Option<Principal>;
    /// Every configured tenant (an admin picks one).
    fn tenants(&self) -> Vec<String>;
    /// Every plugin instance, with its breaker.
    fn plugins(&self) -> Vec<PluginInfo>;
    /// Whether the server listens with TLS (the cookie is then `Secure`).
    fn tls(&self) -> bool;
}

/// The UI's state: the journal, the host, the sessions.
#[derive(Clone)]
pub struct Ui {
    pub journal: SharedStore,
    pub host: Arc<dyn Host>,
    pub sessions: Arc<session::Sessions>,
}

impl Ui {
    /// A UI over `journal`, asking `host`.
    pub fn new(journal: SharedStore, host: Arc<dyn Host>) -> Ui {
        Ui {
            journal,
            host,
            sessions: Arc::new(session::Sessions::default()),
        }
    }
}

/// The UI's routes, state applied: the server merges them into its router.
pub fn router(ui: Ui) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/runs", get(pages::runs::list))
        .route("/runs/{id}", get(pages::runs::run))
        .route("/runs/{id}/replay", post(pages::deliveries::replay))
        .route("/events/{uuid}", get(pages::runs::event))
        .route("/hosts/{name}", get(pages::explore::host))
        .route("/search", get(pages::explore::search))
        .route("/plugins", get(pages::deliveries::plugins))
        .route("/deliveries", get(pages::deliveries::list))
        .route(
            "/deliveries/{plugin}/{uuid}",
            get(pages::deliveries::attempts),
        )
        .route("/dead-letters", get(pages::deliveries::dead_letters))
        .route("/dead-letters/retry", post(pages::deliveries::retry))
        .route("/static/htmx.min.js", get(htmx))
        .route("/static/herald.css", get(css))
        .with_state(ui)
}

/// htmx 2.0.10 (BSD Zero Clause License, static/htmx.LICENSE), vendored:
/// nothing is fetched from the internet at run time.
const HTMX: &str = include_str!("../static/htmx.min.js");
const CSS: &str = include_str!("../static/herald.css");

async fn htmx() -> Response {
    static_file("text/javascript; charset=utf-8", HTMX)
}

async fn css() -> Response {
    static_file("text/css; charset=utf-8", CSS)
}

fn static_file(mime: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A page that could not be shown: its status and a short HTML page.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the journal cannot be read: {0}")]
    Journal(#[from] herald_journal::JournalError),
    #[error("cannot render the page: {0}")]
    Render(#[from] askama::Error),
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::Journal(_) => StatusCode::SERVICE_UNAVAILABLE,
            UiError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("ui: {self}");
        }
        let page = pages::ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message: self.to_string(),
        };
        let body = askama::Template::render(&page)
            .unwrap_or_else(|_| format!("<!doctype html><title>{status}</title>"));
        (status, Html(body)).into_response()
    }
}
