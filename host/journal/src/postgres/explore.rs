//! The PostgreSQL side of [`crate::Explore`]: the same answers as the SQLite
//! backend's `explore` module. Bodies are `text` (kept byte for byte) and
//! read as `jsonb` in SQL, with `\u0000` escapes made U+FFFD first: PostgreSQL
//! cannot convert that escape, and one such result must not hide a run.

use super::{PgError, PgJournal};
use crate::{
    AttemptRecord, EventRecord, Explore, HostRun, JournalError, OutlineRow, RunDeliveryCounts,
    RunRef, RunTally, TaskHit, SEARCH_SCAN_EVENTS,
};
use herald_event::EventKind;
use tokio_postgres::GenericClient;

/// The host result kinds, as stored.
fn result_kinds() -> Vec<String> {
    [
        EventKind::RunnerOnOk,
        EventKind::RunnerOnFailed,
        EventKind::RunnerOnSkipped,
        EventKind::RunnerOnUnreachable,
    ]
    .map(|k| k.as_str().to_string())
    .to_vec()
}

/// A stored body as `jsonb` (see the module's comment). An escaped
/// backslash followed by `u0000` changes too, which only a display sees.
const BODY: &str = r"replace(body, '\u0000', '\ufffd')::jsonb";

/// Longest failure message an outline row carries.
const MAX_MESSAGE_CHARS: usize = 2048;

/// A JSON value as the outline shows it: strings as they are, other values
/// as their JSON text; `None` for null, absent or empty.
fn json_text(v: Option<String>) -> Option<String> {
    let raw = v?;
    match serde_json::from_str::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Null) => None,
        Ok(serde_json::Value::String(s)) if s.is_empty() => None,
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => Some(raw),
    }
}

async fn event(
    c: &impl GenericClient,
    tenant: &str,
    uuid: &str,
) -> Result<Option<EventRecord>, PgError> {
    Ok(c.query_opt(
        "SELECT id, uuid, run_id, counter, kind, created_ms, body FROM events
             WHERE tenant = $1 AND uuid = $2",
        &[&tenant, &uuid],
    )
    .await?
    .map(|r| EventRecord {
        id: r.get(0),
        uuid: r.get(1),
        run_id: r.get(2),
        counter: r.get(3),
        kind: r.get(4),
        created_ms: r.get(5),
        body: r.get(6),
    }))
}

async fn run_exists(c: &impl GenericClient, tenant: &str, run: &str) -> Result<bool, PgError> {
    Ok(c.query_opt(
        "SELECT 1 FROM runs WHERE tenant = $1 AND run_id = $2",
        &[&tenant, &run],
    )
    .await?
    .is_some())
}

async fn run_outline(
    c: &impl GenericClient,
    tenant: &str,
    run: &str,
) -> Result<Option<Vec<OutlineRow>>, PgError> {
    if !run_exists(c, tenant, run).await? {
        return Ok(None);
    }
    let failures = [EventKind::RunnerOnFailed, EventKind::RunnerOnUnreachable]
        .map(|k| k.as_str().to_string())
        .to_vec();
    let rows = c
        .query(
            "SELECT uuid, counter, kind, created_ms,
                    (j #> '{event_data,host}')::text, (j #> '{event_data,play}')::text,
                    (j #> '{event_data,task}')::text, (j #> '{event_data,task_action}')::text,
                    coalesce((j #> '{event_data,res,changed}')::text = 'true', false),
                    coalesce((j #> '{event_data,ignore_errors}')::text = 'true', false),
                    CASE WHEN kind = ANY($3) THEN (j #> '{event_data,res,msg}')::text END,
                    CASE WHEN kind = ANY($3) THEN (j #> '{event_data,res,stderr}')::text END,
                    CASE WHEN kind = ANY($3) THEN (j #> '{event_data,res,reason}')::text END
             FROM (SELECT uuid, counter, kind, created_ms, id, {BODY} AS j FROM events
                   WHERE tenant = $1 AND run_id = $2) e
             ORDER BY counter, id"
                .replace("{BODY}", BODY)
                .as_str(),
            &[&tenant, &run, &failures],
        )
        .await?;
    Ok(Some(
        rows.into_iter()
            .map(|r| OutlineRow {
                uuid: r.get(0),
                counter: r.get(1),
                kind: r.get(2),
                created_ms: r.get(3),
                host: json_text(r.get(4)),
                play: json_text(r.get(5)),
                task: json_text(r.get(6)),
                task_action: json_text(r.get(7)),
                changed: r.get(8),
                ignored: r.get(9),
                message: json_text(r.get(10))
                    .or_else(|| json_text(r.get(11)))
                    .or_else(|| json_text(r.get(12)))
                    .map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect()),
            })
            .collect(),
    ))
}

/// `strpos(lower(...))` rather than LIKE: a pattern's `%` and `_` are literal.
async fn host_runs(
    c: &impl GenericClient,
    tenant: &str,
    pattern: &str,
    exact: bool,
    limit: usize,
) -> Result<Vec<HostRun>, PgError> {
    let matches = if exact {
        "g.host = $2"
    } else {
        "strpos(lower(g.host), lower($2)) > 0"
    };
    let sql = format!(
        "SELECT g.host, g.run_id, r.playbook, g.ok, g.changed, g.failed, g.unreachable, g.skipped, g.last_ms
         FROM (
           SELECT host, run_id,
                  count(*) FILTER (WHERE kind = 'runner_on_ok') AS ok,
                  count(*) FILTER (WHERE kind = 'runner_on_ok' AND ch) AS changed,
                  count(*) FILTER (WHERE kind = 'runner_on_failed') AS failed,
                  count(*) FILTER (WHERE kind = 'runner_on_unreachable') AS unreachable,
                  count(*) FILTER (WHERE kind = 'runner_on_skipped') AS skipped,
                  max(created_ms) AS last_ms
           FROM (
             SELECT run_id, kind, created_ms,
                    j #>> '{{event_data,host}}' AS host,
                    coalesce((j #> '{{event_data,res,changed}}')::text = 'true', false) AS ch
             FROM (SELECT run_id, kind, created_ms, body FROM events
                   WHERE tenant = $1 ORDER BY id DESC LIMIT $4) s,
                  LATERAL (SELECT {BODY} AS j) b
             WHERE kind = ANY($5)
           ) x WHERE host IS NOT NULL
           GROUP BY host, run_id
         ) g
         LEFT JOIN runs r ON r.tenant = $1 AND r.run_id = g.run_id
         WHERE {matches}
         ORDER BY g.last_ms DESC, g.host LIMIT $3"
    );
    let rows = c
        .query(
            &sql,
            &[
                &tenant,
                &pattern,
                &(limit as i64),
                &(SEARCH_SCAN_EVENTS as i64),
                &result_kinds(),
            ],
        )
        .await?;
    let count = |r: &tokio_postgres::Row, i: usize| r.get::<_, i64>(i).max(0) as u64;
    Ok(rows
        .iter()
        .map(|r| HostRun {
            host: r.get(0),
            run_id: r.get(1),
            playbook: r.get(2),
            ok: count(r, 3),
            changed: count(r, 4),
            failed: count(r, 5),
            unreachable: count(r, 6),
            skipped: count(r, 7),
            last_ms: r.get(8),
        })
        .collect())
}

async fn search_tasks(
    c: &impl GenericClient,
    tenant: &str,
    pattern: &str,
    limit: usize,
) -> Result<Vec<TaskHit>, PgError> {
    let starts = [
        EventKind::PlaybookOnTaskStart,
        EventKind::PlaybookOnHandlerTaskStart,
        EventKind::PlaybookOnCleanupTaskStart,
    ]
    .map(|k| k.as_str().to_string())
    .to_vec();
    let rows = c
        .query(
            "SELECT t.run_id, r.playbook, t.task, t.play, t.uuid, t.created_ms
             FROM (
               SELECT run_id, uuid, created_ms,
                      j #>> '{event_data,task}' AS task,
                      (j #> '{event_data,play}')::text AS play
               FROM (SELECT run_id, uuid, kind, created_ms, body FROM events
                     WHERE tenant = $1 ORDER BY id DESC LIMIT $4) s,
                    LATERAL (SELECT {BODY} AS j) b
               WHERE kind = ANY($5)
             ) t
             LEFT JOIN runs r ON r.tenant = $1 AND r.run_id = t.run_id
             WHERE t.task IS NOT NULL AND strpos(lower(t.task), lower($2)) > 0
             ORDER BY t.created_ms DESC LIMIT $3"
                .replace("{BODY}", BODY)
                .as_str(),
            &[
                &tenant,
                &pattern,
                &(limit as i64),
                &(SEARCH_SCAN_EVENTS as i64),
                &starts,
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| TaskHit {
            run_id: r.get(0),
            playbook: r.get(1),
            task: r.get::<_, Option<String>>(2).unwrap_or_default(),
            play: json_text(r.get(3)),
            uuid: r.get(4),
            created_ms: r.get(5),
        })
        .collect())
}

async fn run_delivery_counts(
    c: &impl GenericClient,
    tenant: &str,
    run: &str,
) -> Result<Vec<RunDeliveryCounts>, PgError> {
    let mut tally = RunTally::default();
    for r in c
        .query(
            "SELECT d.plugin, d.state, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.tenant = $1 AND e.run_id = $2 GROUP BY d.plugin, d.state",
            &[&tenant, &run],
        )
        .await?
    {
        tally.queued(r.get(0), r.get(1), r.get(2));
    }
    for r in c
        .query(
            "SELECT c.instance, c.position, c.routes, e.id, CASE WHEN c.routes = '[]' THEN NULL ELSE e.body END
             FROM events e JOIN cursors c ON c.tenant = e.tenant AND e.id > c.since
             WHERE e.tenant = $1 AND e.run_id = $2 AND c.retired_ms IS NULL
               AND (c.shards = 1 OR herald_shard(e.run_id, c.shards) = c.shard)
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.instance AND d.event_id = e.id)",
            &[&tenant, &run],
        )
        .await?
    {
        tally.logged(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    }
    Ok(tally.finish())
}

async fn resolve_run(
    c: &impl GenericClient,
    tenant: &str,
    reference: &str,
) -> Result<RunRef, PgError> {
    if reference == "latest" {
        return Ok(c
            .query_opt(
                "SELECT run_id FROM runs WHERE tenant = $1 ORDER BY first_ms DESC, run_id DESC LIMIT 1",
                &[&tenant],
            )
            .await?
            .map_or(RunRef::NotFound, |r| RunRef::Found(r.get(0))));
    }
    if run_exists(c, tenant, reference).await? {
        return Ok(RunRef::Found(reference.to_string()));
    }
    // `starts_with`, not a range: a range's order depends on the collation.
    let ids: Vec<String> = c
        .query(
            "SELECT run_id FROM runs WHERE tenant = $1 AND starts_with(run_id, $2)
             ORDER BY first_ms DESC LIMIT 6",
            &[&tenant, &reference],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    Ok(match ids.len() {
        0 => RunRef::NotFound,
        1 => RunRef::Found(ids.into_iter().next().unwrap_or_default()),
        _ => RunRef::Ambiguous(ids),
    })
}

async fn delivery_attempts(
    c: &impl GenericClient,
    tenant: &str,
    plugin: &str,
    uuid: &str,
) -> Result<Option<(EventRecord, Vec<AttemptRecord>)>, PgError> {
    let Some(ev) = event(c, tenant, uuid).await? else {
        return Ok(None);
    };
    let rows = c
        .query(
            "SELECT attempt, at_ms, duration_ms, outcome, message, requests FROM delivery_attempts
             WHERE event_id = $1 AND plugin = $2 ORDER BY id",
            &[&ev.id, &plugin],
        )
        .await?;
    let attempts = rows
        .into_iter()
        .map(|r| AttemptRecord {
            event_id: ev.id,
            attempt: r.get::<_, i32>(0).max(0) as u32,
            at_ms: r.get(1),
            duration_ms: r.get::<_, i64>(2).max(0) as u64,
            outcome: r.get(3),
            message: r.get(4),
            requests: serde_json::from_str(r.get(5)).unwrap_or_default(),
        })
        .collect();
    Ok(Some((ev, attempts)))
}

impl Explore for PgJournal {
    fn event(&self, tenant: &str, uuid: &str) -> Result<Option<EventRecord>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            event(&**c, tenant, uuid).await
        })?)
    }

    fn run_outline(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Option<Vec<OutlineRow>>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            run_outline(&**c, tenant, run).await
        })?)
    }

    fn host_runs(
        &self,
        tenant: &str,
        pattern: &str,
        exact: bool,
        limit: usize,
    ) -> Result<Vec<HostRun>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            host_runs(&**c, tenant, pattern, exact, limit).await
        })?)
    }

    fn search_tasks(
        &self,
        tenant: &str,
        pattern: &str,
        limit: usize,
    ) -> Result<Vec<TaskHit>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            search_tasks(&**c, tenant, pattern, limit).await
        })?)
    }

    fn run_delivery_counts(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Vec<RunDeliveryCounts>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            run_delivery_counts(&**c, tenant, run).await
        })?)
    }

    fn resolve_run(&self, tenant: &str, reference: &str) -> Result<RunRef, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            resolve_run(&**c, tenant, reference).await
        })?)
    }

    fn delivery_attempts(
        &self,
        tenant: &str,
        plugin: &str,
        uuid: &str,
    ) -> Result<Option<(EventRecord, Vec<AttemptRecord>)>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            delivery_attempts(&**c, tenant, plugin, uuid).await
        })?)
    }
}
