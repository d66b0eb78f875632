//! The delivery loop of one plugin instance: batches, ordering within a
//! run, retries with backoff, dead letters, held outcomes.

use crate::breaker::{Breaker, Verdict};
use crate::plugin::Plugin;
use herald_config::{FailureCount, RetryPolicy};
use herald_event::routes::{RouteConfig, Routes};
use herald_journal::blocking;
use herald_journal::{
    now_ms, Advance, AttemptRecord, JournalError, Lease, Mark, MarkBatch, MarkOutcome,
    MarksReceipt, PendingDelivery, RequestRecord, SharedStore, StateWrites,
};
use herald_runtime::{bounded, CallError, Outcome, PendingState};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How many pending deliveries a worker reads at a time.
const BATCH: usize = 256;
/// Longest a worker sleeps without looking at the journal again.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Longest reason kept from a plugin's answer (a plugin may return megabytes).
const MAX_REASON: usize = 2048;
/// Outcomes are handed to the journal's writer once the oldest held one is
/// this old (before the next delivery, or while a call still runs), and
/// with the cursor's move at the end of a batch, at most this often while a
/// backlog streams.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// `state` writes held past this many bytes are handed to the writer after
/// the delivery that made them, without waiting for [`FLUSH_EVERY`].
const STATE_SEND_BYTES: usize = 1 << 20;

/// A read of the next batch, running on the blocking pool.
type ReadAhead = JoinHandle<Result<Vec<PendingDelivery>, JournalError>>;

/// What happened to one delivery attempt.
enum Step {
    Done,
    Retry { at_ms: i64 },
}

/// A worker's metric handles, resolved once per worker instead of hashing
/// the label set once per delivery.
struct Meters {
    seconds: prometheus::Histogram,
    ok: prometheus::IntCounter,
    retry: prometheus::IntCounter,
    dead: prometheus::IntCounter,
}

impl Meters {
    fn new(tenant: &str, plugin: &str) -> Meters {
        let m = herald_telemetry::host();
        let outcome = |o: &str| m.deliveries.with_label_values(&[tenant, plugin, o]);
        Meters {
            seconds: m.delivery_seconds.with_label_values(&[tenant, plugin]),
            ok: outcome("ok"),
            retry: outcome("retry"),
            dead: outcome("dead"),
        }
    }
}

/// An outcome handed to the journal's writer and not yet confirmed durable:
/// until then the journal still shows the delivery pending.
enum Unconfirmed {
    /// Done or dead: skip the row.
    Settled,
    /// To be retried at `at_ms`: the run waits behind it.
    Retry { run_id: String, at_ms: i64 },
    /// Held behind an earlier delivery of its run (queued, not attempted).
    Held { run_id: String },
}

/// What a worker carries from one delivery to the next.
struct WorkerCtx {
    /// The instance's name (logs, metrics).
    name: String,
    /// The instance's name and tenant as the plugin's log lines carry them
    /// (shared, not copied, per delivery).
    log_ids: (Arc<str>, Arc<str>),
    /// The delivery stream this worker reads: the instance's name, or
    /// `name#k` for shard k (the journal's cursor and the lease).
    stream: String,
    /// This worker's shard and the instance's shard count.
    shard: u32,
    shards: u32,
    /// The journal's cursor says another shard count (another replica
    /// opened the instance with a different `shards`): deliver nothing.
    mismatched: bool,
    tenant: String,
    policy: RetryPolicy,
    breaker: Arc<Breaker>,
    journal: SharedStore,
    meters: Meters,
    /// Outcomes not yet handed to the journal's writer.
    marks: Vec<Mark>,
    /// When the oldest of `marks` was taken.
    marks_since: Instant,
    /// When outcomes or the cursor's move were last handed to the writer.
    sent_at: Instant,
    /// Outcomes taken but not yet confirmed durable, by event id.
    unconfirmed: HashMap<i64, Unconfirmed>,
    /// The writer's receipts for sent outcomes, oldest first (it commits in
    /// order), with the number of the `state` hand-over that went along (0:
    /// none).
    receipts: VecDeque<(MarksReceipt, Vec<i64>, u64)>,
    /// The instance's `state` writes not yet committed.
    state: Option<PendingState>,
    /// The next batch, read ahead while a backlog streams: (after, read).
    ahead: Option<(i64, ReadAhead)>,
    /// The instance's routes, matched on events read from the log.
    routes: Routes,
    /// The last event of the log this worker has taken care of: every
    /// event of its tenant up to here is delivered, skipped by its routes,
    /// or among `marks` (or sent) as a queue row.
    frontier: i64,
    /// Where the cursor stands once the batches handed to the writer are
    /// committed.
    sent_frontier: i64,
    /// Events from the log delivered at their first attempt since the last
    /// batch was handed over.
    delivered: u64,
    /// The journal's cursor was not where this worker thought (a batch of
    /// outcomes was lost): read it again before going on.
    resync: bool,
    /// The token of this replica's lease on the instance: it fences every
    /// batch of outcomes.
    fence: Option<i64>,
    /// A batch was refused by its fence: the lease is lost.
    fenced: bool,
    /// The call just made, until its outcome is taken: (event id, attempt,
    /// started epoch ms, duration ms, its outbound requests).
    last_call: Option<LastCall>,
    /// Records of attempts not yet handed to the journal's writer.
    attempts: Vec<AttemptRecord>,
}

/// A call whose outcome is not taken yet.
struct LastCall {
    event_id: i64,
    attempt: u32,
    at_ms: i64,
    duration_ms: u64,
    requests: Vec<herald_runtime::OutboundRequest>,
}

/// The journal's record of a call's outbound requests.
fn request_record(r: herald_runtime::OutboundRequest) -> RequestRecord {
    RequestRecord {
        method: r.method,
        url: r.url,
        status: r.status,
        latency_ms: r.latency_ms,
        body: String::from_utf8_lossy(&r.body).into_owned(),
        error: r.error.map(|e| bounded(&e, 1024)),
    }
}

impl WorkerCtx {
    /// Takes the outcome of an attempt of `d`.
    fn mark(&mut self, d: &PendingDelivery, attempts: u32, outcome: MarkOutcome) {
        if self.marks.is_empty() {
            self.marks_since = Instant::now();
        }
        let state = match &outcome {
            MarkOutcome::Done | MarkOutcome::Dead { .. } => Unconfirmed::Settled,
            MarkOutcome::Retry { next_at_ms, .. } => Unconfirmed::Retry {
                run_id: d.run_id.clone(),
                at_ms: *next_at_ms,
            },
            MarkOutcome::Hold => Unconfirmed::Held {
                run_id: d.run_id.clone(),
            },
        };
        if !d.queued && outcome == MarkOutcome::Done {
            self.delivered += 1;
        }
        // What the attempt sent and what came back: kept when it made
        // requests or did not succeed (a plain success is the delivery's
        // `done` already).
        if let Some(call) = self.last_call.take_if(|c| c.event_id == d.event_id) {
            let (name, message) = match &outcome {
                MarkOutcome::Done => ("ok", None),
                MarkOutcome::Retry { error, .. } => ("retry", Some(bounded(error, 2048))),
                MarkOutcome::Dead { error } => ("dead", Some(bounded(error, 2048))),
                MarkOutcome::Hold => ("held", None),
            };
            if !call.requests.is_empty() || name != "ok" {
                self.attempts.push(AttemptRecord {
                    event_id: call.event_id,
                    attempt: call.attempt,
                    at_ms: call.at_ms,
                    duration_ms: call.duration_ms,
                    outcome: name.to_string(),
                    message,
                    requests: call.requests.into_iter().map(request_record).collect(),
                });
            }
        }
        self.unconfirmed.insert(d.event_id, state);
        self.marks.push(Mark {
            queued: d.queued,
            event_id: d.event_id,
            first_at_ms: d.first_at_ms,
            attempts,
            outcome,
            read: Some(d.read),
        });
    }

    /// Dead-letters a delivery of another tenant's event without calling the
    /// plugin: the instance name now belongs to this worker's tenant. The
    /// event's own tenant sees it in its dead letters and can requeue it
    /// once an instance of that name is its own again.
    fn disown(&mut self, d: &PendingDelivery, owner: &str) {
        let reason = format!(
            "not delivered: plugin instance {:?} was moved from tenant {owner:?} to tenant {:?} by a configuration reload; \
             requeue it once {:?} belongs to {owner:?} again, or replay the run to another instance",
            self.name, self.tenant, self.name
        );
        tracing::warn!(plugin = %self.name, tenant = %owner, instance_tenant = %self.tenant,
            event_id = d.event_id, "delivery dead-lettered: {reason}");
        herald_telemetry::host()
            .deliveries
            .with_label_values(&[owner, &*self.name, "dead"])
            .inc();
        self.mark(d, d.attempts, MarkOutcome::Dead { error: reason });
    }

    /// Hands the outcomes taken so far to the journal's writer (it does not
    /// wait for the commit). If the journal refuses them, the deliveries stay
    /// pending and are made again: at least once.
    fn send(&mut self) {
        let state = self.state.as_ref().and_then(PendingState::take);
        if self.marks.is_empty() && self.frontier == self.sent_frontier && state.is_none() {
            return;
        }
        let (state_n, state) = match state {
            Some((n, writes)) => (
                n,
                Some(StateWrites {
                    tenant: self.tenant.clone(),
                    plugin: self.name.clone(),
                    writes,
                }),
            ),
            None => (0, None),
        };
        self.sent_at = Instant::now();
        let marks = std::mem::take(&mut self.marks);
        let ids: Vec<i64> = marks.iter().map(|m| m.event_id).collect();
        let advance = (self.frontier > self.sent_frontier).then(|| Advance {
            from: self.sent_frontier,
            to: self.frontier,
            delivered: std::mem::take(&mut self.delivered),
            shards: self.shards,
        });
        self.sent_frontier = self.frontier;
        match self.journal.send_marks(
            &self.stream,
            MarkBatch {
                fence: self.fence,
                marks,
                advance,
                attempts: std::mem::take(&mut self.attempts),
                state,
            },
        ) {
            Ok(receipt) => self.receipts.push_back((receipt, ids, state_n)),
            Err(e) => self.forget(&ids, &e.to_string()),
        }
    }

    /// Takes an event of the log as handled: the cursor may move past it.
    fn taken(&mut self, d: &PendingDelivery) {
        if !d.queued {
            self.frontier = self.frontier.max(d.event_id);
        }
    }

    fn forget(&mut self, ids: &[i64], error: &str) {
        tracing::error!(plugin = %self.name, tenant = %self.tenant,
            "cannot record {} delivery outcomes; those deliveries will be made again: {error}", ids.len());
        for id in ids {
            self.unconfirmed.remove(id);
        }
        // Later batches may have been refused with it: start again from
        // where the journal's cursor is.
        self.resync = true;
    }

    /// Reads the cursor again after a lost batch: everything since is read
    /// (and delivered) again, at least once.
    async fn resync(&mut self) -> Result<(), JournalError> {
        self.send();
        self.confirm(true).await;
        let stream = self.stream.clone();
        let at = blocking(&self.journal, move |j| j.cursor_at(&stream)).await?;
        self.mismatched = at.is_none_or(|at| at.shards != self.shards);
        let position = at.map_or(self.sent_frontier, |at| at.position);
        self.frontier = position;
        self.sent_frontier = position;
        self.delivered = 0;
        self.unconfirmed.clear();
        // The deliveries after the cursor are made again, and write again.
        self.discard_state();
        self.ahead = None;
        self.resync = false;
        Ok(())
    }

    fn discard_state(&self) {
        if let Some(s) = &self.state {
            s.discard();
        }
    }

    /// Takes the receipts the writer has answered.
    fn reap(&mut self) {
        use tokio::sync::oneshot::error::TryRecvError;
        while let Some((receipt, _, _)) = self.receipts.front_mut() {
            let answer = match receipt.try_recv() {
                Err(TryRecvError::Empty) => return,
                Ok(answer) => answer,
                Err(TryRecvError::Closed) => Err(JournalError::Task(
                    "the journal writer dropped the outcomes".into(),
                )),
            };
            let Some((_, ids, state_n)) = self.receipts.pop_front() else {
                return;
            };
            self.answered(&ids, state_n, answer);
        }
    }

    /// Takes the writer's answer for a batch of outcomes.
    fn answered(
        &mut self,
        ids: &[i64],
        state_n: u64,
        answer: Result<herald_journal::MarksWritten, JournalError>,
    ) {
        match answer {
            Ok(written) => {
                for id in ids {
                    self.unconfirmed.remove(id);
                }
                // A fenced batch wrote nothing, its state writes neither.
                if state_n > 0 && !written.fenced {
                    if let Some(s) = &self.state {
                        s.committed(state_n);
                    }
                }
                if written.fenced {
                    self.fenced = true;
                } else if !written.advanced {
                    self.resync = true;
                }
            }
            Err(e) => self.forget(ids, &e.to_string()),
        }
    }

    /// Waits for the oldest receipt (all of them with `all`). Not to be
    /// raced in a `select!`: a dropped receipt would hide its deliveries.
    async fn confirm(&mut self, all: bool) {
        while let Some((receipt, ids, state_n)) = self.receipts.pop_front() {
            match receipt.await {
                Ok(answer) => self.answered(&ids, state_n, answer),
                Err(_) => self.forget(&ids, "the journal writer dropped the outcomes"),
            }
            if !all {
                return;
            }
        }
    }

    /// Reads the next pending deliveries, with enough room for the rows
    /// whose outcome is not confirmed yet; also says whether the read was
    /// full (more may be waiting).
    async fn read(&mut self, after: i64) -> Result<(Vec<PendingDelivery>, bool), JournalError> {
        self.reap();
        let limit = if after == 0 {
            // Whole batches, so that the journal keeps a few statements.
            BATCH * (1 + self.unconfirmed.len().min(4 * BATCH).div_ceil(BATCH))
        } else {
            BATCH
        };
        let rows = match self.ahead.take() {
            // A read ahead from elsewhere (the scan restarted) is dropped.
            Some((from, task)) if from == after && after != 0 => task
                .await
                .map_err(|e| JournalError::Task(e.to_string()))??,
            _ => {
                let (plugin, tenant) = (self.stream.clone(), self.tenant.clone());
                blocking(&self.journal, move |j| {
                    j.pending(&plugin, &tenant, after, limit)
                })
                .await?
            }
        };
        let full = rows.len() == limit;
        Ok((rows, full))
    }

    /// Starts reading the batch after event `after` on the blocking pool,
    /// for the next [`WorkerCtx::read`] from there.
    fn read_ahead(&mut self, after: i64) {
        let (plugin, tenant, journal) = (
            self.stream.clone(),
            self.tenant.clone(),
            self.journal.clone(),
        );
        let task =
            tokio::task::spawn_blocking(move || journal.pending(&plugin, &tenant, after, BATCH));
        self.ahead = Some((after, task));
    }
}

/// What a worker is started with besides its plugin.
pub(crate) struct WorkerArgs {
    /// The instance's sink pacing, shared by its shards.
    pub pacer: Option<Arc<crate::pacing::Pacer>>,
    /// This worker's shard of the instance, and how many it has.
    pub shard: u32,
    pub shards: u32,
    pub policy: RetryPolicy,
    pub routes: Vec<RouteConfig>,
    /// Where the stream's cursor stands, if the dispatcher opened it
    /// (otherwise the worker opens the instance's streams).
    pub position: Option<i64>,
    pub breaker: Arc<Breaker>,
    pub journal: SharedStore,
    pub notify: Arc<Notify>,
    pub stop: watch::Receiver<bool>,
    pub replica: crate::replica::Replica,
}

/// This replica's hold on the instance's lease, on its own clock.
struct Held {
    lease: Lease,
    /// Past this, the lease may have ended: stop delivering.
    valid_until: Instant,
    /// When to renew it (a third of the TTL after the last claim or renewal).
    renew_at: Instant,
}

impl Held {
    fn new(lease: Lease, asked: Instant) -> Held {
        let ttl = Duration::from_millis(lease.ttl_ms.max(0) as u64);
        Held {
            lease,
            // A fifth of the TTL to spare: stop well before it ends.
            valid_until: asked + ttl - ttl / 5,
            renew_at: asked + ttl / 3,
        }
    }

    fn renewed(&mut self, asked: Instant) {
        let ttl = Duration::from_millis(self.lease.ttl_ms.max(0) as u64);
        self.valid_until = asked + ttl - ttl / 5;
        self.renew_at = asked + ttl / 3;
    }
}

/// Claims the instance's lease for this replica, trying again every third
/// of the TTL while another replica holds it, until it is this replica's or
/// the worker is stopped.
/// Gives the stream's lease up (the caller took it off this replica's
/// count), waits a whole TTL so another replica may take it, and claims it
/// again; `None`: stopped meanwhile.
async fn step_aside(
    w: &mut WorkerCtx,
    stream: &str,
    held: &Held,
    replica: &crate::replica::Replica,
    stop: &mut watch::Receiver<bool>,
) -> Option<Held> {
    let (n, lease) = (stream.to_string(), held.lease.clone());
    let _ = blocking(&w.journal, move |j| j.release_lease(&n, &lease)).await;
    herald_telemetry::host()
        .lease_held
        .with_label_values(&[stream])
        .set(0);
    w.ahead = None;
    tokio::select! {
        _ = tokio::time::sleep(replica.lease_ttl) => {}
        _ = stop.changed() => {}
    }
    if *stop.borrow() {
        return None;
    }
    let held = acquire_lease(&w.journal, stream, replica, stop).await?;
    w.fence = Some(held.lease.token);
    w.resync = true;
    Some(held)
}

async fn acquire_lease(
    journal: &SharedStore,
    name: &str,
    replica: &crate::replica::Replica,
    stop: &mut watch::Receiver<bool>,
) -> Option<Held> {
    let ttl = replica.lease_ttl;
    let mut waiting_logged = false;
    // Every replica exports the series, so "no replica holds it" is a query.
    herald_telemetry::host()
        .lease_held
        .with_label_values(&[name])
        .set(0);
    loop {
        let asked = Instant::now();
        let (n, h, ms) = (
            name.to_string(),
            replica.holder.to_string(),
            ttl.as_millis() as i64,
        );
        match blocking(journal, move |j| j.claim_lease(&n, &h, ms)).await {
            Ok(Some(lease)) => {
                replica.share.held.fetch_add(1, Ordering::SeqCst);
                herald_telemetry::host()
                    .lease_held
                    .with_label_values(&[name])
                    .set(1);
                tracing::info!(plugin = %name, replica = %replica.holder, token = lease.token,
                    "this replica holds the instance's lease and delivers for it");
                return Some(Held::new(lease, asked));
            }
            Ok(None) => {
                if !waiting_logged {
                    tracing::info!(plugin = %name, replica = %replica.holder,
                        "another replica holds the instance's lease; this one takes over if it expires");
                    waiting_logged = true;
                }
            }
            Err(e) => {
                tracing::error!(plugin = %name, "cannot claim the instance's lease: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return None;
        }
    }
}

/// Renews the lease when it is due. `false`: the lease is lost (taken over,
/// or not renewable before it ends on this replica's clock).
async fn keep_lease(journal: &SharedStore, name: &str, held: &mut Held) -> bool {
    if Instant::now() < held.renew_at {
        return Instant::now() < held.valid_until;
    }
    let asked = Instant::now();
    let (n, lease) = (name.to_string(), held.lease.clone());
    match blocking(journal, move |j| j.renew_lease(&n, &lease)).await {
        Ok(true) => {
            held.renewed(asked);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(plugin = %name, "cannot renew the instance's lease: {e}");
            // Try again in a second, while the lease is still valid.
            held.renew_at = Instant::now() + Duration::from_secs(1);
            Instant::now() < held.valid_until
        }
    }
}

/// Opens the instance's streams and returns where shard `shard`'s stands,
/// trying again every second until they open or the worker is stopped.
async fn open_cursor(
    journal: &SharedStore,
    name: &str,
    tenant: &str,
    routes: &[RouteConfig],
    (shard, shards): (u32, u32),
    stop: &mut watch::Receiver<bool>,
) -> Option<i64> {
    loop {
        let (n, t, r) = (name.to_string(), tenant.to_string(), routes.to_vec());
        match blocking(journal, move |j| j.open_streams(&n, &t, &r, shards)).await {
            Ok(positions) => return Some(positions.get(shard as usize).copied().unwrap_or(0)),
            Err(e) => {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot open the instance's cursor over the journal: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return None;
        }
    }
}

pub(crate) async fn run_worker<P: Plugin>(mut instance: P, args: WorkerArgs) {
    let WorkerArgs {
        pacer,
        shard,
        shards,
        policy,
        routes,
        position,
        breaker,
        journal,
        notify,
        mut stop,
        replica,
    } = args;
    let name = instance.name().to_string();
    let tenant = instance.tenant().to_string();
    let position = match position {
        Some(p) => p,
        None => match open_cursor(
            &journal,
            &name,
            &tenant,
            &routes,
            (shard, shards),
            &mut stop,
        )
        .await
        {
            Some(p) => p,
            None => return,
        },
    };
    let compiled = Routes::compile(&routes).unwrap_or_else(|errors| {
        // The configuration was checked when it loaded; deliver everything
        // rather than nothing if it somehow was not.
        tracing::error!(plugin = %name, tenant = %tenant, ?errors, "invalid routes; delivering every event");
        Routes::default()
    });
    let stream = herald_event::shard::stream_name(&name, shard);
    // Reads go on from `cursor` (the last event read) while a backlog
    // streams, and start again from the oldest pending delivery (0) once
    // the worker has caught up; `blocked_runs` and `earliest` hold across
    // the reads of one such scan, so a run waiting for a retry stays in order.
    let mut cursor: i64 = 0;
    let mut blocked_runs: HashSet<String> = HashSet::new();
    let mut earliest: Option<i64> = None;
    let Some(mut held) = acquire_lease(&journal, &stream, &replica, &mut stop).await else {
        return;
    };
    // Opened before the lease was ours: another replica may have moved the
    // cursor since; read it again.
    let mut w = WorkerCtx {
        fence: Some(held.lease.token),
        fenced: false,
        meters: Meters::new(&tenant, &name),
        log_ids: (Arc::from(name.as_str()), Arc::from(tenant.as_str())),
        name: name.clone(),
        stream: stream.clone(),
        shard,
        shards,
        mismatched: false,
        tenant: tenant.clone(),
        policy,
        breaker: breaker.clone(),
        journal,
        marks: Vec::new(),
        marks_since: Instant::now(),
        sent_at: Instant::now(),
        unconfirmed: HashMap::new(),
        receipts: VecDeque::new(),
        ahead: None,
        routes: compiled,
        frontier: position,
        sent_frontier: position,
        delivered: 0,
        resync: true,
        last_call: None,
        attempts: Vec::new(),
        state: instance.pending_state(),
    };
    loop {
        if Instant::now() >= held.renew_at && replica.share.shed_one() {
            // More than this replica's share since another joined: finish
            // what is in hand, give the lease up, and let the newcomer take
            // it (this worker waits a whole TTL before it claims again).
            w.send();
            w.confirm(true).await;
            herald_telemetry::host()
                .lease_events
                .with_label_values(&["released"])
                .inc();
            tracing::info!(plugin = %name, replica = %replica.holder,
                "this replica holds more than its share of the instances; it gives this one up for another replica");
            match step_aside(&mut w, &stream, &held, &replica, &mut stop).await {
                Some(h) => held = h,
                None => return,
            }
            continue;
        }
        if w.fenced || !keep_lease(&w.journal, &stream, &mut held).await {
            replica.share.held.fetch_sub(1, Ordering::SeqCst);
            let m = herald_telemetry::host();
            m.lease_held.with_label_values(&[&stream]).set(0);
            m.lease_events.with_label_values(&["lost"]).inc();
            tracing::warn!(plugin = %name, replica = %replica.holder, token = held.lease.token,
                "this replica lost the instance's lease and stops delivering for it (another replica takes over)");
            // Nothing of what it has not written yet can be written now.
            w.marks.clear();
            w.receipts.clear();
            w.unconfirmed.clear();
            w.discard_state();
            w.ahead = None;
            w.fenced = false;
            match acquire_lease(&w.journal, &stream, &replica, &mut stop).await {
                Some(h) => held = h,
                None => return,
            }
            w.fence = Some(held.lease.token);
            w.resync = true;
        }
        if w.resync {
            if let Err(e) = w.resync().await {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot read the instance's cursor: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            cursor = 0;
        }
        if w.mismatched {
            // Another replica opened the instance with another shard count:
            // its streams are not this worker's to deliver. Give the lease
            // up and wait for a reload that agrees (or for the other
            // replica to go back to this count).
            tracing::warn!(plugin = %name, stream = %stream, shards,
                "the journal has this instance with another shard count (another replica's configuration); this replica delivers nothing for this shard until its configuration agrees");
            replica.share.held.fetch_sub(1, Ordering::SeqCst);
            match step_aside(&mut w, &stream, &held, &replica, &mut stop).await {
                Some(h) => held = h,
                None => return,
            }
            continue;
        }
        if *stop.borrow() {
            w.send();
            w.confirm(true).await;
            // Another replica may take over at once.
            let (n, lease) = (stream.clone(), held.lease.clone());
            if blocking(&w.journal, move |j| j.release_lease(&n, &lease))
                .await
                .is_ok()
            {
                herald_telemetry::host()
                    .lease_events
                    .with_label_values(&["released"])
                    .inc();
            }
            replica.share.held.fetch_sub(1, Ordering::SeqCst);
            herald_telemetry::host()
                .lease_held
                .with_label_values(&[&stream])
                .set(0);
            tracing::info!(plugin = %name, tenant = %tenant, "plugin instance stopped");
            return;
        }
        if let Some(until) = breaker.paused_until() {
            w.send();
            cursor = 0;
            let wait = Duration::from_millis((until - now_ms()).max(0) as u64);
            // Wakes to renew the lease meanwhile.
            let renew = held.renew_at.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(wait.min(renew)) => if now_ms() >= until { breaker.start_probe() },
                _ = stop.changed() => {}
            }
            continue;
        }
        if cursor == 0 {
            // A scan from the first pending delivery starts afresh.
            blocked_runs.clear();
            earliest = None;
        }
        let (batch, full) = match w.read(cursor).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot read pending deliveries: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let (true, Some(last)) = (full, batch.last()) {
            // While this batch is delivered, the next one is read on the
            // other core.
            w.read_ahead(last.event_id);
        }
        let mut progressed = false;
        let mut paused = false;
        let mut waiting_on_writer = false;
        for d in batch {
            if *stop.borrow() || w.fenced || Instant::now() >= held.valid_until {
                break;
            }
            cursor = d.event_id;
            if d.passed_over {
                // Its queue row is delivered (or was) from the queue.
                w.taken(&d);
                continue;
            }
            if w.shards > 1 && herald_event::shard::shard_of(&d.run_id, w.shards) != w.shard {
                // Another shard's run (the shards share the log and the
                // instance's queue).
                w.taken(&d);
                continue;
            }
            match w.unconfirmed.get(&d.event_id) {
                Some(Unconfirmed::Settled) => {
                    waiting_on_writer = true;
                    w.taken(&d);
                    continue;
                }
                Some(Unconfirmed::Retry { run_id, at_ms }) => {
                    earliest = Some(earliest.map_or(*at_ms, |e| e.min(*at_ms)));
                    blocked_runs.insert(run_id.clone());
                    w.taken(&d);
                    continue;
                }
                Some(Unconfirmed::Held { run_id }) => {
                    blocked_runs.insert(run_id.clone());
                    w.taken(&d);
                    continue;
                }
                None => {}
            }
            // Routes are matched when an event is read, not at ingest.
            if !d.queued && !w.routes.matches_stored(&d.body) {
                w.taken(&d);
                continue;
            }
            if let Some(owner) = &d.foreign_tenant {
                // Another tenant's event, queued while the instance name
                // belonged to that tenant: never handed to this tenant's
                // plugin (see docs/configuration.md, "Moving an instance").
                w.disown(&d, owner);
                progressed = true;
                continue;
            }
            if blocked_runs.contains(&d.run_id) {
                if !d.queued {
                    // Queued behind its run's earlier delivery, so the
                    // cursor can move on for the other runs.
                    w.mark(&d, 0, MarkOutcome::Hold);
                    w.taken(&d);
                }
                continue;
            }
            let now = now_ms();
            if d.next_at_ms > now {
                earliest = Some(earliest.map_or(d.next_at_ms, |e| e.min(d.next_at_ms)));
                blocked_runs.insert(d.run_id.clone());
                continue;
            }
            if let Some(pacer) = pacer.as_ref() {
                crate::pacing::paced(pacer).await;
            }
            if !w.marks.is_empty() && w.marks_since.elapsed() >= FLUSH_EVERY {
                w.send();
            }
            // Every log line of the delivery carries the ids of the ingest
            // request that brought the event, and the run's id: the lines
            // are logged in its span, made only when a line is (not per
            // delivery: see herald_telemetry::delivery_log).
            instance.set_delivery_log(delivery_log(&w, &d));
            let (step, verdict) = deliver(&mut instance, &mut w, &d).await;
            w.taken(&d);
            if w.state
                .as_ref()
                .is_some_and(|s| s.unsent_bytes() > STATE_SEND_BYTES)
            {
                w.send();
            }
            match step {
                Step::Done => progressed = true,
                Step::Retry { at_ms } => {
                    earliest = Some(earliest.map_or(at_ms, |e| e.min(at_ms)));
                    blocked_runs.insert(d.run_id.clone());
                }
            }
            if breaker.record(verdict) {
                paused = true;
                break;
            }
        }
        let retry_due = earliest.is_some_and(|at| at <= now_ms());
        let streaming = full && !paused && !retry_due;
        if !streaming || w.sent_at.elapsed() >= FLUSH_EVERY {
            // While a backlog streams, one write of the cursor's move per
            // FLUSH_EVERY rather than one per batch: 60 instances' cursor
            // writes otherwise compete with ingest for the journal (and a
            // restart re-delivers at most that much more, at least once).
            w.send();
        }
        if paused {
            cursor = 0;
            continue;
        }
        if streaming {
            // More deliveries wait after this batch: read on from here
            // (runs blocked behind a retry stay blocked meanwhile).
            continue;
        }
        // Everything pending was seen (or a retry is due): the next read
        // starts again from the oldest pending delivery.
        cursor = 0;
        if full || retry_due {
            continue;
        }
        if (waiting_on_writer || !w.receipts.is_empty()) && !progressed {
            // Everything due was delivered (or passed over: another shard's
            // runs, unrouted events) but the outcomes or the cursor's move
            // are not committed yet: wait for the writer rather than read
            // the same rows again or sleep until the next commit.
            w.confirm(false).await;
            continue;
        }
        let wait = earliest
            .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL)
            .min(held.renew_at.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One delivery attempt, with its exported `delivery` span (a child of the
/// ingest span of the request that brought the event, in the same trace;
/// disabled, so free, when no exporter is installed).
async fn deliver<P: Plugin>(
    instance: &mut P,
    w: &mut WorkerCtx,
    d: &PendingDelivery,
) -> (Step, Verdict) {
    use herald_telemetry::context;
    let span = match (d.trace_id.as_deref(), d.span_id.as_deref()) {
        (Some(trace_id), Some(span_id)) => {
            let span = tracing::info_span!(target: context::TARGET, "delivery",
                herald.plugin = %w.name, herald.tenant = %w.tenant, herald.run_id = %d.run_id,
                herald.event_id = d.event_id, herald.attempt = i64::from(d.attempts) + 1,
                herald.outcome = tracing::field::Empty);
            if !span.is_disabled() {
                if let Some(parent) = context::remote_parent(trace_id, span_id) {
                    context::set_parent(&span, parent);
                }
            }
            span
        }
        _ => tracing::Span::none(),
    };
    let mut outcome: (&'static str, Option<String>) = ("ok", None);
    let result = attempt_delivery(instance, w, d, &mut outcome).await;
    if !span.is_disabled() {
        let (outcome, reason) = outcome;
        span.record("herald.outcome", outcome);
        if let Some(reason) = reason.filter(|_| outcome != "ok") {
            context::set_error(&span, reason);
        }
    }
    result
}

/// Awaits a plugin call; if it is still running when the oldest held
/// outcome turns [`FLUSH_EVERY`] old, hands the held outcomes to the writer
/// meanwhile, so a slow sink does not keep earlier deliveries `pending`.
async fn call_sending_held<F: std::future::Future>(call: F, w: &mut WorkerCtx) -> F::Output {
    let mut call = std::pin::pin!(call);
    // Most calls finish in their first poll; only a call that waits pays
    // for a timer.
    let first = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    if let Some(out) = first {
        return out;
    }
    if !w.marks.is_empty() {
        let due = tokio::time::Instant::from_std(w.marks_since + FLUSH_EVERY);
        tokio::select! {
            out = call.as_mut() => return out,
            _ = tokio::time::sleep_until(due) => w.send(),
        }
    }
    call.await
}

async fn attempt_delivery<P: Plugin>(
    instance: &mut P,
    w: &mut WorkerCtx,
    d: &PendingDelivery,
    outcome: &mut (&'static str, Option<String>),
) -> (Step, Verdict) {
    let policy = w.policy;
    let attempt = d.attempts + 1;
    let age_ms = now_ms() - d.first_at_ms;
    if d.attempts > 0 && age_ms > policy.max_age_ms as i64 {
        let reason = format!(
            "gave up after {} attempts: older than max_age_ms ({} ms)",
            d.attempts, policy.max_age_ms
        );
        *outcome = ("dead", Some(reason.clone()));
        dead_letter(w, d, d.attempts, reason);
        return (Step::Done, Verdict::Neutral);
    }
    let started = Instant::now();
    let at_ms = now_ms();
    let report = call_sending_held(instance.deliver(&d.body, attempt), w).await;
    let (result, faults) = (report.result, report.faults);
    w.meters.seconds.observe(started.elapsed().as_secs_f64());
    w.last_call = Some(LastCall {
        event_id: d.event_id,
        attempt,
        at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        requests: report.requests,
    });
    let (name, tenant) = (&w.name, &w.tenant);
    // Each fault is counted and logged once, here.
    for f in &faults {
        herald_telemetry::host()
            .plugin_faults
            .with_label_values(&[tenant.as_str(), name.as_str(), f.reason])
            .inc();
        delivery_log(w, d).span().in_scope(|| {
            tracing::warn!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
            reason = f.reason, times = f.times,
            "plugin fault ({}); the instance is discarded and re-created for the next call: {}",
            f.reason, f.message)
        });
        w.breaker.note_fault(f.reason, &f.message);
    }
    let faulted = !faults.is_empty();
    let failure_counts = w.breaker.policy.count == FailureCount::Failures;
    let fault_reason = result.as_ref().err().map(CallError::reason);
    // Whether `delay` is the sink's own `Retry-After`.
    let asked = matches!(&result, Ok(Outcome::Retryable(r)) if r.retry_after_ms.is_some());
    let (reason, delay, verdict) = match result {
        Ok(Outcome::Ok) => {
            w.meters.ok.inc();
            if tracing::enabled!(tracing::Level::DEBUG) {
                delivery_log(w, d)
                    .span()
                    .in_scope(|| tracing::debug!(event_id = d.event_id, attempt, "delivered"));
            }
            w.mark(d, attempt, MarkOutcome::Done);
            let verdict = if faulted {
                Verdict::Failure
            } else {
                Verdict::Success
            };
            return (Step::Done, verdict);
        }
        Ok(Outcome::Permanent(reason)) => {
            *outcome = ("dead", Some(bounded(&reason, MAX_REASON)));
            let reason = format!("permanent failure: {}", bounded(&reason, MAX_REASON));
            dead_letter(w, d, attempt, reason);
            let verdict = if faulted {
                Verdict::Failure
            } else {
                Verdict::Neutral
            };
            return (Step::Done, verdict);
        }
        Ok(Outcome::Retryable(r)) => {
            let verdict = if faulted || failure_counts {
                Verdict::Failure
            } else {
                Verdict::Neutral
            };
            (
                bounded(&r.reason, MAX_REASON),
                r.retry_after_ms.map(Duration::from_millis),
                verdict,
            )
        }
        Err(fault) => {
            if let CallError::Configure(_) = fault {
                // A refused configuration will not change by retrying sooner.
                (
                    fault.to_string(),
                    Some(Duration::from_millis(policy.max_ms)),
                    Verdict::Failure,
                )
            } else {
                (fault.to_string(), None, Verdict::Failure)
            }
        }
    };
    if attempt >= policy.max_attempts {
        *outcome = ("dead", Some(reason.clone()));
        dead_letter(
            w,
            d,
            attempt,
            format!("gave up after {attempt} attempts: {reason}"),
        );
        return (Step::Done, verdict);
    }
    let delay = match (asked, delay) {
        (true, Some(wanted)) => {
            // A sink's `Retry-After` is honoured only within what is left of
            // `max_age_ms` (beyond it the event would be too old when tried
            // again) and within `max_retry_after_ms`.
            let left_ms = (policy.max_age_ms as i64 - (now_ms() - d.first_at_ms)).max(0) as u64;
            let wanted_ms = u64::try_from(wanted.as_millis()).unwrap_or(u64::MAX);
            if wanted_ms > left_ms {
                let reason = format!(
                    "gave up after {attempt} attempts: the sink asked to retry in {} (Retry-After), later than the {} left of retry.max_age_ms ({} ms): {reason}",
                    human_ms(wanted_ms),
                    human_ms(left_ms),
                    policy.max_age_ms
                );
                *outcome = ("dead", Some(reason.clone()));
                dead_letter(w, d, attempt, reason);
                return (Step::Done, verdict);
            }
            if wanted_ms > policy.max_retry_after_ms {
                delivery_log(w, d).span().in_scope(|| tracing::info!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
                    asked_ms = wanted_ms, max_retry_after_ms = policy.max_retry_after_ms,
                    "the sink's Retry-After is longer than retry.max_retry_after_ms; waiting that long instead"));
            }
            Some(Duration::from_millis(
                wanted_ms.min(policy.max_retry_after_ms),
            ))
        }
        (_, delay) => delay,
    };
    w.meters.retry.inc();
    *outcome = ("retry", Some(reason.clone()));
    let delay = delay.unwrap_or_else(|| policy.backoff(attempt));
    let at_ms = now_ms() + delay.as_millis() as i64;
    delivery_log(w, d).span().in_scope(|| match fault_reason {
        // The fault itself was logged above, with its message.
        Some(f) => tracing::info!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
            retry_in_ms = delay.as_millis() as u64, "delivery will be retried after a plugin fault ({f})"),
        None => tracing::info!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
            retry_in_ms = delay.as_millis() as u64, "delivery will be retried: {reason}"),
    });
    w.mark(
        d,
        attempt,
        MarkOutcome::Retry {
            next_at_ms: at_ms,
            error: reason,
        },
    );
    (Step::Retry { at_ms }, verdict)
}

/// The ids `d`'s log lines carry: handed to the plugin instance for the
/// call, and the span of the worker's own lines about it.
fn delivery_log(w: &WorkerCtx, d: &PendingDelivery) -> herald_telemetry::DeliveryLog {
    herald_telemetry::DeliveryLog {
        plugin: w.log_ids.0.clone(),
        tenant: w.log_ids.1.clone(),
        run_id: d.run_id.clone(),
        event_id: d.event_id,
        request_id: d.request_id.clone(),
        trace_id: d.trace_id.clone(),
    }
}

/// A duration for people: `750 ms`, `42 s`, `3 h 5 min`, `11574 days`.
fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=9_999 => format!("{ms} ms"),
        10_000..=599_999 => format!("{s} s"),
        600_000..=86_399_999 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86_400),
    }
}

fn dead_letter(w: &mut WorkerCtx, d: &PendingDelivery, attempt: u32, reason: String) {
    w.meters.dead.inc();
    delivery_log(w, d).span().in_scope(|| {
        tracing::warn!(plugin = %w.name, tenant = %w.tenant, event_id = d.event_id, attempt,
        "delivery dead-lettered: {reason}")
    });
    w.mark(d, attempt, MarkOutcome::Dead { error: reason });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_on_char_boundaries() {
        let s = "é".repeat(3000);
        let b = bounded(&s, MAX_REASON);
        assert!(b.len() < MAX_REASON + 40, "{}", b.len());
        assert!(b.ends_with("more bytes]"));
        assert_eq!(bounded("short", 10), "short");
    }
}

/// The worker loop against a real (temporary) journal, with scripted plugins.
#[cfg(test)]
mod worker_tests {
    use super::*;
    use crate::registry::Dispatcher;
    use herald_config::PluginConfig;
    use herald_journal::prelude::*;
    use herald_journal::Journal;
    use herald_runtime::CallReport;
    use serde_json::{json, Value};
    use std::future::Future;
    use std::sync::Mutex;

    /// The calls a scripted plugin recorded: (uuid, attempt).
    type Calls = Arc<Mutex<Vec<(String, u32)>>>;

    /// What a scripted plugin answers: by the event's uuid and the attempt.
    type Answer = Box<dyn Fn(&str, u32) -> Result<Outcome, CallError> + Send>;

    /// A plugin that records every call (uuid, attempt) and answers by
    /// script; its siblings (shards) share the record and the script.
    struct Script {
        name: String,
        tenant: String,
        calls: Calls,
        answer: Arc<Mutex<Answer>>,
        /// Each call writes `seen:<uuid>` = its attempt to the instance's
        /// state, as a plugin's `state.set` would.
        state: PendingState,
    }

    impl Plugin for Script {
        fn name(&self) -> &str {
            &self.name
        }

        fn tenant(&self) -> &str {
            &self.tenant
        }

        fn sibling(&self) -> Self {
            Script {
                name: self.name.clone(),
                tenant: self.tenant.clone(),
                calls: self.calls.clone(),
                answer: self.answer.clone(),
                state: PendingState::default(),
            }
        }

        fn pending_state(&self) -> Option<PendingState> {
            Some(self.state.clone())
        }

        fn deliver<'a>(
            &'a mut self,
            body: &'a str,
            attempt: u32,
        ) -> impl Future<Output = CallReport> + Send + 'a {
            let uuid = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["uuid"].as_str().map(str::to_string))
                .unwrap_or_default();
            let result = (self.answer.lock().unwrap_or_else(|p| p.into_inner()))(&uuid, attempt);
            self.state
                .write(format!("seen:{uuid}"), Some(attempt.to_string()));
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((uuid, attempt));
            std::future::ready(CallReport {
                result,
                faults: Vec::new(),
                requests: Vec::new(),
            })
        }
    }

    fn journal(name: &str) -> Journal {
        let dir = std::env::temp_dir().join(format!("herald-worker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Journal::open(&dir.join("j.db")).expect("a temporary journal opens")
    }

    fn event(uuid: &str, run: &str, counter: u64) -> herald_event::WireEvent {
        herald_event::validate(
            json!({"uuid": uuid, "event": "runner_on_ok", "counter": counter,
            "created": "2026-01-01T00:00:00", "run_id": run,
            "event_data": {"playbook": "p.yml", "host": "h"}}),
        )
        .expect("a valid event")
    }

    fn config(extra: &str) -> PluginConfig {
        toml::from_str(&format!("tenant = \"t\"\ncomponent = \"p.wasm\"\n{extra}"))
            .expect("a valid plugin config")
    }

    /// A dispatcher running one scripted instance `p` of tenant `t`.
    fn start(j: &Journal, extra: &str, answer: Answer) -> (Dispatcher, Calls) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let d = Dispatcher::start(Vec::new(), Arc::new(j.clone()));
        let script = Script {
            name: "p".into(),
            tenant: "t".into(),
            calls: calls.clone(),
            answer: Arc::new(Mutex::new(answer)),
            state: PendingState::default(),
        };
        d.add_plugin(script, "test", config(extra), String::new());
        (d, calls)
    }

    fn commit(j: &Journal, events: &[herald_event::WireEvent]) {
        j.commit_batch("t", events).expect("the batch commits");
    }

    /// Waits (at most 10 s) until the instance has nothing pending and
    /// every outcome is written; returns (pending, done, dead).
    async fn settled(j: &Journal, done_and_dead: u64) -> (u64, u64, u64) {
        let mut counts = (0, 0, 0);
        for _ in 0..200 {
            counts = j.delivery_counts("p").expect("counts");
            if counts.0 == 0 && counts.1 + counts.2 >= done_and_dead {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        counts
    }

    fn calls(c: &Arc<Mutex<Vec<(String, u32)>>>) -> Vec<(String, u32)> {
        c.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Each shard's stream runs on one of the dispatcher's executors, the
    /// least loaded, and stays there: with two single-thread executors, an
    /// instance's two shards deliver on both threads, and each run's events
    /// (one shard's) on one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_are_spread_over_the_executors() {
        let j = journal("placed");
        let executors = crate::registry::test_executors();
        let threads: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let seen = threads.clone();
        let answer: Answer = Box::new(move |uuid, _| {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            let run = uuid.split('-').next().unwrap_or_default().to_string();
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((run, name));
            Ok(Outcome::Ok)
        });
        let d = Dispatcher::start_replica(
            Vec::new(),
            Arc::new(j.clone()),
            executors,
            crate::replica::Replica::default(),
        );
        let script = Script {
            name: "p".into(),
            tenant: "t".into(),
            calls: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
            state: PendingState::default(),
        };
        d.add_plugin(script, "test", config("shards = 2"), String::new());
        let events: Vec<_> = (0..40)
            .map(|i| {
                let run = format!("r{}", i % 8);
                event(&format!("{run}-{i:02}"), &run, i)
            })
            .collect();
        commit(&j, &events);
        assert_eq!(settled(&j, 40).await, (0, 40, 0));
        d.shutdown(Duration::from_secs(5)).await;
        let threads = threads.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(threads.len(), 40);
        let names: std::collections::BTreeSet<&str> =
            threads.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            names,
            ["executor-0", "executor-1"].into(),
            "both shards' streams ran, one on each executor: {threads:?}"
        );
        for run in (0..8).map(|k| format!("r{k}")) {
            let on: std::collections::BTreeSet<&str> = threads
                .iter()
                .filter(|(r, _)| *r == run)
                .map(|(_, t)| t.as_str())
                .collect();
            assert_eq!(on.len(), 1, "run {run} stayed on one thread: {threads:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_every_event_once_in_run_order() {
        let j = journal("order");
        let (d, calls_made) = start(&j, "", Box::new(|_, _| Ok(Outcome::Ok)));
        let events: Vec<_> = (1..=40)
            .map(|i| {
                event(
                    &format!("{}-{i:02}", if i % 2 == 0 { "a" } else { "b" }),
                    if i % 2 == 0 { "a" } else { "b" },
                    i,
                )
            })
            .collect();
        commit(&j, &events);
        assert_eq!(settled(&j, 40).await, (0, 40, 0));
        d.shutdown(Duration::from_secs(5)).await;
        let made = calls(&calls_made);
        assert_eq!(
            made.len(),
            40,
            "each event handed over exactly once: {made:?}"
        );
        for run in ["a", "b"] {
            let seen: Vec<&str> = made
                .iter()
                .map(|(u, _)| u.as_str())
                .filter(|u| u.starts_with(run))
                .collect();
            let mut sorted = seen.clone();
            sorted.sort();
            assert_eq!(seen, sorted, "run {run} delivered in journal order");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_holds_its_run_back_while_other_runs_go_on() {
        let j = journal("retry");
        // a-1's first attempt fails; everything else succeeds.
        let (d, calls_made) = start(
            &j,
            "[retry]\ninitial_ms = 300\nmax_ms = 300\n",
            Box::new(|uuid, attempt| {
                if uuid == "a-1" && attempt == 1 {
                    Err(CallError::Trap("scripted".into()))
                } else {
                    Ok(Outcome::Ok)
                }
            }),
        );
        commit(
            &j,
            &[
                event("a-1", "a", 1),
                event("a-2", "a", 2),
                event("b-1", "b", 3),
                event("b-2", "b", 4),
            ],
        );
        assert_eq!(settled(&j, 4).await, (0, 4, 0));
        d.shutdown(Duration::from_secs(5)).await;
        let made = calls(&calls_made);
        let at = |u: &str, n: u32| made.iter().position(|c| c.0 == u && c.1 == n);
        assert_eq!(made.iter().filter(|c| c.0 == "a-1").count(), 2, "{made:?}");
        let retried = at("a-1", 2).expect("a-1 tried again");
        assert!(
            at("a-2", 1).expect("a-2 delivered") > retried,
            "a-2 waits for a-1: {made:?}"
        );
        assert!(
            at("b-2", 1).expect("b-2 delivered") < retried,
            "run b does not wait: {made:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn permanent_answers_and_spent_attempts_become_dead_letters() {
        let j = journal("dead");
        let (d, calls_made) = start(
            &j,
            "[retry]\ninitial_ms = 10\nmax_ms = 10\nmax_attempts = 3\n",
            Box::new(|uuid, _| match uuid {
                "x" => Ok(Outcome::Permanent("the sink refused it".into())),
                "y" => Err(CallError::Trap("always".into())),
                _ => Ok(Outcome::Ok),
            }),
        );
        commit(
            &j,
            &[
                event("x", "r1", 1),
                event("y", "r2", 2),
                event("z", "r3", 3),
            ],
        );
        assert_eq!(settled(&j, 3).await, (0, 1, 2));
        d.shutdown(Duration::from_secs(5)).await;
        let made = calls(&calls_made);
        assert_eq!(
            made.iter().filter(|c| c.0 == "x").count(),
            1,
            "a permanent answer is not retried"
        );
        assert_eq!(
            made.iter().filter(|c| c.0 == "y").count(),
            3,
            "max_attempts calls"
        );
        let dead = j
            .dead_letters("t", Some("p"), 10, None)
            .expect("dead letters");
        let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("permanent failure: the sink refused it")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("gave up after 3 attempts")),
            "{reasons:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_wakes_an_idle_worker_at_once() {
        let j = journal("wake");
        let (d, calls_made) = start(&j, "", Box::new(|_, _| Ok(Outcome::Ok)));
        // Let the worker find nothing and go idle (it would poll again in IDLE_POLL).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let committed = Instant::now();
        commit(&j, &[event("late", "r", 1)]);
        assert_eq!(settled(&j, 1).await, (0, 1, 0));
        assert!(
            committed.elapsed() < IDLE_POLL / 2,
            "woken by the journal's commit notice, not by the idle poll ({:?})",
            committed.elapsed()
        );
        d.shutdown(Duration::from_secs(5)).await;
        assert_eq!(calls(&calls_made).len(), 1);
    }

    /// Routes are matched when the worker reads: the instance gets only
    /// what they match, and its cursor moves past the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routes_are_matched_when_the_worker_reads() {
        let j = journal("routes");
        let (d, calls_made) = start(
            &j,
            "[[routes]]\nhosts = [\"web*\"]\n",
            Box::new(|_, _| Ok(Outcome::Ok)),
        );
        let on = |uuid: &str, host: &str, counter| {
            herald_event::validate(
                json!({"uuid": uuid, "event": "runner_on_ok", "counter": counter,
                "created": "2026-01-01T00:00:00", "run_id": "r",
                "event_data": {"playbook": "p.yml", "host": host}}),
            )
            .expect("a valid event")
        };
        commit(
            &j,
            &[on("w1", "web1", 1), on("d1", "db1", 2), on("w2", "web2", 3)],
        );
        assert_eq!(settled(&j, 2).await, (0, 2, 0));
        d.shutdown(Duration::from_secs(5)).await;
        let made: Vec<String> = calls(&calls_made).into_iter().map(|c| c.0).collect();
        assert_eq!(made, ["w1", "w2"]);
        let last = j.pending("p", "t", 0, 10).expect("a read");
        assert!(
            last.is_empty(),
            "the cursor is past the skipped event: {last:?}"
        );
    }

    /// An instance's state writes are committed with the outcomes of the
    /// deliveries that made them, a retried delivery's with its retry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_writes_commit_with_their_deliveries_outcomes() {
        let j = journal("state");
        let (d, _) = start(
            &j,
            "[retry]\ninitial_ms = 50\nmax_ms = 50\n",
            Box::new(|uuid, attempt| {
                if uuid == "e7" && attempt == 1 {
                    Err(CallError::Trap("scripted".into()))
                } else {
                    Ok(Outcome::Ok)
                }
            }),
        );
        let batch: Vec<_> = (1..=30).map(|i| event(&format!("e{i}"), "r", i)).collect();
        commit(&j, &batch);
        assert_eq!(settled(&j, 30).await, (0, 30, 0));
        d.shutdown(Duration::from_secs(5)).await;
        for i in 1..=30 {
            let want = if i == 7 { "2" } else { "1" };
            assert_eq!(
                j.state_get("t", "p", &format!("seen:e{i}"))
                    .expect("a read"),
                Some(want.to_string()),
                "e{i}"
            );
        }
    }

    /// A restarted instance goes on from its cursor: nothing it delivered
    /// (and recorded) is delivered again, what came meanwhile is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_instance_goes_on_from_its_cursor() {
        let j = journal("restart");
        let (d, first) = start(&j, "", Box::new(|_, _| Ok(Outcome::Ok)));
        let batch: Vec<_> = (1..=30).map(|i| event(&format!("e{i}"), "r", i)).collect();
        commit(&j, &batch);
        assert_eq!(settled(&j, 30).await, (0, 30, 0));
        d.shutdown(Duration::from_secs(5)).await;
        assert_eq!(calls(&first).len(), 30);
        commit(&j, &[event("later", "r", 31)]);
        let (d, second) = start(&j, "", Box::new(|_, _| Ok(Outcome::Ok)));
        assert_eq!(settled(&j, 31).await, (0, 31, 0));
        d.shutdown(Duration::from_secs(5)).await;
        assert_eq!(calls(&second), vec![("later".to_string(), 1)]);
        // No row per delivery: only the cursor moved.
        let (rows, _) = j
            .deliveries(
                "t",
                &herald_journal::DeliveryFilter {
                    state: Some(herald_journal::DeliveryState::Pending),
                    limit: 100,
                    ..Default::default()
                },
            )
            .expect("the listing");
        assert!(rows.is_empty(), "{rows:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_tenants_queued_event_is_dead_lettered_not_delivered() {
        let j = journal("foreign");
        // Committed for `p` while `p` served tenant `u`...
        j.open_cursor("p", "u", &[]).expect("a cursor");
        j.commit_batch("u", &[event("theirs", "r", 1)])
            .expect("commit");
        // ...and `p` now serves `t`.
        let (d, calls_made) = start(&j, "", Box::new(|_, _| Ok(Outcome::Ok)));
        commit(&j, &[event("mine", "r2", 2)]);
        assert_eq!(settled(&j, 2).await, (0, 1, 1));
        d.shutdown(Duration::from_secs(5)).await;
        let made = calls(&calls_made);
        assert_eq!(
            made,
            vec![("mine".to_string(), 1)],
            "tenant u's event never reached t's plugin"
        );
        let dead = j
            .dead_letters("u", Some("p"), 10, None)
            .expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].reason.contains("was moved from tenant \"u\""),
            "{}",
            dead[0].reason
        );
    }

    /// Every run's events, in the order they were committed.
    fn by_run(events: &[herald_event::WireEvent]) -> Vec<(String, Vec<String>)> {
        let mut runs: Vec<(String, Vec<String>)> = Vec::new();
        for e in events {
            let run = e.run_id.clone();
            let uuid = e.uuid.clone();
            match runs.iter_mut().find(|(r, _)| *r == run) {
                Some((_, v)) => v.push(uuid),
                None => runs.push((run, vec![uuid])),
            }
        }
        runs
    }

    /// Asserts every event was delivered and each run's first deliveries
    /// came in commit order; returns how many calls were duplicates.
    fn every_event_in_run_order(runs: &[(String, Vec<String>)], made: &[(String, u32)]) -> usize {
        let mut first: Vec<&str> = Vec::new();
        for (u, _) in made {
            if !first.contains(&u.as_str()) {
                first.push(u);
            }
        }
        for (run, uuids) in runs {
            let seen: Vec<&str> = first
                .iter()
                .copied()
                .filter(|u| uuids.iter().any(|x| x == u))
                .collect();
            let want: Vec<&str> = uuids.iter().map(String::as_str).collect();
            assert_eq!(
                seen, want,
                "run {run}: every event, first deliveries in order"
            );
        }
        made.len() - first.len()
    }

    fn many_runs(from: u64, count: u64) -> Vec<herald_event::WireEvent> {
        (from..from + count)
            .map(|i| event(&format!("e{i:04}"), &format!("run-{}", i % 9), i))
            .collect()
    }

    /// Three shards of one instance: each run goes to one shard (so its
    /// order holds), every event is delivered once, and the counts add the
    /// shards up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shards_split_runs_and_keep_each_runs_order() {
        let j = journal("shards");
        let (d, calls_made) = start(&j, "shards = 3\n", Box::new(|_, _| Ok(Outcome::Ok)));
        let events = many_runs(1, 90);
        commit(&j, &events);
        assert_eq!(settled(&j, 90).await, (0, 90, 0));
        d.shutdown(Duration::from_secs(5)).await;
        let made = calls(&calls_made);
        assert_eq!(
            every_event_in_run_order(&by_run(&events), &made),
            0,
            "{made:?}"
        );
        for k in 0..3 {
            let stream = herald_event::shard::stream_name("p", k);
            let at = j
                .cursor_at(&stream)
                .expect("a read")
                .expect("a stream per shard");
            assert_eq!(at.shards, 3, "{stream}");
        }
    }

    /// Changing the shard count (3 → 2 → 4) between runs of the host,
    /// with events committed while it is down, loses nothing: the new
    /// streams start where the slowest old one was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_shard_count_loses_nothing() {
        let j = journal("reshard");
        let mut all = Vec::new();
        let mut made = Vec::new();
        let mut from = 1;
        for shards in [3, 2, 4, 1] {
            let (d, calls_made) = start(
                &j,
                &format!("shards = {shards}\n"),
                Box::new(|_, _| Ok(Outcome::Ok)),
            );
            let events = many_runs(from, 45);
            from += 45;
            commit(&j, &events);
            all.extend(events);
            let total = all.len() as u64;
            assert_eq!(settled(&j, total).await.0, 0, "{shards} shards drain");
            d.shutdown(Duration::from_secs(5)).await;
            made.extend(calls(&calls_made));
            // Streams beyond the new count are gone.
            let gone = herald_event::shard::stream_name("p", shards);
            assert!(j.cursor_at(&gone).expect("a read").is_none(), "{gone}");
        }
        let duplicates = every_event_in_run_order(&by_run(&all), &made);
        assert!(duplicates <= all.len(), "{duplicates} duplicates");
    }

    /// Replaces instance `p` as a configuration reload does, with `extra`
    /// config and a script of its own; returns the new instance's calls.
    fn reload(d: &Dispatcher, extra: &str, answer: Answer) -> Arc<Mutex<Vec<(String, u32)>>> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        d.add_plugin(
            Script {
                name: "p".into(),
                tenant: "t".into(),
                calls: calls.clone(),
                answer: Arc::new(Mutex::new(answer)),
                state: PendingState::default(),
            },
            "test",
            config(extra),
            String::new(),
        );
        calls
    }

    /// A reload that replaces an instance while it delivers: the new worker
    /// starts once the old one has finished its call, never beside it (both
    /// at once delivered a run's events out of order, and twice).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reloaded_instance_never_delivers_beside_the_old_one() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let j = journal("reload-handover");
        let (busy, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let slow = || -> Answer {
            let (busy, most) = (busy.clone(), most.clone());
            Box::new(move |_, _| {
                most.fetch_max(busy.fetch_add(1, SeqCst) + 1, SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                busy.fetch_sub(1, SeqCst);
                Ok(Outcome::Ok)
            })
        };
        let (d, first) = start(&j, "", slow());
        let events: Vec<_> = (1..=40)
            .map(|i| event(&format!("a-{i:02}"), "a", i))
            .collect();
        commit(&j, &events);
        tokio::time::sleep(Duration::from_millis(110)).await;
        let second = reload(&d, "[retry]\ninitial_ms = 300\n", slow());
        assert_eq!(settled(&j, 40).await.0, 0);
        d.shutdown(Duration::from_secs(5)).await;
        let (old, new) = (calls(&first), calls(&second));
        assert!(
            old.len() < 40 && !new.is_empty(),
            "the reload came while delivering: {} then {}",
            old.len(),
            new.len()
        );
        assert_eq!(most.load(SeqCst), 1, "two workers delivered at once");
        let made: Vec<(String, u32)> = old.into_iter().chain(new).collect();
        // The old worker recorded its outcomes before the new one read.
        let duplicates = every_event_in_run_order(&by_run(&events), &made);
        assert_eq!(duplicates, 0, "delivered twice: {made:?}");
    }

    /// A reload that changes the shard count while the old shards are still
    /// delivering loses nothing: their late cursor moves are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_to_another_shard_count_while_delivering_loses_nothing() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let j = journal("reload-shards");
        // The first instance holds its 31st call until the reload is made,
        // so the reload comes while its three shards are delivering however
        // late the runtime's timers fire on a loaded machine (a 60 ms sleep
        // once fired after all 150 were delivered).
        let (started, reloaded) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (n, gate) = (started.clone(), reloaded.clone());
        let held: Answer = Box::new(move |_, _| {
            if n.fetch_add(1, SeqCst) >= 30 {
                for _ in 0..400 {
                    if gate.load(SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
            Ok(Outcome::Ok)
        });
        let slow: Answer = Box::new(|_, _| {
            std::thread::sleep(Duration::from_millis(5));
            Ok(Outcome::Ok)
        });
        let (d, first) = start(&j, "shards = 3\n", held);
        let early = many_runs(1, 150);
        commit(&j, &early);
        // Part of the way through, the instance comes back with 2 shards.
        for _ in 0..1000 {
            if started.load(SeqCst) > 30 {
                break;
            }
            // A plain sleep: this is the test's own thread, and a runtime
            // timer needs a worker that is free to drive it.
            std::thread::sleep(Duration::from_millis(5));
        }
        let second = reload(&d, "shards = 2\n", slow);
        reloaded.store(true, SeqCst);
        let late = many_runs(151, 60);
        commit(&j, &late);
        let mut all: Vec<String> = early.iter().chain(&late).map(|e| e.uuid.clone()).collect();
        all.sort();
        assert_eq!(settled(&j, 210).await.0, 0);
        d.shutdown(Duration::from_secs(5)).await;
        let mut made = calls(&first);
        assert!(
            made.len() < 150,
            "the reload came while delivering: {}",
            made.len()
        );
        made.extend(calls(&second));
        let mut seen: Vec<&str> = made.iter().map(|(u, _)| u.as_str()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, all, "every event delivered at least once");
    }
}
