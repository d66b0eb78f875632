//! The durable journal: events, runs, deliveries and plugin state in SQLite.
//!
//! Two connections: the ingest connection commits with `synchronous=FULL`, so
//! an acknowledged batch survives a power loss, not just a crash; the
//! delivery connection uses `synchronous=NORMAL`, which in WAL mode survives a
//! process crash and at worst forgets the last "delivered" marks on power loss,
//! which only re-delivers (delivery is at least once anyway).

use crate::event::WireEvent;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Journal failures.
#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot open the journal at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the journal directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal task failed: {0}")]
    Task(String),
    #[error("event body cannot be stored: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What a committed batch added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub accepted: usize,
    pub duplicates: usize,
    /// Per event of the batch: stored (`true`) or a duplicate.
    pub inserted: Vec<bool>,
}

/// A delivery waiting for a plugin instance.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// Correlation ids of the ingest request that brought the event.
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// Span id of the ingest span that committed the event (OTLP parent of each delivery span).
    pub span_id: Option<String>,
    pub event_id: i64,
    pub run_id: String,
    pub attempts: u32,
    pub next_at_ms: i64,
    pub first_at_ms: i64,
    pub body: String,
}

/// A delivery that was given up on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub plugin: String,
    pub event_id: i64,
    pub uuid: String,
    pub run_id: String,
    pub kind: String,
    pub attempts: u32,
    pub reason: String,
    pub dead_at_ms: i64,
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    ingest: Arc<Mutex<Connection>>,
    delivery: Arc<Mutex<Connection>>,
    writer: std::sync::mpsc::Sender<WriteRequest>,
    path: PathBuf,
}

/// One batch waiting for the group-commit writer.
struct WriteRequest {
    context: Option<(String, String, String)>,
    tenant: String,
    events: Vec<WireEvent>,
    targets: Vec<Vec<String>>,
    reply: tokio::sync::oneshot::Sender<Result<Committed, JournalError>>,
}

/// Most events one group transaction takes before it commits.
const GROUP_MAX_EVENTS: usize = 20_000;

/// The group-commit writer: takes every batch that is waiting, writes them in
/// one transaction, commits (one fsync), then answers each. A failed commit
/// (disk full, unwritable file) answers every batch of the group with the
/// error and the writer goes on with the next group, so ingest recovers by
/// itself when the cause goes away.
fn run_writer(conn: Arc<Mutex<Connection>>, rx: std::sync::mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut size = group[0].events.len();
        while size < GROUP_MAX_EVENTS {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.events.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| -> Result<Vec<Committed>, JournalError> {
            let tx = conn.transaction()?;
            let now = now_ms();
            let mut out = Vec::with_capacity(group.len());
            for r in &group {
                out.push(apply_batch(
                    &tx,
                    &r.tenant,
                    &r.events,
                    &r.targets,
                    now,
                    r.context.as_ref(),
                )?);
            }
            tx.commit()?;
            Ok(out)
        })();
        drop(conn);
        metrics::histogram!("herald_journal_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(committed) => {
                metrics::counter!("herald_journal_commits_total", "result" => "ok").increment(1);
                for (r, c) in group.into_iter().zip(committed) {
                    let _ = r.reply.send(Ok(c));
                }
            }
            Err(e) => {
                metrics::counter!("herald_journal_commits_total", "result" => "error").increment(1);
                let msg = e.to_string();
                for r in group {
                    let _ = r.reply.send(Err(JournalError::Task(msg.clone())));
                }
            }
        }
    }
}

/// Writes one batch inside `tx`.
fn apply_batch(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    events: &[WireEvent],
    targets: &[Vec<String>],
    now: i64,
    context: Option<&(String, String, String)>,
) -> Result<Committed, JournalError> {
    let mut accepted = 0;
    let mut duplicates = 0;
    let mut inserted_flags = Vec::with_capacity(events.len());
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (tenant, uuid, run_id, counter, kind, created_ms, received_ms, body, request_id, trace_id, span_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (tenant, uuid) DO NOTHING",
    )?;
    let mut upsert_run = tx.prepare_cached(
        "INSERT INTO runs (tenant, run_id, playbook, controller, first_ms, last_ms, events, finished)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6)
         ON CONFLICT (tenant, run_id) DO UPDATE SET
            playbook = coalesce(runs.playbook, excluded.playbook),
            controller = coalesce(runs.controller, excluded.controller),
            first_ms = min(runs.first_ms, excluded.first_ms),
            last_ms = max(runs.last_ms, excluded.last_ms),
            events = runs.events + 1,
            finished = max(runs.finished, excluded.finished)",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4)",
    )?;
    for (i, ev) in events.iter().enumerate() {
        let body = serde_json::to_string(&ev.body)?;
        let inserted = insert_event.execute(params![
            tenant,
            ev.uuid,
            ev.run_id,
            ev.counter as i64,
            ev.kind.as_str(),
            ev.created_ms,
            now,
            body,
            context.map(|c| c.0.as_str()),
            context.map(|c| c.1.as_str()),
            context.map(|c| c.2.as_str())
        ])?;
        inserted_flags.push(inserted > 0);
        if inserted == 0 {
            duplicates += 1;
            continue;
        }
        accepted += 1;
        let event_id = tx.last_insert_rowid();
        let finished = ev.kind == crate::event::EventKind::PlaybookOnStats;
        upsert_run.execute(params![
            tenant,
            ev.run_id,
            ev.playbook(),
            ev.controller(),
            ev.created_ms,
            finished
        ])?;
        for plugin in targets.get(i).map(Vec::as_slice).unwrap_or(&[]) {
            insert_delivery.execute(params![plugin, event_id, ev.run_id, now])?;
        }
    }
    Ok(Committed {
        accepted,
        duplicates,
        inserted: inserted_flags,
    })
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    uuid        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    counter     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    body        TEXT NOT NULL,
    request_id  TEXT,
    trace_id    TEXT,
    span_id     TEXT,
    UNIQUE (tenant, uuid)
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (tenant, run_id, id);
CREATE TABLE IF NOT EXISTS runs (
    tenant      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    playbook    TEXT,
    controller  TEXT,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    finished    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, run_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    plugin      TEXT NOT NULL,
    event_id    INTEGER NOT NULL REFERENCES events (id),
    run_id      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    first_at_ms INTEGER NOT NULL,
    next_at_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    last_error  TEXT,
    PRIMARY KEY (plugin, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (plugin, event_id) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS plugin_state (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
"#;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Brings a journal written by an earlier version up to the current schema.
fn migrate(conn: &Connection) -> Result<(), JournalError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('events')")?;
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for col in ["request_id", "trace_id", "span_id"] {
        if !columns.iter().any(|c| c == col) {
            conn.execute_batch(&format!("ALTER TABLE events ADD COLUMN {col} TEXT"))?;
        }
    }
    Ok(())
}

/// Checks that the journal can take a write right now (readiness).
pub fn probe_writable(journal: &Journal) -> Result<(), JournalError> {
    let conn = journal.delivery.lock().unwrap_or_else(|p| p.into_inner());
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS health (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;",
    )?;
    conn.execute(
        "INSERT INTO health (k, v) VALUES ('probe', ?1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        params![now_ms()],
    )?;
    Ok(())
}

/// Runs with recent events and no stats event yet, per tenant.
pub fn active_runs(journal: &Journal, since_ms: i64) -> Result<Vec<(String, u64)>, JournalError> {
    let conn = journal.delivery.lock().unwrap_or_else(|p| p.into_inner());
    let mut stmt = conn.prepare_cached(
        "SELECT tenant, count(*) FROM runs WHERE finished = 0 AND last_ms >= ?1 GROUP BY tenant",
    )?;
    let rows = stmt.query_map(params![since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn open_connection(path: &Path, synchronous: &str) -> Result<Connection, JournalError> {
    let conn = Connection::open(path).map_err(|source| JournalError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let ingest = open_connection(path, "FULL")?;
        ingest.execute_batch(SCHEMA)?;
        migrate(&ingest)?;
        let delivery = open_connection(path, "NORMAL")?;
        let ingest = Arc::new(Mutex::new(ingest));
        let (writer, rx) = std::sync::mpsc::channel();
        let conn = ingest.clone();
        std::thread::Builder::new()
            .name("herald-journal".into())
            .spawn(move || run_writer(conn, rx))
            .map_err(|source| JournalError::Dir {
                path: path.to_owned(),
                source,
            })?;
        Ok(Journal {
            ingest,
            delivery: Arc::new(Mutex::new(delivery)),
            writer,
            path: path.to_owned(),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits a validated batch in one transaction: new events, their runs,
    /// and one pending delivery per target plugin instance (`targets[i]` for
    /// `events[i]`). Events whose uuid the tenant already sent are counted as
    /// duplicates.
    pub fn commit_batch(
        &self,
        tenant: &str,
        events: &[WireEvent],
        targets: &[Vec<String>],
    ) -> Result<Committed, JournalError> {
        let mut conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let committed = apply_batch(&tx, tenant, events, targets, now_ms(), None)?;
        tx.commit()?;
        Ok(committed)
    }

    /// Commits a batch through the group-commit writer: batches that arrive
    /// while a commit is under way share the next transaction (and its
    /// fsync). Resolves only once the batch is durable.
    pub async fn commit(
        &self,
        tenant: String,
        events: Vec<WireEvent>,
        targets: Vec<Vec<String>>,
        context: Option<(String, String, String)>,
    ) -> Result<Committed, JournalError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(WriteRequest {
                context,
                tenant,
                events,
                targets,
                reply,
            })
            .map_err(|_| JournalError::Task("the journal writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| JournalError::Task("the journal writer dropped the batch".into()))?
    }

    /// The oldest pending deliveries of `plugin`, in journal order.
    pub fn pending(
        &self,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT d.event_id, d.run_id, d.attempts, d.next_at_ms, d.first_at_ms, e.body, e.request_id, e.trace_id, e.span_id
             FROM deliveries d INDEXED BY deliveries_pending JOIN events e ON e.id = d.event_id
             WHERE d.plugin = ?1 AND d.state = 'pending'
             ORDER BY d.event_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![plugin, limit as i64], |r| {
            Ok(PendingDelivery {
                event_id: r.get(0)?,
                run_id: r.get(1)?,
                attempts: r.get(2)?,
                next_at_ms: r.get(3)?,
                first_at_ms: r.get(4)?,
                body: r.get(5)?,
                request_id: r.get(6)?,
                trace_id: r.get(7)?,
                span_id: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks a delivery done: the attempt of the pending row read with
    /// `first_at_ms`. A row queued again while the attempt ran (a replay or
    /// a requeue gives it a new `first_at_ms`) stays pending, so that newer
    /// delivery still goes out. Returns whether the row was marked.
    pub fn delivered(
        &self,
        plugin: &str,
        event_id: i64,
        attempts: u32,
        first_at_ms: i64,
    ) -> Result<bool, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let n = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'done', attempts = ?3, updated_ms = ?4, last_error = NULL
                 WHERE plugin = ?1 AND event_id = ?2 AND state = 'pending' AND first_at_ms = ?5",
            )?
            .execute(params![plugin, event_id, attempts, now_ms(), first_at_ms])?;
        Ok(n > 0)
    }

    /// Records a failed attempt and when to try again.
    pub fn retry_later(
        &self,
        plugin: &str,
        event_id: i64,
        attempts: u32,
        next_at_ms: i64,
        error: &str,
    ) -> Result<(), JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached(
            "UPDATE deliveries SET attempts = ?3, next_at_ms = ?4, updated_ms = ?5, last_error = ?6
             WHERE plugin = ?1 AND event_id = ?2",
        )?
        .execute(params![
            plugin,
            event_id,
            attempts,
            next_at_ms,
            now_ms(),
            error
        ])?;
        Ok(())
    }

    /// Moves a delivery to the dead-letter state with its reason; like
    /// [`Journal::delivered`], only the pending row read with `first_at_ms`.
    pub fn dead_letter(
        &self,
        plugin: &str,
        event_id: i64,
        attempts: u32,
        error: &str,
        first_at_ms: i64,
    ) -> Result<bool, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let n = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'dead', attempts = ?3, updated_ms = ?4, last_error = ?5
                 WHERE plugin = ?1 AND event_id = ?2 AND state = 'pending' AND first_at_ms = ?6",
            )?
            .execute(params![plugin, event_id, attempts, now_ms(), error, first_at_ms])?;
        Ok(n > 0)
    }

    /// Counts deliveries of `plugin` by state (pending, done, dead).
    pub fn delivery_counts(&self, plugin: &str) -> Result<(u64, u64, u64), JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT state, count(*) FROM deliveries WHERE plugin = ?1 GROUP BY state",
        )?;
        let mut out = (0, 0, 0);
        let rows = stmt.query_map(params![plugin], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "pending" => out.0 = n,
                "done" => out.1 = n,
                _ => out.2 = n,
            }
        }
        Ok(out)
    }

    /// Dead letters of a tenant, newest first, optionally of one instance.
    pub fn dead_letters(
        &self,
        tenant: &str,
        plugin: Option<&str>,
        limit: usize,
        before_event: Option<i64>,
    ) -> Result<Vec<DeadLetter>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT d.plugin, d.event_id, e.uuid, e.run_id, e.kind, d.attempts, d.last_error, d.updated_ms
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.tenant = ?1 AND d.state = 'dead'
               AND (?2 IS NULL OR d.plugin = ?2)
               AND (?3 IS NULL OR d.event_id < ?3)
             ORDER BY d.event_id DESC, d.plugin LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![tenant, plugin, before_event, limit as i64], |r| {
            Ok(DeadLetter {
                plugin: r.get(0)?,
                event_id: r.get(1)?,
                uuid: r.get(2)?,
                run_id: r.get(3)?,
                kind: r.get(4)?,
                attempts: r.get(5)?,
                reason: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                dead_at_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Puts dead letters of a tenant's instance back in the queue (one event,
    /// or all of the instance's). Returns how many.
    pub fn requeue_dead(
        &self,
        tenant: &str,
        plugin: &str,
        event_id: Option<i64>,
    ) -> Result<usize, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let n = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', attempts = 0, first_at_ms = max(?4, first_at_ms + 1), next_at_ms = ?4, updated_ms = ?4
                 WHERE plugin = ?2 AND state = 'dead' AND (?3 IS NULL OR event_id = ?3)
                   AND event_id IN (SELECT id FROM events WHERE tenant = ?1)",
            )?
            .execute(params![tenant, plugin, event_id, now])?;
        Ok(n)
    }

    /// Queues every recorded event of a run again for one instance, whatever
    /// its earlier deliveries did. Returns how many. A queued row always gets
    /// a new `first_at_ms`: that is how an attempt still running is told
    /// apart from the replayed delivery (see [`Journal::delivered`]).
    pub fn replay_run(
        &self,
        tenant: &str,
        run_id: &str,
        plugin: &str,
    ) -> Result<usize, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let n = conn
            .prepare_cached(
                "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms)
                 SELECT ?3, id, run_id, 'pending', 0, ?4, ?4, ?4 FROM events WHERE tenant = ?1 AND run_id = ?2
                 ON CONFLICT (plugin, event_id) DO UPDATE SET state = 'pending', attempts = 0,
                    first_at_ms = max(excluded.first_at_ms, deliveries.first_at_ms + 1),
                    next_at_ms = excluded.next_at_ms,
                    updated_ms = excluded.updated_ms, last_error = NULL",
            )?
            .execute(params![tenant, run_id, plugin, now])?;
        Ok(n)
    }

    /// Deletes up to `limit` events received before `cutoff_ms` that no
    /// instance still has to deliver (pending) or holds as a dead letter,
    /// with their deliveries, and runs left without events. Returns the
    /// number of events removed per tenant.
    pub fn prune(
        &self,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<BTreeMap<String, u64>, JournalError> {
        let mut conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let mut removed = BTreeMap::new();
        let victims: Vec<(i64, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, tenant FROM events e WHERE received_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state != 'done')
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![cutoff_ms, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        {
            let mut del_d = tx.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?;
            let mut del_e = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
            for (id, tenant) in &victims {
                del_d.execute(params![id])?;
                del_e.execute(params![id])?;
                *removed.entry(tenant.clone()).or_insert(0u64) += 1;
            }
        }
        if !victims.is_empty() {
            tx.execute(
                "DELETE FROM runs WHERE last_ms < ?1 AND NOT EXISTS
                   (SELECT 1 FROM events e WHERE e.tenant = runs.tenant AND e.run_id = runs.run_id)",
                params![cutoff_ms],
            )?;
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Pending deliveries and the age of the oldest, per instance.
    pub fn queue_depths(&self) -> Result<Vec<(String, u64, i64)>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT plugin, count(*), min(first_at_ms) FROM deliveries WHERE state = 'pending' GROUP BY plugin",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Dead letters per instance.
    pub fn dead_counts(&self) -> Result<Vec<(String, u64)>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT plugin, count(*) FROM deliveries WHERE state = 'dead' GROUP BY plugin",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Size in bytes of the journal files (database and write-ahead log).
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.clone(), wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// A plugin instance's stored value.
    pub fn state_get(&self, plugin: &str, key: &str) -> Result<Option<String>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt =
            conn.prepare_cached("SELECT value FROM plugin_state WHERE plugin = ?1 AND key = ?2")?;
        let value = stmt
            .query_row(params![plugin, key], |r| r.get(0))
            .optional()?;
        Ok(value)
    }

    /// Stores a plugin instance's value.
    pub fn state_set(&self, plugin: &str, key: &str, value: &str) -> Result<(), JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached(
            "INSERT INTO plugin_state (plugin, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![plugin, key, value])?;
        Ok(())
    }

    /// Removes a plugin instance's value.
    pub fn state_delete(&self, plugin: &str, key: &str) -> Result<(), JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("DELETE FROM plugin_state WHERE plugin = ?1 AND key = ?2")?
            .execute(params![plugin, key])?;
        Ok(())
    }

    /// Number of events stored for a tenant.
    pub fn event_count(&self, tenant: &str) -> Result<u64, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn.query_row(
            "SELECT count(*) FROM events WHERE tenant = ?1",
            params![tenant],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(uuid: &str, run: &str) -> WireEvent {
        crate::event::validate(json!({"uuid": uuid, "event": "runner_on_ok", "counter": 1,
            "created": "2026-01-01T00:00:00", "run_id": run, "event_data": {"playbook": "p.yml"}}))
        .unwrap()
    }

    fn temp_journal(name: &str) -> Journal {
        let dir =
            std::env::temp_dir().join(format!("herald-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Journal::open(&dir.join("j.db")).unwrap()
    }

    #[test]
    fn dedupes_per_tenant_and_creates_deliveries() {
        let j = temp_journal("dedupe");
        let plugins = vec!["a".to_string(), "b".to_string()];
        let c = j
            .commit_batch(
                "t1",
                &[ev("u1", "r"), ev("u2", "r"), ev("u1", "r")],
                &vec![plugins.clone(); 3],
            )
            .unwrap();
        assert_eq!((c.accepted, c.duplicates), (2, 1));
        assert_eq!(c.inserted, vec![true, true, false]);
        let c = j.commit_batch("t2", &[ev("u1", "r")], &[]).unwrap();
        assert_eq!(c.accepted, 1, "another tenant may reuse a uuid");
        assert_eq!(j.pending("a", 10).unwrap().len(), 2);
        assert_eq!(j.pending("b", 10).unwrap().len(), 2);
        let first = &j.pending("a", 10).unwrap()[0];
        assert!(j
            .delivered("a", first.event_id, 1, first.first_at_ms)
            .unwrap());
        assert_eq!(j.delivery_counts("a").unwrap(), (1, 1, 0));
    }

    /// A replay while an attempt of the same event runs: the attempt's
    /// success or dead letter must not swallow the replayed delivery.
    #[test]
    fn a_replay_during_an_attempt_stays_pending() {
        let j = temp_journal("replay-race");
        j.commit_batch("t", &[ev("u1", "r")], &[vec!["a".to_string()]])
            .unwrap();
        let attempt = j.pending("a", 10).unwrap().remove(0);
        // In the same millisecond as the commit, too.
        assert_eq!(j.replay_run("t", "r", "a").unwrap(), 1);
        assert!(!j
            .delivered("a", attempt.event_id, 1, attempt.first_at_ms)
            .unwrap());
        assert!(!j
            .dead_letter("a", attempt.event_id, 1, "x", attempt.first_at_ms)
            .unwrap());
        let again = j.pending("a", 10).unwrap();
        assert_eq!(again.len(), 1, "the replayed delivery is still pending");
        assert!(j
            .delivered("a", again[0].event_id, 1, again[0].first_at_ms)
            .unwrap());
        assert_eq!(j.delivery_counts("a").unwrap(), (0, 1, 0));
    }

    #[test]
    fn survives_reopen() {
        let dir =
            std::env::temp_dir().join(format!("herald-journal-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.db");
        {
            let j = Journal::open(&path).unwrap();
            j.commit_batch("t", &[ev("u1", "r")], &[vec!["p".to_string()]])
                .unwrap();
            j.state_set("p", "k", "v").unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.pending("p", 10).unwrap().len(), 1);
        assert_eq!(j.state_get("p", "k").unwrap().as_deref(), Some("v"));
        assert_eq!(j.event_count("t").unwrap(), 1);
    }
}
