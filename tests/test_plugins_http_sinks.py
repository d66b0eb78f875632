"""Issue 4: the PagerDuty, Slack and Grafana plugins through the real host, against the strict
fakes of plugins/testing/fakes.py (they check the documented request shape and can answer 429
with Retry-After, 5xx and 4xx).

The module runs tests/support/playbooks/deploy.yml twice with Herald's callback: first failing
(web2 fails a task, cache1 is unreachable), then succeeding. Every test reads what the sinks got
from those two runs, or replays the runs' recorded events (as the webhook received them) into a
fresh host whose sinks misbehave.
"""
from __future__ import annotations

import json
import re
import socket
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HERALD_BIN, PLUGIN_DIR, Host, run_playbook, token_pair

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import (  # noqa: E402
    GRAFANA_TOKEN, ROUTING_KEY, FakeGrafana, FakePagerDuty, FakeSlack, FakeWebhook, by_run, created_ms,
    delivery_counts, deploy_run, sample, stats_of, wait_settled)

TENANT = "ops"
SLACK_PATH = "/services/T0001/B0002/s3cr3tWebhookPath"
FAST_RETRY = {"initial_ms": 100, "max_ms": 1000, "max_attempts": 8}


def instances(pd: FakePagerDuty, slack: FakeSlack, grafana: FakeGrafana) -> dict[str, dict]:
    """One instance of each HTTP sink plugin (and a second PagerDuty one per host), each granted
    exactly its fake."""
    return {
        "pd": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "pagerduty.wasm"), "allow_http": [pd.url],
            "retry": FAST_RETRY,
            "config": {"routing_key": ROUTING_KEY, "events_url": pd.url + "/v2/enqueue",
                       "change_events_url": pd.url + "/v2/change/enqueue", "change_events": True,
                       "source": "ci-controller", "run_url": "https://herald.example.com/runs/{run_id}"},
        },
        "pd-hosts": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "pagerduty.wasm"), "allow_http": [pd.url],
            "retry": FAST_RETRY,
            "config": {"routing_key": ROUTING_KEY, "events_url": pd.url + "/v2/enqueue",
                       "granularity": "host", "severity_failed": "warning"},
        },
        "slack": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "slack.wasm"), "allow_http": [slack.url],
            "retry": FAST_RETRY,
            "config": {"webhook_url": slack.url + SLACK_PATH, "notify_on_success": True,
                       "channel": "#deploys", "username": "Herald", "mention": "<!here>"},
        },
        "grafana": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "grafana.wasm"), "allow_http": [grafana.url],
            "retry": FAST_RETRY,
            "config": {"url": grafana.url, "api_token": GRAFANA_TOKEN, "org_id": 3, "dashboard_uid": "ansible-runs",
                       "panel_id": 2, "tags": ["ansible", "test"], "failure_annotations": True},
        },
    }


SINKS = ["pd", "pd-hosts", "slack", "grafana"]


class Lifecycle:
    """What the module's two playbook runs produced."""

    def __init__(self, host, pd, slack, grafana, capture, runs, after_first):
        self.host, self.pd, self.slack, self.grafana, self.capture = host, pd, slack, grafana, capture
        self.failed_run, self.good_run = runs          # wire events of each run, in order
        self.after_first = after_first                 # request counts of each fake after run 1


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifecycle")
    pd, slack, grafana = FakePagerDuty(routing_key=ROUTING_KEY), FakeSlack(), FakeGrafana(token=GRAFANA_TOKEN, org_id=3)
    capture = FakeWebhook()   # records the wire events, to compare with what the sinks got
    token, token_hash = token_pair()
    plugins = instances(pd, slack, grafana)
    plugins["capture"] = {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"),
                          "allow_http": [capture.url], "config": {"url": capture.url + "/events"}}
    (tmp / "host").mkdir()
    host = Host(tmp / "host", {TENANT: token_hash}, plugins).start()
    try:
        total = 0
        # Run 1: web2 fails "Migrate the database", cache1 is unreachable.
        r = deploy_run(run_playbook, host, token, tmp / "run1", fail_hosts=("web2",), cache_unreachable=True,
                       record=tmp / "run1.record")
        assert r.returncode == 4, r.stdout + r.stderr  # 4: some hosts were unreachable
        total += len((tmp / "run1.record").read_text().split())
        wait_settled(host, TENANT, SINKS + ["capture"], total)
        after_first = {"pd": len(pd.events), "slack": len(slack.messages), "grafana": len(grafana.annotations)}
        # Run 2: the same playbook succeeds on every host.
        r = deploy_run(run_playbook, host, token, tmp / "run2", record=tmp / "run2.record")
        assert r.returncode == 0, r.stdout + r.stderr
        total += len((tmp / "run2.record").read_text().split())
        wait_settled(host, TENANT, SINKS + ["capture"], total)
        runs = list(by_run(capture.events()).values())
        assert len(runs) == 2, [len(x) for x in runs]
        runs.sort(key=lambda evs: created_ms(evs[0]))
        yield Lifecycle(host, pd, slack, grafana, capture, runs, after_first)
    finally:
        host.kill(signal.SIGTERM)
        for f in (pd, slack, grafana, capture):
            f.stop()


def test_the_runs_are_what_the_playbook_did(lifecycle):
    failed = stats_of(lifecycle.failed_run)
    assert failed["failures"] == {"web2": 1} and failed["dark"] == {"cache1": 1}, failed
    good = stats_of(lifecycle.good_run)
    assert not good["failures"] and not good["dark"] and set(good["processed"]) == {"web1", "web2", "db1", "cache1"}
    assert {e["event_data"].get("playbook") for e in lifecycle.failed_run + lifecycle.good_run} == {"deploy.yml"}
    # Every sink handled every event of both runs, none dead-lettered.
    text = lifecycle.host.metrics()
    n = len(lifecycle.failed_run) + len(lifecycle.good_run)
    for p in SINKS:
        assert delivery_counts(text, p).get("ok") == n, (p, delivery_counts(text, p))
        assert not delivery_counts(text, p).get("dead"), p


def test_pagerduty_triggers_on_the_failed_run_and_resolves_on_the_next_good_one(lifecycle):
    pd = lifecycle.pd
    assert not pd.errors, pd.errors
    run_key = "herald:ops:deploy.yml"
    first_run = pd.events[:lifecycle.after_first["pd"]]
    second_run = pd.events[lifecycle.after_first["pd"]:]
    run_id = lifecycle.failed_run[0]["run_id"]

    # Run-granularity instance: one incident per playbook, triggered (updated) at each failure of
    # run 1: cache1 is unreachable at the first task, web2 fails the second.
    triggers = [e for e in first_run if e["event_action"] == "trigger" and e["dedup_key"] == run_key]
    assert len(triggers) == 2, triggers
    cache1, web2 = triggers
    assert cache1["payload"]["severity"] == "critical" and cache1["payload"]["class"] == "unreachable"
    assert cache1["payload"]["summary"].startswith("Ansible deploy.yml: task 'Render the configuration' unreachable on cache1: ")
    assert [f["host"] for f in cache1["payload"]["custom_details"]["failures"]] == ["cache1"]
    assert cache1["payload"]["custom_details"]["failures"][0]["unreachable"] is True
    assert web2["payload"]["summary"] == \
        "Ansible deploy.yml: task 'Migrate the database' failed on web2: migration 42 failed on web2"
    # The incident keeps the worst severity of its failures (unreachable: critical).
    assert web2["payload"]["severity"] == "critical"
    assert web2["payload"]["source"] == "ci-controller" and web2["payload"]["group"] == "deploy.yml"
    assert web2["links"] == [{"href": f"https://herald.example.com/runs/{run_id}", "text": "Herald run"}]
    details = web2["payload"]["custom_details"]
    assert details["tenant"] == "ops" and details["playbook"] == "deploy.yml" and details["run_id"] == run_id
    assert [f["host"] for f in details["failures"]] == ["cache1", "web2"]
    assert details["failures"][1] == {"host": "web2", "task": "Migrate the database",
                                      "action": "ansible.builtin.fail", "play": "Deploy the service",
                                      "message": "migration 42 failed on web2", "unreachable": False}
    assert all(len(e["payload"]["summary"]) <= 1024 for e in triggers)
    # The trigger's timestamp is the failure event's.
    failed_event = next(e for e in lifecycle.failed_run if e["event"] == "runner_on_failed")
    assert web2["payload"]["timestamp"].startswith(failed_event["created"][:19])

    assert not [e for e in first_run if e["event_action"] == "resolve"]
    # Run 2 succeeded: exactly one resolve per open incident, nothing triggered.
    assert not [e for e in second_run if e["event_action"] == "trigger"]
    resolves = sorted(e["dedup_key"] for e in second_run if e["event_action"] == "resolve")
    assert resolves == sorted([run_key, run_key + ":web2", run_key + ":cache1"])
    assert pd.incidents == {run_key: "resolved", run_key + ":web2": "resolved", run_key + ":cache1": "resolved"}
    assert all(e["routing_key"] == ROUTING_KEY for e in pd.events)

    # Host-granularity instance: one incident per host, its own severity for task failures.
    per_host = {e["dedup_key"]: e for e in first_run if e["event_action"] == "trigger" and e["dedup_key"] != run_key}
    assert set(per_host) == {run_key + ":web2", run_key + ":cache1"}
    assert per_host[run_key + ":web2"]["payload"]["severity"] == "warning"   # severity_failed
    assert per_host[run_key + ":cache1"]["payload"]["severity"] == "critical"
    assert per_host[run_key + ":web2"]["payload"]["custom_details"]["host"] == "web2"
    assert [f["host"] for f in per_host[run_key + ":cache1"]["payload"]["custom_details"]["failures"]] == ["cache1"]

    # A change event at the end of each run (only the run-granularity instance asks for them).
    assert len(pd.change_events) == 2
    c1, c2 = pd.change_events
    assert c1["payload"]["custom_details"]["status"] == "failed"
    assert sorted(c1["payload"]["custom_details"]["failed_hosts"]) == ["cache1", "web2"]
    assert c2["payload"]["custom_details"]["status"] == "successful"
    assert c2["payload"]["custom_details"]["changed_hosts"] == ["web1"]
    assert c2["payload"]["summary"] == "Ansible deploy.yml successful: 4 host(s), 1 changed (web1)"


def test_slack_gets_a_message_per_failure_and_a_summary_per_run(lifecycle):
    slack = lifecycle.slack
    assert not slack.errors, slack.errors
    first = slack.messages[:lifecycle.after_first["slack"]]
    second = slack.messages[lifecycle.after_first["slack"]:]
    assert all(m.get("channel") == "#deploys" and m.get("username") == "Herald" for m in slack.messages)
    assert all(isinstance(m.get("blocks"), list) and m["text"] for m in slack.messages)

    # Run 1: one message per failed or unreachable host, then the failed run's summary.
    assert len(first) == 3, [m["text"] for m in first]
    cache1, web2, summary = first
    assert web2["text"] == "<!here> :x: deploy.yml: task 'Migrate the database' failed on web2: migration 42 failed on web2"
    assert cache1["text"].startswith("<!here> :x: deploy.yml: task 'Render the configuration' unreachable on cache1: ")
    blocks = json.dumps(web2["blocks"])
    assert "*Host*\\nweb2" in blocks and "ansible.builtin.fail" in blocks and "Deploy the service" in blocks

    stats = stats_of(lifecycle.failed_run)
    def total(key):
        return sum(stats[key].values())
    # The text is the default `summary_text` template: the recap's totals, then each failed host
    # with its failed task and message (read by the host from the journal), then set_stats.
    assert summary["text"].startswith(
        f"<!here> :red_circle: deploy.yml failed in ")
    lines = summary["text"].splitlines()
    assert lines[0].endswith(f": 4 host(s), ok={total('ok')} changed={total('changed')} failed=1 unreachable=1 "
                             f"skipped={total('skipped')}"), summary["text"]
    assert lines[1].startswith("• cache1 unreachable: task 'Render the configuration': "), summary["text"]
    assert lines[2] == "• web2 failed: task 'Migrate the database': migration 42 failed on web2", summary["text"]
    assert lines[3] == 'stats: canary=true healthy_hosts=3 release="2.0.1"', summary["text"]
    header = summary["blocks"][0]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "deploy.yml failed", "emoji": True}}
    sections = [b["text"]["text"] for b in summary["blocks"] if b["type"] == "section" and "text" in b]
    table = next(s for s in sections if s.startswith("```host"))
    # The per-host table holds the PLAY RECAP numbers of every host.
    for h in ["web1", "web2", "db1", "cache1"]:
        row = next(line for line in table.splitlines() if line.startswith(h + " "))
        assert row.split()[1:] == [str(stats[k].get(h, 0)) for k in ("ok", "changed", "failures", "dark", "skipped")], row
    failures = next(s for s in sections if s.startswith("*Failures*"))
    assert "`web2` failed *Migrate the database*: migration 42 failed on web2" in failures
    assert "`cache1` unreachable at *Render the configuration*" in failures
    custom = next(s for s in sections if s.startswith("*Custom stats*"))
    assert "• release: `2.0.1`" in custom and "• healthy_hosts: `3`" in custom and "• canary: `true`" in custom
    fields = next(b["fields"] for b in summary["blocks"] if b["type"] == "section" and "fields" in b)
    assert {"type": "mrkdwn", "text": "*Failed hosts*\ncache1, web2"} in fields

    # Run 2 succeeded: no failure message, the success summary (notify_on_success), no mention.
    assert len(second) == 1, [m["text"] for m in second]
    ok = second[0]
    good = stats_of(lifecycle.good_run)
    assert ok["text"].startswith(":large_green_circle: deploy.yml successful in ")
    assert ok["text"].splitlines()[0].endswith(
        f": 4 host(s), ok={sum(good['ok'].values())} changed=1 failed=0 unreachable=0 "
        f"skipped={sum(good['skipped'].values())}"), ok["text"]
    assert ok["text"].splitlines()[1].startswith("stats: "), ok["text"]
    # Nothing sent had the webhook's secret path in a log line.
    assert SLACK_PATH not in lifecycle.host.logs()


def test_grafana_regions_span_each_run(lifecycle):
    grafana = lifecycle.grafana
    assert not grafana.errors, grafana.errors
    regions = [a for a in grafana.annotations if "timeEnd" in a]
    points = [a for a in grafana.annotations if "timeEnd" not in a]
    assert len(regions) == 2 and len(points) == 2, grafana.annotations
    for region, run, status in zip(regions, [lifecycle.failed_run, lifecycle.good_run], ["failed", "successful"]):
        start = next(e for e in run if e["event"] == "playbook_on_start")
        end = next(e for e in run if e["event"] == "playbook_on_stats")
        # The region goes from the playbook's first event to its last, to the millisecond.
        assert start is run[0] and end is run[-1]
        assert region["time"] == created_ms(start), (region, start["created"])
        assert region["timeEnd"] == created_ms(end), (region, end["created"])
        assert region["timeEnd"] > region["time"]
        assert region["tags"] == ["ansible", "test", "playbook:deploy.yml", f"status:{status}"]
        assert region["dashboardUID"] == "ansible-runs" and region["panelId"] == 2
        assert start["run_id"] in region["text"]
    # The default `run_text` names each failed host with its failed task and message.
    assert regions[0]["text"].startswith("Ansible deploy.yml failed: 4 host(s), 1 changed, 2 failed "
                                         "(cache1: 'Render the configuration' "), regions[0]["text"]
    assert "; web2: 'Migrate the database' migration 42 failed on web2). Run " in regions[0]["text"], regions[0]["text"]
    assert regions[1]["text"].startswith("Ansible deploy.yml successful: 4 host(s), 1 changed, 0 failed. Run ")
    # Point annotations at each failure (failure_annotations), at the failure's time.
    failed = next(e for e in lifecycle.failed_run if e["event"] == "runner_on_failed")
    unreachable = next(e for e in lifecycle.failed_run if e["event"] == "runner_on_unreachable")
    by_host = {next(t for t in p["tags"] if t.startswith("host:")): p for p in points}
    assert by_host["host:web2"]["time"] == created_ms(failed)
    assert "status:failed" in by_host["host:web2"]["tags"]
    assert by_host["host:cache1"]["time"] == created_ms(unreachable)
    assert "status:unreachable" in by_host["host:cache1"]["tags"]
    # Bearer token and organisation on every request; Grafana's ids were read (logged).
    assert all(r.header("Authorization") == f"Bearer {GRAFANA_TOKEN}" and r.header("X-Grafana-Org-Id") == "3"
               for r in grafana.requests)


# -- retry classification ----------------------------------------------------------------------

def replay_host(tmp: Path, pd, slack, grafana):
    token, token_hash = token_pair()
    plugins = instances(pd, slack, grafana)
    del plugins["pd-hosts"]
    tmp.mkdir()
    return Host(tmp, {TENANT: token_hash}, plugins).start(), token


def replay(host, token, events) -> None:
    status, body = host.post(json.dumps(events).encode(), token)
    assert status == 202 and body["accepted"] == len(events), body


def first_and_retries(fake, first_status):
    """The first request (answered `first_status`) and later requests with the same body."""
    first = fake.requests[0]
    assert first.status == first_status, (first.status, first.body[:200])
    return first, [r for r in fake.requests[1:] if r.body == first.body]


@pytest.mark.parametrize("status", [429, 503, 400], ids=["429-retry-after", "5xx-backoff", "4xx-dead-letter"])
def test_each_status_is_classified_retryable_or_permanent(lifecycle, tmp_path, status):
    """The failed run's events, replayed into a fresh host whose three sinks answer `status` to
    their first request: 429 is retried no earlier than Retry-After, 5xx is retried (backoff),
    4xx (400 from PagerDuty and Slack, 403 from Grafana) is dead-lettered at once and counted."""
    pd, slack, grafana = FakePagerDuty(routing_key=ROUTING_KEY), FakeSlack(), FakeGrafana(token=GRAFANA_TOKEN, org_id=3)
    fakes = {"pd": pd, "slack": slack, "grafana": grafana}
    if status == 429:
        for f in fakes.values():
            f.respond_next(429, body="rate limited", headers={"Retry-After": "2"})
    elif status == 503:
        for f in fakes.values():
            f.respond_next(503, body="upstream unavailable", count=2)
    else:
        pd.respond_next(400, body={"status": "invalid event", "message": "Event object is invalid"})
        slack.respond_next(400, body="invalid_payload")
        grafana.respond_next(403, body={"message": "Permissions needed: annotations:create"})
    host, token = replay_host(tmp_path / "host", pd, slack, grafana)
    try:
        events = lifecycle.failed_run
        replay(host, token, events)
        text = wait_settled(host, TENANT, list(fakes), len(events), timeout=60)
        for name, fake in fakes.items():
            counts = delivery_counts(text, name)
            first, again = first_and_retries(fake, 403 if (status, name) == (400, "grafana") else status)
            if status == 429:
                assert len(again) == 1 and again[0].status < 300, (name, [r.status for r in again])
                waited = again[0].at - first.at
                assert waited >= 2.0 - 0.02, f"{name} retried {waited:.2f}s after a 429 with Retry-After: 2"
                assert counts == {"ok": len(events), "retry": 1}, (name, counts)
            elif status == 503:
                assert [r.status for r in again] == [503, again[-1].status] and again[-1].status < 300, \
                    (name, [r.status for r in again])
                # Backoff from 100 ms, not a long wait: no Retry-After was given.
                assert again[-1].at - first.at < 2.0
                assert counts == {"ok": len(events), "retry": 2}, (name, counts)
            else:
                assert again == [], f"{name}: a {status} was retried"
                assert counts == {"ok": len(events) - 1, "dead": 1}, (name, counts)
                assert sample(text, "herald_deliveries_total", tenant=TENANT, plugin=name, outcome="dead") == 1
            assert not fake.errors, fake.errors
        if status == 400:
            logs = host.logs()
            assert re.search(r"dead-lettered.*permanent failure: HTTP 400 from http://127\.0\.0\.1:%d" % slack.port, logs)
            assert re.search(r"dead-lettered.*HTTP 403 from http://127\.0\.0\.1:%d" % grafana.port, logs)
            assert SLACK_PATH not in logs
        # What the retried requests carried was delivered in the end: the incident is open, the
        # failed-run summary and the region are there (after a 4xx only the refused one is lost).
        assert pd.incidents.get("herald:ops:deploy.yml") == "triggered"
        assert any(m["text"].startswith("<!here> :red_circle: deploy.yml failed") for m in slack.messages)
        assert [a["tags"][-1] for a in grafana.annotations if "timeEnd" in a] == ["status:failed"]
    finally:
        host.kill(signal.SIGTERM)
        for f in fakes.values():
            f.stop()


# -- the sandbox -------------------------------------------------------------------------------

class Listener:
    """A UDP and a TCP socket on 127.0.0.1 that should hear nothing."""

    def __init__(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.tcp.setblocking(False)

    def address(self, kind: str) -> str:
        return "127.0.0.1:%d" % (self.udp if kind == "udp" else self.tcp).getsockname()[1]

    def heard(self) -> list[str]:
        got = []
        for what, call in (("udp datagram", lambda: self.udp.recvfrom(65535)), ("tcp connection", self.tcp.accept)):
            try:
                call()
                got.append(what)
            except BlockingIOError:
                pass
        return got

    def close(self):
        self.udp.close()
        self.tcp.close()


def key_line(config_text: str, table: str, key: str) -> int:
    """The 1-based line of `key = ...` in `[table]` of a generated config."""
    lines = config_text.splitlines()
    start = lines.index(f"[{table}]")
    return next(i + 1 for i in range(start + 1, len(lines)) if lines[i].startswith(f"{key} = "))


def test_a_plugin_granted_no_destination_is_refused_at_check_and_the_others_still_deliver(lifecycle, tmp_path):
    """Every shipped plugin asks the host (herald:grants/check) whether its destination keys are
    granted while it configures: an ungranted destination fails `herald check` and the load at
    that key's line, instead of dead-lettering every event."""
    pd, slack, grafana = FakePagerDuty(routing_key=ROUTING_KEY), FakeSlack(), FakeGrafana(token=GRAFANA_TOKEN, org_id=3)
    quiet = Listener()
    granted = instances(pd, slack, grafana)
    del granted["pd-hosts"]
    granted["slack"]["config"]["username"] = "granted"
    blocked = {
        # The same sinks, configured to reach them but granted nothing (or something else).
        "slack-ungranted": dict(granted["slack"], allow_http=[],
                                config=dict(granted["slack"]["config"], username="ungranted")),
        "grafana-elsewhere": dict(granted["grafana"], allow_http=["http://127.0.0.1:1"],
                                  config=dict(granted["grafana"]["config"], tags=["ungranted"])),
        "pd-elsewhere": dict(granted["pd"], allow_http=[pd.url + "/v2/enqueue"]),
        "syslog-udp-ungranted": {"tenant": TENANT, "component": str(PLUGIN_DIR / "syslog.wasm"), "retry": FAST_RETRY,
                                 "config": {"address": quiet.address("udp")}},
        "syslog-tcp-ungranted": {"tenant": TENANT, "component": str(PLUGIN_DIR / "syslog.wasm"), "retry": FAST_RETRY,
                                 "allow_sockets": ["127.0.0.1:9"],
                                 "config": {"address": quiet.address("tcp"), "transport": "tcp"}},
    }
    token, token_hash = token_pair()
    (tmp_path / "check").mkdir()
    checked = Host(tmp_path / "check", {TENANT: token_hash}, {**granted, **blocked})
    r = subprocess.run([str(HERALD_BIN), "check", "--config", str(checked.config_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    text = checked.config_path.read_text()
    for name, key, why in [("slack-ungranted", "webhook_url", r"is not in allow_http \(it is empty\)"),
                           ("grafana-elsewhere", "url", r"is not in allow_http \(it lists http://127\.0\.0\.1:1\)"),
                           ("pd-elsewhere", "change_events_url", r"the URL's path is not under"),
                           ("syslog-udp-ungranted", "address", r"is not in allow_sockets \(it is empty\)"),
                           ("syslog-tcp-ungranted", "address", r"is not in allow_sockets \(it lists 127\.0\.0\.1:9\)")]:
        line = key_line(text, f"plugins.{name}.config", key)
        assert re.search(rf"herald\.toml:{line}:1: plugins\.{re.escape(name)}\.config\.{key}: "
                         rf"plugin refused its configuration: [^\n]*{why}", r.stderr), (name, r.stderr)
    assert "5 problem(s) found" in r.stderr, r.stderr
    # Slack's webhook path is a secret: the reason names only the origin.
    assert SLACK_PATH not in r.stderr
    (tmp_path / "host").mkdir()
    host = Host(tmp_path / "host", {TENANT: token_hash}, granted).start()
    try:
        events = lifecycle.failed_run
        replay(host, token, events)
        text = wait_settled(host, TENANT, list(granted), len(events), timeout=60)
        assert quiet.heard() == []
        assert all(m.get("username") == "granted" for m in slack.messages) and len(slack.messages) == 3
        assert all("ungranted" not in a["tags"] for a in grafana.annotations) and len(grafana.annotations) == 3
        for name in granted:
            assert delivery_counts(text, name) == {"ok": len(events)}, (name, delivery_counts(text, name))
        assert pd.incidents == {"herald:ops:deploy.yml": "triggered"}
        for f in (pd, slack, grafana):
            assert not f.errors, f.errors
    finally:
        host.kill(signal.SIGTERM)
        quiet.close()
        for f in (pd, slack, grafana):
            f.stop()
