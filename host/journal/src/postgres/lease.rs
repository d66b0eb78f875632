//! Leases of plugin instances on PostgreSQL: which replica delivers for
//! which instance. Times are the database's clock, so replicas' clocks need
//! not agree; a holder stops on its own clock before its TTL ends (see the
//! dispatcher).

use super::{PgError, PgJournal};
use crate::{JournalError, Lease, LeaseInfo, Leases};

/// The database's clock in epoch ms.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl Leases for PgJournal {
    /// Takes the lease if it is free, expired, or `holder`'s already (a
    /// restarted replica under the same name). A new holder gets a new
    /// token, which fences the previous holder's writes.
    fn claim_lease(
        &self,
        plugin: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, JournalError> {
        let sql = format!(
            "INSERT INTO leases AS l (plugin, holder, token, expires_ms, claimed_ms)
             VALUES ($1, $2, 1, {NOW_MS} + $3, {NOW_MS})
             ON CONFLICT (plugin) DO UPDATE SET holder = excluded.holder,
                token = l.token + 1, expires_ms = excluded.expires_ms, claimed_ms = excluded.claimed_ms
             WHERE l.expires_ms < {NOW_MS} OR l.holder = excluded.holder
             RETURNING token, (xmax <> 0) AS taken_over"
        );
        // Another replica may have moved the stream's cursor or queued its
        // rows while it held the lease.
        self.inner.streams.forget_stream(plugin);
        let claimed = self.block(async {
            let c = self.conn().await?;
            let row = c.query_opt(&sql, &[&plugin, &holder, &ttl_ms]).await?;
            Ok::<_, PgError>(row.map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1))))
        })?;
        Ok(claimed.map(|(token, taken_over)| {
            let m = herald_telemetry::host();
            m.lease_events
                .with_label_values(&[if taken_over && token > 1 {
                    "takeover"
                } else {
                    "claim"
                }])
                .inc();
            Lease {
                holder: holder.to_string(),
                token,
                ttl_ms,
            }
        }))
    }

    fn renew_lease(&self, plugin: &str, lease: &Lease) -> Result<bool, JournalError> {
        let sql = format!(
            "UPDATE leases SET expires_ms = {NOW_MS} + $4
             WHERE plugin = $1 AND holder = $2 AND token = $3"
        );
        Ok(self.block(async {
            let c = self.conn().await?;
            let n = c
                .execute(&sql, &[&plugin, &lease.holder, &lease.token, &lease.ttl_ms])
                .await?;
            Ok::<_, PgError>(n == 1)
        })?)
    }

    fn release_lease(&self, plugin: &str, lease: &Lease) -> Result<(), JournalError> {
        // Expired at once (not deleted: the token keeps growing).
        Ok(self.block(async {
            let c = self.conn().await?;
            c.execute(
                "UPDATE leases SET expires_ms = 0 WHERE plugin = $1 AND holder = $2 AND token = $3",
                &[&plugin, &lease.holder, &lease.token],
            )
            .await?;
            Ok::<_, PgError>(())
        })?)
    }

    fn heartbeat(&self, holder: &str, ttl_ms: i64) -> Result<usize, JournalError> {
        let upsert = format!(
            "INSERT INTO replicas (holder, seen_ms, ttl_ms) VALUES ($1, {NOW_MS}, $2)
             ON CONFLICT (holder) DO UPDATE SET seen_ms = excluded.seen_ms, ttl_ms = excluded.ttl_ms"
        );
        let live = format!("SELECT count(*) FROM replicas WHERE seen_ms + ttl_ms >= {NOW_MS}");
        let forget = format!("DELETE FROM replicas WHERE seen_ms + 10 * ttl_ms < {NOW_MS}");
        Ok(self.block(async {
            let c = self.conn().await?;
            c.execute(&upsert, &[&holder, &ttl_ms]).await?;
            c.execute(&forget, &[]).await?;
            let n: i64 = c.query_one(&live, &[]).await?.get(0);
            Ok::<_, PgError>(n.max(1) as usize)
        })?)
    }

    fn leases(&self) -> Result<Vec<LeaseInfo>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT plugin, holder, token, expires_ms FROM leases ORDER BY plugin",
                    &[],
                )
                .await?;
            Ok::<_, PgError>(
                rows.into_iter()
                    .map(|r| LeaseInfo {
                        plugin: r.get(0),
                        holder: r.get(1),
                        token: r.get(2),
                        expires_ms: r.get(3),
                    })
                    .collect(),
            )
        })?)
    }
}
