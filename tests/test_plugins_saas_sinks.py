"""Issue 22: the teams, splunk_hec, datadog and otel sinks through the real host, against the strict
fakes of plugins/testing/fakes_saas.py (documented wire format checked; 429 with Retry-After, 5xx,
4xx on demand).

The module runs tests/support/playbooks/deploy.yml twice with Herald's callback and a real
ansible-playbook: first failing (web2 fails "Migrate the database", cache1 is unreachable), then
succeeding. Each sink test reads what its fake got from those runs; the retry tests replay the
failed run's recorded events into a fresh host whose fakes misbehave.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import re
import subprocess

from conftest import HERALD_BIN, PLUGIN_DIR, Host, run_playbook, token_pair

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import (  # noqa: E402
    ROOT, ROUTING_KEY, FakePagerDuty, FakeWebhook, by_run, created_ms, delivery_counts, deploy_run, stats_of, wait_settled)

sys.path.insert(0, str(ROOT / "plugins" / "testing"))
from fakes_saas import FakeDatadog, FakeOtlp, FakeSplunkHec, FakeTeams, _attrs  # noqa: E402

TENANT = "ops"
FAST_RETRY = {"initial_ms": 100, "max_ms": 1000, "max_attempts": 8}
RUN_URL = "https://herald.example.com/runs/{run_id}"
CHANNEL = "5b0e7c9a-1f2d-4c3b-8a7e-6d5c4b3a2f10"
LABELS = "env=ci,Owner=Web Ops"
OTLP_KEY = "otlp-s3cr3t-0123456789"


class Fakes:
    """One fake per SaaS API."""

    def __init__(self):
        self.teams = FakeTeams()
        self.splunk = FakeSplunkHec(require_channel=True)
        self.datadog = FakeDatadog()
        self.otlp = FakeOtlp()

    def all(self) -> dict:
        return {"teams": self.teams, "splunk": self.splunk, "datadog": self.datadog, "otel": self.otlp}

    def stop(self):
        for f in self.all().values():
            f.stop()


def instances(f: Fakes) -> dict[str, dict]:
    """One instance of each sink, each granted exactly its fake."""
    return {
        "teams": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "teams.wasm"), "allow_http": [f.teams.url],
            "retry": FAST_RETRY,
            "config": {"webhook_url": f.teams.hook_url, "notify_on_success": True, "run_url": RUN_URL},
        },
        # A user's templates: a title of their own and a whole card of their own.
        "teams-custom": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "teams.wasm"), "allow_http": [f.teams.url],
            "retry": FAST_RETRY,
            "config": {"webhook_url": f.teams.hook_url, "failure_messages": False},
            "templates": {
                "summary_card": '{"type": "AdaptiveCard", "version": "1.5", "body": ['
                                '{"type": "TextBlock", "text": {{ ("custom: " ~ run.playbook ~ " " ~ run.status) | tojson }}},'
                                '{"type": "FactSet", "facts": [{% for h in summary.failed_hosts %}'
                                '{"title": {{ h.host | tojson }}, "value": {{ (h.tasks | map(attribute="task") | join(", ")) | tojson }}}'
                                '{% if not loop.last %},{% endif %}{% endfor %}]}]}',
            },
        },
        "splunk": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "splunk_hec.wasm"), "allow_http": [f.splunk.url],
            "retry": FAST_RETRY,
            "config": {"url": f.splunk.url, "token": f.splunk.token, "channel": CHANNEL, "index": "ansible",
                       "use_target_host": True, "batch_max_events": 10, "fields": {"env": "ci"}},
        },
        # Failures only, one per request, the event's text from a template.
        "splunk-text": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "splunk_hec.wasm"), "allow_http": [f.splunk.url],
            "retry": FAST_RETRY,
            "config": {"url": f.splunk.url + "/services/collector", "token": f.splunk.token, "channel": CHANNEL,
                       "sourcetype": "ansible:text", "batch_max_events": 1,
                       "kinds": ["runner_on_failed", "runner_on_unreachable"]},
            "templates": {"event": "{{ event.host }} {{ event.status }}: {{ event.task }}: {{ event.message }}"},
        },
        "datadog": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "datadog.wasm"), "allow_http": [f.datadog.url],
            "retry": FAST_RETRY,
            "config": {"api_key": f.datadog.api_key, "api_url": f.datadog.url, "tags": ["team:platform"],
                       "run_url": RUN_URL},
        },
        "otel": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "otel.wasm"), "allow_http": [f.otlp.url],
            "retry": FAST_RETRY,
            "config": {"endpoint": f.otlp.url, "headers": {"x-otlp-key": OTLP_KEY},
                       "resource_attributes": {"team": "platform"}},
        },
    }


SINKS = ["teams", "teams-custom", "splunk", "splunk-text", "datadog", "otel"]


class Lifecycle:
    def __init__(self, host, fakes, runs, after_first):
        self.host, self.fakes = host, fakes
        self.failed_run, self.good_run = runs
        self.after_first = after_first          # request counts of each fake after run 1


def counts(fakes: Fakes) -> dict[str, int]:
    return {"teams": len(fakes.teams.cards), "splunk": len(fakes.splunk.batches)}


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saas")
    fakes = Fakes()
    capture = FakeWebhook()
    token, token_hash = token_pair()
    plugins = instances(fakes)
    plugins["capture"] = {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"),
                          "allow_http": [capture.url], "config": {"url": capture.url + "/events"}}
    (tmp / "host").mkdir()
    # Herald exports its own spans to the same collector as the otel sink: they must join.
    host = Host(tmp / "host", {TENANT: token_hash}, plugins,
                extra=f'[telemetry]\notlp_endpoint = "{fakes.otlp.url}"\n').start()
    # Run labels (the callback's HERALD_LABELS), for the sinks that tag with them.
    os.environ["HERALD_LABELS"] = LABELS
    try:
        r = deploy_run(run_playbook, host, token, tmp / "run1", fail_hosts=("web2",), cache_unreachable=True,
                       record=tmp / "run1.record")
        assert r.returncode == 4, r.stdout + r.stderr
        total = len((tmp / "run1.record").read_text().split())
        wait_settled(host, TENANT, SINKS + ["capture"], total)
        after_first = counts(fakes)
        r = deploy_run(run_playbook, host, token, tmp / "run2", record=tmp / "run2.record")
        assert r.returncode == 0, r.stdout + r.stderr
        total += len((tmp / "run2.record").read_text().split())
        wait_settled(host, TENANT, SINKS + ["capture"], total)
        runs = sorted(by_run(capture.events()).values(), key=lambda evs: created_ms(evs[0]))
        assert len(runs) == 2, [len(x) for x in runs]
        yield Lifecycle(host, fakes, runs, after_first)
    finally:
        del os.environ["HERALD_LABELS"]
        host.kill(signal.SIGTERM)
        fakes.stop()
        capture.stop()


def test_every_sink_delivered_every_event(lifecycle):
    text = lifecycle.host.metrics()
    n = len(lifecycle.failed_run) + len(lifecycle.good_run)
    for p in SINKS:
        assert delivery_counts(text, p) == {"ok": n}, (p, delivery_counts(text, p))
    for name, fake in lifecycle.fakes.all().items():
        assert not fake.errors, (name, fake.errors)


# -- teams -------------------------------------------------------------------------------------

def facts_of(card: dict) -> dict[str, str]:
    return {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}


def test_teams_posts_a_card_per_failure_and_per_run(lifecycle):
    teams = lifecycle.fakes.teams
    ours = [c for c in teams.cards if not c["body"][0]["text"].startswith("custom: ")]
    custom = [c for c in teams.cards if c["body"][0]["text"].startswith("custom: ")]
    n1 = lifecycle.after_first["teams"]
    first = [c for c in teams.cards[:n1] if c in ours]
    second = [c for c in teams.cards[n1:] if c in ours]
    run_id = lifecycle.failed_run[0]["run_id"]

    # Run 1: a card per failed or unreachable host (cache1 fails first), then the run's summary.
    assert [c["body"][0]["text"] for c in first] == [
        "deploy.yml: task 'Render the configuration' unreachable on cache1",
        "deploy.yml: task 'Migrate the database' failed on web2",
        "deploy.yml failed",
    ]
    cache1, web2, summary = first
    assert web2["body"][0]["color"] == "Attention" and web2["body"][0]["weight"] == "Bolder"
    assert web2["body"][1]["text"] == "migration 42 failed on web2"       # failure_text: the message
    f = facts_of(web2)
    assert (f["Host"], f["Task"], f["Module"], f["Play"], f["Playbook"], f["Run"], f["Tenant"]) == (
        "web2", "Migrate the database", "ansible.builtin.fail", "Deploy the service", "deploy.yml", run_id, TENANT)
    assert web2["actions"] == [{"type": "Action.OpenUrl", "title": "Open run",
                                "url": f"https://herald.example.com/runs/{run_id}"}]
    assert facts_of(cache1)["Host"] == "cache1"

    stats = stats_of(lifecycle.failed_run)
    total = {k: sum(stats[k].values()) for k in ("ok", "changed", "skipped")}
    # summary_text (the default template): totals, then each failed host with its task and message.
    lines = summary["body"][1]["text"].split("\n\n")
    assert lines[0].startswith("4 host(s) in ") and lines[0].endswith(
        f": ok={total['ok']} changed={total['changed']} failed=1 unreachable=1 skipped={total['skipped']}"), lines
    assert lines[1].startswith("- cache1 unreachable: task 'Render the configuration': "), lines
    assert lines[2] == "- web2 failed: task 'Migrate the database': migration 42 failed on web2", lines
    f = facts_of(summary)
    assert f["Status"] == "failed" and f["Hosts"] == "4" and f["Failed hosts"] == "cache1, web2"
    # The PLAY RECAP per host, as the playbook's stats say.
    for h in ("web1", "web2", "db1", "cache1"):
        assert f[h] == (f"ok {stats['ok'].get(h, 0)} · changed {stats['changed'].get(h, 0)} · "
                        f"failed {stats['failures'].get(h, 0)} · unreachable {stats['dark'].get(h, 0)} · "
                        f"skipped {stats['skipped'].get(h, 0)}"), (h, f[h])
    assert f["release"] == "2.0.1" and f["healthy_hosts"] == "3" and f["canary"] == "true"

    # Run 2 succeeded: only the success summary (notify_on_success), coloured Good.
    assert [c["body"][0]["text"] for c in second] == ["deploy.yml successful"]
    assert second[0]["body"][0]["color"] == "Good"

    # The user's summary_card replaced the whole card: failed hosts with their tasks, for the
    # failed run only (that instance has no notify_on_success; failure_messages is off).
    assert len(custom) == 1, custom
    assert custom[0] == {"type": "AdaptiveCard", "version": "1.5", "body": [
        {"type": "TextBlock", "text": "custom: deploy.yml failed"},
        {"type": "FactSet", "facts": [{"title": "cache1", "value": "Render the configuration"},
                                      {"title": "web2", "value": "Migrate the database"}]}]}
    # The webhook's signature is a secret: never in Herald's log.
    assert teams.sig not in lifecycle.host.logs()


# -- splunk_hec --------------------------------------------------------------------------------

def test_splunk_hec_gets_every_event_once_in_batches(lifecycle):
    hec = lifecycle.fakes.splunk
    events = [e for e in hec.events if e["sourcetype"] == "ansible:herald"]
    texts = [e for e in hec.events if e["sourcetype"] == "ansible:text"]
    wire = lifecycle.failed_run + lifecycle.good_run
    # Every event of both runs, once, in order, as Herald's wire event.
    assert [e["fields"]["event_id"] for e in events] == [w["uuid"] for w in wire]
    assert [e["event"] for e in events] == wire
    for e, w in zip(events, wire):
        assert e["time"] == created_ms(w) / 1000, (e["time"], w["created"])
        assert e["index"] == "ansible" and e["source"] == "herald"
        # use_target_host: the managed host of host events, else the controller.
        assert e.get("host") == (w["event_data"].get("host") or w.get("controller")), (e.get("host"), w)
        f = e["fields"]
        assert f["tenant"] == TENANT and f["run_id"] == w["run_id"] and f["playbook"] == "deploy.yml"
        assert f["event_kind"] == w["event"] and f["env"] == "ci"
    failed = next(e for e in events if e["fields"]["event_kind"] == "runner_on_failed")
    assert failed["host"] == "web2" and failed["fields"]["status"] == "failed"
    assert failed["fields"]["ansible_host"] == "web2" and failed["fields"]["task"] == "Migrate the database"
    # Batched: several events per request, at most 10; a batch ends at each failure and at the end
    # of each run (the stats event is the last of its request).
    batches = hec.batches
    assert len(texts) == 2 and sum(batches) == len(events) + len(texts)
    big = [n for n in batches if n > 1]
    assert big and max(batches) <= 10 and len(batches) < len(events) / 3, batches
    ends, pos = [], 0
    for n in batches:
        ends.append(hec.events[pos + n - 1])
        pos += n
    kinds_at_end = [e["fields"]["event_kind"] for e in ends if e["sourcetype"] == "ansible:herald"]
    assert kinds_at_end.count("playbook_on_stats") == 2
    assert "runner_on_failed" in kinds_at_end and "runner_on_unreachable" in kinds_at_end
    # The failures-only instance: its template's text, one event per request.
    cache1, web2 = texts
    assert cache1["event"].startswith("cache1 unreachable: Render the configuration: "), cache1
    assert web2["event"] == "web2 failed: Migrate the database: migration 42 failed on web2"
    assert web2["host"] == lifecycle.failed_run[0]["controller"]          # no use_target_host
    # The token is never logged.
    assert hec.token not in lifecycle.host.logs()


# -- datadog -----------------------------------------------------------------------------------

def test_datadog_gets_events_and_metrics_with_tags(lifecycle):
    dd = lifecycle.fakes.datadog
    run1, run2 = lifecycle.failed_run, lifecycle.good_run
    base_tags = {"playbook:deploy.yml", "tenant:ops", "env:ci", "owner:web_ops", "team:platform"}
    # Events: one per failure as it happens, one per run at its end.
    assert [e["title"] for e in dd.events] == [
        "deploy.yml: Render the configuration unreachable on cache1",
        "deploy.yml: Migrate the database failed on web2",
        "Ansible deploy.yml failed",
        "Ansible deploy.yml successful",
    ], [e["title"] for e in dd.events]
    cache1, web2, end1, end2 = dd.events
    assert all(base_tags <= set(e["tags"]) for e in dd.events), [e["tags"] for e in dd.events]
    assert "status:failed" in web2["tags"] and "status:unreachable" in cache1["tags"]
    assert (web2["host"], web2["alert_type"], web2["source_type_name"]) == ("web2", "error", "ansible")
    failed_event = next(e for e in run1 if e["event"] == "runner_on_failed")
    assert web2["date_happened"] == created_ms(failed_event) // 1000
    assert web2["text"].startswith("migration 42 failed on web2\n\nplay: Deploy the service, "
                                   "module: ansible.builtin.fail, run: " + run1[0]["run_id"]), web2["text"]
    assert web2["text"].endswith("https://herald.example.com/runs/" + run1[0]["run_id"])
    assert {e["aggregation_key"] for e in dd.events} == {"herald:ops:deploy.yml"}
    assert end1["alert_type"] == "error" and end2["alert_type"] == "success"
    assert end1["host"] == run1[0]["controller"]
    lines = end1["text"].splitlines()
    assert lines[0].startswith("4 host(s) in ") and "failed=1 unreachable=1" in lines[0], end1["text"]
    assert lines[1].startswith("cache1 unreachable: Render the configuration: "), end1["text"]
    assert lines[2] == "web2 failed: Migrate the database: migration 42 failed on web2", end1["text"]

    # Metrics, stamped with each run's end.
    def at(run, metric, *tags):
        ts = created_ms(run[-1]) // 1000
        got = [p["value"] for m in dd.series if m["metric"] == metric and set(tags) <= set(m["tags"])
               and base_tags <= set(m["tags"]) for p in m["points"] if p["timestamp"] == ts]
        assert len(got) == 1, (metric, tags, got)
        return got[0]
    stats1, stats2 = stats_of(run1), stats_of(run2)
    assert at(run1, "ansible.playbook.success") == 0 and at(run2, "ansible.playbook.success") == 1
    duration = (created_ms(run1[-1]) - created_ms(run1[0])) / 1000
    assert at(run1, "ansible.playbook.duration", "status:failed") == pytest.approx(duration, abs=0.002)
    assert at(run1, "ansible.task.results", "status:ok") == sum(stats1["ok"].values())
    assert at(run1, "ansible.task.results", "status:failed") == 1
    assert at(run1, "ansible.task.results", "status:unreachable") == 1
    assert at(run2, "ansible.task.results", "status:changed") == sum(stats2["changed"].values())
    assert at(run1, "ansible.hosts", "status:total") == 4 and at(run1, "ansible.hosts", "status:failed") == 1
    for h in ("web1", "web2", "db1", "cache1"):
        assert at(run1, "ansible.host.failed", f"host:{h}") == (1 if h in ("web2", "cache1") else 0), h
        assert at(run1, "ansible.host.tasks", f"host:{h}", "result:ok") == stats1["ok"].get(h, 0), h
    per_host = [m for m in dd.series if m["metric"] == "ansible.host.failed"]
    assert all(m["resources"] == [{"name": t.split(":", 1)[1], "type": "host"}]
               for m in per_host for t in m["tags"] if t.startswith("host:"))
    assert all(m["type"] == 3 for m in dd.series)
    assert dd.api_key not in lifecycle.host.logs()


# -- otel --------------------------------------------------------------------------------------

def test_otel_exports_a_trace_per_run_joined_with_herald_spans_and_its_metrics(lifecycle):
    otlp = lifecycle.fakes.otlp
    ours = [(r, sp) for r, sp in otlp.spans if r.get("service.name") == "ansible"]
    for run, status in ((lifecycle.failed_run, 2), (lifecycle.good_run, 1)):
        trace = run[0]["run_id"].replace("-", "")
        spans = [sp for _, sp in ours if sp.trace_id.hex() == trace]
        roots = [sp for sp in spans if not sp.parent_span_id]
        assert len(roots) == 1, [sp.name for sp in roots]
        root = roots[0]
        assert root.name == "deploy.yml" and root.kind == 2 and root.status.code == status  # SERVER; ERROR/OK
        a = _attrs(root.attributes)
        assert a["ansible.session"] == run[0]["run_id"] and a["herald.tenant"] == TENANT
        assert a["ansible.host.name"] == run[0]["controller"]
        start = next(e for e in run if e["event"] == "playbook_on_start")
        assert root.start_time_unix_nano == created_ms(start) * 1_000_000
        assert root.end_time_unix_nano == created_ms(run[-1]) * 1_000_000
        # A span per task per host: every host result of the run, each under the root.
        results = [e for e in run if e["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_skipped",
                                                    "runner_on_unreachable")]
        children = [sp for sp in spans if sp.parent_span_id]
        assert len(children) == len(results) and all(sp.parent_span_id == root.span_id for sp in children)
        assert len({sp.span_id for sp in spans}) == len(spans)
        got = sorted((_attrs(sp.attributes)["ansible.task.host.name"], sp.name) for sp in children)
        assert got == sorted((e["event_data"]["host"], e["event_data"]["task"]) for e in results)
        for sp in children:
            assert root.start_time_unix_nano <= sp.start_time_unix_nano <= sp.end_time_unix_nano

    # The failed task: ERROR with the message, an exception event, the callback's attributes.
    trace1 = lifecycle.failed_run[0]["run_id"].replace("-", "")
    by_host = {(_attrs(sp.attributes)["ansible.task.host.name"], sp.name): sp for _, sp in ours
               if sp.trace_id.hex() == trace1 and sp.parent_span_id}
    web2 = by_host[("web2", "Migrate the database")]
    assert web2.status.code == 2 and web2.status.message == "migration 42 failed on web2"
    a = _attrs(web2.attributes)
    assert a["ansible.task.name"] == "[web2] Deploy the service: Migrate the database"
    assert a["ansible.task.module"] == "ansible.builtin.fail" and a["ansible.task.host.status"] == "failed"
    assert a["ansible.task.result"] == 0 and a["ansible.task.message"] == "migration 42 failed on web2"
    assert [e.name for e in web2.events] == ["exception"]
    assert _attrs(web2.events[0].attributes)["exception.message"].startswith('message: "migration 42 failed on web2"')
    cache1 = by_host[("cache1", "Render the configuration")]
    assert cache1.status.code == 2 and _attrs(cache1.attributes)["ansible.task.host.status"] == "unreachable"
    skipped = by_host[("web1", "Migrate the database")]
    assert skipped.status.code == 0 and _attrs(skipped.attributes)["ansible.task.host.status"] == "skipped"
    assert all(r["team"] == "platform" for r, _ in ours)

    # Herald's own spans of the run (ingest of the callback's batches) are in the same trace.
    def herald_spans():
        return [sp for r, sp in otlp.spans if r.get("service.name") == "herald" and sp.trace_id.hex() == trace1
                and sp.name == "ingest"]
    from conftest import wait_for
    assert wait_for(herald_spans, timeout=30, what="Herald's ingest spans in the run's trace")

    # Metrics of each run.
    ts = [created_ms(run[-1]) * 1_000_000 for run in (lifecycle.failed_run, lifecycle.good_run)]
    stats1 = stats_of(lifecycle.failed_run)
    def point(name, at, **attrs):
        got = [dp.as_double for r, m in otlp.metrics if r.get("service.name") == "ansible" and m.name == name
               for dp in m.gauge.data_points if dp.time_unix_nano == at
               and all(_attrs(dp.attributes).get(k) == v for k, v in attrs.items())]
        assert len(got) == 1, (name, attrs, got)
        return got[0]
    assert point("ansible.playbook.success", ts[0]) == 0 and point("ansible.playbook.success", ts[1]) == 1
    assert point("ansible.task.results", ts[0], **{"ansible.task.status": "ok"}) == sum(stats1["ok"].values())
    assert point("ansible.task.results", ts[0], **{"ansible.task.status": "unreachable"}) == 1
    assert point("ansible.hosts", ts[0], **{"ansible.host.state": "failed"}) == 1
    assert point("ansible.host.tasks", ts[0], **{"ansible.host.name": "web2", "ansible.task.status": "failed"}) == 1
    duration = (created_ms(lifecycle.failed_run[-1]) - created_ms(lifecycle.failed_run[0])) / 1000
    assert point("ansible.playbook.duration", ts[0], **{"ansible.playbook.status": "failed"}) == \
        pytest.approx(duration, abs=0.002)
    # The header carried the key; the key is not logged.
    plugin_requests = [r for r in otlp.requests if r.header("x-otlp-key")]
    assert plugin_requests and all(r.header("x-otlp-key") == OTLP_KEY for r in plugin_requests)
    assert OTLP_KEY not in lifecycle.host.logs()


# -- pagerduty: per-host incident summaries from a template (issue 21 leftover) -----------------

def test_pagerduty_host_incidents_at_the_end_of_a_run_take_their_summaries_from_a_template(lifecycle, tmp_path):
    """`granularity = "host"` with `trigger_at = "end"`: one incident per failed host when the
    run ends, its summary from the `host_summaries` template (a JSON object host -> summary,
    rendered once for the run), the default or the user's."""
    pd = FakePagerDuty(routing_key=ROUTING_KEY)
    base = {"tenant": TENANT, "component": str(PLUGIN_DIR / "pagerduty.wasm"), "allow_http": [pd.url],
            "retry": FAST_RETRY}
    plugins = {
        "pd-default": dict(base, config={"routing_key": ROUTING_KEY, "events_url": pd.url + "/v2/enqueue",
                                          "granularity": "host", "trigger_at": "end", "source": "default"}),
        "pd-custom": dict(base, config={"routing_key": ROUTING_KEY, "events_url": pd.url + "/v2/enqueue",
                                        "granularity": "host", "trigger_at": "end", "source": "custom"},
                          templates={"host_summaries": "{{ '{' }}{% for h in summary.failed_hosts %}"
                                     "{{ h.host | tojson }}: {{ ('[' ~ tenant ~ '] ' ~ h.host ~ ' down: '"
                                     " ~ (h.tasks | map(attribute='task') | join(', '))) | tojson }}"
                                     "{{ ', ' if not loop.last }}{% endfor %}{{ '}' }}"}),
    }
    token, token_hash = token_pair()
    host = Host(tmp_path, {TENANT: token_hash}, plugins).start()
    try:
        events = lifecycle.failed_run
        replay(host, token, events)
        wait_settled(host, TENANT, list(plugins), len(events), timeout=60)
        assert not pd.errors, pd.errors
        got = {(e["payload"]["source"], e["dedup_key"].rsplit(":", 1)[1]): e["payload"]["summary"]
               for e in pd.events if e["event_action"] == "trigger"}
        assert len(pd.events) == 4, pd.events
        assert got[("default", "web2")] == \
            "Ansible deploy.yml: task 'Migrate the database' failed on web2: migration 42 failed on web2"
        assert got[("default", "cache1")].startswith(
            "Ansible deploy.yml: task 'Render the configuration' unreachable on cache1: "), got
        assert got[("custom", "web2")] == "[ops] web2 down: Migrate the database"
        assert got[("custom", "cache1")] == "[ops] cache1 down: Render the configuration"
    finally:
        host.kill(signal.SIGTERM)
        pd.stop()


# -- retries -----------------------------------------------------------------------------------

def replay_host(tmp: Path, fakes: Fakes, names: list[str]):
    token, token_hash = token_pair()
    plugins = {k: v for k, v in instances(fakes).items() if k in names}
    tmp.mkdir()
    return Host(tmp, {TENANT: token_hash}, plugins).start(), token


def replay(host, token, events) -> None:
    status, body = host.post(json.dumps(events).encode(), token)
    assert status == 202 and body["accepted"] == len(events), body


REFUSALS = {
    "teams": (400, {"error": {"code": "InvalidRequestContent", "message": "The input body for trigger 'manual' of type 'Request' must be of type JSON"}}),
    "splunk": (400, {"text": "Incorrect index", "code": 7, "invalid-event-number": 0}),
    "datadog": (400, {"errors": ["Invalid input: text"]}),
    "otel": (400, "bad protobuf"),
}


@pytest.mark.parametrize("status", [429, 503, 400], ids=["429-retry-after", "5xx-backoff", "4xx-dead-letter"])
def test_each_status_is_retried_or_dead_lettered(lifecycle, tmp_path, status):
    """The failed run's events replayed into a fresh host whose fakes answer `status` to their
    first request: 429 is retried no earlier than its Retry-After, 5xx is retried with backoff,
    4xx is dead-lettered at once."""
    fakes = Fakes()
    names = list(fakes.all())
    for name, fake in fakes.all().items():
        if status == 429:
            fake.respond_next(429, body="rate limited", headers={"Retry-After": "2"})
        elif status == 503:
            fake.respond_next(503, body="upstream unavailable", count=2)
        else:
            code, body = REFUSALS[name]
            fake.respond_next(code, body=body)
    host, token = replay_host(tmp_path / "host", fakes, names)
    try:
        events = lifecycle.failed_run
        replay(host, token, events)
        text = wait_settled(host, TENANT, names, len(events), timeout=60)
        for name, fake in fakes.all().items():
            got = delivery_counts(text, name)
            first = fake.requests[0]
            again = [r for r in fake.requests[1:] if r.body == first.body]
            if status == 429:
                assert first.status == 429 and len(again) == 1 and again[0].status < 300, name
                assert again[0].at - first.at >= 2.0 - 0.02, f"{name} retried before Retry-After"
                assert got == {"ok": len(events), "retry": 1}, (name, got)
            elif status == 503:
                assert [r.status for r in [first] + again] == [503, 503, again[-1].status] and again[-1].status < 300
                assert again[-1].at - first.at < 2.0
                assert got == {"ok": len(events), "retry": 2}, (name, got)
            else:
                assert again == [], f"{name}: a {status} was retried"
                assert got == {"ok": len(events) - 1, "dead": 1}, (name, got)
            assert not fake.errors, (name, fake.errors)
        if status == 400:
            for fake in fakes.all().values():
                assert "HTTP 400 from http://127.0.0.1:%d" % fake.port in host.logs()
        assert fakes.teams.sig not in host.logs()
    finally:
        host.kill(signal.SIGTERM)
        fakes.stop()


# -- configuration -----------------------------------------------------------------------------

def test_an_ungranted_destination_is_refused_at_check_naming_the_key(tmp_path):
    """Each sink asks the host whether its destination is granted while it configures, so
    `herald check` refuses an instance granted something else at its key's line, and the
    secrets of the config do not appear in the message."""
    fakes = Fakes()
    try:
        plugins = {}
        for name, key in (("teams", "webhook_url"), ("splunk", "url"), ("datadog", "api_url"), ("otel", "endpoint")):
            plugins[name] = dict(instances(fakes)[name], allow_http=["http://127.0.0.1:1"])
        plugins["teams-typo"] = dict(instances(fakes)["teams"], config={"webhook_url": fakes.teams.hook_url,
                                                                       "notify_on_sucess": True})
        plugins["splunk-bad-channel"] = dict(instances(fakes)["splunk"],
                                             config=dict(instances(fakes)["splunk"]["config"], channel="ops"))
        _, token_hash = token_pair()
        host = Host(tmp_path, {TENANT: token_hash}, plugins)
        r = subprocess.run([str(HERALD_BIN), "check", "--config", str(host.config_path)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 1, r.stdout + r.stderr
        text = host.config_path.read_text().splitlines()
        def line(table, key):
            start = text.index(f"[plugins.{table}.config]")
            return next(i + 1 for i in range(start + 1, len(text)) if text[i].startswith(f"{key} = "))
        for name, key in (("teams", "webhook_url"), ("splunk", "url"), ("datadog", "api_url"), ("otel", "endpoint")):
            assert re.search(rf"herald\.toml:{line(name, key)}:1: plugins\.{name}\.config\.{key}: plugin refused its "
                             rf"configuration: [^\n]*is not in allow_http \(it lists http://127\.0\.0\.1:1\)", r.stderr), \
                (name, r.stderr)
        assert re.search(r"plugins\.teams-typo\.config\.notify_on_sucess: plugin refused its configuration: "
                         r"unknown field `notify_on_sucess`", r.stderr), r.stderr
        assert re.search(rf"herald\.toml:{line('splunk-bad-channel', 'channel')}:1: plugins\.splunk-bad-channel\."
                         r"config\.channel: [^\n]*`ops` is not a GUID", r.stderr), r.stderr
        for secret in (fakes.teams.sig, fakes.splunk.token, fakes.datadog.api_key, OTLP_KEY):
            assert secret not in r.stderr
    finally:
        fakes.stop()


# -- the fakes themselves ----------------------------------------------------------------------

def post(url, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_teams_fake_enforces_the_card_schema():
    card = {"type": "AdaptiveCard", "version": "1.4",
            "body": [{"type": "TextBlock", "text": "t", "size": "Large", "color": "Good"},
                     {"type": "FactSet", "facts": [{"title": "a", "value": "b"}]}]}
    msg = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                               "contentUrl": None, "content": card}]}
    with FakeTeams() as t:
        assert post(t.hook_url, msg) == (202, b"")
        assert t.cards == [card] and not t.errors
        assert post(t.url + t.hook_path, msg)[0] == 401                   # no signature
        for bad in (dict(card, version="2.0"),
                    dict(card, body=[{"type": "TextBlock", "text": "t", "color": "Red"}]),
                    dict(card, body=[{"type": "FactSet", "facts": [{"title": "a", "value": 1}]}]),
                    dict(card, body=[{"type": "Table"}]),
                    dict(card, actions=[{"type": "Action.OpenUrl", "title": "x", "url": "/relative"}])):
            assert post(t.hook_url, dict(msg, attachments=[dict(msg["attachments"][0], content=bad)]))[0] == 400
        assert post(t.hook_url, dict(msg, type="card"))[0] == 400
        big = dict(card, body=[{"type": "TextBlock", "text": "x" * 30000}])
        assert post(t.hook_url, dict(msg, attachments=[dict(msg["attachments"][0], content=big)]))[0] == 413
        assert len(t.errors) == 8 and len(t.cards) == 1


def test_the_splunk_fake_answers_as_hec_does():
    ev = {"time": 1700000000.5, "host": "web1", "sourcetype": "s", "index": "main", "event": {"a": 1},
          "fields": {"k": "v", "l": ["a", "b"]}}
    auth = {"Authorization": "Splunk 8c1d3a2e-6f4b-4b7e-9a55-2f0c9e1d7b10", "X-Splunk-Request-Channel": CHANNEL}
    with FakeSplunkHec(require_channel=True) as h:
        url = h.url + "/services/collector/event"
        body = (json.dumps(ev) + "\n" + json.dumps(dict(ev, event="text"))).encode()
        assert post(url, body, auth) == (200, b'{"text":"Success","code":0}')
        assert h.batches == [2] and h.events[1]["event"] == "text"
        assert json.loads(post(url, body, {})[1])["code"] == 2
        assert json.loads(post(url, body, dict(auth, Authorization="Splunk nope"))[1])["code"] == 4
        assert json.loads(post(url, body, {"Authorization": auth["Authorization"]})[1])["code"] == 10
        assert json.loads(post(url, body, dict(auth, **{"X-Splunk-Request-Channel": "x"}))[1])["code"] == 11
        for bad, code in ((dict(ev, index="secret"), 7), (dict(ev, event=""), 13), ({"time": 1}, 12),
                          (dict(ev, fields={"n": 1}), 6), (dict(ev, time="now"), 6), (dict(ev, extra=1), 6)):
            status, answer = post(url, json.dumps(ev).encode() + json.dumps(bad).encode(), auth)
            assert status == 400 and json.loads(answer)["code"] == code, (bad, answer)
            if code != 12 and code != 13:
                assert json.loads(answer)["invalid-event-number"] == 1
        assert h.batches == [2]


def test_the_datadog_fake_checks_key_events_and_series():
    with FakeDatadog() as dd:
        key = {"DD-API-KEY": dd.api_key}
        ev = {"title": "t", "text": "x", "alert_type": "error", "date_happened": int(time.time()), "tags": ["a:b"]}
        status, body = post(dd.url + "/api/v1/events", ev, key)
        assert status == 202 and json.loads(body)["status"] == "ok"
        assert post(dd.url + "/api/v1/events", ev)[0] == 403
        for bad in (dict(ev, text="x" * 4001), dict(ev, alert_type="fatal"), dict(ev, tags=["A b"]),
                    dict(ev, date_happened=int(time.time()) - 86400), dict(ev, titel="x"), {"text": "no title"}):
            assert post(dd.url + "/api/v1/events", bad, key)[0] == 400, bad
        point = {"metric": "ansible.x", "type": 3, "points": [{"timestamp": int(time.time()), "value": 1.5}],
                 "tags": ["a:b"], "resources": [{"name": "web1", "type": "host"}]}
        assert post(dd.url + "/api/v2/series", {"series": [point]}, key) == (202, b'{"errors":[]}')
        assert dd.value("ansible.x", "a:b") == [1.5]
        for bad in (dict(point, type=7), dict(point, points=[{"timestamp": int(time.time()) - 7200, "value": 1}]),
                    dict(point, metric="1x"), dict(point, points=[])):
            assert post(dd.url + "/api/v2/series", {"series": [bad]}, key)[0] == 400, bad
        assert len(dd.events) == 1 and len(dd.series) == 1


def test_the_otlp_fake_decodes_with_the_official_definitions():
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "t"
    sp = rs.scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "s"
    sp.start_time_unix_nano, sp.end_time_unix_nano, sp.kind = 1, 2, trace_pb2.Span.SPAN_KIND_INTERNAL
    good = req.SerializeToString()
    proto = {"Content-Type": "application/x-protobuf"}
    with FakeOtlp() as o:
        assert post(o.url + "/v1/traces", good, proto)[0] == 200 and len(o.spans) == 1
        assert post(o.url + "/v1/traces", good)[0] == 415                       # JSON content type
        assert post(o.url + "/v1/traces", b"\xff\xff\xff", proto)[0] == 400     # not protobuf
        sp.trace_id = b"\x00" * 16
        assert post(o.url + "/v1/traces", req.SerializeToString(), proto)[0] == 400
        sp.trace_id, sp.start_time_unix_nano = b"\x01" * 16, 3
        assert post(o.url + "/v1/traces", req.SerializeToString(), proto)[0] == 400
        assert len(o.spans) == 1 and len(o.errors) == 4
