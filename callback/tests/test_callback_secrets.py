"""Secrets never leave the controller: no_log results and loop items, task arguments, redact_keys,
facts. Checked byte-wise in the spool and in what the host received."""

from __future__ import annotations

import json

SECRETS = [b"S3cr3t-NOLOG-TASK", b"S3cr3t-NOLOG-ITEM", b"S3cr3t-ARG-PASSWORD", b"S3cr3t-STATS-TOKEN", b"S3cr3t-AUTH",
           b"S3cr3t-HEADER"]
CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"

PB = """\
- hosts: local
  gather_facts: false
  tasks:
    - name: no_log task
      ansible.builtin.command: echo S3cr3t-NOLOG-TASK
      no_log: true
    - name: no_log per item
      ansible.builtin.command: "echo {{ item.value }}"
      loop:
        - {value: visible-item, secret: false}
        - {value: S3cr3t-NOLOG-ITEM, secret: true}
      no_log: "{{ item.secret }}"
    - name: argument named password
      ansible.builtin.set_fact:
        password: S3cr3t-ARG-PASSWORD
        harmless: visible-arg
    - name: show a password-named var
      ansible.builtin.debug:
        var: password
    - name: custom stats with secret keys
      ansible.builtin.set_stats:
        data:
          api_token: S3cr3t-STATS-TOKEN
          nested:
            AUTHORIZATION: S3cr3t-AUTH
            list: [{X-Client-Secret: S3cr3t-HEADER}]
          visible_stat: 7
"""


def _assert_clean(blob: bytes, where: str):
    for s in SECRETS:
        assert s not in blob, "%s leaked into %s" % (s.decode(), where)


def test_secrets_absent_from_spool_and_host(runner, receiver):
    pb = runner.write("s.yml", PB)
    receiver.down()
    p = runner.playbook(pb, HERALD_SEND_TASK_ARGS="true", HERALD_SEND_FACTS="true", HERALD_FLUSH_TIMEOUT="0.3")
    assert p.returncode == 0, p.stdout + p.stderr
    spool = runner.spool_bytes()
    assert b"playbook_on_stats" in spool
    _assert_clean(spool, "the spool")
    # sanity: what is not secret did get through
    assert b"visible-item" in spool and b"visible-arg" in spool and b'"visible_stat":7' in spool

    receiver.up()
    s = runner.ship()
    assert s.returncode == 0, s.stderr
    for body in receiver.raw_bodies:
        _assert_clean(body, "a request body")
    _assert_clean(json.dumps(receiver.events).encode(), "the received events")

    def task_events(kind, task):
        return [e for e in receiver.of(kind) if e["event_data"].get("task") == task]

    for e in task_events("runner_on_ok", "no_log task"):
        assert e["event_data"]["res"]["censored"] == CENSORED
        assert "stdout" not in e["event_data"]["res"]
    items = task_events("runner_item_on_ok", "no_log per item")
    assert len(items) == 4
    censored = [i for i in items if i["event_data"]["res"].get("censored")]
    assert len(censored) == 2 and all(i["event_data"]["res"]["censored"] == CENSORED for i in censored)
    assert all("item" not in i["event_data"]["res"] for i in censored)
    # task arguments: sent (send_task_args), with the password redacted, and never for no_log tasks
    (args_task,) = [t for t in receiver.of("playbook_on_task_start") if t["event_data"]["task"] == "argument named password"]
    assert "password=********" in args_task["event_data"]["task_args"]
    assert "harmless=visible-arg" in args_task["event_data"]["task_args"]
    for name in ("no_log task", "no_log per item"):
        (t,) = [t for t in receiver.of("playbook_on_task_start") if t["event_data"]["task"] == name]
        assert "task_args" not in t["event_data"]
    for e in task_events("runner_on_ok", "show a password-named var"):
        assert e["event_data"]["res"]["password"] == "********"
    (st,) = receiver.of("playbook_on_stats")
    run = st["event_data"]["custom_stats"]["_run"]
    assert run["api_token"] == "********" and run["nested"]["AUTHORIZATION"] == "********"
    assert run["nested"]["list"][0]["X-Client-Secret"] == "********"
    assert st["event_data"]["artifact_data"]["visible_stat"] == 14  # aggregated over 2 hosts


def test_facts_are_dropped_unless_asked(runner, receiver):
    pb = runner.write("f.yml", "- hosts: alpha\n  gather_facts: false\n  tasks:\n"
                               "    - ansible.builtin.setup: {gather_subset: [min]}\n"
                               "    - ansible.builtin.set_fact: {color: blue}\n")
    p = runner.playbook(pb)
    assert p.returncode == 0
    oks = receiver.of("runner_on_ok")
    assert len(oks) == 2
    for e in oks:
        assert "ansible_facts" not in json.dumps(e["event_data"]["res"])
        assert "ansible_env" not in json.dumps(e["event_data"]["res"])
    first = len(receiver.events)
    p = runner.playbook(pb, HERALD_SEND_FACTS="true")
    assert p.returncode == 0
    oks = [e for e in receiver.events[first:] if e["event"] == "runner_on_ok"]
    assert "ansible_facts" in oks[0]["event_data"]["res"]
    assert oks[1]["event_data"]["res"]["ansible_facts"] == {"color": "blue"}


def test_redact_keys_option(runner, receiver):
    pb = runner.write("r.yml", "- hosts: alpha\n  gather_facts: false\n  tasks:\n"
                               "    - ansible.builtin.debug: {msg: {colour: blue, Shape: round}}\n")
    p = runner.playbook(pb, HERALD_REDACT_KEYS="shape,password")
    assert p.returncode == 0
    (ok,) = receiver.of("runner_on_ok")
    assert ok["event_data"]["res"]["msg"] == {"colour": "blue", "Shape": "********"}
