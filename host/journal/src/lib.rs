//! Herald's journal: the durable record of events, runs, deliveries, dead
//! letters and plugin state.
//!
//! The crate has two halves:
//! - this module: the storage traits by role ([`EventLog`], [`DeliveryQueue`],
//!   [`DeadLetters`], [`RunQueries`], [`Explore`], [`PluginState`],
//!   [`Maintenance`]), the
//!   [`Store`] supertrait a server holds as `Arc<dyn Store>`, and the record
//!   types and errors they share;
//! - [`sqlite`]: the SQLite backend, which owns all of the journal's SQL, its
//!   schema ([`sqlite::SCHEMA`]) and the migrations of earlier journal files.
//!
//! A second backend is one more implementation of the traits. The crate may
//! depend on `herald-event` only among the host's crates (see README.md).

use herald_event::{EventKind, Status, WireEvent};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

mod depths;
pub mod postgres;
mod shards;
pub mod sqlite;

/// The PostgreSQL journal, for N replicas on one database.
pub use postgres::{PgJournal, PgOptions};
/// The SQLite journal, the embedded default.
pub use sqlite::Journal;

/// The storage traits, unnamed, to bring their methods into scope:
/// `use herald_journal::prelude::*;`.
pub mod prelude {
    pub use crate::{
        DeadLetters as _, DeliveryQueue as _, EventLog as _, Explore as _, Leases as _,
        Maintenance as _, PluginState as _, RunQueries as _,
    };
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Text as the journal stores it: NUL becomes U+FFFD. PostgreSQL's text
/// cannot hold NUL, which a plugin's message, a sink's answer or a state
/// value may; both backends store the same, so a value reads back alike
/// whichever one a host runs on. Event bodies are JSON text, where NUL is
/// the escape `\u0000`, and are stored as sent.
pub fn stored_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Runs `f` with the journal on tokio's blocking pool. Every backend call may
/// block (SQLite does), so async code reaches the journal through this one
/// function; a task that panics or is cancelled is a [`JournalError::Task`].
pub async fn blocking<J, T, E>(
    journal: &J,
    f: impl FnOnce(&J) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    J: Clone + Send + 'static,
    T: Send + 'static,
    E: From<JournalError> + Send + 'static,
{
    let j = journal.clone();
    match tokio::task::spawn_blocking(move || f(&j)).await {
        Ok(r) => r,
        Err(e) => Err(JournalError::Task(e.to_string()).into()),
    }
}

/// Commits a batch through the backend's writer ([`EventLog::submit`]) and
/// waits until it is durable: what ingest awaits before it answers.
pub async fn commit(
    log: &dyn EventLog,
    tenant: String,
    events: Vec<WireEvent>,
    context: Option<RequestContext>,
) -> Result<Committed, JournalError> {
    log.submit(tenant, events, context)?
        .await
        .map_err(|_| JournalError::Task("the journal writer dropped the batch".into()))?
}

/// A journal as the stages above hold it, whatever the backend.
pub type SharedStore = Arc<dyn Store>;

/// Journal failures, whatever the backend.
#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot open the journal at {path}: {source}")]
    Open { path: PathBuf, source: BoxError },
    #[error("cannot create the journal directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The backend refused a read or a write (SQLite's error for the sqlite backend).
    #[error("journal error: {0}")]
    Backend(BoxError),
    #[error("journal task failed: {0}")]
    Task(String),
}

/// A backend's own error, kept as the source of a [`JournalError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a committed batch added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub accepted: usize,
    pub duplicates: usize,
    /// Per event of the batch: stored (`true`) or a duplicate.
    pub inserted: Vec<bool>,
}

/// A delivery waiting for a plugin instance: an event of the instance's
/// tenant past its cursor (read from the event log), or a row of the
/// delivery queue (a retry, an event held behind one, a replay, a requeued
/// dead letter).
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// Whether the delivery is a row of the queue; `false`: read from the
    /// event log past the instance's cursor (never attempted yet).
    pub queued: bool,
    /// Correlation ids of the ingest request that brought the event.
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// Span id of the ingest span that committed the event (the parent of each exported delivery span).
    pub span_id: Option<String>,
    pub event_id: i64,
    pub run_id: String,
    pub attempts: u32,
    pub next_at_ms: i64,
    pub first_at_ms: i64,
    pub body: String,
    /// The event's tenant when it is not the tenant the instance serves now
    /// (a reload moved the instance name to another tenant): such a
    /// delivery is never handed to the plugin.
    pub foreign_tenant: Option<String>,
    /// Which read returned the row, and where in it.
    pub read: ReadPos,
    /// Only a place in the log, not a delivery: the event has a row in the
    /// instance's queue (pending there, or already settled), so its log copy
    /// is not delivered. A backend that cannot leave such events out of the
    /// read's limit returns them (without a body) so that a reader past a
    /// long stretch of them still moves on; the worker only moves past them.
    pub passed_over: bool,
}

/// Where a pending delivery was read: the read (its sequence number and the
/// journal's re-queue generation just before it) and the row's position in
/// it. Rows next to each other in one read were next to each other among the
/// pending deliveries then: nothing pending lay between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPos {
    pub seq: u64,
    pub generation: u64,
    pub row: u32,
}

/// The outcome of one delivery attempt, written by the journal's writer.
///
/// It applies only to the pending row the worker read: `first_at_ms`
/// identifies that queueing of the delivery. A replay or a requeue while the
/// attempt ran gives the row a new `first_at_ms`, so the attempt's outcome
/// cannot swallow that newer delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub event_id: i64,
    /// Whether the delivery was read from the queue ([`PendingDelivery::queued`]).
    pub queued: bool,
    pub first_at_ms: i64,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    pub outcome: MarkOutcome,
    /// Where the worker read the delivery; lets the writer record a streak
    /// of successes in one statement (`None`: one statement per mark).
    pub read: Option<ReadPos>,
}

/// What became of the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    /// The plugin took the event.
    Done,
    /// Try again at `next_at_ms`.
    Retry { next_at_ms: i64, error: String },
    /// Given up: a dead letter with its reason.
    Dead { error: String },
    /// Not attempted: an event read from the log whose run waits behind an
    /// earlier delivery; queued so the cursor can move past it.
    Hold,
}

/// A delivery stream's cursor ([`DeliveryQueue::cursor_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorAt {
    pub position: i64,
    /// The shard count of the instance when the stream was opened.
    pub shards: u32,
}

/// Moves an instance's cursor over the event log: every event of its tenant
/// up to `to` was delivered, skipped by its routes, or has a queue row
/// (written with the same batch). Applied only if the cursor is still at
/// `from`, so a batch written after a lost one cannot skip the lost one's
/// events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub from: i64,
    pub to: i64,
    /// Events delivered at the first attempt between `from` and `to` (they
    /// leave no queue row; the instance's done count adds them up).
    pub delivered: u64,
    /// The shard count the worker delivers for: after the instance's count
    /// changed (its streams rewound), a worker of the old count cannot move
    /// a stream that now covers other runs.
    pub shards: u32,
}

/// What a worker hands the journal's writer at once: outcomes and, with
/// them, its cursor's move and the record of its attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkBatch {
    pub marks: Vec<Mark>,
    pub advance: Option<Advance>,
    /// The token of the worker's lease on its instance ([`Leases`]): the
    /// batch is written only if the lease still has it, so a replica that
    /// lost its lease (paused, partitioned) cannot mark anything. `None`:
    /// unfenced (one host, tests).
    pub fence: Option<i64>,
    /// What the attempts sent and what the sinks answered (attempts that
    /// made requests or did not succeed).
    pub attempts: Vec<AttemptRecord>,
    /// The instance's `state` writes made by these deliveries (and any
    /// call still running): committed in the same transaction as their
    /// outcomes, so after a crash the state is never behind the cursor (a
    /// delivery made again may find its earlier attempt's writes).
    pub state: Option<StateWrites>,
}

/// A plugin instance's `state` writes, the newest per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateWrites {
    pub tenant: String,
    /// The instance's name (`[plugins.NAME]`), not a shard's stream.
    pub plugin: String,
    pub writes: Vec<StateWrite>,
}

/// One key's new value; `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub key: String,
    pub value: Option<String>,
}

/// One outbound request of a delivery attempt, as the journal keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// Without credentials or query values.
    pub url: String,
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The first bytes of the answer (at most 512), as text.
    pub body: String,
    pub error: Option<String>,
}

/// One delivery attempt: the plugin's outcome and message, and its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    pub event_id: i64,
    /// Counts from 1.
    pub attempt: u32,
    pub at_ms: i64,
    pub duration_ms: u64,
    /// `ok`, `retry` or `dead`.
    pub outcome: String,
    /// The plugin's reason, or the fault, bounded.
    pub message: Option<String>,
    pub requests: Vec<RequestRecord>,
}

/// At most this many attempts of one delivery are kept (the newest).
pub const MAX_ATTEMPTS_KEPT: usize = 20;

/// What the writer made of a [`MarkBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarksWritten {
    /// Queue rows the outcomes changed or added.
    pub changed: usize,
    /// Whether the cursor moved (`true` when the batch had no move); `false`
    /// means it was not where the worker thought: the worker reads its
    /// cursor again.
    pub advanced: bool,
    /// The batch's fence no longer holds the lease: nothing was written,
    /// and the worker must stop delivering.
    pub fenced: bool,
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

/// Resolves once delivery outcomes handed over with
/// [`DeliveryQueue::send_marks`] are committed (or failed to be).
pub type MarksReceipt = tokio::sync::oneshot::Receiver<Result<MarksWritten, JournalError>>;

/// Resolves once a batch handed over with [`EventLog::submit`] is durable
/// (or failed to be).
pub type CommitReceipt = tokio::sync::oneshot::Receiver<Result<Committed, JournalError>>;

/// Correlation ids of the ingest request that brought a batch: request id,
/// trace id and span id, stored with each event.
pub type RequestContext = (String, String, String);

/// A run's status as the journal derives it from the run's events (see the
/// query API's `RunStatus` for what each means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Ok,
    Failed,
    Unreachable,
    Interrupted,
}

impl RunState {
    /// Every state, in the API's order.
    pub const ALL: [RunState; 5] = [
        RunState::Running,
        RunState::Ok,
        RunState::Failed,
        RunState::Unreachable,
        RunState::Interrupted,
    ];

    /// The state's name, as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Ok => "ok",
            RunState::Failed => "failed",
            RunState::Unreachable => "unreachable",
            RunState::Interrupted => "interrupted",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Done,
    Dead,
}

impl DeliveryState {
    /// The state's name, as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Done => "done",
            DeliveryState::Dead => "dead",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Done, Self::Dead]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One stored event's time and journaled body (its wire JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    pub created_ms: i64,
    pub body: String,
}

/// A run as the journal records it, with what the query API shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub playbook: Option<String>,
    pub controller: Option<String>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub events: i64,
    pub state: RunState,
    /// The run's first `playbook_on_start` event.
    pub start: Option<StoredBody>,
    /// The run's newest `playbook_on_stats` event.
    pub stats: Option<StoredBody>,
    /// The run's labels (the first value of each key, in event order).
    pub labels: BTreeMap<String, String>,
}

/// A host result event of a run (`runner_on_ok`, `_failed`, `_skipped`,
/// `_unreachable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultEvent {
    pub uuid: String,
    pub counter: i64,
    pub kind: String,
    pub created_ms: i64,
    pub body: String,
}

/// A delivery of an event to a plugin instance, with the event's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub plugin: String,
    pub event_id: i64,
    pub run_id: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub first_at_ms: i64,
    pub next_at_ms: i64,
    pub updated_ms: i64,
    pub last_error: Option<String>,
    pub event_uuid: String,
    pub kind: String,
    pub counter: i64,
}

/// Filters of a runs list (`GET /v1/runs`).
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub playbook: Option<String>,
    pub state: Option<RunState>,
    pub controller: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// (key, value); a `None` value only asks for the key.
    pub labels: Vec<(String, Option<String>)>,
    /// Epoch ms before which a run without events is interrupted.
    pub stale_before_ms: i64,
    /// Continue after this (started ms, run id).
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// Filters of a run's events (`GET /v1/runs/{id}/events`).
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub kinds: Vec<EventKind>,
    pub host: Option<String>,
    pub status: Option<Status>,
    /// Continue after this (counter, journal id).
    pub after: Option<(i64, i64)>,
    pub limit: usize,
}

/// Filters of the deliveries list (`GET /v1/deliveries`).
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub run: Option<String>,
    pub plugin: Option<String>,
    pub state: Option<DeliveryState>,
    /// Continue after this (event id, plugin).
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// What a commit made pending: sent after the commit, to every subscriber of
/// [`EventLog::commits`] (the dispatcher), so the stages upstream never need
/// to know who delivers. A subscriber that lags behind is told so by the
/// channel and should treat it as "anything may be pending".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitNotice {
    /// New events of this tenant (ingest or import).
    Events { tenant: Arc<str> },
    /// Deliveries of this plugin instance queued again (requeue, replay).
    Requeued { plugin: Arc<str> },
    /// Anything may be pending (another replica's commits were missed): wake
    /// every worker.
    All,
}

/// A page of items and the key to continue after it.
pub type Page<T, K> = (Vec<T>, Option<K>);

/// A page of a run's event bodies, continued after (counter, id).
pub type EventPage = Page<String, (i64, i64)>;

/// The log of events: commits batches (with their runs). Ingest writes
/// nothing per plugin instance: each instance reads the log past its own
/// cursor ([`DeliveryQueue::pending`]), so ingest costs the same whatever
/// the number of instances.
pub trait EventLog: Send + Sync {
    /// Hands a validated batch to the journal's writer: new events and their
    /// runs. The receipt resolves once the batch is durable; a tenant's
    /// repeated uuid counts as a duplicate.
    fn submit(
        &self,
        tenant: String,
        events: Vec<WireEvent>,
        context: Option<RequestContext>,
    ) -> Result<CommitReceipt, JournalError>;

    /// Commits a batch now, in one transaction of its own (tests and tools).
    fn commit_batch(&self, tenant: &str, events: &[WireEvent]) -> Result<Committed, JournalError>;

    /// Number of events stored for a tenant.
    fn event_count(&self, tenant: &str) -> Result<u64, JournalError>;

    /// Subscribes to what later commits make pending: every commit of new
    /// events ([`EventLog::submit`], [`EventLog::commit_batch`]) and every
    /// requeue ([`DeliveryQueue::replay_run`], [`DeadLetters::requeue_dead`])
    /// that changed something sends one [`CommitNotice`] once it is durable.
    fn commits(&self) -> tokio::sync::broadcast::Receiver<CommitNotice>;
}

/// What plugin instances have to deliver: per instance, a cursor over the
/// event log (like a consumer offset) and a queue of the exceptions (retries,
/// events held behind them, replays, dead letters).
pub trait DeliveryQueue: Send + Sync {
    /// Opens the cursor of instance `plugin` serving `tenant` with `routes`
    /// (kept for the deliveries listing) and returns where it stands. A new
    /// instance starts at the end of the log: it receives what is committed
    /// from now on. An instance name that served another tenant starts
    /// afresh, and what it had not read of that tenant is queued (and
    /// dead-lettered by the worker, never delivered to the new tenant).
    fn open_cursor(
        &self,
        plugin: &str,
        tenant: &str,
        routes: &[herald_event::routes::RouteConfig],
    ) -> Result<i64, JournalError> {
        let positions = self.open_streams(plugin, tenant, routes, 1)?;
        Ok(positions.first().copied().unwrap_or(0))
    }

    /// Opens the cursors of `instance`'s `shards` delivery streams (named by
    /// `herald_event::shard::stream_name`) and returns where each stands,
    /// shard 0 first. As [`DeliveryQueue::open_cursor`], and when the shard
    /// count changed: every stream starts at the slowest old stream's
    /// position (runs move between shards, so none may be skipped; what the
    /// faster ones had delivered past it is delivered again), streams past
    /// the new count are removed, and their leases change hands so that a
    /// replica still running the old count stops.
    fn open_streams(
        &self,
        instance: &str,
        tenant: &str,
        routes: &[herald_event::routes::RouteConfig],
        shards: u32,
    ) -> Result<Vec<i64>, JournalError>;

    /// Where the cursor of `plugin` stands (`None`: never opened).
    fn cursor(&self, plugin: &str) -> Result<Option<i64>, JournalError> {
        Ok(self.cursor_at(plugin)?.map(|c| c.position))
    }

    /// Where the cursor of delivery stream `stream` stands, and the shard
    /// count it was opened with (`None`: never opened, or removed by a
    /// change of the shard count).
    fn cursor_at(&self, stream: &str) -> Result<Option<CursorAt>, JournalError>;

    /// Marks an instance's cursors (all its shards') retired (removed by a
    /// reload): retention no longer keeps events for them. Opening them
    /// again un-retires them.
    fn retire_cursor(&self, plugin: &str) -> Result<(), JournalError>;

    /// The oldest pending deliveries of delivery stream `plugin` after event
    /// `after` (0 for all), in journal order: its instance's queued rows
    /// merged with the events of `tenant` past the stream's cursor. Neither
    /// routes nor shards are applied: the worker matches them (the shards of
    /// an instance share its queue). A backend may also return the log's
    /// places of queued events, marked [`PendingDelivery::passed_over`].
    fn pending(
        &self,
        plugin: &str,
        tenant: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, JournalError>;

    /// Hands delivery outcomes (and the cursor's move) of delivery stream
    /// `plugin` to the writer; the receipt resolves once they are durable.
    /// Queue rows are the stream's instance's; the move and the fence are
    /// the stream's.
    fn send_marks(&self, plugin: &str, batch: MarkBatch) -> Result<MarksReceipt, JournalError>;

    /// Writes delivery outcomes now (tests and tools).
    fn record(&self, plugin: &str, batch: &MarkBatch) -> Result<MarksWritten, JournalError>;

    /// Deliveries of `plugin` by state: (pending, done, dead). Pending
    /// counts the events of its tenant past its cursor, also those its
    /// routes will skip once it reads them.
    fn delivery_counts(&self, plugin: &str) -> Result<(u64, u64, u64), JournalError>;

    /// Pending deliveries and the age of the oldest (first queued, epoch
    /// ms), per instance with an open cursor.
    fn queue_depths(&self) -> Result<Vec<(String, u64, i64)>, JournalError>;

    /// Queues every recorded event of a run again for one instance; returns
    /// how many.
    fn replay_run(&self, tenant: &str, run_id: &str, plugin: &str) -> Result<usize, JournalError>;
}

/// Deliveries given up on.
pub trait DeadLetters: Send + Sync {
    /// Dead letters of a tenant, newest first, optionally of one instance,
    /// before event `before_event`.
    fn dead_letters(
        &self,
        tenant: &str,
        plugin: Option<&str>,
        limit: usize,
        before_event: Option<i64>,
    ) -> Result<Vec<DeadLetter>, JournalError>;

    /// Puts dead letters of a tenant's instance back in the queue (one
    /// event, or all of the instance's); returns how many.
    fn requeue_dead(
        &self,
        tenant: &str,
        plugin: &str,
        event_id: Option<i64>,
    ) -> Result<usize, JournalError>;

    /// Dead letters per (instance, tenant of the event).
    fn dead_counts(&self) -> Result<Vec<(String, String, u64)>, JournalError>;
}

/// The reads behind the query API.
pub trait RunQueries: Send + Sync {
    /// A page of a tenant's runs, newest first, and the key to continue after it.
    fn list_runs(
        &self,
        tenant: &str,
        f: &RunFilter,
    ) -> Result<Page<RunRecord, (i64, String)>, JournalError>;

    /// One run; `None` when the tenant has no such run.
    fn run(
        &self,
        tenant: &str,
        run: &str,
        stale_before_ms: i64,
    ) -> Result<Option<RunRecord>, JournalError>;

    /// A run's host result events in counter order.
    fn run_results(&self, tenant: &str, run: &str) -> Result<Vec<ResultEvent>, JournalError>;

    /// The newest `playbook_on_stats` event of a run: `None` when the
    /// tenant has no such run, `Some(None)` when the run has none.
    fn run_stats(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Option<Option<StoredBody>>, JournalError>;

    /// A page of a run's event bodies in counter order: `None` when the
    /// tenant has no such run.
    fn run_events(
        &self,
        tenant: &str,
        run: &str,
        f: &EventFilter,
    ) -> Result<Option<EventPage>, JournalError>;

    /// A page of a tenant's deliveries in journal order.
    fn deliveries(
        &self,
        tenant: &str,
        f: &DeliveryFilter,
    ) -> Result<Page<DeliveryRecord, (i64, String)>, JournalError>;

    /// Runs with an event since `since_ms` and no stats event yet, per tenant.
    fn active_runs(&self, since_ms: i64) -> Result<Vec<(String, u64)>, JournalError>;
}

/// One stored event with its identity (the event page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub uuid: String,
    pub run_id: String,
    pub counter: i64,
    pub kind: String,
    pub created_ms: i64,
    pub body: String,
}

/// What a run's page shows of one event, without its body: enough for the
/// timeline, the recap and the failures (the run page of a 30,000-event run
/// reads these, not 30,000 bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineRow {
    pub uuid: String,
    pub counter: i64,
    pub kind: String,
    pub created_ms: i64,
    pub host: Option<String>,
    pub play: Option<String>,
    pub task: Option<String>,
    pub task_action: Option<String>,
    /// `event_data.res.changed` of a host result.
    pub changed: bool,
    /// `event_data.ignore_errors` of a host result.
    pub ignored: bool,
    /// The result's message (`msg`, else `stderr`, `reason`), failed and
    /// unreachable results only, at most 2 KiB.
    pub message: Option<String>,
}

/// A host's results in one run (the host page, the host search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRun {
    pub host: String,
    pub run_id: String,
    pub playbook: Option<String>,
    pub ok: u64,
    pub changed: u64,
    pub failed: u64,
    pub unreachable: u64,
    pub skipped: u64,
    pub last_ms: i64,
}

/// A task whose name matched a search, in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHit {
    pub run_id: String,
    pub playbook: Option<String>,
    pub task: String,
    pub play: Option<String>,
    /// The task's start event.
    pub uuid: String,
    pub created_ms: i64,
}

/// Deliveries of one run to one plugin instance, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDeliveryCounts {
    pub plugin: String,
    pub pending: u64,
    pub done: u64,
    pub dead: u64,
}

/// How a run reference (`latest`, a full id or a prefix of one) resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    Found(String),
    NotFound,
    /// The prefix names several runs (the first few of them, newest first).
    Ambiguous(Vec<String>),
}

/// Searches scan at most this many of a tenant's newest events: a search
/// answers in bounded time whatever the journal's size.
pub const SEARCH_SCAN_EVENTS: usize = 200_000;

/// Exploration reads behind the web UI and the CLI: one event, a run's
/// outline, hosts and tasks across runs, a run's deliveries per instance,
/// run references.
pub trait Explore: Send + Sync {
    /// One event of a tenant by uuid.
    fn event(&self, tenant: &str, uuid: &str) -> Result<Option<EventRecord>, JournalError>;

    /// Every event of a run in counter order, without bodies; `None` when
    /// the tenant has no such run.
    fn run_outline(&self, tenant: &str, run: &str)
        -> Result<Option<Vec<OutlineRow>>, JournalError>;

    /// Per run, the results of the hosts whose name contains `pattern`
    /// (case-insensitive; `exact`: the host named `pattern`), newest run
    /// first, among the tenant's newest [`SEARCH_SCAN_EVENTS`] events.
    fn host_runs(
        &self,
        tenant: &str,
        pattern: &str,
        exact: bool,
        limit: usize,
    ) -> Result<Vec<HostRun>, JournalError>;

    /// Tasks whose name contains `pattern` (case-insensitive), newest
    /// first, among the tenant's newest [`SEARCH_SCAN_EVENTS`] events.
    fn search_tasks(
        &self,
        tenant: &str,
        pattern: &str,
        limit: usize,
    ) -> Result<Vec<TaskHit>, JournalError>;

    /// A run's deliveries per plugin instance (routes applied).
    fn run_delivery_counts(
        &self,
        tenant: &str,
        run: &str,
    ) -> Result<Vec<RunDeliveryCounts>, JournalError>;

    /// Resolves `latest` (the newest run), a run id, or a unique prefix of one.
    fn resolve_run(&self, tenant: &str, reference: &str) -> Result<RunRef, JournalError>;

    /// The recorded attempts of the delivery of event `uuid` to `plugin`,
    /// oldest first: `None` when the tenant has no such event.
    fn delivery_attempts(
        &self,
        tenant: &str,
        plugin: &str,
        uuid: &str,
    ) -> Result<Option<(EventRecord, Vec<AttemptRecord>)>, JournalError>;
}

/// The plugin instances' own values, per (tenant, instance).
pub trait PluginState: Send + Sync {
    /// A plugin instance's stored value.
    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
    ) -> Result<Option<String>, JournalError>;

    /// Stores a plugin instance's value now, in a transaction of its own
    /// (tools and tests: a running instance's writes go to the writer with
    /// its outcomes, [`MarkBatch::state`]).
    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
    ) -> Result<(), JournalError>;

    /// Removes a plugin instance's value now (see [`PluginState::state_set`]).
    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<(), JournalError>;

    /// Gives the values an earlier journal kept without a tenant to the
    /// tenant `plugin` serves now; returns how many.
    fn claim_state(&self, tenant: &str, plugin: &str) -> Result<usize, JournalError>;
}

/// Retention, size and health.
pub trait Maintenance: Send + Sync {
    /// Deletes up to `limit` events received before `cutoff_ms` that nothing
    /// still has to deliver or holds as a dead letter; returns the number
    /// removed per tenant.
    fn prune(&self, cutoff_ms: i64, limit: usize) -> Result<BTreeMap<String, u64>, JournalError>;

    /// Makes the space of the rows [`Maintenance::prune`] removed reusable
    /// by new ones, without blocking writers, so that a journal under
    /// retention stops growing. SQLite reuses freed pages by itself.
    fn reclaim(&self) -> Result<(), JournalError> {
        Ok(())
    }

    /// Bytes the journal takes on disk.
    fn size_bytes(&self) -> u64;

    /// Checks that the journal can take a write right now (readiness).
    fn probe_writable(&self) -> Result<(), JournalError>;

    /// How many tenants have committed events held back from delivery for
    /// over a second by a transaction still running elsewhere, and since
    /// when the oldest (epoch ms): PostgreSQL reads only below its oldest
    /// running transaction (see its "Commit order"). SQLite never does.
    fn held_back(&self) -> Option<(usize, i64)> {
        None
    }
}

/// A plugin instance's lease, held by one replica at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The replica holding it.
    pub holder: String,
    /// Grows with every new holder: the fence of the holder's writes.
    pub token: i64,
    /// How long it is valid from when it was claimed or renewed.
    pub ttl_ms: i64,
}

/// A lease as `/ready` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    pub plugin: String,
    pub holder: String,
    pub token: i64,
    /// Epoch ms (the database's clock) when it ends unless renewed.
    pub expires_ms: i64,
}

/// Who delivers for each plugin instance when several hosts (replicas) share
/// one journal: a lease per instance with a TTL, claimed when free or
/// expired, renewed by its holder, and a token that fences the holder's
/// outcome writes ([`MarkBatch::fence`]). A journal only one host can open
/// (SQLite) grants every lease to that host.
pub trait Leases: Send + Sync {
    /// Claims instance `plugin` for `holder` if its lease is free, expired
    /// or `holder`'s already; `None`: another live holder has it.
    fn claim_lease(
        &self,
        plugin: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, JournalError>;

    /// Renews a held lease for another TTL; `false`: it was lost (another
    /// holder took it over after it expired).
    fn renew_lease(&self, plugin: &str, lease: &Lease) -> Result<bool, JournalError>;

    /// Gives a held lease up at once (stop, rebalance).
    fn release_lease(&self, plugin: &str, lease: &Lease) -> Result<(), JournalError>;

    /// Records that replica `holder` is alive (for `ttl_ms`) and returns how
    /// many replicas are: each holds about its share of the leases.
    fn heartbeat(&self, holder: &str, ttl_ms: i64) -> Result<usize, JournalError>;

    /// Every lease (for `/ready`, the metrics and the alert on an instance
    /// no replica holds).
    fn leases(&self) -> Result<Vec<LeaseInfo>, JournalError>;
}

/// Everything the server needs of a journal, as one object-safe trait: a
/// server holds an `Arc<dyn Store>`. The dispatch workers' hot path
/// (`pending`, `send_marks`) may hold the concrete backend instead.
pub trait Store:
    EventLog + DeliveryQueue + DeadLetters + RunQueries + Explore + PluginState + Maintenance + Leases
{
}

impl<
        T: EventLog
            + DeliveryQueue
            + DeadLetters
            + RunQueries
            + Explore
            + PluginState
            + Maintenance
            + Leases,
    > Store for T
{
}

/// A run's deliveries per instance ([`Explore::run_delivery_counts`]),
/// tallied the same way on every backend from two reads: the queue's rows,
/// and the run's events past each cursor's start that have none.
#[derive(Default)]
pub(crate) struct RunTally {
    counts: BTreeMap<String, RunDeliveryCounts>,
    routes: BTreeMap<String, herald_event::routes::Routes>,
}

impl RunTally {
    fn slot(&mut self, plugin: String) -> &mut RunDeliveryCounts {
        self.counts
            .entry(plugin.clone())
            .or_insert_with(|| RunDeliveryCounts {
                plugin,
                ..Default::default()
            })
    }

    /// `n` queue rows of `plugin` in `state`: retries, holds, replays, dead
    /// letters and what became of them.
    pub(crate) fn queued(&mut self, plugin: String, state: &str, n: i64) {
        let c = self.slot(plugin);
        let n = n.max(0) as u64;
        match state {
            "done" => c.done += n,
            "dead" => c.dead += n,
            _ => c.pending += n,
        }
    }

    /// Event `id` of the log without a queue row: delivered at the first
    /// attempt when the cursor (`position`) is past it, else not read yet;
    /// counted only when the instance's routes take it (`body` is given
    /// when the instance has routes), as the deliveries listing does.
    pub(crate) fn logged(
        &mut self,
        plugin: String,
        position: i64,
        routes: &str,
        id: i64,
        body: Option<&str>,
    ) {
        if let Some(body) = body {
            let compiled = self
                .routes
                .entry(plugin.clone())
                .or_insert_with(|| herald_event::routes::Routes::from_json(routes));
            if !compiled.matches_stored(body) {
                return;
            }
        }
        let c = self.slot(plugin);
        if id <= position {
            c.done += 1;
        } else {
            c.pending += 1;
        }
    }

    pub(crate) fn finish(self) -> Vec<RunDeliveryCounts> {
        self.counts.into_values().collect()
    }
}

/// The two halves of a read in event order, the first `limit`, numbered.
pub(crate) fn merge_reads(
    queued: Vec<PendingDelivery>,
    logged: Vec<PendingDelivery>,
    limit: usize,
) -> Vec<PendingDelivery> {
    let mut out = Vec::with_capacity(limit.min(queued.len() + logged.len()));
    let (mut q, mut l) = (queued.into_iter().peekable(), logged.into_iter().peekable());
    while out.len() < limit {
        let next = match (q.peek(), l.peek()) {
            (Some(a), Some(b)) if a.event_id <= b.event_id => q.next(),
            (Some(_), Some(_)) => l.next(),
            (Some(_), None) => q.next(),
            (None, Some(_)) => l.next(),
            (None, None) => None,
        };
        let Some(mut d) = next else { break };
        d.read.row = out.len() as u32 + 1;
        out.push(d);
    }
    out
}
