"""`make demo`: a real playbook's events through Herald to every shipped sink.

Starts local stand-ins for the destinations of examples/herald.toml, all on 127.0.0.1:

    8766  webhook receiver (checks the HMAC signature)
    8767  PagerDuty Events API v2   } the strict fakes of plugins/testing/fakes.py, which check
    8768  Slack incoming webhook    } each request's documented shape
    8769  Grafana annotations API   }
    8770  syslog receiver (UDP)
    8771  Pushgateway: Debian's prometheus-pushgateway when installed, else a small stand-in

then `herald serve` with examples/herald.toml, runs examples/playbooks/site.yml with Herald's
callback enabled, and shows what each sink received. Standard library only.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "plugins" / "testing"))
from fakes import FakeGrafana, FakePagerDuty, FakeSlack  # noqa: E402

HERALD_BIN = os.environ.get("HERALD_BIN", str(ROOT / "target" / "release" / "herald"))
VENV_BIN = Path(sys.executable).parent
TOKEN = "demo-token-not-for-production"
SECRET = b"demo-signing-secret"
# The demo credentials of examples/herald.toml, checked by the stand-ins.
PD_ROUTING_KEY = "demo0routing0key0not0a0real0one0"
GRAFANA_TOKEN = "demo-grafana-token"
HERALD_URL = "http://127.0.0.1:8765"
PUSHGATEWAY_PORT = 8771
received: list[dict] = []
bad_signatures = 0


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global bad_signatures
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if self.headers.get("X-Herald-Signature") != expected:
            bad_signatures += 1
        received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class SyslogReceiver:
    """Collects the syslog datagrams sent to 127.0.0.1:8770."""

    def __init__(self, port: int = 8770):
        self.messages: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except OSError:
                return
            self.messages.append(data.decode(errors="replace"))


class PushStandIn(http.server.BaseHTTPRequestHandler):
    """Stands in for a Pushgateway: accepts PUT/POST /metrics/job/... and keeps the last body of
    each group."""

    groups: dict[str, str] = {}

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        ok = self.path.startswith("/metrics/job/") and (self.headers.get("Content-Type") or "").startswith("text/plain")
        if ok:
            PushStandIn.groups[self.path] = body
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args):
        pass


class Pushgateway:
    """Debian's prometheus-pushgateway on 127.0.0.1:8771 if installed, else PushStandIn."""

    def __init__(self):
        self.proc = None
        self.server = None
        binary = shutil.which("prometheus-pushgateway")
        if binary:
            self.proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{PUSHGATEWAY_PORT}",
                                          "--persistence.file=", "--log.level=warn"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.kind = "prometheus-pushgateway"
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{PUSHGATEWAY_PORT}/-/ready", timeout=1)
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        print("    (prometheus-pushgateway did not start; using the stand-in)")
                        self.proc = None
                        break
                    time.sleep(0.1)
        if self.proc is None:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", PUSHGATEWAY_PORT), PushStandIn)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
            self.kind = "stand-in Pushgateway"

    def pushed(self) -> list[str]:
        """The pushed ansible_ samples, as Prometheus text lines."""
        if self.proc is None:
            return [line for body in PushStandIn.groups.values() for line in body.splitlines()
                    if line.startswith("ansible_")]
        with urllib.request.urlopen(f"http://127.0.0.1:{PUSHGATEWAY_PORT}/metrics", timeout=5) as r:
            return [line for line in r.read().decode().splitlines() if line.startswith("ansible_")]

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.server is not None:
            self.server.shutdown()


def herald_metrics() -> list[str]:
    with urllib.request.urlopen(HERALD_URL + "/metrics", timeout=5) as r:
        return r.read().decode().splitlines()


def fmt_ms(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def main() -> int:
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 8766), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    pd = FakePagerDuty(port=8767, routing_key=PD_ROUTING_KEY)
    slack = FakeSlack(port=8768)
    grafana = FakeGrafana(port=8769, token=GRAFANA_TOKEN)
    syslog = SyslogReceiver(8770)
    push = Pushgateway()
    print("==> stand-ins on 127.0.0.1: webhook :8766, PagerDuty :8767, Slack :8768, Grafana :8769, "
          f"syslog udp :8770, {push.kind} :{PUSHGATEWAY_PORT}")
    host = subprocess.Popen([HERALD_BIN, "serve", "--log-format", "text", "--config", str(HERE / "herald.toml")],
                            stderr=open(ROOT / ".herald-demo.log", "w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(HERALD_URL + "/health", timeout=1)
                break
            except OSError:
                if host.poll() is not None or time.monotonic() > deadline:
                    print(open(ROOT / ".herald-demo.log").read())
                    print("herald did not start; its log is above")
                    return 1
                time.sleep(0.1)
        print(f"==> herald serving on {HERALD_URL} (log: .herald-demo.log)")
        callback_dir = subprocess.run([str(VENV_BIN / "python"), "-m", "herald_ansible.path"],
                                      check=True, capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, ANSIBLE_CONFIG=str(HERE / "ansible.cfg"), ANSIBLE_CALLBACK_PLUGINS=callback_dir,
                   HERALD_TOKEN=TOKEN, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        print("==> ansible-playbook examples/playbooks/site.yml")
        play = subprocess.run([str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml"], cwd=HERE, env=env)

        # Each sink's end-of-run output is the last thing it gets for the run; wait (bounded).
        def run_id():
            stats = next((e for e in received if e["event"] == "playbook_on_stats"), None)
            return stats and stats["run_id"]

        checks = {
            "webhook": lambda: run_id() is not None,
            "prometheus": lambda: any(line.startswith("ansible_last_run_success") for line in push.pushed()),
            "pagerduty": lambda: any(c["payload"]["custom_details"]["run_id"] == run_id() for c in pd.change_events),
            "slack": lambda: any(run_id() and run_id() in json.dumps(m) for m in slack.messages),
            "grafana": lambda: any("timeEnd" in a and run_id() and run_id() in a["text"] for a in grafana.annotations),
            "syslog": lambda: any(" playbook_on_stats " in m and run_id() and run_id() in m for m in syslog.messages),
        }
        deadline = time.monotonic() + 30
        while not all(c() for c in checks.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        arrived = {name: bool(c()) for name, c in checks.items()}
        rid = run_id()

        # -- webhook --------------------------------------------------------------------------
        kinds = collections.Counter(e["event"] for e in received)
        print(f"\n==> webhook: {len(received)} events (signatures checked: {len(received) - bad_signatures} valid)")
        for kind, n in sorted(kinds.items()):
            print(f"    {kind:34} {n}")
        stats = next((e for e in received if e["event"] == "playbook_on_stats"), None)
        if stats:
            d = stats["event_data"]
            print("\n    PLAY RECAP as the webhook saw it")
            for h in sorted(d.get("processed", {})):
                print(f"    {h:8} ok={d['ok'].get(h, 0)} changed={d['changed'].get(h, 0)} "
                      f"failed={d['failures'].get(h, 0)} unreachable={d['dark'].get(h, 0)} "
                      f"skipped={d['skipped'].get(h, 0)} ignored={d['ignored'].get(h, 0)}")
            print("    set_stats:", json.dumps(d.get("custom_stats", {})))

        # -- prometheus -----------------------------------------------------------------------
        metrics = herald_metrics()
        live = [line for line in metrics if line.startswith(("ansible_runs_total", "ansible_task_results_total",
                                                             "ansible_last_run_success", "ansible_custom_stat"))]
        print("\n==> prometheus: live series on herald's /metrics (scrape http://127.0.0.1:8765/metrics)")
        for line in live:
            print("   ", line)
        print(f"    pushed to the {push.kind} at the end of the run:")
        for path in PushStandIn.groups:
            print("      PUT", path)
        for line in push.pushed():
            if "host_tasks" not in line:
                print("     ", line)

        # -- pagerduty ------------------------------------------------------------------------
        print(f"\n==> pagerduty: {len(pd.events)} alert events, {len(pd.change_events)} change events")
        for e in pd.events:
            print(f"    {e['event_action']:8} {e['dedup_key']}  {e.get('payload', {}).get('summary', '')}")
        for c in pd.change_events[-3:]:
            print(f"    change   {c['payload']['summary']}")
        if pd.incidents:
            print("    incidents:", json.dumps(pd.incidents))

        # -- slack ----------------------------------------------------------------------------
        print(f"\n==> slack: {len(slack.messages)} messages")
        for m in slack.messages[-3:]:
            print(f"    [{len(m.get('blocks', []))} blocks] {m['text']}")

        # -- grafana --------------------------------------------------------------------------
        print(f"\n==> grafana: {len(grafana.annotations)} annotations")
        for a in grafana.annotations[-3:]:
            span = f"{fmt_ms(a['time'])}-{fmt_ms(a['timeEnd'])}" if "timeEnd" in a else fmt_ms(a["time"])
            print(f"    #{a['id']} {span} {a['tags']} {a['text']}")

        # -- syslog ---------------------------------------------------------------------------
        print(f"\n==> syslog: {len(syslog.messages)} RFC 5424 datagrams; the run's first and last:")
        mine = [m for m in syslog.messages if rid and f" {rid} " in m]
        for m in mine[:1] + mine[-1:]:
            print("   ", m[:300])

        print("\n==> herald's /metrics")
        for line in metrics:
            if line.startswith("herald_deliveries_total"):
                print("   ", line)

        invalid = [e for f in (pd, slack, grafana) for e in f.errors]
        for e in invalid:
            print("    INVALID request:", e)
        missing = [name for name, ok in arrived.items() if not ok]
        if missing:
            print("    nothing for this run arrived at:", ", ".join(missing))
        ok = play.returncode == 0 and stats is not None and bad_signatures == 0 and not invalid and not missing
        print("\nDemo " + ("succeeded." if ok else "FAILED."))
        return 0 if ok else 1
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=30)
        sink.shutdown()
        for f in (pd, slack, grafana):
            f.stop()
        push.stop()
        syslog.sock.close()


if __name__ == "__main__":
    sys.exit(main())
