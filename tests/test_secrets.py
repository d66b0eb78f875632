"""Issue 3: a secret in a no_log task, in a no_log loop item and in a task
argument named `password` appears nowhere Herald writes or sends it: not in
the callback's spool, the host's journal, the host's log, nor a sink payload
(searched byte-wise)."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, journal_bytes, token_pair, wait_for, webhook_plugin, run_playbook

SECRETS = [b"s3cret-no-log-task", b"s3cret-loop-item", b"s3cret-password-arg"]


def all_bytes(paths) -> bytes:
    out = b""
    for p in paths:
        p = Path(p)
        if p.is_file():
            out += p.read_bytes()
        elif p.is_dir():
            for f in p.rglob("*"):
                if f.is_file():
                    out += f.read_bytes()
    return out


def test_secrets_never_leave_the_controller(make_host, receiver, tmp_path):
    token, h = token_pair()
    host = make_host({"ops": h}, {"hook": webhook_plugin("ops", receiver)}).start()
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("web1 ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n")
    # Keep the spool after shipping? It is deleted once shipped, so also run once with the host down.
    down = run_playbook(ROOT / "tests" / "support" / "playbooks" / "secrets.yml", inventory, None, token,
                        tmp_path, extra_env={"HERALD_FLUSH_TIMEOUT": "0.5"})
    assert down.returncode == 0, down.stdout + down.stderr
    spooled = all_bytes([tmp_path / "spool"])
    assert b"runner_on_ok" in spooled, "the host-down run left its events in the spool"
    up = run_playbook(ROOT / "tests" / "support" / "playbooks" / "secrets.yml", inventory, host, token, tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    # Both runs (the spooled one is shipped first) reach the sink.
    wait_for(lambda: sum(1 for e in receiver.events() if e["event"] == "playbook_on_stats") == 2, timeout=60,
             what="both runs at the sink")
    delivered = b"".join(r["body"] for r in receiver.requests)
    journal = journal_bytes(host)
    logs = host.logs().encode()
    assert b"censored" in delivered, "no_log results arrive censored, not dropped"
    # The searches see real content (the playbook's task names are stored).
    assert b"An argument named password" in journal and b"An argument named password" in delivered
    assert logs
    for secret in SECRETS:
        for where, data in [("spool", spooled), ("sink payload", delivered), ("journal", journal), ("host log", logs)]:
            assert secret not in data, f"{secret!r} found in the {where}"
    # The password argument's task is there, with the value masked.
    set_fact = [e for e in receiver.events() if e["event"] == "runner_on_ok"
                and e["event_data"].get("task") == "An argument named password"]
    assert set_fact, "the set_fact result was delivered"
