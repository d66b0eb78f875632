//! A host across runs, and the search of hosts and tasks by name.

use super::{read, render};
use crate::session::Session;
use crate::view::{self, Chrome};
use crate::{Ui, UiError};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use herald_journal::{HostRun, TaskHit};
use serde::Deserialize;

const LIMIT: usize = 100;

/// A host's results in one run, for the templates.
pub struct HostRow {
    pub host: String,
    pub run_id: String,
    pub short: String,
    pub playbook: String,
    pub ok: u64,
    pub changed: u64,
    pub failed: u64,
    pub unreachable: u64,
    pub skipped: u64,
    pub last: String,
}

fn host_row(h: HostRun) -> HostRow {
    HostRow {
        short: view::short(&h.run_id).to_string(),
        playbook: h.playbook.unwrap_or_default(),
        ok: h.ok,
        changed: h.changed,
        failed: h.failed,
        unreachable: h.unreachable,
        skipped: h.skipped,
        last: view::time(h.last_ms),
        host: h.host,
        run_id: h.run_id,
    }
}

/// A matching task, for the templates.
pub struct TaskRow {
    pub task: String,
    pub play: String,
    pub run_id: String,
    pub short: String,
    pub playbook: String,
    pub uuid: String,
    pub at: String,
}

fn task_row(t: TaskHit) -> TaskRow {
    TaskRow {
        short: view::short(&t.run_id).to_string(),
        playbook: t.playbook.unwrap_or_default(),
        play: t.play.unwrap_or_default(),
        at: view::time(t.created_ms),
        task: t.task,
        run_id: t.run_id,
        uuid: t.uuid,
    }
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    chrome: Chrome,
    host: String,
    rows: Vec<HostRow>,
}

/// `GET /hosts/{name}`: a host's results, run by run, newest first.
pub async fn host(
    State(ui): State<Ui>,
    s: Session,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let tenant = s.tenant.clone();
    let n = name.clone();
    let rows = read(&ui, move |j| Ok(j.host_runs(&tenant, &n, true, LIMIT)?)).await?;
    if rows.is_empty() {
        return Err(UiError::NotFound(format!("no results of host {name:?}")));
    }
    render(&HostPage {
        chrome: Chrome::new(&s, "search"),
        host: name,
        rows: rows.into_iter().map(host_row).collect(),
    })
}

/// `GET /search`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    chrome: Chrome,
    q: String,
    searched: bool,
    hosts: Vec<HostRow>,
    tasks: Vec<TaskRow>,
}

/// `GET /search?q=`: hosts and tasks whose name contains `q`, across runs.
pub async fn search(
    State(ui): State<Ui>,
    s: Session,
    Query(q): Query<SearchQuery>,
) -> Result<Response, UiError> {
    let pattern = q.q.trim().to_string();
    let (hosts, tasks) = if pattern.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let tenant = s.tenant.clone();
        let p = pattern.clone();
        read(&ui, move |j| {
            Ok((
                j.host_runs(&tenant, &p, false, LIMIT)?,
                j.search_tasks(&tenant, &p, LIMIT)?,
            ))
        })
        .await?
    };
    render(&SearchPage {
        chrome: Chrome::new(&s, "search"),
        searched: !pattern.is_empty(),
        q: pattern,
        hosts: hosts.into_iter().map(host_row).collect(),
        tasks: tasks.into_iter().map(task_row).collect(),
    })
}
