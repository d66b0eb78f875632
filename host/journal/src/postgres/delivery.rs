//! Cursors, pending reads, replays and dead letters on PostgreSQL: the same
//! model as the SQLite backend (see `crate::DeliveryQueue`).

use super::{lock_tenants, PgError, PgJournal};
use crate::{
    now_ms, CommitNotice, DeadLetter, DeadLetters, DeliveryQueue, JournalError, MarkBatch,
    MarksReceipt, MarksWritten, PendingDelivery, ReadPos,
};
use deadpool_postgres::Transaction;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_postgres::IsolationLevel;

/// The queue half of a pending read: its pending rows, with their events.
const QUEUED_SQL: &str = "
    SELECT d.event_id, d.run_id, d.attempts, d.next_at_ms, d.first_at_ms, e.body, e.request_id,
           e.trace_id, e.span_id, CASE WHEN e.tenant = $3 THEN NULL ELSE e.tenant END
    FROM deliveries d JOIN events e ON e.id = d.event_id
    WHERE d.plugin = $1 AND d.state = 'pending' AND d.event_id > $2
    ORDER BY d.event_id LIMIT $4";

/// The log half: the tenant's events past the instance's cursor (and past
/// `after`) without a queue row. No cursor: nothing.
const LOGGED_SQL: &str = "
    SELECT e.id, e.run_id, e.received_ms, e.body, e.request_id, e.trace_id, e.span_id
    FROM cursors c JOIN events e ON e.tenant = c.tenant AND e.id > greatest($2, c.position)
    WHERE c.plugin = $1 AND c.tenant = $3
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = $1 AND d.event_id = e.id)
    ORDER BY e.id LIMIT $4";

/// Queues, for `plugin`, what it had not read of `tenant`'s events when its
/// name was given to another tenant (its stored routes decide which): the
/// worker dead-letters them.
async fn queue_unread(
    tx: &Transaction<'_>,
    plugin: &str,
    tenant: &str,
    position: i64,
    routes: &str,
    now: i64,
) -> Result<usize, PgError> {
    let routes = herald_event::routes::Routes::from_json(routes);
    let rows = tx
        .query(
            "SELECT id, run_id, received_ms, body FROM events WHERE tenant = $1 AND id > $2 ORDER BY id",
            &[&tenant, &position],
        )
        .await?;
    let insert = tx
        .prepare(
            "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms)
             VALUES ($1, $2, $3, 'pending', 0, $4, $5, $5) ON CONFLICT (plugin, event_id) DO NOTHING",
        )
        .await?;
    let mut n = 0;
    for r in rows {
        let body: String = r.get(3);
        if routes.matches_stored(&body) {
            let id: i64 = r.get(0);
            let run_id: String = r.get(1);
            let received: i64 = r.get(2);
            n += tx
                .execute(&insert, &[&plugin, &id, &run_id, &received, &now])
                .await? as usize;
        }
    }
    Ok(n)
}

impl DeliveryQueue for PgJournal {
    fn open_cursor(
        &self,
        plugin: &str,
        tenant: &str,
        routes: &[herald_event::routes::RouteConfig],
    ) -> Result<i64, JournalError> {
        let routes_json = serde_json::to_string(routes).map_err(PgError::from)?;
        Ok(self.block(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            // Waits for the tenant's ingest in flight: a new cursor then
            // starts past every id the tenant will ever commit before it.
            lock_tenants(&tx, &[tenant]).await?;
            let now = now_ms();
            let current = tx
                .query_opt(
                    "SELECT tenant, position, routes FROM cursors WHERE plugin = $1 FOR UPDATE",
                    &[&plugin],
                )
                .await?
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, String>(2)));
            let position = match current {
                Some((t, position, _)) if t == tenant => {
                    tx.execute(
                        "UPDATE cursors SET routes = $2, retired_ms = NULL, updated_ms = $3 WHERE plugin = $1",
                        &[&plugin, &routes_json, &now],
                    )
                    .await?;
                    position
                }
                other => {
                    if let Some((earlier, position, routes)) = &other {
                        queue_unread(&tx, plugin, earlier, *position, routes, now).await?;
                    }
                    let end: i64 = tx
                        .query_one("SELECT coalesce(max(id), 0) FROM events", &[])
                        .await?
                        .get(0);
                    tx.execute(
                        "INSERT INTO cursors (plugin, tenant, since, position, delivered, routes, updated_ms)
                         VALUES ($1, $2, $3, $3, 0, $4, $5)
                         ON CONFLICT (plugin) DO UPDATE SET tenant = excluded.tenant, since = excluded.since,
                            position = excluded.position, delivered = 0, routes = excluded.routes,
                            updated_ms = excluded.updated_ms, retired_ms = NULL",
                        &[&plugin, &tenant, &end, &routes_json, &now],
                    )
                    .await?;
                    end
                }
            };
            tx.commit().await?;
            Ok::<_, PgError>(position)
        })?)
    }

    fn cursor(&self, plugin: &str) -> Result<Option<i64>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let row = c
                .query_opt("SELECT position FROM cursors WHERE plugin = $1", &[&plugin])
                .await?;
            Ok::<_, PgError>(row.map(|r| r.get(0)))
        })?)
    }

    fn retire_cursor(&self, plugin: &str) -> Result<(), JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            c.execute(
                "UPDATE cursors SET retired_ms = $2 WHERE plugin = $1",
                &[&plugin, &now_ms()],
            )
            .await?;
            Ok::<_, PgError>(())
        })?)
    }

    fn pending(
        &self,
        plugin: &str,
        tenant: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, JournalError> {
        let seq = self.inner.reads.fetch_add(1, Ordering::Relaxed);
        let read = ReadPos {
            seq,
            generation: 0,
            row: 0,
        };
        let limit_sql = limit as i64;
        let (queued, logged) = self.block(async {
            let mut c = self.conn().await?;
            // One snapshot for both halves: an event moved from the log to
            // the queue in between would otherwise be missed or read twice.
            let tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let q = tx.prepare_cached(QUEUED_SQL).await?;
            let queued: Vec<PendingDelivery> = tx
                .query(&q, &[&plugin, &after, &tenant, &limit_sql])
                .await?
                .into_iter()
                .map(|r| PendingDelivery {
                    queued: true,
                    read,
                    event_id: r.get(0),
                    run_id: r.get(1),
                    attempts: r.get::<_, i32>(2) as u32,
                    next_at_ms: r.get(3),
                    first_at_ms: r.get(4),
                    body: r.get(5),
                    request_id: r.get(6),
                    trace_id: r.get(7),
                    span_id: r.get(8),
                    foreign_tenant: r.get(9),
                })
                .collect();
            let l = tx.prepare_cached(LOGGED_SQL).await?;
            let logged: Vec<PendingDelivery> = tx
                .query(&l, &[&plugin, &after, &tenant, &limit_sql])
                .await?
                .into_iter()
                .map(|r| {
                    let received: i64 = r.get(2);
                    PendingDelivery {
                        queued: false,
                        read,
                        event_id: r.get(0),
                        run_id: r.get(1),
                        attempts: 0,
                        next_at_ms: received,
                        first_at_ms: received,
                        body: r.get(3),
                        request_id: r.get(4),
                        trace_id: r.get(5),
                        span_id: r.get(6),
                        foreign_tenant: None,
                    }
                })
                .collect();
            tx.commit().await?;
            Ok::<_, PgError>((queued, logged))
        })?;
        Ok(crate::merge_reads(queued, logged, limit))
    }

    fn send_marks(&self, plugin: &str, batch: MarkBatch) -> Result<MarksReceipt, JournalError> {
        let (reply, receipt) = tokio::sync::oneshot::channel();
        self.inner
            .writer
            .send(super::write::Write::Marks {
                plugin: plugin.to_string(),
                batch,
                reply,
            })
            .map_err(|_| JournalError::Task("the journal writer has stopped".into()))?;
        Ok(receipt)
    }

    fn record(&self, plugin: &str, batch: &MarkBatch) -> Result<MarksWritten, JournalError> {
        Ok(self.block(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            let written = super::write::apply_mark_batch(&tx, plugin, batch, now_ms()).await?;
            tx.commit().await?;
            Ok::<_, PgError>(written)
        })?)
    }

    fn delivery_counts(&self, plugin: &str) -> Result<(u64, u64, u64), JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let mut out = (0u64, 0u64, 0u64);
            for r in c
                .query(
                    "SELECT state, count(*) FROM deliveries WHERE plugin = $1 GROUP BY state",
                    &[&plugin],
                )
                .await?
            {
                let n = r.get::<_, i64>(1) as u64;
                match r.get::<_, &str>(0) {
                    "pending" => out.0 = n,
                    "done" => out.1 = n,
                    _ => out.2 = n,
                }
            }
            if let Some(r) = c
                .query_opt(
                    "SELECT c.delivered,
                            (SELECT count(*) FROM events e WHERE e.tenant = c.tenant AND e.id > c.position
                               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.plugin AND d.event_id = e.id))
                     FROM cursors c WHERE c.plugin = $1",
                    &[&plugin],
                )
                .await?
            {
                out.1 += r.get::<_, i64>(0) as u64;
                out.0 += r.get::<_, i64>(1) as u64;
            }
            Ok::<_, PgError>(out)
        })?)
    }

    fn queue_depths(&self) -> Result<Vec<(String, u64, i64)>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let mut depths: BTreeMap<String, (u64, i64)> = BTreeMap::new();
            let mut add = |plugin: String, n: i64, oldest: Option<i64>| {
                let e = depths.entry(plugin).or_insert((0, i64::MAX));
                e.0 += n as u64;
                if let Some(o) = oldest {
                    e.1 = e.1.min(o);
                }
            };
            for r in c
                .query(
                    "SELECT plugin, count(*), min(first_at_ms) FROM deliveries WHERE state = 'pending' GROUP BY plugin",
                    &[],
                )
                .await?
            {
                add(r.get(0), r.get(1), r.get(2));
            }
            for r in c
                .query(
                    "SELECT c.plugin,
                            (SELECT count(*) FROM events e WHERE e.tenant = c.tenant AND e.id > c.position
                               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.plugin AND d.event_id = e.id)),
                            (SELECT e.received_ms FROM events e WHERE e.tenant = c.tenant AND e.id > c.position ORDER BY e.id LIMIT 1)
                     FROM cursors c WHERE c.retired_ms IS NULL",
                    &[],
                )
                .await?
            {
                add(r.get(0), r.get(1), r.get(2));
            }
            Ok::<_, PgError>(
                depths
                    .into_iter()
                    .filter(|(_, (n, _))| *n > 0)
                    .map(|(plugin, (n, oldest))| (plugin, n, oldest))
                    .collect(),
            )
        })?)
    }

    fn replay_run(&self, tenant: &str, run_id: &str, plugin: &str) -> Result<usize, JournalError> {
        let n = self.block(async {
            let c = self.conn().await?;
            let now = now_ms();
            let n = c
                .execute(
                    "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms)
                     SELECT $3, id, run_id, 'pending', 0, $4, $4, $4 FROM events WHERE tenant = $1 AND run_id = $2
                     ORDER BY id
                     ON CONFLICT (plugin, event_id) DO UPDATE SET state = 'pending', attempts = 0,
                        first_at_ms = greatest(excluded.first_at_ms, deliveries.first_at_ms + 1),
                        next_at_ms = excluded.next_at_ms,
                        updated_ms = excluded.updated_ms, last_error = NULL",
                    &[&tenant, &run_id, &plugin, &now],
                )
                .await?;
            Ok::<_, PgError>(n as usize)
        })?;
        if n > 0 {
            self.notice(CommitNotice::Requeued {
                plugin: Arc::from(plugin),
            });
        }
        Ok(n)
    }
}

impl DeadLetters for PgJournal {
    fn dead_letters(
        &self,
        tenant: &str,
        plugin: Option<&str>,
        limit: usize,
        before_event: Option<i64>,
    ) -> Result<Vec<DeadLetter>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT d.plugin, d.event_id, e.uuid, e.run_id, e.kind, d.attempts, d.last_error, d.updated_ms
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE e.tenant = $1 AND d.state = 'dead'
                       AND ($2::text IS NULL OR d.plugin = $2)
                       AND ($3::bigint IS NULL OR d.event_id < $3)
                     ORDER BY d.event_id DESC, d.plugin LIMIT $4",
                    &[&tenant, &plugin, &before_event, &(limit as i64)],
                )
                .await?;
            Ok::<_, PgError>(
                rows.into_iter()
                    .map(|r| DeadLetter {
                        plugin: r.get(0),
                        event_id: r.get(1),
                        uuid: r.get(2),
                        run_id: r.get(3),
                        kind: r.get(4),
                        attempts: r.get::<_, i32>(5) as u32,
                        reason: r.get::<_, Option<String>>(6).unwrap_or_default(),
                        dead_at_ms: r.get(7),
                    })
                    .collect(),
            )
        })?)
    }

    fn requeue_dead(
        &self,
        tenant: &str,
        plugin: &str,
        event_id: Option<i64>,
    ) -> Result<usize, JournalError> {
        let n = self.block(async {
            let c = self.conn().await?;
            let now = now_ms();
            let n = c
                .execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0,
                        first_at_ms = greatest($4, first_at_ms + 1), next_at_ms = $4, updated_ms = $4
                     WHERE plugin = $2 AND state = 'dead' AND ($3::bigint IS NULL OR event_id = $3)
                       AND event_id IN (SELECT id FROM events WHERE tenant = $1)",
                    &[&tenant, &plugin, &event_id, &now],
                )
                .await?;
            Ok::<_, PgError>(n as usize)
        })?;
        if n > 0 {
            self.notice(CommitNotice::Requeued {
                plugin: Arc::from(plugin),
            });
        }
        Ok(n)
    }

    fn dead_counts(&self) -> Result<Vec<(String, String, u64)>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT d.plugin, e.tenant, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.state = 'dead' GROUP BY d.plugin, e.tenant",
                    &[],
                )
                .await?;
            Ok::<_, PgError>(
                rows.into_iter()
                    .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
                    .collect(),
            )
        })?)
    }
}
