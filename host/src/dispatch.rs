//! Delivery: one worker per plugin instance takes the instance's pending
//! deliveries from the journal, in journal order, and calls the plugin.
//!
//! Within a run, events are delivered in order: once an event of a run waits
//! for a retry, the run's later events wait behind it. Other runs go on.
//! Retries use the instance's policy (exponential backoff with full jitter),
//! or exactly the delay the plugin asked for (`Retry-After`); after
//! `max_attempts`, or on a permanent failure, the delivery is dead-lettered.

use crate::config::{PluginConfig, RetryPolicy, SinkRateLimit};
use crate::event::WireEvent;
use crate::journal::{now_ms, Journal, JournalError, PendingDelivery};
use crate::routes::Routes;
use crate::runtime::{convert, CallError, Outcome, PluginInstance};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How many pending deliveries a worker reads at a time.
const BATCH: usize = 256;
/// Longest a worker sleeps without looking at the journal again.
const IDLE_POLL: Duration = Duration::from_secs(5);

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
        let task = tokio::spawn(run_worker(
            spec.instance,
            spec.config.rate_limit.clone(),
            spec.config.retry.clone(),
            self.journal.clone(),
            notify.clone(),
            stopped,
        ));
        let worker = Worker {
            tenant,
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
            match deliver(&mut instance, &policy, &journal, &d).await {
                Step::Done => progressed = true,
                Step::Retry { at_ms } => {
                    earliest = Some(earliest.map_or(at_ms, |e| e.min(at_ms)));
                    blocked_runs.insert(d.run_id.clone());
                }
            }
        }
        if full && progressed {
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

async fn deliver(
    instance: &mut PluginInstance,
    policy: &RetryPolicy,
    journal: &Journal,
    d: &PendingDelivery,
) -> Step {
    let spec = instance.spec();
    let (name, tenant) = (spec.name.to_string(), spec.tenant.to_string());
    let attempt = d.attempts + 1;
    let age_ms = now_ms() - d.first_at_ms;
    if d.attempts > 0 && age_ms > policy.max_age_ms as i64 {
        let reason = format!(
            "gave up after {} attempts: older than max_age_ms ({} ms)",
            d.attempts, policy.max_age_ms
        );
        dead_letter(journal, &tenant, &name, d, d.attempts, &reason).await;
        return Step::Done;
    }
    let started = Instant::now();
    let result = match convert::to_wit(&tenant, &d.body) {
        Ok(event) => instance.handle(&event, attempt).await,
        Err(e) => Ok(Outcome::Permanent(format!(
            "event cannot be given to plugins: {e}"
        ))),
    };
    metrics::histogram!("herald_delivery_seconds", "tenant" => tenant.clone(), "plugin" => name.clone())
        .record(started.elapsed().as_secs_f64());
    let (reason, delay) = match result {
        Ok(Outcome::Ok) => {
            count(&tenant, &name, "ok");
            let plugin = name.clone();
            let id = d.event_id;
            if let Err(e) = blocking(journal, move |j| j.delivered(&plugin, id, attempt)).await {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot record a delivery: {e}");
            }
            return Step::Done;
        }
        Ok(Outcome::Permanent(reason)) => {
            dead_letter(
                journal,
                &tenant,
                &name,
                d,
                attempt,
                &format!("permanent failure: {reason}"),
            )
            .await;
            return Step::Done;
        }
        Ok(Outcome::Retryable(r)) => (r.reason, r.retry_after_ms.map(Duration::from_millis)),
        Err(fault) => {
            metrics::counter!("herald_plugin_faults_total",
                "tenant" => tenant.clone(), "plugin" => name.clone(), "reason" => fault.reason())
            .increment(1);
            tracing::warn!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
                reason = fault.reason(), "plugin call failed: {fault}");
            if let CallError::Configure(_) = fault {
                // A refused configuration will not change by retrying sooner.
                (
                    fault.to_string(),
                    Some(Duration::from_millis(policy.max_ms)),
                )
            } else {
                (fault.to_string(), None)
            }
        }
    };
    if attempt >= policy.max_attempts {
        dead_letter(
            journal,
            &tenant,
            &name,
            d,
            attempt,
            &format!("gave up after {attempt} attempts: {reason}"),
        )
        .await;
        return Step::Done;
    }
    count(&tenant, &name, "retry");
    let delay = delay.unwrap_or_else(|| policy.backoff(attempt));
    let at_ms = now_ms() + delay.as_millis() as i64;
    tracing::info!(plugin = %name, tenant = %tenant, event_id = d.event_id, attempt,
        retry_in_ms = delay.as_millis() as u64, "delivery will be retried: {reason}");
    let plugin = name.clone();
    let id = d.event_id;
    if let Err(e) = blocking(journal, move |j| {
        j.retry_later(&plugin, id, attempt, at_ms, &reason)
    })
    .await
    {
        tracing::error!(plugin = %name, tenant = %tenant, "cannot record a retry: {e}");
    }
    Step::Retry { at_ms }
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
    let id = d.event_id;
    let reason = reason.to_string();
    if let Err(e) = blocking(journal, move |j| {
        j.dead_letter(&plugin, id, attempt, &reason)
    })
    .await
    {
        tracing::error!(plugin = %name, tenant = %tenant, "cannot record a dead letter: {e}");
    }
}
