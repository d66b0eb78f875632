//! Run summaries: aggregate a run's events into one record kept in the instance's durable
//! `state` store, so a plugin can report "playbook X finished: failed, 2 hosts, 1 failure"
//! when the stats event arrives, even across host restarts.
//!
//! ```ignore
//! let tracker = RunTracker::host("slack:");
//! match tracker.observe(event) {
//!     Observed::Finished(summary) => { /* send it; on success: */ tracker.complete(&summary.run_id) }
//!     Observed::Progress(_) | Observed::AlreadyFinished => {}
//! }
//! ```
//!
//! Updates are idempotent: an event whose `sequence` is not above the last one applied to the
//! run is not counted again (events of a run arrive in order; a retried or re-delivered event
//! has the same sequence). The summary sees only the events the instance receives: an instance
//! whose routes filter events gets a partial summary.
//!
//! Stored keys (the Python SDK's `summary` module reads and writes the same):
//! - `<prefix>run:<run id>`: the run's summary (JSON) while it runs, then, once
//!   [completed](RunTracker::complete), a tombstone `{"done":true,"prev":"<run id>"}` (`prev`:
//!   the run this tracker completed before, if any), so a re-delivered event of the run is
//!   known as already finished.
//! - `<prefix>runs-done`: a JSON array of completed run ids, oldest first, at most [`DONE_RING`]:
//!   the tombstones to delete as newer runs complete. Versions before the tombstones only
//!   deleted the summary and listed the id, so a listed run without a key is finished too.
//!
//! The shards of an instance share its `state`, but a run's events all go to one shard, so only
//! that shard writes the run's key: its tombstone cannot be lost. The list is written whole by
//! whichever shard completes a run, so two shards completing runs at once can lose one id from
//! it; that only leaves the tombstone unlisted, and the cleanup still reaches it through the
//! `prev` link of the next run the same tracker completed.

use crate::{is_host_result, result_message, Event, EventKind, Outcome, Status};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Failures kept per run (more are counted in `failures_dropped`).
pub const MAX_FAILURES: usize = 50;
/// Characters kept of a failure message.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Completed runs whose tombstones are kept, so a re-delivered stats event does not report a run
/// twice; an older one's is deleted as a newer run completes.
pub const DONE_RING: usize = 200;

/// Overall status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// No stats event yet and no failure seen.
    Running,
    /// Finished with no failed or unreachable host.
    Successful,
    /// A host failed (not ignored) or was unreachable.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Successful => "successful",
            RunStatus::Failed => "failed",
        }
    }
}

/// Counts of host results (one per host per task).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultCounts {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub unreachable: u32,
    pub skipped: u32,
    pub ignored: u32,
}

/// A host's failed (not ignored) or unreachable task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub host: String,
    pub task: String,
    pub action: String,
    pub play: String,
    pub message: String,
    pub unreachable: bool,
    pub at_ms: i64,
    pub event_id: String,
}

impl Failure {
    /// The failure event `e` reports (`unreachable`, else failed): its host, task, module, play,
    /// creation time and id, and the result's message ([`result_message`]) cut to `max_message`
    /// characters (empty when the result has none). Missing fields are empty strings.
    pub fn from_event(e: &Event, unreachable: bool, max_message: usize) -> Failure {
        Failure {
            host: e.host.clone().unwrap_or_default(),
            task: e.task.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            action: e
                .task
                .as_ref()
                .map(|t| t.action.clone())
                .unwrap_or_default(),
            play: e.play.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            message: result_message(e.res.as_deref(), max_message).unwrap_or_default(),
            unreachable,
            at_ms: e.created_ms,
            event_id: e.id.clone(),
        }
    }
}

/// Per-host counters from the stats event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounters {
    pub host: String,
    pub ok: u32,
    pub changed: u32,
    pub failures: u32,
    pub unreachable: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

/// Everything known about one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub tenant: String,
    pub playbook: String,
    pub controller: Option<String>,
    /// Creation time of `playbook_on_start`, else of the first event seen.
    pub started_ms: Option<i64>,
    /// Creation time of the stats event.
    pub ended_ms: Option<i64>,
    /// Sequence of the last event applied.
    pub last_sequence: Option<u64>,
    pub plays: u32,
    pub tasks: u32,
    pub results: ResultCounts,
    pub failures: Vec<Failure>,
    pub failures_dropped: u32,
    /// Per-host counters of the stats event (the PLAY RECAP).
    pub hosts: Vec<HostCounters>,
    /// `set_stats` data (`{"_run": {...}, "<host>": {...}}`) from the stats event.
    pub custom_stats: Option<serde_json::Value>,
    /// True once the stats event is applied.
    pub finished: bool,
}

impl RunSummary {
    /// A new, empty summary for `event`'s run.
    pub fn for_event(event: &Event) -> RunSummary {
        RunSummary {
            run_id: event.run.id.clone(),
            tenant: event.tenant.clone(),
            playbook: event.run.playbook.clone(),
            controller: event.run.controller.clone(),
            ..Default::default()
        }
    }

    /// Applies one event; returns false (and changes nothing) for an event already applied.
    pub fn apply(&mut self, e: &Event) -> bool {
        if let Some(last) = self.last_sequence {
            if e.sequence <= last {
                return false;
            }
        }
        self.last_sequence = Some(e.sequence);
        if self.playbook.is_empty() {
            self.playbook = e.run.playbook.clone();
        }
        if self.controller.is_none() {
            self.controller = e.run.controller.clone();
        }
        match e.kind {
            EventKind::PlaybookOnStart => self.started_ms = Some(e.created_ms),
            EventKind::PlaybookOnPlayStart => self.plays += 1,
            EventKind::PlaybookOnTaskStart | EventKind::PlaybookOnHandlerTaskStart => {
                self.tasks += 1
            }
            EventKind::PlaybookOnStats => {
                self.ended_ms = Some(e.created_ms);
                self.finished = true;
                if let Some(stats) = &e.stats {
                    self.hosts = stats
                        .hosts
                        .iter()
                        .map(|h| HostCounters {
                            host: h.host.clone(),
                            ok: h.ok,
                            changed: h.changed,
                            failures: h.failures,
                            unreachable: h.unreachable,
                            skipped: h.skipped,
                            rescued: h.rescued,
                            ignored: h.ignored,
                        })
                        .collect();
                    self.custom_stats = stats
                        .custom
                        .as_deref()
                        .and_then(|c| serde_json::from_str(c).ok());
                }
            }
            k if is_host_result(k) => self.apply_result(e),
            _ => {}
        }
        if self.started_ms.is_none() {
            self.started_ms = Some(e.created_ms);
        }
        true
    }

    fn apply_result(&mut self, e: &Event) {
        let status = match e.status {
            Some(s) => s,
            None => match e.kind {
                EventKind::RunnerOnFailed | EventKind::RunnerOnAsyncFailed => Status::Failed,
                EventKind::RunnerOnUnreachable => Status::Unreachable,
                EventKind::RunnerOnSkipped => Status::Skipped,
                _ if e.changed => Status::Changed,
                _ => Status::Ok,
            },
        };
        let r = &mut self.results;
        match status {
            Status::Ok => r.ok += 1,
            Status::Changed => r.changed += 1,
            Status::Skipped => r.skipped += 1,
            Status::Failed if e.ignore_errors => r.ignored += 1,
            Status::Failed => r.failed += 1,
            Status::Unreachable => r.unreachable += 1,
        }
        let failed =
            matches!(status, Status::Unreachable) || (status == Status::Failed && !e.ignore_errors);
        if failed {
            if self.failures.len() >= MAX_FAILURES {
                self.failures_dropped += 1;
                return;
            }
            self.failures.push(Failure::from_event(
                e,
                status == Status::Unreachable,
                MAX_MESSAGE_CHARS,
            ));
        }
    }

    /// The run's status: from the stats when finished, else from the results seen.
    pub fn status(&self) -> RunStatus {
        if self.finished && !self.hosts.is_empty() {
            if self
                .hosts
                .iter()
                .any(|h| h.failures > 0 || h.unreachable > 0)
            {
                return RunStatus::Failed;
            }
            return RunStatus::Successful;
        }
        if self.results.failed > 0 || self.results.unreachable > 0 {
            RunStatus::Failed
        } else if self.finished {
            RunStatus::Successful
        } else {
            RunStatus::Running
        }
    }

    /// `ended - started` in ms when both are known.
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.ended_ms? - self.started_ms?).max(0))
    }

    /// Hosts with a failure or unreachable in the stats (or in the results seen before them).
    pub fn failed_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = if self.hosts.is_empty() {
            self.failures.iter().map(|f| f.host.clone()).collect()
        } else {
            self.hosts
                .iter()
                .filter(|h| h.failures > 0 || h.unreachable > 0)
                .map(|h| h.host.clone())
                .collect()
        };
        out.sort();
        out.dedup();
        out
    }

    /// A link to the run from a `run_url` template of the config: `{run_id}`, `{tenant}` and
    /// `{playbook}` are replaced by the run's values, in that order (a value containing a later
    /// placeholder has it replaced too).
    pub fn run_url(&self, template: &str) -> String {
        template
            .replace("{run_id}", &self.run_id)
            .replace("{tenant}", &self.tenant)
            .replace("{playbook}", &self.playbook)
    }

    /// Run-wide `set_stats` data (`custom_stats._run`), if any.
    pub fn run_custom_stats(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.custom_stats.as_ref()?.get("_run")?.as_object()
    }
}

/// Where the tracker keeps its records: the host's `state` import, or memory in tests.
pub trait Store {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str);
    fn delete(&self, key: &str);
}

/// The host's durable `state` import.
pub struct HostState;

impl Store for HostState {
    fn get(&self, key: &str) -> Option<String> {
        crate::state::get(key)
    }
    fn set(&self, key: &str, value: &str) {
        crate::state::set(key, value)
    }
    fn delete(&self, key: &str) {
        crate::state::delete(key)
    }
}

/// An in-memory store for native unit tests.
#[derive(Default)]
pub struct MemoryStore(pub std::cell::RefCell<std::collections::BTreeMap<String, String>>);

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<String> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &str) {
        self.0
            .borrow_mut()
            .insert(key.to_string(), value.to_string());
    }
    fn delete(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }
}

/// What [`RunTracker::observe`] saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The run goes on; the summary so far.
    Progress(RunSummary),
    /// The stats event was applied: the run's final summary (returned again for a retried stats
    /// event until [`RunTracker::complete`] is called).
    Finished(RunSummary),
    /// The run was already completed (a re-delivered event after `complete`).
    AlreadyFinished,
}

/// Keeps per-run summaries in a [`Store`] under `<prefix>run:<run id>` (the stored keys are
/// described in the [module](self) documentation).
///
/// Every event reads its run's key from the store and writes the summary back; the first event
/// of a run (its key is absent) also reads the completed-runs list. The tracker remembers what
/// it last read or wrote, parsed ([`Memo`]): when the store answers with the same text, it is
/// not parsed again. The store stays the truth (the host may rewind it to the last commit, or
/// another shard may have written): a different text is parsed as before.
pub struct RunTracker<S: Store = HostState> {
    prefix: String,
    store: S,
    memo: RefCell<Memo>,
    /// The run this tracker completed last, and the `prev` its tombstone got.
    last: RefCell<Option<(String, Option<String>)>>,
}

/// A completed run's tombstone, stored in place of its summary.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    /// Always true; a summary has no `done` (and its fields are required), so the two never
    /// parse as each other.
    done: bool,
    /// The run the same tracker completed before: if another shard's write of the list lost
    /// that run's id, its tombstone is deleted with this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
}

/// What a run's key holds.
// Only ever returned and matched at once: boxing the summary would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Stored {
    /// Nothing (or text that is neither a summary nor a tombstone, which a new summary replaces).
    Absent,
    /// The summary, with the text it was read from.
    Summary(String, RunSummary),
    /// The run was completed.
    Done,
}

/// Summaries kept parsed, beside the text they were parsed from (or serialized to).
const MEMO_RUNS: usize = 16;

/// What the tracker last read or wrote, with its text: the completed-runs list, and the
/// summaries of the most recent runs (at most [`MEMO_RUNS`], the oldest go first).
#[derive(Default)]
struct Memo {
    done: Option<(String, Vec<String>)>,
    runs: Vec<(String, String, RunSummary)>,
}

impl Memo {
    /// The summary stored under `key` as `text`, if it is the one kept; taken out.
    fn take(&mut self, key: &str, text: &str) -> Option<RunSummary> {
        let i = self.runs.iter().position(|(k, _, _)| k == key)?;
        let (_, kept, summary) = self.runs.remove(i);
        (kept == text).then_some(summary)
    }

    fn keep(&mut self, key: String, text: String, summary: RunSummary) {
        self.runs.retain(|(k, _, _)| *k != key);
        if self.runs.len() >= MEMO_RUNS {
            self.runs.remove(0);
        }
        self.runs.push((key, text, summary));
    }
}

impl RunTracker<HostState> {
    /// A tracker over the host's `state` import; `prefix` separates it from the plugin's own keys.
    pub fn host(prefix: &str) -> Self {
        Self::with_store(prefix, HostState)
    }
}

impl<S: Store> RunTracker<S> {
    /// A tracker over `store`; `prefix` separates it from the plugin's own keys.
    pub fn with_store(prefix: &str, store: S) -> Self {
        RunTracker {
            prefix: prefix.to_string(),
            store,
            memo: RefCell::default(),
            last: RefCell::default(),
        }
    }

    /// The store the tracker keeps its records in.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn key(&self, run_id: &str) -> String {
        format!("{}run:{}", self.prefix, run_id)
    }

    fn done_key(&self) -> String {
        format!("{}runs-done", self.prefix)
    }

    /// Whether `run_id` is in the completed-runs list.
    fn is_done(&self, run_id: &str) -> bool {
        self.with_done(|done| done.iter().any(|r| r == run_id))
    }

    fn done(&self) -> Vec<String> {
        self.with_done(<[String]>::to_vec)
    }

    /// Calls `f` with the stored completed-runs list, parsed only when its text changed.
    fn with_done<R>(&self, f: impl FnOnce(&[String]) -> R) -> R {
        let Some(text) = self.store.get(&self.done_key()) else {
            return f(&[]);
        };
        let mut memo = self.memo.borrow_mut();
        match &memo.done {
            Some((kept, done)) if *kept == text => f(done),
            _ => {
                let done: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
                let out = f(&done);
                memo.done = Some((text, done));
                out
            }
        }
    }

    /// The stored summary of a run, if any (none once the run is completed).
    pub fn get(&self, run_id: &str) -> Option<RunSummary> {
        let key = self.key(run_id);
        let Stored::Summary(text, summary) = self.stored(&key) else {
            return None;
        };
        self.memo.borrow_mut().keep(key, text, summary.clone());
        Some(summary)
    }

    /// What `key` holds: a summary comes with its text (taken out of the memo when the text is
    /// the one kept, else parsed), and the caller keeps it again with the text it leaves in the
    /// store.
    fn stored(&self, key: &str) -> Stored {
        let Some(text) = self.store.get(key) else {
            return Stored::Absent;
        };
        if let Some(summary) = self.memo.borrow_mut().take(key, &text) {
            return Stored::Summary(text, summary);
        }
        match serde_json::from_str(&text) {
            Ok(summary) => Stored::Summary(text, summary),
            Err(_) if serde_json::from_str::<Done>(&text).is_ok() => Stored::Done,
            Err(_) => Stored::Absent,
        }
    }

    /// Applies `event` to its run's summary and stores it.
    pub fn observe(&self, event: &Event) -> Observed {
        self.observe_fresh(event).0
    }

    /// Like [`RunTracker::observe`], also telling whether the event was applied now (`true`) or
    /// had been applied before (a retry or re-delivery: `false`). Use it to keep side effects
    /// that are not idempotent, such as counters, to the first delivery.
    pub fn observe_fresh(&self, event: &Event) -> (Observed, bool) {
        let run_id = &event.run.id;
        let key = self.key(run_id);
        // A run with a summary is not finished: `complete` replaces it with a tombstone (older
        // versions deleted it as they listed the run, and the host commits both together). So
        // the list is read only for a run's first event, in case an older version completed it.
        let (text, mut summary) = match self.stored(&key) {
            Stored::Summary(text, summary) => (Some(text), summary),
            Stored::Done => return (Observed::AlreadyFinished, false),
            Stored::Absent if self.is_done(run_id) => return (Observed::AlreadyFinished, false),
            Stored::Absent => (None, RunSummary::for_event(event)),
        };
        let fresh = summary.apply(event);
        let text = if fresh {
            let written = serde_json::to_string(&summary).ok();
            if let Some(t) = &written {
                self.store.set(&key, t);
            }
            written
        } else {
            text
        };
        if let Some(text) = text {
            self.memo.borrow_mut().keep(key, text, summary.clone());
        }
        if summary.finished {
            (Observed::Finished(summary), fresh)
        } else {
            (Observed::Progress(summary), fresh)
        }
    }

    /// Ends the handling of a finished run's final event: when `outcome` is ok (the final report
    /// went out) the run is [completed](RunTracker::complete), else it stays open so the retried
    /// event reports it again. Returns `outcome`.
    pub fn finish(&self, run_id: &str, outcome: Outcome) -> Outcome {
        if matches!(outcome, Outcome::Ok) {
            self.complete(run_id);
        }
        outcome
    }

    /// Replaces a finished run's summary with a tombstone, so its events delivered again are
    /// [`Observed::AlreadyFinished`], and lists it; the tombstones of the runs listed before
    /// the last [`DONE_RING`] are deleted.
    pub fn complete(&self, run_id: &str) {
        let prev = {
            let mut last = self.last.borrow_mut();
            let prev = match last.take() {
                // Completed again: keep the link to the run before.
                Some((id, prev)) if id == run_id => prev,
                Some((id, _)) => Some(id),
                None => None,
            };
            *last = Some((run_id.to_string(), prev.clone()));
            prev
        };
        let key = self.key(run_id);
        if let Ok(text) = serde_json::to_string(&Done { done: true, prev }) {
            self.store.set(&key, &text);
        }
        self.memo.borrow_mut().runs.retain(|(k, _, _)| *k != key);

        let mut done = self.done();
        if !done.iter().any(|r| r == run_id) {
            done.push(run_id.to_string());
        }
        let extra = done.len().saturating_sub(DONE_RING);
        let dropped: Vec<String> = done.drain(..extra).collect();
        for id in dropped {
            self.forget(id, &done);
        }
        if let Ok(text) = serde_json::to_string(&done) {
            self.store.set(&self.done_key(), &text);
            self.memo.borrow_mut().done = Some((text, done));
        }
    }

    /// Deletes the tombstone of `run_id`, just dropped from the list `done`, then follows its
    /// `prev` links: a run completed before it by the same tracker that is not listed lost its
    /// place to another shard's write of the list, and goes now too. Stops at a listed run (its
    /// turn comes) or a key that holds no tombstone (a run listed by an older version, or one
    /// already deleted); each step deletes what it read, so a cycle ends too.
    fn forget(&self, run_id: String, done: &[String]) {
        let mut next = Some(run_id);
        while let Some(id) = next.take() {
            let key = self.key(&id);
            let Some(tombstone) = self
                .store
                .get(&key)
                .and_then(|text| serde_json::from_str::<Done>(&text).ok())
            else {
                break;
            };
            self.store.delete(&key);
            next = tombstone.prev.filter(|p| !done.contains(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event, host_event, stats_event};
    use std::collections::BTreeMap;

    fn run_events() -> Vec<Event> {
        let mut evs = vec![
            event(EventKind::PlaybookOnStart, "r1", "site.yml"),
            event(EventKind::PlaybookOnPlayStart, "r1", "site.yml"),
            event(EventKind::PlaybookOnTaskStart, "r1", "site.yml"),
            host_event(
                EventKind::RunnerOnOk,
                Status::Changed,
                "r1",
                "site.yml",
                "web1",
                "install",
                None,
            ),
            host_event(
                EventKind::RunnerOnFailed,
                Status::Failed,
                "r1",
                "site.yml",
                "web2",
                "install",
                Some(r#"{"msg":"no package"}"#),
            ),
            host_event(
                EventKind::RunnerOnUnreachable,
                Status::Unreachable,
                "r1",
                "site.yml",
                "db1",
                "install",
                Some(r#"{"msg":"ssh timeout"}"#),
            ),
        ];
        let mut ign = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web1",
            "probe",
            None,
        );
        ign.ignore_errors = true;
        evs.push(ign);
        evs.push(stats_event(
            "r1",
            "site.yml",
            &[
                ("web1", 2, 1, 0, 0, 0),
                ("web2", 0, 0, 1, 0, 0),
                ("db1", 0, 0, 0, 1, 0),
            ],
            Some(r#"{"_run":{"deployed":3}}"#),
        ));
        for (i, e) in evs.iter_mut().enumerate() {
            e.sequence = i as u64 + 1;
            e.created_ms = 1_000 + i as i64 * 1000;
        }
        evs
    }

    #[test]
    fn aggregates_a_run() {
        let t = RunTracker::with_store("p:", MemoryStore::default());
        let evs = run_events();
        for e in &evs[..evs.len() - 1] {
            assert!(matches!(t.observe(e), Observed::Progress(_)));
        }
        let s = match t.observe(evs.last().unwrap()) {
            Observed::Finished(s) => s,
            o => panic!("{o:?}"),
        };
        assert_eq!(s.playbook, "site.yml");
        assert_eq!(s.plays, 1);
        assert_eq!(s.tasks, 1);
        assert_eq!(
            s.results,
            ResultCounts {
                ok: 0,
                changed: 1,
                failed: 1,
                unreachable: 1,
                skipped: 0,
                ignored: 1
            }
        );
        assert_eq!(s.failures.len(), 2);
        assert_eq!(s.failures[0].message, "no package");
        assert!(s.failures[1].unreachable);
        assert_eq!(s.status(), RunStatus::Failed);
        assert_eq!(s.duration_ms(), Some(7000));
        assert_eq!(
            s.failed_hosts(),
            vec!["db1".to_string(), "web2".to_string()]
        );
        assert_eq!(s.run_custom_stats().unwrap()["deployed"], 3);
        assert_eq!(s.hosts.len(), 3);

        // A retried stats event gives the same summary; after complete it is known as done.
        assert_eq!(
            t.observe(evs.last().unwrap()),
            Observed::Finished(s.clone())
        );
        t.complete("r1");
        assert_eq!(t.observe(evs.last().unwrap()), Observed::AlreadyFinished);
        assert!(t.get("r1").is_none());
    }

    #[test]
    fn redelivery_does_not_double_count() {
        let t = RunTracker::with_store("", MemoryStore::default());
        let evs = run_events();
        for e in &evs[..5] {
            assert!(t.observe_fresh(e).1);
            assert!(!t.observe_fresh(e).1);
        }
        let s = t.get("r1").unwrap();
        assert_eq!(s.results.changed, 1);
        assert_eq!(s.results.failed, 1);
        assert_eq!(s.failures.len(), 1);
    }

    #[test]
    fn successful_run() {
        let mut s = RunSummary::default();
        let mut st = stats_event("r2", "ok.yml", &[("a", 3, 1, 0, 0, 1)], None);
        st.sequence = 5;
        s.apply(&st);
        assert_eq!(s.status(), RunStatus::Successful);
        assert!(s.failed_hosts().is_empty());
        assert_eq!(RunSummary::default().status(), RunStatus::Running);
    }

    #[test]
    fn failure_from_an_event() {
        // web2 fails `install` with "no package".
        let e = run_events().remove(4);
        assert_eq!(
            Failure::from_event(&e, false, 500),
            Failure {
                host: "web2".into(),
                task: "install".into(),
                action: "ansible.builtin.command".into(),
                play: "Play one".into(),
                message: "no package".into(),
                unreachable: false,
                at_ms: e.created_ms,
                event_id: e.id.clone(),
            }
        );
        assert_eq!(Failure::from_event(&e, true, 5).message, "no p…");
        assert!(Failure::from_event(&e, true, 5).unreachable);
        let bare = event(EventKind::RunnerOnUnreachable, "r1", "site.yml");
        let f = Failure::from_event(&bare, true, 500);
        assert_eq!(
            (f.host, f.task, f.action, f.play, f.message),
            Default::default()
        );
    }

    #[test]
    fn run_urls() {
        let mut s = RunSummary::for_event(&event(EventKind::PlaybookOnStart, "r1", "site.yml"));
        assert_eq!(
            s.run_url(
                "https://herald.example/t/{tenant}/runs/{run_id}?p={playbook}&again={run_id}"
            ),
            "https://herald.example/t/acme/runs/r1?p=site.yml&again=r1"
        );
        assert_eq!(s.run_url("https://fixed"), "https://fixed");
        // Replaced in order: a run id holding `{tenant}` gets the tenant too.
        s.run_id = "x{tenant}".into();
        assert_eq!(s.run_url("{run_id}"), "xacme");
    }

    #[test]
    fn finish_completes_only_delivered_runs() {
        let t = RunTracker::with_store("", MemoryStore::default());
        let st = stats_event("r1", "site.yml", &[("a", 1, 0, 0, 0, 0)], None);
        assert!(matches!(t.observe(&st), Observed::Finished(_)));
        let retry = t.finish("r1", crate::retryable("HTTP 503", None));
        assert_eq!(crate::failure_reason(&retry), Some("HTTP 503"));
        assert!(matches!(t.observe(&st), Observed::Finished(_)));
        assert!(matches!(t.finish("r1", Outcome::Ok), Outcome::Ok));
        assert_eq!(t.observe(&st), Observed::AlreadyFinished);
    }

    /// The memo is only a shortcut: a tracker that keeps it answers and writes exactly what a
    /// tracker made afresh for every event (parsing everything, told only which run the kept
    /// one completed last) does, also when the store is rewound under it (the host's discard of
    /// uncommitted writes), events are delivered again and runs complete.
    #[test]
    fn the_memo_never_changes_what_the_tracker_answers_or_writes() {
        let r1 = run_events();
        let r2: Vec<Event> = run_events()
            .into_iter()
            .map(|mut e| {
                e.run.id = "r2".into();
                e
            })
            .collect();
        // The two runs interleaved, then each one's stats event delivered again.
        let mut evs: Vec<&Event> = r1.iter().zip(&r2).flat_map(|(a, b)| [a, b]).collect();
        evs.push(&r1[r1.len() - 1]);
        evs.push(&r2[r2.len() - 1]);
        let kept = RunTracker::with_store("p:", MemoryStore::default());
        // An earlier run is finished, so the completed-runs list exists throughout.
        kept.complete("r0");
        let mut snapshots: Vec<BTreeMap<String, String>> = Vec::new();
        for (i, e) in evs.iter().enumerate() {
            if i % 4 == 3 {
                // The store goes back to what it held three events ago (at event 15, to before
                // r1 was completed at event 14).
                let old = snapshots[i - 3].clone();
                *kept.store().0.borrow_mut() = old;
            }
            let afresh = RunTracker::with_store(
                "p:",
                MemoryStore(RefCell::new(kept.store().0.borrow().clone())),
            );
            *afresh.last.borrow_mut() = kept.last.borrow().clone();
            let (a, b) = (kept.observe_fresh(e), afresh.observe_fresh(e));
            assert_eq!(a, b, "event {i}");
            if let (Observed::Finished(s), _) = &a {
                let done = i % 3 != 0;
                if done {
                    kept.complete(&s.run_id);
                    afresh.complete(&s.run_id);
                }
            }
            assert_eq!(
                *kept.store().0.borrow(),
                *afresh.store().0.borrow(),
                "event {i}"
            );
            assert_eq!(kept.get(&e.run.id), afresh.get(&e.run.id), "event {i}: get");
            snapshots.push(kept.store().0.borrow().clone());
        }
        assert!(
            kept.memo.borrow().runs.len() <= MEMO_RUNS,
            "the memo stays bounded"
        );
    }

    /// A store that counts reads per key, and writes (sets and deletes).
    #[derive(Default)]
    struct Counting(
        MemoryStore,
        RefCell<BTreeMap<String, usize>>,
        RefCell<usize>,
    );

    impl Counting {
        fn reads(&self, key: &str) -> usize {
            self.1.borrow().get(key).copied().unwrap_or(0)
        }
        fn all_reads(&self) -> usize {
            self.1.borrow().values().sum()
        }
        fn writes(&self) -> usize {
            *self.2.borrow()
        }
    }

    impl Store for Counting {
        fn get(&self, key: &str) -> Option<String> {
            *self.1.borrow_mut().entry(key.to_string()).or_default() += 1;
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &str) {
            *self.2.borrow_mut() += 1;
            self.0.set(key, value)
        }
        fn delete(&self, key: &str) {
            *self.2.borrow_mut() += 1;
            self.0.delete(key)
        }
    }

    #[test]
    fn the_completed_runs_list_is_read_only_for_a_runs_first_event() {
        let t = RunTracker::with_store("p:", Counting::default());
        t.complete("r0");
        let list_reads = || t.store().reads("p:runs-done");
        let before = list_reads();
        let evs = run_events();
        t.observe(&evs[0]);
        assert_eq!(list_reads() - before, 1, "the run's first event");
        // An event of a run in progress: its key read, its summary written, nothing else.
        for e in &evs[1..] {
            let (reads, writes) = (t.store().all_reads(), t.store().writes());
            t.observe(e);
            assert_eq!(t.store().all_reads() - reads, 1);
            assert_eq!(t.store().writes() - writes, 1);
        }
        assert_eq!(list_reads() - before, 1);
        t.complete("r1");
        // After its completion the run's tombstone says it is finished: one read, no write.
        let (before, reads, writes) = (list_reads(), t.store().all_reads(), t.store().writes());
        assert_eq!(t.observe(&evs[3]), Observed::AlreadyFinished);
        assert_eq!(list_reads(), before);
        assert_eq!(t.store().all_reads() - reads, 1);
        assert_eq!(t.store().writes(), writes);
    }

    /// `run_events` of another run.
    fn run_events_of(run_id: &str) -> Vec<Event> {
        run_events()
            .into_iter()
            .map(|mut e| {
                e.run.id = run_id.into();
                e
            })
            .collect()
    }

    /// One shard's view of a store shared with other shards, as the host gives it: it reads its
    /// own writes first, and holds them until `commit` hands them to the shared store.
    struct Shard<'a> {
        shared: &'a MemoryStore,
        held: RefCell<BTreeMap<String, Option<String>>>,
    }

    impl<'a> Shard<'a> {
        fn of(shared: &'a MemoryStore) -> Self {
            Shard {
                shared,
                held: RefCell::default(),
            }
        }

        fn commit(&self) {
            for (key, value) in std::mem::take(&mut *self.held.borrow_mut()) {
                match value {
                    Some(v) => self.shared.set(&key, &v),
                    None => self.shared.delete(&key),
                }
            }
        }
    }

    impl Store for Shard<'_> {
        fn get(&self, key: &str) -> Option<String> {
            match self.held.borrow().get(key) {
                Some(held) => held.clone(),
                None => self.shared.get(key),
            }
        }
        fn set(&self, key: &str, value: &str) {
            self.held
                .borrow_mut()
                .insert(key.to_string(), Some(value.to_string()));
        }
        fn delete(&self, key: &str) {
            self.held.borrow_mut().insert(key.to_string(), None);
        }
    }

    /// Two shards of one instance complete a run each before either commits (both read the
    /// finished runs, then both write): neither completion is lost, so events of either run
    /// delivered again (after a crash or a lease handover) do not report it again.
    #[test]
    fn shards_completing_runs_together_lose_no_completion() {
        let shared = MemoryStore::default();
        let (r1, r2) = (run_events_of("r1"), run_events_of("r2"));
        let a = RunTracker::with_store("p:", Shard::of(&shared));
        let b = RunTracker::with_store("p:", Shard::of(&shared));
        for e in &r1 {
            a.observe(e);
        }
        for e in &r2 {
            b.observe(e);
        }
        a.store().commit();
        b.store().commit();
        a.finish("r1", Outcome::Ok);
        b.finish("r2", Outcome::Ok);
        a.store().commit();
        b.store().commit();
        for evs in [&r1, &r2] {
            let again = RunTracker::with_store("p:", Shard::of(&shared));
            for (i, e) in evs.iter().enumerate() {
                let run = &e.run.id;
                assert_eq!(
                    again.observe(e),
                    Observed::AlreadyFinished,
                    "{run} event {i}"
                );
            }
            assert_eq!(again.get(&evs[0].run.id), None);
        }
    }

    /// The tombstones (`<prefix>run:` keys) in `store`.
    fn tombstones(store: &MemoryStore) -> Vec<String> {
        store
            .0
            .borrow()
            .iter()
            .filter(|(k, v)| k.starts_with("p:run:") && v.starts_with(r#"{"done""#))
            .map(|(k, _)| k["p:run:".len()..].to_string())
            .collect()
    }

    #[test]
    fn done_ring_is_bounded() {
        let t = RunTracker::with_store("p:", MemoryStore::default());
        for i in 0..(DONE_RING + 10) {
            t.complete(&format!("r{i}"));
        }
        assert_eq!(t.done().len(), DONE_RING);
        assert_eq!(t.done()[0], "r10");
        let mut kept = tombstones(t.store());
        kept.sort_by_key(|id| id[1..].parse::<usize>().ok());
        assert_eq!(kept, t.done(), "a tombstone per listed run");
        assert_eq!(
            t.observe(&run_events_of("r10")[3]),
            Observed::AlreadyFinished
        );
        // r9's tombstone went with its place in the list: it would start afresh.
        assert!(matches!(
            t.observe(&run_events_of("r9")[3]),
            Observed::Progress(_)
        ));
    }

    #[test]
    fn a_completed_run_keeps_a_tombstone_in_place_of_its_summary() {
        let t = RunTracker::with_store("p:", MemoryStore::default());
        for e in &run_events_of("r1") {
            t.observe(e);
        }
        t.complete("r1");
        for e in &run_events_of("r2") {
            t.observe(e);
        }
        t.complete("r2");
        let stored = |k: &str| t.store().get(k);
        assert_eq!(stored("p:run:r1").as_deref(), Some(r#"{"done":true}"#));
        assert_eq!(
            stored("p:run:r2").as_deref(),
            Some(r#"{"done":true,"prev":"r1"}"#)
        );
        assert_eq!(stored("p:runs-done").as_deref(), Some(r#"["r1","r2"]"#));
        assert_eq!(t.get("r1"), None);
        // Completed again (a plugin calling `complete` twice): same tombstone, same list.
        t.complete("r2");
        assert_eq!(
            stored("p:run:r2").as_deref(),
            Some(r#"{"done":true,"prev":"r1"}"#)
        );
        assert_eq!(stored("p:runs-done").as_deref(), Some(r#"["r1","r2"]"#));
    }

    /// State written by versions before the tombstones (the summary deleted, the id listed)
    /// still says which runs are finished; the list goes on as the tombstones' index, and those
    /// ids go out of it, in turn, as runs complete.
    #[test]
    fn runs_listed_by_an_older_version_stay_finished() {
        let store = MemoryStore::default();
        let old: Vec<String> = (0..DONE_RING).map(|i| format!("old{i}")).collect();
        store.set("p:runs-done", &serde_json::to_string(&old).unwrap());
        store.set(
            "p:run:r1",
            &serde_json::to_string(&RunSummary::default()).unwrap(),
        );
        let t = RunTracker::with_store("p:", store);
        for id in ["old0", "old199"] {
            for e in &run_events_of(id) {
                assert_eq!(t.observe(e), Observed::AlreadyFinished, "{id}");
            }
        }
        assert_eq!(t.store().get("p:run:old0"), None, "nothing written for it");
        t.complete("new0");
        assert_eq!(t.done()[0], "old1");
        assert_eq!(t.done().last().map(String::as_str), Some("new0"));
        assert!(matches!(
            t.observe(&run_events_of("old0")[3]),
            Observed::Progress(_)
        ));
        assert_eq!(
            t.observe(&run_events_of("old1")[3]),
            Observed::AlreadyFinished
        );
        assert_eq!(
            t.observe(&run_events_of("new0")[3]),
            Observed::AlreadyFinished
        );
        // A summary an older version left behind is read as before.
        assert!(t.get("r1").is_some());
    }

    /// Two shards completing runs on and on, committing in an order that loses about half the
    /// list's updates: every completed run stays finished while it is among the last
    /// completions, and the tombstones stay bounded (an unlisted one goes with the next run its
    /// shard completed).
    #[test]
    fn tombstones_stay_bounded_when_shards_lose_list_updates() {
        let shared = MemoryStore::default();
        let shards = [
            RunTracker::with_store("p:", Shard::of(&shared)),
            RunTracker::with_store("p:", Shard::of(&shared)),
        ];
        let mut rng = 7u64;
        let rounds = 10 * DONE_RING;
        let mut most = 0;
        for i in 0..rounds {
            for (s, t) in shards.iter().enumerate() {
                t.complete(&format!("s{s}-{i}"));
            }
            // Both read before either committed; who commits last wins the list.
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let first = (rng >> 33) as usize % 2;
            shards[first].store().commit();
            shards[1 - first].store().commit();
            most = most.max(tombstones(&shared).len());
        }
        let listed: Vec<String> =
            serde_json::from_str(&shared.get("p:runs-done").unwrap()).unwrap();
        assert_eq!(listed.len(), DONE_RING);
        assert!(most <= 3 * DONE_RING, "{most} tombstones at most");
        let kept = tombstones(&shared);
        assert!(kept.len() <= 3 * DONE_RING, "{} tombstones", kept.len());
        for id in &listed {
            assert!(kept.contains(id), "{id} listed without a tombstone");
        }
        // The last runs each shard completed are finished, listed or not.
        for s in 0..2 {
            for i in rounds - DONE_RING / 2..rounds {
                let id = format!("s{s}-{i}");
                let t = RunTracker::with_store("p:", Shard::of(&shared));
                assert_eq!(
                    t.observe(&run_events_of(&id)[3]),
                    Observed::AlreadyFinished,
                    "{id}"
                );
            }
        }
    }

    /// A tombstone whose id another shard's write dropped from the list is deleted when the
    /// run its tracker completed next leaves the list, and the cleanup stops at a listed run.
    #[test]
    fn an_unlisted_tombstone_goes_with_the_next_completion_of_its_tracker() {
        let shared = MemoryStore::default();
        let (a, b) = (
            RunTracker::with_store("p:", Shard::of(&shared)),
            RunTracker::with_store("p:", Shard::of(&shared)),
        );
        // a's "a1" and "a2" are lost (b commits last each time), "a3" is listed.
        for i in 1..=2 {
            a.complete(&format!("a{i}"));
            b.complete(&format!("b{i}"));
            a.store().commit();
            b.store().commit();
        }
        a.complete("a3");
        a.store().commit();
        let listed = || -> Vec<String> {
            serde_json::from_str(&shared.get("p:runs-done").unwrap()).unwrap()
        };
        assert_eq!(listed(), ["b1", "b2", "a3"]);
        assert_eq!(tombstones(&shared), ["a1", "a2", "a3", "b1", "b2"]);
        // b completes runs until a3 leaves the list: a2 and a1 go with it.
        let mut i = 3;
        while listed().contains(&"a3".to_string()) {
            b.complete(&format!("b{i}"));
            b.store().commit();
            i += 1;
            if listed().contains(&"a3".to_string()) {
                assert!(tombstones(&shared).contains(&"a1".to_string()));
            }
        }
        let kept = tombstones(&shared);
        assert!(!kept.iter().any(|id| id.starts_with('a')), "{kept:?}");
        assert_eq!(kept.len(), DONE_RING);
    }
}
