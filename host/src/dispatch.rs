//! Delivery: one worker per plugin instance takes the instance's pending
//! deliveries from the journal, in journal order, and calls the plugin.
//!
//! Within a run, events are delivered in order: once an event of a run waits
//! for a retry, the run's later events wait behind it. Other runs go on.
//! Retries use the instance's policy (exponential backoff with full jitter),
//! or exactly the delay the plugin asked for (`Retry-After`); after
//! `max_attempts`, or on a permanent failure, the delivery is dead-lettered.
//!
//! Each worker has a circuit breaker (the instance's `failure_policy`): after
//! `open_after` consecutive failed calls the instance is paused for a while
//! (its deliveries wait in the journal and use no attempts), then one delivery
//! probes it; success closes the breaker, failure pauses it again for twice as
//! long. The state is the `herald_plugin_state` gauge, log lines, and the
//! `state`/`breaker` of `GET /v1/plugins`.

use crate::config::{FailureCount, FailurePolicy, PluginConfig, RetryPolicy, SinkRateLimit};
use crate::event::WireEvent;
use crate::journal::{now_ms, Journal, JournalError, PendingDelivery};
use crate::routes::Routes;
use crate::runtime::{bounded, convert, CallError, Outcome, PluginInstance};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How many pending deliveries a worker reads at a time.
const BATCH: usize = 256;
/// Longest a worker sleeps without looking at the journal again.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Longest reason kept from a plugin's answer (a plugin may return megabytes).
const MAX_REASON: usize = 2048;

/// What an instance is doing, as its breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Delivering (breaker closed).
    Running,
    /// Paused after repeated failures (breaker open): deliveries wait.
    Paused,
    /// The pause is over: the next delivery is a probe (breaker half-open).
    Probing,
}

impl InstanceState {
    const ALL: [InstanceState; 3] = [Self::Running, Self::Paused, Self::Probing];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Probing => "probing",
        }
    }
}

/// The last fault of an instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastFault {
    pub reason: &'static str,
    pub message: String,
    pub at_ms: i64,
}

/// A snapshot of an instance's breaker, for `GET /v1/plugins`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakerStatus {
    pub state: InstanceState,
    /// Failed calls in a row (see `failure_policy.count`).
    pub consecutive_failures: u32,
    /// How many times the breaker opened since the instance started.
    pub opened: u64,
    /// When the pause ends (epoch ms), while paused.
    pub paused_until_ms: Option<i64>,
    /// Length of the current (or next) pause.
    pub pause_ms: u64,
    /// Faults since the instance started.
    pub faults: u64,
    pub last_fault: Option<LastFault>,
}

/// How one call counts for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    /// Neither (a permanent answer without a fault; a retryable answer when only faults count).
    Neutral,
}

/// The circuit breaker of one worker (`failure_policy`).
pub struct Breaker {
    policy: FailurePolicy,
    tenant: String,
    plugin: String,
    status: Mutex<BreakerStatus>,
}

impl Breaker {
    fn new(policy: FailurePolicy, tenant: &str, plugin: &str) -> Breaker {
        let b = Breaker {
            status: Mutex::new(BreakerStatus {
                state: InstanceState::Running,
                consecutive_failures: 0,
                opened: 0,
                paused_until_ms: None,
                pause_ms: policy.pause_ms,
                faults: 0,
                last_fault: None,
            }),
            policy,
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
        };
        b.publish(InstanceState::Running);
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the `herald_plugin_state` gauge: 1 for `state`, 0 for the others.
    fn publish(&self, state: InstanceState) {
        for s in InstanceState::ALL {
            metrics::gauge!("herald_plugin_state", "tenant" => self.tenant.clone(),
                "plugin" => self.plugin.clone(), "state" => s.as_str())
            .set(if s == state { 1.0 } else { 0.0 });
        }
    }

    /// Clears the gauge when the worker stops.
    fn retire(&self) {
        for s in InstanceState::ALL {
            metrics::gauge!("herald_plugin_state", "tenant" => self.tenant.clone(),
                "plugin" => self.plugin.clone(), "state" => s.as_str())
            .set(0.0);
        }
    }

    pub fn status(&self) -> BreakerStatus {
        self.lock().clone()
    }

    fn note_fault(&self, reason: &'static str, message: &str) {
        let mut s = self.lock();
        s.faults += 1;
        s.last_fault = Some(LastFault {
            reason,
            message: message.to_string(),
            at_ms: now_ms(),
        });
    }

    /// While paused: when the pause ends.
    fn paused_until(&self) -> Option<i64> {
        let s = self.lock();
        (s.state == InstanceState::Paused)
            .then_some(s.paused_until_ms)
            .flatten()
    }

    /// The pause is over: the next delivery probes the instance.
    fn start_probe(&self) {
        let mut s = self.lock();
        if s.state == InstanceState::Paused {
            s.state = InstanceState::Probing;
            s.paused_until_ms = None;
            drop(s);
            self.publish(InstanceState::Probing);
            tracing::info!(plugin = %self.plugin, tenant = %self.tenant,
                "circuit breaker half-open: the next delivery probes the plugin instance");
        }
    }

    /// Records one call; true when the instance is now paused.
    fn record(&self, verdict: Verdict) -> bool {
        let mut s = self.lock();
        let was = s.state;
        match verdict {
            Verdict::Success | Verdict::Neutral if was == InstanceState::Probing => {
                s.state = InstanceState::Running;
                s.consecutive_failures = 0;
                s.pause_ms = self.policy.pause_ms;
                drop(s);
                self.publish(InstanceState::Running);
                tracing::info!(plugin = %self.plugin, tenant = %self.tenant,
                    "circuit breaker closed: the probe succeeded, the plugin instance delivers again");
                false
            }
            Verdict::Success => {
                s.consecutive_failures = 0;
                false
            }
            Verdict::Neutral => false,
            Verdict::Failure => {
                s.consecutive_failures += 1;
                let open = if was == InstanceState::Probing {
                    s.pause_ms = (s.pause_ms.saturating_mul(2)).min(self.policy.max_pause_ms);
                    true
                } else {
                    self.policy.open_after > 0 && s.consecutive_failures >= self.policy.open_after
                };
                if !open {
                    return false;
                }
                let pause = s.pause_ms;
                s.state = InstanceState::Paused;
                s.paused_until_ms = Some(now_ms() + pause as i64);
                s.opened += 1;
                let failures = s.consecutive_failures;
                let last = s
                    .last_fault
                    .as_ref()
                    .map(|f| format!("{}: {}", f.reason, f.message))
                    .unwrap_or_else(|| "retryable answers".into());
                drop(s);
                self.publish(InstanceState::Paused);
                metrics::counter!("herald_plugin_breaker_opened_total",
                    "tenant" => self.tenant.clone(), "plugin" => self.plugin.clone())
                .increment(1);
                tracing::warn!(plugin = %self.plugin, tenant = %self.tenant, consecutive_failures = failures,
                    pause_ms = pause, last_fault = %last,
                    "circuit breaker open: plugin instance paused after {failures} failed calls in a row; its deliveries wait");
                true
            }
        }
    }
}

/// A plugin instance ready to run, with what the dispatcher needs to know of it.
pub struct WorkerSpec {
    pub instance: PluginInstance,
    pub config: PluginConfig,
    /// sha256 of the component file: a changed file is a changed instance.
    pub component_sha256: String,
    pub routes: Routes,
}

/// The running workers, by plugin instance name. Workers can be added and
/// stopped while ingest goes on (configuration reload).
pub struct Dispatcher {
    journal: Journal,
    workers: Mutex<BTreeMap<String, Worker>>,
}

struct Worker {
    tenant: String,
    breaker: Arc<Breaker>,
    config: PluginConfig,
    component_sha256: String,
    routes: Arc<Routes>,
    notify: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        for w in self.lock().values() {
            w.task.abort();
        }
    }
}

impl Dispatcher {
    /// Starts one worker per instance.
    pub fn start(specs: Vec<WorkerSpec>, journal: Journal) -> Dispatcher {
        let d = Dispatcher {
            journal,
            workers: Mutex::new(BTreeMap::new()),
        };
        for spec in specs {
            d.add(spec);
        }
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a worker; a running worker of the same name is stopped first
    /// (it finishes the delivery it is in).
    pub fn add(&self, spec: WorkerSpec) {
        let name = spec.instance.spec().name.to_string();
        let tenant = spec.instance.spec().tenant.to_string();
        let notify = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let breaker = Arc::new(Breaker::new(
            spec.config.failure_policy.clone(),
            &tenant,
            &name,
        ));
        let task = tokio::spawn(run_worker(
            spec.instance,
            spec.config.rate_limit.clone(),
            spec.config.retry.clone(),
            breaker.clone(),
            self.journal.clone(),
            notify.clone(),
            stopped,
        ));
        let worker = Worker {
            tenant,
            breaker,
            config: spec.config,
            component_sha256: spec.component_sha256,
            routes: Arc::new(spec.routes),
            notify,
            stop,
            task,
        };
        if let Some(old) = self.lock().insert(name, worker) {
            let _ = old.stop.send(true);
        }
    }

    /// Stops a worker after its current delivery. Its pending deliveries stay
    /// in the journal and resume if an instance of the same name comes back.
    pub fn remove(&self, name: &str) -> bool {
        match self.lock().remove(name) {
            Some(w) => {
                let _ = w.stop.send(true);
                w.breaker.retire();
                true
            }
            None => false,
        }
    }

    /// Whether a running worker has exactly this configuration and component.
    pub fn is_unchanged(&self, name: &str, config: &PluginConfig, component_sha256: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|w| &w.config == config && w.component_sha256 == component_sha256)
    }

    /// The breaker state of a running worker.
    pub fn status(&self, name: &str) -> Option<BreakerStatus> {
        self.lock().get(name).map(|w| w.breaker.status())
    }

    /// Names of the running workers.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// For each event, the instances of `tenant` whose routes match it.
    pub fn targets(&self, tenant: &str, events: &[WireEvent]) -> Vec<Vec<String>> {
        let workers = self.lock();
        let mine: Vec<(&String, &Arc<Routes>)> = workers
            .iter()
            .filter(|(_, w)| w.tenant == tenant)
            .map(|(n, w)| (n, &w.routes))
            .collect();
        events
            .iter()
            .map(|e| {
                mine.iter()
                    .filter(|(_, r)| r.matches(e))
                    .map(|(n, _)| (*n).clone())
                    .collect()
            })
            .collect()
    }

    /// Wakes the workers of a tenant after a commit.
    pub fn notify_tenant(&self, tenant: &str) {
        for w in self.lock().values().filter(|w| w.tenant == tenant) {
            w.notify.notify_one();
        }
    }

    /// Wakes one worker (for example after a dead letter was re-queued).
    pub fn notify(&self, name: &str) {
        if let Some(w) = self.lock().get(name) {
            w.notify.notify_one();
        }
    }
}

async fn blocking<T: Send + 'static>(
    journal: &Journal,
    f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    let j = journal.clone();
    match tokio::task::spawn_blocking(move || f(&j)).await {
        Ok(r) => r,
        Err(e) => Err(JournalError::Task(e.to_string())),
    }
}

/// A token bucket pacing one instance's calls to its sink.
struct Bucket {
    limit: SinkRateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: SinkRateLimit) -> Self {
        Bucket {
            tokens: limit.burst,
            limit,
            at: Instant::now(),
        }
    }

    /// Waits until a call may go.
    async fn take(&mut self) {
        loop {
            let now = Instant::now();
            self.tokens = (self.tokens
                + now.duration_since(self.at).as_secs_f64() * self.limit.per_second)
                .min(self.limit.burst);
            self.at = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.limit.per_second;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// What happened to one delivery attempt.
enum Step {
    Done,
    Retry { at_ms: i64 },
}

async fn run_worker(
    mut instance: PluginInstance,
    rate_limit: Option<SinkRateLimit>,
    policy: RetryPolicy,
    breaker: Arc<Breaker>,
    journal: Journal,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let name = instance.spec().name.to_string();
    let tenant = instance.spec().tenant.to_string();
    let mut bucket = rate_limit.map(Bucket::new);
    loop {
        if *stop.borrow() {
            tracing::info!(plugin = %name, tenant = %tenant, "plugin instance stopped");
            return;
        }
        if let Some(until) = breaker.paused_until() {
            let wait = Duration::from_millis((until - now_ms()).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => breaker.start_probe(),
                _ = stop.changed() => {}
            }
            continue;
        }
        let plugin = name.clone();
        let batch = match blocking(&journal, move |j| j.pending(&plugin, BATCH)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot read pending deliveries: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let full = batch.len() == BATCH;
        let mut blocked_runs: HashSet<String> = HashSet::new();
        let mut earliest: Option<i64> = None;
        let mut progressed = false;
        let mut paused = false;
        for d in batch {
            if *stop.borrow() {
                break;
            }
            if blocked_runs.contains(&d.run_id) {
                continue;
            }
            let now = now_ms();
            if d.next_at_ms > now {
                earliest = Some(earliest.map_or(d.next_at_ms, |e| e.min(d.next_at_ms)));
                blocked_runs.insert(d.run_id.clone());
                continue;
            }
            if let Some(bucket) = bucket.as_mut() {
                bucket.take().await;
            }
            // Every log line of the delivery carries the ids of the ingest
            // request that brought the event, and the run's id.
            let span = tracing::info_span!("delivery",
                plugin = %name, tenant = %tenant, run_id = %d.run_id,
                delivery_id = %format!("{}:{}", d.event_id, name),
                request_id = d.request_id.as_deref().unwrap_or(""),
                trace_id = d.trace_id.as_deref().unwrap_or(""));
            let (step, verdict) = deliver(&mut instance, &policy, &breaker, &journal, &d)
                .instrument(span)
                .await;
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
        if paused || (full && progressed) {
            continue;
        }
        let wait = earliest
            .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
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

/// One delivery attempt, with its OTLP `delivery` span (a child of the
/// ingest span of the request that brought the event, in the same trace).
async fn deliver(
    instance: &mut PluginInstance,
    policy: &RetryPolicy,
    breaker: &Breaker,
    journal: &Journal,
    d: &PendingDelivery,
) -> (Step, Verdict) {
    let started_ns = crate::otlp::now_ns();
    let mut outcome: (&'static str, Option<String>) = ("ok", None);
    let result = attempt_delivery(instance, policy, breaker, journal, d, &mut outcome).await;
    if let (true, Some(trace_id)) = (crate::otlp::enabled(), d.trace_id.as_deref()) {
        let spec = instance.spec();
        let (outcome, reason) = outcome;
        crate::otlp::emit(
            "delivery",
            crate::otlp::Kind::Internal,
            trace_id,
            &crate::otlp::new_span_id(),
            d.span_id.as_deref(),
            started_ns,
            crate::otlp::now_ns(),
            vec![
                ("herald.plugin".into(), spec.name.to_string().into()),
                ("herald.tenant".into(), spec.tenant.to_string().into()),
                ("herald.run_id".into(), d.run_id.clone().into()),
                ("herald.event_id".into(), d.event_id.into()),
                ("herald.attempt".into(), (d.attempts + 1).into()),
                ("herald.outcome".into(), outcome.into()),
            ],
            reason.filter(|_| outcome != "ok"),
        );
    }
    result
}

async fn attempt_delivery(
    instance: &mut PluginInstance,
    policy: &RetryPolicy,
    breaker: &Breaker,
    journal: &Journal,
    d: &PendingDelivery,
    outcome: &mut (&'static str, Option<String>),
) -> (Step, Verdict) {
    let spec = instance.spec();
    let (name, tenant) = (spec.name.to_string(), spec.tenant.to_string());
    let attempt = d.attempts + 1;
    let age_ms = now_ms() - d.first_at_ms;
    if d.attempts > 0 && age_ms > policy.max_age_ms as i64 {
        let reason = format!(
            "gave up after {} attempts: older than max_age_ms ({} ms)",
            d.attempts, policy.max_age_ms
        );
        *outcome = ("dead", Some(reason.clone()));
        dead_letter(journal, &tenant, &name, d, d.attempts, &reason).await;
        return (Step::Done, Verdict::Neutral);
    }
    let started = Instant::now();
    let (result, faults) = match convert::to_wit(&tenant, &d.body) {
        Ok(event) => {
            let report = instance.handle(&event, attempt).await;
            (report.result, report.faults)
        }
        Err(e) => (
            Ok(Outcome::Permanent(format!(
                "event cannot be given to plugins: {e}"
            ))),
            Vec::new(),
        ),
    };
    metrics::histogram!("herald_delivery_seconds", "tenant" => tenant.clone(), "plugin" => name.clone())
        .record(started.elapsed().as_secs_f64());
    // Each fault is counted and logged once, here.
    for f in &faults {
        metrics::counter!("herald_plugin_faults_total",
            "tenant" => tenant.clone(), "plugin" => name.clone(), "reason" => f.reason)
        .increment(1);
        tracing::warn!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
            reason = f.reason, times = f.times,
            "plugin fault ({}); the instance is discarded and re-created for the next call: {}",
            f.reason, f.message);
        breaker.note_fault(f.reason, &f.message);
    }
    let faulted = !faults.is_empty();
    let failure_counts = breaker.policy.count == FailureCount::Failures;
    let fault_reason = result.as_ref().err().map(CallError::reason);
    let (reason, delay, verdict) = match result {
        Ok(Outcome::Ok) => {
            count(&tenant, &name, "ok");
            tracing::debug!(event_id = d.event_id, attempt, "delivered");
            let plugin = name.clone();
            let (id, first_at_ms) = (d.event_id, d.first_at_ms);
            if let Err(e) = blocking(journal, move |j| {
                j.delivered(&plugin, id, attempt, first_at_ms)
            })
            .await
            {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot record a delivery: {e}");
            }
            let verdict = if faulted {
                Verdict::Failure
            } else {
                Verdict::Success
            };
            return (Step::Done, verdict);
        }
        Ok(Outcome::Permanent(reason)) => {
            *outcome = ("dead", Some(bounded(&reason, MAX_REASON)));
            dead_letter(
                journal,
                &tenant,
                &name,
                d,
                attempt,
                &format!("permanent failure: {}", bounded(&reason, MAX_REASON)),
            )
            .await;
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
            journal,
            &tenant,
            &name,
            d,
            attempt,
            &format!("gave up after {attempt} attempts: {reason}"),
        )
        .await;
        return (Step::Done, verdict);
    }
    count(&tenant, &name, "retry");
    *outcome = ("retry", Some(reason.clone()));
    let delay = delay.unwrap_or_else(|| policy.backoff(attempt));
    let at_ms = now_ms() + delay.as_millis() as i64;
    match fault_reason {
        // The fault itself was logged above, with its message.
        Some(f) => tracing::info!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
            retry_in_ms = delay.as_millis() as u64, "delivery will be retried after a plugin fault ({f})"),
        None => tracing::info!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
            retry_in_ms = delay.as_millis() as u64, "delivery will be retried: {reason}"),
    }
    let plugin = name.clone();
    let id = d.event_id;
    if let Err(e) = blocking(journal, move |j| {
        j.retry_later(&plugin, id, attempt, at_ms, &reason)
    })
    .await
    {
        tracing::error!(plugin = %name, tenant = %tenant, "cannot record a retry: {e}");
    }
    (Step::Retry { at_ms }, verdict)
}

fn count(tenant: &str, plugin: &str, outcome: &'static str) {
    metrics::counter!("herald_deliveries_total",
        "tenant" => tenant.to_string(), "plugin" => plugin.to_string(), "outcome" => outcome)
    .increment(1);
}

async fn dead_letter(
    journal: &Journal,
    tenant: &str,
    name: &str,
    d: &PendingDelivery,
    attempt: u32,
    reason: &str,
) {
    count(tenant, name, "dead");
    tracing::warn!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt, "delivery dead-lettered: {reason}");
    let plugin = name.to_string();
    let (id, first_at_ms) = (d.event_id, d.first_at_ms);
    let reason = reason.to_string();
    if let Err(e) = blocking(journal, move |j| {
        j.dead_letter(&plugin, id, attempt, &reason, first_at_ms)
    })
    .await
    {
        tracing::error!(plugin = %name, tenant = %tenant, "cannot record a dead letter: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_after: u32) -> Breaker {
        Breaker::new(
            FailurePolicy {
                open_after,
                count: FailureCount::Failures,
                pause_ms: 100,
                max_pause_ms: 250,
            },
            "t",
            "p",
        )
    }

    #[test]
    fn opens_after_n_failures_in_a_row_and_probes() {
        let b = breaker(3);
        assert!(!b.record(Verdict::Failure));
        assert!(!b.record(Verdict::Failure));
        assert!(!b.record(Verdict::Success), "a success resets the count");
        assert!(!b.record(Verdict::Failure));
        assert!(
            !b.record(Verdict::Neutral),
            "a permanent answer changes nothing"
        );
        assert!(!b.record(Verdict::Failure));
        assert!(b.record(Verdict::Failure));
        let s = b.status();
        assert_eq!(s.state, InstanceState::Paused);
        assert_eq!(s.opened, 1);
        assert!(b.paused_until().is_some());
        b.start_probe();
        assert_eq!(b.status().state, InstanceState::Probing);
        // A failed probe pauses again, twice as long, capped.
        assert!(b.record(Verdict::Failure));
        assert_eq!(b.status().pause_ms, 200);
        b.start_probe();
        assert!(b.record(Verdict::Failure));
        assert_eq!(b.status().pause_ms, 250);
        b.start_probe();
        assert!(!b.record(Verdict::Success));
        let s = b.status();
        assert_eq!(
            (s.state, s.consecutive_failures, s.pause_ms),
            (InstanceState::Running, 0, 100)
        );
    }

    #[test]
    fn open_after_zero_never_pauses() {
        let b = breaker(0);
        for _ in 0..100 {
            assert!(!b.record(Verdict::Failure));
        }
        assert_eq!(b.status().state, InstanceState::Running);
    }

    #[test]
    fn reasons_are_bounded_on_char_boundaries() {
        let s = "é".repeat(3000);
        let b = bounded(&s, MAX_REASON);
        assert!(b.len() < MAX_REASON + 40, "{}", b.len());
        assert!(b.ends_with("more bytes]"));
        assert_eq!(bounded("short", 10), "short");
    }
}
