//! The PostgreSQL schema as numbered migrations. Each runs once, in its own
//! transaction, recorded in `herald_migrations`; all of them run under a
//! session advisory lock, so replicas that start together (or `herald
//! migrate` beside a running host) apply each migration exactly once.

use super::PgError;

/// The session advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x4845_5241_4c44; // "HERALD"

/// The migrations, in order: (version, what it does, SQL). Never edit one
/// that has shipped: add the next.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "events, runs, cursors, deliveries, plugin state",
        r#"
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    tenant      TEXT NOT NULL,
    uuid        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    counter     BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    -- The event's wire JSON exactly as it was journaled (text, not jsonb:
    -- jsonb would reorder keys and drop duplicates).
    body        TEXT NOT NULL,
    request_id  TEXT,
    trace_id    TEXT,
    span_id     TEXT,
    UNIQUE (tenant, uuid)
);
CREATE INDEX events_by_run ON events (tenant, run_id, id);
-- What a worker reads: its tenant's events past its cursor.
CREATE INDEX events_by_tenant ON events (tenant, id);
CREATE INDEX events_by_received ON events (received_ms);
CREATE TABLE runs (
    tenant      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    playbook    TEXT,
    controller  TEXT,
    first_ms    BIGINT NOT NULL,
    last_ms     BIGINT NOT NULL,
    events      BIGINT NOT NULL,
    finished    BOOLEAN NOT NULL DEFAULT false,
    received_ms BIGINT,
    -- The worst outcome the run's stats events report (0 ok, 1 unreachable, 2 failed).
    outcome     SMALLINT,
    -- The first value of each label key.
    labels      JSONB,
    PRIMARY KEY (tenant, run_id)
);
CREATE INDEX runs_by_start ON runs (tenant, first_ms, run_id);
-- Each plugin instance's cursor over its tenant's event log (see the SQLite
-- schema for the meaning of each column).
CREATE TABLE cursors (
    plugin      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    since       BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    delivered   BIGINT NOT NULL DEFAULT 0,
    routes      TEXT NOT NULL DEFAULT '[]',
    updated_ms  BIGINT NOT NULL,
    retired_ms  BIGINT
);
-- The exceptions only: retries, events held behind them, replays, requeued
-- and dead letters.
CREATE TABLE deliveries (
    plugin      TEXT NOT NULL,
    event_id    BIGINT NOT NULL REFERENCES events (id),
    run_id      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    first_at_ms BIGINT NOT NULL,
    next_at_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    last_error  TEXT,
    PRIMARY KEY (plugin, event_id)
);
CREATE INDEX deliveries_pending ON deliveries (plugin, event_id) WHERE state = 'pending';
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE TABLE plugin_state (
    tenant TEXT NOT NULL,
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, plugin, key)
);
CREATE TABLE health (k TEXT PRIMARY KEY, v BIGINT NOT NULL);
"#,
    ),
    (
        2,
        "leases of plugin instances, replicas",
        r#"
-- One row per plugin instance: the replica delivering for it until
-- expires_ms (the database's clock), and the token that fences its writes
-- (it grows with every new holder).
CREATE TABLE leases (
    plugin     TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    claimed_ms BIGINT NOT NULL
);
-- The replicas alive (seen_ms within their TTL): each holds its share.
CREATE TABLE replicas (
    holder  TEXT PRIMARY KEY,
    seen_ms BIGINT NOT NULL,
    ttl_ms  BIGINT NOT NULL
);
"#,
    ),
    (
        3,
        "the record of delivery attempts",
        r#"
-- What each delivery attempt sent and what the sink answered (attempts that
-- made requests or did not succeed), pruned with the events; `requests` is
-- a JSON array of bounded records, at most 20 attempts per delivery.
CREATE TABLE delivery_attempts (
    id          BIGSERIAL PRIMARY KEY,
    plugin      TEXT NOT NULL,
    event_id    BIGINT NOT NULL,
    attempt     INTEGER NOT NULL,
    at_ms       BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    message     TEXT,
    requests    TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX attempts_by_delivery ON delivery_attempts (event_id, plugin, id);
"#,
    ),
    (
        4,
        "shards of plugin instances",
        r#"
-- An instance with N shards has N cursors, one per delivery stream (`plugin`
-- is the stream: `slack`, `slack#1`, ...; its lease has the same name);
-- `instance` names the instance, and the stream takes the events of the runs
-- whose herald_shard(run_id, shards) is its `shard`. The instance's queue
-- rows (`deliveries.plugin`) are the instance's, shared by its shards.
ALTER TABLE cursors ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE cursors ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cursors ADD COLUMN shards INTEGER NOT NULL DEFAULT 1;
UPDATE cursors SET instance = plugin;
CREATE INDEX cursors_by_instance ON cursors (instance);
-- The same as herald_event::shard::shard_of: the first four bytes of the
-- run id's MD5, big-endian, modulo the shard count.
CREATE FUNCTION herald_shard(run_id TEXT, shards INTEGER) RETURNS INTEGER
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (('x' || substr(md5(run_id), 1, 8))::bit(32)::bigint % greatest(shards, 1))::integer $$;
"#,
    ),
    (
        5,
        "event ids from transaction ids, no lock for ingest",
        r#"
-- An event's id is its transaction's id shifted left 20 bits plus its place
-- in the transaction, given by the writer (see the journal's "Commit
-- order"): ingest transactions run side by side without a lock, and readers
-- read below herald_log_bound(), under which no transaction can still commit.
-- The ids given so far came from the sequence, at most one per event written,
-- and so lie below every new one.
DO $$ BEGIN
    IF (SELECT coalesce(max(id), 0) FROM events) >= (pg_current_xact_id()::text::bigint << 20) THEN
        RAISE EXCEPTION 'events.id is past this transaction''s id << 20: cannot switch to transaction ids';
    END IF;
END $$;
ALTER TABLE events ALTER COLUMN id DROP DEFAULT;
-- The lowest id a transaction still running may commit: the statement's
-- snapshot's oldest running transaction, shifted. Everything below it is
-- final (STABLE: evaluated in the calling statement's snapshot).
CREATE FUNCTION herald_log_bound() RETURNS BIGINT
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 $$;
"#,
    ),
];

/// The newest schema version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The version the database was at before.
    pub from: i32,
    /// The versions applied now, in order.
    pub applied: Vec<i32>,
}

/// Applies the migrations the database has not had yet, under the migration
/// lock. A database newer than this build is refused (a rolling upgrade runs
/// the new build's migrations first; an old replica must not write to it).
pub async fn migrate(c: &mut tokio_postgres::Client) -> Result<Migrated, PgError> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(c).await;
    // Released whatever happened: the session may go back to a pool.
    let unlocked = c
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let migrated = result?;
    unlocked?;
    Ok(migrated)
}

async fn apply(c: &mut tokio_postgres::Client) -> Result<Migrated, PgError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS herald_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_ms BIGINT NOT NULL
        )",
    )
    .await?;
    let from: i32 = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM herald_migrations",
            &[],
        )
        .await?
        .get(0);
    if from > latest() {
        return Err(PgError::Other(format!(
            "the database's schema is version {from}, newer than this herald knows ({}); upgrade herald",
            latest()
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
        let tx = c.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO herald_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
            &[version, name, &crate::now_ms()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "journal: applied PostgreSQL migration");
        applied.push(*version);
    }
    Ok(Migrated { from, applied })
}
