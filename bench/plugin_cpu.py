"""Part 16: the host's CPU per event, per shipped plugin (what a host costs, sink by sink).

For each configuration (ingest alone with no instance, the no-op plugin, each of the six shipped
plugins alone, and the six together, as part 11 runs them) a fresh `herald serve` with one tenant
receives `pc_runs` whole runs from `herald-hostbench load` (a playbook start, task starts, per host
`runner_on_start` and a result, every tenth run with a failed host, the PLAY RECAP; gzip, batches of
20 events of one run as the callback sends them, 4 connections). The host's CPU (utime + stime of
the process, from /proc) is read just before the first request and again once every instance has
handled every event (`herald_deliveries_total{outcome="ok"}`, polled every 250 ms), and divided by
the events. The sinks are part 10's stand-ins (`herald-hostbench sink`: HTTP 2xx, a UDP socket),
in their own process, so their CPU is not counted. Configurations rotate between rounds.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import realistic

R = None  # bench/run.py, set by it

SIZES = {
    "quick": dict(pc_runs=100, pc_events_per_run=100, pc_rounds=1),
    "full": dict(pc_runs=500, pc_events_per_run=100, pc_rounds=5),
}

SHIPPED = ["webhook", "prometheus", "pagerduty", "slack", "grafana", "syslog"]


def shipped_blocks(http_port: int, udp_port: int) -> dict:
    """Part 10's six instances of tenant t00, one herald.toml block each, by plugin."""
    text = R.sixty_instances(1, http_port, udp_port)
    blocks, name = {}, None
    for line in text.splitlines():
        # An instance's own table starts its block; `[plugins.t00-x.config]` stays in it.
        m = re.fullmatch(r"\[plugins\.t00-([a-z_]+)\]", line.strip())
        if m:
            name = m.group(1)
            blocks[name] = ""
        if name:
            blocks[name] += line + "\n"
    missing = set(SHIPPED) - set(blocks)
    if missing:
        raise RuntimeError("part 10's configuration has no block for %s" % sorted(missing))
    return blocks


def configurations(http_port: int, udp_port: int) -> list:
    """(name, herald.toml body, instances) in the order of the table."""
    blocks = shipped_blocks(http_port, udp_port)
    out = [("ingest alone (no instance)", "", 0),
           ("no-op plugin", realistic.noop_instances(1, tenant="t00"), 1)]
    out += [(name, blocks[name], 1) for name in SHIPPED]
    out.append(("the six together", "\n".join(blocks[n] for n in SHIPPED), len(SHIPPED)))
    return out


def one(sz, name: str, body: str, instances: int, tag: str) -> dict:
    host = R.Herald("plugin-cpu", body, tenants={"t00": R.TOKEN}).start(timeout=300)
    try:
        realistic.settle()
        cpu0 = realistic.proc_cpu_s(host.proc.pid)
        t0 = time.perf_counter()
        load = realistic.hb("load", "--url", host.url, "--tokens", R.TOKEN, "--runs", sz["pc_runs"],
                            "--events-per-run", sz["pc_events_per_run"], "--batch", realistic.CALLBACK_BATCH,
                            "--gzip", 1, "--concurrency", 4, "--tag", tag)
        events = load["events"]
        deadline = time.perf_counter() + 300
        while instances and realistic.delivered(host.url) < events * instances:
            if time.perf_counter() > deadline:
                raise RuntimeError("%s: only %.0f of %d deliveries after 300 s" % (
                    name, realistic.delivered(host.url), events * instances))
            time.sleep(0.25)
        seconds = time.perf_counter() - t0
        cpu = realistic.proc_cpu_s(host.proc.pid) - cpu0
    finally:
        host.stop()
    R.log("plugin-cpu %-28s %6d events  host CPU %.2f s = %5.1f µs/event  (%.1f s)" % (
        name, events, cpu, cpu / events * 1e6, seconds))
    return {"events": events, "cpu_s": cpu, "seconds": seconds, "us_per_event": cpu / events * 1e6}


def part_plugin_cpu(sz):
    http_port, udp_port = R.free_port(), R.free_port()
    sink = subprocess.Popen([R.HOSTBENCH, "sink", "--port", str(http_port), "--udp-port", str(udp_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    configs = configurations(http_port, udp_port)
    rounds = []
    try:
        for r in range(sz["pc_rounds"]):
            # Rotated, so no configuration always runs first (or right after the heaviest).
            k = r % len(configs)
            got = {}
            for name, body, instances in configs[k:] + configs[:k]:
                got[name] = one(sz, name, body, instances, "pc%d%s" % (r, os.urandom(3).hex()))
            rounds.append(got)
    finally:
        sink.terminate()
        sink.wait()
    names = [c[0] for c in configs]
    out = {"runs": sz["pc_runs"], "events_per_run": sz["pc_events_per_run"], "order": names, "rounds": rounds,
           "us": {n: R.stats([g[n]["us_per_event"] for g in rounds]) for n in names}}
    base = names[0]
    out["added_us"] = {n: R.stats([g[n]["us_per_event"] - g[base]["us_per_event"] for g in rounds])
                       for n in names[1:]}
    # What the six alone add, summed, beside what they add together (paired per round).
    out["six_alone_summed_added_us"] = R.stats([
        sum(g[n]["us_per_event"] - g[base]["us_per_event"] for n in SHIPPED) for g in rounds])
    return out


def render(res: dict, targets: list) -> list:
    p = res.get("plugin-cpu")
    if not p:
        return []
    row, HEAD = R.row, R.HEAD
    meta = p.get("_meta") or {}
    L = ["## 16. The host's CPU per event, plugin by plugin\n",
         "What a host spends per event for each shipped plugin, to size one: a fresh `herald serve` with one "
         "tenant and one configuration at a time (ingest alone; the no-op plugin; each shipped plugin alone, "
         "configured as in part 10; the six together, as part 11 runs them), %d runs of %d events each from "
         "`herald-hostbench load` (whole runs: start, task starts, `runner_on_start` and a result per host, a "
         "failed host in every tenth run, the PLAY RECAP; gzip, batches of 20 events as the callback sends "
         "them, 4 connections). **Host CPU** is `herald serve`'s utime + stime from /proc, from just before "
         "the first request until every instance has handled every event, per event; it **includes** ingest, "
         "the journal, dispatch, the plugin's wasm code, its HTTP or UDP sends and the polling of /metrics "
         "every 250 ms, and **excludes** the sinks (stand-ins in the load generator's process). %d round(s), "
         "configurations rotated. Measured %s with %s.\n" % (
             p["runs"], p["events_per_run"], len(p["rounds"]), meta.get("date", "?"), meta.get("commit", "?")),
         HEAD]
    for n in p["order"]:
        L.append(row("%s: host CPU µs per event" % n, p["us"][n], digits=1))
        if n in p["added_us"]:
            L.append(row("%s: added to ingest alone, µs per event" % n, p["added_us"][n], digits=1))
    L.append(row("the six alone, their added CPU summed, µs per event", p["six_alone_summed_added_us"], digits=1))
    L.append("")
    return L
