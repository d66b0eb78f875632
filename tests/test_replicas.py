"""N Herald replicas on one PostgreSQL (issue 25): leases share the plugin
instances among replicas, a killed replica's instances are taken over, a
paused replica's writes are fenced, PostgreSQL restarts lose nothing, and
`herald check` / `herald migrate` work against the database.

A real PostgreSQL from Debian, started by the tests on 127.0.0.1."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import (HERALD_BIN, PLUGIN_DIR, Host, PgServer, Receiver, api, pg_server, serve_http, token_pair,
                      wait_for, webhook_plugin)

TTL_MS = 2000


def event(run: str, counter: int) -> dict:
    return {"uuid": str(uuid.uuid4()), "event": "runner_on_ok", "counter": counter, "run_id": run,
            "created": "2026-12-05T10:00:00+00:00",
            "event_data": {"playbook": "replicas.yml", "host": f"h{counter % 3}", "res": {"n": counter}}}


def storage(url: str, replica: str) -> str:
    return (f'[storage]\nbackend = "postgres"\nurl = "{url}"\ndata_dir = "data"\n'
            f'replica_id = "{replica}"\nlease_ttl_ms = {TTL_MS}\n')


def ready(host: Host) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(host.url + "/ready", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def holds(host: Host) -> list[str]:
    return ready(host)[1].get("replica", {}).get("holds", [])


def metric(host: Host, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", host.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def replicas(tmp_path, url: str, names: list[str], tenants: dict, plugins: dict) -> list[Host]:
    out = []
    for n in names:
        d = tmp_path / n
        d.mkdir()
        out.append(Host(d, tenants, plugins, storage=storage(url, n)))
    return out


def test_replicas_share_the_work_and_take_over_a_killed_one(tmp_path):
    pg = pg_server()
    url = pg.database("replicas_" + uuid.uuid4().hex[:8])
    receiver = Receiver()
    token, token_hash = token_pair()
    a, b = replicas(tmp_path, url, ["a", "b"], {"ops": token_hash},
                    {"hook": webhook_plugin("ops", receiver)})
    try:
        a.start()
        b.start()
        # One replica delivers for the instance; both ingest.
        wait_for(lambda: len(holds(a)) + len(holds(b)) == 1, timeout=30, what="one holder")
        holder, other = (a, b) if holds(a) == ["hook"] else (b, a)
        leases = ready(other)[1]["replica"]["leases"]
        assert [(l["plugin"], l["holder"]) for l in leases] == [("hook", holder.workdir.name)], leases
        run = str(uuid.uuid4())
        sent = []
        for i in range(40):
            batch = [event(run, i)]
            sent += [e["uuid"] for e in batch]
            status, _ = (a if i % 2 else b).post(json.dumps(batch).encode(), token)
            assert status == 202
        wait_for(lambda: {e["uuid"] for e in receiver.events()} >= set(sent), timeout=30,
                 what="every event delivered")
        got = [e["uuid"] for e in receiver.events()]
        assert len(got) == len(set(got)), "one replica delivers: nothing twice without a failure"
        assert [e["counter"] for e in receiver.events()] == list(range(40)), "in order within the run"
        assert metric(holder, "herald_lease_held", '{plugin="hook"}') == 1
        assert metric(other, "herald_lease_held", '{plugin="hook"}') == 0

        # The holder dies: the other takes over once the lease expires.
        holder.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        later = [event(run, 40 + i) for i in range(10)]
        assert other.post(json.dumps(later).encode(), token)[0] == 202
        wait_for(lambda: {e["uuid"] for e in receiver.events()} >= {e["uuid"] for e in later},
                 timeout=30, what="deliveries after the takeover")
        assert time.monotonic() - killed_at >= TTL_MS / 1000 * 0.5, "not before the lease could expire"
        assert holds(other) == ["hook"]
        assert metric(other, "herald_lease_events_total", '{event="takeover"}') >= 1
        # The restarted replica (same name) claims nothing the other holds.
        holder.start()
        time.sleep(TTL_MS / 1000)
        assert holds(holder) == [] and holds(other) == ["hook"]
    finally:
        for h in (a, b):
            h.kill(signal.SIGTERM)
        receiver.close()


class HeldSink:
    """Answers every POST only once `release` is set; records each body."""

    def __init__(self):
        import http.server
        import threading
        self.bodies: list[dict] = []
        self.release = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                sink.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                sink.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server, self.url = serve_http(Handler)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_paused_replica_cannot_write_after_its_lease_is_taken_over(tmp_path):
    pg = pg_server()
    url = pg.database("paused_" + uuid.uuid4().hex[:8])
    sink = HeldSink()
    token, token_hash = token_pair()
    plugin = {"tenant": "ops", "component": str(PLUGIN_DIR / "webhook.wasm"),
              "allow_http": [sink.url], "config": {"url": sink.url + "/hook"},
              "limits": {"wall_ms": 60000},
              "retry": {"initial_ms": 100, "max_ms": 500, "max_attempts": 50}}
    a, b = replicas(tmp_path, url, ["a", "b"], {"ops": token_hash}, {"hook": plugin})
    try:
        a.start()
        wait_for(lambda: holds(a) == ["hook"], timeout=30, what="a holds the instance")
        b.start()
        ev = event(str(uuid.uuid4()), 1)
        assert a.post(json.dumps([ev]).encode(), token)[0] == 202
        wait_for(lambda: len(sink.bodies) == 1, timeout=30, what="a's delivery in flight")
        # Paused mid-delivery, past its lease's TTL: b takes over and delivers
        # the in-flight event again (at most that one twice).
        a.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: holds(b) == ["hook"], timeout=30, what="b takes over")
        wait_for(lambda: len(sink.bodies) == 2, timeout=30, what="b delivers the in-flight event")
        sink.release.set()
        a.proc.send_signal(signal.SIGCONT)
        # a's outcome is refused by the fence: it writes nothing and stops.
        wait_for(lambda: metric(a, "herald_lease_events_total", '{event="fenced"}') >= 1,
                 timeout=30, what="a's outcome refused by the fence")
        wait_for(lambda: metric(a, "herald_lease_held", '{plugin="hook"}') == 0, timeout=30,
                 what="a stops delivering")
        assert holds(b) == ["hook"] and holds(a) == []
        more = [event(ev["run_id"], 2), event(ev["run_id"], 3)]
        assert a.post(json.dumps(more).encode(), token)[0] == 202
        wait_for(lambda: len(sink.bodies) == 4, timeout=30, what="b delivers what a ingests")
        assert [x["uuid"] for x in sink.bodies] == [ev["uuid"], ev["uuid"]] + [m["uuid"] for m in more]
        assert "no longer holds the instance's lease" in a.logs()
        assert "lost the instance's lease" in a.logs()
    finally:
        if a.proc and a.proc.poll() is None:
            a.proc.send_signal(signal.SIGCONT)
        for h in (a, b):
            h.kill(signal.SIGTERM)
        sink.close()


def test_a_postgresql_restart_answers_503_then_loses_nothing(tmp_path):
    pg = PgServer()  # its own server: this test stops it
    receiver = Receiver()
    token, token_hash = token_pair()
    try:
        d = tmp_path / "host"
        d.mkdir()
        host = Host(d, {"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)},
                    storage=storage(pg.database("restart"), "solo")).start()
        run = str(uuid.uuid4())
        accepted = []
        first = [event(run, i) for i in range(5)]
        assert host.post(json.dumps(first).encode(), token)[0] == 202
        accepted += first
        pg._run("pg_ctl", "-D", str(pg.dir / "data"), "-m", "fast", "-w", "stop")
        status, body = host.post(json.dumps([event(run, 5)]).encode(), token)
        assert status == 503, (status, body)
        code, r = ready(host)
        assert code == 503 and not r["checks"]["journal"]["ok"], r
        assert "PostgreSQL" in r["checks"]["journal"]["error"], r
        pg._run("pg_ctl", "-D", str(pg.dir / "data"), "-l", str(pg.dir / "log"), "-w", "start",
                "-o", f"-h 127.0.0.1 -p {pg.port} -k {pg.dir}")
        # Back: the callback's spool would send again; so does this test.
        second = [event(run, i) for i in range(5, 10)]

        def resend():
            return host.post(json.dumps(second).encode(), token)[0] == 202

        wait_for(resend, timeout=30, interval=0.5, what="ingest after the restart")
        accepted += second
        wait_for(lambda: ready(host)[0] == 200, timeout=30, what="/ready after the restart")
        wait_for(lambda: {e["uuid"] for e in receiver.events()} >= {e["uuid"] for e in accepted},
                 timeout=60, what="every accepted event delivered")
        host.kill(signal.SIGTERM)
    finally:
        receiver.close()
        pg.stop()


def test_check_reaches_the_database_and_migrate_is_idempotent(tmp_path):
    pg = pg_server()
    url = pg.database("migrate_" + uuid.uuid4().hex[:8])
    config = tmp_path / "herald.toml"
    # The URL through ${env:...}, as a password would be.
    config.write_text('[storage]\nbackend = "postgres"\nurl = "${env:HERALD_TEST_PG_URL}"\ndata_dir = "data"\n')
    env = dict(os.environ, HERALD_TEST_PG_URL=url)
    first = subprocess.run([str(HERALD_BIN), "migrate", "--config", str(config)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    # Every migration once, in order, from an empty database.
    m = re.search(r"schema version 0 -> (\d+) \(applied ([\d, ]+)\)", first.stdout)
    assert m, first.stdout
    latest = int(m.group(1))
    assert latest >= 4 and m.group(2) == ", ".join(str(v) for v in range(1, latest + 1)), first.stdout
    again = subprocess.run([str(HERALD_BIN), "migrate", "--config", str(config)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert again.returncode == 0 and f"up to date (version {latest})" in again.stdout, again.stdout
    ok = subprocess.run([str(HERALD_BIN), "check", "--config", str(config)], capture_output=True, text=True,
                        env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    # Nothing listens there: the problem names the file, line and column of `url`.
    dead = f"postgres://herald:s3cret-pw@127.0.0.1:{pg.port + 1 if pg.port < 65535 else 1}/x"
    env["HERALD_TEST_PG_URL"] = dead
    bad = subprocess.run([str(HERALD_BIN), "check", "--config", str(config)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert bad.returncode == 1
    assert re.search(rf"{re.escape(str(config))}:3:\d+: storage.url: cannot use the database", bad.stderr), bad.stderr
    assert "s3cret-pw" not in bad.stderr, "the password never appears"
    # A URL without a backend is refused, located.
    config.write_text('[storage]\nurl = "postgres://x@127.0.0.1/y"\n')
    wrong = subprocess.run([str(HERALD_BIN), "check", "--config", str(config)], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 1 and "storage.url" in wrong.stderr and "backend" in wrong.stderr, wrong.stderr


def test_a_replica_that_joins_gets_its_share_of_the_instances(tmp_path):
    pg = pg_server()
    url = pg.database("share_" + uuid.uuid4().hex[:8])
    receiver = Receiver()
    token, token_hash = token_pair()
    plugins = {f"hook{i}": webhook_plugin("ops", receiver, headers={"X-Which": f"hook{i}"}) for i in range(4)}
    a, b = replicas(tmp_path, url, ["a", "b"], {"ops": token_hash}, plugins)
    try:
        a.start()
        wait_for(lambda: len(holds(a)) == 4, timeout=30, what="a alone holds every instance")
        b.start()
        # Within a few TTLs the instances are shared two and two.
        wait_for(lambda: len(holds(a)) == 2 and len(holds(b)) == 2, timeout=60, interval=0.5,
                 what="the instances shared between the replicas")
        assert sorted(holds(a) + holds(b)) == sorted(plugins)
        run = str(uuid.uuid4())
        batch = [event(run, i) for i in range(10)]
        assert b.post(json.dumps(batch).encode(), token)[0] == 202

        def per_instance():
            out: dict[str, list] = {}
            for r in receiver.requests:
                out.setdefault(r["headers"].get("x-which"), []).append(json.loads(r["body"])["uuid"])
            return out

        wait_for(lambda: all(set(e["uuid"] for e in batch) <= set(per_instance().get(p, [])) for p in plugins),
                 timeout=30, what="every instance delivers the run")
        for p, got in per_instance().items():
            assert len(got) == len(set(got)), f"{p} delivered something twice"
        assert metric(a, "herald_lease_events_total", '{event="released"}') == 2
    finally:
        for h in (a, b):
            h.kill(signal.SIGTERM)
        receiver.close()


def test_a_replay_through_another_replica_is_delivered_at_once(tmp_path):
    """A replay asked of the replica that does not hold the instance is
    delivered by the one that does, within 3 s: the asking replica's NOTIFY
    wakes the holder (without it the holder's idle poll is 5 s). That the
    holder then reads the queue it knew empty, rather than only the log, is
    checked more tightly in host/journal/tests/backends.rs (within 0.7 s,
    under the holder's 1 s full-read period)."""
    pg = pg_server()
    url = pg.database("replay_" + uuid.uuid4().hex[:8])
    receiver = Receiver()
    token, token_hash = token_pair()
    a, b = replicas(tmp_path, url, ["a", "b"], {"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)})
    try:
        a.start()
        wait_for(lambda: holds(a) == ["hook"], timeout=30, what="a holds the instance")
        b.start()
        run = str(uuid.uuid4())
        batch = [event(run, i) for i in range(5)]
        assert b.post(json.dumps(batch).encode(), token)[0] == 202
        wait_for(lambda: len(receiver.events()) == 5, timeout=30, what="the run delivered by a")
        assert holds(b) == [], "one instance: a keeps it"
        asked = time.monotonic()
        status, body = api(b, "POST", f"/v1/runs/{run}/replay", token, {"plugin": "hook"})
        assert (status, body) == (200, {"requeued": 5})
        wait_for(lambda: len(receiver.events()) == 10, timeout=3, interval=0.02,
                 what="the replay delivered within 3 s")
        assert time.monotonic() - asked < 3
        got = receiver.events()
        assert [e["uuid"] for e in got] == [e["uuid"] for e in batch] * 2, "each event again, in order"
    finally:
        for h in (a, b):
            h.kill(signal.SIGTERM)
        receiver.close()


def test_a_sharded_instance_is_delivered_by_several_replicas(tmp_path):
    """An instance with `shards = 4` has four leases, shared by two replicas;
    every run stays in one shard, so each is delivered once and in order."""
    pg = pg_server()
    url = pg.database("shards_" + uuid.uuid4().hex[:8])
    receiver = Receiver()
    token, token_hash = token_pair()
    hook = webhook_plugin("ops", receiver)
    hook["shards"] = 4
    streams = ["hook", "hook#1", "hook#2", "hook#3"]
    a, b = replicas(tmp_path, url, ["a", "b"], {"ops": token_hash}, {"hook": hook})
    try:
        a.start()
        b.start()
        wait_for(lambda: len(holds(a)) == 2 and len(holds(b)) == 2, timeout=60, interval=0.5,
                 what="the four shards shared two and two")
        assert sorted(holds(a) + holds(b)) == streams
        for h in (a, b):
            for s in holds(h):
                assert metric(h, "herald_lease_held", f'{{plugin="{s}"}}') == 1, s
        runs = [str(uuid.uuid4()) for _ in range(12)]
        for i in range(20):
            batch = [event(run, i) for run in runs]
            assert (a if i % 2 else b).post(json.dumps(batch).encode(), token)[0] == 202
        wait_for(lambda: len(receiver.events()) >= 240, timeout=60, what="every event delivered")
        got = receiver.events()
        assert len(got) == 240 and len({e["uuid"] for e in got}) == 240, "each event once"
        for run in runs:
            assert [e["counter"] for e in got if e["run_id"] == run] == list(range(20)), f"run {run} in order"
        deliveries = [metric(h, "herald_deliveries_total", '{tenant="ops",plugin="hook",outcome="ok"}')
                      for h in (a, b)]
        assert all(d > 0 for d in deliveries), f"both replicas delivered: {deliveries}"
    finally:
        for h in (a, b):
            h.kill(signal.SIGTERM)
        receiver.close()


@pytest.mark.parametrize("shards", [1, 3])
def test_replicated_crash_oracle(tmp_path, shards):
    """Three replicas on one database, several runs sent concurrently to any
    replica, replicas SIGKILLed and restarted at random while one sink fails
    for a while: afterwards every 202'd event reached every instance at least
    once, and each instance's first deliveries of a run are in order. With
    `shards = 3` each instance's runs are split over three leases."""
    import random
    import threading
    pg = pg_server()
    url = pg.database("oracle_" + uuid.uuid4().hex[:8])
    steady, flaky = Receiver(), Receiver()
    flaky.default = (503, {}, b"down for now")
    token, token_hash = token_pair()
    plugins = {"steady": webhook_plugin("ops", steady), "flaky": webhook_plugin("ops", flaky)}
    for p in plugins.values():
        p["shards"] = shards
    hosts = replicas(tmp_path, url, ["r1", "r2", "r3"], {"ops": token_hash}, plugins)
    rng = random.Random(25)
    accepted: dict[str, list[dict]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    try:
        for h in hosts:
            h.start()

        def send(run: str):
            n = 0
            while not stop.is_set() and n < 600:
                batch = [event(run, n + i) for i in range(rng.randint(1, 10))]
                for h in rng.sample(hosts, len(hosts)):
                    try:
                        status, _ = h.post(json.dumps(batch).encode(), token)
                    except OSError:
                        continue
                    if status == 202:
                        with lock:
                            accepted.setdefault(run, []).extend(batch)
                        n += len(batch)
                        break
                time.sleep(0.08)

        senders = [threading.Thread(target=send, args=(str(uuid.uuid4()),)) for _ in range(4)]
        for t in senders:
            t.start()
        kills = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 2.5))
            victim = rng.choice(hosts)
            victim.kill(signal.SIGKILL)
            kills += 1
            time.sleep(rng.uniform(0.2, 1.0))
            victim.start()
            if kills == 4:
                flaky.default = (200, {}, b"ok")  # the failing sink recovers
        stop.set()
        for t in senders:
            t.join(timeout=60)
        flaky.default = (200, {}, b"ok")
        want = {e["uuid"] for run in accepted.values() for e in run}
        assert len(want) > 200 and kills >= 5, (len(want), kills)

        def delivered(r: Receiver):
            return [e for e in r.events() if "uuid" in e]

        for name, r in (("steady", steady), ("flaky", flaky)):
            wait_for(lambda: want <= {e["uuid"] for e in delivered(r)}, timeout=120, interval=0.5,
                     what=f"every accepted event at {name}")
            got = delivered(r)
            for run, events in accepted.items():
                firsts, seen = [], set()
                for e in got:
                    if e["run_id"] == run and e["uuid"] not in seen:
                        seen.add(e["uuid"])
                        firsts.append(e["counter"])
                assert firsts == sorted(firsts), f"{name}: run {run} first deliveries out of order"
            dups = len(got) - len({e["uuid"] for e in got})
            print(f"{name} ({shards} shards): {len(want)} events, {kills} kills, {dups} duplicate deliveries")
    finally:
        stop.set()
        for h in hosts:
            h.kill(signal.SIGTERM)
        steady.close()
        flaky.close()


def test_a_transaction_left_open_holds_delivery_back_and_ready_says_so(tmp_path):
    """The cost of ids from transaction ids (docs/configuration.md): a write
    transaction left open on the same PostgreSQL server, here in another of
    its databases, holds newer events back from delivery while it lasts;
    `/ready` stays 200 and says so; once it ends, everything is delivered, in
    order, and `/ready` no longer says so."""
    pg = pg_server()
    url = pg.database("held_" + uuid.uuid4().hex[:8])
    receiver = Receiver()
    token, token_hash = token_pair()
    (host,) = replicas(tmp_path, url, ["a"], {"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)})
    session = None
    try:
        host.start()
        wait_for(lambda: holds(host) == ["hook"], timeout=30, what="the replica holds the instance")
        run = str(uuid.uuid4())
        first = [event(run, i) for i in range(3)]
        assert host.post(json.dumps(first).encode(), token)[0] == 202
        wait_for(lambda: len(receiver.events()) == 3, timeout=30, what="the first batch delivered")
        # A session that takes a transaction id and stays open.
        session = subprocess.Popen(
            [str(pg.bin / "psql"), "-h", str(pg.dir), "-p", str(pg.port), "-U", "herald", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-At"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        session.stdin.write("BEGIN;\nSELECT pg_current_xact_id();\n")
        session.stdin.flush()
        # psql prints BEGIN's command tag, then the id.
        lines = [session.stdout.readline().strip() for _ in range(2)]
        assert lines[0] == "BEGIN" and lines[1].isdigit(), f"the open transaction has an id: {lines}"
        second = [event(run, i) for i in range(3, 6)]
        assert host.post(json.dumps(second).encode(), token)[0] == 202

        def held():
            status, body = ready(host)
            return status == 200 and body["checks"]["journal"].get("delivery_held_back", {}).get("tenants") == 1

        wait_for(held, timeout=10, what="/ready reporting events held back")
        assert len(receiver.events()) == 3, "events above an open transaction were delivered"
        session.stdin.write("COMMIT;\n")
        session.stdin.close()
        assert session.wait(timeout=30) == 0
        wait_for(lambda: len(receiver.events()) == 6, timeout=10, what="the held events delivered")
        assert [e["uuid"] for e in receiver.events()] == [e["uuid"] for e in first + second]
        wait_for(lambda: "delivery_held_back" not in ready(host)[1]["checks"]["journal"], timeout=10,
                 what="/ready no longer reporting it")
    finally:
        if session is not None and session.poll() is None:
            session.kill()
            session.wait()
        host.kill(signal.SIGTERM)
        receiver.close()
