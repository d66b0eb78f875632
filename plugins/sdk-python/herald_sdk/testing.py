"""A fake host for a plugin's own tests (pytest), natively, without a component:

    from herald_sdk.testing import FakeHost, host_event

    def test_failure_is_posted():
        with FakeHost(allow_http=["https://chat.example.com"]) as host:
            host.respond("https://chat.example.com/hooks/", 200)
            plugin = Chat({"url": "https://chat.example.com/hooks/x"})
            assert plugin.handle(host_event("runner_on_failed", "failed", "web1"), 1) == ok()
            assert host.requests[0].json()["text"] == ...

`FakeHost` keeps what the plugin logged, the metrics it recorded, its state, and every request
it sent; requests go only to the scripted answers (`respond`, `fail`), checked against
`allow_http` as the host checks them (scheme, host and port equal, path under the prefix). A
request with no scripted answer fails the test (AssertionError) instead of reaching the network.
"""
from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import _host
from .event import Event, HostStats, Play, Run, Stats, Task, Timing


@dataclass
class SentRequest:
    method: str
    url: str
    headers: list[tuple[str, bytes]]
    body: bytes
    timeout_ms: int | None

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return bytes(v).decode(errors="replace")
        return None

    def json(self):
        return _json.loads(self.body)


@dataclass
class _Route:
    method: str | None
    pattern: re.Pattern
    answers: list  # of (status, headers, body) or ("error", kind, detail)
    repeat_last: bool = True
    hits: int = field(default=0)


def _prefix_admits(prefix: str, url: str) -> bool:
    p, u = urlsplit(prefix), urlsplit(url)
    if (p.scheme, p.hostname, p.port or _default_port(p.scheme)) != (u.scheme, u.hostname, u.port or _default_port(u.scheme)):
        return False
    base = p.path.rstrip("/")
    return u.path == base or u.path.startswith(base + "/") or not base


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


class FakeHost:
    """The host's imports, in memory, for native tests. Use as a context manager (it installs
    itself as the SDK's host and removes itself after)."""

    def __init__(self, allow_http=(), allow_sockets=(), now_ms: int | None = None,
                 max_http_requests: int | None = None, templates=None):
        """`templates`: the user's templates as the host would render them, name → the text
        or a function of the event returning it (or raising `templates.TemplateError`); no
        Jinja2 runs here, so a test states what the host's render gives."""
        self.templates = dict(templates or {})
        #: The defaults the plugin gave (`Plugin.default_templates()`), as given.
        self.default_templates: dict[str, str] = {}
        self.allow_http = list(allow_http)
        self.allow_sockets = list(allow_sockets)
        self.now_ms = now_ms
        self.max_http_requests = max_http_requests
        self.logs: list[tuple[str, str]] = []
        self.metrics: list[tuple[str, str, dict, float]] = []
        self.state: dict[str, str] = {}
        self.requests: list[SentRequest] = []
        self._routes: list[_Route] = []

    def __enter__(self) -> "FakeHost":
        _host.install(self)
        return self

    def __exit__(self, *exc) -> None:
        _host.install(None)

    # -- scripting --------------------------------------------------------------------------

    def respond(self, url: str, status: int = 200, body=b"", headers=None, method: str | None = None,
                regex: bool = False, then=None) -> "FakeHost":
        """Answer requests whose URL starts with `url` (or matches it, `regex=True`) with
        `status`, `headers` (dict) and `body` (bytes, str, or a JSON value). `then`: a list of
        further (status, body, headers) answers for the next requests; the last one repeats."""
        answers = [self._answer(status, body, headers)]
        for a in then or []:
            answers.append(self._answer(*a))
        pat = re.compile(url if regex else re.escape(url))
        self._routes.insert(0, _Route(method, pat, answers))
        return self

    def fail(self, url: str, kind: str = "timeout", detail: str = "no answer", method: str | None = None) -> "FakeHost":
        """Requests to `url` get no answer: `kind` is timeout, transport, invalid or denied."""
        self._routes.insert(0, _Route(method, re.compile(re.escape(url)), [("error", kind, detail)]))
        return self

    @staticmethod
    def _answer(status, body=b"", headers=None):
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, (bytes, bytearray)):
            body = _json.dumps(body).encode()
        hs = [(k.lower(), str(v).encode()) for k, v in (headers or {}).items()]
        return (status, hs, bytes(body))

    # -- what the plugin did ----------------------------------------------------------------

    def logged(self, level: str | None = None) -> list[str]:
        return [m for lv, m in self.logs if level is None or lv == level]

    # -- the imports ------------------------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def metric(self, kind, name, help, labels, value) -> None:
        if name.startswith("herald_"):
            raise AssertionError(f"metric {name}: names starting with herald_ are the host's")
        self.metrics.append((kind, name, dict(labels), value))

    def allows_http(self, url: str) -> str | None:
        if any(_prefix_admits(p, url) for p in self.allow_http):
            return None
        from .http import origin

        listed = ", ".join(self.allow_http) if self.allow_http else None
        return (f"{origin(url)} is not in allow_http ("
                + (f"it lists {listed})" if listed else "it is empty)"))

    def allows_socket(self, address: str) -> str | None:
        if address in self.allow_sockets:
            return None
        return f"{address} is not in allow_sockets"

    def render(self, name: str, event) -> str | None:
        """A user's template as scripted; a plugin's default renders to None (a fallback)."""
        t = self.templates.get(name)
        if t is None:
            return None
        return t(event) if callable(t) else str(t)

    def http_send(self, method, url, headers, body, timeout_ms):
        if self.allows_http(url) is not None:
            raise _host.HostHttpError("denied", self.allows_http(url))
        if self.max_http_requests is not None and len(self.requests) >= self.max_http_requests:
            raise _host.HostHttpError("denied", "limits.max_http_requests used up")
        self.requests.append(SentRequest(method, url, list(headers), bytes(body), timeout_ms))
        for r in self._routes:
            if (r.method is None or r.method == method) and r.pattern.match(url):
                a = r.answers[min(r.hits, len(r.answers) - 1)]
                r.hits += 1
                if a[0] == "error":
                    raise _host.HostHttpError(a[1], a[2])
                return a
        raise AssertionError(f"the plugin sent {method} {url}, which nothing is scripted to answer "
                             "(FakeHost.respond)")


# -- events -------------------------------------------------------------------------------------

_seq = [0]


def event(kind: str, run_id: str = "r1", playbook: str = "site.yml", **fields) -> Event:
    """An event of `kind` in run `run_id`; `sequence` counts up unless given."""
    _seq[0] += 1
    fields.setdefault("sequence", _seq[0])
    fields.setdefault("id", f"{run_id}-{fields['sequence']}")
    fields.setdefault("created_ms", 1_700_000_000_000 + fields["sequence"] * 1000)
    return Event(kind=kind, run=Run(run_id, playbook, fields.pop("controller", None)), **fields)


def host_event(kind: str, status: str, host: str, task: str = "a task", res=None, run_id: str = "r1",
               playbook: str = "site.yml", action: str = "ansible.builtin.command", **fields) -> Event:
    """A host's result: `res` may be a dict (serialized) or JSON text."""
    if isinstance(res, dict):
        res = _json.dumps(res)
    fields.setdefault("play", Play("p1", "a play", "all"))
    return event(kind, run_id, playbook, host=host, status=status, changed=status == "changed",
                 task=Task("t-" + task, task, action), res=res,
                 timing=fields.pop("timing", Timing(0, 1000, 1000)), **fields)


def stats_event(hosts: dict[str, dict], custom: dict | None = None, run_id: str = "r1",
                playbook: str = "site.yml", **fields) -> Event:
    """The stats event: `hosts` maps a host to its counters (`ok`, `failures`, ...)."""
    st = Stats([HostStats(h, **c) for h, c in hosts.items()], _json.dumps(custom) if custom else None)
    return event("playbook_on_stats", run_id, playbook, stats=st, **fields)


# -- recorded runs ------------------------------------------------------------------------------

_STATUS = {"runner_on_ok": "ok", "runner_on_async_ok": "ok", "runner_item_on_ok": "ok",
           "runner_on_failed": "failed", "runner_on_async_failed": "failed", "runner_item_on_failed": "failed",
           "runner_on_skipped": "skipped", "runner_item_on_skipped": "skipped",
           "runner_on_unreachable": "unreachable"}


def _epoch_ms(text) -> int:
    from datetime import datetime, timezone

    if not isinstance(text, str):
        return 0
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def event_from_wire(wire: dict, tenant: str = "default") -> Event:
    """The event a plugin would get for one event in Herald's wire format (ansible-runner's job
    event shape: a line of `herald runs export`, a file of ansible-runner's `job_events/`),
    with the fields derived as the host derives them."""
    kind = wire.get("event", "")
    data = wire.get("event_data") if isinstance(wire.get("event_data"), dict) else {}
    res = data.get("res") if isinstance(data.get("res"), dict) else None
    changed = bool(res.get("changed")) if res else False
    status = _STATUS.get(kind)
    if status == "ok" and changed:
        status = "changed"
    play = Play(data["play_uuid"], data.get("play", ""), data.get("play_pattern")) if data.get("play_uuid") else None
    task = (Task(data["task_uuid"], data.get("task", ""), data.get("task_action", ""), data.get("task_path"))
            if data.get("task_uuid") else None)
    timing = None
    if data.get("start") and data.get("end"):
        start, end = _epoch_ms(data["start"]), _epoch_ms(data["end"])
        dur = data.get("duration")
        timing = Timing(start, end, round(dur * 1000) if isinstance(dur, (int, float)) else max(0, end - start))
    stats = None
    if kind == "playbook_on_stats":
        fields = ("processed", "ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
        hosts = sorted({h for f in fields if isinstance(data.get(f), dict) for h in data[f]})
        count = lambda f, h: int((data.get(f) or {}).get(h, 0))  # noqa: E731
        custom = data.get("custom_stats") or ({"_run": data["artifact_data"]} if data.get("artifact_data") else None)
        stats = Stats([HostStats(h, count("ok", h), count("changed", h), count("failures", h), count("dark", h),
                                 count("skipped", h), count("rescued", h), count("ignored", h)) for h in hosts],
                      _json.dumps(custom) if custom else None)
    return Event(kind=kind, run=Run(wire.get("run_id", ""), data.get("playbook", "") or "", wire.get("controller")),
                 id=wire.get("uuid", ""), parent_id=wire.get("parent_uuid"), tenant=wire.get("tenant", tenant),
                 sequence=int(wire.get("counter", 0)), created_ms=_epoch_ms(wire.get("created")), play=play,
                 task=task, host=data.get("host"), status=status, changed=changed,
                 ignore_errors=bool(data.get("ignore_errors", False)), timing=timing,
                 res=_json.dumps(res) if res is not None else None, stats=stats, json=_json.dumps(wire))


def load_events(path) -> list[Event]:
    """A recorded run as events, in order: a file of `herald runs export` (one JSON object per
    line), a JSON array, or an ansible-runner `job_events/` directory (or the artifacts
    directory holding it)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        d = p / "job_events" if (p / "job_events").is_dir() else p
        wires = [_json.loads(f.read_text()) for f in d.glob("*.json")]
    else:
        text = p.read_text()
        wires = _json.loads(text) if text.lstrip().startswith("[") else \
            [_json.loads(line) for line in text.splitlines() if line.strip()]
    wires.sort(key=lambda w: (w.get("run_id", ""), int(w.get("counter", 0))))
    return [event_from_wire(w) for w in wires]
