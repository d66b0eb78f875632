//! The reads behind the query API on PostgreSQL: the same answers as the
//! SQLite backend's `query` module (run status from the run's row, keyset
//! pages, deliveries derived from the cursors).

use super::{PgError, PgJournal};
use crate::{
    DeliveryFilter, DeliveryRecord, DeliveryState, EventFilter, JournalError, Page, ResultEvent,
    RunFilter, RunQueries, RunRecord, RunState, StoredBody,
};
use herald_event::{EventKind, Status};
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

/// SQL parameters built up with the query text.
#[derive(Default)]
struct Args(Vec<Box<dyn ToSql + Sync + Send>>);

impl Args {
    /// Adds a parameter; returns its placeholder (`$n`).
    fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A shell glob (`*`, `?`, `[...]`) as an anchored POSIX regular expression.
fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut in_class = false;
    for ch in glob.chars() {
        match ch {
            '[' if !in_class => {
                in_class = true;
                out.push('[');
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '*' if !in_class => out.push_str(".*"),
            '?' if !in_class => out.push('.'),
            c if !in_class && "\\.^$+(){}|".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if in_class {
        // An unclosed class matches itself, as in SQLite's GLOB.
        out = format!("^{}", regex_escape(glob));
    }
    out.push('$');
    out
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.^$+(){}|[]*?".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A run's status from its row alone; `stale` is the placeholder of the
/// epoch ms before which a silent unfinished run is interrupted.
fn status_sql(stale: &str) -> String {
    format!(
        "CASE
            WHEN NOT r.finished THEN
                CASE WHEN coalesce(r.received_ms, r.last_ms) < {stale} THEN 'interrupted' ELSE 'running' END
            WHEN r.outcome = 2 THEN 'failed'
            WHEN r.outcome = 1 THEN 'unreachable'
            ELSE 'ok' END"
    )
}

fn run_record(r: &tokio_postgres::Row) -> RunRecord {
    let status: String = r.get(6);
    let labels: Option<String> = r.get(7);
    RunRecord {
        id: r.get(0),
        playbook: r.get(1),
        controller: r.get(2),
        first_ms: r.get(3),
        last_ms: r.get(4),
        events: r.get(5),
        state: RunState::parse(&status).unwrap_or(RunState::Running),
        start: None,
        stats: None,
        labels: labels
            .and_then(|l| serde_json::from_str::<BTreeMap<String, String>>(&l).ok())
            .unwrap_or_default(),
    }
}

const RUN_COLUMNS: &str =
    "r.run_id, r.playbook, r.controller, r.first_ms, r.last_ms, r.events, {status} AS status, r.labels::text";

async fn first_of_kind(
    c: &impl GenericClient,
    tenant: &str,
    run: &str,
    kind: &str,
    newest: bool,
) -> Result<Option<StoredBody>, PgError> {
    let sql = if newest {
        "SELECT created_ms, body FROM events WHERE tenant = $1 AND run_id = $2 AND kind = $3 ORDER BY id DESC LIMIT 1"
    } else {
        "SELECT created_ms, body FROM events WHERE tenant = $1 AND run_id = $2 AND kind = $3 ORDER BY id LIMIT 1"
    };
    Ok(c.query_opt(sql, &[&tenant, &run, &kind])
        .await?
        .map(|r| StoredBody {
            created_ms: r.get(0),
            body: r.get(1),
        }))
}

async fn enrich(
    c: &impl GenericClient,
    tenant: &str,
    mut row: RunRecord,
) -> Result<RunRecord, PgError> {
    row.start = first_of_kind(
        c,
        tenant,
        &row.id,
        EventKind::PlaybookOnStart.as_str(),
        false,
    )
    .await?;
    row.stats = first_of_kind(
        c,
        tenant,
        &row.id,
        EventKind::PlaybookOnStats.as_str(),
        true,
    )
    .await?;
    Ok(row)
}

async fn list_runs(
    c: &impl GenericClient,
    tenant: &str,
    f: &RunFilter,
) -> Result<Page<RunRecord, (i64, String)>, PgError> {
    let mut args = Args::default();
    let t = args.push(tenant.to_string());
    let stale = args.push(f.stale_before_ms);
    let mut clauses = String::new();
    if let Some(p) = &f.playbook {
        // The glob matches the playbook as sent (often a path) or its file name.
        let re = args.push(glob_regex(p));
        clauses.push_str(&format!(
            " AND (r.playbook ~ {re} OR regexp_replace(r.playbook, '^.*/', '') ~ {re})"
        ));
    }
    if let Some(ctl) = &f.controller {
        clauses.push_str(&format!(" AND r.controller = {}", args.push(ctl.clone())));
    }
    if let Some(s) = f.since_ms {
        clauses.push_str(&format!(" AND r.first_ms >= {}", args.push(s)));
    }
    if let Some(u) = f.until_ms {
        clauses.push_str(&format!(" AND r.first_ms < {}", args.push(u)));
    }
    for (k, v) in f.labels.iter().take(8) {
        let key = args.push(k.clone());
        match v {
            Some(v) => {
                let value = args.push(v.clone());
                clauses.push_str(&format!(" AND r.labels ->> {key} = {value}"));
            }
            None => clauses.push_str(&format!(" AND r.labels ? {key}")),
        }
    }
    if let Some((ms, id)) = &f.after {
        let ms = args.push(*ms);
        let id = args.push(id.clone());
        clauses.push_str(&format!(
            " AND (r.first_ms < {ms} OR (r.first_ms = {ms} AND r.run_id < {id}))"
        ));
    }
    let mut tail = String::new();
    if let Some(s) = f.state {
        tail.push_str(&format!(
            "WHERE status = {} ",
            args.push(s.as_str().to_string())
        ));
    }
    let limit = args.push(f.limit as i64 + 1);
    tail.push_str(&format!(
        "ORDER BY first_ms DESC, run_id DESC LIMIT {limit}"
    ));
    let columns = RUN_COLUMNS.replace("{status}", &status_sql(&stale));
    let sql = format!(
        "SELECT * FROM (SELECT {columns} FROM runs r WHERE r.tenant = {t} {clauses}) AS x {tail}"
    );
    let mut rows: Vec<RunRecord> = c
        .query(&sql, &args.refs())
        .await?
        .iter()
        .map(run_record)
        .collect();
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    let next = if more {
        rows.last().map(|r| (r.first_ms, r.id.clone()))
    } else {
        None
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(enrich(c, tenant, row).await?);
    }
    Ok((items, next))
}

async fn exists(c: &impl GenericClient, tenant: &str, run: &str) -> Result<bool, PgError> {
    Ok(c.query_opt(
        "SELECT 1 FROM runs WHERE tenant = $1 AND run_id = $2",
        &[&tenant, &run],
    )
    .await?
    .is_some())
}

async fn run_events(
    c: &impl GenericClient,
    tenant: &str,
    run: &str,
    f: &EventFilter,
) -> Result<Option<Page<String, (i64, i64)>>, PgError> {
    if !exists(c, tenant, run).await? {
        return Ok(None);
    }
    let mut args = Args::default();
    let mut sql = format!(
        "SELECT counter, id, body FROM events WHERE tenant = {} AND run_id = {}",
        args.push(tenant.to_string()),
        args.push(run.to_string())
    );
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
        const CHANGED: &str =
            "coalesce((body::jsonb #> '{event_data,res,changed}') = 'true'::jsonb, false)";
        match status {
            Status::Ok => sql.push_str(&format!(" AND NOT {CHANGED}")),
            Status::Changed => sql.push_str(&format!(" AND {CHANGED}")),
            _ => {}
        }
    }
    if !kinds.is_empty() {
        let names: Vec<String> = kinds.iter().map(|k| k.as_str().to_string()).collect();
        sql.push_str(&format!(" AND kind = ANY({})", args.push(names)));
    }
    if let Some(h) = &f.host {
        sql.push_str(&format!(
            " AND (body::jsonb #>> '{{event_data,host}}') = {}",
            args.push(h.clone())
        ));
    }
    if let Some((counter, id)) = f.after {
        let cn = args.push(counter);
        let idn = args.push(id);
        sql.push_str(&format!(
            " AND (counter > {cn} OR (counter = {cn} AND id > {idn}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY counter, id LIMIT {}",
        args.push(f.limit as i64 + 1)
    ));
    let mut rows: Vec<(i64, i64, String)> = c
        .query(&sql, &args.refs())
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    let next = if more {
        rows.last().map(|(c, id, _)| (*c, *id))
    } else {
        None
    };
    Ok(Some((rows.into_iter().map(|(_, _, b)| b).collect(), next)))
}

/// Most derived deliveries one page of the listing looks at (as SQLite's).
const DERIVED_SCAN_MAX: usize = 50_000;

/// A page of a tenant's deliveries: the queue's rows and the deliveries the
/// cursors imply (see the SQLite backend's `deliveries` for the rules).
async fn deliveries(
    c: &impl GenericClient,
    tenant: &str,
    f: &DeliveryFilter,
) -> Result<Page<DeliveryRecord, (i64, String)>, PgError> {
    let mut rows = queued_deliveries(c, tenant, f).await?;
    let (derived, scanned_to) = derived_deliveries(c, tenant, f).await?;
    rows.extend(derived);
    rows.sort_by(|a, b| (a.event_id, &a.plugin).cmp(&(b.event_id, &b.plugin)));
    if let Some(stop) = &scanned_to {
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

async fn queued_deliveries(
    c: &impl GenericClient,
    tenant: &str,
    f: &DeliveryFilter,
) -> Result<Vec<DeliveryRecord>, PgError> {
    let mut args = Args::default();
    let mut sql = format!(
        "SELECT d.plugin, d.event_id, d.run_id, d.state, d.attempts, d.first_at_ms, d.next_at_ms,
                d.updated_ms, d.last_error, e.uuid, e.kind, e.counter
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE e.tenant = {}",
        args.push(tenant.to_string())
    );
    if let Some(r) = &f.run {
        sql.push_str(&format!(" AND d.run_id = {}", args.push(r.clone())));
    }
    if let Some(p) = &f.plugin {
        sql.push_str(&format!(" AND d.plugin = {}", args.push(p.clone())));
    }
    if let Some(o) = f.state {
        sql.push_str(&format!(
            " AND d.state = {}",
            args.push(o.as_str().to_string())
        ));
    }
    if let Some((id, plugin)) = &f.after {
        let idn = args.push(*id);
        let pn = args.push(plugin.clone());
        sql.push_str(&format!(
            " AND (d.event_id > {idn} OR (d.event_id = {idn} AND d.plugin > {pn}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY d.event_id, d.plugin LIMIT {}",
        args.push(f.limit as i64 + 1)
    ));
    Ok(c.query(&sql, &args.refs())
        .await?
        .into_iter()
        .map(|r| {
            let state: String = r.get(3);
            DeliveryRecord {
                plugin: r.get(0),
                event_id: r.get(1),
                run_id: r.get(2),
                state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending),
                attempts: i64::from(r.get::<_, i32>(4)),
                first_at_ms: r.get(5),
                next_at_ms: r.get(6),
                updated_ms: r.get(7),
                last_error: r.get(8),
                event_uuid: r.get(9),
                kind: r.get(10),
                counter: r.get(11),
            }
        })
        .collect())
}

async fn derived_deliveries(
    c: &impl GenericClient,
    tenant: &str,
    f: &DeliveryFilter,
) -> Result<(Vec<DeliveryRecord>, Option<(i64, String)>), PgError> {
    if f.state == Some(DeliveryState::Dead) {
        return Ok((Vec::new(), None));
    }
    let mut args = Args::default();
    let mut sql = format!(
        "SELECT c.instance, e.id, e.run_id, e.received_ms, e.uuid, e.kind, e.counter, c.position, c.routes,
                CASE WHEN c.routes = '[]' THEN NULL ELSE e.body END
         FROM events e JOIN cursors c ON c.tenant = e.tenant AND e.id > c.since
         WHERE e.tenant = {}
           AND (c.shards = 1 OR herald_shard(e.run_id, c.shards) = c.shard)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.instance AND d.event_id = e.id)",
        args.push(tenant.to_string())
    );
    if let Some(r) = &f.run {
        sql.push_str(&format!(" AND e.run_id = {}", args.push(r.clone())));
    }
    if let Some(p) = &f.plugin {
        sql.push_str(&format!(" AND c.instance = {}", args.push(p.clone())));
    }
    match f.state {
        Some(DeliveryState::Done) => sql.push_str(" AND e.id <= c.position"),
        Some(DeliveryState::Pending) => sql.push_str(" AND e.id > c.position"),
        _ => {}
    }
    let fixed = args.0.len();
    sql.push_str(&format!(
        " AND (e.id > ${a} OR (e.id = ${a} AND c.instance > ${b})) ORDER BY e.id, c.instance LIMIT ${l}",
        a = fixed + 1,
        b = fixed + 2,
        l = fixed + 3
    ));
    let stmt = c.prepare(&sql).await?;
    let chunk = (f.limit + 1).clamp(64, 4096);
    let mut after = f.after.clone().unwrap_or((0, String::new()));
    let mut routes: BTreeMap<String, herald_event::routes::Routes> = BTreeMap::new();
    let mut out = Vec::new();
    let mut scanned = 0usize;
    loop {
        let mut refs = args.refs();
        let chunk_sql = chunk as i64;
        refs.push(&after.0);
        refs.push(&after.1);
        refs.push(&chunk_sql);
        let page = c.query(&stmt, &refs).await?;
        drop(refs);
        let last_page = page.len() < chunk;
        for r in page {
            let plugin: String = r.get(0);
            let id: i64 = r.get(1);
            scanned += 1;
            after = (id, plugin.clone());
            let body: Option<String> = r.get(9);
            if let Some(body) = body {
                let route_json: String = r.get(8);
                let compiled = routes
                    .entry(plugin.clone())
                    .or_insert_with(|| herald_event::routes::Routes::from_json(&route_json));
                if !compiled.matches_stored(&body) {
                    continue;
                }
            }
            let position: i64 = r.get(7);
            let received_ms: i64 = r.get(3);
            let done = id <= position;
            out.push(DeliveryRecord {
                plugin,
                event_id: id,
                run_id: r.get(2),
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
                event_uuid: r.get(4),
                kind: r.get(5),
                counter: r.get(6),
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

impl RunQueries for PgJournal {
    fn list_runs(
        &self,
        tenant: &str,
        f: &RunFilter,
    ) -> Result<Page<RunRecord, (i64, String)>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            list_runs(&**c, tenant, f).await
        })?)
    }

    fn run(
        &self,
        tenant: &str,
        run: &str,
        stale_before_ms: i64,
    ) -> Result<Option<RunRecord>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let columns = RUN_COLUMNS.replace("{status}", &status_sql("$3"));
            let row = c
                .query_opt(
                    &format!("SELECT {columns} FROM runs r WHERE r.tenant = $1 AND r.run_id = $2"),
                    &[&tenant, &run, &stale_before_ms],
                )
                .await?;
            match row {
                Some(r) => Ok::<_, PgError>(Some(enrich(&**c, tenant, run_record(&r)).await?)),
                None => Ok(None),
            }
        })?)
    }

    fn run_results(&self, tenant: &str, run: &str) -> Result<Vec<ResultEvent>, JournalError> {
        let kinds: Vec<String> = [
            EventKind::RunnerOnOk,
            EventKind::RunnerOnFailed,
            EventKind::RunnerOnSkipped,
            EventKind::RunnerOnUnreachable,
        ]
        .map(|k| k.as_str().to_string())
        .to_vec();
        Ok(self.block(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT uuid, counter, kind, created_ms, body FROM events
                     WHERE tenant = $1 AND run_id = $2 AND kind = ANY($3)
                     ORDER BY counter, id",
                    &[&tenant, &run, &kinds],
                )
                .await?;
            Ok::<_, PgError>(
                rows.into_iter()
                    .map(|r| ResultEvent {
                        uuid: r.get(0),
                        counter: r.get(1),
                        kind: r.get(2),
                        created_ms: r.get(3),
                        body: r.get(4),
                    })
                    .collect(),
            )
        })?)
    }

    fn run_stats(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Option<Option<StoredBody>>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            if !exists(&**c, tenant, run).await? {
                return Ok::<_, PgError>(None);
            }
            Ok(Some(
                first_of_kind(&**c, tenant, run, EventKind::PlaybookOnStats.as_str(), true).await?,
            ))
        })?)
    }

    fn run_events(
        &self,
        tenant: &str,
        run: &str,
        f: &EventFilter,
    ) -> Result<Option<Page<String, (i64, i64)>>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            run_events(&**c, tenant, run, f).await
        })?)
    }

    fn deliveries(
        &self,
        tenant: &str,
        f: &DeliveryFilter,
    ) -> Result<Page<DeliveryRecord, (i64, String)>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            deliveries(&**c, tenant, f).await
        })?)
    }

    fn active_runs(&self, since_ms: i64) -> Result<Vec<(String, u64)>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT tenant, count(*) FROM runs WHERE NOT finished AND last_ms >= $1 GROUP BY tenant",
                    &[&since_ms],
                )
                .await?;
            Ok::<_, PgError>(
                rows.into_iter()
                    .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                    .collect(),
            )
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_regex;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("site.yml"), "^site\\.yml$");
        assert_eq!(glob_regex("*.yml"), "^.*\\.yml$");
        assert_eq!(glob_regex("s?te[0-9].yml"), "^s.te[0-9]\\.yml$");
        assert_eq!(glob_regex("a[b"), "^a\\[b$");
    }
}
