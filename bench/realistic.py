"""The parts of the suite that measure what users run (issue 24), driven by bench/run.py.

Each part starts a real `herald serve` (the binary under test: run.HERALD, any build) configured
in herald.toml as a user would, sends events as the callback sends them (NDJSON batches of the
callback's sizes, gzip by its rule) from `herald-hostbench`, and observes the host from outside
(its 202s, its /metrics, its query API, /proc). See bench/README.md, "What users see".

    python3 bench/run.py --size quick --parts instances,e2e,queries,rss

`R` is bench/run.py's module (set by run.py on import), whose helpers, paths and binaries these
parts use, so that ab.py can swap the binaries under both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

R = None  # bench/run.py, set by it

INSTANCE_COUNTS = [0, 1, 6, 60]
E2E_NOOP_COUNTS = [1, 6, 60]
EVENT_KIB = [1, 4, 16, 64]
CALLBACK_BATCH = 20  # events per request a playbook's callback sends (issue 24's measurement)
CALLBACK_MAX_BATCH = 500  # the callback's batch_max_events: a backlog is sent in batches this size

SIZES = {
    "quick": dict(inst_events=10000, inst_max_seconds=10, inst_rounds=1, inst_size_budget_mib=16, e2e_events=20000, e2e_rounds=1,
                  e2e_webhook_events=2000, e2e_slow_sink_events=500, e2e_latency_seconds=5, q_runs=1000, q_events_per_run=100,
                  q_requests=50, rss_events=20000, rss_max_seconds=15, rss_rate=40000, rss_tenants=10, pbh_groups=3, pbh_rounds=2),
    "full": dict(inst_events=100000, inst_max_seconds=30, inst_rounds=3, inst_size_budget_mib=128, e2e_events=100000, e2e_rounds=3,
                 e2e_webhook_events=30000, e2e_slow_sink_events=3000, e2e_latency_seconds=20, q_runs=10000, q_events_per_run=100,
                 q_requests=200, rss_events=400000, rss_max_seconds=60, rss_rate=40000, rss_tenants=10, pbh_groups=10, pbh_rounds=6),
}

GOALS = {
    "ingest_60_events_per_s": 40000,  # with 60 no-op instances
    "ingest_60_vs_1": 0.5,
    "deliveries_per_s": 200000,  # to no-op instances, end to end
    "webhook_vs_sink": 0.9,
    "query_p95_ms": 20.0,  # 10,000 runs / 1M events
}


# ------------------------------------------------------------ the host --

def noop_instances(k: int, tenant: str = "bench", prefix: str = "noop") -> str:
    """`k` no-op plugin instances of one tenant, as a user writes them in herald.toml."""
    comp = json.dumps(R.NOOP)
    return "".join('\n[plugins.%s%02d]\ntenant = "%s"\ncomponent = %s\n' % (prefix, i, tenant, comp)
                   for i in range(k))


def metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        return r.read().decode()


def metric_sum(text: str, name: str, **labels) -> float:
    """Sum of the series `name` whose labels include `labels` (values are prefixes if they end in *)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        ok = True
        for k, v in labels.items():
            if v.endswith("*"):
                ok = ok and ('%s="%s' % (k, v[:-1])) in line
            else:
                ok = ok and ('%s="%s"' % (k, v)) in line
        if ok:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                pass
    return total


def delivered(url: str, plugin: str = "*") -> float:
    return metric_sum(metrics(url), "herald_deliveries_total", plugin=plugin, outcome="ok")


def wait_delivered(url: str, expected: float, timeout: float = 900.0, plugin: str = "*") -> float:
    """Waits (bounded) until /metrics counts `expected` ok deliveries; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if delivered(url, plugin) >= expected:
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise RuntimeError("only %.0f of %.0f deliveries after %.0f s" % (delivered(url, plugin), expected, timeout))


def settle():
    """Writes back what earlier steps left dirty (a stopped host's journal, a deleted data
    directory) before a measurement, so its fsyncs do not wait behind another step's pages."""
    os.sync()
    time.sleep(0.2)


def hb(*args, timeout=1800):
    return R.hostbench(*args, timeout=timeout)


# -------------------------------------------------- 7. ingest vs instances --

def part_instances(sz):
    """Ingest through `herald serve` with 0, 1, 6, 60 no-op instances, at the callback's batch
    sizes with gzip, beside a like-for-like SQLite loop; then event sizes 1-64 KiB (0 instances)."""
    n = sz["inst_events"]
    rounds = []
    for r in range(sz["inst_rounds"]):
        order = INSTANCE_COUNTS[r % len(INSTANCE_COUNTS):] + INSTANCE_COUNTS[:r % len(INSTANCE_COUNTS)]
        got = {"by_instances": {}, "sqlite": {}, "by_size": {}, "sqlite_by_size": {}}
        for k in order:
            host = R.Herald("instances-host", noop_instances(k)).start(timeout=300)
            try:
                row = {}
                for b in (CALLBACK_BATCH, CALLBACK_MAX_BATCH):
                    settle()
                    before = metrics(host.url)
                    cpu0 = thread_cpu_s(host.proc.pid)
                    x = hb("ingest", "--url", host.url, "--tokens", R.TOKEN, "--events", n, "--batch", b,
                           "--concurrency", 4, "--gzip", 1, "--event-bytes", 1024,
                           "--max-seconds", sz["inst_max_seconds"])
                    cpu1 = thread_cpu_s(host.proc.pid)
                    after = metrics(host.url)
                    # Ingest's cost per event: its own threads' CPU over the measurement,
                    # whatever the delivery threads took beside it.
                    x["ingest_cpu_us"] = (cpu1["ingest"] - cpu0["ingest"]) * 1e6 / max(1, x["events"])
                    x["delivery_cpu_us"] = (cpu1["delivery"] - cpu0["delivery"]) * 1e6 / max(1, x["events"])
                    if x["failed"]:
                        raise RuntimeError("ingest: %d events were not accepted" % x["failed"])
                    batches = (metric_sum(after, "herald_ingest_batches_total", status="202")
                               - metric_sum(before, "herald_ingest_batches_total", status="202"))
                    commits = (metric_sum(after, "herald_journal_commits_total", result="ok")
                               - metric_sum(before, "herald_journal_commits_total", result="ok"))
                    x["batches_per_commit"] = batches / commits if commits else None
                    if k:
                        # Not the next measurement's backlog: wait until every instance has it all.
                        x["drain_wait_s"] = wait_delivered(host.url, expected_deliveries(host.url, k))
                    row[str(b)] = x
                    R.log("instances %2d, batch %3d: %6.0f events/s (%.1f batches/commit)" % (
                        k, b, x["events_per_s"], x["batches_per_commit"] or 0))
                    if k == 0:
                        # The loop right after the host's own measurement (the host is idle now,
                        # with no instance), so both see the same disk: the machine's fsync
                        # latency moves by several times over minutes when it is shared.
                        group = max(1, round(x["batches_per_commit"] or 1))
                        settle()
                        sq = hb("sqlite", "--dir", os.path.join(R.WORK, "sqlite"), "--events", n, "--batch", b,
                                "--group", group, "--event-bytes", 1024)
                        got["sqlite"][str(b)] = sq
                        R.log("bare SQLite, batch %3d, %d batch(es)/transaction: %6.0f events/s" % (
                            b, sq["group"], sq["events_per_s"]))
                if k == 0:
                    # What gzip costs the host: the same batches of 20, uncompressed.
                    settle()
                    row["20-plain"] = hb("ingest", "--url", host.url, "--tokens", R.TOKEN, "--events", n, "--batch",
                                         CALLBACK_BATCH, "--concurrency", 4, "--gzip", 0, "--event-bytes", 1024,
                                         "--max-seconds", sz["inst_max_seconds"])
                    R.log("instances  0, batch  20 without gzip: %6.0f events/s" % row["20-plain"]["events_per_s"])
                got["by_instances"][str(k)] = row
            finally:
                host.stop()
        # Event sizes, the callback's batches (at most 1 MiB before gzip), no instance: so the
        # loop's grouping is the host's own (with instances, outcome writes are commits too).
        host = R.Herald("instances-size", noop_instances(0)).start(timeout=300)
        try:
            for kib in EVENT_KIB:
                m = min(n, sz["inst_size_budget_mib"] * 1024 // kib)
                settle()
                before = metrics(host.url)
                x = hb("ingest", "--url", host.url, "--tokens", R.TOKEN, "--events", m, "--batch", CALLBACK_BATCH,
                       "--concurrency", 4, "--gzip", 1, "--event-bytes", kib * 1024,
                       "--max-seconds", sz["inst_max_seconds"])
                after = metrics(host.url)
                batches = (metric_sum(after, "herald_ingest_batches_total", status="202")
                           - metric_sum(before, "herald_ingest_batches_total", status="202"))
                commits = (metric_sum(after, "herald_journal_commits_total", result="ok")
                           - metric_sum(before, "herald_journal_commits_total", result="ok"))
                x["batches_per_commit"] = batches / commits if commits else None
                got["by_size"][str(kib)] = x
                settle()
                s = hb("sqlite", "--dir", os.path.join(R.WORK, "sqlite"), "--events", m, "--batch", CALLBACK_BATCH,
                       "--group", max(1, round(x["batches_per_commit"] or 1)), "--event-bytes", kib * 1024)
                got["sqlite_by_size"][str(kib)] = s
                R.log("%2d KiB events, 0 instances: herald %6.0f events/s (%.0f MiB/s), bare SQLite %6.0f" % (
                    kib, x["events_per_s"], x["events_per_s"] * x["avg_event_bytes"] / 2**20, s["events_per_s"]))
        finally:
            host.stop()
        rounds.append(got)
    return summarise_instances(sz, rounds)


def thread_cpu_s(pid: int) -> dict:
    """CPU seconds (user + system) of `pid`'s threads, summed by role: "delivery" for the
    delivery runtime's threads (named herald-delivery, its blocking threads too), "ingest"
    for every other thread (HTTP, validation, the journal's writer and checkpoints)."""
    out = {"ingest": 0.0, "delivery": 0.0}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out["delivery" if name.startswith("herald-deliver") else "ingest"] += cpu
    return out


def expected_deliveries(url: str, k: int) -> float:
    """What /metrics must count once each of `k` instances has every event: a host is started
    fresh per configuration, so that is k × everything it ingested."""
    return k * metric_sum(metrics(url), "herald_events_ingested_total")


def summarise_instances(sz, rounds):
    st = R.stats
    out = {"events": sz["inst_events"], "max_seconds": sz.get("inst_max_seconds"), "rounds": rounds, "counts": INSTANCE_COUNTS,
           "batches": [CALLBACK_BATCH, CALLBACK_MAX_BATCH], "sizes_kib": EVENT_KIB, "by_instances": {},
           "sqlite": {}, "by_size": {}}
    for b in (CALLBACK_BATCH, CALLBACK_MAX_BATCH):
        b = str(b)
        out["sqlite"][b] = st([g["sqlite"][b]["events_per_s"] for g in rounds])
        for k in INSTANCE_COUNTS:
            k = str(k)
            xs = [g["by_instances"][k][b] for g in rounds]
            out["by_instances"].setdefault(k, {})[b] = {
                "events_per_s": st([x["events_per_s"] for x in xs]),
                "vs_sqlite": st([x["events_per_s"] / g["sqlite"][b]["events_per_s"] for x, g in zip(xs, rounds)]),
                "vs_1": st([x["events_per_s"] / g["by_instances"]["1"][b]["events_per_s"]
                            for x, g in zip(xs, rounds)]),
                "request_ms_p50": st([x["request_ms"]["p50"] for x in xs]),
                "batches_per_commit": st([x.get("batches_per_commit") for x in xs]),
                "ingest_cpu_us": st([x.get("ingest_cpu_us") for x in xs]),
                "delivery_cpu_us": st([x.get("delivery_cpu_us") for x in xs]),
                "wire_bytes_per_event": xs[0]["wire_bytes_per_event"],
                "avg_event_bytes": xs[0]["avg_event_bytes"],
            }
    plain = [g["by_instances"]["0"].get("20-plain") for g in rounds]
    if all(plain):
        out["gzip_cost"] = {
            "plain_events_per_s": st([x["events_per_s"] for x in plain]),
            "gzip_vs_plain": st([g["by_instances"]["0"]["20"]["events_per_s"] / x["events_per_s"]
                                 for g, x in zip(rounds, plain)]),
        }
    for kib in EVENT_KIB:
        kib = str(kib)
        xs = [g["by_size"][kib] for g in rounds]
        out["by_size"][kib] = {
            "events": xs[0]["events"],
            "events_per_s": st([x["events_per_s"] for x in xs]),
            "mib_per_s": st([x["events_per_s"] * x["avg_event_bytes"] / 2**20 for x in xs]),
            "sqlite_events_per_s": st([g["sqlite_by_size"][kib]["events_per_s"] for g in rounds]),
            "vs_sqlite": st([x["events_per_s"] / g["sqlite_by_size"][kib]["events_per_s"] for x, g in zip(xs, rounds)]),
            "avg_event_bytes": xs[0]["avg_event_bytes"],
            "wire_bytes_per_event": xs[0]["wire_bytes_per_event"],
        }
    return out


# ------------------------------------------------------ 8. end to end --

WEBHOOK_SHARDS = 4  # the second webhook row: four streams, so four requests in flight (different runs)
# The third webhook row: a receiver that waits 1 ms before each answer (its own work, or a network away), against
# the same receiver alone; what a webhook instance's own cost is beside a real receiver's.
SLOW_SINK_US = 1000


def webhook_instance(sink_port: int, shards: int = 1) -> str:
    return """
[plugins.hook]
tenant = "bench"
component = %s
shards = %d
allow_http = ["http://127.0.0.1:%d"]
[plugins.hook.config]
url = "http://127.0.0.1:%d/events"
""" % (json.dumps(os.path.join(R.PLUGINS, "webhook.wasm")), shards, sink_port, sink_port)


def part_e2e(sz):
    """Deliveries end to end inside `herald serve` while the events are being ingested."""
    rounds = []
    for r in range(sz["e2e_rounds"]):
        got = {"noop": {}}
        order = E2E_NOOP_COUNTS[r % 3:] + E2E_NOOP_COUNTS[:r % 3]
        for k in order:
            host = R.Herald("e2e-host", noop_instances(k)).start(timeout=300)
            try:
                x = hb("e2e", "--url", host.url, "--tokens", R.TOKEN, "--events", sz["e2e_events"],
                       "--batch", CALLBACK_BATCH, "--concurrency", 4, "--gzip", 1, "--event-bytes", 1024,
                       "--instances", k, "--prefix", "noop", "--timeout", 1200)
            finally:
                host.stop()
            got["noop"][str(k)] = x
            R.log("e2e %2d no-op instance(s): %s deliveries/s, ingest %.0f events/s, all delivered in %s s" % (
                k, "%.0f" % x["deliveries_per_s"] if x.get("deliveries_per_s") else "INCOMPLETE",
                x["ingest_events_per_s"], "%.1f" % x["all_delivered_s"] if x.get("all_delivered_s") else "?"))
        got["webhook"] = webhook_e2e("e2e-webhook", sz["e2e_webhook_events"])
        # The same with `shards = 4`: four requests in flight, against the sink
        # alone over as many connections.
        got["webhook_shards"] = webhook_e2e("e2e-webhook-shards", sz["e2e_webhook_events"], WEBHOOK_SHARDS,
                                            "--sink-connections", WEBHOOK_SHARDS)
        # A receiver that waits 1 ms before each answer (tokio's timer: ~2 ms a request in all).
        got["webhook_slow_sink"] = webhook_e2e("e2e-webhook-slow", sz["e2e_slow_sink_events"], 1,
                                               "--sink-delay-us", SLOW_SINK_US)
        # Latency at a steady rate, callback-sized gzip batches, from the moment a request is sent.
        sink_port = R.free_port()
        host = R.Herald("e2e-latency", webhook_instance(sink_port)).start(timeout=300)
        try:
            la = hb("latency", "--url", host.url, "--tokens", R.TOKEN, "--sink-port", sink_port, "--rate", 1000,
                    "--seconds", sz["e2e_latency_seconds"], "--batch", CALLBACK_BATCH, "--gzip", 1)
        finally:
            host.stop()
        got["latency"] = la
        R.log("e2e latency at 1,000 events/s, batches of %d: sent -> sink p50 %.1f ms p99 %.1f ms" % (
            CALLBACK_BATCH, la["send_to_sink_ms"]["p50"], la["send_to_sink_ms"]["p99"]))
        rounds.append(got)
    return summarise_e2e(sz, rounds)


def webhook_e2e(name: str, events: int, shards: int = 1, *sink_args) -> dict:
    """One webhook instance (`shards`) posting to the load generator's sink end to end, then
    that sink alone (`sink_args`: its connections, its delay); the result of `hostbench e2e`."""
    sink_port = R.free_port()
    host = R.Herald(name, webhook_instance(sink_port, shards)).start(timeout=300)
    try:
        x = hb("e2e", "--url", host.url, "--tokens", R.TOKEN, "--events", events,
               "--batch", CALLBACK_BATCH, "--concurrency", 4, "--gzip", 1, "--event-bytes", 1024,
               "--instances", 1, "--sink-port", sink_port, *sink_args, "--timeout", 1200)
    finally:
        host.stop()
    R.log("%s (%s): %s events/s delivered, the sink alone %.0f requests/s" % (
        name, " ".join(str(a) for a in sink_args) or "one connection",
        "%.0f" % x["events_fully_delivered_per_s"] if x.get("events_fully_delivered_per_s") else "INCOMPLETE",
        x["sink_alone_per_s"]))
    return x


def vs_sink(xs, bases, key="sink_alone_per_s"):
    """A webhook's events delivered/s over the sink alone (`key` of `bases`), paired per round."""
    return R.stats([x["events_fully_delivered_per_s"] / b[key] for x, b in zip(xs, bases)
                    if x.get("events_fully_delivered_per_s")])


def summarise_webhook(xs):
    """Rounds of one webhook row (`hostbench e2e` results): its rate, its sink alone, their ratio."""
    return {
        "complete": all(x["complete"] for x in xs),
        "events_per_s": R.stats([x.get("events_fully_delivered_per_s") for x in xs]),
        "sink_alone_per_s": R.stats([x["sink_alone_per_s"] for x in xs]),
        "vs_sink": vs_sink(xs, xs),
    }


def summarise_e2e(sz, rounds):
    st = R.stats
    out = {"events": sz["e2e_events"], "webhook_events": sz["e2e_webhook_events"], "rounds": rounds,
           "noop": {}, "latency_seconds": sz["e2e_latency_seconds"]}
    for k in E2E_NOOP_COUNTS:
        xs = [g["noop"][str(k)] for g in rounds]
        out["noop"][str(k)] = {
            "complete": all(x["complete"] for x in xs),
            "deliveries_per_s": st([x.get("deliveries_per_s") for x in xs]),
            "events_fully_delivered_per_s": st([x.get("events_fully_delivered_per_s") for x in xs]),
            "ingest_events_per_s": st([x["ingest_events_per_s"] for x in xs]),
            "delivered_when_ingest_ended": st([x["delivered_when_ingest_ended"] for x in xs]),
            "drain_after_ingest_per_s": st([x.get("drain_after_ingest_per_s") for x in xs]),
        }
    ws = [g["webhook"] for g in rounds]
    out["webhook"] = summarise_webhook(ws)
    if all("sink_alone_in_process_per_s" in x for x in ws):
        # The sink alone from a task in its own process (the baseline of runs before 2026-12-08).
        out["webhook"]["sink_alone_in_process_per_s"] = st([x["sink_alone_in_process_per_s"] for x in ws])
        out["webhook"]["vs_sink_in_process"] = vs_sink(ws, ws, "sink_alone_in_process_per_s")
    if all("webhook_shards" in g for g in rounds):
        ss = [g["webhook_shards"] for g in rounds]
        out["webhook_shards"] = {
            "shards": WEBHOOK_SHARDS, **summarise_webhook(ss),
            # Against the one-connection sink of the same round.
            "vs_sink_one_connection": vs_sink(ss, ws),
        }
    if all("webhook_slow_sink" in g for g in rounds):
        sl = [g["webhook_slow_sink"] for g in rounds]
        out["webhook_slow_sink"] = {"delay_us": SLOW_SINK_US, "events": sz["e2e_slow_sink_events"],
                                    **summarise_webhook(sl)}
    ls = [g["latency"] for g in rounds]
    out["latency"] = {
        "received": sum(x["received"] for x in ls), "events": sum(x["events"] for x in ls),
        "send_p50": st([x["send_to_sink_ms"]["p50"] for x in ls]),
        "send_p99": st([x["send_to_sink_ms"]["p99"] for x in ls]),
        "ack_p50": st([x["ack_to_sink_ms"]["p50"] for x in ls]),
        "ack_p99": st([x["ack_to_sink_ms"]["p99"] for x in ls]),
        "achieved_rate": st([x["achieved_rate"] for x in ls]),
    }
    return out


# ------------------------------------------------------------ 9. queries --

def part_queries(sz):
    """The query API over q_runs runs of q_events_per_run events, loaded through the ingest API."""
    host = R.Herald("queries-host", noop_instances(1)).start(timeout=300)
    tag = "q%x" % int(time.time())
    try:
        load = hb("load", "--url", host.url, "--tokens", R.TOKEN, "--tag", tag, "--runs", sz["q_runs"],
                  "--events-per-run", sz["q_events_per_run"], "--batch", CALLBACK_MAX_BATCH, "--concurrency", 4,
                  "--gzip", 1, timeout=7200)
        R.log("queries: loaded %d runs, %d events (%.0f events/s)" % (load["runs"], load["events"],
                                                                      load["events_per_s"]))
        # Queries on a quiet host: the instance has delivered everything.
        drain = wait_delivered(host.url, load["events"], timeout=3600)
        db = os.path.join(host.dir, "data")
        size = sum(os.path.getsize(os.path.join(db, f)) for f in os.listdir(db)
                   if os.path.isfile(os.path.join(db, f)))
        q = hb("query", "--url", host.url, "--tokens", R.TOKEN, "--tag", tag, "--runs", sz["q_runs"],
               "--requests", sz["q_requests"], timeout=3600)
        for name, x in q["endpoints"].items():
            R.log("queries: %-30s p50 %7.1f ms  p95 %7.1f ms" % (name, x["p50"], x["p95"]))
    finally:
        host.stop()
        shutil.rmtree(host.dir, ignore_errors=True)
    return {"runs": sz["q_runs"], "events_per_run": sz["q_events_per_run"], "events": load["events"], "load": load, "drain_s": drain,
            "journal_bytes": size, "requests": sz["q_requests"], "endpoints": q["endpoints"]}


# ---------------------------------------------------------------- 10. RSS --

def part_rss(sz):
    """RSS of `herald serve` with 10 tenants × the six shipped plugins (60 instances): idle, under
    load at the advertised ingest rate, and after every instance has handled the events."""
    n = sz["rss_tenants"]
    http_port, udp_port = R.free_port(), R.free_port()
    sink = subprocess.Popen([R.HOSTBENCH, "sink", "--port", str(http_port), "--udp-port", str(udp_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tenants = {"t%02d" % t: "token-t%02d" % t for t in range(n)}
    out = {"tenants": n, "instances": 6 * n, "rate": sz["rss_rate"], "events": sz["rss_events"],
           "max_seconds": sz["rss_max_seconds"]}
    try:
        host = R.Herald("rss-host", R.sixty_instances(n, http_port, udp_port), tenants=tenants).start(timeout=600)
        try:
            time.sleep(2.0)
            out["idle_kib"] = R.rss_kib(host.proc.pid)["VmRSS"]
            samples = []
            done = threading.Event()

            def sample():
                while not done.is_set():
                    try:
                        samples.append(R.rss_kib(host.proc.pid)["VmRSS"])
                    except OSError:
                        return
                    time.sleep(0.05)

            th = threading.Thread(target=sample)
            th.start()
            try:
                load = hb("ingest", "--url", host.url, "--tokens", ",".join(tenants.values()), "--events",
                          sz["rss_events"], "--batch", CALLBACK_BATCH, "--concurrency", 8, "--gzip", 1,
                          "--event-bytes", 1024, "--rate", sz["rss_rate"], "--max-seconds", sz["rss_max_seconds"])
            finally:
                done.set()
                th.join()
            out["load"] = {k: load[k] for k in ("events", "events_per_s", "failed", "offered_rate")}
            out["load_peak_kib"] = max(samples) if samples else None
            out["load_median_kib"] = sorted(samples)[len(samples) // 2] if samples else None
            # Every event reaches its tenant's six instances.
            expected = 6 * load["events"]
            t0 = time.perf_counter()
            peak_drain = 0
            while time.perf_counter() - t0 < 1800:
                peak_drain = max(peak_drain, R.rss_kib(host.proc.pid)["VmRSS"])
                if delivered(host.url) >= expected:
                    break
                time.sleep(0.2)
            out["drain_s"] = time.perf_counter() - t0
            out["delivered"] = delivered(host.url)
            out["drain_peak_kib"] = peak_drain
            time.sleep(2.0)
            out["after_kib"] = R.rss_kib(host.proc.pid)["VmRSS"]
            out["hwm_kib"] = R.rss_kib(host.proc.pid)["VmHWM"]
            R.log("RSS: idle %.1f MiB, under load (%.0f events/s) peak %.1f MiB, after %.1f MiB" % (
                out["idle_kib"] / 1024, load["events_per_s"], (out["load_peak_kib"] or 0) / 1024,
                out["after_kib"] / 1024))
        finally:
            host.stop()
    finally:
        sink.terminate()
        sink.wait()
    return out


# ----------------------------------------------- 11. a playbook, as configured --

# Appended to a copy of the callback for part 11: the thread CPU of each hook (`v2_*` method)
# and of the copy Ansible makes of the result just before calling it (`as_callback_task_result`,
# one per callback plugin), written as JSON at exit to $HERALD_BENCH_TIMINGS. The shipper
# thread's CPU is not in it (only the calling thread's), so the part also reports the
# controller's whole added CPU.
TIMING_CODE = r"""

# ---- appended by bench/realistic.py (part 11): per-hook thread CPU, with Ansible's result copy ----
def _herald_bench_timed():
    import atexit as _ae, json as _j, os as _o, time as _t
    stats, pending, pid = {}, [0], _o.getpid()
    try:
        from ansible.executor.task_result import _RawTaskResult as _Raw
        _orig = _Raw.as_callback_task_result

        def _copy(self, *a, **k):
            t0 = _t.thread_time_ns()
            try:
                return _orig(self, *a, **k)
            finally:
                pending[0] = _t.thread_time_ns() - t0
        _Raw.as_callback_task_result = _copy
    except (ImportError, AttributeError):  # ansible-core < 2.19: no per-callback copy to time
        pass
    for name, fn in list(vars(CallbackModule).items()):
        if not (name.startswith("v2_") and callable(fn)):
            continue

        def wrap(fn=fn, name=name):
            def timed(self, *a, **k):
                copy_ns, pending[0] = pending[0], 0
                t0 = _t.thread_time_ns()
                try:
                    return fn(self, *a, **k)
                finally:
                    s = stats.setdefault(name, [0, 0, 0])
                    s[0] += 1
                    s[1] += _t.thread_time_ns() - t0
                    s[2] += copy_ns
            timed.__name__ = name
            return timed
        setattr(CallbackModule, name, wrap())

    def dump():
        out = _o.environ.get("HERALD_BENCH_TIMINGS")
        if out and _o.getpid() == pid:
            with open(out, "w") as f:
                _j.dump(stats, f)
    _ae.register(dump)


_herald_bench_timed()
"""


def timed_callback_dir(d: str) -> str:
    """A callback directory with the callback as shipped plus TIMING_CODE."""
    out = os.path.join(d, "timed-callback")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(R.CALLBACK_DIR, "herald.py")) as f:
        src = f.read()
    with open(os.path.join(out, "herald.py"), "w") as f:
        f.write(src + TIMING_CODE)
    return out


def proc_cpu_s(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def part_playbook_host(sz):
    """The bench playbook (loops, handlers, failures, set_stats over 20 hosts) without a callback
    and with Herald as a user configures it: the callback, and the host with the six shipped
    plugins pointed at local stand-in sinks. Controller CPU, the host's CPU (until its instances
    have delivered the run), and the hook's own CPU per event kind from inside the controller."""
    d = os.path.join(R.WORK, "playbook-host")
    shutil.rmtree(d, ignore_errors=True)
    pb = R.write_playbook(d, sz["pb_hosts"], sz["pbh_groups"])
    cb_dir = timed_callback_dir(d)
    http_port, udp_port = R.free_port(), R.free_port()
    sink = subprocess.Popen([R.HOSTBENCH, "sink", "--port", str(http_port), "--udp-port", str(udp_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = R.Herald("playbook-host-serve", R.sixty_instances(1, http_port, udp_port),
                    tenants={"t00": R.TOKEN}).start(timeout=300)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "HERALD_", "ARA_"))}
    base.update(ANSIBLE_CONFIG=os.path.join(d, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                PATH=os.path.join(R.VENV, "bin") + ":" + base.get("PATH", ""))
    cmd = [os.path.join(R.VENV, "bin", "ansible-playbook"), pb]
    rounds = []
    try:
        R.log("playbook-host: warm-up run (page cache)")
        R.run_playbook(cmd, dict(base), d)
        for r in range(sz["pbh_rounds"]):
            got = {}
            for c in (("none", "herald") if r % 2 == 0 else ("herald", "none")):
                env = dict(base)
                if c == "herald":
                    timings = os.path.join(d, "timings-%d.json" % r)
                    env.update(ANSIBLE_CALLBACK_PLUGINS=cb_dir, ANSIBLE_CALLBACKS_ENABLED="herald",
                               HERALD_TOKEN=R.TOKEN, HERALD_URL=host.url,
                               HERALD_SPOOL_DIR=os.path.join(d, "spool-%d" % r), HERALD_BENCH_TIMINGS=timings)
                    ingested = metric_sum(metrics(host.url), "herald_events_ingested_total")
                    cpu0 = proc_cpu_s(host.proc.pid)
                wall, tree, ctl = R.run_playbook(cmd, env, d)
                x = {"wall": wall, "cpu": tree, "controller_cpu": ctl}
                if c == "herald":
                    # The run's events are in (the callback flushes before it exits); now until the
                    # six instances have delivered them all.
                    now = metric_sum(metrics(host.url), "herald_events_ingested_total")
                    x["events"] = now - ingested
                    wait_delivered(host.url, 6 * now, timeout=600)
                    x["host_cpu"] = proc_cpu_s(host.proc.pid) - cpu0
                    with open(timings) as f:
                        x["hooks"] = json.load(f)
                got[c] = x
                R.log("playbook-host round %d %-6s wall %6.2f s  controller cpu %6.2f s%s" % (
                    r, c, wall, ctl or 0, "  host cpu %.2f s, %d events" % (x["host_cpu"], x["events"])
                    if c == "herald" else ""))
            rounds.append(got)
    finally:
        host.stop()
        sink.terminate()
        sink.wait()
    return summarise_playbook_host(sz, rounds)


def summarise_playbook_host(sz, rounds):
    st = R.stats
    us = 1e6
    out = {"hosts": sz["pb_hosts"], "tasks": 10 * sz["pbh_groups"], "rounds": rounds}
    h = [g["herald"] for g in rounds]
    n = [g["none"] for g in rounds]
    out["events"] = st([x["events"] for x in h])
    for key in ("wall", "cpu", "controller_cpu"):
        out["none_" + key] = st([x[key] for x in n])
        out["herald_" + key] = st([x[key] for x in h])
        out["ratio_" + key] = st([a[key] / b[key] for a, b in zip(h, n)])
    out["host_cpu"] = st([x["host_cpu"] for x in h])
    out["host_cpu_per_event_us"] = st([x["host_cpu"] / x["events"] * us for x in h])
    out["added_controller_per_event_us"] = st([(a["controller_cpu"] - b["controller_cpu"]) / a["events"] * us
                                              for a, b in zip(h, n)])
    out["host_vs_controller_cpu"] = st([a["host_cpu"] / a["controller_cpu"] for a in h])
    # Noise: how much the same configuration moved between rounds.
    out["noise"] = {k: (max(v) - min(v)) / statistics_median(v) for k, v in (
        ("none wall", [x["wall"] for x in n]), ("none controller CPU", [x["controller_cpu"] for x in n]))}
    kinds = {}
    for x in h:
        for name, (count, ns, copy_ns) in x["hooks"].items():
            kinds.setdefault(name, []).append((count, ns, copy_ns))
    out["hooks"] = {}
    for name, xs in kinds.items():
        out["hooks"][name] = {"count": xs[0][0], "us": st([ns / c / 1e3 for c, ns, _ in xs]),
                              "copy_us": st([cp / c / 1e3 for c, _, cp in xs])}
    all_ns = [sum(v[1] + v[2] for v in x["hooks"].values()) / x["events"] / 1e3 for x in h]
    out["hook_all_us"] = st(all_ns)
    return out


def statistics_median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


PARTS = {"instances": part_instances, "e2e": part_e2e, "queries": part_queries, "rss": part_rss,
         "playbook-host": part_playbook_host}


# -------------------------------------------------------------- render --

def render(res: dict, targets: list) -> list:
    """BENCHMARKS.md sections of these parts (before the in-process parts): headlines first."""
    L = []
    row, fmt, HEAD = R.row, R.fmt, R.HEAD
    one = lambda v: {"median": v, "min": v, "max": v} if v is not None else None  # noqa: E731
    L += goals_table(res)
    i = res.get("instances")
    if i:
        L.append("## Ingest as users send it: instances, batch sizes, event sizes\n")
        L.append("A real `herald serve` (one tenant; 0, 1, 6 or 60 instances of the no-op plugin "
                 "`bench/noop-plugin` in herald.toml, a fresh data directory each) and `herald-hostbench ingest`: "
                 "%s runner-shaped `runner_on_ok` events of ~1.2 KiB per configuration and round (or as many as "
                 "are sent in %s s, for slow configurations), as NDJSON with "
                 "gzip (level 5, bodies over 2 KiB: the callback's rule), from 4 keep-alive connections, in "
                 "batches of %d (what a playbook's callback sends: it ships every `batch_max_age` = 1 s) and "
                 "%d (its `batch_max_events`: a backlog after an outage). Only 202s count; the instances deliver "
                 "while ingest runs (what a user's host does), and each measurement waits until they have "
                 "everything before the next starts. **Includes** HTTP, gzip decoding, parsing and validation, "
                 "routing, the journal commit (`synchronous=FULL`) and whatever delivery work competes for the "
                 "cores. Beside it, a like-for-like SQLite loop: the journal's schema and pragmas, per batch the "
                 "events and one upsert of the batch's run, as many batches per transaction as the host's group "
                 "commit made with 0 instances in that round (measured from its /metrics), run right after that "
                 "measurement; it **excludes** HTTP, "
                 "gzip, parsing, delivery rows and commit notices. Ingest's cost per event is the CPU time "
                 "(from /proc) of the host's threads other than the delivery runtime's, over the measurement, "
                 "per accepted event (batches of 20), beside the delivery threads' CPU over the same time. %d round(s), instance counts rotated.\n" % (
                     "{:,}".format(i["events"]), i.get("max_seconds") or "∞", CALLBACK_BATCH, CALLBACK_MAX_BATCH,
                     len(i["rounds"])))
        L.append(HEAD)
        for b in (str(CALLBACK_BATCH), str(CALLBACK_MAX_BATCH)):
            for k in [str(x) for x in INSTANCE_COUNTS]:
                x = i["by_instances"][k][b]
                tgt, met = "", None
                if k == "60" and b == str(CALLBACK_BATCH):
                    met = (x["events_per_s"]["median"] >= GOALS["ingest_60_events_per_s"]
                           and x["vs_1"]["median"] >= GOALS["ingest_60_vs_1"])
                    tgt = "≥ 40,000/s and ≥ 0.5x 1 instance"
                    targets.append(("Ingest with 60 instances ≥ 40,000 events/s and ≥ 0.5x 1 instance "
                                    "(callback batches)", met))
                L.append(row("batches of %s, %s instance(s): events/s (ratio to 1 instance)" % (b, k),
                             x["events_per_s"], digits=0, ratio=x["vs_1"], target=tgt, met=met))
                L.append(row("batches of %s, %s instance(s): ratio to the SQLite loop" % (b, k), x["vs_sqlite"],
                             digits=2))
                if x.get("ingest_cpu_us") and b == str(CALLBACK_BATCH):
                    L.append(row("batches of %s, %s instance(s): ingest's threads, CPU µs per event" % (b, k),
                                 x["ingest_cpu_us"], digits=1))
                    L.append(row("batches of %s, %s instance(s): the delivery threads meanwhile, CPU µs per "
                                 "ingested event" % (b, k), x["delivery_cpu_us"], digits=1))
            L.append(row("batches of %s: like-for-like SQLite loop, events/s" % b, i["sqlite"][b], digits=0))
            L.append(row("batches of %s, 0 instances: batches per commit (the loop's grouping)" % b,
                         i["by_instances"]["0"][b]["batches_per_commit"], digits=1))
            L.append(row("batches of %s, 0 instances: request p50 ms" % b,
                         i["by_instances"]["0"][b]["request_ms_p50"], digits=1))
        gz = i.get("gzip_cost")
        if gz:
            L.append(row("batches of 20, 0 instances, **without** gzip: events/s (gzip on / off)",
                         gz["plain_events_per_s"], digits=0, ratio=gz["gzip_vs_plain"]))
        x0 = i["by_instances"]["0"][str(CALLBACK_BATCH)]
        L.append("")
        L.append("Event sizes (0 instances, batches of %d or 1 MiB before gzip, whichever is smaller; gzip "
                 "turns %.0f bytes of JSON into %.0f on the wire at 1 KiB):\n" % (
                     CALLBACK_BATCH, x0["avg_event_bytes"], x0["wire_bytes_per_event"]))
        L.append(HEAD)
        for kib in [str(x) for x in EVENT_KIB]:
            x = i["by_size"][kib]
            L.append(row("%s KiB events (%s per round): events/s (ratio to the SQLite loop)" % (
                kib, "{:,}".format(x["events"])), x["events_per_s"], digits=0, ratio=x["vs_sqlite"]))
            L.append(row("%s KiB events: MiB/s of JSON" % kib, x["mib_per_s"], digits=1))
        L.append("")

    e = res.get("e2e")
    if e:
        L.append("## Delivery end to end, inside `herald serve`, with ingest running\n")
        L.append("`herald serve` with 1, 6 or 60 no-op instances; `herald-hostbench e2e` sends %s events (~1 KiB, "
                 "gzip, batches of %d, 4 connections) and watches the host's `/metrics` every 20 ms "
                 "(`herald_deliveries_total{outcome=\"ok\"}`) until every instance has handled every event. "
                 "Deliveries/s = events × instances / the time from the **first request sent** to the last "
                 "delivery (so it includes ingest, the journal and the dispatcher competing for the same "
                 "cores). The webhook: the shipped `webhook.wasm` posting to a local sink in the load "
                 "generator (delivered = distinct `Idempotency-Key`s received), beside the same sink alone: "
                 "one keep-alive connection posting the same requests in sequence (a worker is sequential), "
                 "from another process (`herald-hostbench post`, timed by itself), as the host reaches the "
                 "sink; the goal is judged on that. The same from a task in the sink's own process is shown "
                 "too: there a request and its answer often stay on one thread and wake nothing, a rate no "
                 "sender in another process sees (bench/analysis.md, \"The webhook's sink alone from another "
                 "process\"). The second webhook row gives the instance "
                 "`shards = %d` (four streams, a run's events in one, so four requests in flight) and "
                 "compares it with the sink alone over four connections. The third (when measured) posts "
                 "%s events to a sink that waits %s ms before each answer (a receiver's own work, or a "
                 "network away; tokio's timer rounds the wait up to its next millisecond tick, so ~2 ms a "
                 "request in all), against that sink alone; it shows "
                 "what the instance's own cost is beside a real receiver's, and is not the goal's measure "
                 "(the goal is judged on the sink that answers at once). "
                 "Latency: a steady 1,000 events/s in gzip batches of %d, from the moment a request is sent "
                 "to the sink's receipt (one clock), for %d s. %d round(s).\n" % (
                     "{:,}".format(e["events"]), CALLBACK_BATCH, WEBHOOK_SHARDS,
                     "{:,}".format(e.get("webhook_slow_sink", {}).get("events", 0)),
                     "%g" % (e.get("webhook_slow_sink", {}).get("delay_us", SLOW_SINK_US) / 1000),
                     CALLBACK_BATCH, e["latency_seconds"], len(e["rounds"])))
        L.append(HEAD)
        for k in [str(x) for x in E2E_NOOP_COUNTS]:
            x = e["noop"][k]
            tgt, met = "", None
            if k == "60":
                best = max(e["noop"][j]["deliveries_per_s"]["median"] if e["noop"][j]["deliveries_per_s"] else 0
                           for j in e["noop"])
                met = best >= GOALS["deliveries_per_s"] and all(e["noop"][j]["complete"] for j in e["noop"])
                tgt = "≥ 200,000/s (best count)"
                targets.append(("≥ 200,000 deliveries/s to no-op instances end to end (with ingest running)", met))
            lab = "%s no-op instance(s)%s" % (k, "" if x["complete"] else " (NOT all delivered in time)")
            L.append(row("%s: deliveries/s" % lab, x["deliveries_per_s"], digits=0, target=tgt, met=met))
            L.append(row("%s: events fully delivered/s" % lab, x["events_fully_delivered_per_s"], digits=0))
            L.append(row("%s: ingest events/s meanwhile" % lab, x["ingest_events_per_s"], digits=0))
            L.append(row("%s: share delivered when ingest ended %%" % lab, x["delivered_when_ingest_ended"],
                         digits=0, scale=100))
        d = res.get("dispatch")
        if d:
            L.append(row("second row, in process (part 4): dispatcher draining a committed backlog, events/s",
                         d["noop_dispatcher"], digits=0))
        w = e["webhook"]
        met = bool(w["vs_sink"]) and w["vs_sink"]["median"] >= GOALS["webhook_vs_sink"] and w["complete"]
        targets.append(("Webhook instance ≥ 0.9x its sink alone (end to end)", met))
        L.append(row("webhook instance: events delivered/s (ratio to the sink alone)", w["events_per_s"], digits=0,
                     ratio=w["vs_sink"], target="≥ 0.9x the sink alone", met=met))
        if "sink_alone_in_process_per_s" in w:
            L.append(row("the sink alone, from another process (one keep-alive connection): requests/s",
                         w["sink_alone_per_s"], digits=0))
            L.append(row("the sink alone, from a task in its own process (the baseline before 2026-12-08; not "
                         "the goal's measure): requests/s (the webhook's ratio to it)", w["sink_alone_in_process_per_s"],
                         digits=0, ratio=w["vs_sink_in_process"]))
        else:
            L.append(row("the sink alone (one keep-alive connection, from a task in its own process): requests/s",
                         w["sink_alone_per_s"], digits=0))
        x = e.get("webhook_shards")
        if x:
            L.append(row("webhook instance, `shards = %d`: events delivered/s (ratio to the sink alone over %d "
                         "connections)" % (x["shards"], x["shards"]), x["events_per_s"], digits=0,
                         ratio=x["vs_sink"]))
            L.append(row("… its ratio to the sink alone over one connection", x["vs_sink_one_connection"],
                         digits=2))
            L.append(row("the sink alone (%d keep-alive connections): requests/s" % x["shards"],
                         x["sink_alone_per_s"], digits=0))
        x = e.get("webhook_slow_sink")
        if x:
            L.append(row("webhook instance, the sink waiting %g ms before each answer (%.1f ms a request alone): "
                         "events delivered/s (ratio to that sink alone; not the goal's measure)" % (
                             x["delay_us"] / 1000, 1000 / x["sink_alone_per_s"]["median"]), x["events_per_s"],
                         digits=0, ratio=x["vs_sink"]))
            L.append(row("that sink alone (one keep-alive connection): requests/s", x["sink_alone_per_s"], digits=0))
        if d:
            L.append(row("second row, in process (part 4): webhook dispatcher deliveries/s", d["webhook_dispatcher"],
                         digits=0, ratio=d["webhook_ratio"]))
        la = e["latency"]
        L.append(row("latency, sent → sink p50 ms (%d of %d received)" % (la["received"], la["events"]),
                     la["send_p50"], digits=1))
        L.append(row("latency, sent → sink p99 ms", la["send_p99"], digits=1))
        L.append(row("latency, 202 → sink p99 ms (what the old table showed)", la["ack_p99"], digits=1))
        L.append("")

    q = res.get("queries")
    if q:
        L.append("## Queries with a realistic history\n")
        L.append("`herald serve` with one no-op instance; %s runs of %d events (start, play, task starts, "
                 "per host `runner_on_start` and a result, stats; every 10th run has a failed host, every 50th "
                 "no stats) loaded through the ingest API (gzip, batches of up to %d, 4 connections: %s events "
                 "at %s events/s; the journal is then %.0f MiB), and the instance's deliveries drained. Then "
                 "`herald-hostbench query` asks each endpoint %d times, interleaved, one request at a time on a "
                 "keep-alive connection, for runs picked at random; time from request to the whole answer "
                 "(`limit` left at its default, 50). %s\n" % (
                     "{:,}".format(q["runs"]), q.get("events_per_run", 100), CALLBACK_MAX_BATCH,
                     "{:,}".format(q["events"]), fmt(q["load"]["events_per_s"], digits=0),
                     q["journal_bytes"] / 2**20, q["requests"],
                     "" if q["runs"] >= 10000 else "**This size is below the goal's 10,000 runs / 1M events: "
                     "the goal is judged only at full size.**"))
        L.append(HEAD)
        at_size = q["runs"] >= 10000 and q["events"] >= 990000
        order = ["runs list", "runs list, status=failed", "a run", "a run's events (first page)",
                 "a run's deliveries"]
        for name in sorted(q["endpoints"], key=lambda n: order.index(n) if n in order else len(order)):
            x = q["endpoints"][name]
            met = None
            tgt = ""
            if at_size:
                met = x["p95"] <= GOALS["query_p95_ms"]
                tgt = "p95 ≤ 20 ms"
                targets.append(("Query %s p95 ≤ 20 ms (10k runs / 1M events)" % name, met))
            L.append(row("%s: p50 ms" % name, one(x["p50"]), digits=1))
            L.append(row("%s: p95 ms" % name, one(x["p95"]), digits=1, target=tgt, met=met))
        L.append("")

    p = res.get("playbook-host")
    if p:
        L += render_playbook_host(p, targets)

    m = res.get("rss")
    if m:
        L.append("## Memory of `herald serve` as users run it\n")
        L.append("%d tenants × the six shipped plugins = %d instances pointed at a local sink; RSS "
                 "(`/proc/<pid>/status`, sampled every 50 ms) idle, under an open-loop load at %s events/s "
                 "(issue 24's ingest goal) spread over the tenants' tokens (%s events of ~1.2 KiB offered, or as "
                 "many as fit in %s s; gzip batches of %d, 8 connections; the host took %s events/s), while the instances drain what they were sent "
                 "(each event goes to its tenant's 6 instances), and 2 s after the last delivery.\n" % (
                     m["tenants"], m["instances"], "{:,}".format(m["rate"]), "{:,}".format(m["events"]),
                     m.get("max_seconds", "∞"), CALLBACK_BATCH, fmt(m["load"]["events_per_s"], digits=0)))
        L.append(HEAD)
        mib = lambda k: one(k / 1024) if k is not None else None  # noqa: E731
        L.append(row("idle (before any event), MiB", mib(m["idle_kib"])))
        L.append(row("under load: median MiB", mib(m["load_median_kib"])))
        L.append(row("under load: peak MiB", mib(m["load_peak_kib"]), target="≤ 256 MiB",
                     met=_met(targets, "RSS under load at the advertised rate ≤ 256 MiB",
                              m["load_peak_kib"] is not None and m["load_peak_kib"] / 1024 <= 256)))
        L.append(row("while draining: peak MiB (%.0f s to deliver all)" % m["drain_s"], mib(m["drain_peak_kib"])))
        L.append(row("after every instance handled the events, MiB", mib(m["after_kib"])))
        L.append("")
    return L


def render_playbook_host(p: dict, targets: list) -> list:
    row, HEAD = R.row, R.HEAD
    L = ["## A playbook with Herald as users configure it\n"]
    nz = p["noise"]
    L.append("The bench playbook (%d hosts, `ansible_connection=local`, forks 10, %d tasks: debug, set_fact, "
             "command, a loop, a skipped task, a handler, set_stats, an ignored failure, assert), %d rounds, each "
             "a run without callback and a run with Herald (order alternating): the callback as shipped, and "
             "`herald serve` with the **six shipped plugins** (webhook, prometheus, pagerduty, slack, grafana, "
             "syslog; configs as in plugins/README.md) pointed at local stand-in sinks (HTTP and UDP). Herald "
             "shipped %s events per run. **Controller CPU** is the `ansible-playbook` process's own CPU (its "
             "threads: strategy, callbacks, the shipper; not the forks), read before it is reaped; **host CPU** "
             "is `herald serve`'s from the start of the run until its six instances have delivered every event. "
             "The hook's CPU is measured inside the controller: each `v2_*` method's thread CPU, plus the copy "
             "of the result Ansible makes for the callback just before calling it (`as_callback_task_result`); "
             "the shipper thread and what the forks cost are not in it, but are in the added controller CPU. "
             "**Noise**: the no-callback run moved by %.0f %% (wall) and %.0f %% (controller CPU) between "
             "rounds, so a ratio within that of 1 is not a difference.\n" % (
                 p["hosts"], p["tasks"], len(p["rounds"]), R.fmt(p["events"]["median"], digits=0),
                 100 * nz["none wall"], 100 * nz["none controller CPU"]))
    L.append(HEAD)
    met = p["ratio_wall"]["median"] <= 1.03
    targets.append(("Playbook overhead with the six plugins configured (wall) ≤ 1.03x", met))
    L.append(row("no callback: wall s", p["none_wall"], digits=2))
    L.append(row("Herald (callback + host with six plugins): wall s", p["herald_wall"], digits=2,
                 ratio=p["ratio_wall"], target="≤ 1.03x", met=met))
    L.append(row("no callback: controller CPU s", p["none_controller_cpu"], digits=2))
    L.append(row("Herald: controller CPU s", p["herald_controller_cpu"], digits=2, ratio=p["ratio_controller_cpu"]))
    L.append(row("Herald: host CPU s (until delivered to all six)", p["host_cpu"], digits=2))
    L.append(row("Herald: host CPU / controller CPU", p["host_vs_controller_cpu"], digits=2))
    L.append(row("no callback: CPU of the whole process tree s", p["none_cpu"], digits=2))
    L.append(row("Herald: CPU of the whole process tree s", p["herald_cpu"], digits=2, ratio=p["ratio_cpu"]))
    L.append(row("controller CPU added per event µs (all of it: hooks, copies, shipper)",
                 p["added_controller_per_event_us"], digits=0))
    L.append(row("host CPU per event µs (ingest + six deliveries)", p["host_cpu_per_event_us"], digits=0))
    L.append(row("hook thread CPU per event µs, all kinds (with Ansible's copies)", p["hook_all_us"], digits=0))
    hooks = p["hooks"]
    order = ["v2_runner_on_ok", "v2_runner_on_start", "v2_runner_item_on_ok", "v2_runner_on_failed",
             "v2_runner_on_skipped", "v2_playbook_on_task_start"]
    for name in order + sorted(set(hooks) - set(order)):
        if name not in hooks:
            continue
        x = hooks[name]
        L.append(row("`%s` (%d per run): hook µs" % (name, x["count"]), x["us"], digits=0))
        if x["copy_us"] and x["copy_us"]["median"] > 0:
            L.append(row("`%s`: Ansible's result copy for the callback µs" % name, x["copy_us"], digits=0))
    L.append("")
    return L


def goals_table(res: dict) -> list:
    """Issue 24's goals with the figure that judges each, or that it is not measured yet."""
    L = ["## What users see: the goals of issue 24\n",
         "Each goal is judged on the headline a user would see (the sections below say what each method "
         "includes and excludes), at `--size full` on an otherwise idle machine. A goal not met is shown "
         "as missed.\n",
         "| goal | measured (median) | |", "|---|---|---|"]
    i, e, q = res.get("instances"), res.get("e2e"), res.get("queries")

    def line(goal, value, met):
        L.append("| %s | %s | %s |" % (goal, value if value is not None else "not measured yet",
                                      "" if met is None else ("met" if met else "**missed**")))

    if i:
        x = i["by_instances"]["60"][str(CALLBACK_BATCH)]
        ev, r1 = x["events_per_s"]["median"], x["vs_1"]["median"]
        line("ingest with 60 no-op instances ≥ 40,000 events/s (callback batches of %d, gzip)" % CALLBACK_BATCH,
             "{:,.0f} events/s".format(ev), ev >= GOALS["ingest_60_events_per_s"])
        line("… and ≥ 0.5x ingest with 1 instance", "%.2fx" % r1, r1 >= GOALS["ingest_60_vs_1"])
    else:
        line("ingest with 60 no-op instances ≥ 40,000 events/s (callback batches, gzip)", None, None)
        line("… and ≥ 0.5x ingest with 1 instance", None, None)
    rss = res.get("rss")
    if rss and rss.get("load") and rss.get("rate"):
        # Part 10: 10 tenants x the six shipped plugins, an open-loop load at the goal's rate.
        took, offered = rss["load"]["events_per_s"], rss["rate"]
        line("… as users run it: 10 tenants × the six shipped plugins (60 instances) take the {:,} events/s "
             "offered (part 10's load, 99 % counts)".format(offered),
             "{:,.0f} events/s".format(took), took >= 0.99 * offered)
    if e:
        best = [(k, v["deliveries_per_s"]["median"]) for k, v in e["noop"].items() if v["deliveries_per_s"]]
        k, v = max(best, key=lambda kv: kv[1]) if best else ("?", 0)
        line("≥ 200,000 deliveries/s to no-op instances, end to end inside `herald serve` with ingest running",
             "{:,.0f}/s (best: {} instances)".format(v, k), v >= GOALS["deliveries_per_s"])
        w = e["webhook"]["vs_sink"]
        line("a webhook instance ≥ 0.9x what its sink alone sustains", "%.2fx" % w["median"] if w else "incomplete",
             bool(w) and w["median"] >= GOALS["webhook_vs_sink"])
    else:
        line("≥ 200,000 deliveries/s to no-op instances, end to end inside `herald serve` with ingest running",
             None, None)
        line("a webhook instance ≥ 0.9x what its sink alone sustains", None, None)
    if q and q["runs"] >= 10000:
        worst = max(q["endpoints"].items(), key=lambda kv: kv[1]["p95"])
        line("queries (runs list, a run, its events, its deliveries) ≤ 20 ms p95 with 10,000 runs / 1M events",
             "worst p95 %.1f ms (%s)" % (worst[1]["p95"], worst[0]), worst[1]["p95"] <= GOALS["query_p95_ms"])
    else:
        line("queries (runs list, a run, its events, its deliveries) ≤ 20 ms p95 with 10,000 runs / 1M events",
             None if not q else "only measured with %s runs" % "{:,}".format(q["runs"]), None)
    L.append("")
    return L


def _met(targets, name, met):
    targets.append((name, met))
    return met
