//! How far behind the log each live cursor is, in SQL both backends run.
//!
//! The gauges ask every 5 seconds. Counting each cursor's events on its own
//! reads the backlog once per cursor: with 60 instances and 50,000 events
//! behind, 3M index entries a time (measured: 1.2 s of PostgreSQL's CPU per
//! call, and on SQLite the delivery connection held as long). Here each
//! event past the slowest cursor is counted once, in the segment between two
//! neighbouring positions of cursors that read the same events (a tenant and
//! a shard), and a cursor's count is the sum of the segments after it; the
//! queue rows ahead of a cursor (events it reads from the queue, not the
//! log) are subtracted, an index range of the exceptions.

/// Rows: the cursor's instance, its events not yet read (log events past it
/// that have no queue row of its instance), the receive time of the first
/// event past it (NULL: none).
pub(crate) const CURSOR_DEPTHS_SQL: &str = "
    WITH live AS (
        SELECT instance, tenant, position, shards, shard FROM cursors WHERE retired_ms IS NULL),
    marks AS (
        SELECT tenant, shards, shard, position,
               lead(position) OVER (PARTITION BY tenant, shards, shard ORDER BY position) AS next
        FROM (SELECT DISTINCT tenant, shards, shard, position FROM live) AS p),
    segments AS (
        SELECT tenant, shards, shard, position,
               (SELECT count(*) FROM events e
                WHERE e.tenant = m.tenant AND e.id > m.position
                  AND e.id <= coalesce(m.next, 9223372036854775807)
                  AND (m.shards = 1 OR herald_shard(e.run_id, m.shards) = m.shard)) AS n
        FROM marks AS m),
    behind AS (
        SELECT tenant, shards, shard, position,
               sum(n) OVER (PARTITION BY tenant, shards, shard ORDER BY position DESC) AS n
        FROM segments)
    SELECT l.instance,
           CAST(b.n - (SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
                       WHERE d.plugin = l.instance AND d.event_id > l.position AND e.tenant = l.tenant
                         AND (l.shards = 1 OR herald_shard(e.run_id, l.shards) = l.shard)) AS BIGINT),
           (SELECT e.received_ms FROM events e WHERE e.tenant = l.tenant AND e.id > l.position
            ORDER BY e.id LIMIT 1)
    FROM live AS l
    JOIN behind AS b ON b.tenant = l.tenant AND b.shards = l.shards AND b.shard = l.shard
                    AND b.position = l.position";
