"""Part 14 of bench/run.py: Python plugins (issue 20), each figure beside the Rust no-op's.

- The no-op call: `herald-hostbench dispatch` (part 4's in-process measurement: `handle` on a live
  instance, `deliver` per journaled event, the dispatcher draining a committed backlog) with the
  Python no-op (`bench/noop-python`, built with the SDK as plugins/chat is) and the Rust no-op
  (`bench/noop-plugin`), one round each in turn.
- Memory: `herald serve` with 1 and with `py_instances` instances of each, from a warm compile
  cache; RSS idle and after every instance has handled `py_rss_events` events; per instance =
  (RSS_N - RSS_1) / (N - 1).
- Start-up: `herald serve` spawned -> `/ready` 200 with one instance, first with an empty compile
  cache (a fresh data directory: the host compiles the component) and then again (warm cache).

The sides alternate within each round (Rust first in even rounds, Python first in odd ones), so
ratios are paired within a round on this noisy machine. `R` is bench/run.py's module.

    python3 bench/run.py --size quick --parts python
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import time

R = None  # bench/run.py, set by it

SIZES = {
    "quick": dict(py_rounds=2, py_events=20000, py_instances=6, py_warm_starts=2, py_rss_events=1000),
    "full": dict(py_rounds=5, py_events=100000, py_instances=21, py_warm_starts=3, py_rss_events=5000),
}
GOALS = {"call_us": 25.0, "rss_mib": 12.0}
SIDES = ("rust", "python")


def python_component() -> str:
    return os.path.join(R.BENCH, "target", "noop-python.wasm")


def build_python_noop() -> dict:
    """Builds bench/noop-python with this checkout's SDK and the venv's pinned componentize-py,
    offline, as `make python-plugins` builds plugins/chat (rebuilt every run: ~10-30 s, and the
    component then always matches the SDK being measured)."""
    py = os.path.join(R.VENV, "bin", "python")
    if not os.path.exists(py):
        raise RuntimeError("%s is missing: run `make venv` or set BENCH_VENV (herald_sdk and componentize-py)" % py)
    sdk = os.path.join(R.ROOT, "plugins", "sdk-python")
    # This checkout's SDK before whatever the venv installed (an editable install of another checkout).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [sdk, os.environ.get("PYTHONPATH")])))
    out = python_component()
    t0 = time.perf_counter()
    subprocess.run([py, "-m", "herald_sdk.build", os.path.join(R.BENCH, "noop-python", "app.py"), "-o", out],
                   env=env, check=True, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - t0
    version = subprocess.run([os.path.join(R.VENV, "bin", "componentize-py"), "--version"],
                             capture_output=True, text=True).stdout.split()
    return {"build_s": took, "componentize_py": version[-1] if version else "?"}


def instances(k: int, component: str, prefix: str) -> str:
    return "".join('\n[plugins.%s%02d]\ntenant = "bench"\ncomponent = %s\n' % (prefix, i, json.dumps(component))
                   for i in range(k))


def mem_kib(pid: int) -> dict:
    """VmRSS and its parts: RssAnon (written pages: heaps, instances' written linear memory) and
    RssFile (mapped files: the binary, the compile cache's code and memory images, shared)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k = line.split(":")[0]
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(line.split()[1])
    return out


def compiled_ms(log_path: str) -> list:
    """The host's own compile times (`component compiled ... ms=`) from its log."""
    with open(log_path, errors="replace") as f:
        return [int(m.group(1)) for line in f if "component compiled" in line
                for m in [re.search(r'"?ms"?[=:]\s*"?(\d+)', line)] if m]


def cache_bytes(data_dir: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(data_dir, "cache", "*.cwasm")))


def start_up(side: str, comp: str, sz) -> dict:
    """Spawn -> /ready with one instance: an empty compile cache, then `py_warm_starts` restarts."""
    name = "py-start-%s" % side
    body = instances(1, comp, side)
    h = R.Herald(name, body, fresh=True)
    h.start(timeout=900, path="/ready")
    out = {"first_s": h.startup_s}
    time.sleep(1.0)
    out["first_rss_kib"] = mem_kib(h.proc.pid)["VmRSS"]
    h.stop()
    out["compile_ms"] = sum(compiled_ms(os.path.join(h.dir, "herald.log")))
    out["cache_bytes"] = cache_bytes(os.path.join(h.dir, "data"))
    out["warm_s"] = []
    for _ in range(sz["py_warm_starts"]):
        h = R.Herald(name, body, fresh=False)
        h.start(timeout=300, path="/ready")
        out["warm_s"].append(h.startup_s)
        h.stop()
    return out


def memory(side: str, comp: str, k: int, sz) -> dict:
    """`herald serve` with `k` instances of `comp`, its compile cache copied from the start-up
    measurement's (a restart's warm start, so no compiler's leftovers count): RSS idle, then after
    every instance has handled `py_rss_events` events (batches of 20, gzip, as the callback sends)."""
    h = R.Herald("py-mem-%s-%d" % (side, k), instances(k, comp, side), fresh=True)
    shutil.copytree(os.path.join(R.WORK, "py-start-%s" % side, "data", "cache"), os.path.join(h.dir, "data", "cache"))
    h.start(timeout=600, path="/ready")
    try:
        out = {"start_s": h.startup_s}
        time.sleep(2.0)
        out["idle"] = mem_kib(h.proc.pid)
        load = R.hostbench("ingest", "--url", h.url, "--tokens", R.TOKEN, "--events", sz["py_rss_events"],
                           "--batch", R.realistic.CALLBACK_BATCH, "--concurrency", 4, "--gzip", 1, timeout=1800)
        R.realistic.wait_delivered(h.url, k * load["events"], timeout=1800)
        time.sleep(2.0)
        out["after"] = mem_kib(h.proc.pid)
        out["events"] = load["events"]
    finally:
        h.stop()
        shutil.rmtree(h.dir, ignore_errors=True)
    return out


def part_python(sz):
    comps = {"rust": R.NOOP, "python": python_component()}
    out = {"build": build_python_noop(), "rounds_n": sz["py_rounds"], "events": sz["py_events"],
           "instances": sz["py_instances"], "rss_events": sz["py_rss_events"],
           "loadavg_start": " ".join(open("/proc/loadavg").read().split()[:3]),
           "component_bytes": {s: os.path.getsize(c) for s, c in comps.items()}}
    R.log("python: built the no-op in %.1f s (%d bytes)" % (out["build"]["build_s"], out["component_bytes"]["python"]))
    for side in SIDES:
        shutil.rmtree(os.path.join(R.WORK, "py-dispatch-%s" % side), ignore_errors=True)
    k = sz["py_instances"]
    rounds = []
    for r in range(sz["py_rounds"]):
        row = {}
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            comp = comps[side]
            x = row[side] = {"start": start_up(side, comp, sz)}
            # One dispatch round per call; its compile cache stays in the directory, so only the
            # first call compiles (before anything is timed).
            d = R.hostbench("dispatch", "--plugin", comp, "--events", sz["py_events"], "--rounds", 1,
                            "--dir", os.path.join(R.WORK, "py-dispatch-%s" % side), timeout=3600)
            x["raw_per_s"] = d["raw_calls_per_s"][0]
            x["deliver_per_s"] = d["convert_and_call_per_s"][0]
            x["dispatcher_per_s"] = d["dispatcher_per_s"][0]
            x["mem_1"] = memory(side, comp, 1, sz)
            x["mem_n"] = memory(side, comp, k, sz)
            R.log("python round %d, %s: deliver %.2f µs, first start %.2f s (compile %d ms), warm %.3f s, "
                  "RSS 1/%d idle %.1f/%.1f MiB, after events %.1f/%.1f MiB" % (
                      r, side, 1e6 / x["deliver_per_s"], x["start"]["first_s"], x["start"]["compile_ms"],
                      min(x["start"]["warm_s"]), k, x["mem_1"]["idle"]["VmRSS"] / 1024,
                      x["mem_n"]["idle"]["VmRSS"] / 1024, x["mem_1"]["after"]["VmRSS"] / 1024,
                      x["mem_n"]["after"]["VmRSS"] / 1024))
        rounds.append(row)
    out["rounds"] = rounds
    out["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    return summarise(out)


def summarise(out: dict) -> dict:
    """Medians over rounds of each side's figures, and the ratios and differences paired within a round."""
    rounds, k = out["rounds"], out["instances"]
    per = lambda a, b, key: (a[key] - b[key]) / (k - 1)  # noqa: E731  (KiB per added instance)
    for side in SIDES:
        xs = [r[side] for r in rounds]
        out[side] = {
            "raw_us": R.stats([1e6 / x["raw_per_s"] for x in xs]),
            "deliver_us": R.stats([1e6 / x["deliver_per_s"] for x in xs]),
            "dispatcher_us": R.stats([1e6 / x["dispatcher_per_s"] for x in xs]),
            "deliver_per_s": R.stats([x["deliver_per_s"] for x in xs]),
            "dispatcher_per_s": R.stats([x["dispatcher_per_s"] for x in xs]),
            "first_start_s": R.stats([x["start"]["first_s"] for x in xs]),
            "compile_ms": R.stats([x["start"]["compile_ms"] for x in xs]),
            "warm_start_s": R.stats([s for x in xs for s in x["start"]["warm_s"]]),
            "warm_start_n_s": R.stats([x["mem_n"]["start_s"] for x in xs]),
            "cache_bytes": xs[0]["start"]["cache_bytes"],
            "first_rss_kib": R.stats([x["start"]["first_rss_kib"] for x in xs]),
        }
        for when in ("idle", "after"):
            out[side]["rss_1_%s_kib" % when] = R.stats([x["mem_1"][when]["VmRSS"] for x in xs])
            out[side]["rss_n_%s_kib" % when] = R.stats([x["mem_n"][when]["VmRSS"] for x in xs])
            for key in ("VmRSS", "RssAnon", "RssFile"):
                out[side]["per_instance_%s_%s_kib" % (when, key)] = R.stats(
                    [per(x["mem_n"][when], x["mem_1"][when], key) for x in xs])
    out["deliver_ratio"] = R.stats([r["rust"]["deliver_per_s"] / r["python"]["deliver_per_s"] for r in rounds])
    out["deliver_added_us"] = R.stats([1e6 / r["python"]["deliver_per_s"] - 1e6 / r["rust"]["deliver_per_s"]
                                       for r in rounds])
    return out


def render(res: dict, targets: list) -> list:
    p = res.get("python")
    if not p:
        return []
    py, rs, k = p["python"], p["rust"], p["instances"]
    one = lambda v: {"median": v, "min": v, "max": v}  # noqa: E731
    mib = 1 / 1024
    call_met = py["deliver_us"]["median"] <= GOALS["call_us"]
    rss_met = {w: py["per_instance_%s_VmRSS_kib" % w]["median"] * mib <= GOALS["rss_mib"] for w in ("idle", "after")}
    targets += [("Python no-op call ≤ %.0f µs" % GOALS["call_us"], call_met),
                ("RSS per Python instance ≤ %.0f MiB (idle and after events)" % GOALS["rss_mib"],
                 rss_met["idle"] and rss_met["after"])]
    b = p["build"]
    L = ["## 14. Python plugins (issue 20)\n",
         "The Python no-op (`bench/noop-python/app.py`: the SDK's `Plugin` answering `ok()`, built with "
         "`herald_sdk.build` and componentize-py %s in %.1f s, %s bytes) beside the Rust no-op "
         "(`bench/noop-plugin`, %s bytes), through the same host paths, the two sides alternating within "
         "each of %d rounds (ratios and differences paired within a round). Call cost: `herald-hostbench "
         "dispatch` as in part 4, %s events per side and round: `deliver` = a journaled event → the call "
         "→ its outcome, what a worker does per event (the goal is judged on it); `handle` = calls with "
         "one prepared event; the dispatcher draining a committed backlog. Memory: `herald serve` with 1 "
         "and with %d instances, started from a warm compile cache; RSS 2 s after `/ready`, and after "
         "every instance has handled %s events (batches of 20, gzip) and 2 s more; per instance = "
         "(RSS with %d − RSS with 1) / %d, split into RssAnon (pages written: the instance's own) and "
         "RssFile (mapped files: the compiled code and memory image in the compile cache, shared by the "
         "instances of one component). Start-up: spawn → `/ready` 200 with one instance, first with an "
         "empty compile cache (fresh data directory: the host compiles the component; its log's compile "
         "time beside it), then %d restarts (warm cache). Load average %s at the part's start, %s at "
         "its end.\n" % (
             b["componentize_py"], b["build_s"], "{:,}".format(p["component_bytes"]["python"]),
             "{:,}".format(p["component_bytes"]["rust"]), p["rounds_n"], "{:,}".format(p["events"]), k,
             "{:,}".format(p["rss_events"]), k, k - 1, len(p["rounds"][0]["python"]["start"]["warm_s"]),
             p["loadavg_start"], p["loadavg_end"]),
         R.HEAD]
    L.append(R.row("Python no-op: deliver, µs per call", py["deliver_us"], digits=2, ratio=p["deliver_ratio"],
                   target="≤ %.0f µs" % GOALS["call_us"], met=call_met))
    L.append(R.row("Rust no-op: deliver, µs per call", rs["deliver_us"], digits=2))
    L.append(R.row("what Python adds per call (Python − Rust, paired), µs", p["deliver_added_us"], digits=2))
    L.append(R.row("Python no-op: deliver, calls/s", py["deliver_per_s"], digits=0))
    L.append(R.row("Rust no-op: deliver, calls/s", rs["deliver_per_s"], digits=0))
    L.append(R.row("Python no-op: `handle` (prepared event), µs per call", py["raw_us"], digits=2))
    L.append(R.row("Rust no-op: `handle` (prepared event), µs per call", rs["raw_us"], digits=2))
    L.append(R.row("Python no-op: dispatcher, events/s", py["dispatcher_per_s"], digits=0))
    L.append(R.row("Rust no-op: dispatcher, events/s", rs["dispatcher_per_s"], digits=0))
    for when, lab in (("idle", "idle"), ("after", "after events")):
        L.append(R.row("RSS per Python instance, %s, MiB" % lab, py["per_instance_%s_VmRSS_kib" % when],
                       digits=2, scale=mib, target="≤ %.0f MiB" % GOALS["rss_mib"], met=rss_met[when]))
        L.append(R.row("… of which RssAnon (the instance's own), MiB", py["per_instance_%s_RssAnon_kib" % when],
                       digits=2, scale=mib))
        L.append(R.row("… of which RssFile (shared compiled code and memory image), MiB",
                       py["per_instance_%s_RssFile_kib" % when], digits=2, scale=mib))
        L.append(R.row("RSS per Rust instance, %s, MiB" % lab, rs["per_instance_%s_VmRSS_kib" % when],
                       digits=2, scale=mib))
    for side, lab in (("python", "Python"), ("rust", "Rust")):
        x = p[side]
        L.append(R.row("RSS idle, 1 / %d %s instance(s), MiB" % (k, lab), x["rss_1_idle_kib"], digits=1, scale=mib))
        L.append(R.row("… %d %s instances, MiB" % (k, lab), x["rss_n_idle_kib"], digits=1, scale=mib))
        L.append(R.row("RSS after events, 1 %s instance, MiB" % lab, x["rss_1_after_kib"], digits=1, scale=mib))
        L.append(R.row("… %d %s instances, MiB" % (k, lab), x["rss_n_after_kib"], digits=1, scale=mib))
    for side, lab in (("python", "Python"), ("rust", "Rust")):
        x = p[side]
        L.append(R.row("%s: first start (empty compile cache) → `/ready`, ms" % lab, x["first_start_s"],
                       digits=0, scale=1000))
        L.append(R.row("… of which the host's compile (its log), ms", x["compile_ms"], digits=0))
        L.append(R.row("%s: warm start (cached) → `/ready`, 1 instance, ms" % lab, x["warm_start_s"],
                       digits=0, scale=1000))
        L.append(R.row("%s: warm start → `/ready`, %d instances, ms" % (lab, k), x["warm_start_n_s"],
                       digits=0, scale=1000))
        L.append(R.row("%s: component file, bytes" % lab, one(p["component_bytes"][side]), digits=0))
        L.append(R.row("%s: compile cache entry (`*.cwasm`), bytes" % lab, one(x["cache_bytes"]), digits=0))
    L.append("")
    made_of = []
    if not call_met:
        made_of.append(
            "A Python no-op call costs %.1f µs against the Rust no-op's %.1f µs through the same host path, so "
            "%.1f µs of it is the component's own: the call into the embedded CPython interpreter (the "
            "canonical ABI lifting the event resource and the attempt into Python objects), the SDK's "
            "`Handler.handle` wrapping the event in an `EventRef` and calling the plugin, and the outcome "
            "turned back into the host's variant." % (
                py["deliver_us"]["median"], rs["deliver_us"]["median"], p["deliver_added_us"]["median"]))
    if not (rss_met["idle"] and rss_met["after"]):
        made_of.append(
            "A Python instance adds %.1f MiB (idle) / %.1f MiB (after events), of which %.1f / %.1f MiB are "
            "pages it wrote itself (RssAnon: CPython's heap and the interpreter state in its linear memory, "
            "copied on write from the compiled memory image) and %.1f / %.1f MiB mapped, shared file pages." % (
                py["per_instance_idle_VmRSS_kib"]["median"] * mib, py["per_instance_after_VmRSS_kib"]["median"] * mib,
                py["per_instance_idle_RssAnon_kib"]["median"] * mib,
                py["per_instance_after_RssAnon_kib"]["median"] * mib,
                py["per_instance_idle_RssFile_kib"]["median"] * mib,
                py["per_instance_after_RssFile_kib"]["median"] * mib))
    if made_of:
        L.append("Missed: " + " ".join(made_of) + "\n")
    return L
