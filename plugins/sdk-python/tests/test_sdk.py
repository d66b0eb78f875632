"""The SDK's helpers, natively (the same rules as the Rust SDK's tests)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from herald_sdk import (ConfigError, Ok, Permanent, Retryable, config, http, ok, permanent, result_message,  # noqa: E402
                        retryable, state, summary, truncate)
from herald_sdk.testing import FakeHost, event, host_event, stats_event  # noqa: E402


def test_status_to_outcome():
    o = "http://127.0.0.1:9000"
    assert http.classify(204, None, b"", 0, o) == Ok()
    assert http.classify(429, "2", b"slow down", 0, o) == Retryable("HTTP 429 from http://127.0.0.1:9000: slow down", 2000)
    assert http.classify(503, None, b"", 0, o) == Retryable("HTTP 503 from http://127.0.0.1:9000", None)
    assert http.classify(408, "1.5", b"", 0, o).retry_after_ms == 1500
    assert isinstance(http.classify(400, "2", b"bad", 0, o), Permanent)
    assert "redirects are not followed" in http.classify(301, None, b"", 0, o).reason
    long = http.classify(400, None, b"x  \n" * 1000, 0, o).reason
    assert len(long) < 400 and long.endswith("…")


def test_retry_after_seconds_and_dates():
    t = 784_111_777_000  # Sun, 06 Nov 1994 08:49:37 GMT
    assert http.parse_retry_after("120", 0) == 120_000
    assert http.parse_retry_after(" 0 ", 0) == 0
    assert http.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t - 30_000) == 30_000
    assert http.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t + 30_000) == 0
    assert http.parse_retry_after("soon", 0) is None
    assert http.parse_retry_after("-3", 0) is None


def test_origin_hides_path_and_query():
    assert http.origin("https://chat.example.com/hooks/s3cr3t?x=1") == "https://chat.example.com"
    assert http.origin("http://[::1]:8080/a") == "http://[::1]:8080"


def test_send_through_the_fake_host_maps_answers_and_errors():
    with FakeHost(allow_http=["http://sink.test/api"], now_ms=0) as h:
        h.respond("http://sink.test/api/ok", 200, {"id": 1})
        h.respond("http://sink.test/api/busy", 429, "busy", {"Retry-After": "3"}, then=[(200, "")])
        h.fail("http://sink.test/api/slow", "timeout", "no response head in 5000 ms")
        out, resp = http.post("http://sink.test/api/ok").json({"a": "é"}).deliver()
        assert out == ok() and resp.json() == {"id": 1}
        assert h.requests[0].json() == {"a": "é"} and h.requests[0].header("content-type") == "application/json"
        assert http.post("http://sink.test/api/busy").deliver()[0] == Retryable("HTTP 429 from http://sink.test: busy", 3000)
        assert http.post("http://sink.test/api/busy").deliver()[0] == ok()
        out, resp = http.post("http://sink.test/api/slow").deliver()
        assert resp is None and out == retryable("timeout talking to http://sink.test: no response head in 5000 ms")
        out, _ = http.post("http://sink.test/elsewhere").deliver()
        assert isinstance(out, Permanent) and "not allowed by the instance's allow_http" in out.reason
        with pytest.raises(AssertionError, match="nothing is scripted"):
            http.post("http://sink.test/api/unscripted").send()


def test_without_a_host_the_calls_fail_clearly():
    with pytest.raises(RuntimeError, match="no host outside a component"):
        state.get("x")


def test_config_helpers_name_the_key():
    with FakeHost(allow_http=["https://ok.test"]):
        assert config.granted_url({"url": "https://ok.test/x"}, "url") == "https://ok.test/x"
        for cfg, msg in [({"url": "https://other.test/x"}, "config key `url`: https://other.test is not in allow_http"),
                         ({"url": "ftp://ok.test"}, "config key `url`: must be an http"),
                         ({}, "config key `url`: is required"),
                         ({"url": 3}, "config key `url`: must be a string")]:
            with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
                config.granted_url(cfg, "url")
    with pytest.raises(ConfigError, match="config key `timeout_ms`: must be between 1 and 600000"):
        config.timeout_ms({"timeout_ms": 0})
    with pytest.raises(ConfigError, match="config key `colour`: unknown key"):
        config.reject_unknown({"colour": 1}, {"color"})


def test_messages_and_truncation():
    assert truncate("hello!", 5) == "hell…"
    assert result_message('{"msg": "  boom  "}') == "boom"
    assert result_message('{"stderr": "", "stdout": "out"}') == "out"
    assert result_message('{"msg": ["a", 1]}') == '["a",1]'
    assert result_message("not json") is None


def run_events(run="r1"):
    return [
        event("playbook_on_start", run),
        event("playbook_on_play_start", run),
        event("playbook_on_task_start", run),
        host_event("runner_on_ok", "changed", "web1", "install", run_id=run),
        host_event("runner_on_failed", "failed", "web2", "install", {"msg": "no package"}, run_id=run),
        host_event("runner_on_unreachable", "unreachable", "db1", "install", {"msg": "ssh: timeout"}, run_id=run),
        host_event("runner_on_failed", "failed", "web1", "lint", ignore_errors=True, run_id=run),
        stats_event({"web1": {"ok": 2, "changed": 1, "ignored": 1}, "web2": {"failures": 1},
                     "db1": {"unreachable": 1}}, {"_run": {"release": "2.0"}}, run_id=run),
    ]


def test_run_tracker_is_idempotent_and_completes_once():
    store = summary.MemoryStore()
    t = summary.RunTracker("x:", store)
    evs = run_events()
    for e in evs[:-1]:
        kind, s = t.observe(e)
        assert kind == summary.PROGRESS
    # A retried event is not counted twice.
    _, _, fresh = t.observe_fresh(evs[4])
    assert not fresh
    kind, s = t.observe(evs[-1])
    assert kind == summary.FINISHED
    assert s.results == {"ok": 0, "changed": 1, "failed": 1, "unreachable": 1, "skipped": 0, "ignored": 1}
    assert s.status() == "failed" and s.failed_hosts() == ["db1", "web2"]
    assert [(f.host, f.unreachable, f.message) for f in s.failures] == [("web2", False, "no package"), ("db1", True, "ssh: timeout")]
    assert s.run_custom_stats() == {"release": "2.0"} and s.plays == 1 and s.tasks == 1
    assert s.run_url("https://h/{tenant}/{run_id}") == "https://h/default/r1"
    # Not ok: the run stays open and the retried stats event reports it again.
    assert t.finish("r1", permanent("no")) == permanent("no")
    assert t.observe(evs[-1])[0] == summary.FINISHED
    t.finish("r1", ok())
    assert t.observe(evs[-1]) == (summary.ALREADY_FINISHED, None)
    # The summary gave way to a tombstone.
    assert store.data["x:run:r1"] == '{"done":true}' and t.get("r1") is None


class ShardStore:
    """One shard's view of a store shared with other shards, as the host gives it: it reads its
    own writes first, and holds them until `commit` hands them to the shared store."""

    def __init__(self, shared: summary.MemoryStore):
        self.shared, self.held = shared, {}

    def get(self, key):
        return self.held[key] if key in self.held else self.shared.get(key)

    def set(self, key, value):
        self.held[key] = value

    def delete(self, key):
        self.held[key] = None

    def commit(self):
        for key, value in self.held.items():
            if value is None:
                self.shared.delete(key)
            else:
                self.shared.set(key, value)
        self.held = {}


def test_shards_completing_runs_together_lose_no_completion():
    # Both shards complete a run before either commits (both read the list, then both write):
    # events of either run delivered again do not report it again.
    shared = summary.MemoryStore()
    a, b = summary.RunTracker("p:", ShardStore(shared)), summary.RunTracker("p:", ShardStore(shared))
    r1, r2 = run_events("r1"), run_events("r2")
    for e in r1:
        a.observe(e)
    for e in r2:
        b.observe(e)
    a.store.commit(), b.store.commit()
    a.finish("r1", ok()), b.finish("r2", ok())
    a.store.commit(), b.store.commit()
    for evs in (r1, r2):
        again = summary.RunTracker("p:", ShardStore(shared))
        for i, e in enumerate(evs):
            assert again.observe(e) == (summary.ALREADY_FINISHED, None), (e.run.id, i)
        assert again.get(evs[0].run.id) is None


def tombstones(store: summary.MemoryStore) -> list[str]:
    return sorted(k[len("p:run:"):] for k, v in store.data.items()
                  if k.startswith("p:run:") and v.startswith('{"done"'))


def test_stored_format_is_the_rust_sdks():
    # The same keys and text as the Rust SDK's test `a_completed_run_keeps_a_tombstone_in_place_of_its_summary`.
    t = summary.RunTracker("p:", summary.MemoryStore())
    for run in ("r1", "r2"):
        for e in run_events(run):
            t.observe(e)
        t.complete(run)
    data = t.store.data
    assert data["p:run:r1"] == '{"done":true}'
    assert data["p:run:r2"] == '{"done":true,"prev":"r1"}'
    assert data["p:runs-done"] == '["r1","r2"]'
    t.complete("r2")  # completed again: same tombstone, same list
    assert data["p:run:r2"] == '{"done":true,"prev":"r1"}' and data["p:runs-done"] == '["r1","r2"]'


def test_done_ring_is_bounded():
    t = summary.RunTracker("p:", summary.MemoryStore())
    for i in range(summary.DONE_RING + 10):
        t.complete(f"r{i}")
    listed = json.loads(t.store.data["p:runs-done"])
    assert len(listed) == summary.DONE_RING and listed[0] == "r10"
    assert tombstones(t.store) == sorted(listed)
    assert t.observe(run_events("r10")[3])[0] == summary.ALREADY_FINISHED
    assert t.observe(run_events("r9")[3])[0] == summary.PROGRESS


def test_runs_listed_by_an_older_version_stay_finished():
    # Before the tombstones, `complete` deleted the summary and only listed the id.
    store = summary.MemoryStore()
    store.set("p:runs-done", json.dumps([f"old{i}" for i in range(summary.DONE_RING)]))
    t = summary.RunTracker("p:", store)
    for run in ("old0", "old199"):
        assert all(t.observe(e) == (summary.ALREADY_FINISHED, None) for e in run_events(run))
    assert "p:run:old0" not in store.data
    t.complete("new0")
    listed = json.loads(store.data["p:runs-done"])
    assert listed[0] == "old1" and listed[-1] == "new0"
    assert t.observe(run_events("old0")[3])[0] == summary.PROGRESS
    assert t.observe(run_events("old1")[3])[0] == summary.ALREADY_FINISHED


def test_tombstones_stay_bounded_when_shards_lose_list_updates():
    # Two shards completing runs on and on, committing in an order that loses about half the
    # list's updates: the last completions stay finished and the tombstones stay bounded.
    shared = summary.MemoryStore()
    shards = [summary.RunTracker("p:", ShardStore(shared)) for _ in range(2)]
    rng, rounds, most = 7, 10 * summary.DONE_RING, 0
    for i in range(rounds):
        for s, t in enumerate(shards):
            t.complete(f"s{s}-{i}")
        rng = (rng * 6364136223846793005 + 1442695040888963407) % 2**64
        first = (rng >> 33) % 2
        shards[first].store.commit()
        shards[1 - first].store.commit()
        most = max(most, len(tombstones(shared)))
    listed = json.loads(shared.data["p:runs-done"])
    assert len(listed) == summary.DONE_RING and set(listed) <= set(tombstones(shared))
    assert most <= 3 * summary.DONE_RING, most
    for s in range(2):
        for i in range(rounds - summary.DONE_RING // 2, rounds):
            t = summary.RunTracker("p:", ShardStore(shared))
            assert t.observe(run_events(f"s{s}-{i}")[3])[0] == summary.ALREADY_FINISHED, (s, i)


def test_an_unlisted_tombstone_goes_with_the_next_completion_of_its_tracker():
    shared = summary.MemoryStore()
    a, b = summary.RunTracker("p:", ShardStore(shared)), summary.RunTracker("p:", ShardStore(shared))
    for i in (1, 2):  # a's a1 and a2 are lost from the list (b commits last)
        a.complete(f"a{i}"), b.complete(f"b{i}")
        a.store.commit(), b.store.commit()
    a.complete("a3")
    a.store.commit()
    listed = lambda: json.loads(shared.data["p:runs-done"])  # noqa: E731
    assert listed() == ["b1", "b2", "a3"]
    assert tombstones(shared) == ["a1", "a2", "a3", "b1", "b2"]
    i = 3
    while "a3" in listed():
        b.complete(f"b{i}")
        b.store.commit()
        i += 1
    assert [r for r in tombstones(shared) if r.startswith("a")] == []
    assert len(tombstones(shared)) == summary.DONE_RING


def test_recorded_events_get_the_fields_the_host_derives(tmp_path):
    from herald_sdk.testing import load_events

    ok_changed = {"uuid": "u2", "event": "runner_on_ok", "counter": 2, "run_id": "r", "created": "2026-01-01T00:00:01Z",
                  "event_data": {"playbook": "p.yml", "host": "web1", "task": "t", "task_uuid": "tu",
                                 "task_action": "command", "res": {"changed": True, "stdout": "x"},
                                 "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:01.5Z"}}
    stats = {"uuid": "u3", "event": "playbook_on_stats", "counter": 3, "run_id": "r", "created": "2026-01-01T00:00:02Z",
             "event_data": {"playbook": "p.yml", "ok": {"web1": 2}, "changed": {"web1": 1}, "dark": {"db1": 1},
                            "failures": {}, "artifact_data": {"release": "1"}}}
    start = {"uuid": "u1", "event": "playbook_on_start", "counter": 1, "run_id": "r", "created": "2026-01-01T00:00:00Z",
             "event_data": {"playbook": "p.yml"}}
    job_events = tmp_path / "artifacts" / "ident" / "job_events"
    job_events.mkdir(parents=True)
    for i, w in enumerate([stats, start, ok_changed]):  # file order is not event order
        (job_events / f"{i}-{w['uuid']}.json").write_text(json.dumps(w))
    evs = load_events(tmp_path / "artifacts" / "ident")
    assert [e.kind for e in evs] == ["playbook_on_start", "runner_on_ok", "playbook_on_stats"]
    e = evs[1]
    assert (e.status, e.changed, e.host, e.task.action, e.sequence) == ("changed", True, "web1", "command", 2)
    assert e.timing.duration_ms == 1500 and e.run.playbook == "p.yml"
    s = evs[2].stats
    assert [(h.host, h.ok, h.changed, h.unreachable) for h in s.hosts] == [("db1", 0, 0, 1), ("web1", 2, 1, 0)]
    assert json.loads(s.custom) == {"_run": {"release": "1"}}
    # The same events as export lines.
    lines = tmp_path / "run.jsonl"
    lines.write_text("\n".join(json.dumps(w) for w in [start, ok_changed, stats]) + "\n")
    assert [e.id for e in load_events(lines)] == ["u1", "u2", "u3"]


def test_export_refuses_a_plugin_without_handle():
    from herald_sdk import Plugin, export

    class NoHandle(Plugin):
        pass

    with pytest.raises(TypeError, match="NoHandle does not define handle"):
        export(NoHandle)

    class Fine(Plugin):
        def handle(self, event, attempt):
            return ok()

    assert export(Fine).__name__ == "Handler"


def test_retiring_finalize_versions_keeps_weakref_finalize_working():
    # What export does at build time inside a component (see _retire_finalize_versions).
    import weakref

    from herald_sdk import _retire_finalize_versions

    dirty = weakref.finalize._dirty
    _retire_finalize_versions(50)
    assert weakref.finalize._dirty == dirty
    called = []

    class Obj:
        pass

    o = Obj()
    f = weakref.finalize(o, called.append, 1)
    assert f.alive
    del o
    assert called == [1] and not f.alive


def test_the_wheel_holds_the_contract_and_builds_without_warnings(tmp_path):
    """What `pip install herald-sdk` gets: every WIT file of the contract (componentize-py
    reads them from the installed package), `py.typed`, the SPDX license; and a build that
    setuptools does not warn about (its warnings announce what a later release refuses)."""
    root = Path(__file__).resolve().parents[1]
    # Built from a copy: setuptools writes build/ and egg-info/ beside the sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "herald_sdk", src / "herald_sdk", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "BuildBackendWarning" not in r.stderr, r.stderr
    (wheel,) = out.glob("herald_sdk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wit = sorted(p.relative_to(root).as_posix() for p in (root / "herald_sdk" / "wit").rglob("*.wit"))
    assert wit and "herald_sdk/wit/world.wit" in wit
    missing = [w for w in wit if w not in names]
    assert not missing, missing
    assert "herald_sdk/py.typed" in names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
