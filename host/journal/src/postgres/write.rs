//! The group-commit writer and the SQL of every write of events and
//! delivery outcomes.
//!
//! One writer task per replica takes every ingest batch and outcome batch
//! that is waiting and commits them in one transaction (one WAL flush), as
//! the SQLite backend does; batches are written with array parameters
//! (`unnest`), one statement per table, not one per event.

use super::{PgError, PgJournal};
use crate::{
    now_ms, stored_text, CommitNotice, CommitReceipt, Committed, EventLog, JournalError, Mark,
    MarkBatch, MarkOutcome, MarksWritten, RequestContext,
};
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use herald_event::WireEvent;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Most events one group transaction takes before it commits.
const GROUP_MAX_EVENTS: usize = 20_000;

/// What the writer is asked to write.
pub(super) enum Write {
    Events {
        tenant: String,
        events: Vec<WireEvent>,
        context: Option<RequestContext>,
        reply: tokio::sync::oneshot::Sender<Result<Committed, JournalError>>,
    },
    Marks {
        plugin: String,
        batch: MarkBatch,
        reply: tokio::sync::oneshot::Sender<Result<MarksWritten, JournalError>>,
    },
}

impl Write {
    fn size(&self) -> usize {
        match self {
            Write::Events { events, .. } => events.len(),
            Write::Marks { batch, .. } => batch.marks.len(),
        }
    }
}

/// The writer: groups what is waiting, commits it, answers each request,
/// then tells subscribers what became pending. A failed commit answers the
/// whole group with the error; the next group tries again.
///
/// A replica runs [`super::INGEST_WRITERS`] for ingest, taking turns at one
/// queue (their failures are `write_failure`, what `/ready` reports), and
/// one for delivery outcomes, whose connection
/// commits without waiting for the WAL flush (`synchronous_commit = off`):
/// outcomes lost to a database crash are deliveries made again, which
/// at-least-once allows, and the workers' many small commits then cost no
/// disk flush each.
///
/// `gather`: how long the writer waits after the first request of a group
/// for others (the outcome writer's; ingest does not wait).
pub(super) async fn run_writer(
    pool: Pool,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Write>>>,
    commits: tokio::sync::broadcast::Sender<CommitNotice>,
    write_failure: Option<Arc<Mutex<Option<String>>>>,
    streams: Arc<super::streams::Streams>,
    gather: std::time::Duration,
) {
    let set_failure = |failure: Option<String>| {
        if let Some(w) = &write_failure {
            *w.lock().unwrap_or_else(|p| p.into_inner()) = failure;
        }
    };
    let m = herald_telemetry::host();
    let commit_seconds = m.journal_commit_seconds.clone();
    let commits_ok = m.journal_commits.with_label_values(&["ok"]);
    let commits_error = m.journal_commits.with_label_values(&["error"]);
    loop {
        // The writers sharing `rx` take turns to gather a group; each
        // commits its own while the next gathers.
        let mut queue = rx.lock().await;
        let Some(first) = queue.recv().await else {
            break;
        };
        if !gather.is_zero() {
            // Lets the other workers' batches join this group: one
            // transaction (and one statement per kind of write) for many.
            tokio::time::sleep(gather).await;
        }
        let mut size = first.size();
        let mut group = vec![first];
        while size < GROUP_MAX_EVENTS {
            match queue.try_recv() {
                Ok(w) => {
                    size += w.size();
                    group.push(w);
                }
                Err(_) => break,
            }
        }
        drop(queue);
        let started = std::time::Instant::now();
        let result = commit_group(&pool, &group).await;
        commit_seconds.observe(started.elapsed().as_secs_f64());
        match result {
            Ok((outcomes, conn)) => {
                // Other replicas' workers: one NOTIFY for the group, after
                // its commit. Lost, it costs them an idle poll.
                let notices: Vec<CommitNotice> = group
                    .iter()
                    .zip(&outcomes)
                    .filter_map(|(w, o)| match (w, o) {
                        (Write::Events { tenant, .. }, Outcome::Events(c)) if c.accepted > 0 => {
                            Some(CommitNotice::Events {
                                tenant: Arc::from(tenant.as_str()),
                            })
                        }
                        _ => None,
                    })
                    .collect();
                if !notices.is_empty() {
                    if let Err(e) = super::notify::send(&conn, &notices).await {
                        tracing::debug!("journal: NOTIFY failed ({e}); replicas poll");
                    }
                }
                drop(conn);
                commits_ok.inc();
                if group.iter().any(|w| matches!(w, Write::Events { .. })) {
                    set_failure(None);
                }
                for (w, outcome) in group.into_iter().zip(outcomes) {
                    match (w, outcome) {
                        (Write::Events { tenant, reply, .. }, Outcome::Events(c)) => {
                            let accepted = c.accepted > 0;
                            let _ = reply.send(Ok(c));
                            if accepted {
                                let _ = commits.send(CommitNotice::Events {
                                    tenant: Arc::from(tenant),
                                });
                            }
                        }
                        (
                            Write::Marks {
                                plugin,
                                batch,
                                reply,
                            },
                            Outcome::Marks(n),
                        ) => {
                            streams.committed(&plugin, &batch, Some(&n));
                            let _ = reply.send(Ok(n));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                commits_error.inc();
                let msg = e.to_string();
                tracing::warn!(error = %msg, "journal: a PostgreSQL commit failed");
                set_failure(Some(msg.clone()));
                for w in group {
                    let err = JournalError::Task(msg.clone());
                    match w {
                        Write::Events { reply, .. } => {
                            let _ = reply.send(Err(err));
                        }
                        Write::Marks {
                            plugin,
                            batch,
                            reply,
                        } => {
                            streams.committed(&plugin, &batch, None);
                            let _ = reply.send(Err(err));
                        }
                    }
                }
            }
        }
    }
}

/// What one request of a group got.
enum Outcome {
    Events(Committed),
    Marks(MarksWritten),
}

async fn commit_group(
    pool: &Pool,
    group: &[Write],
) -> Result<(Vec<Outcome>, deadpool_postgres::Object), PgError> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let now = now_ms();
    let mut events = Vec::with_capacity(group.len());
    let mut runs = Vec::new();
    let mut marks = Vec::new();
    let mut ids = IdPlaces::default();
    for w in group {
        match w {
            Write::Events {
                tenant,
                events: batch,
                context,
                ..
            } => {
                let (committed, totals) =
                    insert_events(&tx, tenant, batch, now, context.as_ref(), &mut ids).await?;
                events.push(committed);
                runs.extend(totals.into_iter().map(|t| (tenant.as_str(), t)));
            }
            Write::Marks { plugin, batch, .. } => marks.push((plugin.as_str(), batch)),
        }
    }
    upsert_runs(&tx, runs, now).await?;
    let mut marks = apply_mark_batches(&tx, &marks, now).await?.into_iter();
    let mut events = events.into_iter();
    tx.commit().await?;
    // Back in the group's order.
    let out = group
        .iter()
        .filter_map(|w| match w {
            Write::Events { .. } => events.next().map(Outcome::Events),
            Write::Marks { .. } => marks.next().map(Outcome::Marks),
        })
        .collect();
    Ok((out, c))
}

/// The places a transaction has given to its events: an event's id is the
/// transaction's id shifted left by [`PLACE_BITS`] plus its place, so ids
/// follow the order of the transactions' ids and, within one, the order of
/// its batches (see the module's "Commit order" in `postgres`).
#[derive(Default)]
struct IdPlaces {
    used: i64,
}

/// Bits of an event id that number its place in its transaction (the `<< 20`
/// of the insert and of `herald_log_bound()` in the schema).
const PLACE_BITS: u32 = 20;

impl IdPlaces {
    /// The offset of a batch of `n` events (their places are offset + 1 ..=
    /// offset + n), or an error past what the id's low bits can hold.
    fn take(&mut self, n: usize) -> Result<i64, PgError> {
        let offset = self.used;
        self.used += n as i64;
        if self.used >= 1 << PLACE_BITS {
            return Err(PgError::Other(format!(
                "one transaction may write at most {} events",
                (1u32 << PLACE_BITS) - 1
            )));
        }
        Ok(offset)
    }
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
    outcome: Option<herald_event::RunOutcome>,
    labels: serde_json::Map<String, serde_json::Value>,
}

impl<'a> RunTotals<'a> {
    fn new(ev: &'a WireEvent) -> Self {
        let mut r = RunTotals {
            run_id: &ev.run_id,
            playbook: None,
            controller: None,
            first_ms: ev.created_ms,
            last_ms: ev.created_ms,
            events: 0,
            finished: false,
            outcome: None,
            labels: serde_json::Map::new(),
        };
        r.add(ev);
        r
    }

    fn add(&mut self, ev: &'a WireEvent) {
        self.playbook = self.playbook.or(ev.playbook());
        self.controller = self.controller.or(ev.controller());
        self.first_ms = self.first_ms.min(ev.created_ms);
        self.last_ms = self.last_ms.max(ev.created_ms);
        self.events += 1;
        if ev.kind == herald_event::EventKind::PlaybookOnStats {
            self.finished = true;
            let o = herald_event::RunOutcome::of_stats(ev.body());
            self.outcome = self.outcome.max(Some(o));
        }
        for (k, v) in ev.labels() {
            if !self.labels.contains_key(k) {
                self.labels
                    .insert(k.to_string(), serde_json::Value::from(v.as_str()));
            }
        }
    }
}

/// Inserts one ingest batch's new events inside `tx`, in one statement, with
/// ids from `ids`; returns what was stored and what it adds to each run's row
/// (for [`upsert_runs`], once per group).
async fn insert_events<'a>(
    tx: &Transaction<'_>,
    tenant: &str,
    events: &'a [WireEvent],
    now: i64,
    context: Option<&RequestContext>,
    ids: &mut IdPlaces,
) -> Result<(Committed, Vec<RunTotals<'a>>), PgError> {
    let uuids: Vec<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
    let runs: Vec<&str> = events.iter().map(|e| e.run_id.as_str()).collect();
    let counters: Vec<i64> = events.iter().map(|e| e.counter as i64).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let created: Vec<i64> = events.iter().map(|e| e.created_ms).collect();
    let bodies: Vec<&str> = events.iter().map(|e| e.body()).collect();
    let (request_id, trace_id, span_id) = match context {
        Some((r, t, s)) => (Some(r.as_str()), Some(t.as_str()), Some(s.as_str())),
        None => (None, None, None),
    };
    let offset = ids.take(events.len())?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (id, tenant, uuid, run_id, counter, kind, created_ms, received_ms, body,
                                 request_id, trace_id, span_id)
             SELECT (pg_current_xact_id()::text::bigint << 20) + $12 + u.ord,
                    $1, u.uuid, u.run_id, u.counter, u.kind, u.created_ms, $2, u.body, $3, $4, $5
             FROM unnest($6::text[], $7::text[], $8::bigint[], $9::text[], $10::bigint[], $11::text[])
                  WITH ORDINALITY AS u (uuid, run_id, counter, kind, created_ms, body, ord)
             ORDER BY u.ord
             ON CONFLICT (tenant, uuid) DO NOTHING
             RETURNING uuid",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &tenant,
                &now,
                &request_id,
                &trace_id,
                &span_id,
                &uuids,
                &runs,
                &counters,
                &kinds,
                &created,
                &bodies,
                &offset,
            ],
        )
        .await?;
    let mut fresh: HashSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let mut inserted = Vec::with_capacity(events.len());
    let mut totals: Vec<RunTotals<'_>> = Vec::new();
    for ev in events {
        // The first of a uuid repeated within the batch is the stored one.
        let stored = fresh.remove(&ev.uuid);
        inserted.push(stored);
        if !stored {
            continue;
        }
        match totals.iter_mut().rev().find(|r| r.run_id == ev.run_id) {
            Some(r) => r.add(ev),
            None => totals.push(RunTotals::new(ev)),
        }
    }
    let accepted = inserted.iter().filter(|i| **i).count();
    let committed = Committed {
        accepted,
        duplicates: events.len() - accepted,
        inserted,
    };
    Ok((committed, totals))
}

/// Adds a group's run totals to the runs' rows, in one order (tenant, run):
/// two ingest transactions that touch the same runs then lock their rows in
/// the same order and never deadlock.
async fn upsert_runs(
    tx: &Transaction<'_>,
    mut runs: Vec<(&str, RunTotals<'_>)>,
    now: i64,
) -> Result<(), PgError> {
    if runs.is_empty() {
        return Ok(());
    }
    runs.sort_by(|a, b| (a.0, a.1.run_id).cmp(&(b.0, b.1.run_id)));
    let upsert = tx
        .prepare_cached(
            "INSERT INTO runs (tenant, run_id, playbook, controller, first_ms, last_ms, events,
                               finished, received_ms, outcome, labels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb)
             ON CONFLICT (tenant, run_id) DO UPDATE SET
                playbook = coalesce(runs.playbook, excluded.playbook),
                controller = coalesce(runs.controller, excluded.controller),
                first_ms = least(runs.first_ms, excluded.first_ms),
                last_ms = greatest(runs.last_ms, excluded.last_ms),
                events = runs.events + excluded.events,
                finished = runs.finished OR excluded.finished,
                received_ms = greatest(runs.received_ms, excluded.received_ms),
                outcome = greatest(runs.outcome, excluded.outcome),
                labels = CASE WHEN runs.labels IS NULL THEN excluded.labels
                              WHEN excluded.labels IS NULL THEN runs.labels
                              ELSE excluded.labels || runs.labels END",
        )
        .await?;
    for (tenant, r) in &runs {
        let labels =
            (!r.labels.is_empty()).then(|| serde_json::Value::Object(r.labels.clone()).to_string());
        tx.execute(
            &upsert,
            &[
                tenant,
                &r.run_id,
                &r.playbook,
                &r.controller,
                &r.first_ms,
                &r.last_ms,
                &r.events,
                &r.finished,
                &now,
                &r.outcome.map(|o| o as i16),
                &labels,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Writes workers' outcomes and their cursors' moves inside `tx`, one
/// [`MarksWritten`] per batch, in order.
///
/// A group holds a batch from each of many streams (60 instances: 60
/// batches), so the fence checks are one statement and the cursors' moves
/// one statement per "round" (a stream's second batch in the group goes in
/// the second round, after its first), not two round trips per batch. The
/// exceptions (queue rows, attempt records) are written per batch: most
/// batches have none.
///
/// Every outcome of a queued delivery applies only if the row is still the
/// pending delivery that was read (same `first_at_ms`), so a replay or a
/// requeue during the attempt is never swallowed; no generation counter is
/// needed (the SQLite backend's one-range streak does not exist here).
pub(super) async fn apply_mark_batches(
    tx: &Transaction<'_>,
    batches: &[(&str, &MarkBatch)],
    now: i64,
) -> Result<Vec<MarksWritten>, PgError> {
    let mut written: Vec<MarksWritten> = batches
        .iter()
        .map(|_| MarksWritten {
            changed: 0,
            advanced: true,
            fenced: false,
        })
        .collect();
    let held = fences_held(tx, batches).await?;
    for (k, (plugin, batch)) in batches.iter().enumerate() {
        let Some(fence) = batch.fence else { continue };
        if held.contains(&(*plugin, fence)) {
            continue;
        }
        herald_telemetry::host()
            .lease_events
            .with_label_values(&["fenced"])
            .inc();
        tracing::warn!(
            plugin,
            token = fence,
            "delivery outcomes refused: this replica no longer holds the instance's lease"
        );
        written[k] = MarksWritten {
            changed: 0,
            advanced: false,
            fenced: true,
        };
    }
    for (k, (plugin, batch)) in batches.iter().enumerate() {
        if written[k].fenced {
            continue;
        }
        let (queued, logged): (Vec<&Mark>, Vec<&Mark>) = batch.marks.iter().partition(|m| m.queued);
        // `plugin` is a delivery stream: its rows are its instance's (the
        // shards share them), its cursor and lease are its own.
        let instance = herald_event::shard::instance_of(plugin);
        written[k].changed += queue_from_log(tx, instance, &logged, now).await?;
        written[k].changed += update_queued(tx, instance, &queued, now).await?;
        record_attempts(tx, instance, &batch.attempts).await?;
        if let Some(state) = &batch.state {
            write_state(tx, state).await?;
        }
    }
    // The moves, in rounds: one statement cannot move a row twice.
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, (plugin, batch)) in batches.iter().enumerate() {
        if written[k].fenced || batch.advance.is_none() {
            continue;
        }
        let round = seen.entry(*plugin).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(k);
        *round += 1;
    }
    for round in rounds {
        let mut streams = Vec::with_capacity(round.len());
        let (mut from, mut to, mut delivered, mut shards) = (
            Vec::with_capacity(round.len()),
            Vec::with_capacity(round.len()),
            Vec::with_capacity(round.len()),
            Vec::with_capacity(round.len()),
        );
        for &k in &round {
            let (plugin, batch) = batches[k];
            let Some(a) = &batch.advance else { continue };
            streams.push(plugin);
            from.push(a.from);
            to.push(a.to);
            delivered.push(a.delivered.min(i64::MAX as u64) as i64);
            shards.push(a.shards as i32);
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE cursors c SET position = m.to_id, delivered = c.delivered + m.delivered, updated_ms = $1
                 FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::int[])
                      AS m (plugin, from_id, to_id, delivered, shards)
                 WHERE c.plugin = m.plugin AND c.position = m.from_id AND c.shards = m.shards
                 RETURNING c.plugin",
            )
            .await?;
        let moved: HashSet<String> = tx
            .query(&stmt, &[&now, &streams, &from, &to, &delivered, &shards])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for &k in &round {
            let plugin = batches[k].0;
            if !moved.contains(plugin) {
                tracing::warn!(
                    plugin,
                    "a delivery cursor was not where its worker thought (an earlier batch of outcomes was lost); the worker reads it again"
                );
                written[k].advanced = false;
            }
        }
    }
    Ok(written)
}

/// The (stream, token) pairs of `batches` whose lease still has that token,
/// locked until `tx` ends (a takeover waits for it), so the check holds for
/// every write of the group.
async fn fences_held<'a>(
    tx: &Transaction<'_>,
    batches: &[(&'a str, &MarkBatch)],
) -> Result<HashSet<(&'a str, i64)>, PgError> {
    let mut asked: Vec<(&str, i64)> = batches
        .iter()
        .filter_map(|(plugin, b)| b.fence.map(|f| (*plugin, f)))
        .collect();
    if asked.is_empty() {
        return Ok(HashSet::new());
    }
    // In one order, so two writers never lock the same rows crosswise.
    asked.sort_unstable();
    asked.dedup();
    let (plugins, tokens): (Vec<&str>, Vec<i64>) = asked.iter().copied().unzip();
    let stmt = tx
        .prepare_cached(
            "SELECT l.plugin, l.token FROM leases l
             JOIN unnest($1::text[], $2::bigint[]) AS f (plugin, token)
               ON l.plugin = f.plugin AND l.token = f.token
             ORDER BY l.plugin FOR SHARE OF l",
        )
        .await?;
    let rows = tx.query(&stmt, &[&plugins, &tokens]).await?;
    let mut held = HashSet::with_capacity(rows.len());
    for r in rows {
        let plugin: &str = r.get(0);
        let token: i64 = r.get(1);
        if let Ok(i) = asked.binary_search(&(plugin, token)) {
            held.insert(asked[i]);
        }
    }
    Ok(held)
}

/// Writes an instance's `state` changes through `tx` (the writer's
/// transaction, or a connection for a write of its own): the new values in
/// one statement, the removals in another.
pub(super) async fn write_state(
    tx: &impl deadpool_postgres::GenericClient,
    state: &crate::StateWrites,
) -> Result<(), PgError> {
    // One row per key as PostgreSQL stores it (two keys differing only by a
    // NUL and U+FFFD are one there; the later write wins).
    let mut newest: HashMap<std::borrow::Cow<'_, str>, Option<&str>> = HashMap::new();
    for w in &state.writes {
        newest.insert(stored_text(&w.key), w.value.as_deref());
    }
    let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in newest {
        match value {
            Some(v) => {
                keys.push(key.into_owned());
                values.push(stored_text(v).into_owned());
            }
            None => gone.push(key.into_owned()),
        }
    }
    let (tenant, plugin) = (
        stored_text(&state.tenant).into_owned(),
        stored_text(&state.plugin).into_owned(),
    );
    if !keys.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO plugin_state (tenant, plugin, key, value)
                 SELECT $1, $2, k, v FROM unnest($3::text[], $4::text[]) AS m (k, v)
                 ON CONFLICT (tenant, plugin, key) DO UPDATE SET value = excluded.value",
            )
            .await?;
        tx.execute(&stmt, &[&tenant, &plugin, &keys, &values])
            .await?;
    }
    if !gone.is_empty() {
        let stmt = tx
            .prepare_cached(
                "DELETE FROM plugin_state WHERE tenant = $1 AND plugin = $2 AND key = ANY($3)",
            )
            .await?;
        tx.execute(&stmt, &[&tenant, &plugin, &gone]).await?;
    }
    Ok(())
}

/// Keeps the records of a batch's attempts, and at most
/// [`crate::MAX_ATTEMPTS_KEPT`] per delivery (a delivery replayed again and
/// again keeps the newest).
async fn record_attempts(
    tx: &Transaction<'_>,
    plugin: &str,
    attempts: &[crate::AttemptRecord],
) -> Result<(), PgError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    let mut at = Vec::new();
    let mut durations = Vec::new();
    let mut outcomes = Vec::new();
    let mut messages: Vec<Option<String>> = Vec::new();
    let mut requests = Vec::new();
    let mut crowded = Vec::new();
    for a in attempts {
        ids.push(a.event_id);
        numbers.push(a.attempt as i32);
        at.push(a.at_ms);
        durations.push(a.duration_ms.min(i64::MAX as u64) as i64);
        outcomes.push(stored_text(&a.outcome).into_owned());
        messages.push(a.message.as_deref().map(|m| stored_text(m).into_owned()));
        // serde_json escapes NUL in strings, so the JSON text has none.
        requests.push(serde_json::to_string(&a.requests).unwrap_or_else(|_| "[]".into()));
        if a.attempt as usize > crate::MAX_ATTEMPTS_KEPT / 2 {
            crowded.push(a.event_id);
        }
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO delivery_attempts (plugin, event_id, attempt, at_ms, duration_ms, outcome, message, requests)
             SELECT $1, * FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[])",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &plugin, &ids, &numbers, &at, &durations, &outcomes, &messages, &requests,
        ],
    )
    .await?;
    if !crowded.is_empty() {
        tx.execute(
            "DELETE FROM delivery_attempts a USING (
               SELECT id, row_number() OVER (PARTITION BY event_id ORDER BY id DESC) AS n
               FROM delivery_attempts WHERE plugin = $1 AND event_id = ANY($2)
             ) o WHERE a.id = o.id AND o.n > $3",
            &[&plugin, &crowded, &(crate::MAX_ATTEMPTS_KEPT as i64)],
        )
        .await?;
    }
    Ok(())
}

/// The exceptions among outcomes of events read from the log (retries, dead
/// letters, holds) become queue rows; a row that exists already (a replay
/// queued meanwhile) wins.
async fn queue_from_log(
    tx: &Transaction<'_>,
    plugin: &str,
    marks: &[&Mark],
    now: i64,
) -> Result<usize, PgError> {
    let mut ids = Vec::new();
    let mut states = Vec::new();
    let mut attempts = Vec::new();
    let mut first = Vec::new();
    let mut next = Vec::new();
    let mut errors: Vec<Option<std::borrow::Cow<'_, str>>> = Vec::new();
    for m in marks {
        let (state, next_at, error) = match &m.outcome {
            MarkOutcome::Done => continue,
            MarkOutcome::Retry { next_at_ms, error } => {
                ("pending", *next_at_ms, Some(stored_text(error)))
            }
            MarkOutcome::Dead { error } => ("dead", now, Some(stored_text(error))),
            MarkOutcome::Hold => ("pending", now, None),
        };
        ids.push(m.event_id);
        states.push(state);
        attempts.push(m.attempts as i32);
        first.push(m.first_at_ms);
        next.push(next_at);
        errors.push(error);
    }
    if ids.is_empty() {
        return Ok(0);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO deliveries (plugin, event_id, run_id, state, attempts, first_at_ms, next_at_ms, updated_ms, last_error)
             SELECT $1, e.id, e.run_id, m.state, m.attempts, m.first_at, m.next_at, $2, m.error
             FROM unnest($3::bigint[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::text[])
                  AS m (event_id, state, attempts, first_at, next_at, error)
             JOIN events e ON e.id = m.event_id
             ORDER BY e.id
             ON CONFLICT (plugin, event_id) DO NOTHING",
        )
        .await?;
    Ok(tx
        .execute(
            &stmt,
            &[
                &plugin, &now, &ids, &states, &attempts, &first, &next, &errors,
            ],
        )
        .await? as usize)
}

/// Outcomes of queued deliveries, in one statement. Within one batch the
/// last outcome of a delivery is the one that stands (an earlier one there
/// can only be a retry of the same queueing).
async fn update_queued(
    tx: &Transaction<'_>,
    plugin: &str,
    marks: &[&Mark],
    now: i64,
) -> Result<usize, PgError> {
    let mut last: std::collections::BTreeMap<i64, &Mark> = std::collections::BTreeMap::new();
    for m in marks {
        if m.outcome != MarkOutcome::Hold {
            last.insert(m.event_id, m);
        }
    }
    if last.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::new();
    let mut first = Vec::new();
    let mut attempts = Vec::new();
    let mut states = Vec::new();
    let mut next: Vec<Option<i64>> = Vec::new();
    let mut errors: Vec<Option<std::borrow::Cow<'_, str>>> = Vec::new();
    for m in last.values() {
        let (state, next_at, error) = match &m.outcome {
            MarkOutcome::Done => ("done", None, None),
            MarkOutcome::Retry { next_at_ms, error } => {
                ("pending", Some(*next_at_ms), Some(stored_text(error)))
            }
            MarkOutcome::Dead { error } => ("dead", None, Some(stored_text(error))),
            MarkOutcome::Hold => continue,
        };
        ids.push(m.event_id);
        first.push(m.first_at_ms);
        attempts.push(m.attempts as i32);
        states.push(state);
        next.push(next_at);
        errors.push(error);
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries d SET state = m.state, attempts = m.attempts,
                    next_at_ms = coalesce(m.next_at, d.next_at_ms), updated_ms = $2, last_error = m.error
             FROM unnest($3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::bigint[], $8::text[])
                  AS m (event_id, first_at, attempts, state, next_at, error)
             WHERE d.plugin = $1 AND d.event_id = m.event_id AND d.state = 'pending'
               AND d.first_at_ms = m.first_at",
        )
        .await?;
    Ok(tx
        .execute(
            &stmt,
            &[
                &plugin, &now, &ids, &first, &attempts, &states, &next, &errors,
            ],
        )
        .await? as usize)
}

impl EventLog for PgJournal {
    /// Goes through the group-commit writer: batches that arrive while a
    /// commit is under way share the next transaction.
    fn submit(
        &self,
        tenant: String,
        events: Vec<WireEvent>,
        context: Option<RequestContext>,
    ) -> Result<CommitReceipt, JournalError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .writer
            .send(Write::Events {
                tenant,
                events,
                context,
                reply,
            })
            .map_err(|_| JournalError::Task("the journal writer has stopped".into()))?;
        Ok(answer)
    }

    fn commit_batch(&self, tenant: &str, events: &[WireEvent]) -> Result<Committed, JournalError> {
        let committed = self.block(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            let now = now_ms();
            let (committed, runs) =
                insert_events(&tx, tenant, events, now, None, &mut IdPlaces::default()).await?;
            upsert_runs(&tx, runs.into_iter().map(|r| (tenant, r)).collect(), now).await?;
            tx.commit().await?;
            Ok::<_, PgError>(committed)
        })?;
        if committed.accepted > 0 {
            self.notice(CommitNotice::Events {
                tenant: Arc::from(tenant),
            });
        }
        Ok(committed)
    }

    fn event_count(&self, tenant: &str) -> Result<u64, JournalError> {
        Ok(self.block(async {
            let c = self.conn().await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM events WHERE tenant = $1", &[&tenant])
                .await?
                .get(0);
            Ok::<_, PgError>(n as u64)
        })?)
    }

    fn commits(&self) -> tokio::sync::broadcast::Receiver<CommitNotice> {
        self.inner.commits.subscribe()
    }
}
