//! The durable journal: events, runs, deliveries and plugin state in SQLite.
//!
//! One writer thread owns the write connection (`synchronous=FULL`, so an
//! acknowledged batch survives a power loss, not just a crash) and commits
//! whatever is waiting in one transaction: ingest batches and the dispatch
//! workers' delivery outcomes together (group commit). A second connection
//! reads pending deliveries and serves the occasional administrative write
//! (plugin state, requeue, replay, retention); a third checkpoints the WAL
//! in the background so no commit pays for it.

//!
//! This module owns all of the journal's SQL: the schema ([`SCHEMA`]), the
//! migrations of journals written by earlier versions, the writes, and (in
//! `query`) the reads behind the query API on a pool of read connections.

use crate::{
    now_ms, stored_text, CommitNotice, CommitReceipt, Committed, DeadLetter, DeadLetters,
    DeliveryQueue, EventLog, JournalError, Maintenance, Mark, MarkBatch, MarkOutcome, MarksReceipt,
    MarksWritten, PendingDelivery, PluginState, ReadPos, RequestContext,
};
use herald_event::WireEvent;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod explore;
mod query;

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        JournalError::Backend(Box::new(e))
    }
}

/// How many commit notices a slow subscriber may fall behind before it is
/// told it lagged.
const COMMIT_NOTICES: usize = 1024;

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    ingest: Arc<Mutex<Connection>>,
    delivery: Arc<Mutex<Connection>>,
    /// Read-only connections for the query API (a bounded pool, so a burst
    /// of queries neither opens unbounded connections nor queues behind
    /// the workers' reads on `delivery`).
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: std::sync::mpsc::Sender<Write>,
    path: PathBuf,
    /// Counts the reads of pending deliveries (their [`ReadPos::seq`]).
    reads: Arc<AtomicU64>,
    /// Bumped after every commit that may make a delivery pending again
    /// (replay, requeue), under the writer's lock: a streak read before a
    /// bump is recorded mark by mark.
    requeues: Arc<AtomicU64>,
    /// The writer's last failed commit, until a commit of events (or the
    /// readiness probe's write of the same size) succeeds: `/ready` answers
    /// what ingest answers.
    write_failure: Arc<Mutex<Option<WriteFailure>>>,
    /// Tells subscribers (the dispatcher) what each commit made pending, so
    /// the stages upstream never need to know who delivers.
    commits: tokio::sync::broadcast::Sender<CommitNotice>,
}

/// A commit the writer could not make (disk full, unwritable file).
#[derive(Debug, Clone)]
struct WriteFailure {
    error: String,
    /// What the failed group would have written, roughly.
    bytes: usize,
}

/// What the writer thread is asked to write.
enum Write {
    Events(WriteRequest),
    Marks(MarksRequest),
}

impl Write {
    fn size(&self) -> usize {
        match self {
            Write::Events(r) => r.events.len(),
            Write::Marks(m) => m.batch.marks.len(),
        }
    }

    /// Roughly what the write adds to the WAL, for the checkpointer.
    fn bytes(&self) -> usize {
        match self {
            Write::Events(r) => r.events.iter().map(|e| e.body().len()).sum(),
            // A queue row written, and its partial-index entry.
            Write::Marks(m) => {
                m.batch
                    .marks
                    .iter()
                    .filter(|m| m.queued || m.outcome != MarkOutcome::Done)
                    .count()
                    * 100
            }
        }
    }
}

/// Outcomes of a worker's deliveries, waiting for the writer.
struct MarksRequest {
    plugin: String,
    batch: MarkBatch,
    reply: tokio::sync::oneshot::Sender<Result<MarksWritten, JournalError>>,
}

/// One batch waiting for the group-commit writer.
struct WriteRequest {
    context: Option<(String, String, String)>,
    tenant: String,
    events: Vec<WireEvent>,
    reply: tokio::sync::oneshot::Sender<Result<Committed, JournalError>>,
}

/// Most events one group transaction takes before it commits.
const GROUP_MAX_EVENTS: usize = 20_000;

/// The group-commit writer: takes every batch that is waiting, writes them in
/// one transaction, commits (one fsync), then answers each. A failed commit
/// (disk full, unwritable file) answers every batch of the group with the
/// error and the writer goes on with the next group, so ingest recovers by
/// itself when the cause goes away.
///
/// The dispatch workers' delivery outcomes go through the same writer, in
/// the same groups: the journal has one writer, so neither ingest nor
/// delivery ever waits for SQLite's write lock, and a worker never waits for
/// its outcomes to be written before it goes on delivering.
fn run_writer(
    conn: Arc<Mutex<Connection>>,
    rx: std::sync::mpsc::Receiver<Write>,
    checkpoint: std::sync::mpsc::SyncSender<()>,
    requeues: Arc<AtomicU64>,
    write_failure: Arc<Mutex<Option<WriteFailure>>>,
    commits: tokio::sync::broadcast::Sender<CommitNotice>,
) {
    let mut since_checkpoint = 0usize;
    // The writer's series, resolved once for the thread's life.
    let m = herald_telemetry::host();
    let commit_seconds = m.journal_commit_seconds.clone();
    let commits_ok = m.journal_commits.with_label_values(&["ok"]);
    let commits_error = m.journal_commits.with_label_values(&["error"]);
    while let Ok(first) = rx.recv() {
        let mut size = first.size();
        let mut group = vec![first];
        while size < GROUP_MAX_EVENTS {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.size();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        // Requeues take this lock too: none runs until this group commits.
        let generation = requeues.load(Ordering::SeqCst);
        let result = (|| -> Result<(Vec<Committed>, Vec<MarksWritten>), JournalError> {
            let tx = conn.transaction()?;
            let now = now_ms();
            let mut out = Vec::with_capacity(group.len());
            let mut written = Vec::new();
            for w in &group {
                match w {
                    Write::Events(r) => out.push(apply_batch(
                        &tx,
                        &r.tenant,
                        &r.events,
                        now,
                        r.context.as_ref(),
                    )?),
                    Write::Marks(m) => {
                        written.push(apply_mark_batch(&tx, &m.plugin, &m.batch, now, generation)?);
                    }
                }
            }
            tx.commit()?;
            Ok((out, written))
        })();
        drop(conn);
        commit_seconds.observe(started.elapsed().as_secs_f64());
        match result {
            Ok((committed, written)) => {
                commits_ok.inc();
                // Only events clear a failure: outcomes rewrite rows in place
                // and may fit where a batch does not.
                if group.iter().any(|w| matches!(w, Write::Events(_))) {
                    *write_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                since_checkpoint += group.iter().map(Write::bytes).sum::<usize>();
                if since_checkpoint >= CHECKPOINT_EVERY_BYTES {
                    since_checkpoint = 0;
                    // Full means one is under way: it takes these frames too.
                    let _ = checkpoint.try_send(());
                }
                let mut committed = committed.into_iter();
                let mut written = written.into_iter();
                for w in group {
                    match w {
                        Write::Events(r) => {
                            if let Some(c) = committed.next() {
                                let accepted = c.accepted > 0;
                                let _ = r.reply.send(Ok(c));
                                // Sent here, not by whoever awaits the
                                // receipt: a batch whose request went away
                                // after the commit still wakes its workers.
                                if accepted {
                                    let _ = commits.send(CommitNotice::Events {
                                        tenant: Arc::from(r.tenant),
                                    });
                                }
                            }
                        }
                        Write::Marks(m) => {
                            if let Some(n) = written.next() {
                                let _ = m.reply.send(Ok(n));
                            }
                        }
                    }
                }
            }
            Err(e) => {
                commits_error.inc();
                let msg = e.to_string();
                *write_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(WriteFailure {
                    error: msg.clone(),
                    bytes: group.iter().map(Write::bytes).sum(),
                });
                for w in group {
                    let err = JournalError::Task(msg.clone());
                    match w {
                        Write::Events(r) => {
                            let _ = r.reply.send(Err(err));
                        }
                        Write::Marks(m) => {
                            let _ = m.reply.send(Err(err));
                        }
                    }
                }
            }
        }
    }
}

/// Writes a worker's outcomes and its cursor's move inside `tx`.
fn apply_mark_batch(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    batch: &MarkBatch,
    now: i64,
    generation: u64,
) -> Result<MarksWritten, JournalError> {
    let mut changed = 0;
    // `plugin` is a delivery stream: its rows are its instance's (the
    // shards share them), its cursor is its own.
    let instance = herald_event::shard::instance_of(plugin);
    // Outcomes of events read from the log: only the exceptions leave a row.
    let (queued, logged): (Vec<&Mark>, Vec<&Mark>) = batch.marks.iter().partition(|m| m.queued);
    for m in logged {
        changed += queue_from_log(tx, instance, m, now)?;
    }
    if queued.len() == batch.marks.len() {
        changed += apply_marks(tx, instance, &batch.marks, now, generation)?;
    } else {
        let queued: Vec<Mark> = queued.into_iter().cloned().collect();
        changed += apply_marks(tx, instance, &queued, now, generation)?;
    }
    for a in &batch.attempts {
        record_attempt(tx, instance, a)?;
    }
    if let Some(state) = &batch.state {
        write_state(tx, state)?;
    }
    let advanced = match batch.advance {
        None => true,
        Some(a) => {
            tx.prepare_cached(
                "UPDATE cursors SET position = ?3, delivered = delivered + ?4, updated_ms = ?5
                 WHERE plugin = ?1 AND position = ?2 AND shards = ?6",
            )?
            .execute(params![
                plugin,
                a.from,
                a.to,
                a.delivered as i64,
                now,
                a.shards
            ])? == 1
        }
    };
    if !advanced {
        tracing::warn!(
            plugin,
            "a delivery cursor was not where its worker thought (an earlier batch of outcomes was lost); the worker reads it again"
        );
    }
    Ok(MarksWritten {
        changed,
        advanced,
        fenced: false,
    })
}

/// Writes an instance's `state` changes inside `tx`.
fn write_state(
    tx: &rusqlite::Transaction<'_>,
    state: &crate::StateWrites,
) -> Result<(), JournalError> {
    for w in &state.writes {
        put_state(tx, &state.tenant, &state.plugin, &w.key, w.value.as_deref())?;
    }
    Ok(())
}

/// Stores (`Some`) or removes (`None`) one plugin state value.
fn put_state(
    conn: &Connection,
    tenant: &str,
    plugin: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), JournalError> {
    match value {
        Some(value) => conn
            .prepare_cached(
                "INSERT INTO plugin_state (tenant, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, plugin, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![
                tenant,
                plugin,
                stored_text(key),
                stored_text(value)
            ])?,
        None => conn
            .prepare_cached(
                "DELETE FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
            )?
            .execute(params![tenant, plugin, stored_text(key)])?,
    };
    Ok(())
}

/// Keeps the record of one attempt, and at most [`crate::MAX_ATTEMPTS_KEPT`]
/// of its delivery (a delivery replayed again and again keeps the newest).
fn record_attempt(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    a: &crate::AttemptRecord,
) -> Result<(), JournalError> {
    let requests = serde_json::to_string(&a.requests).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (plugin, event_id, attempt, at_ms, duration_ms, outcome, message, requests)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        plugin,
        a.event_id,
        a.attempt,
        a.at_ms,
        a.duration_ms as i64,
        stored_text(&a.outcome),
        a.message.as_deref().map(stored_text),
        requests
    ])?;
    if a.attempt as usize > crate::MAX_ATTEMPTS_KEPT / 2 {
        tx.prepare_cached(
            "DELETE FROM delivery_attempts WHERE plugin = ?1 AND event_id = ?2 AND rowid NOT IN
               (SELECT rowid FROM delivery_attempts WHERE plugin = ?1 AND event_id = ?2
                ORDER BY rowid DESC LIMIT ?3)",
        )?
        .execute(params![plugin, a.event_id, crate::MAX_ATTEMPTS_KEPT as i64])?;
    }
    Ok(())
}

/// Queues the outcome of an event read from the log, if it needs a row: a
/// retry, a dead letter, or a hold behind an earlier delivery of its run. A
/// row that exists already (a replay queued meanwhile) wins.
fn queue_from_log(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    m: &Mark,
    now: i64,
) -> Result<usize, JournalError> {
    let (state, next_at, error) = match &m.outcome {
        MarkOutcome::Done => return Ok(0),
        MarkOutcome::Retry { next_at_ms, error } => {
            ("pending", *next_at_ms, Some(stored_text(error)))
        }
        MarkOutcome::Dead { error } => ("dead", now, Some(stored_text(error))),
        MarkOutcome::Hold => ("pending", now, None),
    };
    Ok(tx
        .prepare_cached(
            "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms, last_error)
             SELECT ?1, id, run_id, ?3, ?4, ?5, ?6, ?7, ?8 FROM events WHERE id = ?2
             ON CONFLICT (plugin, event_id) DO NOTHING",
        )?
        .execute(params![plugin, m.event_id, state, m.attempts, m.first_at_ms, next_at, now, error])?)
}

/// Writes outcomes of queued deliveries inside `tx`; returns how many rows they changed.
///
/// A streak of successes (rows next to each other in one read, with the same
/// attempt count, read since the last requeue) is one range `UPDATE`: the
/// pending rows of that range are then exactly the streak's rows, and the
/// range walks the table once instead of seeking each row. If the range
/// does not change exactly the streak's rows, it is undone and the streak
/// is written mark by mark.
fn apply_marks(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    marks: &[Mark],
    now: i64,
    generation: u64,
) -> Result<usize, JournalError> {
    let mut changed = 0;
    let mut i = 0;
    while i < marks.len() {
        let end = streak_end(marks, i, generation);
        if end - i >= 2 && apply_streak(tx, plugin, &marks[i..end], now)? {
            changed += end - i;
            i = end;
            continue;
        }
        changed += apply_mark(tx, plugin, &marks[i], now)?;
        i += 1;
    }
    Ok(changed)
}

/// The end (exclusive) of the streak of successes starting at `marks[i]`.
fn streak_end(marks: &[Mark], i: usize, generation: u64) -> usize {
    let first = &marks[i];
    let Some(pos) = first.read.filter(|r| r.generation == generation) else {
        return i + 1;
    };
    if first.outcome != MarkOutcome::Done || !first.queued {
        return i + 1;
    }
    // Rows of one read come in event order, so the next row is the next event.
    let mut end = i + 1;
    while let Some(m) = marks.get(end) {
        let next_row = pos.row + (end - i) as u32;
        let adjacent = m
            .read
            .is_some_and(|r| r.seq == pos.seq && r.row == next_row);
        if !adjacent || !m.queued || m.outcome != MarkOutcome::Done || m.attempts != first.attempts
        {
            break;
        }
        end += 1;
    }
    end
}

/// Records a streak of successes in one statement; false (and nothing
/// written) if the range held other pending rows than the streak's.
fn apply_streak(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    streak: &[Mark],
    now: i64,
) -> Result<bool, JournalError> {
    let (Some(first), Some(last)) = (streak.first(), streak.last()) else {
        return Ok(false);
    };
    tx.execute_batch("SAVEPOINT streak")?;
    let n = tx
        .prepare_cached(
            "UPDATE deliveries SET state = 'done', attempts = ?4, updated_ms = ?5, last_error = NULL
             WHERE plugin = ?1 AND event_id BETWEEN ?2 AND ?3 AND state = 'pending'",
        )?
        .execute(params![plugin, first.event_id, last.event_id, first.attempts, now])?;
    if n == streak.len() {
        tx.execute_batch("RELEASE streak")?;
        return Ok(true);
    }
    tracing::warn!(
        plugin,
        rows = n,
        streak = streak.len(),
        "a streak of delivery outcomes did not match the journal; recording them one by one"
    );
    tx.execute_batch("ROLLBACK TO streak; RELEASE streak")?;
    Ok(false)
}

/// Records one outcome, if the row is still the pending delivery that was read.
fn apply_mark(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    m: &Mark,
    now: i64,
) -> Result<usize, JournalError> {
    Ok(match &m.outcome {
        MarkOutcome::Done => tx
            .prepare_cached(
                "UPDATE deliveries SET state = 'done', attempts = ?3, updated_ms = ?4, last_error = NULL
                 WHERE plugin = ?1 AND event_id = ?2 AND state = 'pending' AND first_at_ms = ?5",
            )?
            .execute(params![plugin, m.event_id, m.attempts, now, m.first_at_ms])?,
        MarkOutcome::Retry { next_at_ms, error } => tx
            .prepare_cached(
                "UPDATE deliveries SET attempts = ?3, next_at_ms = ?6, updated_ms = ?4, last_error = ?7
                 WHERE plugin = ?1 AND event_id = ?2 AND state = 'pending' AND first_at_ms = ?5",
            )?
            .execute(params![plugin, m.event_id, m.attempts, now, m.first_at_ms, next_at_ms, stored_text(error)])?,
        MarkOutcome::Dead { error } => tx
            .prepare_cached(
                "UPDATE deliveries SET state = 'dead', attempts = ?3, updated_ms = ?4, last_error = ?6
                 WHERE plugin = ?1 AND event_id = ?2 AND state = 'pending' AND first_at_ms = ?5",
            )?
            .execute(params![plugin, m.event_id, m.attempts, now, m.first_at_ms, stored_text(error)])?,
        // A queued row stays as it is until it is attempted.
        MarkOutcome::Hold => 0,
    })
}

/// What the stored events of one batch add to their run's row.
struct RunTotals<'a> {
    run_id: &'a str,
    playbook: Option<&'a str>,
    controller: Option<&'a str>,
    first_ms: i64,
    last_ms: i64,
    events: i64,
    finished: bool,
    /// The worst outcome the batch's stats events report.
    outcome: Option<herald_event::RunOutcome>,
    /// The first value of each label key, in event order.
    labels: Vec<(&'a str, &'a str)>,
}

impl<'a> RunTotals<'a> {
    fn new(ev: &'a WireEvent) -> Self {
        let mut r = RunTotals {
            run_id: &ev.run_id,
            playbook: ev.playbook(),
            controller: ev.controller(),
            first_ms: ev.created_ms,
            last_ms: ev.created_ms,
            events: 0,
            finished: false,
            outcome: None,
            labels: Vec::new(),
        };
        r.add(ev);
        r
    }

    /// Adds a later event of the batch (the first non-null playbook and controller win).
    fn add(&mut self, ev: &'a WireEvent) {
        self.playbook = self.playbook.or(ev.playbook());
        self.controller = self.controller.or(ev.controller());
        self.first_ms = self.first_ms.min(ev.created_ms);
        self.last_ms = self.last_ms.max(ev.created_ms);
        self.events += 1;
        if ev.kind == herald_event::EventKind::PlaybookOnStats {
            self.finished = true;
            // Stored with the run, so no query parses stats again.
            let o = herald_event::RunOutcome::of_stats(ev.body());
            self.outcome = self.outcome.max(Some(o));
        }
        for (k, v) in ev.labels() {
            if !self.labels.iter().any(|(key, _)| key == k) {
                self.labels.push((k, v));
            }
        }
    }

    /// The labels as a JSON object (`None` without labels).
    fn labels_json(&self) -> Option<String> {
        if self.labels.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        Some(serde_json::Value::Object(map).to_string())
    }
}

/// Event text committed between two background checkpoints (about the
/// 1000 WAL pages of SQLite's default autocheckpoint).
const CHECKPOINT_EVERY_BYTES: usize = 2 << 20;

/// The writer's own checkpoint, only a backstop: the background checkpointer
/// copies the WAL into the database beside the writer, so the writer's
/// commits rarely pay for it; a checkpoint the writer runs after a commit
/// then finds little left to copy and lets the WAL start over.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8000;

/// The background checkpointer: a passive checkpoint (it never waits for or
/// blocks the writer) whenever the writer has committed enough.
fn run_checkpointer(conn: Connection, kicked: std::sync::mpsc::Receiver<()>) {
    while kicked.recv().is_ok() {
        let started = std::time::Instant::now();
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("background checkpoint failed: {e}");
        }
        herald_telemetry::host()
            .journal_checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Writes one batch inside `tx`.
fn apply_batch(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    events: &[WireEvent],
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
    // Runs are upserted once per run and batch with the batch's totals, not
    // once per event: the same row results (first non-null playbook and
    // controller in event order, min/max times, count, finished).
    let mut upsert_run = tx.prepare_cached(
        "INSERT INTO runs (tenant, run_id, playbook, controller, first_ms, last_ms, events, finished,
                           received_ms, outcome, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (tenant, run_id) DO UPDATE SET
            playbook = coalesce(runs.playbook, excluded.playbook),
            controller = coalesce(runs.controller, excluded.controller),
            first_ms = min(runs.first_ms, excluded.first_ms),
            last_ms = max(runs.last_ms, excluded.last_ms),
            events = runs.events + excluded.events,
            finished = max(runs.finished, excluded.finished),
            received_ms = max(coalesce(runs.received_ms, 0), excluded.received_ms),
            outcome = CASE WHEN runs.outcome IS NULL THEN excluded.outcome
                           WHEN excluded.outcome IS NULL THEN runs.outcome
                           ELSE max(runs.outcome, excluded.outcome) END,
            labels = CASE WHEN runs.labels IS NULL THEN excluded.labels
                          WHEN excluded.labels IS NULL THEN runs.labels
                          ELSE json_patch(excluded.labels, runs.labels) END",
    )?;
    let mut runs: Vec<RunTotals<'_>> = Vec::new();
    for ev in events {
        let inserted = insert_event.execute(params![
            tenant,
            ev.uuid,
            ev.run_id,
            ev.counter as i64,
            ev.kind.as_str(),
            ev.created_ms,
            now,
            ev.body(),
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
        // A batch is nearly always one run: look from the last one.
        match runs.iter_mut().rev().find(|r| r.run_id == ev.run_id) {
            Some(r) => r.add(ev),
            None => runs.push(RunTotals::new(ev)),
        }
    }
    for r in &runs {
        upsert_run.execute(params![
            tenant,
            r.run_id,
            r.playbook,
            r.controller,
            r.first_ms,
            r.last_ms,
            r.events,
            r.finished,
            now,
            r.outcome.map(|o| o as i64),
            r.labels_json()
        ])?;
    }
    Ok(Committed {
        accepted,
        duplicates,
        inserted: inserted_flags,
    })
}

/// The journal's schema (every statement `IF NOT EXISTS`): what
/// [`Journal::open`] creates, and what the benchmark's bare-SQLite baseline
/// uses so the comparison tracks the real tables and indexes.
pub const SCHEMA: &str = r#"
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
-- What a worker reads: its tenant's events past its cursor.
CREATE INDEX IF NOT EXISTS events_by_tenant ON events (tenant, id);
CREATE TABLE IF NOT EXISTS runs (
    tenant      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    playbook    TEXT,
    controller  TEXT,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    finished    INTEGER NOT NULL DEFAULT 0,
    -- Kept at ingest so the query API never recomputes them from events:
    -- when the last batch arrived, the worst outcome its stats events
    -- report (0 ok, 1 unreachable, 2 failed), the first value of each label.
    received_ms INTEGER,
    outcome     INTEGER,
    labels      TEXT,
    PRIMARY KEY (tenant, run_id)
) WITHOUT ROWID;
-- The runs list, newest first, continued by keyset.
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (tenant, first_ms, run_id);
CREATE TABLE IF NOT EXISTS deliveries (
    plugin      TEXT NOT NULL,
    event_id    INTEGER NOT NULL REFERENCES events (id),
    run_id      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state = 'pending' OR state = 'done' OR state = 'dead'),
    attempts    INTEGER NOT NULL DEFAULT 0,
    first_at_ms INTEGER NOT NULL,
    next_at_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    last_error  TEXT,
    PRIMARY KEY (plugin, event_id)
) WITHOUT ROWID;
-- Each plugin instance's cursor over the event log (a consumer offset): every
-- event of `tenant` up to `position` was delivered, skipped by the instance's
-- routes, or has a row in `deliveries`. `since` is where the cursor started
-- (the instance receives the events after it); `delivered` counts the events
-- delivered at their first attempt (they leave no row); `routes` (JSON) are
-- the instance's routes, for the deliveries listing; a retired cursor (its
-- instance removed by a reload) no longer holds events back from retention.
-- An instance with N shards has N cursors, one per delivery stream
-- (`plugin` is the stream: `slack`, `slack#1`, ...); `instance` names the
-- instance, and the stream takes the events of the runs whose
-- `herald_shard(run_id, shards)` is its `shard`.
CREATE TABLE IF NOT EXISTS cursors (
    plugin      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    since       INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    routes      TEXT NOT NULL DEFAULT '[]',
    updated_ms  INTEGER NOT NULL,
    retired_ms  INTEGER,
    instance    TEXT NOT NULL DEFAULT '',
    shard       INTEGER NOT NULL DEFAULT 0,
    shards      INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
-- `deliveries` holds the exceptions only: retries, events held behind them,
-- replays, requeued and dead letters (and what became of them).
-- Covers what a worker reads of a pending delivery (`Journal::pending`).
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (plugin, event_id, run_id, attempts, next_at_ms, first_at_ms) WHERE state = 'pending';
-- What each delivery attempt sent and what the sink answered (attempts that
-- made requests or did not succeed), pruned with the deliveries; `requests`
-- is a JSON array of bounded records, at most 20 attempts per delivery.
CREATE TABLE IF NOT EXISTS delivery_attempts (
    plugin      TEXT NOT NULL,
    event_id    INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    message     TEXT,
    requests    TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON delivery_attempts (event_id, plugin);
-- A plugin instance's own values, by the tenant it serves: an instance name
-- given to another tenant starts with empty state.
CREATE TABLE IF NOT EXISTS plugin_state (
    tenant TEXT NOT NULL,
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, plugin, key)
) WITHOUT ROWID;
"#;

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
    migrate_delivery_check(conn)?;
    migrate_cursor_shards(conn)?;
    migrate_state_tenant(conn)?;
    migrate_pending_index(conn)?;
    migrate_run_summary(conn)
}

/// Earlier journals computed a run's status and labels from its events on
/// every query; the runs row now keeps them. Filled in once from the events.
fn migrate_run_summary(conn: &Connection) -> Result<(), JournalError> {
    let has: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'outcome'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         ALTER TABLE runs ADD COLUMN received_ms INTEGER;
         ALTER TABLE runs ADD COLUMN outcome INTEGER;
         ALTER TABLE runs ADD COLUMN labels TEXT;
         COMMIT;",
    )?;
    let mut stmt =
        conn.prepare("SELECT tenant, run_id, kind, body, received_ms FROM events ORDER BY id")?;
    // (tenant, run) -> (first_ms, last_ms, the run's fields)
    type RunFields = (i64, Option<i64>, serde_json::Map<String, serde_json::Value>);
    let mut runs: BTreeMap<(String, String), RunFields> = BTreeMap::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (tenant, run, kind, body, received) = row?;
        let entry = runs
            .entry((tenant, run))
            .or_insert((0, None, serde_json::Map::new()));
        entry.0 = entry.0.max(received);
        if kind == herald_event::EventKind::PlaybookOnStats.as_str() {
            let o = herald_event::RunOutcome::of_stats(&body) as i64;
            entry.1 = Some(entry.1.map_or(o, |e| e.max(o)));
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            if let Some(labels) = v.get("labels").and_then(|l| l.as_object()) {
                for (k, v) in labels {
                    if v.is_string() && !entry.2.contains_key(k) {
                        entry.2.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    drop(stmt);
    let tx = conn.unchecked_transaction()?;
    {
        let mut update = tx.prepare(
            "UPDATE runs SET received_ms = ?3, outcome = ?4, labels = ?5 WHERE tenant = ?1 AND run_id = ?2",
        )?;
        for ((tenant, run), (received, outcome, labels)) in &runs {
            let labels =
                (!labels.is_empty()).then(|| serde_json::Value::Object(labels.clone()).to_string());
            update.execute(params![tenant, run, received, outcome, labels])?;
        }
    }
    tx.commit()?;
    tracing::info!(
        runs = runs.len(),
        "journal: each run's status and labels are now kept with the run (filled in once)"
    );
    Ok(())
}

/// Cursors before shards were one per instance: each is shard 0 of 1 of
/// its instance (`fill_cursor_instances` names the instance).
fn migrate_cursor_shards(conn: &Connection) -> Result<(), JournalError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('cursors')")?;
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (col, def) in [
        ("instance", "TEXT NOT NULL DEFAULT ''"),
        ("shard", "INTEGER NOT NULL DEFAULT 0"),
        ("shards", "INTEGER NOT NULL DEFAULT 1"),
    ] {
        if !columns.iter().any(|c| c == col) {
            conn.execute_batch(&format!("ALTER TABLE cursors ADD COLUMN {col} {def}"))?;
        }
    }
    Ok(())
}

/// Cursors made before shards (or seeded from an older journal) name no
/// instance: each is its instance's only stream.
fn fill_cursor_instances(conn: &Connection) -> Result<(), JournalError> {
    conn.execute(
        "UPDATE cursors SET instance = plugin WHERE instance = ''",
        [],
    )?;
    Ok(())
}

/// `herald_shard(run_id, shards)`: the shard of a run among `shards`
/// (`herald_event::shard::shard_of`), for the statements that count or list
/// the deliveries of sharded instances.
fn add_shard_function(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "herald_shard",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let run: String = ctx.get(0)?;
            let shards: i64 = ctx.get(1)?;
            let shards = u32::try_from(shards).unwrap_or(1);
            Ok(i64::from(herald_event::shard::shard_of(&run, shards)))
        },
    )
}

/// Journals before cursors had a `deliveries` row per event and instance:
/// each instance gets a cursor at its newest row (its pending rows stay
/// queued and its done rows stay as history), so nothing is delivered
/// twice or skipped across the upgrade.
fn seed_cursors(conn: &Connection) -> Result<(), JournalError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO cursors (plugin, tenant, since, position, updated_ms)
         SELECT n.plugin, e.tenant, n.newest, n.newest, ?1
         FROM (SELECT plugin, max(event_id) AS newest FROM deliveries GROUP BY plugin) n
         JOIN events e ON e.id = n.newest",
        params![now_ms()],
    )?;
    if n > 0 {
        tracing::info!(
            instances = n,
            "journal: each plugin instance now reads the event log from a cursor (set once from its deliveries)"
        );
    }
    Ok(())
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, JournalError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        params![name],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// Earlier journals kept plugin state by instance name only, so an instance
/// name moved to another tenant read the earlier tenant's values. The table
/// is rebuilt once with a tenant column; the rows it had get the tenant `''`
/// until [`Journal::claim_state`] gives them to the instance's tenant when it
/// is next loaded.
fn migrate_state_tenant(conn: &Connection) -> Result<(), JournalError> {
    let has_tenant: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('plugin_state') WHERE name = 'tenant'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has_tenant {
        return Ok(());
    }
    let table = SCHEMA
        .split("CREATE TABLE IF NOT EXISTS plugin_state (")
        .nth(1)
        .and_then(|rest| rest.split(") WITHOUT ROWID;").next())
        .ok_or_else(|| JournalError::Task("the plugin_state schema is missing".into()))?;
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE plugin_state_new ({table}) WITHOUT ROWID;
         INSERT INTO plugin_state_new (tenant, plugin, key, value) SELECT '', plugin, key, value FROM plugin_state;
         DROP TABLE plugin_state;
         ALTER TABLE plugin_state_new RENAME TO plugin_state;
         COMMIT;"
    ))?;
    tracing::info!("journal: plugin state is now kept per tenant (rebuilt once)");
    Ok(())
}

/// Earlier journals indexed pending deliveries by (plugin, event_id) only, so
/// every row a worker read cost a second lookup in `deliveries`; the index
/// now covers what a worker reads. Rebuilt once (it holds pending rows only).
fn migrate_pending_index(conn: &Connection) -> Result<(), JournalError> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = 'deliveries_pending'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if sql.is_some_and(|s| s.contains("first_at_ms")) {
        return Ok(());
    }
    conn.execute_batch("DROP INDEX IF EXISTS deliveries_pending")?;
    // Recreates it (and nothing else: the rest exists) from the current schema.
    conn.execute_batch(SCHEMA)?;
    tracing::info!("journal: rebuilt the index of pending deliveries (once)");
    Ok(())
}

/// The `deliveries` check of earlier journals was `state IN (...)`:
/// SQLite builds a temporary table for a three-value `IN` on every row it
/// writes, about a third of the cost of recording an outcome. The table is
/// rebuilt once with the equivalent `OR` check (SQLite cannot alter a
/// check in place), in one transaction.
fn migrate_delivery_check(conn: &Connection) -> Result<(), JournalError> {
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'deliveries'",
        [],
        |r| r.get(0),
    )?;
    if !sql.contains("state IN (") {
        return Ok(());
    }
    let table = SCHEMA
        .split("CREATE TABLE IF NOT EXISTS deliveries (")
        .nth(1)
        .and_then(|rest| rest.split(") WITHOUT ROWID;").next())
        .ok_or_else(|| JournalError::Task("the deliveries schema is missing".into()))?;
    // Foreign keys stay on: nothing refers to `deliveries`, and its rows keep
    // referring to the same events.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE deliveries_new ({table}) WITHOUT ROWID;
         INSERT INTO deliveries_new (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms, last_error)
           SELECT plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms, last_error FROM deliveries;
         DROP TABLE deliveries;
         ALTER TABLE deliveries_new RENAME TO deliveries;
         COMMIT;"
    ))?;
    // Its index went with the old table; `migrate_pending_index` makes it.
    tracing::info!("journal: rebuilt the deliveries table with its faster check (once)");
    Ok(())
}

/// The log half of [`Journal::pending`]: the tenant's events past the
/// stream's cursor (?1; and past `after`) that have no queue row of its
/// instance (?4; a queued event is read from the queue). No cursor: nothing.
fn log_sql(limit: usize) -> String {
    format!(
        "SELECT e.id, e.run_id, e.received_ms, e.body, e.request_id, e.trace_id, e.span_id
         FROM events e
         WHERE e.tenant = ?3
           AND e.id > max(?2, (SELECT c.position FROM cursors c WHERE c.plugin = ?1 AND c.tenant = ?3))
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = ?4 AND d.event_id = e.id)
         ORDER BY e.id LIMIT {limit}"
    )
}

/// Writes a stream's cursor (all of it but `retired_ms`, which it clears).
#[allow(clippy::too_many_arguments)]
fn upsert_cursor(
    tx: &rusqlite::Transaction<'_>,
    stream: &str,
    instance: &str,
    tenant: &str,
    shard: i64,
    shards: i64,
    origin: crate::shards::Origin,
    routes: &str,
    now: i64,
) -> Result<(), JournalError> {
    let crate::shards::Origin {
        since,
        position,
        delivered,
    } = origin;
    tx.execute(
        "INSERT INTO cursors (plugin, tenant, since, position, delivered, routes, updated_ms, instance, shard, shards)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (plugin) DO UPDATE SET tenant = excluded.tenant, since = excluded.since,
            position = excluded.position, delivered = excluded.delivered, routes = excluded.routes,
            updated_ms = excluded.updated_ms, retired_ms = NULL, instance = excluded.instance,
            shard = excluded.shard, shards = excluded.shards",
        params![stream, tenant, since, position, delivered, routes, now, instance, shard, shards],
    )?;
    Ok(())
}

/// Queues, for `plugin`, what it had not read of `tenant`'s events when its
/// name was given to another tenant: the worker dead-letters them (they are
/// never handed to the new tenant's plugin). Its stored routes decide which.
fn queue_unread(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    tenant: &str,
    position: i64,
    routes: &str,
    now: i64,
) -> Result<usize, JournalError> {
    let routes = herald_event::routes::Routes::from_json(routes);
    let unread: Vec<(i64, String, i64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, run_id, received_ms, body FROM events WHERE tenant = ?1 AND id > ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant, position], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?5) ON CONFLICT (plugin, event_id) DO NOTHING",
    )?;
    let mut n = 0;
    for (id, run_id, received_ms, body) in unread {
        if routes.matches_stored(&body) {
            n += insert.execute(params![plugin, id, run_id, received_ms, now])?;
        }
    }
    Ok(n)
}

/// The queue half of [`Journal::pending`]: the index answers the delivery's
/// columns, the event's row gives the body.
fn pending_sql(limit: usize) -> String {
    format!(
        "SELECT d.event_id, d.run_id, d.attempts, d.next_at_ms, d.first_at_ms, e.body, e.request_id, e.trace_id, e.span_id,
                CASE WHEN e.tenant = ?3 THEN NULL ELSE e.tenant END
         FROM deliveries d INDEXED BY deliveries_pending JOIN events e ON e.id = d.event_id
         WHERE d.plugin = ?1 AND d.state = 'pending' AND d.event_id > ?2
         ORDER BY d.event_id LIMIT {limit}"
    )
}

/// Most bytes the readiness probe writes to see whether a failed commit
/// would now fit.
const PROBE_MAX_BYTES: usize = 1 << 20;

/// Waits for a lock held by the other connection: 200 µs steps for the
/// first 100 ms, then 5 ms steps, giving up after about 10 s.
fn busy_wait(attempt: i32) -> bool {
    const SHORT: i32 = 500;
    let step = if attempt < SHORT {
        std::time::Duration::from_micros(200)
    } else {
        std::time::Duration::from_millis(5)
    };
    std::thread::sleep(step);
    attempt < SHORT + 2_000
}

fn open_connection(path: &Path, synchronous: &str) -> Result<Connection, JournalError> {
    let conn = Connection::open(path).map_err(|source| JournalError::Open {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    // SQLite's default busy handler sleeps in growing steps of up to 100 ms;
    // a connection waits on the other's commits, whose fsyncs take a few ms,
    // so poll in short steps instead (about 10 s in all).
    conn.busy_handler(Some(busy_wait))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Room for every statement the journal and the query API prepare on one
    // connection (the default of 16 evicts under a mixed load).
    conn.set_prepared_statement_cache_capacity(64);
    add_shard_function(&conn)?;
    Ok(conn)
}

/// Most read connections the query API keeps open at once.
const READERS_MAX: u32 = 8;

/// The pool of read-only connections behind [`crate::RunQueries`]:
/// connections are opened on demand (none at start) and kept for reuse.
fn reader_pool(path: &Path) -> Result<r2d2::Pool<SqliteConnectionManager>, JournalError> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            // A reader never writes, whatever a query asks.
            c.pragma_update(None, "query_only", true)?;
            c.set_prepared_statement_cache_capacity(64);
            add_shard_function(c)?;
            Ok(())
        });
    r2d2::Pool::builder()
        .max_size(READERS_MAX)
        // No connection at start: a journal opened for a check never reads.
        .min_idle(Some(0))
        // SQLite connections do not go stale; skip a round trip per query.
        .test_on_check_out(false)
        .connection_timeout(std::time::Duration::from_secs(10))
        .build(manager)
        .map_err(|e| JournalError::Open {
            path: path.to_owned(),
            source: Box::new(e),
        })
}

impl Journal {
    /// Runs `f` on a pooled read connection (blocking).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        let conn = self
            .readers
            .get()
            .map_err(|e| JournalError::Backend(Box::new(e)))?;
        Ok(f(&conn)?)
    }

    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let ingest = open_connection(path, "FULL")?;
        let before_cursors = has_table(&ingest, "events")? && !has_table(&ingest, "cursors")?;
        ingest.execute_batch(SCHEMA)?;
        migrate(&ingest)?;
        if before_cursors {
            seed_cursors(&ingest)?;
        }
        fill_cursor_instances(&ingest)?;
        ingest.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        let delivery = open_connection(path, "NORMAL")?;
        let checkpoints = open_connection(path, "NORMAL")?;
        let ingest = Arc::new(Mutex::new(ingest));
        let (writer, rx) = std::sync::mpsc::channel();
        let (kick, kicked) = std::sync::mpsc::sync_channel(1);
        let conn = ingest.clone();
        let requeues = Arc::new(AtomicU64::new(0));
        let writer_requeues = requeues.clone();
        let write_failure = Arc::new(Mutex::new(None));
        let writer_failure = write_failure.clone();
        let commits = tokio::sync::broadcast::channel(COMMIT_NOTICES).0;
        let writer_commits = commits.clone();
        let spawn_error = |source| JournalError::Dir {
            path: path.to_owned(),
            source,
        };
        std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || run_checkpointer(checkpoints, kicked))
            .map_err(spawn_error)?;
        std::thread::Builder::new()
            .name("herald-journal".into())
            .spawn(move || {
                run_writer(
                    conn,
                    rx,
                    kick,
                    writer_requeues,
                    writer_failure,
                    writer_commits,
                )
            })
            .map_err(spawn_error)?;
        let readers = reader_pool(path)?;
        Ok(Journal {
            ingest,
            delivery: Arc::new(Mutex::new(delivery)),
            readers,
            writer,
            path: path.to_owned(),
            reads: Arc::new(AtomicU64::new(0)),
            requeues,
            write_failure,
            commits,
        })
    }

    fn notice(&self, notice: CommitNotice) {
        // No subscriber (e.g. `herald check`, an import without serve): nobody to wake.
        let _ = self.commits.send(notice);
    }

    /// Caps the journal's size in pages on its write connections, as a full
    /// disk would (`None` lifts the cap): for tests of that error path.
    #[cfg(test)]
    pub(crate) fn set_max_pages(&self, pages: Option<u64>) -> Result<(), JournalError> {
        for conn in [&self.ingest, &self.delivery] {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.pragma_update(None, "max_page_count", pages.unwrap_or(1 << 30))?;
        }
        Ok(())
    }

    /// Pages the journal file has now.
    #[cfg(test)]
    pub(crate) fn page_count(&self) -> Result<u64, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn.query_row("PRAGMA page_count", [], |r| r.get(0))?)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits a batch through the group-commit writer: batches that arrive
    /// while a commit is under way share the next transaction (and its
    /// fsync). Resolves only once the batch is durable.
    pub async fn commit(
        &self,
        tenant: String,
        events: Vec<WireEvent>,
        context: Option<RequestContext>,
    ) -> Result<Committed, JournalError> {
        crate::commit(self, tenant, events, context).await
    }
}

impl EventLog for Journal {
    /// Goes through the group-commit writer: batches that arrive while a
    /// commit is under way share the next transaction (and its fsync).
    fn submit(
        &self,
        tenant: String,
        events: Vec<WireEvent>,
        context: Option<RequestContext>,
    ) -> Result<CommitReceipt, JournalError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(Write::Events(WriteRequest {
                context,
                tenant,
                events,
                reply,
            }))
            .map_err(|_| JournalError::Task("the journal writer has stopped".into()))?;
        Ok(answer)
    }

    /// Commits a validated batch in one transaction: new events and their
    /// runs. Events whose uuid the tenant already sent are counted as
    /// duplicates.
    fn commit_batch(&self, tenant: &str, events: &[WireEvent]) -> Result<Committed, JournalError> {
        let mut conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let committed = apply_batch(&tx, tenant, events, now_ms(), None)?;
        tx.commit()?;
        drop(conn);
        if committed.accepted > 0 {
            self.notice(CommitNotice::Events {
                tenant: Arc::from(tenant),
            });
        }
        Ok(committed)
    }

    fn commits(&self) -> tokio::sync::broadcast::Receiver<CommitNotice> {
        self.commits.subscribe()
    }

    /// Number of events stored for a tenant.
    fn event_count(&self, tenant: &str) -> Result<u64, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn.query_row(
            "SELECT count(*) FROM events WHERE tenant = ?1",
            params![tenant],
            |r| r.get(0),
        )?)
    }
}

impl DeliveryQueue for Journal {
    fn open_streams(
        &self,
        instance: &str,
        tenant: &str,
        routes: &[herald_event::routes::RouteConfig],
        shards: u32,
    ) -> Result<Vec<i64>, JournalError> {
        use crate::shards::StreamRow;
        let routes_json =
            serde_json::to_string(routes).map_err(|e| JournalError::Backend(Box::new(e)))?;
        // On the writer's lock, as the requeues: the bump below is then seen
        // by the writer's next group.
        let mut conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        let rows: Vec<StreamRow> = {
            let mut stmt = tx.prepare_cached(
                "SELECT plugin, tenant, since, position, delivered, routes, shards FROM cursors
                 WHERE instance = ?1 OR plugin = ?1 ORDER BY plugin",
            )?;
            let rows = stmt.query_map(params![instance], |r| {
                Ok(StreamRow {
                    stream: r.get(0)?,
                    tenant: r.get(1)?,
                    since: r.get(2)?,
                    position: r.get(3)?,
                    delivered: r.get(4)?,
                    routes: r.get(5)?,
                    shards: r.get::<_, i64>(6)?.clamp(1, i64::from(u32::MAX)) as u32,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|r| crate::shards::belongs(&r.stream, instance))
                .collect()
        };
        let plan = crate::shards::plan(instance, tenant, shards, rows);
        let mut queued = 0;
        for r in &plan.moved {
            // Queued under the instance's name: the shards share its queue.
            queued += queue_unread(&tx, instance, &r.tenant, r.position, &r.routes, now)?;
        }
        for stream in &plan.dropped {
            tx.execute("DELETE FROM cursors WHERE plugin = ?1", params![stream])?;
        }
        let shards = plan.streams.len() as i64;
        let mut positions = Vec::with_capacity(plan.streams.len());
        let end: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?;
        for (k, stream) in plan.streams.iter().enumerate() {
            let position = match plan.start.origin(k, end) {
                None => {
                    tx.execute(
                        "UPDATE cursors SET routes = ?2, retired_ms = NULL, updated_ms = ?3 WHERE plugin = ?1",
                        params![stream, routes_json, now],
                    )?;
                    tx.query_row(
                        "SELECT position FROM cursors WHERE plugin = ?1",
                        params![stream],
                        |r| r.get(0),
                    )?
                }
                Some(o) => {
                    upsert_cursor(
                        &tx,
                        stream,
                        instance,
                        tenant,
                        k as i64,
                        shards,
                        o,
                        &routes_json,
                        now,
                    )?;
                    o.position
                }
            };
            positions.push(position);
        }
        tx.commit()?;
        if queued > 0 {
            self.requeues.fetch_add(1, Ordering::SeqCst);
        }
        if plan.reshards() {
            tracing::info!(plugin = %instance, tenant = %tenant, shards,
                "the instance's shard count changed: its streams start again from the slowest one's position (what the others had delivered past it is delivered again)");
        }
        Ok(positions)
    }

    fn cursor_at(&self, stream: &str) -> Result<Option<crate::CursorAt>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let at = conn
            .prepare_cached("SELECT position, shards FROM cursors WHERE plugin = ?1")?
            .query_row(params![stream], |r| {
                Ok(crate::CursorAt {
                    position: r.get(0)?,
                    shards: r.get::<_, i64>(1)?.clamp(1, i64::from(u32::MAX)) as u32,
                })
            })
            .optional()?;
        Ok(at)
    }

    fn retire_cursor(&self, plugin: &str) -> Result<(), JournalError> {
        let conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "UPDATE cursors SET retired_ms = ?2 WHERE instance = ?1 OR plugin = ?1",
            params![plugin, now_ms()],
        )?;
        Ok(())
    }

    /// The oldest pending deliveries of `plugin` after event `after` (0 for
    /// all), in journal order. `tenant` is the tenant the instance serves: a
    /// row of another tenant's event says so in
    /// [`PendingDelivery::foreign_tenant`].
    ///
    /// Each distinct `limit` is a statement of its own: SQLite plans a
    /// `LIMIT ?` anew on every run (it reads the bound value), which cost
    /// more than the read itself, so callers should keep to a few limits.
    fn pending(
        &self,
        plugin: &str,
        tenant: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, JournalError> {
        // Before the read's snapshot: a requeue committed after it bumps this.
        let generation = self.requeues.load(Ordering::SeqCst);
        let seq = self.reads.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        // One snapshot for both halves: an event moved from the log to the
        // queue in between would otherwise be missed or read twice.
        let tx = conn.transaction()?;
        // The shards of an instance share its queue.
        let instance = herald_event::shard::instance_of(plugin);
        let queued: Vec<PendingDelivery> = {
            let mut stmt = tx.prepare_cached(&pending_sql(limit))?;
            let rows = stmt.query_map(params![instance, after, tenant], |r| {
                Ok(PendingDelivery {
                    queued: true,
                    read: ReadPos {
                        seq,
                        generation,
                        row: 0,
                    },
                    event_id: r.get(0)?,
                    run_id: r.get(1)?,
                    attempts: r.get(2)?,
                    next_at_ms: r.get(3)?,
                    first_at_ms: r.get(4)?,
                    body: r.get(5)?,
                    request_id: r.get(6)?,
                    trace_id: r.get(7)?,
                    span_id: r.get(8)?,
                    foreign_tenant: r.get(9)?,
                    passed_over: false,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let logged: Vec<PendingDelivery> = {
            let mut stmt = tx.prepare_cached(&log_sql(limit))?;
            let rows = stmt.query_map(params![plugin, after, tenant, instance], |r| {
                let received_ms: i64 = r.get(2)?;
                Ok(PendingDelivery {
                    queued: false,
                    read: ReadPos {
                        seq,
                        generation,
                        row: 0,
                    },
                    event_id: r.get(0)?,
                    run_id: r.get(1)?,
                    attempts: 0,
                    next_at_ms: received_ms,
                    first_at_ms: received_ms,
                    body: r.get(3)?,
                    request_id: r.get(4)?,
                    trace_id: r.get(5)?,
                    span_id: r.get(6)?,
                    foreign_tenant: None,
                    // The read's SQL leaves queued events out.
                    passed_over: false,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        drop(tx);
        Ok(crate::merge_reads(queued, logged, limit))
    }

    /// Hands delivery outcomes to the writer thread, which commits them with
    /// the next group; the receipt resolves once they are durable.
    fn send_marks(&self, plugin: &str, batch: MarkBatch) -> Result<MarksReceipt, JournalError> {
        let (reply, receipt) = tokio::sync::oneshot::channel();
        self.writer
            .send(Write::Marks(MarksRequest {
                plugin: plugin.to_string(),
                batch,
                reply,
            }))
            .map_err(|_| JournalError::Task("the journal writer has stopped".into()))?;
        Ok(receipt)
    }

    /// Writes delivery outcomes now, in one transaction (tests and tools);
    /// returns how many deliveries they changed.
    fn record(&self, plugin: &str, batch: &MarkBatch) -> Result<MarksWritten, JournalError> {
        let mut conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.requeues.load(Ordering::SeqCst);
        let tx = conn.transaction()?;
        let written = apply_mark_batch(&tx, plugin, batch, now_ms(), generation)?;
        tx.commit()?;
        Ok(written)
    }

    /// Counts deliveries of `plugin` by state (pending, done, dead).
    fn delivery_counts(&self, plugin: &str) -> Result<(u64, u64, u64), JournalError> {
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
        // The log's share: delivered at the first attempt, and not read yet.
        // Summed over the instance's shards, each counting its own runs.
        let cursor: Option<(u64, u64)> = conn
            .prepare_cached(
                "SELECT sum(c.delivered),
                        sum((SELECT count(*) FROM events e WHERE e.tenant = c.tenant AND e.id > c.position
                           AND (c.shards = 1 OR herald_shard(e.run_id, c.shards) = c.shard)
                           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.plugin = c.instance AND d.event_id = e.id)))
                 FROM cursors c WHERE c.instance = ?1 HAVING count(*) > 0",
            )?
            .query_row(params![plugin], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((delivered, unread)) = cursor {
            out.0 += unread;
            out.1 += delivered;
        }
        Ok(out)
    }

    /// Pending deliveries and the age of the oldest, per instance.
    fn queue_depths(&self) -> Result<Vec<(String, u64, i64)>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut depths: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        let mut add = |plugin: String, n: u64, oldest: Option<i64>| {
            let e = depths.entry(plugin).or_insert((0, i64::MAX));
            e.0 += n;
            if let Some(o) = oldest {
                e.1 = e.1.min(o);
            }
        };
        {
            let mut stmt = conn.prepare_cached(
                "SELECT plugin, count(*), min(first_at_ms) FROM deliveries WHERE state = 'pending' GROUP BY plugin",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            for row in rows {
                let (plugin, n, oldest) = row?;
                add(plugin, n, oldest);
            }
        }
        let mut stmt = conn.prepare_cached(crate::depths::CURSOR_DEPTHS_SQL)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            let (plugin, n, oldest) = row?;
            add(plugin, n, oldest);
        }
        Ok(depths
            .into_iter()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(plugin, (n, oldest))| (plugin, n, oldest))
            .collect())
    }

    /// Queues every recorded event of a run again for one instance, whatever
    /// its earlier deliveries did. Returns how many. A queued row always gets
    /// a new `first_at_ms`: that is how an attempt still running is told
    /// apart from the replayed delivery (see [`Journal::delivered`]).
    fn replay_run(&self, tenant: &str, run_id: &str, plugin: &str) -> Result<usize, JournalError> {
        // On the writer's lock, as `requeue_dead`.
        let conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
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
        self.requeues.fetch_add(1, Ordering::SeqCst);
        drop(conn);
        if n > 0 {
            self.notice(CommitNotice::Requeued {
                plugin: Arc::from(plugin),
            });
        }
        Ok(n)
    }
}

impl DeadLetters for Journal {
    /// Dead letters of a tenant, newest first, optionally of one instance.
    fn dead_letters(
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
    fn requeue_dead(
        &self,
        tenant: &str,
        plugin: &str,
        event_id: Option<i64>,
    ) -> Result<usize, JournalError> {
        // On the writer's connection and lock, so that the bump below is seen
        // by the writer's next group (see `apply_marks`).
        let conn = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let n = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', attempts = 0, first_at_ms = max(?4, first_at_ms + 1), next_at_ms = ?4, updated_ms = ?4
                 WHERE plugin = ?2 AND state = 'dead' AND (?3 IS NULL OR event_id = ?3)
                   AND event_id IN (SELECT id FROM events WHERE tenant = ?1)",
            )?
            .execute(params![tenant, plugin, event_id, now])?;
        self.requeues.fetch_add(1, Ordering::SeqCst);
        drop(conn);
        if n > 0 {
            self.notice(CommitNotice::Requeued {
                plugin: Arc::from(plugin),
            });
        }
        Ok(n)
    }

    /// Dead letters per instance and tenant of the event: (plugin, tenant,
    /// count). An instance that moved to another tenant keeps the earlier
    /// tenant's dead letters under that tenant.
    fn dead_counts(&self) -> Result<Vec<(String, String, u64)>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT d.plugin, e.tenant, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.state = 'dead' GROUP BY d.plugin, e.tenant",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl PluginState for Journal {
    /// A plugin instance's stored value (of the tenant it serves).
    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT value FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3",
        )?;
        let value = stmt
            .query_row(params![tenant, plugin, stored_text(key)], |r| r.get(0))
            .optional()?;
        Ok(value)
    }

    /// Stores a plugin instance's value.
    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
    ) -> Result<(), JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        put_state(&conn, tenant, plugin, key, Some(value))
    }

    /// Removes a plugin instance's value.
    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        put_state(&conn, tenant, plugin, key, None)
    }

    /// Gives the state rows an earlier journal kept without a tenant (see
    /// `migrate_state_tenant`) to the tenant instance `plugin` serves now.
    /// Returns how many.
    fn claim_state(&self, tenant: &str, plugin: &str) -> Result<usize, JournalError> {
        let conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let n = conn
            .prepare_cached(
                "UPDATE OR IGNORE plugin_state SET tenant = ?1 WHERE tenant = '' AND plugin = ?2",
            )?
            .execute(params![tenant, plugin])?;
        Ok(n)
    }
}

/// One host per SQLite file (its lock file): every lease is that host's.
impl crate::Leases for Journal {
    fn claim_lease(
        &self,
        _plugin: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<crate::Lease>, JournalError> {
        Ok(Some(crate::Lease {
            holder: holder.to_string(),
            token: 1,
            ttl_ms,
        }))
    }

    fn renew_lease(&self, _plugin: &str, _lease: &crate::Lease) -> Result<bool, JournalError> {
        Ok(true)
    }

    fn release_lease(&self, _plugin: &str, _lease: &crate::Lease) -> Result<(), JournalError> {
        Ok(())
    }

    fn heartbeat(&self, _holder: &str, _ttl_ms: i64) -> Result<usize, JournalError> {
        Ok(1)
    }

    fn leases(&self) -> Result<Vec<crate::LeaseInfo>, JournalError> {
        Ok(Vec::new())
    }
}

impl Maintenance for Journal {
    /// Deletes up to `limit` events received before `cutoff_ms` that no
    /// instance still has to deliver (pending) or holds as a dead letter,
    /// with their deliveries, and runs left without events. Returns the
    /// number of events removed per tenant.
    fn prune(&self, cutoff_ms: i64, limit: usize) -> Result<BTreeMap<String, u64>, JournalError> {
        let mut conn = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let mut removed = BTreeMap::new();
        let victims: Vec<(i64, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, tenant FROM events e WHERE received_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state != 'done')
                   AND NOT EXISTS (SELECT 1 FROM cursors c WHERE c.tenant = e.tenant AND c.retired_ms IS NULL
                                     AND c.position < e.id)
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![cutoff_ms, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        {
            let mut del_d = tx.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?;
            let mut del_a =
                tx.prepare_cached("DELETE FROM delivery_attempts WHERE event_id = ?1")?;
            let mut del_e = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
            // SQLite gives a new row max(id) + 1: were the newest event deleted, the next
            // one could get an id at or below a cursor's position and never be delivered.
            // So the newest stays as a placeholder of no tenant, emptied, until a newer
            // event lets a later pass delete it.
            let newest: i64 =
                tx.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?;
            let mut empty = tx.prepare_cached(
                "UPDATE events SET tenant = '', uuid = 'pruned:' || id, run_id = '', body = '{}',
                   request_id = NULL, trace_id = NULL, span_id = NULL WHERE id = ?1",
            )?;
            for (id, tenant) in &victims {
                del_d.execute(params![id])?;
                del_a.execute(params![id])?;
                if *id == newest {
                    empty.execute(params![id])?;
                } else {
                    del_e.execute(params![id])?;
                }
                if !tenant.is_empty() {
                    *removed.entry(tenant.clone()).or_insert(0u64) += 1;
                }
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

    /// Size in bytes of the journal files (database and write-ahead log).
    fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.clone(), wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Checks that the journal can take a write right now (readiness).
    ///
    /// A tiny write still fits in a journal that refuses a batch (a full disk,
    /// the last free pages): so after a failed commit, the probe writes (and
    /// then deletes) as much as that commit would have, up to 1 MiB, and the
    /// journal is ready only once that succeeds, or a batch commits again.
    fn probe_writable(&self) -> Result<(), JournalError> {
        let journal = self;
        let conn = journal.delivery.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS health (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;",
        )?;
        conn.execute(
            "INSERT INTO health (k, v) VALUES ('probe', ?1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            params![now_ms()],
        )?;
        let failure = journal
            .write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(failure) = failure else {
            return Ok(());
        };
        let bytes = failure.bytes.clamp(4096, PROBE_MAX_BYTES);
        // Two commits: the space must really be written, not only rolled back.
        let space = conn
            .execute(
                "INSERT INTO health (k, v) VALUES ('space', zeroblob(?1)) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                params![bytes as i64],
            )
            .and_then(|_| conn.execute("DELETE FROM health WHERE k = 'space'", []));
        match space {
            Ok(_) => {
                *journal
                    .write_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => Err(JournalError::Task(format!(
                "the last commit failed ({}) and a write of {bytes} bytes still does: {e}",
                failure.error
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Advance, RunQueries, RunState};
    use serde_json::json;

    fn ev(uuid: &str, run: &str) -> WireEvent {
        herald_event::validate(json!({"uuid": uuid, "event": "runner_on_ok", "counter": 1,
            "created": "2026-01-01T00:00:00", "run_id": run, "event_data": {"playbook": "p.yml"}}))
        .unwrap()
    }

    fn done(d: &PendingDelivery) -> Mark {
        Mark {
            event_id: d.event_id,
            queued: d.queued,
            first_at_ms: d.first_at_ms,
            attempts: 1,
            outcome: MarkOutcome::Done,
            read: Some(d.read),
        }
    }

    /// Outcomes without a move of the cursor.
    fn marks(marks: Vec<Mark>) -> MarkBatch {
        MarkBatch {
            fence: None,
            marks,
            advance: None,
            ..Default::default()
        }
    }

    fn temp_journal(name: &str) -> Journal {
        let dir =
            std::env::temp_dir().join(format!("herald-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Journal::open(&dir.join("j.db")).unwrap()
    }

    fn big_event(i: usize) -> WireEvent {
        herald_event::validate(
            json!({"uuid": format!("u{i}"), "event": "verbose", "counter": i,
            "created": "2026-01-01T00:00:00", "run_id": "r", "stdout": "x".repeat(2000)}),
        )
        .unwrap()
    }

    /// A journal that refuses batches (full: the file cannot grow) is not
    /// ready, though the probe's own small write still fits; it is ready
    /// again once there is room. (Readiness must agree with ingest.)
    #[tokio::test]
    async fn ready_agrees_with_ingest_when_the_journal_is_full() {
        use crate::Maintenance;
        let j = temp_journal("ready-full");
        j.commit("t".into(), vec![big_event(0)], None)
            .await
            .unwrap();
        j.probe_writable().unwrap();

        // The file may not grow any more: what a full disk does to SQLite.
        j.set_max_pages(Some(j.page_count().unwrap())).unwrap();
        let batch: Vec<WireEvent> = (1..100).map(big_event).collect();
        let err = j.commit("t".into(), batch.clone(), None).await.unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        for _ in 0..2 {
            let e = j.probe_writable().unwrap_err();
            // The small write went through; the one of the batch's size did not.
            assert!(e.to_string().contains("still does"), "{e}");
            assert!(e.to_string().contains("full"), "{e}");
        }

        // Room again: the probe's write succeeds, and so does the batch.
        j.set_max_pages(None).unwrap();
        j.probe_writable().unwrap();
        let c = j.commit("t".into(), batch, None).await.unwrap();
        assert_eq!(c.accepted, 99);
        j.probe_writable().unwrap();
    }

    #[test]
    fn dedupes_per_tenant_and_instances_read_past_their_cursor() {
        let j = temp_journal("dedupe");
        assert_eq!(j.open_cursor("a", "t1", &[]).unwrap(), 0);
        assert_eq!(j.open_cursor("b", "t1", &[]).unwrap(), 0);
        let c = j
            .commit_batch("t1", &[ev("u1", "r"), ev("u2", "r"), ev("u1", "r")])
            .unwrap();
        assert_eq!((c.accepted, c.duplicates), (2, 1));
        assert_eq!(c.inserted, vec![true, true, false]);
        let c = j.commit_batch("t2", &[ev("u1", "r")]).unwrap();
        assert_eq!(c.accepted, 1, "another tenant may reuse a uuid");
        // Each instance reads its own tenant's events, and nothing was
        // written per instance at ingest.
        assert_eq!(j.pending("a", "t1", 0, 10).unwrap().len(), 2);
        assert_eq!(j.pending("b", "t1", 0, 10).unwrap().len(), 2);
        let rows: i64 = j
            .delivery
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        let first = &j.pending("a", "t1", 0, 10).unwrap()[0];
        assert!(!first.queued);
        let moved = MarkBatch {
            fence: None,
            marks: vec![done(first)],
            advance: Some(Advance {
                from: 0,
                to: first.event_id,
                delivered: 1,
                shards: 1,
            }),
            ..Default::default()
        };
        assert_eq!(
            j.record("a", &moved).unwrap(),
            MarksWritten {
                fenced: false,
                changed: 0,
                advanced: true
            }
        );
        assert_eq!(j.delivery_counts("a").unwrap(), (1, 1, 0));
        assert_eq!(j.delivery_counts("b").unwrap(), (2, 0, 0));
        // The same move again is refused: the cursor is no longer at 0.
        assert!(!j.record("a", &moved).unwrap().advanced);
        assert_eq!(j.cursor("a").unwrap(), Some(first.event_id));
        let left = j.pending("a", "t1", 0, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_ne!(left[0].event_id, first.event_id);
    }

    /// A new instance starts at the end of the log; a retry or a hold from
    /// the log becomes a queue row, which the log read then leaves out.
    #[test]
    fn exceptions_from_the_log_are_queued_and_read_once() {
        let j = temp_journal("exceptions");
        j.commit_batch("t", &[ev("old", "r0")]).unwrap();
        let start = j.open_cursor("p", "t", &[]).unwrap();
        assert!(
            j.pending("p", "t", 0, 10).unwrap().is_empty(),
            "before its time"
        );
        j.commit_batch("t", &[ev("u1", "r"), ev("u2", "r"), ev("u3", "q")])
            .unwrap();
        let read = j.pending("p", "t", 0, 10).unwrap();
        assert_eq!(read.len(), 3);
        let retry = Mark {
            outcome: MarkOutcome::Retry {
                next_at_ms: now_ms() + 60_000,
                error: "busy".into(),
            },
            ..done(&read[0])
        };
        let hold = Mark {
            outcome: MarkOutcome::Hold,
            attempts: 0,
            ..done(&read[1])
        };
        let batch = MarkBatch {
            fence: None,
            marks: vec![retry, hold, done(&read[2])],
            advance: Some(Advance {
                from: start,
                to: read[2].event_id,
                delivered: 1,
                shards: 1,
            }),
            ..Default::default()
        };
        assert_eq!(
            j.record("p", &batch).unwrap(),
            MarksWritten {
                fenced: false,
                changed: 2,
                advanced: true
            }
        );
        let again = j.pending("p", "t", 0, 10).unwrap();
        assert_eq!(
            again
                .iter()
                .map(|d| (d.event_id, d.queued, d.attempts))
                .collect::<Vec<_>>(),
            [(read[0].event_id, true, 1), (read[1].event_id, true, 0)]
        );
        assert_eq!(j.delivery_counts("p").unwrap(), (2, 1, 0));
        assert_eq!(j.queue_depths().unwrap().len(), 1);
        // The listing shows the queued rows and what the cursor implies.
        let (list, next) = j
            .deliveries(
                "t",
                &crate::DeliveryFilter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(next, None);
        assert_eq!(
            list.iter()
                .map(|d| (d.event_uuid.as_str(), d.state, d.attempts))
                .collect::<Vec<_>>(),
            [
                ("u1", crate::DeliveryState::Pending, 1),
                ("u2", crate::DeliveryState::Pending, 0),
                ("u3", crate::DeliveryState::Done, 1)
            ],
            "the event before the instance existed is not its delivery"
        );
    }

    /// An instance name given to another tenant: what it had not read of the
    /// earlier tenant is queued (for the worker to dead-letter), and it
    /// reads only the new tenant's events from the end of the log on.
    #[test]
    fn an_instance_moved_to_another_tenant_queues_what_it_had_not_read() {
        let j = temp_journal("moved");
        j.open_cursor("p", "u", &[]).unwrap();
        j.commit_batch("u", &[ev("theirs", "r")]).unwrap();
        let end = j.open_cursor("p", "t", &[]).unwrap();
        j.commit_batch("t", &[ev("mine", "r2")]).unwrap();
        let read = j.pending("p", "t", 0, 10).unwrap();
        assert_eq!(
            read.iter()
                .map(|d| (d.queued, d.foreign_tenant.as_deref()))
                .collect::<Vec<_>>(),
            [(true, Some("u")), (false, None)]
        );
        assert!(end >= read[0].event_id);
    }

    /// Retention keeps what an active cursor has not read yet; a retired
    /// cursor (its instance removed) holds nothing back.
    #[test]
    fn retention_keeps_events_an_active_cursor_has_not_read() {
        let j = temp_journal("prune");
        j.open_cursor("p", "t", &[]).unwrap();
        j.commit_batch("t", &[ev("u1", "r"), ev("u2", "r")])
            .unwrap();
        let far = now_ms() + 60_000;
        assert!(j.prune(far, 100).unwrap().is_empty());
        let first = j.pending("p", "t", 0, 1).unwrap().remove(0);
        let moved = MarkBatch {
            fence: None,
            marks: vec![done(&first)],
            advance: Some(Advance {
                from: 0,
                to: first.event_id,
                delivered: 1,
                shards: 1,
            }),
            ..Default::default()
        };
        assert!(j.record("p", &moved).unwrap().advanced);
        assert_eq!(j.prune(far, 100).unwrap().get("t"), Some(&1));
        j.retire_cursor("p").unwrap();
        assert_eq!(j.prune(far, 100).unwrap().get("t"), Some(&1));
        assert_eq!(j.event_count("t").unwrap(), 0);
    }

    /// Retention never lets SQLite reuse an id: an event committed after
    /// everything was delivered and pruned lies past every cursor.
    #[test]
    fn retention_never_lets_an_id_be_reused() {
        let j = temp_journal("reuse");
        j.open_cursor("p", "t", &[]).unwrap();
        j.commit_batch("t", &[ev("u1", "r"), ev("u2", "r")])
            .unwrap();
        let read = j.pending("p", "t", 0, 10).unwrap();
        let last = read[1].event_id;
        let all = MarkBatch {
            fence: None,
            marks: read.iter().map(done).collect(),
            advance: Some(Advance {
                from: 0,
                to: last,
                delivered: 2,
                shards: 1,
            }),
            ..Default::default()
        };
        assert!(j.record("p", &all).unwrap().advanced);
        assert_eq!(j.prune(now_ms() + 60_000, 100).unwrap().get("t"), Some(&2));
        assert_eq!(j.event_count("t").unwrap(), 0);
        j.commit_batch("t", &[ev("u3", "r")]).unwrap();
        let next = j.pending("p", "t", 0, 10).unwrap();
        assert_eq!(next.len(), 1, "the new event is past the cursor");
        assert!(next[0].event_id > last);
    }

    /// The listing applies an instance's routes to the deliveries its
    /// cursor implies.
    #[test]
    fn the_deliveries_listing_applies_routes() {
        let j = temp_journal("routes");
        let failures: Vec<herald_event::routes::RouteConfig> =
            vec![toml_route(r#"kinds = ["runner_on_failed"]"#)];
        j.open_cursor("all", "t", &[]).unwrap();
        j.open_cursor("failures", "t", &failures).unwrap();
        let failed = herald_event::validate(json!({"uuid": "f", "event": "runner_on_failed",
            "counter": 2, "created": "2026-01-01T00:00:00", "run_id": "r",
            "event_data": {"host": "h", "task": "t", "res": {"msg": "no"}}}))
        .unwrap();
        j.commit_batch("t", &[ev("ok", "r"), failed]).unwrap();
        let (list, _) = j
            .deliveries(
                "t",
                &crate::DeliveryFilter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            list.iter()
                .map(|d| (d.plugin.as_str(), d.event_uuid.as_str()))
                .collect::<Vec<_>>(),
            [("all", "ok"), ("all", "f"), ("failures", "f")]
        );
        // Pages continue after their key.
        let (page, next) = j
            .deliveries(
                "t",
                &crate::DeliveryFilter {
                    limit: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(page.len(), 2);
        let (rest, end) = j
            .deliveries(
                "t",
                &crate::DeliveryFilter {
                    limit: 2,
                    after: next,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((rest.len(), end), (1, None));
        assert_eq!(rest[0].plugin, "failures");
    }

    fn toml_route(text: &str) -> herald_event::routes::RouteConfig {
        serde_json::from_value(match text.split_once(" = ") {
            Some(("kinds", v)) => {
                json!({"kinds": serde_json::from_str::<serde_json::Value>(v).unwrap()})
            }
            _ => json!({}),
        })
        .unwrap()
    }

    /// A replay while an attempt of the same event runs: the attempt's
    /// success or dead letter must not swallow the replayed delivery.
    #[test]
    fn a_replay_during_an_attempt_stays_pending() {
        let j = temp_journal("replay-race");
        j.open_cursor("a", "t", &[]).unwrap();
        j.commit_batch("t", &[ev("u1", "r")]).unwrap();
        let attempt = j.pending("a", "t", 0, 10).unwrap().remove(0);
        // In the same millisecond as the commit, too.
        assert_eq!(j.replay_run("t", "r", "a").unwrap(), 1);
        let dead = Mark {
            outcome: MarkOutcome::Dead { error: "x".into() },
            ..done(&attempt)
        };
        let retry = Mark {
            outcome: MarkOutcome::Retry {
                next_at_ms: now_ms() + 60_000,
                error: "x".into(),
            },
            ..done(&attempt)
        };
        assert_eq!(
            j.record("a", &marks(vec![done(&attempt), dead, retry]))
                .unwrap()
                .changed,
            0
        );
        let again = j.pending("a", "t", 0, 10).unwrap();
        assert_eq!(again.len(), 1, "the replayed delivery is still pending");
        assert!(
            again[0].queued && again[0].next_at_ms <= now_ms(),
            "and due now"
        );
        assert_eq!(
            j.record("a", &marks(vec![done(&again[0])]))
                .unwrap()
                .changed,
            1
        );
        assert_eq!(j.delivery_counts("a").unwrap(), (0, 1, 0));
    }

    /// Successes next to each other in one read are recorded as a range;
    /// a row requeued into that range after the read stays pending.
    #[test]
    fn a_streak_of_successes_never_swallows_a_requeued_row() {
        let j = temp_journal("streak");
        j.open_cursor("a", "t", &[]).unwrap();
        let evs: Vec<_> = (1..=6).map(|i| ev(&format!("u{i}"), "r")).collect();
        j.commit_batch("t", &evs).unwrap();
        // Queued rows (a replay queues every event of the run).
        assert_eq!(j.replay_run("t", "r", "a").unwrap(), 6);
        // Event 3 is a dead letter when the worker reads.
        let third = j.pending("a", "t", 0, 10).unwrap().remove(2);
        let dead = Mark {
            outcome: MarkOutcome::Dead { error: "x".into() },
            read: None,
            ..done(&third)
        };
        assert_eq!(j.record("a", &marks(vec![dead])).unwrap().changed, 1);
        let read = j.pending("a", "t", 0, 10).unwrap();
        assert_eq!(
            read.iter().map(|d| d.event_id).collect::<Vec<_>>(),
            [1, 2, 4, 5, 6]
        );
        // Requeued after the read: inside the range 1..=6 the streak covers.
        assert_eq!(j.requeue_dead("t", "a", Some(third.event_id)).unwrap(), 1);
        let streak: Vec<Mark> = read.iter().map(done).collect();
        assert_eq!(j.record("a", &marks(streak)).unwrap().changed, 5);
        let left = j.pending("a", "t", 0, 10).unwrap();
        assert_eq!(
            left.iter().map(|d| d.event_id).collect::<Vec<_>>(),
            [third.event_id]
        );
        assert_eq!(j.delivery_counts("a").unwrap(), (1, 5, 0));

        // Without a requeue, the same streak is one range and leaves nothing behind.
        let more: Vec<_> = (7..=12).map(|i| ev(&format!("u{i}"), "r2")).collect();
        j.commit_batch("t", &more).unwrap();
        assert_eq!(j.replay_run("t", "r2", "a").unwrap(), 6);
        let read = j.pending("a", "t", third.event_id, 10).unwrap();
        assert_eq!(read.len(), 6);
        let marks_of_read: Vec<Mark> = read.iter().map(done).collect();
        assert_eq!(
            streak_end(&marks_of_read, 0, j.requeues.load(Ordering::SeqCst)),
            6
        );
        assert_eq!(
            j.record("a", &marks(marks_of_read.clone()))
                .unwrap()
                .changed,
            6
        );
        let marks = marks_of_read;
        assert_eq!(j.delivery_counts("a").unwrap(), (1, 11, 0));
        // A streak breaks at a gap in the read, another read, or another attempt count.
        let mut gap = marks.clone();
        gap.remove(2);
        assert_eq!(streak_end(&gap, 0, j.requeues.load(Ordering::SeqCst)), 2);
        let mut second = marks.clone();
        second[3].attempts = 2;
        assert_eq!(streak_end(&second, 0, j.requeues.load(Ordering::SeqCst)), 3);
        assert_eq!(
            streak_end(&marks, 0, j.requeues.load(Ordering::SeqCst) + 1),
            1
        );
    }

    #[test]
    fn run_rows_add_up_per_batch() {
        let j = temp_journal("runs");
        let e = |uuid: &str, run: &str, kind: &str, created: &str, data: serde_json::Value| {
            herald_event::validate(json!({"uuid": uuid, "event": kind, "counter": 1,
                "created": created, "run_id": run, "event_data": data, "controller": format!("c-{uuid}")}))
            .unwrap()
        };
        let batch = [
            e("u1", "r1", "runner_on_ok", "2026-01-01T00:00:05", json!({})),
            e(
                "u2",
                "r2",
                "runner_on_ok",
                "2026-01-01T00:00:01",
                json!({"playbook": "b.yml"}),
            ),
            e(
                "u3",
                "r1",
                "runner_on_ok",
                "2026-01-01T00:00:02",
                json!({"playbook": "a.yml"}),
            ),
            e("u1", "r1", "runner_on_ok", "2026-01-01T00:00:09", json!({})),
            e(
                "u4",
                "r1",
                "playbook_on_stats",
                "2026-01-01T00:00:07",
                json!({"playbook": "x.yml"}),
            ),
        ];
        let c = j.commit_batch("t", &batch).unwrap();
        assert_eq!((c.accepted, c.duplicates), (4, 1));
        j.commit_batch(
            "t",
            &[e(
                "u5",
                "r2",
                "runner_on_ok",
                "2026-01-01T00:00:00",
                json!({"playbook": "z.yml"}),
            )],
        )
        .unwrap();
        let conn = j.delivery.lock().unwrap();
        let mut stmt = conn
            .prepare("SELECT run_id, playbook, controller, first_ms, last_ms, events, finished FROM runs ORDER BY run_id")
            .unwrap();
        type RunRow = (String, Option<String>, Option<String>, i64, i64, i64, bool);
        let rows: Vec<RunRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let t0 = 1_767_225_600_000;
        assert_eq!(
            rows,
            vec![
                (
                    "r1".into(),
                    Some("a.yml".into()),
                    Some("c-u1".into()),
                    t0 + 2_000,
                    t0 + 7_000,
                    3,
                    true
                ),
                (
                    "r2".into(),
                    Some("b.yml".into()),
                    Some("c-u2".into()),
                    t0,
                    t0 + 1_000,
                    2,
                    false
                ),
            ]
        );
    }

    /// A run's status and labels come from its row (kept at ingest); a
    /// journal from before has them filled in once when it opens.
    #[test]
    fn run_status_and_labels_are_kept_with_the_run() {
        let dir =
            std::env::temp_dir().join(format!("herald-journal-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.db");
        let e = |uuid: &str, kind: &str, labels: serde_json::Value, data: serde_json::Value| {
            herald_event::validate(json!({"uuid": uuid, "event": kind, "counter": 1,
                "created": "2026-01-01T00:00:00", "run_id": "r", "labels": labels, "event_data": data}))
            .unwrap()
        };
        let failed_stats = json!({"ok": {"h1": 1}, "failures": {"h1": 1}, "dark": {}});
        let filter = crate::RunFilter {
            limit: 10,
            ..Default::default()
        };
        {
            let j = Journal::open(&path).unwrap();
            j.commit_batch(
                "t",
                &[e("u1", "runner_on_ok", json!({"env": "prod"}), json!({}))],
            )
            .unwrap();
            j.commit_batch(
                "t",
                &[e(
                    "u2",
                    "playbook_on_stats",
                    json!({"env": "dev", "team": "a"}),
                    failed_stats.clone(),
                )],
            )
            .unwrap();
            let (runs, _) = j.list_runs("t", &filter).unwrap();
            assert_eq!(runs[0].state, RunState::Failed);
            assert_eq!(
                runs[0].labels,
                BTreeMap::from([("env".into(), "prod".into()), ("team".into(), "a".into())]),
                "the first value of each key"
            );
            let by_label = crate::RunFilter {
                labels: vec![("env".into(), Some("prod".into()))],
                ..filter.clone()
            };
            assert_eq!(j.list_runs("t", &by_label).unwrap().0.len(), 1);
            let other = crate::RunFilter {
                labels: vec![("env".into(), Some("dev".into()))],
                ..filter.clone()
            };
            assert!(j.list_runs("t", &other).unwrap().0.is_empty());
        }
        // As an earlier version left it: no summary columns.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP INDEX runs_by_start;
                 ALTER TABLE runs DROP COLUMN received_ms;
                 ALTER TABLE runs DROP COLUMN outcome;
                 ALTER TABLE runs DROP COLUMN labels;",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let (runs, _) = j.list_runs("t", &filter).unwrap();
        assert_eq!(runs[0].state, RunState::Failed);
        assert_eq!(runs[0].labels.get("env").map(String::as_str), Some("prod"));
    }

    /// Issue 17 (2): an instance name given to another tenant does not see
    /// the earlier tenant's state; an earlier journal's state (kept by name
    /// only) goes to the tenant the instance serves when it is next loaded.
    #[test]
    fn plugin_state_is_kept_per_tenant_and_migrated() {
        let dir = std::env::temp_dir().join(format!("herald-journal-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE plugin_state (plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                     PRIMARY KEY (plugin, key)) WITHOUT ROWID;
                 INSERT INTO plugin_state VALUES ('p', 'open', 'incident-1');",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.state_get("a", "p", "open").unwrap(), None);
        assert_eq!(j.claim_state("a", "p").unwrap(), 1);
        assert_eq!(j.claim_state("b", "p").unwrap(), 0, "claimed once");
        assert_eq!(
            j.state_get("a", "p", "open").unwrap().as_deref(),
            Some("incident-1")
        );
        assert_eq!(j.state_get("b", "p", "open").unwrap(), None);
        j.state_set("b", "p", "open", "incident-2").unwrap();
        assert_eq!(
            j.state_get("a", "p", "open").unwrap().as_deref(),
            Some("incident-1")
        );
        j.state_delete("b", "p", "open").unwrap();
        assert_eq!(j.state_get("b", "p", "open").unwrap(), None);
        assert!(j.state_get("a", "p", "open").unwrap().is_some());
    }

    #[test]
    fn survives_reopen() {
        let dir =
            std::env::temp_dir().join(format!("herald-journal-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.db");
        {
            let j = Journal::open(&path).unwrap();
            j.open_cursor("p", "t", &[]).unwrap();
            j.commit_batch("t", &[ev("u1", "r")]).unwrap();
            j.state_set("t", "p", "k", "v").unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.pending("p", "t", 0, 10).unwrap().len(), 1);
        assert_eq!(j.state_get("t", "p", "k").unwrap().as_deref(), Some("v"));
        assert_eq!(j.event_count("t").unwrap(), 1);
    }

    #[test]
    fn an_earlier_deliveries_check_is_migrated_with_its_rows() {
        let dir =
            std::env::temp_dir().join(format!("herald-journal-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.db");
        {
            // A journal as earlier versions created it, with two deliveries.
            let old = SCHEMA
                .replace(
                    "CHECK (state = 'pending' OR state = 'done' OR state = 'dead')",
                    "CHECK (state IN ('pending', 'done', 'dead'))",
                )
                .replace(
                    "(plugin, event_id, run_id, attempts, next_at_ms, first_at_ms) WHERE",
                    "(plugin, event_id) WHERE",
                );
            assert_eq!(old.matches("IN ('pending'").count(), 1);
            assert_eq!(old.matches("(plugin, event_id) WHERE").count(), 1);
            // Before cursors: one row per event and instance.
            let cursors = old
                .split("CREATE TABLE IF NOT EXISTS cursors (")
                .nth(1)
                .and_then(|rest| rest.split(") WITHOUT ROWID;").next())
                .unwrap();
            let old = old.replace(
                &format!("CREATE TABLE IF NOT EXISTS cursors ({cursors}) WITHOUT ROWID;"),
                "",
            );
            assert!(!old.contains("cursors ("));
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&old).unwrap();
            conn.execute_batch(
                "INSERT INTO events (id, tenant, uuid, run_id, counter, kind, created_ms, received_ms, body)
                   VALUES (1, 't', 'u1', 'r', 1, 'runner_on_ok', 1, 1, '{}'), (2, 't', 'u2', 'r', 2, 'runner_on_ok', 1, 1, '{}');
                 INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms, last_error)
                   VALUES ('p', 1, 'r', 'pending', 2, 5, 6, 7, 'busy'), ('p', 2, 'r', 'dead', 3, 5, 6, 7, 'gone');",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let pending = j.pending("p", "t", 0, 10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (
                pending[0].event_id,
                pending[0].attempts,
                pending[0].first_at_ms
            ),
            (1, 2, 5)
        );
        assert_eq!(j.delivery_counts("p").unwrap(), (1, 0, 1));
        assert_eq!(
            j.cursor("p").unwrap(),
            Some(2),
            "a cursor at its newest row"
        );
        let conn = j.delivery.lock().unwrap();
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'deliveries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("state = 'pending' OR"), "{sql}");
        // A worker's read takes the delivery's columns from the index alone.
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", pending_sql(10)))
            .unwrap()
            .query_map(params!["p", 0, "t"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("COVERING INDEX deliveries_pending")),
            "{plan:?}"
        );
        // The check still refuses a state it does not know.
        let bad = conn.execute(
            "UPDATE deliveries SET state = 'lost' WHERE plugin = 'p' AND event_id = 1",
            [],
        );
        assert!(bad.is_err());
    }
}
