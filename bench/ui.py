"""Part 13 of bench/run.py: the web UI's server-side render time (issue 23's budget: the run page
of a run with 30,000 events and the runs list with 10,000 runs in <= 150 ms p95).

`herald serve` with one no-op instance; one run of `ui_big_events` events and `ui_runs` runs of
`ui_events_per_run` events loaded through the ingest API by `herald-hostbench load`, the instance's
deliveries drained; then a signed-in session asks each page `ui_requests` times, interleaved, one
request at a time on a keep-alive loopback connection. The time is from sending the request to
the whole HTML page read: the server's render plus a loopback round trip, so an upper bound of
the render time alone.

    python3 bench/run.py --size quick --parts ui
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import time
import urllib.parse

R = None  # bench/run.py, set by it

SIZES = {
    "quick": dict(ui_runs=10000, ui_events_per_run=6, ui_big_events=30000, ui_requests=30),
    "full": dict(ui_runs=10000, ui_events_per_run=6, ui_big_events=30000, ui_requests=100),
}
BUDGET_MS = 150.0


class Session:
    """A signed-in browser, as far as the server can tell: the session cookie on one connection."""

    def __init__(self, url: str, token: str):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        status, headers, body = self.request("GET", "/login")
        login = re.search(r"herald_login=([0-9a-f]+)", headers.get("set-cookie", "")).group(1)
        csrf = re.search(rb'name="csrf" value="([0-9a-f]+)"', body).group(1).decode()
        form = urllib.parse.urlencode({"token": token, "csrf": csrf, "next": "/runs"})
        status, headers, _ = self.request("POST", "/login", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": "herald_login=" + login})
        if status != 303:
            raise RuntimeError("ui bench: signing in answered %d" % status)
        self.cookie = re.search(r"(herald_session=[0-9a-f]+)", headers["set-cookie"]).group(1)

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
        headers["set-cookie"] = "\n".join(r.msg.get_all("Set-Cookie") or [])
        return r.status, headers, data

    def get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        status, _, body = self.request("GET", path, headers={"Cookie": self.cookie})
        ms = (time.perf_counter() - t0) * 1000.0
        if status != 200:
            raise RuntimeError("ui bench: GET %s answered %d" % (path, status))
        return ms, body


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def part_ui(sz):
    from realistic import CALLBACK_MAX_BATCH, hb, noop_instances, wait_delivered
    host = R.Herald("ui-host", noop_instances(1)).start(timeout=300)
    try:
        big = hb("load", "--url", host.url, "--tokens", R.TOKEN, "--tag", "uibig", "--runs", 1,
                 "--events-per-run", sz["ui_big_events"], "--batch", CALLBACK_MAX_BATCH, "--concurrency", 1,
                 "--gzip", 1, timeout=3600)
        small = hb("load", "--url", host.url, "--tokens", R.TOKEN, "--tag", "ui", "--runs", sz["ui_runs"],
                   "--events-per-run", sz["ui_events_per_run"], "--batch", CALLBACK_MAX_BATCH,
                   "--concurrency", 4, "--gzip", 1, timeout=3600)
        events = big["events"] + small["events"]
        R.log("ui: loaded %d + %d runs, %d events" % (big["runs"], small["runs"], events))
        wait_delivered(host.url, events, timeout=1800)
        s = Session(host.url, R.TOKEN)
        pages = {"runs list": "/runs", "runs list, status=failed": "/runs?status=failed",
                 "run page (%d events)" % big["events"]: "/runs/uibig-run000000"}
        _, html = s.get("/runs/uibig-run000000")
        if b"PLAY RECAP" not in html or b"Timeline" not in html:
            raise RuntimeError("ui bench: the run page is not the run page")
        times = {name: [] for name in pages}
        for _ in range(sz["ui_requests"]):
            for name, path in pages.items():
                times[name].append(s.get(path)[0])
        out = {}
        for name, xs in times.items():
            out[name] = {"p50": pct(xs, 50), "p95": pct(xs, 95), "max": max(xs), "bytes": len(s.get(pages[name])[1])}
            R.log("ui: %-30s p50 %7.1f ms  p95 %7.1f ms" % (name, out[name]["p50"], out[name]["p95"]))
    finally:
        host.stop()
        if not os.environ.get("UI_BENCH_KEEP"):
            shutil.rmtree(host.dir, ignore_errors=True)
    return {"runs": sz["ui_runs"] + 1, "big_events": big["events"], "events": events,
            "requests": sz["ui_requests"], "pages": out}


def render(res: dict, targets: list) -> list:
    u = res.get("ui")
    if not u:
        return []
    L = ["## 13. Web UI render time\n",
         "`herald serve` with one no-op instance; %s runs (one of %s events, the others of %d) loaded "
         "through the ingest API, deliveries drained; a signed-in session asks each page %d times, "
         "interleaved, on a keep-alive loopback connection; time from request to the whole HTML page "
         "(the server's render plus a loopback round trip). Budget: ≤ %.0f ms p95.\n" % (
             "{:,}".format(u["runs"]), "{:,}".format(u["big_events"]), SIZES["quick"]["ui_events_per_run"],
             u["requests"], BUDGET_MS),
         "| page | p50 ms | p95 ms | max ms | page bytes | target | |", "|---|---:|---:|---:|---:|---|---|"]
    for name, x in u["pages"].items():
        met = x["p95"] <= BUDGET_MS
        targets.append(("UI %s p95 ≤ %.0f ms" % (name, BUDGET_MS), met))
        L.append("| %s | %.1f | %.1f | %.1f | %s | p95 ≤ %.0f ms | %s |" % (
            name, x["p50"], x["p95"], x["max"], "{:,}".format(x["bytes"]), BUDGET_MS, "met" if met else "**missed**"))
    L.append("")
    return L
