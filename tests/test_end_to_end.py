"""Issue 2: a real playbook's events through the callback and the host to the
webhook plugin, durability across SIGKILL, ingest errors, and the sandbox."""
from __future__ import annotations

import collections
import os
import gzip
import json
import re
import signal
import time
import uuid
from pathlib import Path

from conftest import ROOT, token_pair, wait_for, webhook_plugin, run_playbook

EXAMPLES = ROOT / "examples"


def counts(names):
    return collections.Counter(names)


def test_playbook_events_reach_the_webhook_exactly_once_per_callback(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)}).start()
    record = tmp_path / "record.txt"
    result = run_playbook(EXAMPLES / "playbooks" / "site.yml", EXAMPLES / "inventory.ini", host, token,
                          tmp_path, record=record)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = counts(record.read_text().split())
    assert expected["runner_on_ok"] > 0 and expected["playbook_on_stats"] == 1

    def delivered():
        got = counts(e["event"] for e in receiver.events())
        return got if sum(got.values()) >= sum(expected.values()) else None

    got = wait_for(delivered, timeout=60, what=f"{sum(expected.values())} events at the receiver")
    time.sleep(0.5)  # nothing more may arrive
    got = counts(e["event"] for e in receiver.events())
    assert got == expected

    # Every event kind the playbook exercises is there.
    for kind in ["playbook_on_start", "playbook_on_play_start", "playbook_on_task_start",
                 "playbook_on_notify", "runner_on_start", "runner_on_ok",
                 "runner_on_failed", "runner_on_skipped", "runner_item_on_ok", "playbook_on_stats"]:
        assert got[kind] > 0, kind

    events = receiver.events()
    ids = [e["uuid"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert len({e["run_id"] for e in events}) == 1
    failed = [e for e in events if e["event"] == "runner_on_failed"]
    assert failed and all(e["event_data"]["ignore_errors"] is True for e in failed)
    assert {e["event_data"]["host"] for e in failed} == {"db1"}

    stats = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    assert stats["ok"]["web1"] > 0 and stats["changed"]["web1"] == 1
    assert stats["ignored"].get("db1") == 1
    assert set(stats["processed"]) == {"web1", "web2", "db1"}
    assert stats["custom_stats"]["_run"] == {"release": "1.4.2", "deployed_hosts": 3}
    assert stats["custom_stats"]["db1"] == {"role": "db"}
    assert stats["custom_stats"]["web2"] == {"role": "web"}

    # The webhook's own contract: idempotency header per event.
    for r in receiver.requests:
        body = json.loads(r["body"])
        assert r["headers"]["x-herald-event-id"] == body["uuid"]
        assert r["headers"]["content-type"].startswith("application/json")


def make_event(run_id: str, counter: int, kind: str = "runner_on_ok", **data) -> dict:
    return {"uuid": str(uuid.uuid4()), "event": kind, "counter": counter, "run_id": run_id,
            "created": "2026-11-21T10:00:00.000000+00:00",
            "event_data": {"playbook": "durable.yml", "host": "h1", **data}}


def test_events_accepted_before_sigkill_are_delivered_after_restart(make_host, receiver):
    token, token_hash = token_pair()
    # The sink is down (503) while the events are accepted, so they are pending at the kill.
    receiver.default = (503, {}, b"down")
    host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)}).start()
    run = str(uuid.uuid4())
    sent = []
    for batch in range(5):
        events = [make_event(run, batch * 20 + i) for i in range(20)]
        status, body = host.post(json.dumps(events).encode(), token)
        assert status == 202 and body == {"accepted": 20, "duplicates": 0}
        sent += [e["uuid"] for e in events]
    host.kill(signal.SIGKILL)
    receiver.default = (200, {}, b"ok")
    host.start()
    wait_for(lambda: {e["uuid"] for e in receiver.events()} >= set(sent), timeout=60,
             what="every accepted event delivered after the restart")
    # In order within the run: the first successful delivery of each event follows the counters.
    delivered_ok = [json.loads(r["body"])["counter"] for r in receiver.requests[-len(sent):]]
    assert delivered_ok == sorted(delivered_ok)


def test_bad_input_gets_clear_errors_and_loses_nothing(make_host, receiver):
    token, token_hash = token_pair()
    host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)},
                     extra="").start()
    run = str(uuid.uuid4())
    good = make_event(run, 1)

    status, body = host.post(b'[{"uuid": ', token)
    assert status == 400 and body["error"] == "invalid_json", body

    bad_type = dict(make_event(run, 2), counter="three")
    status, body = host.post(json.dumps([make_event(run, 1), bad_type]).encode(), token)
    assert status == 400 and body["index"] == 1 and body["field"] == "counter", body

    bad_nested = make_event(run, 2)
    bad_nested["event_data"]["host"] = ["not", "a", "string"]
    status, body = host.post(json.dumps([bad_nested]).encode(), token)
    assert status == 400 and body["field"] == "event_data.host", body

    no_uuid = make_event(run, 3)
    del no_uuid["uuid"]
    status, body = host.post(json.dumps([no_uuid]).encode(), token)
    assert status == 400 and body["field"] == "uuid" and body["index"] == 0, body

    status, body = host.post(json.dumps([good]).encode(), "wrong-token")
    assert status == 401 and body["error"] == "unauthorized", body
    status, body = host.post(json.dumps([good]).encode(), None)
    assert status == 401, body

    status, body = host.post(b"x" * (11 * 1024 * 1024), token)
    assert status == 413 and body["error"] == "payload_too_large", body
    bomb = gzip.compress(b"[" + b" " * (11 * 1024 * 1024) + b"]")
    status, body = host.post(bomb, token, encoding="gzip")
    assert status == 413, body

    status, body = host.post(json.dumps([good]).encode(), token, content_type="text/plain")
    assert status == 415 and body["error"] == "unsupported_media_type", body

    # Nothing of the refused batches was stored: the first good event is new.
    status, body = host.post(json.dumps([good]).encode(), token)
    assert (status, body) == (202, {"accepted": 1, "duplicates": 0})
    # NDJSON and gzip work, and duplicates are counted, not stored twice.
    more = [make_event(run, 4), make_event(run, 5)]
    ndjson = "\n".join(json.dumps(e) for e in [good] + more).encode()
    status, body = host.post(gzip.compress(ndjson), token, content_type="application/x-ndjson", encoding="gzip")
    assert (status, body) == (202, {"accepted": 2, "duplicates": 1})
    wait_for(lambda: len(receiver.events()) >= 3, timeout=30, what="3 deliveries")
    time.sleep(0.3)
    assert sorted(e["uuid"] for e in receiver.events()) == sorted([good["uuid"]] + [e["uuid"] for e in more])


def test_a_destination_outside_the_allow_list_is_refused_at_load_naming_the_key(make_host, receiver):
    """The webhook asks the host (herald:grants/check) while it configures, so a URL its
    allow_http does not admit stops the host from starting, located at the key, instead of
    dead-lettering every event. (The sandbox's own refusal of requests a component makes anyway
    is tested with hostile components in test_sandbox.py.)"""
    token, token_hash = token_pair()
    plugin = webhook_plugin("ops", receiver)
    plugin["allow_http"] = ["http://127.0.0.1:1"]  # not the receiver
    good_plugin = webhook_plugin("ops", receiver, headers={"X-Which": "allowed"})
    host = make_host({"ops": token_hash}, {"blocked": plugin, "allowed": good_plugin})
    try:
        host.start(timeout=30)
        started = True
    except AssertionError:
        started = False
    assert not started, "the host started with a destination its allow_http refuses"
    assert re.search(r"herald\.toml:\d+:1: plugins\.blocked\.config\.url: plugin refused its configuration: "
                     r"http://127\.0\.0\.1:\d+ is not in allow_http \(it lists http://127\.0\.0\.1:1\)", host.logs()), \
        host.logs()
    assert receiver.requests == []


def test_run_labels_from_the_callback_reach_the_query_api_the_cli_and_routes(make_host, receiver, tmp_path):
    """Issue 17 point 10: HERALD_LABELS (the callback's `labels` option) sends the `labels`
    object; `herald runs list --label`, `GET /v1/runs?label=` and `routes.labels` use it."""
    import subprocess
    import urllib.parse
    import urllib.request

    from conftest import HERALD_BIN

    token, token_hash = token_pair()
    prod = webhook_plugin("ops", receiver, headers={"X-Which": "prod"})
    prod["routes"] = [{"labels": {"env": "prod"}}]
    staging = webhook_plugin("ops", receiver, headers={"X-Which": "staging"})
    staging["routes"] = [{"labels": {"env": "staging"}}]
    host = make_host({"ops": token_hash}, {"prod": prod, "staging": staging}).start()
    pb = tmp_path / "labelled.yml"
    pb.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    inv = tmp_path / "inv.ini"
    inv.write_text("h1 ansible_connection=local ansible_python_interpreter='{{ ansible_playbook_python }}'\n")
    result = run_playbook(pb, inv, host, token, tmp_path,
                          extra_env={"HERALD_LABELS": " team = platform , env=prod,", "HERALD_FLUSH_TIMEOUT": "10"})
    assert result.returncode == 0, result.stdout + result.stderr
    m = re.search(r"herald: run ([0-9a-f-]{36}): (\d+) event\(s\) sent", result.stdout)
    assert m, result.stdout
    run_id, sent = m.group(1), int(m.group(2))

    def get(path, **query):
        url = f"{host.url}{path}?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    assert get(f"/v1/runs/{run_id}")["labels"] == {"team": "platform", "env": "prod"}
    assert [r["id"] for r in get("/v1/runs", label="team=platform")["items"]] == [run_id]
    assert get("/v1/runs", label="env=staging")["items"] == []

    def cli(*args):
        env = dict(os.environ, HERALD_URL=host.url, HERALD_TOKEN=token)
        return subprocess.run([str(HERALD_BIN), "runs", "list", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    found = cli("--label", "env=prod", "--output", "json")
    assert found.returncode == 0, found.stderr
    assert run_id in found.stdout
    assert run_id not in cli("--label", "env=staging", "--output", "json").stdout

    # routes.labels: every event of the run goes to the prod instance, none to staging.
    wait_for(lambda: len(receiver.events()) >= sent, timeout=60, what=f"{sent} events at the receiver")
    time.sleep(0.5)
    assert len(receiver.requests) == sent
    assert {r["headers"].get("x-which") for r in receiver.requests} == {"prod"}
    assert all(e["labels"] == {"team": "platform", "env": "prod"} for e in receiver.events())
