"""Run summaries: a run's events aggregated into one record kept in the instance's durable
`state`, so a plugin can report "deploy.yml failed: 4 hosts, 2 failures" when the stats event
arrives, also across host restarts (the Rust SDK's `summary` module, same rules):

    tracker = RunTracker("chat:")
    kind, summary = tracker.observe(event)
    if kind == FINISHED:
        outcome = send(summary)
        return tracker.finish(summary.run_id, outcome)

Updates are idempotent: an event whose `sequence` is not above the last one applied to its run
is not counted again (a retried or re-delivered event has the same sequence).
"""
from __future__ import annotations

import json as _json
from dataclasses import asdict, dataclass, field

from . import _host
from .event import is_host_result, result_message
from .outcome import Ok

#: Failures kept per run (more are counted in `failures_dropped`).
MAX_FAILURES = 50
#: Characters kept of a failure message.
MAX_MESSAGE_CHARS = 500
#: Finished run ids remembered, so a re-delivered stats event does not report a run twice.
DONE_RING = 200

PROGRESS, FINISHED, ALREADY_FINISHED = "progress", "finished", "already-finished"


@dataclass
class Failure:
    host: str
    task: str
    action: str
    play: str
    message: str
    unreachable: bool


@dataclass
class RunSummary:
    run_id: str
    tenant: str = ""
    playbook: str = ""
    controller: str | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    last_sequence: int | None = None
    plays: int = 0
    tasks: int = 0
    results: dict = field(default_factory=lambda: dict.fromkeys(
        ("ok", "changed", "failed", "unreachable", "skipped", "ignored"), 0))
    failures: list = field(default_factory=list)
    failures_dropped: int = 0
    #: Per-host counters of the stats event (the PLAY RECAP), dicts with the HostStats keys.
    hosts: list = field(default_factory=list)
    #: `set_stats` data (`{"_run": {...}, "<host>": {...}}`) from the stats event.
    custom_stats: dict | None = None
    finished: bool = False

    @classmethod
    def for_event(cls, e) -> "RunSummary":
        return cls(run_id=e.run.id, tenant=e.tenant, playbook=e.run.playbook, controller=e.run.controller)

    @classmethod
    def from_json(cls, text: str) -> "RunSummary":
        d = _json.loads(text)
        d["failures"] = [Failure(**f) for f in d.get("failures", [])]
        return cls(**d)

    def to_json(self) -> str:
        return _json.dumps(asdict(self), separators=(",", ":"))

    def apply(self, e) -> bool:
        """Applies one event; False (nothing changed) for an event already applied."""
        if self.last_sequence is not None and e.sequence <= self.last_sequence:
            return False
        self.last_sequence = e.sequence
        if not self.playbook:
            self.playbook = e.run.playbook
        if self.controller is None:
            self.controller = e.run.controller
        k = e.kind
        if k == "playbook_on_start":
            self.started_ms = e.created_ms
        elif k == "playbook_on_play_start":
            self.plays += 1
        elif k in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.tasks += 1
        elif k == "playbook_on_stats":
            self.ended_ms = e.created_ms
            self.finished = True
            st = e.stats
            if st is not None:
                self.hosts = [asdict(h) for h in st.hosts]
                try:
                    self.custom_stats = _json.loads(st.custom) if st.custom else None
                except ValueError:
                    self.custom_stats = None
        elif is_host_result(k):
            self._apply_result(e)
        if self.started_ms is None:
            self.started_ms = e.created_ms
        return True

    def _apply_result(self, e) -> None:
        status = e.status
        if status is None:
            status = {"runner_on_failed": "failed", "runner_on_async_failed": "failed",
                      "runner_on_unreachable": "unreachable", "runner_on_skipped": "skipped"}.get(
                e.kind, "changed" if e.changed else "ok")
        if status == "failed" and e.ignore_errors:
            self.results["ignored"] += 1
        else:
            self.results[status] += 1
        if status == "unreachable" or (status == "failed" and not e.ignore_errors):
            if len(self.failures) >= MAX_FAILURES:
                self.failures_dropped += 1
                return
            task, play = e.task, e.play
            self.failures.append(Failure(
                host=e.host or "", task=task.name if task else "", action=task.action if task else "",
                play=play.name if play else "", message=result_message(e.res, MAX_MESSAGE_CHARS) or "",
                unreachable=status == "unreachable"))

    def status(self) -> str:
        """`failed`, `successful` or `running`: from the stats when finished, else from the
        results seen."""
        if self.finished and self.hosts:
            bad = any(h["failures"] > 0 or h["unreachable"] > 0 for h in self.hosts)
            return "failed" if bad else "successful"
        if self.results["failed"] or self.results["unreachable"]:
            return "failed"
        return "successful" if self.finished else "running"

    def duration_ms(self) -> int | None:
        if self.ended_ms is None or self.started_ms is None:
            return None
        return max(0, self.ended_ms - self.started_ms)

    def failed_hosts(self) -> list[str]:
        """Hosts with a failure or unreachable in the stats (or in the results seen before)."""
        if self.hosts:
            names = [h["host"] for h in self.hosts if h["failures"] > 0 or h["unreachable"] > 0]
        else:
            names = [f.host for f in self.failures]
        return sorted(set(names))

    def run_url(self, template: str) -> str:
        """`{run_id}`, `{tenant}` and `{playbook}` of `template` replaced by the run's values."""
        return (template.replace("{run_id}", self.run_id).replace("{tenant}", self.tenant)
                .replace("{playbook}", self.playbook))

    def run_custom_stats(self) -> dict | None:
        """Run-wide `set_stats` data (`custom_stats._run`), if any."""
        v = (self.custom_stats or {}).get("_run")
        return v if isinstance(v, dict) else None


class HostState:
    """The host's durable `state` import."""

    get = staticmethod(_host.state_get)
    set = staticmethod(_host.state_set)
    delete = staticmethod(_host.state_delete)


class MemoryStore:
    """A store in memory, for tests."""

    def __init__(self):
        self.data: dict[str, str] = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value):
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)


class RunTracker:
    """Keeps per-run summaries in a store (the host's `state` by default) under
    `<prefix>run:<run id>`."""

    def __init__(self, prefix: str, store=None):
        self.prefix = prefix
        self.store = store if store is not None else HostState()

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def _done(self) -> list[str]:
        v = self.store.get(f"{self.prefix}runs-done")
        try:
            return _json.loads(v) if v else []
        except ValueError:
            return []

    def get(self, run_id: str) -> RunSummary | None:
        v = self.store.get(self._key(run_id))
        try:
            return RunSummary.from_json(v) if v else None
        except (ValueError, TypeError):
            return None

    def observe(self, event) -> tuple[str, RunSummary | None]:
        """Applies `event` to its run's summary: (`progress`, summary so far), (`finished`,
        final summary: again for a retried stats event until `complete`), or
        (`already-finished`, None) for an event of a completed run."""
        kind, summary, _fresh = self.observe_fresh(event)
        return kind, summary

    def observe_fresh(self, event) -> tuple[str, RunSummary | None, bool]:
        """Like `observe`, also telling whether the event was applied now (False for a retry or
        re-delivery): keep side effects that are not idempotent to the first delivery."""
        run_id = event.run.id
        if run_id in self._done():
            return ALREADY_FINISHED, None, False
        summary = self.get(run_id) or RunSummary.for_event(event)
        fresh = summary.apply(event)
        if fresh:
            self.store.set(self._key(run_id), summary.to_json())
        return (FINISHED if summary.finished else PROGRESS), summary, fresh

    def finish(self, run_id: str, outcome):
        """Completes the run when `outcome` is ok (its final report went out), else keeps it
        open so the retried event reports it again. Returns `outcome`."""
        if isinstance(outcome, Ok):
            self.complete(run_id)
        return outcome

    def complete(self, run_id: str) -> None:
        """Forgets a finished run's summary and remembers its id (the last DONE_RING)."""
        done = self._done()
        if run_id not in done:
            done.append(run_id)
        done = done[-DONE_RING:]
        self.store.set(f"{self.prefix}runs-done", _json.dumps(done))
        self.store.delete(self._key(run_id))
