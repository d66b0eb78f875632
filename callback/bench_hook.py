#!/usr/bin/env python3
"""Per-event cost of the Herald callback hooks, in process (median and p99 microseconds).

    .venv/bin/python callback/bench_hook.py [--events 5000] [--json]

It loads the real plugin through Ansible's plugin loader, points it at a local receiver
running in a separate process (so the background shipper really ships, as in a playbook run),
and times `v2_runner_on_start` + `v2_runner_on_ok` with a realistic `command` module result
(about 1.5 KiB of JSON: stdout lines, invocation, timings). Target: median <= 50 us per event.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CALLBACK_DIR = os.path.join(HERE, "herald_ansible", "callback_plugins")

RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"accepted":0,"duplicates":0}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class FakeHost:
    def __init__(self, name):
        self.name = name
        self.address = "192.0.2.%d" % (hash(name) % 250 + 1)

    def get_name(self):
        return self.name


class FakeTask:
    def __init__(self, i):
        self._uuid = str(uuid.uuid4())
        self.action = "ansible.builtin.command"
        self.no_log = False
        self._role = None
        self.args = {"_raw_params": "systemctl status nginx --no-pager", "chdir": "/srv/app"}
        self.name = "check service %d" % i
        self.implicit = False
        self.delegate_to = None

    def get_name(self):
        return self.name

    def get_path(self):
        return "/srv/playbooks/site.yml:%d" % (10 + len(self.name))


class FakeResult:
    def __init__(self, host, task, res):
        self.host = host
        self.task = task
        self.result = res


def realistic_result(i: int) -> dict:
    stdout = "\n".join("line %d of the service status output, active (running) since Mon" % n for n in range(8))
    return {
        "changed": True,
        "stdout": stdout,
        "stderr": "",
        "rc": 0,
        "cmd": ["systemctl", "status", "nginx", "--no-pager"],
        "start": "2025-01-01 12:00:00.000001",
        "end": "2025-01-01 12:00:00.120001",
        "delta": "0:00:00.120000",
        "msg": "",
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": [],
        "invocation": {"module_args": {
            "_raw_params": "systemctl status nginx --no-pager", "_uses_shell": False, "expand_argument_vars": True,
            "stdin_add_newline": True, "strip_empty_ends": True, "argv": None, "chdir": "/srv/app",
            "executable": None, "creates": None, "removes": None, "stdin": None}},
        "_ansible_no_log": False,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    a = ap.parse_args()

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    recv = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    spool = tempfile.mkdtemp(prefix="herald-bench-")
    os.environ.update({"HERALD_URL": "http://127.0.0.1:%d" % port, "HERALD_TOKEN": "bench",
                       "HERALD_SPOOL_DIR": spool, "HERALD_FLUSH_TIMEOUT": "5"})
    try:
        time.sleep(0.3)
        from ansible.plugins.loader import callback_loader
        callback_loader.add_directory(CALLBACK_DIR)
        cb = callback_loader.get("herald")
        cb.set_options()

        hosts = [FakeHost("web%02d" % n) for n in range(20)]
        tasks = [FakeTask(n) for n in range(max(1, a.events // len(hosts)))]
        on_start, on_ok = [], []
        pc = time.perf_counter_ns
        i = 0
        for task in tasks:
            for host in hosts:
                res = FakeResult(host, task, realistic_result(i))
                t0 = pc()
                cb.v2_runner_on_start(host, task)
                t1 = pc()
                cb.v2_runner_on_ok(res)
                t2 = pc()
                on_start.append((t1 - t0) / 1000)
                on_ok.append((t2 - t1) / 1000)
                i += 1
        t0 = time.perf_counter()
        cb._finish()
        flush = time.perf_counter() - t0
        sample = json.loads(open(cb._writer.path).readline()) if os.path.exists(cb._writer.path) else None
        shipped = cb._shipper.total_sent
    finally:
        recv.terminate()
        recv.wait()

    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * p))]

    both = [x + y for x, y in zip(on_start, on_ok)]
    out = {
        "events": len(on_start) * 2,
        "runner_on_ok_us": {"median": round(statistics.median(on_ok), 1), "p99": round(q(on_ok, 0.99), 1)},
        "runner_on_start_us": {"median": round(statistics.median(on_start), 1), "p99": round(q(on_start, 0.99), 1)},
        "per_event_us": {"median": round(statistics.median(both) / 2, 1), "p99": round(q(both, 0.99) / 2, 1)},
        "shipped": shipped,
        "end_of_run_flush_s": round(flush, 3),
    }
    del sample
    if a.json:
        print(json.dumps(out))
    else:
        print("herald hook cost over %d events (%d runner_on_start + %d runner_on_ok)" % (
            out["events"], len(on_start), len(on_ok)))
        for k in ("runner_on_ok_us", "runner_on_start_us", "per_event_us"):
            print("  %-20s median %7.1f us   p99 %7.1f us" % (k.replace("_us", ""), out[k]["median"], out[k]["p99"]))
        print("  shipped %d events; end-of-run flush %.3f s" % (shipped, flush))
        print("  target: median <= 50 us per event: %s" % ("met" if out["per_event_us"]["median"] <= 50 else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
