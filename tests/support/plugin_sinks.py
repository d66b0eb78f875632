"""Real and fake sinks for the plugin tests (issue 4), and helpers to drive them.

- `Prometheus`, `Pushgateway`, `Rsyslog`: the Debian servers, each started on a free
  127.0.0.1 port with its own configuration and data in a temporary directory;
- the strict fakes of `plugins/testing/fakes.py` (PagerDuty, Slack, Grafana, webhook),
  re-exported from here;
- `deploy_run`: runs tests/support/playbooks/deploy.yml through the real callback, failing the
  hosts it is told to fail, with an inventory where a host can be made unreachable;
- small parsers for Prometheus text and for what the webhook captured.

Every wait is bounded and everything listens on 127.0.0.1.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
ROOT = SUPPORT.parent.parent
PLAYBOOKS = SUPPORT / "playbooks"

sys.path.insert(0, str(ROOT / "plugins" / "testing"))
from fakes import FakeGrafana, FakePagerDuty, FakeSlack, FakeWebhook  # noqa: E402,F401

PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
PUSHGATEWAY_BIN = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
RSYSLOGD_BIN = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

# A PagerDuty integration key has 32 characters; the fake checks it.
ROUTING_KEY = "R0123456789abcdef0123456789abcde"
GRAFANA_TOKEN = "glsa_test_token_0123456789"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(predicate, timeout: float, what: str, interval: float = 0.1):
    """Calls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError) as e:  # a server still starting
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Server:
    """A child process with its log in `workdir`, stopped by `stop()`."""

    name = "server"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def spawn(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     cwd=self.workdir, start_new_session=True)

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Prometheus(Server):
    """A real Prometheus server scraping `targets` (host:port) every second."""

    name = "prometheus"

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s", pushgateway: str | None = None):
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        text = (
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: herald\n"
            "    scrape_timeout: 900ms\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n")
        if pushgateway:
            # As the Pushgateway's documentation says: keep the pushed job/instance labels.
            text += ("  - job_name: pushgateway\n"
                     "    honor_labels: true\n"
                     "    scrape_timeout: 900ms\n"
                     "    static_configs:\n"
                     f"      - targets: [\"{pushgateway}\"]\n")
        config.write_text(text)
        self.spawn([PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"])

    def wait_ready(self, timeout: float = 60.0):
        def ready():
            self.check_alive()
            return http_get(self.url + "/-/ready", timeout=2) is not None
        poll(ready, timeout, "Prometheus /-/ready", interval=0.2)
        return self

    def query(self, promql: str) -> list[dict]:
        """An instant query through the HTTP API; returns `data.result`."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def values(self, promql: str, by: str) -> dict[str, float]:
        """`{labels[by]: value}` of an instant vector query."""
        return {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(promql)}

    def targets_up(self) -> bool:
        body = json.loads(http_get(self.url + "/api/v1/targets"))
        active = body["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


class Pushgateway(Server):
    """A real Prometheus Pushgateway, in memory only."""

    name = "pushgateway"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spawn([PUSHGATEWAY_BIN, f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file=",
                    "--log.level=warn"])

    def wait_ready(self, timeout: float = 30.0):
        def ready():
            self.check_alive()
            return http_get(self.url + "/-/ready", timeout=2) is not None
        poll(ready, timeout, "Pushgateway /-/ready", interval=0.1)
        return self

    def groups(self) -> list[dict]:
        """`/api/v1/metrics`: one entry per pushed group, with its labels and metric families."""
        body = json.loads(http_get(self.url + "/api/v1/metrics"))
        assert body["status"] == "success", body
        return body["data"]

    def metrics_text(self) -> str:
        return http_get(self.url + "/metrics").decode()


RSYSLOG_CONF = """\
# rsyslog for Herald's tests: unprivileged, loopback only, one JSON line per parsed message.
global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
template(name="herald_fields" type="list" option.jsonf="on") {{
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="protocol_version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
}}
ruleset(name="herald") {{
  action(type="omfile" file="{out}" template="herald_fields")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="herald")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="herald")
"""

SD_PARAM = re.compile(r'([^\s=\]"]+)="((?:[^"\\\]]|\\.)*)"')


def parse_sd(sd: str) -> dict[str, dict[str, str]]:
    """`[id k="v" ...][id2 ...]` -> {id: {k: v}} (RFC 5424 escapes undone)."""
    out: dict[str, dict[str, str]] = {}
    for m in re.finditer(r'\[([^\s\]]+)((?:\s+[^\s=\]"]+="(?:[^"\\\]]|\\.)*")*)\]', sd):
        out[m.group(1)] = {k: re.sub(r'\\(["\\\]])', r"\1", v) for k, v in SD_PARAM.findall(m.group(2))}
    return out


class Rsyslog(Server):
    """A real rsyslogd listening on UDP and TCP on 127.0.0.1, writing what it parsed
    (hostname, app-name, severity, structured data, msg, ...) as JSON lines."""

    name = "rsyslog"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.out = workdir / "messages.jsonl"
        (workdir / "work").mkdir(exist_ok=True)
        conf = workdir / "rsyslog.conf"
        conf.write_text(RSYSLOG_CONF.format(work=workdir / "work", out=self.out, udp=self.udp_port, tcp=self.tcp_port))
        self.spawn([RSYSLOGD_BIN, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")])

    def wait_ready(self, timeout: float = 30.0):
        """Sends probes over UDP and TCP until rsyslog has written both."""
        def probe(transport: str) -> bool:
            self.check_alive()
            msg = f"<14>1 2026-01-01T00:00:00Z probe herald-probe - - - {transport} probe".encode()
            if transport == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(msg, ("127.0.0.1", self.udp_port))
            else:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=1) as s:
                    s.sendall(str(len(msg)).encode() + b" " + msg)
            time.sleep(0.1)
            return any(m["app_name"] == "herald-probe" and m["msg"] == f"{transport} probe" for m in self.messages(all=True))
        poll(lambda: probe("tcp"), timeout, "rsyslog's TCP input", interval=0.2)
        poll(lambda: probe("udp"), timeout, "rsyslog's UDP input", interval=0.2)
        return self

    def messages(self, all: bool = False) -> list[dict]:
        """Every message rsyslog wrote (without the readiness probes unless `all`)."""
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text(errors="replace").splitlines():
            if line.strip():
                m = json.loads(line)
                if all or m.get("app_name") != "herald-probe":
                    out.append(m)
        return out


# -- playbook runs -----------------------------------------------------------------------------

INVENTORY = """\
[web]
web1
web2

[db]
db1

[cache]
{cache}

[all:vars]
ansible_python_interpreter="{{{{ ansible_playbook_python }}}}"

[web:vars]
ansible_connection=local

[db:vars]
ansible_connection=local
"""


def write_inventory(path: Path, cache_unreachable: bool) -> Path:
    """web1, web2, db1 run locally; cache1 too, or (`cache_unreachable`) over SSH to a closed
    loopback port, so Ansible reports it unreachable at once."""
    if cache_unreachable:
        if not shutil.which("ssh"):
            raise AssertionError("an unreachable host needs the ssh client (Debian: openssh-client; .ci/run "
                                 "installs it): without it Ansible reports a failure, not an unreachable host")
        cache = (f"cache1 ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={free_port()} "
                 "ansible_user=nobody ansible_ssh_common_args='-o ConnectTimeout=3 -o BatchMode=yes'")
    else:
        cache = "cache1 ansible_connection=local"
    path.write_text(INVENTORY.format(cache=cache))
    return path


def deploy_run(run_playbook, host, token: str, workdir: Path, fail_hosts: tuple[str, ...] = (),
               cache_unreachable: bool = False, record: Path | None = None):
    """Runs deploy.yml (copied into `workdir`, so the playbook is called `deploy.yml` as when a user
    runs `ansible-playbook deploy.yml`) through Herald's callback. `fail_hosts` fail the
    "Migrate the database" task. Returns the CompletedProcess."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(PLAYBOOKS / "deploy.yml", workdir / "deploy.yml")
    inventory = write_inventory(workdir / "inventory.ini", cache_unreachable)
    return run_playbook(Path("deploy.yml"), inventory, host, token, workdir, record=record,
                        extra_env={"DEPLOY_FAIL_HOSTS": ",".join(fail_hosts), "ANSIBLE_SSH_RETRIES": "0",
                                   "ANSIBLE_TIMEOUT": "5"}, timeout=180)


# -- parsing -----------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus_text(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def sample(text: str, name: str, **labels) -> float | None:
    """The value of the one sample `name` whose labels include `labels`, or None."""
    found = [v for n, ls, v in parse_prometheus_text(text)
             if n == name and all(ls.get(k) == str(x) for k, x in labels.items())]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


def created_ms(event: dict) -> int:
    """An event's `created` (ISO 8601) in epoch milliseconds, truncated as the host does."""
    t = dt.datetime.fromisoformat(event["created"].replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)


def by_run(events: list[dict]) -> dict[str, list[dict]]:
    """Events grouped by run id, each list in callback order."""
    out: dict[str, list[dict]] = {}
    for e in sorted(events, key=lambda e: (e["run_id"], e["counter"])):
        out.setdefault(e["run_id"], []).append(e)
    return out


def stats_of(events: list[dict]) -> dict:
    return next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]


def env_skip_reason() -> str | None:
    """Why the Debian servers cannot be used here, if so."""
    missing = [b for b in (PROMETHEUS_BIN, PUSHGATEWAY_BIN, RSYSLOGD_BIN) if not os.access(b, os.X_OK)]
    return f"missing {', '.join(missing)} (apt-get install prometheus prometheus-pushgateway rsyslog)" if missing else None


# -- the host's view ---------------------------------------------------------------------------

def delivery_counts(metrics_text: str, plugin: str) -> dict[str, float]:
    """`herald_deliveries_total` of one instance by the outcomes that happened
    (ok, retry, dead). Each instance's series start at 0 when it starts, so a
    0 means "none", and is left out."""
    return {ls["outcome"]: v for n, ls, v in parse_prometheus_text(metrics_text)
            if n == "herald_deliveries_total" and ls.get("plugin") == plugin and v > 0}


def ingested(metrics_text: str, tenant: str) -> int:
    return int(sum(v for n, ls, v in parse_prometheus_text(metrics_text)
                   if n == "herald_events_ingested_total" and ls.get("tenant") == tenant))


def wait_settled(host, tenant: str, plugins: list[str], at_least: int, timeout: float = 60.0) -> str:
    """Waits until the tenant has `at_least` events ingested and every instance in `plugins`
    has finished each of them (delivered or dead-lettered); returns /metrics then."""
    def settled():
        text = host.metrics()
        n = ingested(text, tenant)
        if n < at_least:
            return None
        for p in plugins:
            c = delivery_counts(text, p)
            if c.get("ok", 0) + c.get("dead", 0) < n:
                return None
        return text
    return poll(settled, timeout, f"{plugins} to finish {at_least} events of tenant {tenant}", interval=0.2)
