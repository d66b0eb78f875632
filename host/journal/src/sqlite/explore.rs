//! The SQLite side of [`crate::Explore`]: the exploration reads of the web UI
//! and the CLI. Bodies are read through `json_extract` in SQL, so a run's
//! outline of 30,000 events never builds 30,000 JSON trees in Rust.

use super::Journal;
use crate::{
    AttemptRecord, EventRecord, Explore, HostRun, JournalError, OutlineRow, RunDeliveryCounts,
    RunRef, RunTally, TaskHit, SEARCH_SCAN_EVENTS,
};
use herald_event::EventKind;
use rusqlite::{params, Connection, OptionalExtension};

/// The host result kinds, as stored.
const RESULTS: &str =
    "('runner_on_ok', 'runner_on_failed', 'runner_on_skipped', 'runner_on_unreachable')";

fn event(conn: &Connection, tenant: &str, uuid: &str) -> rusqlite::Result<Option<EventRecord>> {
    conn.prepare_cached(
        "SELECT id, uuid, run_id, counter, kind, created_ms, body FROM events
         WHERE tenant = ?1 AND uuid = ?2",
    )?
    .query_row(params![tenant, uuid], |r| {
        Ok(EventRecord {
            id: r.get(0)?,
            uuid: r.get(1)?,
            run_id: r.get(2)?,
            counter: r.get(3)?,
            kind: r.get(4)?,
            created_ms: r.get(5)?,
            body: r.get(6)?,
        })
    })
    .optional()
}

fn run_exists(conn: &Connection, tenant: &str, run: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM runs WHERE tenant = ?1 AND run_id = ?2")?
        .query_row(params![tenant, run], |_| Ok(()))
        .optional()?
        .is_some())
}

fn run_outline(
    conn: &Connection,
    tenant: &str,
    run: &str,
) -> rusqlite::Result<Option<Vec<OutlineRow>>> {
    if !run_exists(conn, tenant, run)? {
        return Ok(None);
    }
    // One parse per body: `json_tree`-free extraction, the message only for
    // failures. json_extract would end a message at a `\u0000` (a binary's
    // stderr); it shows U+FFFD, as the journal's other text and PostgreSQL do.
    let mut stmt = conn.prepare_cached(
        "SELECT uuid, counter, kind, created_ms,
                json_extract(body, '$.event_data.host'),
                json_extract(body, '$.event_data.play'),
                json_extract(body, '$.event_data.task'),
                json_extract(body, '$.event_data.task_action'),
                coalesce(json_type(body, '$.event_data.res.changed') = 'true', 0),
                coalesce(json_type(body, '$.event_data.ignore_errors') = 'true', 0),
                CASE WHEN kind IN ('runner_on_failed', 'runner_on_unreachable') THEN
                  substr(coalesce(nullif(json_extract(replace(body, '\\u0000', '\\ufffd'), '$.event_data.res.msg'), ''),
                                  nullif(json_extract(replace(body, '\\u0000', '\\ufffd'), '$.event_data.res.stderr'), ''),
                                  nullif(json_extract(replace(body, '\\u0000', '\\ufffd'), '$.event_data.res.reason'), '')), 1, 2048)
                END
         FROM events WHERE tenant = ?1 AND run_id = ?2 ORDER BY counter, id",
    )?;
    let rows = stmt.query_map(params![tenant, run], |r| {
        Ok(OutlineRow {
            uuid: r.get(0)?,
            counter: r.get(1)?,
            kind: r.get(2)?,
            created_ms: r.get(3)?,
            host: text(r.get_ref(4)?),
            play: text(r.get_ref(5)?),
            task: text(r.get_ref(6)?),
            task_action: text(r.get_ref(7)?),
            changed: r.get::<_, i64>(8)? != 0,
            ignored: r.get::<_, i64>(9)? != 0,
            message: text(r.get_ref(10)?),
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
}

/// A JSON value extracted by SQL as text: strings as they are, numbers and
/// JSON text (an array message) as written; `None` for null.
fn text(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

/// `instr(lower(...))` rather than LIKE: a pattern's `%` and `_` are literal.
fn host_runs(
    conn: &Connection,
    tenant: &str,
    pattern: &str,
    exact: bool,
    limit: usize,
) -> rusqlite::Result<Vec<HostRun>> {
    let matches = if exact {
        "g.host = ?2"
    } else {
        "instr(lower(g.host), lower(?2)) > 0"
    };
    let sql = format!(
        "SELECT g.host, g.run_id, r.playbook, g.ok, g.changed, g.failed, g.unreachable, g.skipped, g.last_ms
         FROM (
           SELECT host, run_id,
                  sum(kind = 'runner_on_ok') AS ok,
                  sum(kind = 'runner_on_ok' AND ch) AS changed,
                  sum(kind = 'runner_on_failed') AS failed,
                  sum(kind = 'runner_on_unreachable') AS unreachable,
                  sum(kind = 'runner_on_skipped') AS skipped,
                  max(created_ms) AS last_ms
           FROM (
             SELECT run_id, kind, created_ms,
                    json_extract(body, '$.event_data.host') AS host,
                    coalesce(json_type(body, '$.event_data.res.changed') = 'true', 0) AS ch
             FROM (SELECT run_id, kind, created_ms, body FROM events
                   WHERE tenant = ?1 ORDER BY id DESC LIMIT ?4)
             WHERE kind IN {RESULTS}
           ) WHERE host IS NOT NULL
           GROUP BY host, run_id
         ) g
         LEFT JOIN runs r ON r.tenant = ?1 AND r.run_id = g.run_id
         WHERE {matches}
         ORDER BY g.last_ms DESC, g.host LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![tenant, pattern, limit as i64, SEARCH_SCAN_EVENTS as i64],
        |r| {
            Ok(HostRun {
                host: r.get(0)?,
                run_id: r.get(1)?,
                playbook: r.get(2)?,
                ok: r.get::<_, i64>(3)?.max(0) as u64,
                changed: r.get::<_, i64>(4)?.max(0) as u64,
                failed: r.get::<_, i64>(5)?.max(0) as u64,
                unreachable: r.get::<_, i64>(6)?.max(0) as u64,
                skipped: r.get::<_, i64>(7)?.max(0) as u64,
                last_ms: r.get(8)?,
            })
        },
    )?;
    rows.collect()
}

fn search_tasks(
    conn: &Connection,
    tenant: &str,
    pattern: &str,
    limit: usize,
) -> rusqlite::Result<Vec<TaskHit>> {
    let starts = [
        EventKind::PlaybookOnTaskStart,
        EventKind::PlaybookOnHandlerTaskStart,
        EventKind::PlaybookOnCleanupTaskStart,
    ]
    .map(EventKind::as_str);
    let mut stmt = conn.prepare_cached(
        "SELECT t.run_id, r.playbook, t.task, t.play, t.uuid, t.created_ms
         FROM (
           SELECT run_id, uuid, created_ms,
                  json_extract(body, '$.event_data.task') AS task,
                  json_extract(body, '$.event_data.play') AS play
           FROM (SELECT run_id, uuid, kind, created_ms, body FROM events
                 WHERE tenant = ?1 ORDER BY id DESC LIMIT ?4)
           WHERE kind IN (?5, ?6, ?7)
         ) t
         LEFT JOIN runs r ON r.tenant = ?1 AND r.run_id = t.run_id
         WHERE t.task IS NOT NULL AND instr(lower(t.task), lower(?2)) > 0
         ORDER BY t.created_ms DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            tenant,
            pattern,
            limit as i64,
            SEARCH_SCAN_EVENTS as i64,
            starts[0],
            starts[1],
            starts[2]
        ],
        |r| {
            Ok(TaskHit {
                run_id: r.get(0)?,
                playbook: r.get(1)?,
                task: text(r.get_ref(2)?).unwrap_or_default(),
                play: text(r.get_ref(3)?),
                uuid: r.get(4)?,
                created_ms: r.get(5)?,
            })
        },
    )?;
    rows.collect()
}

fn run_delivery_counts(
    conn: &Connection,
    tenant: &str,
    run: &str,
) -> rusqlite::Result<Vec<RunDeliveryCounts>> {
    let mut tally = RunTally::default();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT d.plugin, d.state, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.tenant = ?1 AND e.run_id = ?2 GROUP BY d.plugin, d.state",
        )?;
        let mut rows = stmt.query(params![tenant, run])?;
        while let Some(r) = rows.next()? {
            tally.queued(r.get(0)?, &r.get::<_, String>(1)?, r.get(2)?);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT c.instance, c.position, c.routes, e.id, CASE WHEN c.routes = '[]' THEN NULL ELSE e.body END
         FROM events e JOIN cursors c ON c.tenant = e.tenant AND e.id > c.since
         WHERE e.tenant = ?1 AND e.run_id = ?2 AND c.retired_ms IS NULL
           AND (c.shards = 1 OR herald_shard(e.run_id, c.shards) = c.shard)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.instance AND d.event_id = e.id)",
    )?;
    let mut rows = stmt.query(params![tenant, run])?;
    while let Some(r) = rows.next()? {
        let body: Option<String> = r.get(4)?;
        tally.logged(
            r.get(0)?,
            r.get(1)?,
            &r.get::<_, String>(2)?,
            r.get(3)?,
            body.as_deref(),
        );
    }
    Ok(tally.finish())
}

fn resolve_run(conn: &Connection, tenant: &str, reference: &str) -> rusqlite::Result<RunRef> {
    if reference == "latest" {
        return Ok(conn
            .prepare_cached(
                "SELECT run_id FROM runs WHERE tenant = ?1 ORDER BY first_ms DESC, run_id DESC LIMIT 1",
            )?
            .query_row(params![tenant], |r| r.get(0))
            .optional()?
            .map_or(RunRef::NotFound, RunRef::Found));
    }
    if run_exists(conn, tenant, reference)? {
        return Ok(RunRef::Found(reference.to_string()));
    }
    // A prefix: the primary key (tenant, run_id) serves the range scan.
    let mut upper = reference.to_string();
    upper.push(char::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT run_id FROM runs WHERE tenant = ?1 AND run_id >= ?2 AND run_id < ?3
         ORDER BY first_ms DESC LIMIT 6",
    )?;
    let ids: Vec<String> = stmt
        .query_map(params![tenant, reference, upper], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match ids.len() {
        0 => RunRef::NotFound,
        1 => RunRef::Found(ids.into_iter().next().unwrap_or_default()),
        _ => RunRef::Ambiguous(ids),
    })
}

fn delivery_attempts(
    conn: &Connection,
    tenant: &str,
    plugin: &str,
    uuid: &str,
) -> rusqlite::Result<Option<(EventRecord, Vec<AttemptRecord>)>> {
    let Some(ev) = event(conn, tenant, uuid)? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at_ms, duration_ms, outcome, message, requests FROM delivery_attempts
         WHERE event_id = ?1 AND plugin = ?2 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![ev.id, plugin], |r| {
        let requests: String = r.get(5)?;
        Ok(AttemptRecord {
            event_id: ev.id,
            attempt: r.get(0)?,
            at_ms: r.get(1)?,
            duration_ms: r.get::<_, i64>(2)?.max(0) as u64,
            outcome: r.get(3)?,
            message: r.get(4)?,
            requests: serde_json::from_str(&requests).unwrap_or_default(),
        })
    })?;
    let attempts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((ev, attempts)))
}

impl Explore for Journal {
    fn delivery_attempts(
        &self,
        tenant: &str,
        plugin: &str,
        uuid: &str,
    ) -> Result<Option<(EventRecord, Vec<AttemptRecord>)>, JournalError> {
        self.read(|c| delivery_attempts(c, tenant, plugin, uuid))
    }

    fn event(&self, tenant: &str, uuid: &str) -> Result<Option<EventRecord>, JournalError> {
        self.read(|c| event(c, tenant, uuid))
    }

    fn run_outline(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Option<Vec<OutlineRow>>, JournalError> {
        self.read(|c| run_outline(c, tenant, run))
    }

    fn host_runs(
        &self,
        tenant: &str,
        pattern: &str,
        exact: bool,
        limit: usize,
    ) -> Result<Vec<HostRun>, JournalError> {
        self.read(|c| host_runs(c, tenant, pattern, exact, limit))
    }

    fn search_tasks(
        &self,
        tenant: &str,
        pattern: &str,
        limit: usize,
    ) -> Result<Vec<TaskHit>, JournalError> {
        self.read(|c| search_tasks(c, tenant, pattern, limit))
    }

    fn run_delivery_counts(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Vec<RunDeliveryCounts>, JournalError> {
        self.read(|c| run_delivery_counts(c, tenant, run))
    }

    fn resolve_run(&self, tenant: &str, reference: &str) -> Result<RunRef, JournalError> {
        self.read(|c| resolve_run(c, tenant, reference))
    }
}
