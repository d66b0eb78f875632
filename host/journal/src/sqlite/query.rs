//! The SQL behind the query API, on the backend's pooled read connections
//! (WAL lets them read while ingest and dispatch write). The rows come back
//! as the journal's own records; the server maps them to its API models.

use super::Journal;
use crate::{
    DeliveryFilter, DeliveryRecord, DeliveryState, EventFilter, JournalError, Page, ResultEvent,
    RunFilter, RunQueries, RunRecord, RunState, StoredBody,
};
use herald_event::{EventKind, Status};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// The SQL expression of a run's status from its row alone (`r` is the
/// `runs` row; `:stale` the epoch ms before which a silent unfinished run is
/// interrupted): ingest keeps the row's outcome and last arrival, so no
/// query reads the run's events for it.
const STATUS_SQL: &str = "CASE
    WHEN r.finished = 0 THEN
        CASE WHEN coalesce(r.received_ms, r.last_ms) < :stale THEN 'interrupted' ELSE 'running' END
    WHEN r.outcome = 2 THEN 'failed'
    WHEN r.outcome = 1 THEN 'unreachable'
    ELSE 'ok' END";

fn run_rows(
    conn: &Connection,
    tenant: &str,
    extra_where: &str,
    mut args: Vec<(&str, Sql)>,
    stale_before_ms: i64,
    tail: &str,
) -> rusqlite::Result<Vec<RunRecord>> {
    let sql = format!(
        "SELECT * FROM (
            SELECT r.run_id, r.playbook, r.controller, r.first_ms, r.last_ms, r.events,
                   {STATUS_SQL} AS status, r.labels
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
        Ok(RunRecord {
            id: r.get(0)?,
            playbook: r.get(1)?,
            controller: r.get(2)?,
            first_ms: r.get(3)?,
            last_ms: r.get(4)?,
            events: r.get(5)?,
            state: RunState::parse(&status).unwrap_or(RunState::Running),
            start: None,
            stats: None,
            labels: r
                .get::<_, Option<String>>(7)?
                .and_then(|l| serde_json::from_str::<BTreeMap<String, String>>(&l).ok())
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// The first (or newest) event of `kind` of a run.
fn first_of_kind(
    conn: &Connection,
    tenant: &str,
    run: &str,
    kind: &str,
    newest: bool,
) -> rusqlite::Result<Option<StoredBody>> {
    let sql = if newest {
        "SELECT created_ms, body FROM events WHERE tenant = ?1 AND run_id = ?2 AND kind = ?3 ORDER BY id DESC LIMIT 1"
    } else {
        "SELECT created_ms, body FROM events WHERE tenant = ?1 AND run_id = ?2 AND kind = ?3 ORDER BY id LIMIT 1"
    };
    conn.prepare_cached(sql)?
        .query_row(params![tenant, run, kind], |r| {
            Ok(StoredBody {
                created_ms: r.get(0)?,
                body: r.get(1)?,
            })
        })
        .optional()
}

/// Adds the run's start and stats events to its row.
fn enrich(conn: &Connection, tenant: &str, mut row: RunRecord) -> rusqlite::Result<RunRecord> {
    row.start = first_of_kind(
        conn,
        tenant,
        &row.id,
        EventKind::PlaybookOnStart.as_str(),
        false,
    )?;
    row.stats = first_of_kind(
        conn,
        tenant,
        &row.id,
        EventKind::PlaybookOnStats.as_str(),
        true,
    )?;
    Ok(row)
}

fn list_runs(
    conn: &Connection,
    tenant: &str,
    f: &RunFilter,
) -> rusqlite::Result<Page<RunRecord, (i64, String)>> {
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
            " AND EXISTS (SELECT 1 FROM json_each(r.labels) j WHERE j.key = {}{value_cond})",
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
    if let Some(s) = f.state {
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
        .map(|row| enrich(conn, tenant, row))
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

fn run_results(conn: &Connection, tenant: &str, run: &str) -> rusqlite::Result<Vec<ResultEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT uuid, counter, kind, created_ms, body FROM events
         WHERE tenant = ?1 AND run_id = ?2
           AND kind IN (?3, ?4, ?5, ?6)
         ORDER BY counter, id",
    )?;
    // The per-host results a run's detail lists (not the async and item
    // variants): their names from herald-event's one table.
    let [ok, failed, skipped, unreachable] = [
        EventKind::RunnerOnOk,
        EventKind::RunnerOnFailed,
        EventKind::RunnerOnSkipped,
        EventKind::RunnerOnUnreachable,
    ]
    .map(EventKind::as_str);
    let rows = stmt.query_map(
        params![tenant, run, ok, failed, skipped, unreachable],
        |r| {
            Ok(ResultEvent {
                uuid: r.get(0)?,
                counter: r.get(1)?,
                kind: r.get(2)?,
                created_ms: r.get(3)?,
                body: r.get(4)?,
            })
        },
    )?;
    rows.collect()
}

fn run_events(
    conn: &Connection,
    tenant: &str,
    run: &str,
    f: &EventFilter,
) -> rusqlite::Result<Option<Page<String, (i64, i64)>>> {
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
    let mut rows: Vec<(i64, i64, String)> = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(3)?))
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

/// Most derived deliveries one page of the listing looks at: a page of a
/// tenant with a huge backlog stops there and continues from it.
const DERIVED_SCAN_MAX: usize = 50_000;

/// A page of a tenant's deliveries in (event id, instance) order: the queue's
/// rows (retries, holds, replays, dead letters and what became of them), and
/// the deliveries the instances' cursors imply, which leave no row: an event
/// of the instance's tenant after its cursor started that its routes match
/// is `done` (at the first attempt) once the cursor is past it, `pending`
/// before. Routes are the instance's current ones (a reload that changed
/// them re-judges older events in this listing, not in delivery).
fn deliveries(
    conn: &Connection,
    tenant: &str,
    f: &DeliveryFilter,
) -> rusqlite::Result<Page<DeliveryRecord, (i64, String)>> {
    let mut rows = queued_deliveries(conn, tenant, f)?;
    let (derived, scanned_to) = derived_deliveries(conn, tenant, f)?;
    rows.extend(derived);
    rows.sort_by(|a, b| (a.event_id, &a.plugin).cmp(&(b.event_id, &b.plugin)));
    if let Some(stop) = &scanned_to {
        // The scan stopped early: nothing after where it stopped is known yet.
        rows.retain(|d| (d.event_id, &d.plugin) <= (stop.0, &stop.1));
    }
    let more = rows.len() > f.limit || scanned_to.is_some();
    rows.truncate(f.limit);
    let next = if more {
        rows.last()
            .map(|d| (d.event_id, d.plugin.clone()))
            .or(scanned_to)
    } else {
        None
    };
    Ok((rows, next))
}

/// The queue's rows of the listing (at most `limit + 1`).
fn queued_deliveries(
    conn: &Connection,
    tenant: &str,
    f: &DeliveryFilter,
) -> rusqlite::Result<Vec<DeliveryRecord>> {
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
    if let Some(o) = f.state {
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
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let state: String = r.get(3)?;
        Ok(DeliveryRecord {
            plugin: r.get(0)?,
            event_id: r.get(1)?,
            run_id: r.get(2)?,
            state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending),
            attempts: r.get(4)?,
            first_at_ms: r.get(5)?,
            next_at_ms: r.get(6)?,
            updated_ms: r.get(7)?,
            last_error: r.get(8)?,
            event_uuid: r.get(9)?,
            kind: r.get(10)?,
            counter: r.get(11)?,
        })
    })?;
    rows.collect()
}

/// The deliveries the cursors imply (at most `limit + 1` of them), and,
/// when the scan stopped at [`DERIVED_SCAN_MAX`] before that, where.
fn derived_deliveries(
    conn: &Connection,
    tenant: &str,
    f: &DeliveryFilter,
) -> rusqlite::Result<Page<DeliveryRecord, (i64, String)>> {
    if f.state == Some(DeliveryState::Dead) {
        // Dead letters always have a row.
        return Ok((Vec::new(), None));
    }
    let mut sql = String::from(
        "SELECT c.instance, e.id, e.run_id, e.received_ms, e.uuid, e.kind, e.counter, c.position, c.routes,
                CASE WHEN c.routes = '[]' THEN NULL ELSE e.body END
         FROM events e JOIN cursors c ON c.tenant = e.tenant AND e.id > c.since
         WHERE e.tenant = ?
           AND (c.shards = 1 OR herald_shard(e.run_id, c.shards) = c.shard)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.instance AND d.event_id = e.id)",
    );
    let mut args: Vec<Sql> = vec![Sql::Text(tenant.into())];
    if let Some(r) = &f.run {
        sql.push_str(" AND e.run_id = ?");
        args.push(Sql::Text(r.clone()));
    }
    if let Some(p) = &f.plugin {
        sql.push_str(" AND c.instance = ?");
        args.push(Sql::Text(p.clone()));
    }
    match f.state {
        Some(DeliveryState::Done) => sql.push_str(" AND e.id <= c.position"),
        Some(DeliveryState::Pending) => sql.push_str(" AND e.id > c.position"),
        _ => {}
    }
    sql.push_str(
        " AND (e.id > ? OR (e.id = ? AND c.instance > ?)) ORDER BY e.id, c.instance LIMIT ?",
    );
    let chunk = (f.limit + 1).clamp(64, 4096);
    let mut after = f.after.clone().unwrap_or((0, String::new()));
    let mut routes: BTreeMap<String, herald_event::routes::Routes> = BTreeMap::new();
    let mut out = Vec::new();
    let mut scanned = 0usize;
    let mut stmt = conn.prepare_cached(&sql)?;
    loop {
        let mut page_args = args.clone();
        page_args.extend([
            Sql::Integer(after.0),
            Sql::Integer(after.0),
            Sql::Text(after.1.clone()),
            Sql::Integer(chunk as i64),
        ]);
        type Row = (
            String,
            i64,
            String,
            i64,
            String,
            String,
            i64,
            i64,
            String,
            Option<String>,
        );
        let page: Vec<Row> = stmt
            .query_map(params_from_iter(page_args), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let last_page = page.len() < chunk;
        for (plugin, id, run_id, received_ms, uuid, kind, counter, position, route_json, body) in
            page
        {
            scanned += 1;
            after = (id, plugin.clone());
            if let Some(body) = body {
                let compiled = routes
                    .entry(plugin.clone())
                    .or_insert_with(|| herald_event::routes::Routes::from_json(&route_json));
                if !compiled.matches_stored(&body) {
                    continue;
                }
            }
            let done = id <= position;
            out.push(DeliveryRecord {
                plugin,
                event_id: id,
                run_id,
                state: if done {
                    DeliveryState::Done
                } else {
                    DeliveryState::Pending
                },
                attempts: i64::from(done),
                first_at_ms: received_ms,
                next_at_ms: received_ms,
                updated_ms: received_ms,
                last_error: None,
                event_uuid: uuid,
                kind,
                counter,
            });
            if out.len() > f.limit {
                return Ok((out, None));
            }
        }
        if last_page {
            return Ok((out, None));
        }
        if scanned >= DERIVED_SCAN_MAX {
            return Ok((out, Some(after)));
        }
    }
}

impl RunQueries for Journal {
    fn list_runs(
        &self,
        tenant: &str,
        f: &RunFilter,
    ) -> Result<Page<RunRecord, (i64, String)>, JournalError> {
        self.read(|c| list_runs(c, tenant, f))
    }

    fn run(
        &self,
        tenant: &str,
        run: &str,
        stale_before_ms: i64,
    ) -> Result<Option<RunRecord>, JournalError> {
        self.read(|c| {
            let rows = run_rows(
                c,
                tenant,
                "AND r.run_id = :run",
                vec![(":run", Sql::Text(run.to_string()))],
                stale_before_ms,
                "",
            )?;
            rows.into_iter()
                .next()
                .map(|row| enrich(c, tenant, row))
                .transpose()
        })
    }

    fn run_results(&self, tenant: &str, run: &str) -> Result<Vec<ResultEvent>, JournalError> {
        self.read(|c| run_results(c, tenant, run))
    }

    fn run_stats(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Option<Option<StoredBody>>, JournalError> {
        self.read(|c| {
            if !exists(c, tenant, run)? {
                return Ok(None);
            }
            first_of_kind(c, tenant, run, EventKind::PlaybookOnStats.as_str(), true).map(Some)
        })
    }

    fn run_events(
        &self,
        tenant: &str,
        run: &str,
        f: &EventFilter,
    ) -> Result<Option<Page<String, (i64, i64)>>, JournalError> {
        self.read(|c| run_events(c, tenant, run, f))
    }

    fn deliveries(
        &self,
        tenant: &str,
        f: &DeliveryFilter,
    ) -> Result<Page<DeliveryRecord, (i64, String)>, JournalError> {
        self.read(|c| deliveries(c, tenant, f))
    }

    fn active_runs(&self, since_ms: i64) -> Result<Vec<(String, u64)>, JournalError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT tenant, count(*) FROM runs WHERE finished = 0 AND last_ms >= ?1 GROUP BY tenant",
            )?;
            let rows = stmt.query_map(params![since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }
}
