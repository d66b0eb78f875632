//! The SQL behind the query API, on read-only connections of their own
//! (WAL lets them read while ingest and dispatch write).

use super::model::*;
use crate::api::ApiError;
use crate::event::{EventKind, Status};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Idle read connections, reused across requests.
static POOL: Mutex<Vec<(PathBuf, Connection)>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 8;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Runs `f` on a read connection to the journal at `path` (blocking).
pub fn with_conn<T>(
    path: &Path,
    f: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let pooled = {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.iter()
            .position(|(p, _)| p == path)
            .map(|i| pool.swap_remove(i).1)
    };
    let conn = match pooled {
        Some(c) => c,
        None => open(path).map_err(db_error)?,
    };
    let out = f(&conn);
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < POOL_MAX {
        pool.push((path.to_owned(), conn));
    }
    out
}

pub fn db_error(e: rusqlite::Error) -> ApiError {
    tracing::error!("query failed: {e}");
    ApiError::unavailable(format!("the journal cannot be read: {e}"))
}

/// RFC 3339 (UTC, milliseconds) of epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Filters of `GET /v1/runs`.
#[derive(Debug, Default)]
pub struct RunFilter {
    pub playbook: Option<String>,
    pub status: Option<RunStatus>,
    pub controller: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// (key, value); a `None` value only asks for the key.
    pub labels: Vec<(String, Option<String>)>,
    /// Epoch ms before which a run without events is interrupted.
    pub stale_before_ms: i64,
    /// Continue after this (started ms, run id).
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// The SQL expression of a run's status (`r` is the `runs` row; `?stale` the
/// epoch ms before which a silent unfinished run is interrupted).
const STATUS_SQL: &str = "CASE
    WHEN r.finished = 0 THEN
        CASE WHEN (SELECT max(e.received_ms) FROM events e
                   WHERE e.tenant = r.tenant AND e.run_id = r.run_id) < :stale
             THEN 'interrupted' ELSE 'running' END
    WHEN EXISTS (SELECT 1 FROM events s, json_each(s.body, '$.event_data.failures') f
                 WHERE s.tenant = r.tenant AND s.run_id = r.run_id
                   AND s.kind = 'playbook_on_stats' AND f.value > 0) THEN 'failed'
    WHEN EXISTS (SELECT 1 FROM events s, json_each(s.body, '$.event_data.dark') f
                 WHERE s.tenant = r.tenant AND s.run_id = r.run_id
                   AND s.kind = 'playbook_on_stats' AND f.value > 0) THEN 'unreachable'
    ELSE 'ok' END";

struct RunRow {
    id: String,
    playbook: Option<String>,
    controller: Option<String>,
    first_ms: i64,
    last_ms: i64,
    events: i64,
    status: RunStatus,
}

fn run_rows(
    conn: &Connection,
    tenant: &str,
    extra_where: &str,
    mut args: Vec<(&str, Sql)>,
    stale_before_ms: i64,
    tail: &str,
) -> rusqlite::Result<Vec<RunRow>> {
    let sql = format!(
        "SELECT * FROM (
            SELECT r.run_id, r.playbook, r.controller, r.first_ms, r.last_ms, r.events,
                   {STATUS_SQL} AS status
            FROM runs r WHERE r.tenant = :tenant {extra_where}
        ) {tail}"
    );
    args.push((":tenant", Sql::Text(tenant.to_string())));
    args.push((":stale", Sql::Integer(stale_before_ms)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let named: Vec<(&str, &dyn rusqlite::ToSql)> = args
        .iter()
        .filter(|(name, _)| sql.contains(name))
        .map(|(n, v)| (*n, v as &dyn rusqlite::ToSql))
        .collect();
    let rows = stmt.query_map(named.as_slice(), |r| {
        let status: String = r.get(6)?;
        Ok(RunRow {
            id: r.get(0)?,
            playbook: r.get(1)?,
            controller: r.get(2)?,
            first_ms: r.get(3)?,
            last_ms: r.get(4)?,
            events: r.get(5)?,
            status: RunStatus::parse(&status).unwrap_or(RunStatus::Running),
        })
    })?;
    rows.collect()
}

/// The first event of `kind` of a run, parsed.
fn first_of_kind(
    conn: &Connection,
    tenant: &str,
    run: &str,
    kind: &str,
    newest: bool,
) -> rusqlite::Result<Option<(i64, Map<String, Value>)>> {
    let sql = if newest {
        "SELECT created_ms, body FROM events WHERE tenant = ?1 AND run_id = ?2 AND kind = ?3 ORDER BY id DESC LIMIT 1"
    } else {
        "SELECT created_ms, body FROM events WHERE tenant = ?1 AND run_id = ?2 AND kind = ?3 ORDER BY id LIMIT 1"
    };
    let row: Option<(i64, String)> = conn
        .prepare_cached(sql)?
        .query_row(params![tenant, run, kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map(|(ms, body)| (ms, serde_json::from_str(&body).unwrap_or_default())))
}

fn labels_of(
    conn: &Connection,
    tenant: &str,
    run: &str,
) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.key, j.value FROM events e, json_each(e.body, '$.labels') j
         WHERE e.tenant = ?1 AND e.run_id = ?2 AND j.key IS NOT NULL AND j.type = 'text'
         ORDER BY e.id",
    )?;
    let mut out = BTreeMap::new();
    for row in stmt.query_map(params![tenant, run], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })? {
        let (k, v) = row?;
        out.entry(k).or_insert(v);
    }
    Ok(out)
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

struct Enriched {
    summary: RunSummary,
    context: Map<String, Value>,
    stats: Option<Map<String, Value>>,
}

fn enrich(conn: &Connection, tenant: &str, row: RunRow) -> rusqlite::Result<Enriched> {
    let start = first_of_kind(conn, tenant, &row.id, "playbook_on_start", false)?;
    let context = start
        .as_ref()
        .and_then(|(_, b)| b.get("event_data")?.get("herald")?.as_object().cloned())
        .unwrap_or_default();
    let stats = first_of_kind(conn, tenant, &row.id, "playbook_on_stats", true)?;
    let ended_ms = stats.as_ref().map(|(ms, _)| *ms);
    let stats_data = stats.and_then(|(_, b)| b.get("event_data")?.as_object().cloned());
    let summary = RunSummary {
        playbook: row.playbook,
        controller: row.controller.or_else(|| str_field(&context, "controller")),
        user: str_field(&context, "user"),
        ansible_version: str_field(&context, "ansible_version"),
        check_mode: context.get("check_mode").and_then(Value::as_bool),
        status: row.status,
        labels: labels_of(conn, tenant, &row.id)?,
        started_at: rfc3339(row.first_ms),
        ended_at: ended_ms.map(rfc3339),
        last_event_at: rfc3339(row.last_ms),
        duration_s: ended_ms.map(|e| (e - row.first_ms).max(0) as f64 / 1000.0),
        events: row.events,
        id: row.id,
    };
    Ok(Enriched {
        summary,
        context,
        stats: stats_data,
    })
}

/// `GET /v1/runs`: a page of runs and the key to continue after it.
pub fn list_runs(
    conn: &Connection,
    tenant: &str,
    f: &RunFilter,
) -> rusqlite::Result<(Vec<RunSummary>, Option<(i64, String)>)> {
    let mut clauses = String::new();
    let mut args: Vec<(&str, Sql)> = Vec::new();
    if let Some(p) = &f.playbook {
        // The glob matches the playbook as sent (often a path) or its file name.
        clauses.push_str(
            " AND (r.playbook GLOB :playbook
                   OR replace(r.playbook, rtrim(r.playbook, replace(r.playbook, '/', '')), '') GLOB :playbook)",
        );
        args.push((":playbook", Sql::Text(p.clone())));
    }
    if let Some(c) = &f.controller {
        clauses.push_str(" AND r.controller = :controller");
        args.push((":controller", Sql::Text(c.clone())));
    }
    if let Some(s) = f.since_ms {
        clauses.push_str(" AND r.first_ms >= :since");
        args.push((":since", Sql::Integer(s)));
    }
    if let Some(u) = f.until_ms {
        clauses.push_str(" AND r.first_ms < :until");
        args.push((":until", Sql::Integer(u)));
    }
    const LABEL_KEYS: [&str; 8] = [
        ":lk0", ":lk1", ":lk2", ":lk3", ":lk4", ":lk5", ":lk6", ":lk7",
    ];
    const LABEL_VALUES: [&str; 8] = [
        ":lv0", ":lv1", ":lv2", ":lv3", ":lv4", ":lv5", ":lv6", ":lv7",
    ];
    for (i, (k, v)) in f.labels.iter().enumerate().take(LABEL_KEYS.len()) {
        let value_cond = if v.is_some() {
            format!(" AND j.value = {}", LABEL_VALUES[i])
        } else {
            String::new()
        };
        clauses.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM events e, json_each(e.body, '$.labels') j
                WHERE e.tenant = r.tenant AND e.run_id = r.run_id AND j.key = {}{value_cond})",
            LABEL_KEYS[i]
        ));
        args.push((LABEL_KEYS[i], Sql::Text(k.clone())));
        if let Some(v) = v {
            args.push((LABEL_VALUES[i], Sql::Text(v.clone())));
        }
    }
    if let Some((ms, id)) = &f.after {
        clauses.push_str(
            " AND (r.first_ms < :after_ms OR (r.first_ms = :after_ms AND r.run_id < :after_id))",
        );
        args.push((":after_ms", Sql::Integer(*ms)));
        args.push((":after_id", Sql::Text(id.clone())));
    }
    let mut tail = String::new();
    if let Some(s) = f.status {
        tail.push_str("WHERE status = :status ");
        args.push((":status", Sql::Text(s.as_str().to_string())));
    }
    tail.push_str("ORDER BY first_ms DESC, run_id DESC LIMIT :limit");
    args.push((":limit", Sql::Integer(f.limit as i64 + 1)));
    let mut rows = run_rows(conn, tenant, &clauses, args, f.stale_before_ms, &tail)?;
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    let next = if more {
        rows.last().map(|r| (r.first_ms, r.id.clone()))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|row| enrich(conn, tenant, row).map(|e| e.summary))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((items, next))
}

fn exists(conn: &Connection, tenant: &str, run: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM runs WHERE tenant = ?1 AND run_id = ?2")?
        .query_row(params![tenant, run], |_| Ok(()))
        .optional()?
        .is_some())
}

fn stat(data: &Map<String, Value>, key: &str, host: &str) -> i64 {
    data.get(key)
        .and_then(|m| m.get(host))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

const STAT_KEYS: [&str; 8] = [
    "ok",
    "changed",
    "dark",
    "failures",
    "skipped",
    "rescued",
    "ignored",
    "processed",
];

/// Per-host stats from a `playbook_on_stats` event's `event_data`.
pub fn hosts_from_stats(data: &Map<String, Value>) -> BTreeMap<String, HostStats> {
    let mut hosts = BTreeMap::new();
    for key in STAT_KEYS {
        if let Some(m) = data.get(key).and_then(Value::as_object) {
            for h in m.keys() {
                hosts.entry(h.clone()).or_insert_with(|| HostStats {
                    ok: stat(data, "ok", h),
                    changed: stat(data, "changed", h),
                    unreachable: stat(data, "dark", h),
                    failures: stat(data, "failures", h),
                    skipped: stat(data, "skipped", h),
                    rescued: stat(data, "rescued", h),
                    ignored: stat(data, "ignored", h),
                });
            }
        }
    }
    hosts
}

/// Marks the failures a `rescue` section took over. Ansible counts a rescued
/// failure in `rescued` instead of `failures`, and a host whose failure is
/// not rescued leaves the play: so of a host's failures that were not
/// ignored, in order, the first `rescued` ones are the rescued ones.
fn mark_rescued(tasks: &mut [FailedTask], stats: &Map<String, Value>) {
    let mut left: BTreeMap<String, i64> = BTreeMap::new();
    for t in tasks.iter_mut() {
        let Some(host) = t.host.clone() else {
            continue;
        };
        if t.outcome != TaskOutcome::Failed || t.ignored {
            continue;
        }
        let n = left
            .entry(host)
            .or_insert_with_key(|h| stat(stats, "rescued", h));
        if *n > 0 {
            *n -= 1;
            t.rescued = true;
        }
    }
}

fn event_data(body: &Map<String, Value>) -> Map<String, Value> {
    body.get("event_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn message_of(res: Option<&Value>) -> Option<String> {
    let res = res?;
    for key in ["msg", "stderr", "reason", "module_stderr"] {
        match res.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return Some(s.clone()),
            Some(v @ (Value::Array(_) | Value::Object(_))) => return Some(v.to_string()),
            _ => {}
        }
    }
    None
}

/// `GET /v1/runs/{id}`; `None` when the tenant has no such run.
pub fn run_detail(
    conn: &Connection,
    tenant: &str,
    run: &str,
    stale_before_ms: i64,
) -> rusqlite::Result<Option<RunDetail>> {
    let rows = run_rows(
        conn,
        tenant,
        "AND r.run_id = :run",
        vec![(":run", Sql::Text(run.to_string()))],
        stale_before_ms,
        "",
    )?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let e = enrich(conn, tenant, row)?;
    let mut failed_tasks = Vec::new();
    let mut tally: BTreeMap<String, HostStats> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT uuid, counter, kind, created_ms, body FROM events
         WHERE tenant = ?1 AND run_id = ?2
           AND kind IN ('runner_on_ok', 'runner_on_failed', 'runner_on_skipped', 'runner_on_unreachable')
         ORDER BY counter, id",
    )?;
    let rows = stmt.query_map(params![tenant, run], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (uuid, counter, kind, created_ms, body) = row?;
        let body: Map<String, Value> = serde_json::from_str(&body).unwrap_or_default();
        let data = event_data(&body);
        let host = str_field(&data, "host");
        let ignored = data.get("ignore_errors").and_then(Value::as_bool) == Some(true);
        let changed = data
            .get("res")
            .and_then(|r| r.get("changed"))
            .and_then(Value::as_bool)
            == Some(true);
        if e.stats.is_none() {
            if let Some(h) = &host {
                let t = tally.entry(h.clone()).or_default();
                match kind.as_str() {
                    "runner_on_ok" => {
                        t.ok += 1;
                        if changed {
                            t.changed += 1;
                        }
                    }
                    "runner_on_failed" if ignored => t.ignored += 1,
                    "runner_on_failed" => t.failures += 1,
                    "runner_on_skipped" => t.skipped += 1,
                    _ => t.unreachable += 1,
                }
            }
        }
        let outcome = match kind.as_str() {
            "runner_on_failed" => TaskOutcome::Failed,
            "runner_on_unreachable" => TaskOutcome::Unreachable,
            _ => continue,
        };
        failed_tasks.push(FailedTask {
            host,
            task: str_field(&data, "task"),
            task_action: str_field(&data, "task_action"),
            task_path: str_field(&data, "task_path"),
            play: str_field(&data, "play"),
            outcome,
            ignored,
            rescued: false,
            message: message_of(data.get("res")),
            counter,
            event_uuid: uuid,
            at: rfc3339(created_ms),
        });
    }
    if let Some(stats) = &e.stats {
        mark_rescued(&mut failed_tasks, stats);
    }
    let (stats_source, hosts) = match &e.stats {
        Some(data) => (StatsSource::Stats, hosts_from_stats(data)),
        None => (StatsSource::Events, tally),
    };
    let limit = str_field(&e.context, "limit");
    let tags = e
        .context
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(RunDetail {
        summary: e.summary,
        limit,
        tags,
        context: e.context,
        stats_source,
        hosts,
        failed_tasks,
    }))
}

/// `GET /v1/runs/{id}/artifacts`; `None` when the tenant has no such run.
pub fn artifacts(
    conn: &Connection,
    tenant: &str,
    run: &str,
) -> rusqlite::Result<Option<Artifacts>> {
    if !exists(conn, tenant, run)? {
        return Ok(None);
    }
    let stats = first_of_kind(conn, tenant, run, "playbook_on_stats", true)?;
    let data = stats.map(|(_, b)| event_data(&b)).unwrap_or_default();
    let custom = data
        .get("custom_stats")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let run_data = data
        .get("artifact_data")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .or_else(|| custom.get("_run").and_then(Value::as_object))
        .cloned()
        .unwrap_or_default();
    // Per-host data is an object per host (what Ansible aggregates); anything
    // else a sender put there is not a host's data.
    let hosts = custom
        .into_iter()
        .filter(|(k, v)| k != "_run" && v.is_object())
        .collect();
    Ok(Some(Artifacts {
        run: run_data,
        hosts,
    }))
}

/// Filters of `GET /v1/runs/{id}/events`.
#[derive(Debug, Default)]
pub struct EventFilter {
    pub kinds: Vec<EventKind>,
    pub host: Option<String>,
    pub status: Option<Status>,
    /// Continue after this (counter, journal id).
    pub after: Option<(i64, i64)>,
    pub limit: usize,
}

/// `GET /v1/runs/{id}/events`: `None` when the tenant has no such run.
#[allow(clippy::type_complexity)]
pub fn run_events(
    conn: &Connection,
    tenant: &str,
    run: &str,
    f: &EventFilter,
) -> rusqlite::Result<Option<(Vec<Value>, Option<(i64, i64)>)>> {
    if !exists(conn, tenant, run)? {
        return Ok(None);
    }
    let mut sql =
        String::from("SELECT counter, id, kind, body FROM events WHERE tenant = ? AND run_id = ?");
    let mut args: Vec<Sql> = vec![Sql::Text(tenant.into()), Sql::Text(run.into())];
    let mut kinds: Vec<EventKind> = f.kinds.clone();
    if let Some(status) = f.status {
        let of_status: Vec<EventKind> = EventKind::ALL
            .into_iter()
            .filter(|k| {
                Status::of(*k, false) == Some(status) || Status::of(*k, true) == Some(status)
            })
            .collect();
        kinds = if kinds.is_empty() {
            of_status
        } else {
            kinds
                .into_iter()
                .filter(|k| of_status.contains(k))
                .collect()
        };
        if kinds.is_empty() {
            return Ok(Some((Vec::new(), None)));
        }
        match status {
            Status::Ok => sql.push_str(
                " AND coalesce(json_type(body, '$.event_data.res.changed'), '') <> 'true'",
            ),
            Status::Changed => {
                sql.push_str(" AND json_type(body, '$.event_data.res.changed') = 'true'")
            }
            _ => {}
        }
    }
    if !kinds.is_empty() {
        sql.push_str(&format!(
            " AND kind IN ({})",
            vec!["?"; kinds.len()].join(", ")
        ));
        args.extend(kinds.iter().map(|k| Sql::Text(k.as_str().into())));
    }
    if let Some(h) = &f.host {
        sql.push_str(" AND json_extract(body, '$.event_data.host') = ?");
        args.push(Sql::Text(h.clone()));
    }
    if let Some((c, id)) = f.after {
        sql.push_str(" AND (counter > ? OR (counter = ? AND id > ?))");
        args.extend([Sql::Integer(c), Sql::Integer(c), Sql::Integer(id)]);
    }
    sql.push_str(" ORDER BY counter, id LIMIT ?");
    args.push(Sql::Integer(f.limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<(i64, i64, Value)> = stmt
        .query_map(params_from_iter(args), |r| {
            let body: String = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                serde_json::from_str(&body).unwrap_or(Value::Null),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    let next = if more {
        rows.last().map(|(c, id, _)| (*c, *id))
    } else {
        None
    };
    Ok(Some((rows.into_iter().map(|(_, _, b)| b).collect(), next)))
}

/// Filters of `GET /v1/deliveries`.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    pub run: Option<String>,
    pub plugin: Option<String>,
    pub outcome: Option<Outcome>,
    /// Continue after this (event id, plugin).
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// `GET /v1/deliveries`.
pub fn deliveries(
    conn: &Connection,
    tenant: &str,
    f: &DeliveryFilter,
) -> rusqlite::Result<(Vec<Delivery>, Option<(i64, String)>)> {
    let mut sql = String::from(
        "SELECT d.plugin, d.event_id, d.run_id, d.state, d.attempts, d.first_at_ms, d.next_at_ms,
                d.updated_ms, d.last_error, e.uuid, e.kind, e.counter
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE e.tenant = ?",
    );
    let mut args: Vec<Sql> = vec![Sql::Text(tenant.into())];
    if let Some(r) = &f.run {
        sql.push_str(" AND d.run_id = ?");
        args.push(Sql::Text(r.clone()));
    }
    if let Some(p) = &f.plugin {
        sql.push_str(" AND d.plugin = ?");
        args.push(Sql::Text(p.clone()));
    }
    if let Some(o) = f.outcome {
        sql.push_str(" AND d.state = ?");
        args.push(Sql::Text(o.as_str().into()));
    }
    if let Some((id, plugin)) = &f.after {
        sql.push_str(" AND (d.event_id > ? OR (d.event_id = ? AND d.plugin > ?))");
        args.extend([
            Sql::Integer(*id),
            Sql::Integer(*id),
            Sql::Text(plugin.clone()),
        ]);
    }
    sql.push_str(" ORDER BY d.event_id, d.plugin LIMIT ?");
    args.push(Sql::Integer(f.limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<(i64, Delivery)> = stmt
        .query_map(params_from_iter(args), |r| {
            let state: String = r.get(3)?;
            let outcome = Outcome::parse(&state).unwrap_or(Outcome::Pending);
            let next_at: i64 = r.get(6)?;
            Ok((
                r.get(1)?,
                Delivery {
                    plugin: r.get(0)?,
                    run_id: r.get(2)?,
                    outcome,
                    attempts: r.get(4)?,
                    created_at: rfc3339(r.get(5)?),
                    next_attempt_at: (outcome == Outcome::Pending).then(|| rfc3339(next_at)),
                    updated_at: rfc3339(r.get(7)?),
                    last_error: r.get(8)?,
                    event_uuid: r.get(9)?,
                    event: r.get(10)?,
                    counter: r.get(11)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    let next = if more {
        rows.last().map(|(id, d)| (*id, d.plugin.clone()))
    } else {
        None
    };
    Ok((rows.into_iter().map(|(_, d)| d).collect(), next))
}
