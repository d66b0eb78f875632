//! The running workers, by plugin instance, and what wakes them.

use crate::breaker::{Breaker, BreakerStatus};
use crate::plugin::Plugin;
use crate::replica::Replica;
use crate::worker::{run_worker, WorkerArgs};
use herald_config::PluginConfig;
use herald_journal::{CommitNotice, SharedStore};
use herald_runtime::PluginInstance;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

/// A plugin instance ready to run, with what the dispatcher needs to know of it.
pub struct WorkerSpec {
    pub instance: PluginInstance,
    pub config: PluginConfig,
    /// sha256 of the component file: a changed file is a changed instance.
    pub component_sha256: String,
}

type Workers = Arc<Mutex<BTreeMap<String, Worker>>>;

/// The executors a dispatcher's streams run on: each stream stays on the one
/// it was placed on, so that its outbound connections' tasks (made on the
/// same thread) wake it without crossing threads. A new stream goes to the
/// executor running the fewest (the first of them on a tie), so streams
/// that ended (a removed or reloaded instance) leave room where they were.
struct Runtimes {
    handles: Vec<tokio::runtime::Handle>,
    /// Streams running on each executor.
    running: Vec<Arc<AtomicUsize>>,
}

/// Counts a stream on its executor while it runs (it lives in the task).
struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runtimes {
    fn new(handles: Vec<tokio::runtime::Handle>) -> Runtimes {
        let running = handles.iter().map(|_| Arc::default()).collect();
        Runtimes { handles, running }
    }

    fn least_loaded(&self) -> usize {
        (0..self.handles.len())
            .min_by_key(|&k| self.running[k].load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Spawns a stream on the least loaded executor, counted there until it ends.
    fn place<F>(&self, stream: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let k = self.least_loaded();
        self.running[k].fetch_add(1, Ordering::SeqCst);
        let placed = Placed(self.running[k].clone());
        self.handles[k].spawn(async move {
            let _placed = placed;
            stream.await
        })
    }

    /// Spawns a short task that is no stream (not counted).
    fn spawn_aside<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handles[self.least_loaded()].spawn(task)
    }
}

fn lock(workers: &Workers) -> std::sync::MutexGuard<'_, BTreeMap<String, Worker>> {
    workers.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running workers, by plugin instance name. Workers can be added and
/// stopped while ingest goes on (configuration reload). The dispatcher
/// subscribes to the journal's commits and wakes the workers that have new
/// deliveries; nothing upstream knows it exists.
pub struct Dispatcher {
    journal: SharedStore,
    replica: Replica,
    /// Where the workers run (see [`Dispatcher::start_replica`]).
    runtimes: Runtimes,
    workers: Workers,
    listener: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
}

/// A running instance: one task per shard, stopped together.
struct Worker {
    tenant: String,
    /// The contract version of the instance's component.
    contract: &'static str,
    breaker: Arc<Breaker>,
    config: PluginConfig,
    component_sha256: String,
    /// Per shard: what wakes its task.
    notify: Vec<Arc<Notify>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Worker {
    fn wake(&self) {
        for n in &self.notify {
            n.notify_one();
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.listener.abort();
        self.heartbeat.abort();
        for w in self.lock().values() {
            for t in &w.tasks {
                t.abort();
            }
        }
    }
}

impl Dispatcher {
    /// Starts one worker per instance, on the current runtime.
    pub fn start(specs: Vec<WorkerSpec>, journal: SharedStore) -> Dispatcher {
        Self::start_replica(specs, journal, Vec::new(), Replica::default())
    }

    /// Starts one worker per instance on `runtimes`, as `replica`: each
    /// worker delivers only while this replica holds its instance's lease.
    /// Each shard's stream runs on one of `runtimes`, the least loaded (the
    /// server gives each delivery thread an executor of its own, so
    /// deliveries never take every core from ingest); with none, on the
    /// current runtime.
    pub fn start_replica(
        specs: Vec<WorkerSpec>,
        journal: SharedStore,
        runtimes: Vec<tokio::runtime::Handle>,
        replica: Replica,
    ) -> Dispatcher {
        let handles = if runtimes.is_empty() {
            vec![tokio::runtime::Handle::current()]
        } else {
            runtimes
        };
        let workers = Workers::default();
        let listener = tokio::spawn(wake_on_commits(journal.commits(), workers.clone()));
        let heartbeat = tokio::spawn(heartbeat(journal.clone(), replica.clone()));
        let d = Dispatcher {
            heartbeat,
            runtimes: Runtimes::new(handles),
            replica,
            journal,
            workers,
            listener,
        };
        for spec in specs {
            d.add(spec);
        }
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Worker>> {
        lock(&self.workers)
    }

    /// Starts a worker (a task per shard of the instance); a running worker
    /// of the same name is stopped first: the new one starts once it has
    /// finished the delivery it is in and recorded its outcomes.
    pub fn add(&self, spec: WorkerSpec) {
        let contract = spec.instance.contract();
        self.add_plugin(spec.instance, contract, spec.config, spec.component_sha256);
    }

    pub(crate) fn add_plugin<P: Plugin>(
        &self,
        instance: P,
        contract: &'static str,
        config: PluginConfig,
        component_sha256: String,
    ) {
        let name = instance.name().to_string();
        let tenant = instance.tenant().to_string();
        let shards = config.shards.max(1);
        let (stop, stopped) = watch::channel(false);
        let breaker = Arc::new(Breaker::new(config.failure_policy.clone(), &tenant, &name));
        // One bucket for all the shards: the rate limit is the sink's.
        let pacer = config
            .rate_limit
            .as_ref()
            .and_then(|r| crate::pacing::quota(r.per_second, r.burst))
            .map(|q| Arc::new(crate::pacing::Pacer::direct(q)));
        // Opened here, before the instance counts as running: what is
        // committed from now on is its to deliver. (If the journal refuses,
        // the workers keep trying.)
        let positions = match self
            .journal
            .open_streams(&name, &tenant, &config.routes, shards)
        {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(plugin = %name, tenant = %tenant, "cannot open the instance's cursor over the journal yet: {e}");
                None
            }
        };
        let mut instances = Vec::with_capacity(shards as usize);
        for _ in 1..shards {
            instances.push(instance.sibling());
        }
        instances.insert(0, instance);
        let mut notify = Vec::with_capacity(instances.len());
        let mut tasks = Vec::with_capacity(instances.len());
        // The new tasks start once the worker they replace (a reload) has
        // stopped: both at once would deliver a run's events out of order,
        // and again what the old one had not recorded yet.
        let (handed_over, handover) = watch::channel(false);
        for (shard, instance) in (0u32..).zip(instances) {
            let wake = Arc::new(Notify::new());
            let mut handover = handover.clone();
            let run = run_worker(
                instance,
                WorkerArgs {
                    pacer: pacer.clone(),
                    shard,
                    shards,
                    policy: config.retry,
                    routes: config.routes.clone(),
                    position: positions
                        .as_ref()
                        .and_then(|p| p.get(shard as usize).copied()),
                    breaker: breaker.clone(),
                    journal: self.journal.clone(),
                    notify: wake.clone(),
                    stop: stopped.clone(),
                    replica: self.replica.clone(),
                },
            );
            tasks.push(self.runtimes.place(async move {
                // An error: the handover task is gone; start anyway.
                let _ = handover.wait_for(|done| *done).await;
                run.await
            }));
            notify.push(wake);
        }
        let worker = Worker {
            tenant,
            contract,
            breaker,
            config,
            component_sha256,
            notify,
            stop,
            tasks,
        };
        let mut workers = self.lock();
        let previous = match workers.insert(name.clone(), worker) {
            Some(old) => {
                let _ = old.stop.send(true);
                old.tasks
            }
            None => Vec::new(),
        };
        if previous.is_empty() {
            // Nothing to wait for: a new instance starts at once.
            let _ = handed_over.send(true);
        } else {
            self.runtimes
                .spawn_aside(hand_over(name, previous, handed_over));
        }
        self.replica
            .share
            .instances
            .store(streams(&workers), std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops a worker after its current delivery. Its cursor and queued
    /// deliveries stay in the journal and resume if an instance of the same
    /// name and tenant comes back (an instance of that name for another
    /// tenant dead-letters them instead, see [`WorkerCtx::disown`]); its
    /// cursor no longer holds events back from retention meanwhile.
    pub fn remove(&self, name: &str) -> bool {
        let removed = {
            let mut workers = self.lock();
            let w = workers.remove(name);
            self.replica
                .share
                .instances
                .store(streams(&workers), std::sync::atomic::Ordering::Relaxed);
            w
        };
        match removed {
            Some(w) => {
                let _ = w.stop.send(true);
                w.breaker.retire();
                if let Err(e) = self.journal.retire_cursor(name) {
                    tracing::warn!(plugin = %name, "cannot retire the instance's cursor: {e}");
                }
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

    /// The contract version (`herald:plugin/handler@X.Y.Z`) an instance's component exports.
    pub fn contract(&self, name: &str) -> Option<&'static str> {
        self.lock().get(name).map(|w| w.contract)
    }

    /// This host among the replicas.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Names of the running workers.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Stops every worker after its current delivery and waits (at most
    /// `within`) until they have written their outcomes, so a clean stop
    /// does not deliver anything twice after the restart.
    pub async fn shutdown(&self, within: Duration) {
        let workers: Vec<Worker> = std::mem::take(&mut *self.lock()).into_values().collect();
        let mut tasks = Vec::with_capacity(workers.len());
        for w in workers {
            let _ = w.stop.send(true);
            w.breaker.retire();
            tasks.extend(w.tasks);
        }
        let deadline = tokio::time::Instant::now() + within;
        let mut late = false;
        for task in tasks {
            late |= tokio::time::timeout_at(deadline, task).await.is_err();
        }
        if late {
            tracing::warn!(
                "plugin instances still delivering after {} s at shutdown; their last outcomes are delivered again after the restart",
                within.as_secs()
            );
        }
    }
}

/// Longest a reloaded instance's new worker waits for the one it replaces
/// to finish its current delivery (a plugin call is bounded by its own
/// timeouts; past this, the new one starts beside it, as it did before).
const HANDOVER_WAIT: Duration = Duration::from_secs(30);

/// Waits for a replaced worker's tasks to end (at most [`HANDOVER_WAIT`]),
/// then lets the new worker's tasks start.
async fn hand_over(name: String, previous: Vec<JoinHandle<()>>, done: watch::Sender<bool>) {
    let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
    let mut late = false;
    for task in previous {
        late |= tokio::time::timeout_at(deadline, task).await.is_err();
    }
    if late {
        tracing::warn!(plugin = %name,
            "the instance's previous worker is still delivering after {} s; the reloaded one starts beside it",
            HANDOVER_WAIT.as_secs());
    }
    let _ = done.send(true);
}

/// Delivery streams of the running instances: what the replicas share.
fn streams(workers: &BTreeMap<String, Worker>) -> usize {
    workers.values().map(|w| w.tasks.len()).sum()
}

/// Says every third of the lease TTL that this replica is alive, and learns
/// how many are: the workers divide the instances by it.
async fn heartbeat(journal: SharedStore, replica: Replica) {
    let ms = replica.lease_ttl.as_millis() as i64;
    loop {
        let (j, holder) = (journal.clone(), replica.holder.to_string());
        match herald_journal::blocking(&j, move |j| j.heartbeat(&holder, ms)).await {
            Ok(live) => {
                let before = replica
                    .share
                    .live
                    .swap(live, std::sync::atomic::Ordering::Relaxed);
                if before != live && before != 0 {
                    tracing::info!(replicas = live, replica = %replica.holder,
                        "the number of live replicas changed; instances are shared again");
                }
            }
            Err(e) => tracing::warn!("cannot record this replica's heartbeat: {e}"),
        }
        tokio::time::sleep(replica.lease_ttl / 3).await;
    }
}

/// Wakes the workers with new deliveries after each commit: a tenant's
/// workers for its new events, one instance for its requeued ones. A lagging
/// subscriber wakes every worker (a spurious wake-up only costs a read).
async fn wake_on_commits(mut commits: broadcast::Receiver<CommitNotice>, workers: Workers) {
    loop {
        let notice = commits.recv().await;
        let workers = lock(&workers);
        match notice {
            Ok(CommitNotice::Events { tenant }) => {
                for w in workers.values().filter(|w| *w.tenant == *tenant) {
                    w.wake();
                }
            }
            Ok(CommitNotice::Requeued { plugin }) => {
                // Requeued rows are the instance's: any shard may own them.
                if let Some(w) = workers.get(herald_event::shard::instance_of(&plugin)) {
                    w.wake();
                }
            }
            Ok(CommitNotice::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                for w in workers.values() {
                    w.wake();
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Two single-thread executors on threads named `executor-0` and
/// `executor-1`, as the server's delivery threads are (for tests).
#[cfg(test)]
pub(crate) fn test_executors() -> Vec<tokio::runtime::Handle> {
    (0..2)
        .map(|k| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("an executor");
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("executor-{k}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .expect("its thread");
            handle
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that reports its thread, then runs until told to end.
    async fn stream(
        on: tokio::sync::oneshot::Sender<String>,
        end: tokio::sync::oneshot::Receiver<()>,
    ) {
        let name = std::thread::current().name().unwrap_or("").to_string();
        let _ = on.send(name);
        let _ = end.await;
    }

    /// A new stream goes where the fewest run: after the second executor's
    /// stream ended, the next one goes there, not back to the first (where
    /// placing in turn put it).
    #[tokio::test]
    async fn streams_go_to_the_executor_running_the_fewest() {
        let runtimes = Runtimes::new(test_executors());
        let mut ends = Vec::new();
        let mut placed = Vec::new();
        for _ in 0..2 {
            let (on, thread) = tokio::sync::oneshot::channel();
            let (end, ended) = tokio::sync::oneshot::channel();
            placed.push(runtimes.place(stream(on, ended)));
            ends.push(end);
            assert!(thread.await.is_ok());
        }
        let (first, second) = (ends.remove(0), ends.remove(0));
        let _ = second.send(());
        let task = placed.pop().expect("the second stream");
        assert!(task.await.is_ok(), "the second stream ended");
        assert_eq!(
            runtimes
                .running
                .iter()
                .map(|r| r.load(Ordering::SeqCst))
                .collect::<Vec<_>>(),
            [1, 0],
            "an ended stream is no longer counted"
        );
        let (on, thread) = tokio::sync::oneshot::channel();
        let (_end, ended) = tokio::sync::oneshot::channel::<()>();
        let _third = runtimes.place(stream(on, ended));
        assert_eq!(thread.await.as_deref(), Ok("executor-1"));
        let _ = first.send(());
    }
}
