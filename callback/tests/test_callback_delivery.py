"""The callback never hurts the playbook and never loses an event: host down, slow, failing,
refusing; SIGKILL; spool cap; herald-ship."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from herald_cb_helpers import ansible_bin, descendants, herald_warnings

FLUSH = 2.0
# Scheduling noise of a shared 2-core machine. The hang below lasts 30 s, so
# any bound well under that shows the callback did not wait for the host; the
# exact added cost is measured by the benchmark suite (bench/), not here.
SLACK = 8.0

OK_PB = """\
- hosts: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: one}
    - ansible.builtin.command: echo two
    - ansible.builtin.debug: {msg: "{{ item }}"}
      loop: [a, b]
"""
FAIL_PB = """\
- hosts: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: one}
    - ansible.builtin.fail: {msg: broken}
      when: inventory_hostname == 'beta'
    - ansible.builtin.debug: {msg: after}
"""
UNREACH_PB = """\
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
"""
UNREACH_INV = """\
alpha ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"
ghost ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_ssh_common_args='-o ConnectTimeout=2'
"""

CASES = [
    pytest.param("ok", OK_PB, 0, id="exit0"),
    pytest.param("failed", FAIL_PB, 2, id="exit2-failed"),
    pytest.param("unreachable", UNREACH_PB, 4, id="exit4-unreachable",
                 marks=pytest.mark.skipif(shutil.which("ssh") is None, reason="needs an ssh client")),
]


def strip_herald_warning(text: str) -> str:
    # a warning may be wrapped over several lines (ansible-core < 2.19)
    return re.sub(r"\[WARNING\]: herald:.*?(?=\n\[|\n\n|\Z)", "", text, flags=re.S).strip()


def flat(text: str) -> str:
    """Warnings are wrapped at 80 columns by ansible-core < 2.19."""
    return " ".join(text.split())


def uuids(events):
    return [e["uuid"] for e in events]


@pytest.mark.parametrize("name,pb_text,code", CASES)
def test_host_down_whole_run_then_herald_ship(runner, receiver, name, pb_text, code):
    if name == "unreachable":
        runner.inventory.write_text(UNREACH_INV)
    pb = runner.write("pb.yml", pb_text)
    receiver.down()
    base = runner.playbook(pb, enabled=False, ANSIBLE_FORKS=1)
    assert base.returncode == code, base.stdout + base.stderr
    p = runner.playbook(pb, ANSIBLE_FORKS=1)
    # exit code and output unchanged, apart from one warning line
    assert p.returncode == code, p.stdout + p.stderr
    assert p.stdout == base.stdout
    assert strip_herald_warning(p.stderr) == base.stderr.strip()
    assert len(herald_warnings(p.stderr)) == 1, p.stderr
    assert "not delivered" in flat(p.stderr)
    # the added wall time is bounded by flush_timeout
    assert p.elapsed <= base.elapsed + FLUSH + SLACK, (p.elapsed, base.elapsed)

    spooled = runner.spooled_events()
    assert len(spooled) >= 8
    assert [e["counter"] for e in spooled] == list(range(1, len(spooled) + 1))
    assert spooled[-1]["event"] == "playbook_on_stats"
    assert receiver.requests == []

    receiver.up()
    s = runner.ship()
    assert s.returncode == 0, s.stdout + s.stderr
    # every event exactly once, in the original order
    assert uuids(receiver.events) == uuids(spooled)
    assert receiver.duplicates == 0
    assert sum(q["n"] for q in receiver.requests) == len(spooled)
    assert runner.spool_files() == []
    # nothing left: a second herald-ship sends nothing
    before = len(receiver.requests)
    s2 = runner.ship()
    assert s2.returncode == 0
    assert len(receiver.requests) == before


def test_next_run_ships_older_spools_first(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    receiver.down()
    a = runner.playbook(pb, HERALD_FLUSH_TIMEOUT=0.3)
    assert a.returncode == 0
    first = runner.spooled_events()
    assert first
    receiver.up()
    b = runner.playbook(pb)
    assert b.returncode == 0
    assert herald_warnings(b.stderr) == []
    ids = receiver.run_ids()
    assert len(ids) == 2 and ids[0] == first[0]["run_id"]
    assert uuids(receiver.events[: len(first)]) == uuids(first)
    second = [e for e in receiver.events if e["run_id"] == ids[1]]
    assert [e["counter"] for e in second] == list(range(1, len(second) + 1))
    assert receiver.duplicates == 0
    assert runner.spool_files() == []


def test_hanging_host_costs_at_most_flush_timeout(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    base = runner.playbook(pb, enabled=False)
    receiver.delay = 30  # accepts the connection, never answers in time
    p = runner.playbook(pb)
    assert p.returncode == 0
    assert p.elapsed <= base.elapsed + FLUSH + SLACK, (p.elapsed, base.elapsed)
    assert len(herald_warnings(p.stderr)) == 1, p.stderr
    assert runner.spooled_events(), "unsent events stay spooled"


def test_5xx_retries_with_backoff_inside_the_budget(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    receiver.mode = "500"
    p = runner.playbook(pb)
    assert p.returncode == 0
    assert len(herald_warnings(p.stderr)) == 1, p.stderr
    assert "HTTP 500" in flat(p.stderr)
    n = len(receiver.requests)
    assert 2 <= n <= 25, "retried, with backoff (no storm): %d requests" % n
    spooled = runner.spooled_events()
    receiver.mode = "ok"
    s = runner.ship()
    assert s.returncode == 0, s.stderr
    assert uuids(receiver.events) == uuids(spooled)


def test_sigkill_mid_run_events_delivered_by_the_next_run(runner, receiver):
    pb = runner.write("slow.yml", """\
- hosts: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: before}
    - ansible.builtin.command: echo still-before
    - name: long
      ansible.builtin.command: sleep 60
""")
    receiver.down()
    cmd = [ansible_bin("ansible-playbook"), "-i", str(runner.inventory), str(pb)]
    proc = subprocess.Popen(cmd, env=runner.env(), cwd=str(runner.tmp), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            evs = []
            try:
                evs = runner.spooled_events()
            except (ValueError, OSError):
                pass
            if sum(1 for e in evs if e["event"] == "runner_on_start" and e["event_data"].get("task") == "long") == 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the long task never started")
    finally:
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)  # the playbook process itself is killed first
        proc.wait(timeout=30)
    try:
        # Ansible's workers (own sessions) outlive it: the spool must not depend on them
        killed = runner.spooled_events()
        receiver.up()
        nxt = runner.playbook(runner.write("ok.yml", OK_PB))
    finally:
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert killed[0]["event"] == "playbook_on_start"
    assert not any(e["event"] == "playbook_on_stats" for e in killed)
    assert [e["counter"] for e in killed] == list(range(1, len(killed) + 1))
    assert nxt.returncode == 0
    assert uuids(receiver.events[: len(killed)]) == uuids(killed)
    assert receiver.duplicates == 0
    assert runner.spool_files() == []


def _run_id_of(path) -> str:
    return re.match(r"run-\d{19}-([0-9a-f-]{36})\.jsonl$", path.name).group(1)


def test_bad_token_names_the_current_run_its_spooled_events_and_the_fix(runner, receiver):
    """Issue 17 point 8: with a refused token the end-of-run warning is about the current run
    (its id, its events spooled and not sent, check HERALD_TOKEN), never about an older run,
    and nothing is quarantined: the events are fine, the token is not."""
    pb = runner.write("pb.yml", OK_PB)
    # an older run left in the spool (host down) and an older quarantined run
    receiver.down()
    assert runner.playbook(pb, HERALD_FLUSH_TIMEOUT=0.3).returncode == 0
    (older,) = runner.spool_files()
    older_id = _run_id_of(older)
    receiver.up()
    receiver.mode = "401"
    p = runner.playbook(pb, HERALD_BATCH_MAX_AGE="0.5")
    assert p.returncode == 0
    w = herald_warnings(p.stderr)
    assert len(w) == 1, p.stderr
    text = flat(p.stderr)
    (current,) = [f for f in runner.spool_files() if f != older]
    current_id = _run_id_of(current)
    events = [json.loads(line) for line in current.read_text().splitlines()]
    assert "run %s" % current_id in text, text
    assert older_id not in text, text
    assert "%d event(s) of this run spooled, not sent" % len(events) in text, text
    assert "HERALD_TOKEN" in text and "401" in text and "unknown token" in text, text
    assert len(receiver.requests) == 1, "no retry storm"
    assert list(runner.spool.glob("*quarantine*")) == [], "a refused token quarantines nothing"
    # herald-ship with the bad token stops at once and says why
    s = runner.ship()
    assert s.returncode == 3
    assert "refused the token" in flat(s.stderr) and "HERALD_TOKEN" in s.stderr, s.stderr
    assert len(receiver.requests) == 2
    # with the token accepted again, both runs are sent, every event once
    receiver.mode = "ok"
    s = runner.ship()
    assert s.returncode == 0, s.stderr
    assert {e["run_id"] for e in receiver.events} == {older_id, current_id}
    assert set(uuids(events)) <= {e["uuid"] for e in receiver.events}
    assert runner.spool_files() == []


def test_quarantined_events_are_never_shipped_again_until_requeued(runner, receiver):
    """Issue 17 point 7: `run-…-ID.quarantine.jsonl` is not a spool file: herald-ship and later
    runs leave it alone (no re-quarantine, no warning, exit 0); --list-quarantined shows it and
    --requeue ID sends its events on purpose."""
    pb = runner.write("pb.yml", OK_PB)
    receiver.mode = "400"  # refuses every event (index 0): all of them are quarantined
    p = runner.playbook(pb)
    assert p.returncode == 0
    (q,) = runner.spool.glob("*.quarantine.jsonl")
    qid = re.match(r"run-\d{19}-([0-9a-f-]{36})\.quarantine\.jsonl$", q.name).group(1)
    quarantined = [json.loads(line) for line in q.read_text().splitlines()]
    assert quarantined and {e["run_id"] for e in quarantined} == {qid}
    assert "--requeue %s" % qid in flat(p.stderr), p.stderr
    assert runner.spool_files() == []
    content = q.read_bytes()

    receiver.mode = "ok"
    before = len(receiver.requests)
    for _ in range(2):
        s = runner.ship()
        assert s.returncode == 0, s.stdout + s.stderr
        assert "quarantined 0" in s.stdout, s.stdout
    assert len(receiver.requests) == before, "the quarantine file was shipped again"
    r = runner.playbook(pb)
    assert r.returncode == 0
    assert herald_warnings(r.stderr) == [], r.stderr
    assert qid not in {e["run_id"] for e in receiver.events}
    assert sorted(p.name for p in runner.spool.iterdir() if "quarantine" in p.name) == sorted([
        q.name[: -len(".jsonl")] + ".log", q.name])
    assert q.read_bytes() == content

    ls = runner.ship("--list-quarantined", HERALD_URL=None)
    assert ls.returncode == 0, ls.stderr
    row = next(line for line in ls.stdout.splitlines() if line.startswith(qid))
    assert row.split()[1:3] == [str(len(quarantined)), "400"], ls.stdout
    assert "refused by test" in ls.stdout

    bad = runner.ship("--requeue", "no-such-run")
    assert bad.returncode == 2 and "no quarantined events of run no-such-run" in bad.stderr
    rq = runner.ship("--requeue", qid)
    assert rq.returncode == 0, rq.stdout + rq.stderr
    assert "%d quarantined event(s) moved back" % len(quarantined) in rq.stdout
    assert [e["uuid"] for e in receiver.events if e["run_id"] == qid] == uuids(quarantined)
    assert not q.exists() and runner.spool_files() == []
    assert "no quarantined events" in runner.ship("--list-quarantined").stdout


def test_run_id_shown_at_v_and_in_the_end_of_run_line(runner, receiver):
    """Issue 17 point 9: the run id is printed at -v (start) and in the end-of-run line."""
    pb = runner.write("pb.yml", OK_PB)
    p = runner.playbook(pb)
    assert p.returncode == 0, p.stdout + p.stderr
    (rid,) = receiver.run_ids()
    assert "herald: run %s: %d event(s) sent to %s (herald runs show %s)" % (
        rid, len(receiver.events), receiver.url, rid) in p.stdout, p.stdout
    assert "spooling to" not in p.stdout
    v = runner.playbook(pb, "-v")
    assert v.returncode == 0
    rid2 = receiver.run_ids()[1]
    start = v.stdout.index("herald: run %s: spooling to" % rid2)
    assert start < v.stdout.index("PLAY [")
    assert "herald: run %s:" % rid2 in v.stdout[v.stdout.index("PLAY RECAP"):]


def test_spool_cap_drops_oldest_runs_and_reports_the_count(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    receiver.down()
    r1 = runner.playbook(pb, HERALD_FLUSH_TIMEOUT=0.3)
    assert r1.returncode == 0
    (f1,) = runner.spool_files()
    size = f1.stat().st_size
    run1 = runner.spooled_events()
    cap = int(size * 2.5)
    for _ in range(2):
        r = runner.playbook(pb, HERALD_SPOOL_MAX_BYTES=cap, HERALD_FLUSH_TIMEOUT=0.3)
        assert r.returncode == 0
    assert not f1.exists(), "the oldest run was dropped"
    assert "dropped the 1 oldest" in flat(r.stderr)
    left = runner.spooled_events()
    assert len(runner.spool_files()) == 2
    receiver.up()
    r4 = runner.playbook(pb, HERALD_SPOOL_MAX_BYTES=cap)
    assert r4.returncode == 0
    reported = [q.get("dropped") for q in receiver.requests if q.get("dropped")]
    assert reported == [len(run1)], receiver.requests
    assert receiver.requests[0].get("dropped") == len(run1)
    got = set(uuids(receiver.events))
    assert not got & set(uuids(run1))
    assert set(uuids(left)) <= got
    assert len(receiver.run_ids()) == 3
    assert not (runner.spool / "dropped").exists()


def test_own_run_over_the_cap_drops_new_events_and_counts_them(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    receiver.down()
    p = runner.playbook(pb, HERALD_SPOOL_MAX_BYTES=3000, HERALD_FLUSH_TIMEOUT=0.3)
    assert p.returncode == 0
    spooled = runner.spooled_events()
    assert 1 <= len(spooled) < 10
    dropped = int((runner.spool / "dropped").read_text())
    assert dropped > 0
    receiver.up()
    s = runner.ship()
    assert s.returncode == 0
    assert receiver.requests[0]["dropped"] == dropped
    assert uuids(receiver.events) == uuids(spooled)


def test_no_url_spools_only_and_warns(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    p = runner.playbook(pb, HERALD_URL=None)
    assert p.returncode == 0
    assert len(herald_warnings(p.stderr)) == 1 and "no url" in flat(p.stderr)
    spooled = runner.spooled_events()
    assert spooled and receiver.requests == []
    s = runner.ship("--url", receiver.url)
    assert s.returncode == 0
    assert uuids(receiver.events) == uuids(spooled)


def test_sigterm_flushes_within_the_budget_then_dies_as_before(runner, receiver):
    pb = runner.write("slow.yml", """\
- hosts: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: before}
    - name: long
      ansible.builtin.command: sleep 60
""")
    cmd = [ansible_bin("ansible-playbook"), "-i", str(runner.inventory), str(pb)]
    # the host is down during the run and comes up just before SIGTERM: only the flush can deliver
    receiver.down()
    proc = subprocess.Popen(cmd, env=runner.env(), cwd=str(runner.tmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    family = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            evs = runner.spooled_events()
            if sum(1 for e in evs if e["event"] == "runner_on_start" and e["event_data"].get("task") == "long") == 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the long task never started")
        time.sleep(1.0)  # let the shipper fail and back off
        receiver.up()
        assert receiver.events == []
        family = descendants(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert took <= FLUSH + SLACK, took
    assert proc.returncode == -signal.SIGTERM, proc.returncode
    assert uuids(receiver.events) == uuids(evs)
    assert runner.spool_files() == []


def test_every_batch_carries_a_traceparent_derived_from_its_run_id(runner, receiver):
    pb = runner.write("pb.yml", OK_PB)
    receiver.down()
    assert runner.playbook(pb, HERALD_FLUSH_TIMEOUT=0.3).returncode == 0
    receiver.up()
    assert runner.playbook(pb, HERALD_BATCH_MAX_EVENTS=2).returncode == 0
    ok = [r for r in receiver.requests if r["status"] == 202]
    assert len(ok) >= 2
    pos = 0
    spans = set()
    for r in ok:
        tp = {k.lower(): v for k, v in r["headers"].items()}["traceparent"]
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", tp)
        assert m, tp
        batch = receiver.events[pos: pos + r["n"]]
        pos += r["n"]
        # One batch holds one run's events; the trace id is that run id.
        assert {e["run_id"].replace("-", "") for e in batch} == {m.group(1)}
        spans.add(m.group(2))
    assert len(spans) == len(ok)  # a fresh parent span id per batch
    assert len({e["run_id"] for e in receiver.events}) == 2


def test_spool_append_keeps_the_gil_and_still_reports_write_errors(tmp_path):
    """Appends go through libc's write(2) with the GIL held (see spool._write_all): every
    byte lands, and a failed write is still an OSError, so a full disk only drops events."""
    from herald_ansible import spool

    assert spool._gil_write is not None, "ctypes' PyDLL write is available on Linux"
    path = tmp_path / "s.jsonl"
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    lines = [(json.dumps({"n": i, "pad": "x" * (i % 7000)}) + "\n").encode() for i in range(300)]
    for line in lines:
        spool._write_all(fd, line)
    os.close(fd)
    assert path.read_bytes() == b"".join(lines)
    with pytest.raises(OSError) as e:
        spool._write_all(fd, b"closed\n")
    assert e.value.errno == 9  # EBADF
    w = spool.SpoolWriter(str(tmp_path / "spool"), "r1", 1 << 20)
    os.close(w.fd)  # the descriptor goes bad under the writer: the event is counted, not raised
    assert w.append(b'{"x":1}\n') is False
    assert w.dropped == 1 and isinstance(w.write_error, OSError)


def test_several_host_urls_fail_over_to_the_one_that_answers(runner, receiver, tmp_path):
    """HERALD_URL as a list (N Herald replicas): a host that is down, or answers
    503 (e.g. its database restarts), is passed over for the next; every event
    arrives once (the hosts drop what they already have)."""
    import socket
    from herald_cb_helpers import Receiver
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d" % s.getsockname()[1]  # closed once the block ends
    pb = runner.write("pb.yml", OK_PB)
    p = runner.playbook(pb, HERALD_URL="%s, %s" % (dead, receiver.url))
    assert p.returncode == 0, p.stdout + p.stderr
    assert receiver.events and runner.spooled_events() == [], "everything shipped to the live host"
    first = uuids(receiver.events)
    assert len(first) == len(set(first))
    assert "sending to %s" % receiver.url in flat(p.stderr), p.stderr

    # The first host answers 503: the batch goes to the second one.
    unready = Receiver()
    unready.up()
    try:
        unready.mode = "503"
        p = runner.playbook(pb, HERALD_URL="%s,%s" % (unready.url, receiver.url))
        assert p.returncode == 0, p.stdout + p.stderr
        assert unready.requests, "the first URL was tried first"
        assert runner.spooled_events() == []
        assert len(uuids(receiver.events)) == 2 * len(first)
    finally:
        unready.down()
