"""`make demo`: a real playbook's events through Herald to a webhook sink.

Starts a small webhook receiver on 127.0.0.1:8766 (standing in for any HTTP
system), starts `herald serve` with examples/herald.toml, runs
examples/playbooks/site.yml with Herald's callback enabled, and shows what the
sink received. Standard library only.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HERALD_BIN = os.environ.get("HERALD_BIN", str(ROOT / "target" / "release" / "herald"))
VENV_BIN = Path(sys.executable).parent
TOKEN = "demo-token-not-for-production"
SECRET = b"demo-signing-secret"
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


def main() -> int:
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 8766), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    print("==> webhook sink listening on http://127.0.0.1:8766")
    host = subprocess.Popen([HERALD_BIN, "--log-format", "text", "serve", "--config", str(HERE / "herald.toml")],
                            stderr=open(ROOT / ".herald-demo.log", "w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:8765/health", timeout=1)
                break
            except OSError:
                if host.poll() is not None or time.monotonic() > deadline:
                    print(open(ROOT / ".herald-demo.log").read())
                    print("herald did not start; its log is above")
                    return 1
                time.sleep(0.1)
        print("==> herald serving on http://127.0.0.1:8765 (log: .herald-demo.log)")
        callback_dir = subprocess.run([str(VENV_BIN / "python"), "-m", "herald_ansible.path"],
                                      check=True, capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, ANSIBLE_CONFIG=str(HERE / "ansible.cfg"), ANSIBLE_CALLBACK_PLUGINS=callback_dir,
                   HERALD_TOKEN=TOKEN, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        print("==> ansible-playbook examples/playbooks/site.yml")
        play = subprocess.run([str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml"], cwd=HERE, env=env)
        deadline = time.monotonic() + 30
        while not any(e["event"] == "playbook_on_stats" for e in received) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        kinds = collections.Counter(e["event"] for e in received)
        print(f"\n==> the sink received {len(received)} events (signatures checked: {len(received) - bad_signatures} valid)")
        for kind, n in sorted(kinds.items()):
            print(f"    {kind:34} {n}")
        stats = next((e for e in received if e["event"] == "playbook_on_stats"), None)
        if stats:
            d = stats["event_data"]
            print("\n==> PLAY RECAP as the sink saw it")
            for h in sorted(d.get("processed", {})):
                print(f"    {h:8} ok={d['ok'].get(h, 0)} changed={d['changed'].get(h, 0)} "
                      f"failed={d['failures'].get(h, 0)} unreachable={d['dark'].get(h, 0)} "
                      f"skipped={d['skipped'].get(h, 0)} ignored={d['ignored'].get(h, 0)}")
            print("    set_stats:", json.dumps(d.get("custom_stats", {})))
        with urllib.request.urlopen("http://127.0.0.1:8765/metrics") as r:
            lines = [l for l in r.read().decode().splitlines() if l.startswith("herald_deliveries_total")]
        print("\n==> herald's /metrics")
        for l in lines:
            print("   ", l)
        ok = play.returncode == 0 and stats is not None and bad_signatures == 0
        print("\nDemo " + ("succeeded." if ok else "FAILED."))
        return 0 if ok else 1
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=30)
        sink.shutdown()


if __name__ == "__main__":
    sys.exit(main())
