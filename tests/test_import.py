"""Issue 3 item 7: `herald import` sends runs recorded by ansible-runner (the
format AWX uses) to Herald, so they reach plugins and the query API like runs
sent by the callback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import HERALD_BIN, ROOT, VENV_BIN, token_pair, wait_for, webhook_plugin


def runner_artifacts(tmp_path: Path) -> Path:
    """Runs examples/playbooks/site.yml with the real ansible-runner."""
    pdd = tmp_path / "pdd"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    shutil.copy(ROOT / "examples" / "playbooks" / "site.yml", pdd / "project" / "site.yml")
    shutil.copy(ROOT / "examples" / "inventory.ini", pdd / "inventory" / "hosts")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    r = subprocess.run([str(VENV_BIN / "ansible-runner"), "run", str(pdd), "-p", "site.yml"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return pdd


def herald(host, token, *args):
    env = dict(os.environ, HERALD_URL=host.url, HERALD_TOKEN=token)
    return subprocess.run([str(HERALD_BIN), *args], capture_output=True, text=True, env=env, timeout=120)


def test_import_sends_ansible_runner_job_events(make_host, receiver, tmp_path):
    pdd = runner_artifacts(tmp_path)
    (ident_dir,) = list((pdd / "artifacts").iterdir())
    files = sorted((ident_dir / "job_events").glob("*.json"))
    recorded = [json.loads(f.read_text()) for f in files]
    token, h = token_pair()
    host = make_host({"ops": h}, {"hook": webhook_plugin("ops", receiver)}).start()

    r = herald(host, token, "import", str(pdd))
    assert r.returncode == 0, r.stderr
    assert f"imported {len(recorded)} events (0 already known)" in r.stdout, r.stdout
    # Importing again stores nothing twice.
    again = herald(host, token, "import", str(ident_dir))
    assert f"imported 0 events ({len(recorded)} already known)" in again.stdout, again.stdout

    wait_for(lambda: len(receiver.requests) >= len(recorded), timeout=60, what="every imported event delivered")
    delivered = [json.loads(x["body"]) for x in receiver.requests]
    assert sorted(e["uuid"] for e in delivered) == sorted(e["uuid"] for e in recorded)
    # In the run's order, with the runner ident as the run id.
    assert [e["counter"] for e in delivered] == sorted(e["counter"] for e in recorded)
    assert {e["run_id"] for e in delivered} == {ident_dir.name}

    # The query API sees the run with Ansible's own stats.
    req = urllib.request.Request(f"{host.url}/v1/runs/{ident_dir.name}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        run = json.loads(resp.read())
    stats = next(e for e in recorded if e["event"] == "playbook_on_stats")["event_data"]
    assert run["status"] == "ok", run
    summary = json.dumps(run)
    for host_name, n in stats["ok"].items():
        assert host_name in summary


def test_import_names_the_bad_file(make_host, tmp_path):
    token, h = token_pair()
    host = make_host({"ops": h}, {}).start()
    events = tmp_path / "artifacts" / "ident-1" / "job_events"
    events.mkdir(parents=True)
    (events / "1-a.json").write_text(json.dumps({"uuid": "a", "counter": 1, "event": "playbook_on_start",
                                                 "created": "2026-11-21T10:00:00+00:00", "event_data": {}}))
    (events / "2-b.json").write_text(json.dumps({"uuid": "b", "counter": 2, "event": "no_such_event",
                                                 "created": "2026-11-21T10:00:01+00:00"}))
    r = herald(host, token, "import", str(tmp_path))
    assert r.returncode == 1
    assert "400" in r.stderr and "2-b.json" in r.stderr and "event" in r.stderr, r.stderr
    (events / "3-c.json").write_text("{not json")
    r = herald(host, token, "import", str(tmp_path))
    assert r.returncode == 1 and "3-c.json" in r.stderr and "not a JSON event" in r.stderr, r.stderr
    missing = herald(host, token, "import", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "nowhere" in missing.stderr


HANDLER_TWICE = """\
- name: handler twice
  hosts: all
  gather_facts: false
  tasks:
    - name: first change
      ansible.builtin.command: echo one
      notify: the handler
    - ansible.builtin.meta: flush_handlers
    - name: second change
      ansible.builtin.command: echo two
      notify: the handler
  handlers:
    - name: the handler
      ansible.builtin.debug: {msg: handled}
"""


def test_import_keeps_every_event_of_a_handler_that_runs_twice(make_host, receiver, tmp_path):
    """Issue 17 point 13: ansible-runner reuses the task uuid for each start of a handler; the
    import stores every event of the directory (a repeat gets `<uuid>-<counter>`), the second
    handler run's events point at its own start, and importing again stores nothing twice."""
    pdd = tmp_path / "pdd"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project" / "pb.yml").write_text(HANDLER_TWICE)
    (pdd / "inventory" / "hosts").write_text(
        "h1 ansible_connection=local ansible_python_interpreter='{{ ansible_playbook_python }}'\n")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    r = subprocess.run([str(VENV_BIN / "ansible-runner"), "run", str(pdd), "-p", "pb.yml"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (ident_dir,) = list((pdd / "artifacts").iterdir())
    recorded = sorted((json.loads(f.read_text()) for f in (ident_dir / "job_events").glob("*.json")),
                      key=lambda e: e["counter"])
    starts = [e for e in recorded if e["event"] == "playbook_on_task_start"
              and e["event_data"]["task"] == "the handler"]
    assert len(starts) == 2 and starts[0]["uuid"] == starts[1]["uuid"], "runner repeats the handler's uuid"
    repeat = starts[1]

    token, h = token_pair()
    host = make_host({"ops": h}, {"hook": webhook_plugin("ops", receiver)}).start()
    r = herald(host, token, "import", str(pdd))
    assert r.returncode == 0, r.stderr
    assert f"imported {len(recorded)} events (0 already known)" in r.stdout, r.stdout
    again = herald(host, token, "import", str(pdd))
    assert f"imported 0 events ({len(recorded)} already known)" in again.stdout, again.stdout

    wait_for(lambda: len(receiver.requests) >= len(recorded), timeout=60, what="every imported event delivered")
    delivered = sorted((json.loads(x["body"]) for x in receiver.requests), key=lambda e: e["counter"])
    assert [e["counter"] for e in delivered] == [e["counter"] for e in recorded]
    assert len({e["uuid"] for e in delivered}) == len(recorded)
    derived = f"{repeat['uuid']}-{repeat['counter']}"
    second = next(e for e in delivered if e["counter"] == repeat["counter"])
    assert second["uuid"] == derived and second["event"] == "playbook_on_task_start"
    # the second run's host events hang under the second start, the first run's under the first
    handler_oks = [e for e in delivered if e["event"] == "runner_on_ok" and e["event_data"]["task"] == "the handler"]
    assert [e["parent_uuid"] for e in handler_oks] == [repeat["uuid"], derived]

    # The query API has the whole run.
    req = urllib.request.Request(f"{host.url}/v1/runs/{ident_dir.name}/events",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        page = json.loads(resp.read())
    assert len(page["items"]) == len(recorded)
