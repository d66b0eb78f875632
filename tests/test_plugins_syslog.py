"""Issue 4: the syslog plugin through the real host to a real rsyslog (Debian package `rsyslog`),
run unprivileged on free loopback ports with its own configuration: imudp and imtcp inputs and
a template that writes what rsyslog parsed from each message (hostname, app-name, procid,
msgid, severity, facility, structured data, msg) as one JSON line.

One failed run of tests/support/playbooks/deploy.yml (web1 changes, web2 fails a task, cache1 is
unreachable, some tasks skip) goes to two instances of the plugin: one over UDP, one over TCP
with RFC 6587 octet counting. Each event must arrive once, in order, with the RFC 5424 fields the
plugin's documentation promises.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import PLUGIN_DIR, Host, run_playbook, token_pair

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import (  # noqa: E402
    FakeWebhook, Rsyslog, by_run, created_ms, delivery_counts, deploy_run, env_skip_reason, parse_sd, poll,
    wait_settled)

TENANT = "ops"


def expected_severity(e: dict, run_failed: bool) -> str:
    """The documented mapping: failed -> err, unreachable -> crit, changed -> notice, ok and
    skipped -> info, ignored failure -> warning, stats -> err if the run failed else notice."""
    d, kind = e["event_data"], e["event"]
    if kind == "runner_on_failed":
        return "warning" if d.get("ignore_errors") else "err"
    if kind == "runner_on_unreachable":
        return "crit"
    if kind == "runner_on_ok":
        return "notice" if (d.get("res") or {}).get("changed") else "info"
    if kind == "playbook_on_stats":
        return "err" if run_failed else "notice"
    if kind in ("warning", "deprecated"):
        return "warning"
    return "info"


def expected_status(e: dict) -> str | None:
    d = e["event_data"]
    return {
        "runner_on_ok": "changed" if (d.get("res") or {}).get("changed") else "ok",
        "runner_on_failed": "ignored" if d.get("ignore_errors") else "failed",
        "runner_on_unreachable": "unreachable",
        "runner_on_skipped": "skipped",
    }.get(e["event"])


@pytest.fixture
def rsyslog(tmp_path):
    reason = env_skip_reason()
    if reason:
        if os.environ.get("HERALD_SKIP_DEBIAN_SERVERS"):
            pytest.skip(reason)
        pytest.fail(reason + "; .ci/run installs them (set HERALD_SKIP_DEBIAN_SERVERS=1 to skip instead)")
    r = Rsyslog(tmp_path / "rsyslog")
    try:
        yield r.wait_ready()
    finally:
        r.stop()


def test_rsyslog_parses_every_event_over_udp_and_tcp(rsyslog, tmp_path):
    capture = FakeWebhook()
    token, token_hash = token_pair()
    udp, tcp = f"127.0.0.1:{rsyslog.udp_port}", f"127.0.0.1:{rsyslog.tcp_port}"
    fast = {"initial_ms": 100, "max_ms": 1000, "max_attempts": 20}
    (tmp_path / "host").mkdir()
    host = Host(tmp_path / "host", {TENANT: token_hash}, {
        "syslog-udp": {"tenant": TENANT, "component": str(PLUGIN_DIR / "syslog.wasm"), "allow_sockets": [udp],
                       "retry": fast, "config": {"address": udp, "facility": "local3"}},
        "syslog-tcp": {"tenant": TENANT, "component": str(PLUGIN_DIR / "syslog.wasm"), "allow_sockets": [tcp],
                       "retry": fast,
                       "config": {"address": tcp, "transport": "tcp", "facility": "local4", "app_name": "herald-tcp",
                                  "use_target_host": True, "sd_id": "ansible@32473"}},
        "capture": {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"), "allow_http": [capture.url],
                    "config": {"url": capture.url + "/events"}},
    }).start()
    try:
        r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",), cache_unreachable=True,
                       record=tmp_path / "run.record")
        assert r.returncode == 4, r.stdout + r.stderr
        n = len((tmp_path / "run.record").read_text().split())
        text = wait_settled(host, TENANT, ["syslog-udp", "syslog-tcp", "capture"], n)
        for p in ("syslog-udp", "syslog-tcp"):
            assert delivery_counts(text, p) == {"ok": n}, (p, delivery_counts(text, p))
        (events,) = by_run(capture.events()).values()
        assert len(events) == n
        stats = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
        assert stats["failures"] == {"web2": 1} and stats["dark"] == {"cache1": 1}
        assert stats["changed"] == {"web1": 1} and sum(stats["skipped"].values()) > 0

        # rsyslog writes a UDP datagram when it arrives: wait (bounded) until both files are complete.
        def both():
            got = rsyslog.messages()
            u = [m for m in got if m["input"] == "imudp"]
            t = [m for m in got if m["input"] == "imtcp"]
            return (u, t) if len(u) >= n and len(t) >= n else None
        udp_msgs, tcp_msgs = poll(both, 20, f"{n} messages over each transport in rsyslog's file")

        for transport, msgs, facility, app, sd_id in [("udp", udp_msgs, "local3", "ansible", "herald@32473"),
                                                      ("tcp", tcp_msgs, "local4", "herald-tcp", "ansible@32473")]:
            # Each event exactly once, in the run's order.
            assert [m["msgid"] for m in msgs] == [e["event"] for e in events], transport
            for m, e in zip(msgs, events):
                d = e["event_data"]
                where = f"{transport} {e['event']} {d.get('host')}"
                assert m["protocol_version"] == "1", where
                assert m["app_name"] == app and m["facility"] == facility, where
                assert m["procid"] == e["run_id"], where
                assert m["severity"] == expected_severity(e, run_failed=True), where
                if transport == "tcp" and d.get("host"):
                    assert m["hostname"] == d["host"], where          # use_target_host
                else:
                    assert m["hostname"] == e["controller"], where    # the run's controller
                # rsyslog's timereported is the event's creation time.
                assert m["timestamp"].endswith("Z") and \
                    created_ms({"created": m["timestamp"]}) == created_ms(e), (where, m["timestamp"], e["created"])
                sd = parse_sd(m["structured_data"])
                assert list(sd) == [sd_id], (where, m["structured_data"])
                params = sd[sd_id]
                assert params["tenant"] == TENANT and params["run_id"] == e["run_id"], where
                assert params["event_id"] == e["uuid"] and params["playbook"] == "deploy.yml", where
                assert params.get("host") == d.get("host"), where
                assert params.get("play_id") == d.get("play_uuid"), where
                assert params.get("task_id") == d.get("task_uuid"), where
                assert params.get("action") == d.get("task_action"), where
                assert params.get("status") == expected_status(e), where
            by_kind = {m["msgid"]: m for m in msgs}
            assert "migration 42 failed on web2" in by_kind["runner_on_failed"]["msg"]
            assert by_kind["runner_on_unreachable"]["severity"] == "crit"
            # The end of the run, from the default `summary_message` template: the recap, then
            # the failed hosts with their failed tasks and messages.
            end = by_kind["playbook_on_stats"]["msg"]
            assert end.startswith("playbook deploy.yml finished failed in "), end
            assert "web2 ok=1 changed=0 failed=1 unreachable=0" in end, end
            assert " | failed: cache1 task 'Render the configuration': " in end, end
            assert end.endswith("; web2 task 'Migrate the database': migration 42 failed on web2"), end
    finally:
        host.kill(signal.SIGTERM)
        capture.stop()


def test_docs_say_udp_may_lose_datagrams_and_recommend_tcp():
    """Issue 17 point 18: the syslog plugin's docs (plugins/README.md and the plugin's own doc)
    say plainly that UDP may lose datagrams under load, and recommend TCP."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "plugins" / "README.md").read_text()
    section = readme[readme.index("### syslog"):]
    section = section[: section.find("\n### ", 1) if "\n### " in section[1:] else len(section)]
    lib = (root / "plugins" / "syslog" / "src" / "lib.rs").read_text()
    module_doc = "\n".join(line for line in lib.splitlines() if line.startswith("//!"))
    for name, text in (("plugins/README.md", section), ("plugins/syslog/src/lib.rs", module_doc)):
        flat = " ".join(text.replace("//!", " ").split())
        assert "UDP may lose datagrams under load" in flat, name
        assert "Use TCP" in flat or "Prefer TCP" in flat, name
    assert '`"tcp"` recommended' in section
