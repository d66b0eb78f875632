"""The plugin contract's versions: the shipped plugins are built against herald:plugin@0.3.0 (the
lazily read event resource, one-call `http.send`, message templates); a plugin built against
0.2.0 (tests/hostile/legacy-v0-2) and one built against 0.1.0 (whole event record,
tests/hostile/legacy) must keep working through the host's adapters, beside them, on the events
of a real playbook run.
"""
from __future__ import annotations

import collections
import sys
from pathlib import Path

from conftest import HOSTILE_DIR, add_admin, admin_get, run_playbook, token_pair, webhook_plugin

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import by_run, delivery_counts, deploy_run, parse_prometheus_text, wait_settled  # noqa: E402

TENANT = "ops"


def expected_labels(e: dict) -> tuple:
    """The labels the 0.1.0 plugin derives from the typed record, derived here from the wire event."""
    d = e.get("event_data", {})
    res = d.get("res") if isinstance(d.get("res"), dict) else {}
    status = {
        "runner_on_ok": "changed" if res.get("changed") else "ok",
        "runner_item_on_ok": "changed" if res.get("changed") else "ok",
        "runner_on_failed": "failed",
        "runner_item_on_failed": "failed",
        "runner_on_unreachable": "unreachable",
        "runner_on_skipped": "skipped",
        "runner_item_on_skipped": "skipped",
    }.get(e["event"], "none")
    fields = ("processed", "ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
    hosts = len(set().union(*(d.get(f) or {} for f in fields))) if e["event"] == "playbook_on_stats" else 0
    task = d.get("task", "") if d.get("task_uuid") else ""
    return (e["event"], d.get("host", "") or "", status, task, d.get("playbook", ""), str(hosts))


def test_a_v0_1_plugin_gets_every_typed_field_through_the_adapter(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    admin, admin_hash = token_pair()
    host = make_host({TENANT: token_hash}, {
        "legacy": {"tenant": TENANT, "component": str(HOSTILE_DIR / "legacy_v0_1.wasm"),
                   "config": {"refuse": ["runner_on_failed"]},
                   "retry": {"initial_ms": 100, "max_ms": 500, "max_attempts": 3}},
        "legacy2": {"tenant": TENANT, "component": str(HOSTILE_DIR / "legacy_v0_2.wasm")},
        "capture": webhook_plugin(TENANT, receiver),
    })
    add_admin(host, admin_hash)
    host.start()
    # The host tells the versions apart by the component's export.
    contracts = {p["name"]: p["contract"] for p in admin_get(host, "/v1/plugins", admin)["plugins"]}
    assert contracts == {"legacy": "herald:plugin/handler@0.1.0", "legacy2": "herald:plugin/handler@0.2.0",
                         "capture": "herald:plugin/handler@0.3.0"}
    r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",),
                   record=tmp_path / "run.record")
    assert r.returncode == 2, r.stdout + r.stderr
    total = len((tmp_path / "run.record").read_text().split())
    text = wait_settled(host, TENANT, ["legacy", "legacy2", "capture"], total)

    # The 0.3.0 webhook forwarded every event; the 0.1.0 plugin counted every one of them with
    # the kind, host, status, task, playbook and stats it read from its record, and the 0.2.0
    # plugin the same from the fields of its lent event (converted down from 0.3.0's).
    events = receiver.events()
    assert len(events) == total and len(by_run(events)) == 1
    want = collections.Counter(expected_labels(e) for e in events)
    got = collections.Counter()
    for name, labels, value in parse_prometheus_text(text):
        if name == "legacy_events_total" and labels.get("plugin") == "legacy":
            key = tuple(labels[k] for k in ("kind", "host", "status", "task", "playbook", "stats_hosts"))
            got[key] += int(value)
    assert got == want, (got - want, want - got)
    assert any(k[0] == "playbook_on_stats" and int(k[5]) >= 3 for k in got), got
    got2 = collections.Counter()
    for name, labels, value in parse_prometheus_text(text):
        if name == "legacy2_events_total" and labels.get("plugin") == "legacy2":
            key = tuple(labels[k] for k in ("kind", "host", "status", "task", "playbook", "stats_hosts"))
            got2[key] += int(value)
    assert got2 == want, (got2 - want, want - got2)
    assert delivery_counts(text, "legacy2") == {"ok": total}, delivery_counts(text, "legacy2")

    # Its answers count as any plugin's: the refused failure is dead-lettered, the rest delivered.
    failed = sum(1 for e in events if e["event"] == "runner_on_failed")
    assert failed >= 1
    assert delivery_counts(text, "legacy") == {"ok": total - failed, "dead": failed}, delivery_counts(text, "legacy")
