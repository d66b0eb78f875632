"""Issue 20: `herald runs export RUN` writes a run's events as journaled, in order, one JSON
object per line (every page of the query API), to test a plugin against or to send elsewhere."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

from conftest import HERALD_BIN, token_pair, wait_for, webhook_plugin

TENANT = "ops"


def events(run: str, n: int) -> list[dict]:
    return [{"uuid": str(uuid.uuid4()), "event": "runner_on_ok" if i else "playbook_on_start", "counter": i + 1,
             "run_id": run, "created": "2026-11-21T10:00:00+00:00",
             "event_data": {"playbook": "site.yml", "host": f"web{i % 7}", "res": {"changed": i % 2 == 0}}}
            for i in range(n)]


def cli(host, token, *args):
    env = dict(os.environ, HERALD_URL=host.url, HERALD_TOKEN=token)
    return subprocess.run([str(HERALD_BIN), *args], capture_output=True, text=True, env=env, timeout=60)


def test_export_writes_every_event_of_the_run_in_order_and_they_can_be_sent_again(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    host = make_host({TENANT: token_hash}, {"sink": webhook_plugin(TENANT, receiver)}).start()
    sent = events("run-a", 620)  # more than one page of the query API (500)
    other = events("run-b", 3)
    for batch in (sent[:300], other, sent[300:]):
        status, body = host.post(json.dumps(batch).encode(), token)
        assert status == 202, body
    out = tmp_path / "run-a.jsonl"
    r = cli(host, token, "runs", "export", "run-a", "--file", str(out))
    assert r.returncode == 0 and r.stdout == f"{out}: 620 events of run run-a\n", r.stdout + r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["uuid"] for e in lines] == [e["uuid"] for e in sent]
    assert all(e["run_id"] == "run-a" for e in lines)
    assert lines[5]["event_data"]["host"] == "web5" and lines[0]["event"] == "playbook_on_start"
    # Standard output by default, the same lines.
    r = cli(host, token, "runs", "export", "run-a")
    assert r.returncode == 0 and r.stdout == out.read_text()
    # Another tenant does not see the run; an unknown run is an error naming it.
    r = cli(host, "not-a-token", "runs", "export", "run-a")
    assert r.returncode == 1 and "401" in r.stderr, r.stderr
    r = cli(host, token, "runs", "export", "no-such-run")
    assert r.returncode == 1 and "404" in r.stderr, r.stderr

    # The export is accepted as it is by another Herald.
    receiver2_events = len(receiver.events())
    second = make_host({TENANT: token_hash}, {"sink": webhook_plugin(TENANT, receiver)}).start()
    status, body = second.post(json.dumps(lines).encode(), token)
    assert status == 202 and body["accepted"] == 620, body
    wait_for(lambda: len(receiver.events()) >= receiver2_events + 620, timeout=60, what="the second host to deliver")
