"""Issue 7: hostile plugins cannot hurt the host, other plugins or other
tenants; issue 6 (item 3): the circuit breaker.

Each hostile case runs the real host with three instances: `bad` (a hostile
component from tests/hostile, tenant `evil`), `same` (a webhook of tenant
`evil`) and `other` (a webhook of tenant `good`). While `bad` faults on every
event, the test checks that ingest keeps answering, that `same` and `other`
deliver each event within a generous bound, that the fault is counted with the
right reason, and that the hostile instance is re-created (or paused, with a
failure policy). Limits are short so the file stays fast.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import HERALD_BIN, HOSTILE_DIR, PLUGIN_DIR, ROOT, add_admin, admin_get, free_port, token_pair, wait_for, webhook_plugin

HOSTILE = HOSTILE_DIR / "hostile.wasm"
# Generous: the machine is shared and small. A healthy delivery takes milliseconds.
LATENCY_BOUND_S = 5.0

LIMITS = {"cpu_ms": 200, "wall_ms": 1500, "memory_mib": 32, "max_log_bytes": 16384, "max_http_requests": 3}
FAST_RETRY = {"initial_ms": 100, "max_ms": 400, "max_attempts": 1000}
NO_BREAKER = {"open_after": 0}


def event(run_id: str, counter: int, host: str = "h1") -> dict:
    return {"uuid": str(uuid.uuid4()), "event": "runner_on_ok", "counter": counter, "run_id": run_id,
            "created": "2026-11-21T10:00:00.000000+00:00",
            "event_data": {"playbook": "sandbox.yml", "host": host}}


def series(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{([^}}]*)\}} (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


class Blackhole:
    """A TCP server that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class UdpSink:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def received(self) -> int:
        n = 0
        while True:
            try:
                self.sock.recv(65536)
                n += 1
            except OSError:
                return n


def start_case(make_host, receiver, bad: dict, extra_env: dict | None = None):
    evil_token, evil_hash = token_pair()
    good_token, good_hash = token_pair()
    admin_token, admin_hash = token_pair()
    plugins = {
        "bad": {"tenant": "evil", "component": str(HOSTILE), "limits": LIMITS, "retry": FAST_RETRY,
                "failure_policy": NO_BREAKER, **bad},
        "same": webhook_plugin("evil", receiver, headers={"X-Which": "same"}),
        "other": webhook_plugin("good", receiver, headers={"X-Which": "other"}),
    }
    host = make_host({"evil": evil_hash, "good": good_hash}, plugins)
    add_admin(host, admin_hash)
    old = {k: os.environ.get(k) for k in (extra_env or {})}
    os.environ.update(extra_env or {})
    try:
        host.start()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    host.tokens = {"evil": evil_token, "good": good_token, "admin": admin_token}
    return host


def delivered_at(receiver, which: str) -> dict[str, float]:
    with receiver.lock:
        out = {}
        for r in receiver.requests:
            if r["headers"].get("x-which") == which:
                try:
                    out.setdefault(json.loads(r["body"])["uuid"], r["at"])
                except (ValueError, KeyError):
                    pass
        return out


def exercise(host, receiver, rounds: int = 5, gap: float = 0.3) -> list[float]:
    """Posts one event per tenant per round while `bad` misbehaves; returns the
    delivery latencies of the well-behaved instances (same and other tenant)."""
    run_evil, run_good = str(uuid.uuid4()), str(uuid.uuid4())
    sent = []
    for i in range(rounds):
        e, g = event(run_evil, i), event(run_good, i)
        t0 = time.monotonic()
        status, body = host.post(json.dumps([e]).encode(), host.tokens["evil"])
        assert status == 202, body
        status, body = host.post(json.dumps([g]).encode(), host.tokens["good"])
        assert status == 202, body
        sent += [("same", e["uuid"], t0), ("other", g["uuid"], t0)]
        time.sleep(gap)

    def all_delivered():
        same, other = delivered_at(receiver, "same"), delivered_at(receiver, "other")
        got = {"same": same, "other": other}
        return got if all(u in got[w] for w, u, _ in sent) else None

    got = wait_for(all_delivered, timeout=30, what="the well-behaved instances' deliveries")
    latencies = [got[w][u] - t0 for w, u, t0 in sent]
    assert max(latencies) < LATENCY_BOUND_S, f"latencies {latencies}"
    print(f" [well-behaved delivery latency: max {max(latencies) * 1000:.0f} ms over {len(latencies)}]", end="")
    return latencies


def check_fault(host, reason: str, at_least: int = 2):
    def counted():
        return series(host.metrics(), "herald_plugin_faults_total", plugin="bad", reason=reason) >= at_least
    wait_for(counted, timeout=30, what=f"{at_least} faults with reason {reason}")
    m = host.metrics()
    # Re-created after each fault: one instance at load plus one per faulting call (at least).
    assert series(m, "herald_plugin_instantiations_total", plugin="bad") >= at_least
    # Nothing is blamed on the well-behaved instances.
    assert series(m, "herald_plugin_faults_total", plugin="same") == 0
    assert series(m, "herald_plugin_faults_total", plugin="other") == 0
    with urllib.request.urlopen(host.url + "/health", timeout=5) as r:
        assert r.status == 200
    assert host.proc.poll() is None


def fault_lines(host, reason: str) -> list[dict]:
    out = []
    for line in host.logs().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("reason") == reason and rec.get("plugin") == "bad" and "plugin fault" in rec.get("message", ""):
            out.append(rec)
    return out


CASES = {
    "loop": ({"config": {"mode": "loop"}}, "cpu_timeout"),
    "memory": ({"config": {"mode": "memory"}}, "memory"),
    "recursion": ({"config": {"mode": "recursion"}}, "trap"),
    "stack": ({"config": {"mode": "stack"}}, "trap"),
    "panic": ({"config": {"mode": "panic"}}, "panic"),
    "huge_panic": ({"config": {"mode": "huge_panic", "count": 1_000_000}}, "panic"),
    "log_flood": ({"config": {"mode": "log_flood", "count": 5000}}, "log_limit"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_faulty_plugin_is_counted_recreated_and_hurts_no_one(make_host, receiver, case):
    bad, reason = CASES[case]
    host = start_case(make_host, receiver, bad)
    exercise(host, receiver)
    check_fault(host, reason)
    lines = fault_lines(host, reason)
    assert lines, host.logs()[-3000:]
    for rec in lines:
        assert len(rec["message"]) < 2000, "fault messages are bounded"
    if case == "panic":
        assert "hostile plugin panicked on purpose" in lines[0]["message"], lines[0]
    if case == "recursion":  # Rust's stack, in linear memory, runs off its bottom
        assert "out of bounds memory access" in lines[0]["message"], lines[0]
    if case == "stack":  # the wasm call stack
        assert "call stack exhausted" in lines[0]["message"], lines[0]
    if case == "log_flood":
        logs = host.logs()
        # Plugin output reaches the host log tagged with the instance, bounded per call.
        assert re.search(r'"stream":"stdout".*"plugin":"bad"|"plugin":"bad".*"stream":"stdout"', logs)
        assert re.search(r'"stream":"stderr"', logs)
        assert "flood 4999" not in logs
    # No log line of any size the plugin chose.
    assert max(len(line) for line in host.logs().splitlines()) < 20_000


@pytest.mark.parametrize("mode", ["http", "wasi_http"])
def test_http_outside_the_allow_list_and_localhost_vs_ip(make_host, receiver, mode):
    """Both ways out, the contract's `http.send` (0.2.0 on) and raw `wasi:http`, pass the same gate."""
    port = receiver.port
    bad = {"allow_http": [f"http://127.0.0.1:{port}/allowed"],
           "config": {"mode": mode, "url": f"http://localhost:{port}/allowed"}}
    host = start_case(make_host, receiver, bad)
    exercise(host, receiver, rounds=3)
    check_fault(host, "denied_http", at_least=3)
    assert "refused: not in the instance's allow_http" in fault_lines(host, "denied_http")[0]["message"]
    # The reverse: localhost allowed, the IP refused; and a path outside the prefix.
    for allow, url in [(f"http://localhost:{port}", f"http://127.0.0.1:{port}/x"),
                       (f"http://127.0.0.1:{port}/allowed", f"http://127.0.0.1:{port}/other")]:
        host.kill(signal.SIGTERM)
        host2 = start_case(make_host, receiver, {"allow_http": [allow], "config": {"mode": mode, "url": url}})
        exercise(host2, receiver, rounds=2)
        check_fault(host2, "denied_http", at_least=2)
        host2.kill(signal.SIGTERM)
    # The hostile instance never reached the receiver (its requests carry no X-Which).
    assert all(r["headers"].get("x-which") in ("same", "other") for r in receiver.requests)


def test_wasi_http_still_reaches_an_allowed_destination(make_host, receiver):
    bad = {"allow_http": [receiver.url], "config": {"mode": "wasi_http", "url": receiver.url + "/wasi"}}
    host = start_case(make_host, receiver, bad)
    exercise(host, receiver, rounds=2)
    wait_for(lambda: series(host.metrics(), "herald_deliveries_total", plugin="bad", outcome="ok") >= 2,
             timeout=20, what="the wasi:http deliveries")
    posted = [r for r in receiver.requests if r["path"] == "/wasi"]
    assert posted and all(json.loads(r["body"])["event"] for r in posted), posted[:1]
    assert "plugin fault" not in host.logs()


def test_too_many_requests_in_one_call(make_host, receiver):
    bad = {"allow_http": [receiver.url], "config": {"mode": "http_many", "url": receiver.url + "/many", "count": 10}}
    host = start_case(make_host, receiver, bad)
    exercise(host, receiver, rounds=3)
    check_fault(host, "http_limit", at_least=3)
    many = [r for r in receiver.requests if r["path"] == "/many"]
    ok_calls = series(host.metrics(), "herald_deliveries_total", plugin="bad", outcome="ok")
    assert 0 < len(many) <= 3 * ok_calls, (len(many), ok_calls)


def test_sockets_outside_the_allow_list(make_host, receiver):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    udp = UdpSink()
    try:
        for mode, port in [("tcp", listener.getsockname()[1]), ("udp", udp.port), ("tcp_listen", free_port())]:
            bad = {"allow_sockets": ["127.0.0.1:9"],
                   "config": {"mode": mode, "address": f"127.0.0.1:{port}"}}
            host = start_case(make_host, receiver, bad)
            exercise(host, receiver, rounds=2)
            check_fault(host, "denied_socket", at_least=2)
            msg = fault_lines(host, "denied_socket")[0]["message"]
            assert "not in the instance's allow_sockets" in msg, msg
            if mode == "tcp_listen":
                # Nothing listens on the port the plugin asked for.
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            host.kill(signal.SIGTERM)
        with pytest.raises(OSError):
            listener.accept()
        assert udp.received() == 0
    finally:
        listener.close()
        udp.sock.close()


def test_no_files_no_environment_no_stdin(make_host, receiver):
    bad = {"config": {"mode": "escape"}}
    host = start_case(make_host, receiver, bad, extra_env={"HERALD_HOSTILE_SECRET": "s3cret"})
    exercise(host, receiver, rounds=2)
    wait_for(lambda: series(host.metrics(), "herald_deliveries_total", plugin="bad", outcome="ok") >= 2,
             timeout=20, what="the escape attempts answered ok (nothing escaped)")
    m = host.metrics()
    assert series(m, "herald_deliveries_total", plugin="bad", outcome="dead") == 0, host.logs()[-3000:]
    assert series(m, "herald_plugin_faults_total", plugin="bad") == 0
    assert "sandbox held: no file, no environment, no stdin" in host.logs()
    assert "ESCAPED" not in host.logs()


def test_a_call_blocked_in_a_host_call_hits_the_wall_limit(make_host, receiver):
    hole = Blackhole()
    try:
        bad = {"allow_http": [f"http://127.0.0.1:{hole.port}"],
               "config": {"mode": "block", "url": f"http://127.0.0.1:{hole.port}/never"}}
        host = start_case(make_host, receiver, bad)
        exercise(host, receiver, rounds=4, gap=0.5)
        check_fault(host, "wall_timeout", at_least=2)
    finally:
        hole.close()


def test_a_huge_error_message_is_bounded(make_host, receiver):
    bad = {"config": {"mode": "huge_error", "count": 5_000_000}}
    host = start_case(make_host, receiver, bad)
    exercise(host, receiver, rounds=3)
    wait_for(lambda: series(host.metrics(), "herald_deliveries_total", plugin="bad", outcome="retry") >= 3,
             timeout=20, what="retries of the huge error")
    assert max(len(line) for line in host.logs().splitlines()) < 20_000
    assert host.proc.poll() is None


# --- failure policy (circuit breaker) -------------------------------------------------------


def plugin_status(host, name: str) -> dict:
    data = admin_get(host, "/v1/plugins", host.tokens["admin"])
    return next(p for p in data["plugins"] if p["name"] == name)


def test_the_breaker_pauses_a_faulty_instance_and_probes_it(make_host, receiver):
    bad = {"config": {"mode": "panic"},
           "failure_policy": {"open_after": 3, "pause_ms": 1500, "max_pause_ms": 5000}}
    host = start_case(make_host, receiver, bad)
    run = str(uuid.uuid4())
    for i in range(4):
        assert host.post(json.dumps([event(run, i)]).encode(), host.tokens["evil"])[0] == 202
    wait_for(lambda: plugin_status(host, "bad")["state"] == "paused", timeout=20, what="the breaker to open")
    status = plugin_status(host, "bad")
    assert status["breaker"]["consecutive_failures"] == 3
    assert status["breaker"]["last_fault"]["reason"] == "panic"
    assert series(host.metrics(), "herald_plugin_state", plugin="bad", state="paused") == 1
    faults = series(host.metrics(), "herald_plugin_faults_total", plugin="bad")
    # Paused: no calls, so no faults, while the others deliver.
    exercise(host, receiver, rounds=2, gap=0.2)
    assert series(host.metrics(), "herald_plugin_faults_total", plugin="bad") == faults
    # The probe fails: paused again, for twice as long.
    wait_for(lambda: plugin_status(host, "bad")["breaker"]["opened"] >= 2, timeout=20, what="a failed probe")
    status = plugin_status(host, "bad")
    assert status["state"] in ("paused", "probing") and status["breaker"]["pause_ms"] == 3000
    assert series(host.metrics(), "herald_plugin_faults_total", plugin="bad") == faults + 1
    assert series(host.metrics(), "herald_plugin_breaker_opened_total", plugin="bad") >= 2
    logs = host.logs()
    assert "circuit breaker open" in logs and "circuit breaker half-open" in logs
    # Nothing was dead-lettered meanwhile: the deliveries wait.
    assert series(host.metrics(), "herald_deliveries_total", plugin="bad", outcome="dead") == 0


def test_the_breaker_closes_when_the_sink_recovers(make_host, receiver):
    token, token_hash = token_pair()
    admin_token, admin_hash = token_pair()
    hook = webhook_plugin("ops", receiver)
    hook["failure_policy"] = {"open_after": 3, "pause_ms": 1000}
    host = make_host({"ops": token_hash}, {"hook": hook})
    add_admin(host, admin_hash)
    host.start()
    host.tokens = {"admin": admin_token}
    receiver.default = (503, {}, b"down")
    run = str(uuid.uuid4())
    sent = [event(run, i) for i in range(5)]
    assert host.post(json.dumps(sent).encode(), token)[0] == 202
    wait_for(lambda: plugin_status(host, "hook")["state"] == "paused", timeout=20, what="the breaker to open")
    attempts_when_open = len(receiver.requests)
    time.sleep(0.5)
    assert len(receiver.requests) == attempts_when_open, "no calls while paused"
    receiver.default = (200, {}, b"ok")
    wait_for(lambda: {e["uuid"] for e in receiver.events()} >= {e["uuid"] for e in sent}, timeout=30,
             what="every event delivered after the sink recovered")
    assert plugin_status(host, "hook")["state"] == "running"
    assert series(host.metrics(), "herald_plugin_state", plugin="hook", state="running") == 1
    assert "circuit breaker closed" in host.logs()


# --- load-time checks ------------------------------------------------------------------------


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HERALD_BIN), "check", "--config", str(config)], capture_output=True, text=True,
                          timeout=120)


def test_components_that_do_not_fit_the_contract_are_refused(make_host, receiver, tmp_path):
    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"\0asm not really")
    cases = [
        (HOSTILE_DIR / "hostile_wrong_version.wasm",
         ["does not export herald:plugin/handler@0.3.0 or herald:plugin/handler@0.2.0 or "
          "herald:plugin/handler@0.1.0", "herald:plugin/handler@1.0.0", "build it against wit/v0.3.0"]),
        (HOSTILE_DIR / "hostile_bad_import.wasm",
         ["imports `herald:vault/secrets@0.1.0`", "which the host does not provide"]),
        (garbage, ["cannot compile"]),
    ]
    token, token_hash = token_pair()
    for component, expected in cases:
        host = make_host({"ops": token_hash}, {
            "good": webhook_plugin("ops", receiver),
            "strange": {"tenant": "ops", "component": str(component)},
        })
        result = check(host.config_path)
        assert result.returncode == 1, result.stdout + result.stderr
        for text in expected:
            assert text in result.stderr, result.stderr
        assert "plugins.strange.component" in result.stderr, result.stderr
        # `herald serve` refuses to start with it, with the same message.
        proc = subprocess.run([str(HERALD_BIN), "serve", "--config", str(host.config_path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and expected[0] in proc.stderr, proc.stderr

    # At reload: the bad new config is refused, the running one keeps delivering.
    admin_token, admin_hash = token_pair()
    host = make_host({"ops": token_hash}, {"good": webhook_plugin("ops", receiver)})
    add_admin(host, admin_hash)
    host.start()
    with open(host.config_path, "a") as f:
        f.write(f'\n[plugins.strange]\ntenant = "ops"\ncomponent = "{HOSTILE_DIR / "hostile_bad_import.wasm"}"\n')
    host.proc.send_signal(signal.SIGHUP)
    status = wait_for(lambda: (s := admin_get(host, "/v1/admin/reload", admin_token))["at_ms"] and s,
                      timeout=30, what="the reload outcome")
    assert status["ok"] is False
    assert any("herald:vault/secrets@0.1.0" in p for p in status["problems"]), status
    e = event(str(uuid.uuid4()), 1)
    assert host.post(json.dumps([e]).encode(), token)[0] == 202
    wait_for(lambda: e["uuid"] in {x["uuid"] for x in receiver.events()}, timeout=20, what="delivery after the refused reload")


# --- compile cache ---------------------------------------------------------------------------


def test_compiled_components_are_cached_and_a_corrupt_entry_is_rebuilt(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)})
    cache = host.workdir / "data" / "cache"
    timings = {}
    t0 = time.monotonic()
    host.start()
    timings["cold"] = time.monotonic() - t0
    entries = sorted(cache.glob("*.cwasm"))
    assert len(entries) == 1 and entries[0].with_suffix(".sha256").exists(), list(cache.iterdir())
    assert series(host.metrics(), "herald_compile_cache_total", result="miss") == 1
    host.kill(signal.SIGTERM)

    t0 = time.monotonic()
    host.start()
    timings["warm"] = time.monotonic() - t0
    assert series(host.metrics(), "herald_compile_cache_total", result="hit") == 1
    host.kill(signal.SIGTERM)

    # Corrupt the entry: detected, rebuilt, and the host works.
    data = bytearray(entries[0].read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = os.urandom(64)
    entries[0].write_bytes(bytes(data))
    host.start()
    assert series(host.metrics(), "herald_compile_cache_total", result="corrupt") == 1
    assert "compile cache entry unusable, rebuilding it" in host.logs()
    e = event(str(uuid.uuid4()), 1)
    assert host.post(json.dumps([e]).encode(), token)[0] == 202
    wait_for(lambda: e["uuid"] in {x["uuid"] for x in receiver.events()}, timeout=20, what="delivery")
    host.kill(signal.SIGTERM)

    # What an upgrade, a replaced plugin and an interrupted write leave behind is removed at start;
    # the entry in use is kept however old it was (a load marks it used), and so are others' files.
    (entry,) = sorted(cache.glob("*.cwasm"))
    sha, key = entry.stem.split("-")
    other_engine = cache / f"{sha}-{'0' * 16 if key != '0' * 16 else '1' * 16}.cwasm"
    other_engine.write_bytes(entry.read_bytes())
    other_engine.with_suffix(".sha256").write_text("x")
    unused = cache / f"{'c' * 64}-{key}.cwasm"
    unused.write_bytes(b"old")
    interrupted = cache / f"{'d' * 64}-{key}.tmp.7.0badcafe"
    interrupted.write_bytes(b"partial")
    mine = cache / "README.txt"
    mine.write_text("not Herald's")
    days_40 = time.time() - 40 * 86400
    for f in (entry, unused, interrupted, mine):
        os.utime(f, (days_40, days_40))
    host.start()
    assert series(host.metrics(), "herald_compile_cache_total", result="hit") == 1
    assert entry.exists() and entry.with_suffix(".sha256").exists() and mine.exists()
    assert entry.stat().st_mtime > days_40 + 86400, "a load marks the entry used"
    for gone in (other_engine, other_engine.with_suffix(".sha256"), unused, interrupted):
        assert not gone.exists(), gone
    pruned = [json.loads(l) for l in host.logs().splitlines()
              if "compile cache: removed entries this host will not load again" in l]
    assert len(pruned) == 1 and pruned[0].get("files") == 4, pruned
    print(f"\nstart to /health: cold {timings['cold']:.3f}s, warm {timings['warm']:.3f}s")


def plugin_log_records(host, plugin: str) -> list[str]:
    """The host log lines a plugin's own output became (target herald::plugin)."""
    out = []
    for line in host.logs().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("target") == "herald::plugin" and rec.get("plugin") == plugin:
            out.append(line)
    return out


def test_max_log_bytes_bounds_the_host_log_records_not_just_the_text(make_host, receiver):
    """Issue 17 (6): 64 KiB of one-byte lines must not become megabytes of host
    log: every line is charged its record's overhead, so the host log the
    output becomes stays within about max_log_bytes."""
    max_log = 65536
    bad = {"config": {"mode": "log_tiny", "count": 65536},
           "limits": dict(LIMITS, max_log_bytes=max_log, wall_ms=20000, cpu_ms=5000)}
    host = start_case(make_host, receiver, bad)
    run = str(uuid.uuid4())
    assert host.post(json.dumps([event(run, 1)]).encode(), host.tokens["evil"])[0] == 202
    check_fault(host, "log_limit", at_least=1)
    time.sleep(0.5)
    records = plugin_log_records(host, "bad")
    written = sum(len(r) + 1 for r in records)
    print(f" [{len(records)} records, {written} bytes of host log for {max_log} bytes of budget]", end="")
    assert records, host.logs()[-2000:]
    # Logged in the delivery's span: the run, and the ingest request that brought the event.
    span = json.loads(records[0]).get("span") or {}
    assert span.get("name") == "delivery" and span.get("run_id") == run, records[0]
    assert span.get("request_id") and span.get("delivery_id"), records[0]
    assert written <= 2 * max_log, (len(records), written)
    assert len(records) <= max_log // 512
    fault = fault_lines(host, "log_limit")[0]
    assert "max_log_bytes" in fault["message"], fault


def test_a_host_wide_memory_ceiling_bounds_all_instances_together(make_host, receiver, tmp_path):
    """Issue 17 (6): `runtime.max_plugin_memory_mib` caps the linear memory of
    every instance together: with one instance holding 56 MiB under a 96 MiB
    ceiling, another one's grow is refused well before its own 80 MiB limit
    (reason `memory`, the message naming the ceiling); the rest delivers."""
    evil_token, evil_hash = token_pair()
    good_token, good_hash = token_pair()
    # CPU time is not what this test bounds: room for a loaded machine.
    big = dict(LIMITS, memory_mib=80, cpu_ms=2000)
    plugins = {
        "hold": {"tenant": "evil", "component": str(HOSTILE), "limits": big, "retry": FAST_RETRY,
                 "failure_policy": NO_BREAKER, "config": {"mode": "hold", "count": 56}},
        "bad": {"tenant": "evil", "component": str(HOSTILE), "limits": big, "retry": FAST_RETRY,
                "failure_policy": NO_BREAKER, "config": {"mode": "memory"}},
        "same": webhook_plugin("evil", receiver, headers={"X-Which": "same"}),
        "other": webhook_plugin("good", receiver, headers={"X-Which": "other"}),
    }
    host = make_host({"evil": evil_hash, "good": good_hash}, plugins,
                     extra="[runtime]\nmax_plugin_memory_mib = 96\n")
    host.start()
    host.tokens = {"evil": evil_token, "good": good_token}
    exercise(host, receiver)
    check_fault(host, "memory")
    lines = fault_lines(host, "memory")
    assert "max_plugin_memory_mib = 96 MiB" in lines[0]["message"], lines[0]
    held = re.search(r"^herald_plugin_memory_bytes (\S+)$", host.metrics(), re.M)
    assert held and 56 * 2**20 <= float(held.group(1)) <= 96 * 2**20, held
    # The holding instance and the webhooks never faulted.
    assert series(host.metrics(), "herald_plugin_faults_total", plugin="hold") == 0
    # An instance whose own limit is over the ceiling is a located config problem.
    text = host.config_path.read_text().replace("max_plugin_memory_mib = 96", "max_plugin_memory_mib = 64")
    cfg = tmp_path / "over.toml"
    cfg.write_text(text)
    r = subprocess.run([str(HERALD_BIN), "check", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert re.search(r"over\.toml:\d+:\d+: plugins\.hold\.limits\.memory_mib: 80 MiB is over runtime\.max_plugin_memory_mib",
                     r.stderr), r.stderr
