//! The UI's handlers, one module per area; each renders an askama template
//! of `templates/` from what it read through the journal's traits.

pub mod deliveries;
pub mod explore;
pub mod runs;

use crate::{Ui, UiError};
use askama::Template;
use axum::response::{Html, IntoResponse, Redirect, Response};
use herald_journal::Store;

/// `GET /`: the runs list.
pub async fn home() -> Redirect {
    Redirect::to("/runs")
}

/// The page of an error.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
}

/// Renders a page.
pub(crate) fn render(t: &impl Template) -> Result<Response, UiError> {
    Ok(Html(t.render()?).into_response())
}

/// Runs `f` on the journal, off the async threads (every backend call may block).
pub(crate) async fn read<T: Send + 'static>(
    ui: &Ui,
    f: impl FnOnce(&dyn Store) -> Result<T, UiError> + Send + 'static,
) -> Result<T, UiError> {
    let journal = ui.journal.clone();
    match tokio::task::spawn_blocking(move || f(&*journal)).await {
        Ok(r) => r,
        Err(e) => Err(UiError::Journal(herald_journal::JournalError::Task(
            e.to_string(),
        ))),
    }
}

/// Pretty JSON of a stored body (as stored: the callback redacted it).
pub(crate) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
