"""Every event kind Ansible emits arrives at the host with the fields docs/wire-format.md documents."""

from __future__ import annotations

import re
import shutil
import socket

import pytest

from herald_cb_helpers import ansible_version

MAIN = """\
- name: main play
  hosts: local
  gather_facts: false
  vars_prompt:
    - name: prompted
      prompt: "a value"
      private: false
      default: dflt
  tasks:
    - name: say hi
      ansible.builtin.debug:
        msg: hi
    - name: change something
      ansible.builtin.command: echo changed
      notify: my handler
    - name: fail but ignore
      ansible.builtin.fail:
        msg: boom
      ignore_errors: true
    - name: skip me
      ansible.builtin.debug:
        msg: never
      when: false
    - name: loop
      ansible.builtin.command: "echo {{ item }}"
      loop: [one, two, three]
      when: item != 'two'
    - name: loop failing item
      ansible.builtin.fail:
        msg: "bad {{ item }}"
      loop: [x]
      ignore_errors: true
    - name: retry until
      ansible.builtin.shell: |
        f="{{ playbook_dir }}/count-{{ inventory_hostname }}"
        n=$(cat "$f" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$f"; echo $n
      register: counter
      until: counter.stdout | int >= 3
      retries: 5
      delay: 0
    - name: async ok
      ansible.builtin.command: sleep 2.5
      async: 10
      poll: 1
    - name: async failing
      ansible.builtin.command: /bin/false
      async: 10
      poll: 1
      ignore_errors: true
    - name: write with diff
      ansible.builtin.copy:
        content: "hello {{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/diff-{{ inventory_hostname }}.txt"
      diff: true
    - name: include some tasks
      ansible.builtin.include_tasks: inc.yml
    - name: aggregate stats
      ansible.builtin.set_stats:
        data:
          deployed: 1
    - name: per host stats
      ansible.builtin.set_stats:
        data:
          who: "{{ inventory_hostname }}"
        per_host: true
  handlers:
    - name: my handler
      ansible.builtin.debug:
        msg: handled

- name: nobody
  hosts: empty
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: nobody
"""

INC = """\
- name: included task
  ansible.builtin.debug:
    msg: included
"""

RECAP_RE = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)",
    re.M)


def recap(stdout: str) -> dict:
    out = {}
    for m in RECAP_RE.finditer(stdout):
        h = m.group(1)
        ok, changed, unreach, failed, skipped, rescued, ignored = (int(x) for x in m.groups()[1:])
        out[h] = dict(ok=ok, changed=changed, dark=unreach, failures=failed, skipped=skipped, rescued=rescued,
                      ignored=ignored)
    return out


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    """One real run of the main playbook through the callback to a strict receiver."""
    from herald_cb_helpers import Receiver, Runner
    tmp = tmp_path_factory.mktemp("main")
    rec = Receiver()
    rec.up()
    r = Runner(tmp, rec)
    r.write("inc.yml", INC)
    pb = r.write("main.yml", MAIN)
    p = r.playbook(pb, "-vvv", "--limit", "alpha,beta")
    rec.down()
    yield p, rec, r
    assert rec.errors == []


def test_run_succeeds_without_herald_warnings_or_deprecations(main_run):
    p, rec, r = main_run
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "DEPRECATION" not in out, out
    warnings = [line for line in out.splitlines() if "[WARNING]" in line and "Not prompting" not in line]
    assert warnings == [], out
    assert "internal error" not in out
    # everything shipped: the spool holds nothing any more
    assert r.spool_files() == []


def test_envelope_and_order(main_run):
    _, rec, _ = main_run
    evs = rec.events
    assert len(evs) > 50
    assert len(rec.run_ids()) == 1
    assert [e["counter"] for e in evs] == list(range(1, len(evs) + 1)), "in order, no gap, no duplicate"
    assert len({e["uuid"] for e in evs}) == len(evs)
    assert rec.duplicates == 0
    for e in evs:
        assert e["controller"] == socket.gethostname()
        assert e["created"].endswith("+00:00")
        assert isinstance(e["event_data"], dict)
    # requests were NDJSON batches with the bearer token (the receiver validated them)
    assert rec.requests and all(q["status"] == 202 for q in rec.requests)
    assert all(q["headers"]["Content-Type"] == "application/x-ndjson" for q in rec.requests)


def test_playbook_and_play_and_task_start(main_run):
    _, rec, _ = main_run
    (start,) = rec.of("playbook_on_start")
    ed = start["event_data"]
    assert ed["playbook"].endswith("main.yml")
    assert ed["playbook_uuid"] == start["uuid"]
    h = ed["herald"]
    assert h["ansible_version"] and h["user"]
    assert h["check_mode"] is False
    assert h["limit"] == "alpha,beta"
    assert h["tags"] == []
    plays = rec.of("playbook_on_play_start")
    assert [p["event_data"]["play"] for p in plays] == ["main play", "nobody"]
    for p in plays:
        assert p["parent_uuid"] == start["uuid"]
        assert p["event_data"]["play_uuid"] and p["event_data"]["play_pattern"]
        assert p["event_data"]["playbook_uuid"] == start["uuid"]
    tasks = rec.of("playbook_on_task_start")
    names = [t["event_data"]["task"] for t in tasks]
    for n in ("say hi", "change something", "fail but ignore", "skip me", "loop", "retry until", "async ok",
              "write with diff", "include some tasks", "included task", "aggregate stats"):
        assert n in names
    for t in tasks:
        ed = t["event_data"]
        assert ed["task_uuid"] and ed["task_action"]
        assert re.search(r"\.yml:\d+$", ed["task_path"]), ed["task_path"]
        assert "task_args" not in ed  # send_task_args is off by default
        assert t["parent_uuid"] == plays[0]["uuid"]
        assert ed["play"] == "main play"


def _by_task(rec, kind, task):
    return [e for e in rec.of(kind) if e["event_data"].get("task") == task]


def _check_host_event(rec, e):
    ed = e["event_data"]
    assert ed["host"] in ("alpha", "beta")
    assert ed["remote_addr"]
    assert isinstance(ed["res"], dict)
    assert ed["end"] and "duration" in ed and ed["duration"] >= 0 and ed["start"]
    starts = [t for t in rec.of("playbook_on_task_start")
              if t["event_data"]["task_uuid"] == ed["task_uuid"]]
    assert e["parent_uuid"] in [t["uuid"] for t in starts]


def test_runner_events(main_run):
    _, rec, _ = main_run
    for kind, task, n in [
        ("runner_on_start", "say hi", 2),
        ("runner_on_ok", "say hi", 2),
        ("runner_on_ok", "change something", 2),
        ("runner_on_failed", "fail but ignore", 2),
        ("runner_on_skipped", "skip me", 2),
        ("runner_item_on_ok", "loop", 4),
        ("runner_item_on_skipped", "loop", 2),
        ("runner_item_on_failed", "loop failing item", 2),
        ("runner_retry", "retry until", 4),
        ("runner_on_ok", "retry until", 2),
        ("runner_on_async_ok", "async ok", 2),
        ("runner_on_async_failed", "async failing", 2),
        ("runner_on_file_diff", "write with diff", 2),
        ("runner_on_ok", "included task", 2),
    ]:
        evs = _by_task(rec, kind, task)
        assert len(evs) == n, (kind, task, len(evs))
        for e in evs:
            if kind != "runner_on_start":
                _check_host_event(rec, e)
    ok = _by_task(rec, "runner_on_ok", "say hi")[0]["event_data"]["res"]
    assert ok["msg"] == "hi"
    ch = _by_task(rec, "runner_on_ok", "change something")[0]["event_data"]["res"]
    assert ch["changed"] is True and ch["stdout"] == "changed"
    for f in _by_task(rec, "runner_on_failed", "fail but ignore"):
        assert f["event_data"]["ignore_errors"] is True
        assert f["event_data"]["res"]["msg"] == "boom"
    items = _by_task(rec, "runner_item_on_ok", "loop")
    assert sorted(i["event_data"]["res"]["item"] for i in items) == ["one", "one", "three", "three"]
    assert all(r["event_data"]["res"]["attempts"] in (1, 2) for r in _by_task(rec, "runner_retry", "retry until"))
    assert len(_by_task(rec, "runner_on_async_poll", "async ok")) >= 1
    diff = _by_task(rec, "runner_on_file_diff", "write with diff")[0]["event_data"]["res"]
    assert "diff" in diff


def test_handler_notify_include_nohosts_prompt(main_run):
    _, rec, _ = main_run
    notes = rec.of("playbook_on_notify")
    assert sorted(n["event_data"]["host"] for n in notes) == ["alpha", "beta"]
    assert all(n["event_data"]["handler"] == "my handler" for n in notes)
    # issue 17 point 12: the notify event carries the task that notified, under its task start
    assert all(n["event_data"]["task"] == "change something" for n in notes)
    starts = {t["uuid"]: t for t in rec.of("playbook_on_task_start")}
    assert all(starts[n["parent_uuid"]]["event_data"]["task"] == "change something" for n in notes)
    # a handler's start is named as ansible-runner names it
    assert rec.of("playbook_on_handler_task_start") == []
    (h,) = [t for t in rec.of("playbook_on_task_start") if t["event_data"].get("is_handler")]
    assert h["event_data"]["task"] == "my handler" and h["event_data"]["is_conditional"] is True
    assert len(_by_task(rec, "runner_on_ok", "my handler")) == 2
    incs = rec.of("playbook_on_include")
    assert len(incs) >= 1
    assert incs[0]["event_data"]["included_file"].endswith("inc.yml")
    assert sorted(h for i in incs for h in i["event_data"]["hosts"]) == ["alpha", "beta"]
    assert len(rec.of("playbook_on_no_hosts_matched")) == 1
    (vp,) = rec.of("playbook_on_vars_prompt")
    assert vp["event_data"]["varname"] == "prompted"


def test_stats_match_the_recap_and_carry_custom_stats(main_run):
    p, rec, _ = main_run
    (st,) = rec.of("playbook_on_stats")
    assert st is rec.events[-1]
    ed = st["event_data"]
    expected = recap(p.stdout)
    assert set(expected) == {"alpha", "beta"}
    for host, counts in expected.items():
        for field, n in counts.items():
            assert ed[field].get(host, 0) == n, (host, field, ed[field], n)
    assert ed["processed"] == {"alpha": 1, "beta": 1}
    assert ed["custom_stats"]["_run"] == {"deployed": 2}
    assert ed["custom_stats"]["alpha"] == {"who": "alpha"}
    assert ed["custom_stats"]["beta"] == {"who": "beta"}
    assert ed["artifact_data"] == {"deployed": 2}


def test_check_mode_and_tags_in_context(runner, receiver):
    pb = runner.write("t.yml", "- hosts: alpha\n  gather_facts: false\n  tasks:\n"
                               "    - ansible.builtin.debug: {msg: x}\n      tags: [web]\n")
    p = runner.playbook(pb, "--check", "--tags", "web", JOB_ID="4242", AWX_HOST="https://awx.example",
                        AWX_ISOLATED_DATA_DIR="/runner/artifacts/abc-123")
    assert p.returncode == 0, p.stdout + p.stderr
    (start,) = receiver.of("playbook_on_start")
    h = start["event_data"]["herald"]
    assert h["check_mode"] is True
    assert h["tags"] == ["web"]
    assert h["awx_job_id"] == "4242"
    assert h["awx_host"] == "https://awx.example"
    assert h["runner_ident"] == "abc-123"


def test_adhoc_run(runner, receiver):
    p = runner.adhoc("all", "-m", "ansible.builtin.ping")
    assert p.returncode == 0, p.stdout + p.stderr
    kinds = receiver.kinds()
    assert kinds.get("playbook_on_start") == 1
    assert kinds.get("playbook_on_play_start") == 1
    assert kinds.get("runner_on_ok") == 2
    assert kinds.get("playbook_on_stats") == 1
    (start,) = receiver.of("playbook_on_start")
    assert start["event_data"]["herald"]["adhoc"] is True
    assert start["event_data"]["herald"]["module_name"] == "ansible.builtin.ping"
    ok = receiver.of("runner_on_ok")[0]
    assert ok["event_data"]["res"]["ping"] == "pong"
    assert [e["counter"] for e in receiver.events] == list(range(1, len(receiver.events) + 1))


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs an ssh client for an unreachable host")
def test_unreachable_host(runner, receiver):
    runner.inventory.write_text(
        "ghost ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=2 -o StrictHostKeyChecking=no'\n")
    pb = runner.write("u.yml", "- hosts: ghost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    p = runner.playbook(pb)
    assert p.returncode == 4, p.stdout + p.stderr
    (u,) = receiver.of("runner_on_unreachable")
    assert u["event_data"]["host"] == "ghost"
    assert u["event_data"]["res"]["unreachable"] is True
    (st,) = receiver.of("playbook_on_stats")
    assert st["event_data"]["dark"] == {"ghost": 1}


def test_failed_play_sends_no_hosts_remaining(runner, receiver):
    # Ansible announces "NO MORE HOSTS LEFT" when max_fail_percentage stops the play
    pb = runner.write("f.yml", "- hosts: local\n  gather_facts: false\n  max_fail_percentage: 0\n  tasks:\n"
                               "    - ansible.builtin.fail: {msg: down}\n      when: inventory_hostname == 'alpha'\n"
                               "    - ansible.builtin.debug: {msg: never}\n")
    p = runner.playbook(pb)
    assert p.returncode == 2
    (f,) = receiver.of("runner_on_failed")
    assert f["event_data"]["ignore_errors"] is False and f["event_data"]["host"] == "alpha"
    assert len(receiver.of("playbook_on_no_hosts_remaining")) >= 1
    assert "NO MORE HOSTS LEFT" in p.stdout
    (st,) = receiver.of("playbook_on_stats")
    assert st["event_data"]["failures"] == {"alpha": 1}


def test_large_result_is_truncated_with_a_marker(runner, receiver):
    pb = runner.write("big.yml", "- hosts: alpha\n  gather_facts: false\n  tasks:\n"
                                 "    - ansible.builtin.command: \"python3 -c 'print(\\\"x\\\" * 200000)'\"\n")
    p = runner.playbook(pb, HERALD_MAX_RESULT_BYTES="4096")
    assert p.returncode == 0, p.stdout + p.stderr
    (ok,) = receiver.of("runner_on_ok")
    res = ok["event_data"]["res"]
    assert res["_herald_truncated"]["original_bytes"] > 200000
    assert res["_herald_truncated"]["max_result_bytes"] == 4096
    assert res["changed"] is True and res["rc"] == 0
    assert len(str(res)) < 8192


def test_ansible_version_is_what_we_think(main_run):
    _, rec, _ = main_run
    (start,) = rec.of("playbook_on_start")
    assert tuple(int(x) for x in start["event_data"]["herald"]["ansible_version"].split(".")[:2]) == ansible_version()


def test_labels_option_sends_the_labels_object_on_every_event(runner, receiver):
    """Issue 17 point 10: `labels` ([callback_herald] labels / HERALD_LABELS) is the envelope's
    `labels` object, on every event; a malformed pair is ignored with a warning naming it."""
    pb = runner.write("pb.yml", "- hosts: local\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    runner.write("ansible.cfg", "[defaults]\nretry_files_enabled = False\n[callback_herald]\nlabels = team=platform,"
                                " env = prod , broken\n")
    p = runner.playbook(pb)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ignored 'broken'" in " ".join(p.stderr.split()), p.stderr
    assert receiver.events and all(e["labels"] == {"team": "platform", "env": "prod"} for e in receiver.events)
    # the environment variable wins over ansible.cfg
    n = len(receiver.events)
    p = runner.playbook(pb, HERALD_LABELS="env=staging")
    assert p.returncode == 0
    assert all(e["labels"] == {"env": "staging"} for e in receiver.events[n:])
    # without labels, no field at all
    runner.write("ansible.cfg", "[defaults]\nretry_files_enabled = False\n")
    n = len(receiver.events)
    assert runner.playbook(pb).returncode == 0
    assert all("labels" not in e for e in receiver.events[n:])
