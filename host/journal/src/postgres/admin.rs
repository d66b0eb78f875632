//! Plugin state, retention, size and the readiness probe on PostgreSQL.

use super::write::write_state;
use super::{PgError, PgJournal};
use crate::{now_ms, stored_text, JournalError, Maintenance, PluginState, StateWrite, StateWrites};
use std::collections::BTreeMap;

impl PgJournal {
    /// One state value stored (`Some`) or removed (`None`) now, the way the
    /// outcomes writer stores an instance's writes.
    fn put_state(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), JournalError> {
        let state = StateWrites {
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
            writes: vec![StateWrite {
                key: key.to_string(),
                value: value.map(str::to_string),
            }],
        };
        Ok(self.block(async {
            let c = self.conn().await?;
            write_state(&c, &state).await
        })?)
    }
}

/// Keys and values go through [`stored_text`] as the writer's do (the journal's
/// text holds no NUL), so a key reads back what was written under it.
impl PluginState for PgJournal {
    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let row = c
                .query_opt(
                    "SELECT value FROM plugin_state WHERE tenant = $1 AND plugin = $2 AND key = $3",
                    &[&tenant, &plugin, &stored_text(key).as_ref()],
                )
                .await?;
            Ok::<_, PgError>(row.map(|r| r.get(0)))
        })?)
    }

    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
    ) -> Result<(), JournalError> {
        self.put_state(tenant, plugin, key, Some(value))
    }

    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), JournalError> {
        self.put_state(tenant, plugin, key, None)
    }

    /// A PostgreSQL journal never kept state without a tenant (that was an
    /// early SQLite layout): rows of tenant `''` are only there if someone
    /// wrote them, and are given to `tenant` the same way.
    fn claim_state(&self, tenant: &str, plugin: &str) -> Result<usize, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let n = c
                .execute(
                    "UPDATE plugin_state s SET tenant = $1 WHERE s.tenant = '' AND s.plugin = $2
                       AND NOT EXISTS (SELECT 1 FROM plugin_state o
                                       WHERE o.tenant = $1 AND o.plugin = $2 AND o.key = s.key)",
                    &[&tenant, &plugin],
                )
                .await?;
            Ok::<_, PgError>(n as usize)
        })?)
    }
}

impl Maintenance for PgJournal {
    /// Deletes up to `limit` events received before `cutoff_ms` that no
    /// instance still has to deliver or holds as a dead letter, with their
    /// queue rows, and the runs left without events. Rows are chosen with
    /// `SKIP LOCKED` and deleted in one short transaction, so retention
    /// never waits for (or blocks) ingest.
    fn prune(&self, cutoff_ms: i64, limit: usize) -> Result<BTreeMap<String, u64>, JournalError> {
        Ok(self.block(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            let victims = tx
                .query(
                    "SELECT id, tenant FROM events e WHERE received_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state <> 'done')
                       AND NOT EXISTS (SELECT 1 FROM cursors c WHERE c.tenant = e.tenant AND c.retired_ms IS NULL
                                         AND c.position < e.id)
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&cutoff_ms, &(limit as i64)],
                )
                .await?;
            let mut removed = BTreeMap::new();
            let ids: Vec<i64> = victims.iter().map(|r| r.get(0)).collect();
            for r in &victims {
                *removed.entry(r.get::<_, String>(1)).or_insert(0u64) += 1;
            }
            if !ids.is_empty() {
                tx.execute("DELETE FROM deliveries WHERE event_id = ANY($1)", &[&ids])
                    .await?;
                tx.execute(
                    "DELETE FROM delivery_attempts WHERE event_id = ANY($1)",
                    &[&ids],
                )
                .await?;
                tx.execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
                    .await?;
                tx.execute(
                    "DELETE FROM runs WHERE last_ms < $1 AND NOT EXISTS
                       (SELECT 1 FROM events e WHERE e.tenant = runs.tenant AND e.run_id = runs.run_id)",
                    &[&cutoff_ms],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, PgError>(removed)
        })?)
    }

    /// `VACUUM`s the tables retention deletes from, so inserts reuse the
    /// space at once instead of the tables growing until autovacuum comes
    /// by (a minute's naptime, and then only past a fifth of the table).
    /// Plain `VACUUM` takes no lock writers wait for; `SKIP_LOCKED` lets a
    /// replica pass over a table another replica is vacuuming. It runs
    /// outside the pool's statement timeout, which is sized for requests.
    fn reclaim(&self) -> Result<(), JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            c.batch_execute("SET statement_timeout = 0").await?;
            let vacuumed = c
                .batch_execute("VACUUM (SKIP_LOCKED) events, deliveries, delivery_attempts, runs")
                .await;
            let reset = c.batch_execute("RESET statement_timeout").await;
            vacuumed?;
            reset?;
            Ok::<_, PgError>(())
        })?)
    }

    /// The database's size on disk (all of its tables and indexes).
    fn size_bytes(&self) -> u64 {
        self.block(async {
            let c = self.conn().await?;
            let n: i64 = c
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await?
                .get(0);
            Ok::<_, PgError>(n.max(0) as u64)
        })
        .unwrap_or(0)
    }

    /// Reaches the database and writes a row; after a failed commit of the
    /// writer, ready again only once a write succeeds.
    fn held_back(&self) -> Option<(usize, i64)> {
        self.tenants_held_back()
    }

    fn probe_writable(&self) -> Result<(), JournalError> {
        self.block(async {
            let c = self.conn().await?;
            c.execute(
                "INSERT INTO health (k, v) VALUES ('probe', $1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                &[&now_ms()],
            )
            .await?;
            Ok::<_, PgError>(())
        })
        .map_err(|e| JournalError::Task(format!("PostgreSQL at {}: {e}", self.label())))?;
        // The probe's write went through: whatever failed the last commit
        // (a restart, a lost connection) is over.
        *self
            .inner
            .write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}
