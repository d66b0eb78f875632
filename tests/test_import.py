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
