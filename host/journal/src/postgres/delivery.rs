//! Cursors, pending reads, replays and dead letters on PostgreSQL: the same
//! model as the SQLite backend (see `crate::DeliveryQueue`).

use super::tail::{Flight, Found, LogRow, Segment};
use super::{PgError, PgJournal};
use crate::{
    now_ms, CommitNotice, DeadLetter, DeadLetters, DeliveryQueue, JournalError, MarkBatch,
    MarksReceipt, MarksWritten, PendingDelivery, ReadPos,
};
use deadpool_postgres::Transaction;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The log half: the tenant's events past `$2` and below the log's bound, in
/// id order (shared by the streams reading from the same place, see
/// `super::tail`); every row also carries the bound and whether committed
/// events lie above it (held back by a transaction still running), one row
/// with NULL event columns when there are none. One statement, one snapshot.
const LOG_SQL: &str = "
    SELECT b.bound, b.held, e.id, e.run_id, e.received_ms, e.body, e.request_id, e.trace_id, e.span_id
    FROM (SELECT x.bound, EXISTS (SELECT 1 FROM events WHERE tenant = $1 AND id >= x.bound) AS held
          FROM (SELECT herald_log_bound() AS bound) AS x) AS b
    LEFT JOIN LATERAL (
        SELECT id, run_id, received_ms, body, request_id, trace_id, span_id
        FROM events WHERE tenant = $1 AND id > $2 AND id < b.bound ORDER BY id LIMIT $3) AS e ON true
    ORDER BY e.id";

/// Longest a new cursor waits for the transactions that could still commit
/// below the log's end (see [`log_end`]).
const END_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The log's end for a new cursor: the largest event id, once every
/// transaction that could still commit an id below it has ended (the bound
/// has passed it), so the cursor starts past every event committed before
/// it and before every event committed after. Must run before `tx` takes a
/// transaction id of its own (its first write or row lock), or it would
/// wait for itself; gives up waiting after [`END_WAIT`] (a transaction left
/// open elsewhere in the cluster), then the events still in flight at the
/// cursor's start are not delivered to it.
async fn log_end(tx: &Transaction<'_>) -> Result<i64, PgError> {
    let end: i64 = tx
        .query_one("SELECT coalesce(max(id), 0) FROM events", &[])
        .await?
        .get(0);
    let deadline = std::time::Instant::now() + END_WAIT;
    loop {
        let bound: i64 = tx.query_one("SELECT herald_log_bound()", &[]).await?.get(0);
        if bound > end {
            return Ok(end);
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                "journal: a transaction open for over {}s holds the event log back; a new cursor starts without waiting for it",
                END_WAIT.as_secs()
            );
            return Ok(end);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// The queue half, the cursor and the ids of the instance's queue rows past
/// the cursor (at most `$6`, in id order: the log half passes over them), in one statement and
/// so one snapshot; one row with NULL queue columns when nothing is queued,
/// NULL cursor columns when the stream has no cursor.
const READ_SQL: &str = "
    SELECT c.position, c.ahead, q.event_id, q.run_id, q.attempts, q.next_at_ms, q.first_at_ms, q.body,
           q.request_id, q.trace_id, q.span_id, q.foreign_tenant
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT position, ARRAY(
            SELECT event_id FROM deliveries WHERE plugin = $1 AND event_id > greatest($2, position)
            ORDER BY event_id LIMIT $6) AS ahead
        FROM cursors WHERE plugin = $5 AND tenant = $3) AS c ON true
    LEFT JOIN LATERAL (
        SELECT d.event_id, d.run_id, d.attempts, d.next_at_ms, d.first_at_ms, e.body, e.request_id,
               e.trace_id, e.span_id, CASE WHEN e.tenant = $3 THEN NULL ELSE e.tenant END AS foreign_tenant
        FROM deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.plugin = $1 AND d.state = 'pending' AND d.event_id > $2
        ORDER BY d.event_id LIMIT $4) AS q ON true
    ORDER BY q.event_id";

/// Most queue rows past the cursor that [`READ_SQL`] lists. The log half
/// reads at most 512 of the tenant's events, so a list this long covers it
/// unless it also holds rows of another tenant's events (an instance moved by
/// a reload); a full list cuts the read at its last id.
const AHEAD_MAX: i64 = 1024;

/// How many events a shared log read fetches: the largest batch a worker
/// asks for, so that every stream reading from the same place can use it.
const LOG_READ: usize = 512;

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
    fn open_streams(
        &self,
        instance: &str,
        tenant: &str,
        routes: &[herald_event::routes::RouteConfig],
        shards: u32,
    ) -> Result<Vec<i64>, JournalError> {
        use crate::shards::StreamRow;
        let routes_json = serde_json::to_string(routes).map_err(PgError::from)?;
        let (positions, reshards) = self.block(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            // First: the rows locked below give the transaction an id.
            let end = log_end(&tx).await?;
            let now = now_ms();
            let rows: Vec<StreamRow> = tx
                .query(
                    "SELECT plugin, tenant, since, position, delivered, routes, shards FROM cursors
                     WHERE instance = $1 OR plugin = $1 ORDER BY plugin FOR UPDATE",
                    &[&instance],
                )
                .await?
                .into_iter()
                .map(|r| StreamRow {
                    stream: r.get(0),
                    tenant: r.get(1),
                    since: r.get(2),
                    position: r.get(3),
                    delivered: r.get(4),
                    routes: r.get(5),
                    shards: r.get::<_, i32>(6).max(1) as u32,
                })
                .filter(|r| crate::shards::belongs(&r.stream, instance))
                .collect();
            let plan = crate::shards::plan(instance, tenant, shards, rows);
            for r in &plan.moved {
                // Queued under the instance's name: the shards share its queue.
                queue_unread(&tx, instance, &r.tenant, r.position, &r.routes, now).await?;
            }
            for stream in &plan.dropped {
                tx.execute("DELETE FROM cursors WHERE plugin = $1", &[stream])
                    .await?;
            }
            if plan.reshards() {
                // A new holder for every stream of the instance: a replica
                // still delivering with the old shard count is fenced, reads
                // its cursor again and stops (see the dispatcher's worker).
                tx.execute(
                    "UPDATE leases SET token = token + 1, expires_ms = 0 WHERE plugin = ANY($1)",
                    &[&plan.streams.iter().chain(&plan.dropped).collect::<Vec<_>>()],
                )
                .await?;
            }
            let count = plan.streams.len() as i32;
            let upsert = tx
                .prepare(
                    "INSERT INTO cursors (plugin, tenant, since, position, delivered, routes, updated_ms, instance, shard, shards)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (plugin) DO UPDATE SET tenant = excluded.tenant, since = excluded.since,
                        position = excluded.position, delivered = excluded.delivered, routes = excluded.routes,
                        updated_ms = excluded.updated_ms, retired_ms = NULL, instance = excluded.instance,
                        shard = excluded.shard, shards = excluded.shards",
                )
                .await?;
            let mut positions = Vec::with_capacity(plan.streams.len());
            for (k, stream) in plan.streams.iter().enumerate() {
                let shard = k as i32;
                let position = match plan.start.origin(k, end) {
                    None => {
                        tx.query_one(
                            "UPDATE cursors SET routes = $2, retired_ms = NULL, updated_ms = $3
                             WHERE plugin = $1 RETURNING position",
                            &[stream, &routes_json, &now],
                        )
                        .await?
                        .get(0)
                    }
                    Some(o) => {
                        tx.execute(&upsert, &[stream, &tenant, &o.since, &o.position, &o.delivered,
                            &routes_json, &now, &instance, &shard, &count]).await?;
                        o.position
                    }
                };
                positions.push(position);
            }
            tx.commit().await?;
            Ok::<_, PgError>((positions, plan.reshards()))
        })?;
        // Cursors placed again, rows queued for moved streams.
        self.inner.streams.forget_instance(instance);
        if reshards {
            tracing::info!(plugin = %instance, tenant = %tenant, shards,
                "the instance's shard count changed: its streams start again from the slowest one's position (what the others had delivered past it is delivered again)");
        }
        Ok(positions)
    }

    fn cursor_at(&self, stream: &str) -> Result<Option<crate::CursorAt>, JournalError> {
        // A worker reads its cursor again when it may have moved: so may
        // its queue have changed.
        self.inner.streams.forget_stream(stream);
        Ok(self.block(async {
            let c = self.conn().await?;
            let row = c
                .query_opt(
                    "SELECT position, shards FROM cursors WHERE plugin = $1",
                    &[&stream],
                )
                .await?;
            Ok::<_, PgError>(row.map(|r| crate::CursorAt {
                position: r.get(0),
                shards: r.get::<_, i32>(1).max(1) as u32,
            }))
        })?)
    }

    fn retire_cursor(&self, plugin: &str) -> Result<(), JournalError> {
        self.inner.streams.forget_instance(plugin);
        Ok(self.block(async {
            let c = self.conn().await?;
            c.execute(
                "UPDATE cursors SET retired_ms = $2 WHERE instance = $1 OR plugin = $1",
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
        let (queued, logged) = self.block(self.read_halves(plugin, tenant, after, limit, read))?;
        Ok(crate::merge_reads(queued, logged, limit))
    }

    fn send_marks(&self, plugin: &str, batch: MarkBatch) -> Result<MarksReceipt, JournalError> {
        let (reply, receipt) = tokio::sync::oneshot::channel();
        self.inner
            .outcomes
            .send(super::write::Write::Marks {
                plugin: plugin.to_string(),
                batch,
                reply,
            })
            .map_err(|_| JournalError::Task("the journal writer has stopped".into()))?;
        Ok(receipt)
    }

    fn record(&self, plugin: &str, batch: &MarkBatch) -> Result<MarksWritten, JournalError> {
        let written = self.block(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            let written = super::write::apply_mark_batches(&tx, &[(plugin, batch)], now_ms())
                .await?
                .pop()
                // One answer per batch; without one the worker reads its
                // cursor again.
                .unwrap_or(MarksWritten {
                    changed: 0,
                    advanced: false,
                    fenced: false,
                });
            tx.commit().await?;
            Ok::<_, PgError>(written)
        });
        self.inner
            .streams
            .committed(plugin, batch, written.as_ref().ok());
        Ok(written?)
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
                    "SELECT sum(c.delivered)::bigint,
                            sum((SELECT count(*) FROM events e WHERE e.tenant = c.tenant AND e.id > c.position
                               AND (c.shards = 1 OR herald_shard(e.run_id, c.shards) = c.shard)
                               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.instance AND d.event_id = e.id)))::bigint
                     FROM cursors c WHERE c.instance = $1 HAVING count(*) > 0",
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
                .query(crate::depths::CURSOR_DEPTHS_SQL, &[])
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

/// Both halves of a read: the queue's rows and the log's.
type Halves = (Vec<PendingDelivery>, Vec<PendingDelivery>);

impl PgJournal {
    /// A read in one round trip for the queue half (and one more when no
    /// other stream has read the log from here): what every worker of every
    /// instance does after each commit, so its statements are what the
    /// database spends most on with many instances. A stream whose queue is
    /// known to be empty skips the queue half (see `super::streams`).
    ///
    /// No transaction is needed: the queue half, the cursor and the queue
    /// rows the log half must skip come from one statement, and the log
    /// half's events do not change. An event moved from the log to the
    /// queue after that statement is read once, from the log.
    async fn read_halves(
        &self,
        plugin: &str,
        tenant: &str,
        after: i64,
        limit: usize,
        read: ReadPos,
    ) -> Result<Halves, PgError> {
        let c = self.conn().await?;
        let streams = &self.inner.streams;
        if let Some(position) = streams.position(plugin, after) {
            // Its queue is empty and this replica knows its cursor: the log
            // half alone.
            let (rows, _) = self
                .log_half(&c, tenant, after.max(position), limit, read, &[])
                .await?;
            return Ok((Vec::new(), rows));
        }
        let generation = streams.generation();
        // The shards of an instance share its queue.
        let instance = herald_event::shard::instance_of(plugin);
        let stmt = c.prepare_cached(READ_SQL).await?;
        let rows = c
            .query(
                &stmt,
                &[
                    &instance,
                    &after,
                    &tenant,
                    &(limit as i64),
                    &plugin,
                    &AHEAD_MAX,
                ],
            )
            .await?;
        let mut position: Option<i64> = None;
        let mut ahead: Vec<i64> = Vec::new();
        let mut queued = Vec::with_capacity(rows.len());
        for r in &rows {
            if position.is_none() {
                position = r.get(0);
                ahead = r.get::<_, Option<Vec<i64>>>(1).unwrap_or_default();
            }
            let Some(event_id) = r.get::<_, Option<i64>>(2) else {
                continue;
            };
            queued.push(PendingDelivery {
                queued: true,
                read,
                event_id,
                run_id: r.get(3),
                attempts: r.get::<_, i32>(4) as u32,
                next_at_ms: r.get(5),
                first_at_ms: r.get(6),
                body: r.get(7),
                request_id: r.get(8),
                trace_id: r.get(9),
                span_id: r.get(10),
                foreign_tenant: r.get(11),
                passed_over: false,
            });
        }
        let Some(position) = position else {
            return Ok((queued, Vec::new()));
        };
        if after == 0 {
            // Only a read from the cursor sees the whole queue.
            streams.read(
                plugin,
                generation,
                position,
                queued.is_empty() && ahead.is_empty(),
            );
        }
        let (mut rows, mut end) = self
            .log_half(&c, tenant, after.max(position), limit, read, &ahead)
            .await?;
        // A full list is complete only up to its last id: so is the read.
        if let Some(&listed) = ahead.last().filter(|_| ahead.len() as i64 >= AHEAD_MAX) {
            queued.retain(|d| d.event_id <= listed);
            let before = rows.len();
            rows.retain(|r| r.event_id <= listed);
            if rows.len() != before {
                end = None;
            }
        }
        Ok(finish_halves(queued, rows, end))
    }

    /// The log half of a read: rows other streams read from `from` on,
    /// then its own read through `client` (shared in turn) once they run
    /// out; and, when its own read found the end of the log, the id through
    /// which the log is then complete (its bound's predecessor): only then
    /// may the queue half go past the last row, and not past that id.
    ///
    /// Events with a queue row (`queued_ahead`, in id order) are returned
    /// as places only, without their body: a read whose log rows all have
    /// queue rows (a long replayed run not reached yet) must still move the
    /// reader on, or it would read them again and again.
    async fn log_half<C: deadpool_postgres::GenericClient>(
        &self,
        client: &C,
        tenant: &str,
        from: i64,
        limit: usize,
        read: ReadPos,
        queued_ahead: &[i64],
    ) -> Result<(Vec<PendingDelivery>, Option<i64>), PgError> {
        let mut rows: Vec<PendingDelivery> = Vec::new();
        let mut at = from;
        let mut end = None;
        while rows.len() < limit {
            let (segment, bound) = match self.inner.tail.find(tenant, at).await {
                Found::Shared(Some(s)) => (s, None),
                Found::Shared(None) => {
                    let (s, bound) = self.read_log(client, tenant, at, None).await?;
                    (s, Some(bound))
                }
                Found::Lead(flight) => {
                    let (s, bound) = self.read_log(client, tenant, at, Some(flight)).await?;
                    (s, Some(bound))
                }
            };
            let found = segment.after(at).unwrap_or(&[]);
            let take = found.len().min(limit - rows.len());
            rows.extend(found[..take].iter().map(|r| {
                let passed_over = queued_ahead.binary_search(&r.id).is_ok();
                PendingDelivery {
                    queued: false,
                    read,
                    event_id: r.id,
                    run_id: r.run_id.clone(),
                    attempts: 0,
                    next_at_ms: r.received_ms,
                    first_at_ms: r.received_ms,
                    body: if passed_over {
                        String::new()
                    } else {
                        r.body.clone()
                    },
                    request_id: r.request_id.clone(),
                    trace_id: r.trace_id.clone(),
                    span_id: r.span_id.clone(),
                    foreign_tenant: None,
                    passed_over,
                }
            }));
            // Its own read reached the bound, and all of it was taken.
            if let Some(bound) = bound.filter(|_| found.len() < LOG_READ && take == found.len()) {
                end = Some(bound - 1);
                break;
            }
            match found[..take].last() {
                Some(r) => at = r.id,
                None => break,
            }
        }
        Ok((rows, end))
    }

    /// Reads the tenant's events after `from` and below the log's bound in
    /// one snapshot; as the lead of a shared read, hands them to the streams
    /// waiting for them. Returns them and the bound. Committed events above
    /// the bound (a transaction with a smaller id was still running) wake
    /// the tenant's workers again shortly: that transaction's end may send
    /// no notice of its own.
    async fn read_log<C: deadpool_postgres::GenericClient>(
        &self,
        tx: &C,
        tenant: &str,
        from: i64,
        flight: Option<Flight>,
    ) -> Result<(Arc<Segment>, i64), PgError> {
        let read = async {
            let stmt = tx.prepare_cached(LOG_SQL).await?;
            let rows = tx
                .query(&stmt, &[&tenant, &from, &(LOG_READ as i64)])
                .await?;
            let (bound, held) = match rows.first() {
                Some(r) => (r.get::<_, i64>(0), r.get::<_, bool>(1)),
                None => return Err(PgError::Other("the log read returned no row".into())),
            };
            let rows = rows
                .iter()
                .filter_map(|r| {
                    Some(LogRow {
                        id: r.get::<_, Option<i64>>(2)?,
                        run_id: r.get(3),
                        received_ms: r.get(4),
                        body: r.get(5),
                        request_id: r.get(6),
                        trace_id: r.get(7),
                        span_id: r.get(8),
                    })
                })
                .collect::<Vec<_>>();
            Ok::<_, PgError>((rows, bound, held))
        };
        let tail = &self.inner.tail;
        match (read.await, flight) {
            (Ok((rows, bound, held)), f) => {
                self.note_held_back(tenant, held);
                let segment = match f {
                    Some(f) => tail.fill(tenant, from, &f, rows),
                    None => Arc::new(Segment::alone(from, rows)),
                };
                Ok((segment, bound))
            }
            (Err(e), Some(f)) => {
                tail.abandon(tenant, from, &f);
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }
}

/// The halves of a read, made consistent: unless the log half reached the
/// log's end, queue rows past its last row wait for the next read (the
/// worker's next read starts past what this one returned, so it would skip
/// log events in between).
fn finish_halves(
    mut queued: Vec<PendingDelivery>,
    logged: Vec<PendingDelivery>,
    end: Option<i64>,
) -> Halves {
    // At the log's end, not past its bound either: a transaction still
    // running may yet commit events below the queue rows above it.
    if let Some(last) = end.or(logged.last().map(|r| r.event_id)) {
        queued.retain(|d| d.event_id <= last);
    }
    (queued, logged)
}
