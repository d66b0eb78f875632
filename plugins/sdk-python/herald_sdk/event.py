"""The event a plugin receives, read field by field.

Inside a component `EventRef` wraps the host's lent `event` resource: each attribute is read
from the host on first use (one host call) and kept for the rest of the call, so a plugin pays
only for the fields it reads. Natively (tests) `Event` holds the same fields as plain values.
Both have the same attributes: `id`, `parent_id`, `kind` (the wire name, `runner_on_failed`),
`tenant`, `run`, `sequence`, `created_ms`, `play`, `task`, `host`, `status` (`ok`, `changed`,
`failed`, `unreachable`, `skipped` or None), `changed`, `ignore_errors`, `timing`, `res` (the
module result as JSON text), `stats` and `json` (the whole event as journaled).
"""
from __future__ import annotations

import json as _json
from dataclasses import dataclass, field


@dataclass
class Run:
    id: str
    playbook: str = ""
    controller: str | None = None


@dataclass
class Play:
    id: str
    name: str
    pattern: str | None = None


@dataclass
class Task:
    id: str
    name: str
    action: str = ""
    path: str | None = None


@dataclass
class Timing:
    start_ms: int
    end_ms: int
    duration_ms: int


@dataclass
class HostStats:
    host: str
    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class Stats:
    hosts: list[HostStats] = field(default_factory=list)
    custom: str | None = None


class _Fields:
    """Helpers shared by both event types."""

    def res_dict(self) -> dict | None:
        """The module result parsed, None when absent or not an object."""
        try:
            v = _json.loads(self.res) if self.res else None
        except ValueError:
            return None
        return v if isinstance(v, dict) else None


@dataclass
class Event(_Fields):
    """An event with every field given: what tests build (see `herald_sdk.testing.event`)."""

    kind: str
    run: Run
    id: str = "00000000-0000-0000-0000-000000000000"
    parent_id: str | None = None
    tenant: str = "default"
    sequence: int = 1
    created_ms: int = 0
    play: Play | None = None
    task: Task | None = None
    host: str | None = None
    status: str | None = None
    changed: bool = False
    ignore_errors: bool = False
    timing: Timing | None = None
    res: str | None = None
    stats: Stats | None = None
    json: str = "{}"


def _enum_name(v) -> str:
    return v.name.lower()


class EventRef(_Fields):
    """The host's lent event, read on demand. Valid only during the `handle` call."""

    __slots__ = ("_r", "_cache")

    def __init__(self, resource):
        self._r = resource
        self._cache: dict = {}

    def _get(self, name: str, conv=None):
        try:
            return self._cache[name]
        except KeyError:
            v = getattr(self._r, name)()
            if conv is not None and v is not None:
                v = conv(v)
            self._cache[name] = v
            return v

    id = property(lambda s: s._get("id"))
    parent_id = property(lambda s: s._get("parent_id"))
    kind = property(lambda s: s._get("kind", _enum_name))
    tenant = property(lambda s: s._get("tenant"))
    run = property(lambda s: s._get("run", lambda r: Run(r.id, r.playbook, r.controller)))
    sequence = property(lambda s: s._get("sequence"))
    created_ms = property(lambda s: s._get("created_ms"))
    play = property(lambda s: s._get("play", lambda p: Play(p.id, p.name, p.pattern)))
    task = property(lambda s: s._get("task", lambda t: Task(t.id, t.name, t.action, t.path)))
    host = property(lambda s: s._get("host"))
    status = property(lambda s: s._get("status", _enum_name))
    changed = property(lambda s: s._get("changed"))
    ignore_errors = property(lambda s: s._get("ignore_errors"))
    timing = property(lambda s: s._get("timing", lambda t: Timing(t.start_ms, t.end_ms, t.duration_ms)))
    res = property(lambda s: s._get("res"))
    stats = property(lambda s: s._get("stats", lambda st: Stats(
        [HostStats(h.host, h.ok, h.changed, h.failures, h.unreachable, h.skipped, h.rescued, h.ignored)
         for h in st.hosts], st.custom)))
    json = property(lambda s: s._get("json"))


HOST_RESULTS = frozenset({"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable",
                          "runner_on_async_ok", "runner_on_async_failed"})


def is_host_result(kind: str) -> bool:
    """A host's final result for a task (not an item, not a start or poll)."""
    return kind in HOST_RESULTS


def host_failure(e) -> str | None:
    """`failed` or `unreachable` for a host's final result that failed (errors not ignored) or
    could not reach the host; None for every other event."""
    if not is_host_result(e.kind):
        return None
    if e.status == "unreachable":
        return "unreachable"
    if e.status == "failed" and not e.ignore_errors:
        return "failed"
    return None


AD_HOC_RUN = "ad-hoc run"


def playbook_name(playbook: str) -> str:
    """The playbook's name for messages, `ad-hoc run` when empty."""
    return playbook or AD_HOC_RUN


def truncate(s: str, max_chars: int) -> str:
    """At most `max_chars` characters, the last one `…` when cut."""
    if len(s) <= max_chars:
        return s
    return "" if max_chars == 0 else s[: max_chars - 1] + "…"


def result_message(res: str | None, max_chars: int = 500) -> str | None:
    """A short human message from a module result (`msg`, else `stderr`, `reason`, `message`,
    `stdout`), at most `max_chars` characters."""
    try:
        v = _json.loads(res) if res else None
    except ValueError:
        return None
    if not isinstance(v, dict):
        return None
    for key in ("msg", "stderr", "reason", "message", "stdout"):
        x = v.get(key)
        if isinstance(x, str) and x.strip():
            return truncate(x.strip(), max_chars)
        if isinstance(x, (list, dict)):
            return truncate(_json.dumps(x, separators=(",", ":")), max_chars)
    return None
