"""Issue 22, sink 6: the prometheus plugin writes its run gauges to a node_exporter textfile
through the host's `herald:textfile` capability (one granted `.prom` path per instance, replaced
atomically), and a real `prometheus-node-exporter` (Debian) reading that directory serves the
run's series on its /metrics. Two real `ansible-playbook` runs: a failed one, then a successful
one, whose gauges replace the first's. `herald check` locates a bad grant and a missing one."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HERALD_BIN, PLUGIN_DIR, Host, run_playbook, token_pair

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import (  # noqa: E402
    Server, deploy_run, free_port, http_get, parse_prometheus_text, poll, sample, wait_settled)

TENANT = "ops"
PROMETHEUS = PLUGIN_DIR / "prometheus.wasm"
NODE_EXPORTER_BIN = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"


class NodeExporter(Server):
    """A real node_exporter with only its textfile collector, reading `directory`."""

    name = "node_exporter"

    def __init__(self, workdir: Path, directory: Path):
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spawn([NODE_EXPORTER_BIN, f"--web.listen-address=127.0.0.1:{self.port}",
                    "--collector.disable-defaults", "--collector.textfile",
                    f"--collector.textfile.directory={directory}", "--log.level=warn"])

    def wait_ready(self, timeout: float = 30.0):
        def ready():
            self.check_alive()
            return b"node_textfile_scrape_error" in http_get(self.url + "/metrics", timeout=2)
        poll(ready, timeout, "node_exporter /metrics", interval=0.1)
        return self

    def metrics(self) -> str:
        return http_get(self.url + "/metrics").decode()


@pytest.fixture
def node_exporter(tmp_path):
    if not os.access(NODE_EXPORTER_BIN, os.X_OK):
        reason = f"missing {NODE_EXPORTER_BIN} (apt-get install prometheus-node-exporter)"
        if os.environ.get("HERALD_SKIP_DEBIAN_SERVERS"):
            pytest.skip(reason)
        pytest.fail(reason + "; .ci/run installs it (set HERALD_SKIP_DEBIAN_SERVERS=1 to skip instead)")
    directory = tmp_path / "textfile"
    directory.mkdir()
    n = NodeExporter(tmp_path / "node_exporter", directory)
    n.directory = directory
    try:
        yield n.wait_ready()
    finally:
        n.stop()


def test_node_exporter_serves_the_runs_gauges_from_the_textfile(node_exporter, tmp_path):
    token, token_hash = token_pair()
    prom_file = node_exporter.directory / "herald.prom"
    (tmp_path / "host").mkdir()
    host = Host(tmp_path / "host", {TENANT: token_hash}, {
        "prom": {"tenant": TENANT, "component": str(PROMETHEUS), "textfile": str(prom_file),
                 "config": {"textfile": True, "custom_stats_gauges": True, "labels": {"team": "web"}}},
    }).start()
    try:
        def run(fail_hosts, expect_rc, counted):
            record = tmp_path / f"run{counted}.record"
            r = deploy_run(run_playbook, host, token, tmp_path / f"run{counted}", fail_hosts=fail_hosts,
                           record=record)
            assert r.returncode == expect_rc, r.stdout + r.stderr
            return len(record.read_text().split())

        n1 = run(("web2",), 2, 1)
        wait_settled(host, TENANT, ["prom"], n1)
        labels = {"playbook": "deploy.yml", "tenant": TENANT, "team": "web"}

        def served(success: float):
            text = node_exporter.metrics()
            return text if sample(text, "ansible_last_run_success", **labels) == success else None
        text = poll(lambda: served(0.0), 20, "the failed run's gauges on node_exporter's /metrics")
        # node_exporter parsed the file without error and serves its series as they are.
        assert sample(text, "node_textfile_scrape_error") == 0.0, text
        assert sample(text, "ansible_last_run_hosts", state="failed", **labels) == 1.0
        assert sample(text, "ansible_last_run_hosts", state="total", **labels) == 4.0
        assert sample(text, "ansible_last_run_host_tasks", host="web2", result="failures", **labels) == 1.0
        assert sample(text, "ansible_custom_stat", stat="healthy_hosts", **labels) == 3.0
        assert sample(text, "ansible_last_run_duration_seconds", **labels) > 0
        mtime = sample(text, "node_textfile_mtime_seconds", file=str(prom_file))
        assert mtime is not None and mtime > 0, text

        # A successful run of the same playbook replaces its gauges (the file is rewritten whole).
        n2 = run((), 0, 2)
        wait_settled(host, TENANT, ["prom"], n1 + n2)
        text = poll(lambda: served(1.0), 20, "the successful run's gauges")
        assert sample(text, "ansible_last_run_hosts", state="failed", **labels) == 0.0
        assert sample(text, "node_textfile_scrape_error") == 0.0
        series = [(n, ls) for n, ls, _ in parse_prometheus_text(text) if n == "ansible_last_run_success"]
        assert series == [("ansible_last_run_success", labels)], series
        # Only the granted file is in the directory: the temporary file was renamed over it.
        assert [p.name for p in node_exporter.directory.iterdir()] == ["herald.prom"]
        body = prom_file.read_text()
        assert body.count("# TYPE ansible_last_run_success gauge") == 1, body
    finally:
        host.kill(signal.SIGTERM)


def check(tmp_path, lines: list[str]) -> subprocess.CompletedProcess:
    path = tmp_path / "herald.toml"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    return subprocess.run([str(HERALD_BIN), "check", "--config", str(path)], capture_output=True, text=True,
                          timeout=120, env=env)


def problems(r: subprocess.CompletedProcess) -> list[str]:
    return [line.split("/herald.toml", 1)[1].lstrip(":") for line in r.stderr.splitlines() if "/herald.toml:" in line]


def test_check_locates_a_bad_textfile_grant_and_a_missing_one(tmp_path):
    _, h = token_pair()
    (tmp_path / "collector").mkdir()
    base = [
        "[tenants.ops]",                                     # 1
        f"tokens = [\"{h}\"]",                               # 2
        "[plugins.prom]",                                    # 3
        "tenant = \"ops\"",                                  # 4
        f"component = \"{PROMETHEUS}\"",                     # 5
        "textfile = \"collector/herald.txt\"",               # 6
        "[plugins.prom.config]",                             # 7
        "textfile = true",                                   # 8
    ]
    r = check(tmp_path, base)
    assert r.returncode == 1, r.stderr
    assert problems(r)[0].startswith("6:1: plugins.prom.textfile: ") and \
        "herald.txt must be a `.prom` file" in problems(r)[0], r.stderr
    lines = base[:5] + ["textfile = \"missing/herald.prom\""] + base[6:]
    r = check(tmp_path, lines)
    assert r.returncode == 1 and problems(r)[0].startswith("6:1: plugins.prom.textfile: the directory "), r.stderr
    # No grant, but the plugin is told to write one: refused at the plugin's key.
    lines = base[:5] + base[6:]
    r = check(tmp_path, lines)
    assert r.returncode == 1, r.stderr
    assert problems(r)[0].startswith("7:1: plugins.prom.config.textfile: plugin refused its configuration: "
                                     "the instance has no textfile granted"), r.stderr
    # Two instances may not share a file.
    lines = base[:5] + ["textfile = \"collector/herald.prom\""] + base[6:] + [
        "[plugins.prom2]", "tenant = \"ops\"", f"component = \"{PROMETHEUS}\"",
        "textfile = \"collector/herald.prom\""]
    r = check(tmp_path, lines)
    assert r.returncode == 1, r.stderr
    assert any(p.startswith("12:1: plugins.prom2.textfile: ") and "already plugins.prom's textfile" in p
               for p in problems(r)), r.stderr
    # A good grant passes.
    r = check(tmp_path, base[:5] + ["textfile = \"collector/herald.prom\""] + base[6:])
    assert r.returncode == 0, r.stderr
