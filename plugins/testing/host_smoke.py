"""Smoke run of every plugin through the real host against the strict fakes (stdlib only).

    make host plugins && python3 plugins/testing/host_smoke.py

Starts the fakes and a UDP/TCP syslog listener on loopback, writes a herald.toml granting each
plugin instance its fake, starts `herald serve` ($HERALD_BIN, default target/release/herald),
posts two recorded runs (a failed one, then a successful one) and checks what each sink got:
the PagerDuty trigger -> resolve lifecycle, Slack messages, the Grafana region, syslog framing,
the webhook signature, retries after 429/503 and a dead letter after 400. Exits non-zero on the
first failed check. This is a developer's check; the end-to-end tests live in tests/.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from fakes import FakeGrafana, FakePagerDuty, FakeSlack, FakeWebhook  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERALD = os.environ.get("HERALD_BIN", str(ROOT / "target/release/herald"))
PLUGINS = pathlib.Path(os.environ.get("HERALD_PLUGIN_DIR", ROOT / "build/plugins"))
TOKEN = "smoke-token"
KEY = "R123456789abcdef0123456789abcdef"


def free_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class SyslogListener:
    def __init__(self):
        self.udp_port, self.tcp_port = free_port(socket.SOCK_DGRAM), free_port()
        self.udp: list[bytes] = []
        self.tcp = bytearray()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", self.udp_port))
        t = socket.socket()
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("127.0.0.1", self.tcp_port))
        t.listen()
        threading.Thread(target=self._udp, args=(u,), daemon=True).start()
        threading.Thread(target=self._tcp, args=(t,), daemon=True).start()

    def _udp(self, s):
        while True:
            self.udp.append(s.recvfrom(65535)[0])

    def _tcp(self, s):
        while True:
            c, _ = s.accept()

            def rd(c=c):
                while d := c.recv(65535):
                    self.tcp.extend(d)

            threading.Thread(target=rd, daemon=True).start()

    def tcp_frames(self) -> list[bytes]:
        out, buf = [], bytes(self.tcp)
        while buf:
            n, _, rest = buf.partition(b" ")
            out.append(rest[: int(n)])
            buf = rest[int(n):]
        return out


def events(run: str, fail: bool) -> list[dict]:
    def ev(i, kind, **data):
        return {"uuid": f"{run}-{i}", "event": kind, "counter": i, "created": f"2026-01-02T10:00:{i:02d}Z",
                "run_id": run, "controller": "ctl1", "event_data": {"playbook": "site.yml", **data}}
    task = dict(play="Deploy", play_uuid="p1", task="install nginx", task_uuid="t1", task_action="ansible.builtin.apt")
    out = [ev(1, "playbook_on_start"), ev(2, "playbook_on_play_start", play="Deploy", play_uuid="p1"),
           ev(3, "playbook_on_task_start", **task),
           ev(4, "runner_on_ok", host="web1", res={"changed": True}, **task)]
    if fail:
        out.append(ev(5, "runner_on_failed", host="web2", res={"msg": "No package matching 'nginxx'"}, **task))
    out.append(ev(9, "playbook_on_stats", ok={"web1": 1, "web2": 1}, changed={"web1": 1},
                  failures={"web2": 1} if fail else {}, dark={}, skipped={}, processed={"web1": 1, "web2": 1},
                  custom_stats={"_run": {"deployed": 1}}))
    return out


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        raise SystemExit(1)


def main():
    import hashlib

    wh, pd, sl, gr = FakeWebhook(secret="sig"), FakePagerDuty(routing_key=KEY), FakeSlack(), FakeGrafana(token="glsa")
    sys_l = SyslogListener()
    port = free_port()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="herald-smoke-"))
    token_hash = hashlib.sha256(TOKEN.encode()).hexdigest()

    def inst(name, comp, allow, cfg, sockets=None):
        s = f'[plugins.{name}]\ntenant = "acme"\ncomponent = "{PLUGINS / comp}"\n'
        s += f"allow_http = {json.dumps(allow)}\n" if allow else ""
        s += f"allow_sockets = {json.dumps(sockets)}\n" if sockets else ""
        s += f"[plugins.{name}.retry]\ninitial_ms = 50\nmax_ms = 500\nmax_attempts = 5\n"
        s += f"[plugins.{name}.config]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items())
        return s

    conf = f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\ndata_dir = "{tmp}"\n'
    conf += f'[tenants.acme]\ntokens = ["sha256:{token_hash}"]\n'
    conf += inst("hook", "webhook.wasm", [wh.url], {"url": wh.url + "/in", "hmac_secret": "sig"})
    conf += inst("pd", "pagerduty.wasm", [pd.url], {"routing_key": KEY, "events_url": pd.url + "/v2/enqueue",
                                                    "change_events_url": pd.url + "/v2/change/enqueue", "change_events": True})
    conf += inst("slack", "slack.wasm", [sl.url], {"webhook_url": sl.url + "/services/T/B/X", "notify_on_success": True})
    conf += inst("grafana", "grafana.wasm", [gr.url], {"url": gr.url, "api_token": "glsa", "failure_annotations": True})
    conf += inst("sysudp", "syslog.wasm", None, {"address": f"127.0.0.1:{sys_l.udp_port}"}, [f"127.0.0.1:{sys_l.udp_port}"])
    conf += inst("systcp", "syslog.wasm", None, {"address": f"127.0.0.1:{sys_l.tcp_port}", "transport": "tcp"},
                 [f"127.0.0.1:{sys_l.tcp_port}"])
    (tmp / "herald.toml").write_text(conf)

    # Faults: the webhook's first answer is 429 with Retry-After, PagerDuty's first is 503.
    wh.respond_next(429, headers={"Retry-After": "1"})
    pd.respond_next(503)
    log = open(tmp / "herald.log", "w")
    proc = subprocess.Popen([HERALD, "serve", "--log-format", "text", "--config", str(tmp / "herald.toml")], stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        def send(evs):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=json.dumps(evs).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(req, timeout=10).read())

        check(send(events("run-a", fail=True))["accepted"] == 6, "failed run accepted")
        wh.wait_for(6, timeout=15, pred=lambda r: r.status == 200)
        check(len(wh.events()) == 6 and not wh.errors, "webhook: 6 signed events after a 429 retry")
        first = wh.requests[0]
        retried = [r for r in wh.requests if r.header("X-Herald-Event-Id") == first.header("X-Herald-Event-Id")]
        check(first.status == 429 and retried[-1].header("X-Herald-Attempt") == "2", "webhook: attempt 2 after the 429")
        check(retried[-1].at - first.at >= 0.9, "webhook: Retry-After honoured")
        pd.wait_for(2, timeout=15, pred=lambda r: r.status == 202)
        check(pd.incidents.get("herald:acme:site.yml") == "triggered", "pagerduty: incident triggered (after a 503)")
        sl.wait_for(2, timeout=10, pred=lambda r: r.status == 200)
        check(any("failed on web2" in m["text"] for m in sl.messages), "slack: failure message")
        check(any(m["text"].startswith(":red_circle: site.yml failed") for m in sl.messages), "slack: failed-run summary")
        gr.wait_for(2, timeout=10, pred=lambda r: r.status == 200)
        region = [a for a in gr.annotations if "timeEnd" in a]
        check(len(region) == 1 and region[0]["timeEnd"] - region[0]["time"] == 8000, "grafana: region spans the run")
        check("status:failed" in region[0]["tags"], "grafana: status tag")

        check(send(events("run-b", fail=False))["accepted"] == 5, "successful run accepted")
        pd.wait_for(1, timeout=15, pred=lambda r: (r.json or {}).get("event_action") == "resolve")
        check(pd.incidents.get("herald:acme:site.yml") == "resolved", "pagerduty: resolved by the next good run")
        check(len(pd.change_events) == 2, "pagerduty: a change event per run")
        sl.wait_for(3, timeout=10, pred=lambda r: r.status == 200)
        check(any("successful" in m["text"] for m in sl.messages), "slack: success summary (notify_on_success)")
        time.sleep(1)
        check(len(sys_l.udp) == 11, f"syslog udp: 11 datagrams (got {len(sys_l.udp)})")
        frames = sys_l.tcp_frames()
        check(len(frames) == 11 and all(f.startswith(b"<") for f in frames), "syslog tcp: 11 octet-counted frames")
        check(any(f.startswith(b"<131>1 ") and b"runner_on_failed" in f for f in sys_l.udp), "syslog: failed -> local0.err")

        # A 400 from PagerDuty is permanent: a third run's trigger is dead-lettered, not retried.
        pd.respond_next(400, body={"status": "invalid event"})
        before = len(pd.requests)
        send(events("run-c", fail=True))
        time.sleep(3)
        triggers = [r for r in pd.requests[before:] if (r.json or {}).get("event_action") == "trigger"]
        at_failure = [r for r in triggers if "failed on web2" in r.json["payload"]["summary"] and "task" in r.json["payload"]["summary"]]
        check(len(at_failure) == 1 and at_failure[0].status == 400, "pagerduty: a 400 is permanent (not retried)")
        for f in (wh, pd, sl, gr):
            check(not f.errors, f"{f.name}: every request had the documented shape {f.errors[:3]}")
        print("all checks passed")
    finally:
        proc.terminate()
        proc.wait(10)
        for f in (wh, pd, sl, gr):
            f.stop()


if __name__ == "__main__":
    main()
