"""Issue 9: the query API, its OpenAPI document and the CLI over it, after
real playbook runs (a success with set_stats, a failure with a rescue, an
unreachable host) and an interrupted run, through the real callback and host.

Every expectation about a finished run comes from Ansible itself: the PLAY
RECAP it printed and the events its callbacks were called with."""
from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import (HERALD_BIN, ROOT, SUPPORT, VENV_BIN, Host, Receiver, add_admin, run_playbook, token_pair,
                      wait_for, webhook_plugin)

EXAMPLES = ROOT / "examples"

FAIL_PLAYBOOK = """
- name: Deploy with a failure
  hosts: all
  gather_facts: false
  tasks:
    - name: Prepare
      ansible.builtin.debug:
        msg: prepare
    - name: Recover from a first attempt
      block:
        - name: First attempt
          ansible.builtin.fail:
            msg: first attempt failed
      rescue:
        - name: Second attempt
          ansible.builtin.debug:
            msg: rescued
      when: inventory_hostname == 'web1'
    - name: Migrate the database
      ansible.builtin.fail:
        msg: "migration failed on {{ inventory_hostname }}"
      when: inventory_hostname == 'db1'
    - name: Restart
      ansible.builtin.command: "true"
      changed_when: true
"""

UNREACHABLE_PLAYBOOK = """
- name: Reach every host
  hosts: all
  gather_facts: false
  tasks:
    - name: Run a command
      ansible.builtin.command: "true"
    - name: Say done
      ansible.builtin.debug:
        msg: done
"""

UNREACHABLE_INVENTORY = """
[local]
here ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"

[remote]
gone ansible_host=127.0.0.2 ansible_connection=ssh ansible_port=1 ansible_user=nobody
"""

RECAP_LINE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+"
                        r"skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def play_recap(stdout: str) -> dict:
    """The PLAY RECAP ansible-playbook printed, in the API's field names."""
    recap = stdout[stdout.rindex("PLAY RECAP"):]
    out = {}
    for m in RECAP_LINE.finditer(recap):
        ok, changed, unreachable, failed, skipped, rescued, ignored = map(int, m.groups()[1:])
        out[m.group(1)] = {"ok": ok, "changed": changed, "unreachable": unreachable, "failures": failed,
                           "skipped": skipped, "rescued": rescued, "ignored": ignored}
    assert out, stdout
    return out


@dataclass
class Run:
    name: str
    playbook: Path
    result: subprocess.CompletedProcess
    record: Path
    id: str = ""

    @property
    def recorded(self) -> collections.Counter:
        return collections.Counter(self.record.read_text().split())


@dataclass
class World:
    host: Host
    token: str
    other_token: str
    runs: dict[str, Run]
    interrupted_id: str
    hook: Receiver
    tmp: Path
    labels: dict = field(default_factory=dict)
    admin_token: str = ""

    def get(self, path: str, token: str | None = "default", **params) -> tuple[int, dict]:
        token = self.token if token == "default" else token
        query = urllib.parse.urlencode(params, doseq=True)
        req = urllib.request.Request(self.host.url + path + ("?" + query if query else ""))
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def ok(self, path: str, token: str | None = "default", **params) -> dict:
        status, body = self.get(path, token, **params)
        assert status == 200, (path, params, status, body)
        return body

    def all_items(self, path: str, **params) -> list:
        items, cursor = [], None
        while True:
            page = self.ok(path, **params, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def cli(self, *args, token: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, HERALD_URL=self.host.url, HERALD_TOKEN=token or self.token)
        return subprocess.run([str(HERALD_BIN), *args], env=env, capture_output=True, text=True, timeout=60)


def now_iso(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset_s)) + "+00:00"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("query")
    hook, refuser = Receiver(), Receiver()
    refuser.default = (400, {}, b"refused")  # permanent: every delivery to `refused` is a dead letter
    token, token_hash = token_pair()
    other_token, other_hash = token_pair()
    (tmp / "host").mkdir()
    admin_token, admin_hash = token_pair()
    host = Host(tmp / "host", {"ops": token_hash, "other": other_hash},
                {"hook": webhook_plugin("ops", hook), "refused": webhook_plugin("ops", refuser)})
    add_admin(host, admin_hash)
    host.start()
    (tmp / "fail.yml").write_text(FAIL_PLAYBOOK)
    (tmp / "reach.yml").write_text(UNREACHABLE_PLAYBOOK)
    (tmp / "reach.ini").write_text(UNREACHABLE_INVENTORY)
    plans = {
        "ok": (EXAMPLES / "playbooks" / "site.yml", EXAMPLES / "inventory.ini"),
        "failed": (tmp / "fail.yml", EXAMPLES / "inventory.ini"),
        "unreachable": (tmp / "reach.yml", tmp / "reach.ini"),
    }

    def play(name):
        d = tmp / name
        d.mkdir()
        record = d / "record.txt"
        result = run_playbook(plans[name][0], plans[name][1], host, token, d, record=record,
                              extra_env={"ANSIBLE_TIMEOUT": "5"}, timeout=120)
        return Run(name, plans[name][0], result, record)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = {r.name: r for r in pool.map(play, plans)}
    assert runs["ok"].result.returncode == 0, runs["ok"].result.stdout + runs["ok"].result.stderr
    assert runs["failed"].result.returncode == 2, runs["failed"].result.stdout
    assert runs["unreachable"].result.returncode == 4, runs["unreachable"].result.stdout

    # An interrupted run: the playbook started on a controller and went silent (no stats event).
    interrupted = "interrupted-" + uuid.uuid4().hex[:8]
    base = {"run_id": interrupted, "controller": "ctl-7", "labels": {"env": "staging", "team": "db"}}
    events = [
        dict(base, uuid=str(uuid.uuid4()), event="playbook_on_start", counter=1, created="2026-01-01T00:00:00Z",
             event_data={"playbook": "night.yml", "herald": {"user": "cron", "ansible_version": "2.19.14",
                                                              "check_mode": True, "tags": ["db"]}}),
        dict(base, uuid=str(uuid.uuid4()), event="runner_on_ok", counter=2, created="2026-01-01T00:00:05Z",
             event_data={"playbook": "night.yml", "host": "h1", "task": "backup", "res": {"changed": True}}),
        dict(base, uuid=str(uuid.uuid4()), event="runner_on_failed", counter=3, created="2026-01-01T00:00:07Z",
             event_data={"playbook": "night.yml", "host": "h2", "task": "backup", "res": {"msg": "disk full"}}),
    ]
    status, body = host.post(json.dumps(events).encode(), token)
    assert status == 202, body

    w = World(host, token, other_token, runs, interrupted, hook, tmp)
    w.admin_token = admin_token
    for name, run in runs.items():
        items = w.ok("/v1/runs", playbook=run.playbook.name, limit=10)["items"]
        assert len(items) == 1, (name, items)
        run.id = items[0]["id"]
    # The callback's final flush happened before ansible-playbook exited: every event is there.
    for run in runs.values():
        assert w.ok(f"/v1/runs/{run.id}")["events"] == sum(run.recorded.values()), run.name
    yield w
    host.kill(signal.SIGTERM)
    hook.close()
    refuser.close()


def test_run_summaries_are_what_ansible_reported(world):
    for name, run in world.runs.items():
        detail = world.ok(f"/v1/runs/{run.id}")
        assert detail["status"] == name, detail
        assert detail["stats_source"] == "stats"
        assert detail["hosts"] == play_recap(run.result.stdout), name
        assert detail["playbook"] == str(run.playbook)
        assert detail["user"] == os.environ.get("USER") or detail["user"]
        assert detail["ansible_version"] and detail["check_mode"] is False
        assert detail["ended_at"] and detail["duration_s"] >= 0
        assert detail["started_at"] <= detail["ended_at"]
        assert detail["controller"]

    failed = world.ok(f"/v1/runs/{world.runs['failed'].id}")["failed_tasks"]
    by_task = {(t["host"], t["task"]): t for t in failed}
    assert by_task[("db1", "Migrate the database")]["message"] == "migration failed on db1"
    assert by_task[("db1", "Migrate the database")]["ignored"] is False
    # the rescued failure is listed, marked rescued (Ansible counted it as rescued, not failed)
    assert by_task[("web1", "First attempt")]["outcome"] == "failed"
    assert by_task[("web1", "First attempt")]["rescued"] is True
    assert by_task[("db1", "Migrate the database")]["rescued"] is False
    assert len(failed) == 2

    ok_run = world.ok(f"/v1/runs/{world.runs['ok'].id}")
    assert [(t["host"], t["ignored"], t["rescued"], t["message"]) for t in ok_run["failed_tasks"]] == \
        [("db1", True, False, "non-zero return code")]

    unreachable = world.ok(f"/v1/runs/{world.runs['unreachable'].id}")["failed_tasks"]
    assert [(t["host"], t["outcome"]) for t in unreachable] == [("gone", "unreachable")]
    assert unreachable[0]["message"]


def test_interrupted_run_and_threshold(world):
    rid = world.interrupted_id
    running = world.ok(f"/v1/runs/{rid}")
    assert running["status"] == "running"  # an event arrived within the default hour
    time.sleep(0.01)
    detail = world.ok(f"/v1/runs/{rid}", interrupted_after_s=0)
    assert detail["status"] == "interrupted"
    assert detail["ended_at"] is None and detail["duration_s"] is None
    assert detail["stats_source"] == "events"
    assert detail["hosts"] == {"h1": {"ok": 1, "changed": 1, "unreachable": 0, "failures": 0, "skipped": 0,
                                      "rescued": 0, "ignored": 0},
                               "h2": {"ok": 0, "changed": 0, "unreachable": 0, "failures": 1, "skipped": 0,
                                      "rescued": 0, "ignored": 0}}
    assert detail["labels"] == {"env": "staging", "team": "db"}
    assert (detail["user"], detail["check_mode"], detail["tags"]) == ("cron", True, ["db"])
    assert (detail["controller"], detail["playbook"]) == ("ctl-7", "night.yml")
    assert detail["started_at"] == "2026-01-01T00:00:00.000Z"
    assert detail["last_event_at"] == "2026-01-01T00:00:07.000Z"
    assert [(t["message"], t["rescued"]) for t in detail["failed_tasks"]] == [("disk full", False)]
    ids = [r["id"] for r in world.ok("/v1/runs", status="interrupted", interrupted_after_s=0)["items"]]
    assert ids == [rid]
    assert rid in [r["id"] for r in world.ok("/v1/runs", status="running")["items"]]
    assert world.ok(f"/v1/runs/{rid}/artifacts") == {"run": {}, "hosts": {}}


def test_list_filters_and_order(world):
    all_runs = world.ok("/v1/runs", limit=500)["items"]
    ids = {r["id"] for r in all_runs}
    assert ids == {r.id for r in world.runs.values()} | {world.interrupted_id}
    starts = [r["started_at"] for r in all_runs]
    assert starts == sorted(starts, reverse=True), "newest first"

    def listed(**params):
        return [r["id"] for r in world.ok("/v1/runs", **params)["items"]]

    for name, run in world.runs.items():
        assert listed(status=name) == [run.id]
    assert listed(playbook="fail*") == [world.runs["failed"].id]
    assert listed(playbook="*.yml", status="ok") == [world.runs["ok"].id]
    assert listed(playbook="nothing*") == []
    assert listed(controller="ctl-7") == [world.interrupted_id]
    assert listed(label="env=staging") == [world.interrupted_id]
    assert listed(label=["env=staging", "team=db"]) == [world.interrupted_id]
    assert listed(label="team") == [world.interrupted_id]
    assert listed(label="env=prod") == []
    assert listed(since="2025-12-31T23:59:59Z", until="2026-01-01T00:10:00Z") == [world.interrupted_id]
    assert listed(since=1767225599000, until=1767226200000) == [world.interrupted_id]
    assert set(listed(since=now_iso(-600))) == {r.id for r in world.runs.values()}
    assert listed(until="2025-01-01T00:00:00+02:00") == []

    # cursor pagination walks every run once, in the same order
    walked, cursor = [], None
    while True:
        page = world.ok("/v1/runs", limit=1, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 1
        walked += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert walked == [r["id"] for r in all_runs]


def test_events_in_order_with_filters(world):
    run = world.runs["ok"]
    events = world.all_items(f"/v1/runs/{run.id}/events", limit=7)
    assert collections.Counter(e["event"] for e in events) == run.recorded
    assert [e["counter"] for e in events] == sorted(e["counter"] for e in events)
    assert all(e["run_id"] == run.id for e in events)

    def status_of(e):
        kind, changed = e["event"], (e.get("event_data", {}).get("res") or {}).get("changed") is True
        if kind in ("runner_on_ok", "runner_on_async_ok", "runner_item_on_ok"):
            return "changed" if changed else "ok"
        return {"runner_on_failed": "failed", "runner_on_async_failed": "failed", "runner_item_on_failed": "failed",
                "runner_on_skipped": "skipped", "runner_item_on_skipped": "skipped",
                "runner_on_unreachable": "unreachable"}.get(kind)

    for status in ["ok", "changed", "failed", "skipped"]:
        got = world.all_items(f"/v1/runs/{run.id}/events", status=status, limit=500)
        assert [e["uuid"] for e in got] == [e["uuid"] for e in events if status_of(e) == status], status
        assert got, status
    web1 = world.ok(f"/v1/runs/{run.id}/events", host="web1", limit=500)["items"]
    assert web1 and [e["uuid"] for e in web1] == [e["uuid"] for e in events
                                                  if e.get("event_data", {}).get("host") == "web1"]
    kinds = world.ok(f"/v1/runs/{run.id}/events", kind="playbook_on_start,playbook_on_stats")["items"]
    assert [e["event"] for e in kinds] == ["playbook_on_start", "playbook_on_stats"]
    failed = world.ok(f"/v1/runs/{run.id}/events", status="failed", host="db1")["items"]
    assert [e["event_data"]["task"] for e in failed] == ["Check the database schema (fails on db1, ignored)"]
    unreachable = world.runs["unreachable"]
    got = world.ok(f"/v1/runs/{unreachable.id}/events", status="unreachable")["items"]
    assert [e["event_data"]["host"] for e in got] == ["gone"]


def test_artifacts_are_set_stats_as_ansible_aggregated_them(world):
    run = world.runs["ok"]
    art = world.ok(f"/v1/runs/{run.id}/artifacts")
    assert art == {"run": {"release": "1.4.2", "deployed_hosts": 3},
                   "hosts": {"web1": {"role": "web"}, "web2": {"role": "web"}, "db1": {"role": "db"}}}
    stats = world.ok(f"/v1/runs/{run.id}/events", kind="playbook_on_stats")["items"][0]["event_data"]
    assert art["run"] == stats["artifact_data"] == stats["custom_stats"]["_run"]
    assert world.ok(f"/v1/runs/{world.runs['failed'].id}/artifacts") == {"run": {}, "hosts": {}}


def test_deliveries_per_instance_and_outcome(world):
    run = world.runs["ok"]
    n = sum(run.recorded.values())

    def done():
        items = world.all_items("/v1/deliveries", run=run.id, plugin="hook", outcome="done", limit=500)
        return items if len(items) == n else None

    items = wait_for(done, timeout=60, what="every event of the run delivered to hook")
    assert {d["event_uuid"] for d in items} == {e["uuid"] for e in world.hook.events() if e["run_id"] == run.id}
    assert all(d["attempts"] == 1 and d["last_error"] is None and d["next_attempt_at"] is None for d in items)
    dead = wait_for(lambda: (lambda x: x if len(x) == n else None)(
        world.all_items("/v1/deliveries", run=run.id, plugin="refused", outcome="dead", limit=500)),
        timeout=60, what="every delivery to refused dead")
    assert all(d["attempts"] >= 1 and "400" in d["last_error"] for d in dead), dead[0]
    assert [d["counter"] for d in dead] == sorted(d["counter"] for d in dead)
    # paging gives the same rows as one big page
    assert world.all_items("/v1/deliveries", run=run.id, limit=9) == \
        world.all_items("/v1/deliveries", run=run.id, limit=500)
    assert world.ok("/v1/deliveries", run=run.id, outcome="pending")["items"] == []


def test_another_tenant_sees_nothing(world):
    other = world.other_token
    assert world.ok("/v1/runs", other) == {"items": [], "next_cursor": None}
    assert world.ok("/v1/deliveries", other) == {"items": [], "next_cursor": None}
    for run_id in [r.id for r in world.runs.values()] + [world.interrupted_id]:
        for suffix in ["", "/events", "/artifacts"]:
            status, body = world.get(f"/v1/runs/{run_id}{suffix}", other)
            assert status == 404 and body["error"] == "not_found", (suffix, body)
            # exactly what a run that never existed answers, apart from the id
            status2, body2 = world.get(f"/v1/runs/nope{suffix}", other)
            assert status2 == 404 and body2["message"].replace('"nope"', "") == \
                body["message"].replace(f'"{run_id}"', "")
    for path in ["/v1/runs", f"/v1/runs/{world.interrupted_id}", "/v1/deliveries"]:
        assert world.get(path, None)[0] == 401
        status, body = world.get(path, "not-a-token")
        assert status == 401 and body["error"] == "unauthorized"


@pytest.mark.parametrize("path,params,field", [
    ("/v1/runs", {"status": "bogus"}, "status"),
    ("/v1/runs", {"status": ""}, "status"),
    ("/v1/runs", {"since": "yesterday"}, "since"),
    ("/v1/runs", {"until": "2026-13-01T00:00:00Z"}, "until"),
    ("/v1/runs", {"limit": "0"}, "limit"),
    ("/v1/runs", {"limit": "501"}, "limit"),
    ("/v1/runs", {"limit": "ten"}, "limit"),
    ("/v1/runs", {"cursor": "zz"}, "cursor"),
    ("/v1/runs", {"label": "=v"}, "label"),
    ("/v1/runs", {"interrupted_after_s": "-1"}, "interrupted_after_s"),
    ("/v1/runs", {"playbok": "x"}, "playbok"),
    ("/v1/runs", {"status": ["ok", "failed"]}, "status"),
    ("/v1/runs/RUN", {"interrupted_after_s": "soon"}, "interrupted_after_s"),
    ("/v1/runs/RUN/events", {"kind": "runner_on_nothing"}, "kind"),
    ("/v1/runs/RUN/events", {"status": "broken"}, "status"),
    ("/v1/runs/RUN/events", {"cursor": "00"}, "cursor"),
    ("/v1/runs/RUN/artifacts", {"host": "h"}, "host"),
    ("/v1/deliveries", {"outcome": "lost"}, "outcome"),
    ("/v1/deliveries", {"limit": "-3"}, "limit"),
])
def test_bad_filters_get_400_naming_the_parameter(world, path, params, field):
    status, body = world.get(path.replace("RUN", world.runs["ok"].id), **params)
    assert status == 400, body
    assert body["error"] == "invalid_parameter" and body["field"] == field, body
    assert body["message"]


def test_a_cursor_of_another_endpoint_is_refused(world):
    cursor = world.ok("/v1/runs", limit=1)["next_cursor"]
    status, body = world.get("/v1/deliveries", cursor=cursor)
    assert status == 400 and body["field"] == "cursor"


def test_cli_prints_the_same_data(world):
    run = world.runs["failed"]
    out = world.cli("runs", "list", "--output", "json", "--limit", "500")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == world.ok("/v1/runs", limit=500)
    out = world.cli("runs", "list", "--output", "json", "--limit", "1", "--all")
    assert json.loads(out.stdout)["items"] == world.ok("/v1/runs", limit=500)["items"]
    out = world.cli("runs", "list", "--status", "failed")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "PLAYBOOK"] and len(lines) == 2
    assert lines[1].split()[:3] == [run.id, "failed", str(run.playbook)]

    out = world.cli("runs", "show", run.id, "--output", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == world.ok(f"/v1/runs/{run.id}")
    out = world.cli("runs", "show", run.id)
    assert out.returncode == 0, out.stderr
    assert re.search(rf"^Status\s+failed$", out.stdout, re.M)
    table = out.stdout[out.stdout.index("PLAY RECAP"):]
    for host, s in play_recap(run.result.stdout).items():
        row = [host] + [str(s[k]) for k in ["ok", "changed", "unreachable", "failures", "skipped", "rescued",
                                             "ignored"]]
        assert any(line.split() == row for line in table.splitlines()), (row, table)
    assert "migration failed on db1" in out.stdout

    out = world.cli("deliveries", "list", run.id, "--output", "json", "--all", "--limit", "13")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"] == world.all_items("/v1/deliveries", run=run.id, limit=500)
    out = world.cli("deliveries", "list", run.id, "--plugin", "hook", "--limit", "3")
    assert out.returncode == 0 and out.stdout.splitlines()[0].split()[:2] == ["PLUGIN", "RUN"]
    assert "(more: --cursor" in out.stdout

    out = world.cli("runs", "artifacts", world.runs["ok"].id, "--output", "json")
    assert json.loads(out.stdout) == world.ok(f"/v1/runs/{world.runs['ok'].id}/artifacts")
    # the default (table) output is a table, one row per scope and key
    out = world.cli("runs", "artifacts", world.runs["ok"].id, "-o", "table")
    assert out.returncode == 0, out.stderr
    assert [line.split() for line in out.stdout.splitlines()] == [
        ["SCOPE", "KEY", "VALUE"], ["run", "deployed_hosts", "3"], ["run", "release", "1.4.2"],
        ["db1", "role", "db"], ["web1", "role", "web"], ["web2", "role", "web"]]
    out = world.cli("runs", "events", run.id, "--status", "failed", "--output", "json")
    assert [e["event_data"]["host"] for e in json.loads(out.stdout)["items"]] == ["web1", "db1"]

    # errors: the HTTP status and the API's message
    out = world.cli("runs", "show", run.id, token=world.other_token)
    assert out.returncode == 1 and "404" in out.stderr and "no run" in out.stderr, out.stderr
    out = world.cli("runs", "list", token="wrong")
    assert out.returncode == 1 and "401" in out.stderr and "unknown token" in out.stderr, out.stderr
    out = world.cli("runs", "list", "--status", "meh")
    assert out.returncode == 1 and "400" in out.stderr and "status must be one of" in out.stderr, out.stderr
    env = dict(os.environ, HERALD_TOKEN=world.token)
    env.pop("HERALD_URL", None)
    out = subprocess.run([str(HERALD_BIN), "runs", "list", "--url", "http://127.0.0.1:9"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "cannot reach herald at http://127.0.0.1:9" in out.stderr, out.stderr


def test_openapi_document_validates(world):
    from openapi_spec_validator import validate

    with urllib.request.urlopen(world.host.url + "/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    validate(doc)
    # every endpoint the host serves
    assert set(doc["paths"]) == {
        "/v1/events", "/v1/runs", "/v1/runs/{id}", "/v1/runs/{id}/events", "/v1/runs/{id}/artifacts",
        "/v1/deliveries", "/v1/dead-letters", "/v1/dead-letters/retry", "/v1/dead-letters/{id}/retry",
        "/v1/runs/{id}/replay", "/health", "/ready", "/metrics", "/v1/metrics", "/v1/plugins", "/v1/admin/reload", "/openapi.json",
        "/v1/deliveries/{plugin}/{event_uuid}/attempts", "/v1/search"}
    for path in ["/v1/plugins", "/v1/admin/reload"]:
        assert doc["paths"][path]["get"]["security"] == [{"admin": []}], path
    for op in [doc["paths"]["/v1/runs"]["get"], doc["paths"]["/v1/events"]["post"]]:
        assert {"400", "401"} <= set(op["responses"]), op["responses"]
        assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_property_based_api_test_finds_no_5xx_and_no_schema_violation(world):
    import hypothesis
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    with urllib.request.urlopen(world.host.url + "/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    schema = schemathesis.openapi.from_dict(doc)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    headers = {"Authorization": f"Bearer {world.token}"}
    run_id = world.runs["ok"].id
    tried, called, statuses = collections.Counter(), collections.Counter(), collections.Counter()
    for result in schema.get_all_operations():
        op = result.ok()

        @hypothesis.settings(max_examples=80, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck),
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
        @hypothesis.given(case=op.as_strategy())
        def check(case):
            if case.path_parameters and "id" in case.path_parameters and tried[op.label] % 2:
                case.path_parameters["id"] = run_id  # half the cases hit a real run
            tried[op.label] += 1
            if op.method.upper() == "POST" and case.media_type and "ndjson" in case.media_type:
                return  # schemathesis has no NDJSON serializer; NDJSON ingest is tested end to end
            response = case.call_and_validate(base_url=world.host.url, headers=headers, checks=checks)
            called[op.label] += 1
            statuses[op.label, response.status_code] += 1

        check()
    # every operation of the document was exercised (ingest, query, recovery, admin, meta)
    assert len(called) == 19, called
    no_parameters = {"GET /openapi.json", "GET /health", "GET /ready", "GET /metrics", "GET /v1/metrics", "GET /v1/plugins",
                     "GET /v1/admin/reload"}
    assert all(n >= 30 for label, n in called.items() if label not in no_parameters), called
    # the generated cases reach the success paths too, not only the 400s
    for label in ["GET /v1/runs", "GET /v1/runs/{id}", "GET /v1/runs/{id}/events", "GET /v1/deliveries",
                  "POST /v1/events"]:
        assert statuses[label, 200] + statuses[label, 202] > 0, statuses


def test_schemathesis_over_the_whole_api_finds_no_mismatch(world, tmp_path):
    """`st run` with every check over every operation of /openapi.json, every phase (examples,
    coverage, fuzzing, stateful), positive and negative data: what the document allows is accepted,
    what it forbids is refused, every answer matches it. Bounded (40 examples an operation, a fixed
    seed, deterministic) so it takes well under two minutes."""
    def next_cursor(path, **params):
        return world.ok(path, limit=1, **params)["next_cursor"]

    run_id = world.runs["ok"].id
    # A cursor is opaque: only one the server returned is valid, so real ones are given.
    cursors = {"GET /v1/runs": next_cursor("/v1/runs"),
               "GET /v1/runs/{id}/events": next_cursor(f"/v1/runs/{run_id}/events"),
               "GET /v1/deliveries": next_cursor("/v1/deliveries")}
    assert all(cursors.values()), cursors
    config = [f'headers = {{ Authorization = "Bearer {world.token}" }}',
              "[[operations]]", 'include-path-regex = "^/v1/(plugins|admin/)"',
              f'headers = {{ Authorization = "Bearer {world.admin_token}" }}']
    for name, cursor in cursors.items():
        config += ["[[operations]]", f'include-name = "{name}"', f'parameters = {{ "query.cursor" = "{cursor}" }}']
    (tmp_path / "schemathesis.toml").write_text("\n".join(config) + "\n")
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks", PYTHONPATH=str(SUPPORT))
    out = subprocess.run(
        [str(VENV_BIN / "st"), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
         world.host.url + "/openapi.json", "--checks", "all", "--max-examples", "40", "--seed", "17",
         "--generation-deterministic", "--no-color"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stdout[-20000:] + out.stderr[-5000:]
    # every operation but the document itself (the schema it is given)
    assert re.search(r"Selected: 18/18", out.stdout) and "Tested: 18" in out.stdout, out.stdout[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", out.stdout), out.stdout[-3000:]
