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

use crate::{is_host_result, result_message, Event, EventKind, Outcome, Status};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Failures kept per run (more are counted in `failures_dropped`).
pub const MAX_FAILURES: usize = 50;
/// Characters kept of a failure message.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Finished run ids remembered, so a re-delivered stats event does not report a run twice.
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

/// Keeps per-run summaries in a [`Store`] under `<prefix>run:<run id>`.
///
/// Every event reads its run's summary and the finished-runs list from the store and writes the
/// summary back. The tracker remembers what it last read or wrote, parsed ([`Memo`]): when the
/// store answers with the same text, it is not parsed again. The store stays the truth (the host
/// may rewind it to the last commit, or another shard may have written): a different text is
/// parsed as before.
pub struct RunTracker<S: Store = HostState> {
    prefix: String,
    store: S,
    memo: RefCell<Memo>,
}

/// Summaries kept parsed, beside the text they were parsed from (or serialized to).
const MEMO_RUNS: usize = 16;

/// What the tracker last read or wrote, with its text: the finished-runs list, and the
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
    pub fn with_store(prefix: &str, store: S) -> Self {
        RunTracker {
            prefix: prefix.to_string(),
            store,
            memo: RefCell::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn key(&self, run_id: &str) -> String {
        format!("{}run:{}", self.prefix, run_id)
    }

    fn done_key(&self) -> String {
        format!("{}runs-done", self.prefix)
    }

    /// Whether `run_id` is among the finished runs.
    fn is_done(&self, run_id: &str) -> bool {
        self.with_done(|done| done.iter().any(|r| r == run_id))
    }

    fn done(&self) -> Vec<String> {
        self.with_done(<[String]>::to_vec)
    }

    /// Calls `f` with the stored finished-runs list, parsed only when its text changed.
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

    /// The stored summary of a run, if any.
    pub fn get(&self, run_id: &str) -> Option<RunSummary> {
        let key = self.key(run_id);
        let (text, summary) = self.stored(&key)?;
        self.memo.borrow_mut().keep(key, text, summary.clone());
        Some(summary)
    }

    /// The text stored under `key` and its summary (taken out of the memo when the text is the
    /// one kept, else parsed); the caller keeps it again with the text it leaves in the store.
    fn stored(&self, key: &str) -> Option<(String, RunSummary)> {
        let text = self.store.get(key)?;
        let summary = match self.memo.borrow_mut().take(key, &text) {
            Some(summary) => summary,
            None => serde_json::from_str(&text).ok()?,
        };
        Some((text, summary))
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
        // A run with a stored summary is not finished: `complete` removes the summary in the
        // same call that adds the run to the list, and the host commits both together. So the
        // list is read only for a run's first event, or one that comes after its completion.
        let (text, mut summary) = match self.stored(&key) {
            Some((text, summary)) => (Some(text), summary),
            None if self.is_done(run_id) => return (Observed::AlreadyFinished, false),
            None => (None, RunSummary::for_event(event)),
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

    /// Forgets a finished run's summary and remembers its id (the last [`DONE_RING`]).
    pub fn complete(&self, run_id: &str) {
        let mut done = self.done();
        if !done.iter().any(|r| r == run_id) {
            done.push(run_id.to_string());
        }
        if done.len() > DONE_RING {
            let extra = done.len() - DONE_RING;
            done.drain(..extra);
        }
        if let Ok(text) = serde_json::to_string(&done) {
            self.store.set(&self.done_key(), &text);
            self.memo.borrow_mut().done = Some((text, done));
        }
        let key = self.key(run_id);
        self.store.delete(&key);
        self.memo.borrow_mut().runs.retain(|(k, _, _)| *k != key);
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
    /// tracker made afresh for every event (parsing everything) does, also when the store is
    /// rewound under it (the host's discard of uncommitted writes), events are delivered again
    /// and runs complete.
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
        // An earlier run is finished, so the finished-runs list exists throughout.
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

    /// A store that counts reads per key.
    #[derive(Default)]
    struct Counting(MemoryStore, RefCell<BTreeMap<String, usize>>);

    impl Store for Counting {
        fn get(&self, key: &str) -> Option<String> {
            *self.1.borrow_mut().entry(key.to_string()).or_default() += 1;
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &str) {
            self.0.set(key, value)
        }
        fn delete(&self, key: &str) {
            self.0.delete(key)
        }
    }

    #[test]
    fn the_finished_runs_list_is_read_only_when_the_run_has_no_summary() {
        let t = RunTracker::with_store("p:", Counting::default());
        t.complete("r0");
        let reads = || {
            t.store()
                .1
                .borrow()
                .get("p:runs-done")
                .copied()
                .unwrap_or(0)
        };
        let before = reads();
        let evs = run_events();
        for e in &evs {
            t.observe(e);
        }
        assert_eq!(reads() - before, 1, "the run's first event only");
        t.complete("r1");
        // After its completion the run has no summary: the list says it is finished.
        let before = reads();
        assert_eq!(t.observe(&evs[3]), Observed::AlreadyFinished);
        assert_eq!(reads() - before, 1);
    }

    #[test]
    fn done_ring_is_bounded() {
        let t = RunTracker::with_store("", MemoryStore::default());
        for i in 0..(DONE_RING + 10) {
            t.complete(&format!("r{i}"));
        }
        assert_eq!(t.done().len(), DONE_RING);
        assert_eq!(t.done()[0], "r10");
    }
}
