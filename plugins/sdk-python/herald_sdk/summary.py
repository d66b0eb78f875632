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

Stored keys (the same as the Rust SDK's, which documents them in full):
- `<prefix>run:<run id>`: the run's summary (JSON) while it runs, then, once completed, a
  tombstone `{"done":true,"prev":"<run id>"}` (`prev`: the run this tracker completed before,
  if any), so a re-delivered event of the run is known as already finished.
- `<prefix>runs-done`: a JSON array of completed run ids, oldest first, at most DONE_RING: the
  tombstones to delete as newer runs complete. Versions before the tombstones only deleted the
  summary and listed the id, so a listed run without a key is finished too.

A run's events all go to one shard, so only that shard writes the run's key: its tombstone
cannot be lost. Shards completing runs at once can lose an id from the shared list; the cleanup
still reaches that tombstone through the `prev` link of the next run the same tracker completed.
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
#: Completed runs whose tombstones are kept, so a re-delivered stats event does not report a run
#: twice; an older one's is deleted as a newer run completes.
DONE_RING = 200

PROGRESS, FINISHED, ALREADY_FINISHED = "progress", "finished", "already-finished"

#: What `RunTracker._stored` returns for a completed run's tombstone.
_DONE = object()


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
        return cls.from_dict(_json.loads(text))

    @classmethod
    def from_dict(cls, d: dict) -> "RunSummary":
        """The summary `d` (parsed JSON) holds; TypeError or AttributeError if it holds none."""
        d = dict(d)
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


def _tombstone(d) -> dict | None:
    """`d` (parsed JSON) if it is a completed run's tombstone, else None."""
    if isinstance(d, dict) and isinstance(d.get("done"), bool) and isinstance(d.get("prev"), (str, type(None))):
        return d
    return None


class RunTracker:
    """Keeps per-run summaries in a store (the host's `state` by default) under
    `<prefix>run:<run id>` (the stored keys are described in the module's documentation)."""

    def __init__(self, prefix: str, store=None):
        self.prefix = prefix
        self.store = store if store is not None else HostState()
        #: The run this tracker completed last, and the `prev` its tombstone got.
        self._last: tuple[str, str | None] | None = None

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def _done(self) -> list[str]:
        v = self.store.get(f"{self.prefix}runs-done")
        try:
            done = _json.loads(v) if v else []
        except ValueError:
            return []
        return done if isinstance(done, list) else []

    def _stored(self, run_id: str):
        """What the run's key holds: a RunSummary, _DONE (a tombstone), or None (nothing, or text
        that is neither, which a new summary replaces)."""
        v = self.store.get(self._key(run_id))
        if not v:
            return None
        try:
            d = _json.loads(v)
        except ValueError:
            return None
        if not isinstance(d, dict):
            return None
        if _tombstone(d) is not None:
            return _DONE
        try:
            return RunSummary.from_dict(d)
        except (TypeError, AttributeError):
            return None

    def get(self, run_id: str) -> RunSummary | None:
        """The run's stored summary, if any (none once the run is completed)."""
        s = self._stored(run_id)
        return s if isinstance(s, RunSummary) else None

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
        summary = self._stored(run_id)
        if summary is _DONE:
            return ALREADY_FINISHED, None, False
        if summary is None:
            # Nothing stored: the run's first event, unless an older version completed it (it
            # deleted the summary and only listed the id).
            if run_id in self._done():
                return ALREADY_FINISHED, None, False
            summary = RunSummary.for_event(event)
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
        """Replaces a finished run's summary with a tombstone, so its events delivered again are
        `already-finished`, and lists it; the tombstones of the runs listed before the last
        DONE_RING are deleted."""
        if self._last is None:
            prev = None
        elif self._last[0] == run_id:
            prev = self._last[1]  # completed again: keep the link to the run before
        else:
            prev = self._last[0]
        self._last = (run_id, prev)
        tombstone = {"done": True} if prev is None else {"done": True, "prev": prev}
        self.store.set(self._key(run_id), _json.dumps(tombstone, separators=(",", ":")))
        done = self._done()
        if run_id not in done:
            done.append(run_id)
        dropped, done = done[:-DONE_RING], done[-DONE_RING:]
        for old in dropped:
            self._forget(old, done)
        self.store.set(f"{self.prefix}runs-done", _json.dumps(done, separators=(",", ":")))

    def _forget(self, run_id: str, done: list[str]) -> None:
        """Deletes the tombstone of `run_id`, just dropped from the list `done`, then follows its
        `prev` links: a run completed before it by the same tracker that is not listed lost its
        place to another shard's write of the list, and goes now too. Stops at a listed run (its
        turn comes) or a key that holds no tombstone (a run listed by an older version, or one
        already deleted); each step deletes what it read, so a cycle ends too."""
        listed = set(done)
        nxt = run_id
        while nxt is not None:
            key = self._key(nxt)
            v = self.store.get(key)
            try:
                tombstone = _tombstone(_json.loads(v)) if v else None
            except ValueError:
                tombstone = None
            if tombstone is None:
                return
            self.store.delete(key)
            nxt = tombstone.get("prev")
            if nxt in listed:
                return
