"""Issue 17 point 12: for the same playbook, the callback's events have the shape of the
`job_events/*.json` that ansible-runner writes: the same kinds in the same order and the same
keys per event, except the differences docs/wire-format.md lists (parsed from its table, so an
undocumented difference fails here). The playbook has a handler that runs twice (notify, flush,
notify again), an async task polled once or more, and a loop."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from conftest import ROOT, VENV_BIN

PLAYBOOK = """\
- name: parity play
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
    - name: a loop
      ansible.builtin.debug: {msg: "{{ item }}"}
      loop: [a, b]
    - name: async task
      ansible.builtin.command: sleep 2
      async: 20
      poll: 1
  handlers:
    - name: the handler
      ansible.builtin.debug: {msg: handled}
"""
INVENTORY = "h1 ansible_connection=local ansible_python_interpreter='{{ ansible_playbook_python }}'\n"


def documented_differences() -> list[tuple[set, set, str]]:
    """(event kinds or {"*"}, keys, "runner"/"callback") from the table in docs/wire-format.md."""
    text = (ROOT / "docs" / "wire-format.md").read_text()
    section = text.split("## The callback's events and ansible-runner's", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[2] not in ("ansible-runner only", "callback only"):
            continue
        kinds = set(re.findall(r"`([^`]+)`", cells[0]))
        keys = set(re.findall(r"`([^`]+)`", cells[1]))
        rows.append((kinds, keys, "runner" if cells[2].startswith("ansible") else "callback"))
    assert len(rows) >= 5, "the table of differences was not found"
    return rows


def allowed(rows, kind: str, key: str, side: str) -> bool:
    return any(s == side and ("*" in kinds or kind in kinds) and key in keys for kinds, keys, s in rows)


def env_for(tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HERALD_"))}
    env.update({"PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_LOCAL_TEMP": str(tmp / "atmp"),
                "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"})
    return env


def runner_events(tmp):
    pdd = tmp / "pdd"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project" / "pb.yml").write_text(PLAYBOOK)
    (pdd / "inventory" / "hosts").write_text(INVENTORY)
    r = subprocess.run([str(VENV_BIN / "ansible-runner"), "run", str(pdd), "-p", "pb.yml"], capture_output=True,
                       text=True, env=env_for(tmp), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (ident,) = list((pdd / "artifacts").iterdir())
    events = [json.loads(f.read_text()) for f in (ident / "job_events").glob("*.json")]
    return sorted(events, key=lambda e: e["counter"])


def callback_events(tmp):
    d = tmp / "cb"
    d.mkdir()
    (d / "pb.yml").write_text(PLAYBOOK)
    (d / "hosts").write_text(INVENTORY)
    callback_dir = subprocess.run([str(VENV_BIN / "python"), "-m", "herald_ansible.path"], check=True,
                                  capture_output=True, text=True).stdout.strip()
    env = env_for(tmp)
    # no url: the events stay in the spool, exactly as they would be sent
    env.update({"ANSIBLE_CALLBACK_PLUGINS": callback_dir, "ANSIBLE_CALLBACKS_ENABLED": "herald",
                "HERALD_SPOOL_DIR": str(d / "spool")})
    r = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(d / "hosts"), str(d / "pb.yml")],
                       capture_output=True, text=True, env=env, timeout=300, cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    (spool,) = (d / "spool").glob("run-*.jsonl")
    return [json.loads(line) for line in spool.read_text().splitlines()]


def one_poll(events):
    return [e for i, e in enumerate(events)
            if not (e["event"] == "runner_on_async_poll" and i and events[i - 1]["event"] == "runner_on_async_poll")]


def test_callback_events_have_the_shape_of_ansible_runner_job_events(tmp_path):
    assert shutil.which("ansible-runner", path=str(VENV_BIN)), "ansible-runner is in requirements-test.txt"
    runner = runner_events(tmp_path)
    ours = callback_events(tmp_path)
    rows = documented_differences()

    # How often Ansible polls an async job depends on timing: compare one poll per run of polls.
    assert [e["event"] for e in one_poll(ours)] == [e["event"] for e in one_poll(runner)]
    problems = []
    for i, (r, c) in enumerate(zip(one_poll(runner), one_poll(ours))):
        kind = r["event"]
        for side, a, b, prefix in (("runner", r, c, ""), ("callback", c, r, ""),
                                   ("runner", r["event_data"], c["event_data"], "event_data."),
                                   ("callback", c["event_data"], r["event_data"], "event_data.")):
            for key in sorted(set(a) - set(b)):
                name = key if not prefix else prefix + key
                if not allowed(rows, kind, name, side):
                    problems.append(f"event {i + 1} {kind}: {name} only in {side}'s event")
    assert problems == [], "\n".join(problems)

    # The documented value differences hold.
    by_uuid = {e["uuid"]: e for e in ours}
    handler_starts = [e for e in ours if e["event_data"].get("task") == "the handler"
                      and e["event"] == "playbook_on_task_start"]
    assert len(handler_starts) == 2
    assert all(e["event_data"]["is_conditional"] is True and e["event_data"]["is_handler"] is True
               for e in handler_starts)
    assert [e["event_data"].get("is_conditional") for e in runner if e["event"] == "playbook_on_task_start"
            and e["event_data"]["task"] == "the handler"] == [True, True]
    notes = [e for e in ours if e["event"] == "playbook_on_notify"]
    assert [n["event_data"]["task"] for n in notes] == ["first change", "second change"]
    for n in notes:
        parent = by_uuid[n["parent_uuid"]]
        assert parent["event"] == "playbook_on_task_start"
        assert parent["event_data"]["task_uuid"] == n["event_data"]["task_uuid"]
    polls = [e for e in ours if e["event"] in ("runner_on_async_poll", "runner_on_async_ok")]
    assert polls and {e["event"] for e in polls} == {"runner_on_async_poll", "runner_on_async_ok"}
    jids = {e["event_data"]["jid"] for e in polls}
    assert len(jids) == 1 and jids != {None}
    assert all(e["event_data"]["task"] == "async task" for e in polls)
    assert all(e["event_data"]["jid"] for e in runner if e["event"] in ("runner_on_async_poll", "runner_on_async_ok"))
    assert all(e["event_data"]["uuid"] == e["uuid"] for e in ours)
