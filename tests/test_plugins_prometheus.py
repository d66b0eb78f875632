"""Issue 4: the prometheus plugin through the real host, with a real Prometheus server scraping
herald's /metrics and a real Pushgateway receiving the end-of-run pushes (Debian packages
`prometheus` and `prometheus-pushgateway`, started here on free loopback ports).

Two runs of tests/support/playbooks/deploy.yml with Herald's callback: a failed one (web2 fails
a task, cache1 is unreachable), then a successful one. PromQL queries through Prometheus's HTTP
API must give the series values those runs imply, and the Pushgateway must serve the group
the plugin pushed at the end of each run.
"""
from __future__ import annotations

import collections
import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import PLUGIN_DIR, Host, run_playbook, token_pair

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import (  # noqa: E402
    FakeWebhook, Prometheus, Pushgateway, by_run, created_ms, deploy_run, env_skip_reason, poll, sample,
    stats_of, wait_settled)

TENANT = "ops"
PLUGIN = "prom"


def result_status(e: dict) -> str | None:
    """The status the plugin counts for a host result event (None for other events)."""
    d = e["event_data"]
    return {
        "runner_on_ok": "changed" if (d.get("res") or {}).get("changed") else "ok",
        "runner_on_failed": "ignored" if d.get("ignore_errors") else "failed",
        "runner_on_unreachable": "unreachable",
        "runner_on_skipped": "skipped",
    }.get(e["event"])


class Setup:
    pass


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    reason = env_skip_reason()
    if reason:
        if os.environ.get("HERALD_SKIP_DEBIAN_SERVERS"):
            pytest.skip(reason)
        pytest.fail(reason + "; .ci/run installs them (set HERALD_SKIP_DEBIAN_SERVERS=1 to skip instead)")
    tmp = tmp_path_factory.mktemp("prometheus")
    s = Setup()
    s.pushgateway = Pushgateway(tmp / "pushgateway")
    s.capture = FakeWebhook()
    s.token, token_hash = token_pair()
    (tmp / "host").mkdir()
    s.host = Host(tmp / "host", {TENANT: token_hash}, {
        PLUGIN: {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "prometheus.wasm"),
            "allow_http": [s.pushgateway.url],
            "retry": {"initial_ms": 100, "max_ms": 1000, "max_attempts": 20},
            "config": {"pushgateway_url": s.pushgateway.url, "job": "ansible", "custom_stats_gauges": True,
                       "labels": {"env": "test"}},
        },
        "capture": {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"),
                    "allow_http": [s.capture.url], "config": {"url": s.capture.url + "/events"}},
    })
    # Prometheus scrapes herald (job "herald") and the Pushgateway (honor_labels, as documented
    # for it), every second.
    s.prometheus = Prometheus(tmp / "prometheus", [f"127.0.0.1:{s.host.port}"],
                              pushgateway=f"127.0.0.1:{s.pushgateway.port}")
    s.tmp = tmp
    try:
        s.host.start()
        s.pushgateway.wait_ready()
        s.prometheus.wait_ready()
        poll(s.prometheus.targets_up, 30, "Prometheus's targets up", interval=0.25)
        yield s
    finally:
        s.host.kill(signal.SIGTERM)
        s.prometheus.stop()
        s.pushgateway.stop()
        s.capture.stop()


def test_prometheus_scrapes_the_run_series_and_the_pushgateway_serves_each_runs_group(prom):
    s = prom
    total = 0

    # -- run 1: failed ------------------------------------------------------------------------
    r = deploy_run(run_playbook, s.host, s.token, s.tmp / "run1", fail_hosts=("web2",), cache_unreachable=True,
                   record=s.tmp / "run1.record")
    assert r.returncode == 4, r.stdout + r.stderr
    total += len((s.tmp / "run1.record").read_text().split())
    wait_settled(s.host, TENANT, [PLUGIN, "capture"], total)
    failed_run = list(by_run(s.capture.events()).values())[0]
    stats = stats_of(failed_run)
    assert stats["failures"] == {"web2": 1} and stats["dark"] == {"cache1": 1}

    sel = f'tenant="{TENANT}",plugin="{PLUGIN}",playbook="deploy.yml",env="test",job="herald"'
    # Prometheus has scraped the end of run 1 once the failed run is counted.
    poll(lambda: s.prometheus.values(f"ansible_runs_total{{{sel}}}", "status") == {"failed": 1.0}, 30,
         "Prometheus to scrape runs_total{status=failed} 1")
    assert s.prometheus.values(f"ansible_last_run_success{{{sel}}}", "playbook") == {"deploy.yml": 0.0}
    assert s.prometheus.values(f"ansible_last_run_hosts{{{sel}}}", "state") == \
        {"total": 4.0, "changed": 1.0, "failed": 1.0, "unreachable": 1.0}

    # The Pushgateway got run 1's group: PUT /metrics/job/ansible/playbook/deploy.yml.
    pushed = s.pushgateway.metrics_text()
    group = {"job": "ansible", "playbook": "deploy.yml", "env": "test"}
    assert sample(pushed, "ansible_last_run_success", **group) == 0
    assert sample(pushed, "ansible_last_run_host_tasks", host="web2", result="failures", **group) == 1
    assert sample(pushed, "ansible_last_run_host_tasks", host="cache1", result="unreachable", **group) == 1
    first_push = sample(pushed, "push_time_seconds", job="ansible", playbook="deploy.yml")
    assert first_push and first_push > 0

    # -- run 2: successful --------------------------------------------------------------------
    r = deploy_run(run_playbook, s.host, s.token, s.tmp / "run2", record=s.tmp / "run2.record")
    assert r.returncode == 0, r.stdout + r.stderr
    total += len((s.tmp / "run2.record").read_text().split())
    wait_settled(s.host, TENANT, [PLUGIN, "capture"], total)
    runs = sorted(by_run(s.capture.events()).values(), key=lambda evs: created_ms(evs[0]))
    assert len(runs) == 2
    good_run = runs[1]
    good = stats_of(good_run)

    poll(lambda: s.prometheus.values(f"ansible_runs_total{{{sel}}}", "status") == {"failed": 1.0, "successful": 1.0},
         30, "Prometheus to scrape runs_total{status=successful} 1")
    q = s.prometheus.values
    assert q(f"ansible_runs_started_total{{{sel}}}", "playbook") == {"deploy.yml": 2.0}
    # Task results by status: exactly the host results of both runs.
    want = collections.Counter(filter(None, map(result_status, runs[0] + runs[1])))
    assert want["failed"] == 1 and want["unreachable"] == 1 and want["changed"] == 2 and want["skipped"] > 0
    got = q(f"sum by (status) (ansible_task_results_total{{{sel}}})", "status")
    assert got == {k: float(v) for k, v in want.items()}, (got, want)
    # The run duration histogram saw both runs; the last-run gauges describe run 2.
    assert q(f"ansible_run_duration_seconds_count{{{sel}}}", "playbook") == {"deploy.yml": 2.0}
    duration = (created_ms(good_run[-1]) - created_ms(good_run[0])) / 1000
    assert q(f"ansible_last_run_duration_seconds{{{sel}}}", "playbook")["deploy.yml"] == pytest.approx(duration, abs=0.002)
    assert q(f"ansible_run_duration_seconds_sum{{{sel}}}", "playbook")["deploy.yml"] > duration
    assert q(f"ansible_last_run_success{{{sel}}}", "playbook") == {"deploy.yml": 1.0}
    assert q(f"ansible_last_run_hosts{{{sel}}}", "state") == \
        {"total": 4.0, "changed": 1.0, "failed": 0.0, "unreachable": 0.0}
    assert q(f"ansible_last_run_timestamp_seconds{{{sel}}}", "playbook")["deploy.yml"] == \
        pytest.approx(created_ms(good_run[-1]) / 1000, abs=0.002)
    # Numeric set_stats values (booleans as 0/1) as gauges; the string "release" is not one.
    assert q(f"ansible_custom_stat{{{sel}}}", "stat") == {"healthy_hosts": 3.0, "canary": 1.0}

    # The Pushgateway's group was replaced by run 2's (PUT), and Prometheus scrapes it from there.
    def second_push():
        text = s.pushgateway.metrics_text()
        return text if sample(text, "push_time_seconds", job="ansible", playbook="deploy.yml") > first_push else None
    pushed = poll(second_push, 10, "the second push")
    assert sample(pushed, "ansible_last_run_success", **group) == 1
    for h in ["web1", "web2", "db1", "cache1"]:
        for result, key in [("ok", "ok"), ("changed", "changed"), ("failures", "failures"),
                            ("unreachable", "dark"), ("skipped", "skipped")]:
            assert sample(pushed, "ansible_last_run_host_tasks", host=h, result=result, **group) == \
                good[key].get(h, 0), (h, result)
    assert sample(pushed, "ansible_last_run_start_timestamp_seconds", **group) == \
        pytest.approx(created_ms(good_run[0]) / 1000, abs=0.002)
    assert sample(pushed, "ansible_custom_stat", stat="healthy_hosts", **group) == 3
    groups = s.pushgateway.groups()
    assert [g["labels"] for g in groups] == [{"job": "ansible", "playbook": "deploy.yml"}]
    assert groups[0]["last_push_successful"] is True
    poll(lambda: s.prometheus.values('ansible_last_run_success{job="ansible",playbook="deploy.yml",env="test"}',
                                     "job") == {"ansible": 1.0}, 30,
         "Prometheus to scrape the pushed group from the Pushgateway")
    pushed_hosts = s.prometheus.values('ansible_last_run_host_tasks{job="ansible",result="ok"}', "host")
    assert pushed_hosts == {h: float(good["ok"].get(h, 0)) for h in ["web1", "web2", "db1", "cache1"]}
