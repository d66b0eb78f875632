//! Plugin instances, deliveries and dead letters, and the two actions:
//! retry dead letters, replay a run to an instance.

use super::{read, render};
use crate::session::Session;
use crate::view::{self, Chrome};
use crate::{PluginInfo, Ui, UiError};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use herald_journal::{DeliveryFilter, DeliveryState};
use serde::Deserialize;

const PAGE: usize = 100;

/// A plugin instance's line.
pub struct PluginRow {
    pub info: PluginInfo,
    pub pending: u64,
    pub done: u64,
    pub dead: u64,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "plugins.html")]
struct PluginsPage {
    chrome: Chrome,
    rows: Vec<PluginRow>,
}

/// The tenant's instances (the host lists every tenant's).
fn own_plugins(ui: &Ui, tenant: &str) -> Vec<PluginInfo> {
    let mut v: Vec<PluginInfo> = ui
        .host
        .plugins()
        .into_iter()
        .filter(|p| p.tenant == tenant)
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `GET /plugins`: the tenant's instances, breaker state, queue, faults.
pub async fn plugins(State(ui): State<Ui>, s: Session) -> Result<Response, UiError> {
    let infos = own_plugins(&ui, &s.tenant);
    let rows = read(&ui, move |j| {
        infos
            .into_iter()
            .map(|info| {
                let (pending, done, dead) = j.delivery_counts(&info.name)?;
                let last_error = info
                    .last_error
                    .as_ref()
                    .map(|(reason, msg, at)| format!("{} {reason}: {msg}", view::time(*at)))
                    .unwrap_or_default();
                Ok(PluginRow {
                    info,
                    pending,
                    done,
                    dead,
                    last_error,
                })
            })
            .collect::<Result<Vec<_>, UiError>>()
    })
    .await?;
    render(&PluginsPage {
        chrome: Chrome::new(&s, "plugins"),
        rows,
    })
}

/// `GET /deliveries`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct DeliveriesQuery {
    #[serde(default)]
    run: String,
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    cursor: String,
}

/// A delivery's line.
pub struct DeliveryRow {
    pub plugin: String,
    pub run_id: String,
    pub short: String,
    pub event_uuid: String,
    pub kind: String,
    pub counter: i64,
    pub outcome: &'static str,
    pub attempts: i64,
    pub updated: String,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    chrome: Chrome,
    q: DeliveriesQuery,
    plugins: Vec<String>,
    rows: Vec<DeliveryRow>,
    next_url: Option<String>,
    error: Option<String>,
}

fn deliveries_url(q: &DeliveriesQuery, cursor: &str) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("run", &q.run),
        ("plugin", &q.plugin),
        ("outcome", &q.outcome),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}={}", view::url(v)));
        }
    }
    parts.push(format!("cursor={cursor}"));
    format!("/deliveries?{}", parts.join("&"))
}

/// `GET /deliveries`: deliveries of the tenant's events, in journal order.
pub async fn list(
    State(ui): State<Ui>,
    s: Session,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, UiError> {
    let mut error = None;
    let mut filter = DeliveryFilter {
        limit: PAGE,
        ..Default::default()
    };
    let text = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    filter.run = text(&q.run);
    filter.plugin = text(&q.plugin);
    if !q.outcome.is_empty() {
        match DeliveryState::parse(&q.outcome) {
            Some(st) => filter.state = Some(st),
            None => error = Some(format!("Unknown outcome {:?}.", q.outcome)),
        }
    }
    if !q.cursor.is_empty() {
        let key = hex::decode(&q.cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (id, p) = s.split_once(':')?;
                Some((id.parse::<i64>().ok()?, p.to_string()))
            });
        match key {
            Some(k) => filter.after = Some(k),
            None => error = Some("The page link is not one this list made.".into()),
        }
    }
    let tenant = s.tenant.clone();
    let (rows, next) = if error.is_some() {
        (Vec::new(), None)
    } else {
        read(&ui, move |j| Ok(j.deliveries(&tenant, &filter)?)).await?
    };
    let rows = rows
        .into_iter()
        .map(|d| DeliveryRow {
            short: view::short(&d.run_id).to_string(),
            outcome: d.state.as_str(),
            updated: view::time(d.updated_ms),
            last_error: d.last_error.unwrap_or_default(),
            plugin: d.plugin,
            run_id: d.run_id,
            event_uuid: d.event_uuid,
            kind: d.kind,
            counter: d.counter,
            attempts: d.attempts,
        })
        .collect();
    render(&DeliveriesPage {
        chrome: Chrome::new(&s, "deliveries"),
        plugins: own_plugins(&ui, &s.tenant)
            .into_iter()
            .map(|p| p.name)
            .collect(),
        next_url: next.map(|(id, p)| deliveries_url(&q, &hex::encode(format!("{id}:{p}")))),
        q,
        rows,
        error,
    })
}

/// `GET /dead-letters`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct DeadQuery {
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    notice: Option<String>,
}

/// A dead letter's line.
pub struct DeadRow {
    pub plugin: String,
    pub event_id: i64,
    pub uuid: String,
    pub run_id: String,
    pub short: String,
    pub kind: String,
    pub attempts: u32,
    pub reason: String,
    pub dead_at: String,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadPage {
    chrome: Chrome,
    plugin: String,
    plugins: Vec<String>,
    rows: Vec<DeadRow>,
    next_url: Option<String>,
    notice: Option<String>,
}

/// `GET /dead-letters`: the tenant's dead letters, newest first, with retry buttons.
pub async fn dead_letters(
    State(ui): State<Ui>,
    s: Session,
    Query(q): Query<DeadQuery>,
) -> Result<Response, UiError> {
    let tenant = s.tenant.clone();
    let plugin = Some(q.plugin.trim().to_string()).filter(|p| !p.is_empty());
    let p = plugin.clone();
    let before = q.before;
    let mut rows = read(&ui, move |j| {
        Ok(j.dead_letters(&tenant, p.as_deref(), PAGE + 1, before)?)
    })
    .await?;
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    let next_url = more.then(|| {
        let last = rows.last().map_or(0, |d| d.event_id);
        match &plugin {
            Some(p) => format!("/dead-letters?plugin={}&before={last}", view::url(p)),
            None => format!("/dead-letters?before={last}"),
        }
    });
    render(&DeadPage {
        chrome: Chrome::new(&s, "dead"),
        plugin: plugin.unwrap_or_default(),
        plugins: own_plugins(&ui, &s.tenant)
            .into_iter()
            .map(|p| p.name)
            .collect(),
        rows: rows
            .into_iter()
            .map(|d| DeadRow {
                short: view::short(&d.run_id).to_string(),
                dead_at: view::time(d.dead_at_ms),
                plugin: d.plugin,
                event_id: d.event_id,
                uuid: d.uuid,
                run_id: d.run_id,
                kind: d.kind,
                attempts: d.attempts,
                reason: d.reason,
            })
            .collect(),
        next_url,
        notice: q.notice,
    })
}

/// The retry form: one dead letter (`event_id`) or all of an instance's.
#[derive(Debug, Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: Option<String>,
    plugin: String,
    #[serde(default)]
    event_id: Option<i64>,
}

/// The instance must be the tenant's: another tenant's does not exist here.
fn check_own(ui: &Ui, s: &Session, plugin: &str) -> Result<(), UiError> {
    if own_plugins(ui, &s.tenant).iter().any(|p| p.name == plugin) {
        Ok(())
    } else {
        Err(UiError::NotFound(format!(
            "no plugin instance {plugin:?} for this tenant"
        )))
    }
}

/// `POST /dead-letters/retry`: puts dead letters back in the queue.
pub async fn retry(
    State(ui): State<Ui>,
    s: Session,
    Form(f): Form<RetryForm>,
) -> Result<Response, UiError> {
    s.check_csrf(f.csrf.as_deref())?;
    check_own(&ui, &s, &f.plugin)?;
    let tenant = s.tenant.clone();
    let plugin = f.plugin.clone();
    let n = read(&ui, move |j| {
        Ok(j.requeue_dead(&tenant, &plugin, f.event_id)?)
    })
    .await?;
    tracing::info!(tenant = %s.tenant, plugin = %f.plugin, requeued = n, "ui: dead letters retried");
    let notice = format!("{n} dead letter(s) of {} queued again.", f.plugin);
    Ok(Redirect::to(&format!("/dead-letters?notice={}", view::url(&notice))).into_response())
}

/// The replay form.
#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: Option<String>,
    plugin: String,
}

/// `POST /runs/{id}/replay`: queues every event of the run again for one instance.
pub async fn replay(
    State(ui): State<Ui>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<ReplayForm>,
) -> Result<Response, UiError> {
    s.check_csrf(f.csrf.as_deref())?;
    check_own(&ui, &s, &f.plugin)?;
    let tenant = s.tenant.clone();
    let (run, plugin) = (id.clone(), f.plugin.clone());
    let n = read(&ui, move |j| {
        if j.run(&tenant, &run, 0)?.is_none() {
            return Err(UiError::NotFound(format!("no run {run:?}")));
        }
        Ok(j.replay_run(&tenant, &run, &plugin)?)
    })
    .await?;
    tracing::info!(tenant = %s.tenant, run = %id, plugin = %f.plugin, events = n, "ui: run replayed");
    let notice = format!("{n} event(s) queued again for {}.", f.plugin);
    Ok(Redirect::to(&format!(
        "/runs/{}?notice={}",
        view::url(&id),
        view::url(&notice)
    ))
    .into_response())
}

/// An attempt's line, for the template.
pub struct AttemptRow {
    pub attempt: u32,
    pub at: String,
    pub duration: String,
    pub outcome: String,
    pub message: String,
    pub requests: Vec<RequestRow>,
}

/// A request of an attempt, for the template.
pub struct RequestRow {
    pub method: String,
    pub url: String,
    pub status: String,
    pub ok: bool,
    pub latency: String,
    pub body: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "attempts.html")]
struct AttemptsPage {
    chrome: Chrome,
    plugin: String,
    uuid: String,
    run_id: String,
    kind: String,
    attempts: Vec<AttemptRow>,
}

/// `GET /deliveries/{plugin}/{uuid}`: each attempt of a delivery, what the
/// plugin sent and what the sink answered.
pub async fn attempts(
    State(ui): State<Ui>,
    s: Session,
    Path((plugin, uuid)): Path<(String, String)>,
) -> Result<Response, UiError> {
    check_own(&ui, &s, &plugin)?;
    let tenant = s.tenant.clone();
    let (p, u) = (plugin.clone(), uuid.clone());
    let (ev, attempts) = read(&ui, move |j| Ok(j.delivery_attempts(&tenant, &p, &u)?))
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no event {uuid:?}")))?;
    render(&AttemptsPage {
        chrome: Chrome::new(&s, "deliveries"),
        plugin,
        uuid: ev.uuid,
        run_id: ev.run_id,
        kind: ev.kind,
        attempts: attempts
            .into_iter()
            .map(|a| AttemptRow {
                attempt: a.attempt,
                at: view::time(a.at_ms),
                duration: view::duration(a.duration_ms as i64),
                outcome: a.outcome,
                message: a.message.unwrap_or_default(),
                requests: a
                    .requests
                    .into_iter()
                    .map(|r| RequestRow {
                        method: r.method,
                        url: r.url,
                        ok: r.status.is_some_and(|s| (200..300).contains(&s)),
                        status: r
                            .status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "no answer".into()),
                        latency: view::duration(r.latency_ms as i64),
                        body: r.body,
                        error: r.error.unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect(),
    })
}
