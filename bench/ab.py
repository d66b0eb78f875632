#!/usr/bin/env python3
"""Old-vs-new benchmark of the host (bench/README.md, "A/B runs").

    python3 bench/ab.py --old 2020ef4 --size quick --rounds 3
    python3 bench/ab.py --old 2020ef4 --size quick --rounds 3 --parts 3,4,5 --write-analysis "Issue 19: ..."
    python3 bench/ab.py --old-bin /path/to/old/herald --size quick --rounds 2 --parts instances,e2e,queries,rss

Builds the old commit in a `git worktree` of its own (default /var/tmp/bench-old, target
directory /var/tmp/bench-old-target, seeded from a copy of a warm target directory so only
the host's own crates are rebuilt) and this checkout (the new side, in $CARGO_TARGET_DIR),
then runs the host-side parts of bench/run.py (3 ingest, 4 dispatch, 5 latency, and the parts
that measure what users run: 7 instances, 8 e2e, 9 queries, 10 rss) with one round per call,
alternating the sides round by round (old new, new old, ...). `--old-bin`/`--new-bin` take any
`herald` binary instead of a commit (parts 7-10 use this checkout's herald-hostbench on both
sides: it only talks HTTP, so only the `herald` binary differs).
Both sides use the same plugin files (this checkout's bench/target no-ops and
$HERALD_PLUGIN_DIR/webhook.wasm), so only the host differs.

Prints one table: per measure, each side's median (min–max) over rounds, the new/old ratio
paired within each round (median, min–max), and the noise: the larger relative range
(max−min)/median of the two sides' own rounds. A row is "within noise" when the median ratio
is within that range of 1. Results go to bench/results/ab-<size>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the suite's parts, driven here one round at a time)

ROOT = run.ROOT


def sh(cmd, cwd, env=None):
    run.log("$ (%s) %s" % (cwd, " ".join(cmd)))
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def build(root: str, target: str):
    """The host binary and herald-hostbench of the checkout at `root`, into `target`."""
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    sh(["cargo", "build", "--release", "--locked", "-p", "herald"], root, env)
    shutil.copy(os.path.join(root, "Cargo.lock"), os.path.join(root, "bench", "hostbench", "Cargo.lock"))
    sh(["cargo", "build", "--release", "--manifest-path", "bench/hostbench/Cargo.toml"], root, env)


# Edits that let an old checkout's herald-hostbench build against its own host, applied to
# the old worktree only. 2020ef4's did not build at its own commit: `WorkerSpec` lost its
# `routes` in e6a092a (workers take routes from the journal's commit notices), and the bench
# was not updated with it. Targets are given at commit time in the bench, so nothing is lost.
OLD_HOSTBENCH_FIXES = [
    ("use herald::routes::Routes;\n", ""),
    ("            routes: Routes::compile(&cfg.routes).map_err(|e| format!(\"{e:?}\"))?,\n", ""),
]


def fix_old_hostbench(old_dir: str):
    path = os.path.join(old_dir, "bench", "hostbench", "src", "main.rs")
    sh(["git", "checkout", "--quiet", "--", "bench/hostbench/src/main.rs"], old_dir)
    with open(path) as f:
        src = f.read()
    for before, after in OLD_HOSTBENCH_FIXES:
        src = src.replace(before, after)
    with open(path, "w") as f:
        f.write(src)


def prepare_old(a) -> str:
    if not os.path.isdir(a.old_dir):
        sh(["git", "worktree", "add", "--detach", a.old_dir, a.old], ROOT)
    else:
        sh(["git", "checkout", "--quiet", "--", "bench/hostbench"], a.old_dir)
        sh(["git", "checkout", "--detach", "--quiet", a.old], a.old_dir)
    fix_old_hostbench(a.old_dir)
    if not os.path.isdir(a.old_target) and a.warm_target and os.path.isdir(a.warm_target):
        run.log("seeding %s from %s" % (a.old_target, a.warm_target))
        shutil.copytree(a.warm_target, a.old_target, symlinks=True)
    return subprocess.run(["git", "-C", a.old_dir, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


def private_copies(side: str, target: str, herald_bin: str | None = None):
    """Copies of a side's binaries, so a rebuild during the run cannot swap one under it.
    `herald_bin`: a given `herald` binary instead of the target directory's."""
    d = os.path.join(run.WORK, "bin-" + side)
    os.makedirs(d, exist_ok=True)
    out = []
    for exe in ("herald", "herald-hostbench"):
        src = os.path.join(target, "release", exe)
        if exe == "herald" and herald_bin:
            src = herald_bin
        if not os.path.exists(src):
            raise SystemExit("%s is missing (build it, or drop --no-build)" % src)
        shutil.copy2(src, os.path.join(d, exe))
        out.append(os.path.join(d, exe))
    return out


# One row per measure: (part, label, extractor of one round's part result, higher is better).
def _lat(b, q):
    return lambda p: p["by_batch"][b][q]["median"]


MEASURES = [
    (3, "ingest: Herald events/s", lambda p: p["herald"]["median"], True),
    (3, "ingest: bare SQLite events/s (same round)", lambda p: p["sqlite"]["median"], True),
    (3, "ingest: Herald / bare SQLite", lambda p: p["ratio"]["median"], True),
    (3, "ingest: request (batch of 500) p50 ms", lambda p: p["request_ms_p50"]["median"], False),
    (4, "no-op 0.2.0: raw calls/s", lambda p: p["noop_raw"]["median"], True),
    (4, "no-op 0.2.0: deliver (journaled event → call)/s", lambda p: p["noop_convert"]["median"], True),
    (4, "no-op 0.2.0: dispatcher events/s", lambda p: p["noop_dispatcher"]["median"], True),
    (4, "no-op 0.1.0: raw calls/s", lambda p: p["v01_raw"]["median"], True),
    (4, "no-op 0.1.0: deliver (convert + call)/s", lambda p: p["v01_convert"]["median"], True),
    (4, "no-op 0.1.0: dispatcher events/s", lambda p: p["v01_dispatcher"]["median"], True),
    (4, "webhook: native hyper req/s (same round)", lambda p: p["webhook_native"]["median"], True),
    (4, "webhook: raw plugin calls/s", lambda p: p["webhook_raw"]["median"], True),
    (4, "webhook: dispatcher deliveries/s", lambda p: p["webhook_dispatcher"]["median"], True),
    (4, "webhook: dispatcher / native", lambda p: p["webhook_ratio"]["median"], True),
    (5, "latency, 1 event/request: answer → sink p50 ms", _lat("1", "p50"), False),
    (5, "latency, 1 event/request: answer → sink p99 ms", _lat("1", "p99"), False),
    (5, "latency, 10 events/request: answer → sink p50 ms", _lat("10", "p50"), False),
    (5, "latency, 10 events/request: answer → sink p99 ms", _lat("10", "p99"), False),
]


# The parts that measure what users run (bench/realistic.py), by name.
def _inst(k, b="20"):
    return lambda p: p["by_instances"][k][b]["events_per_s"]["median"]


def _e2e(k):
    return lambda p: (p["noop"][k]["deliveries_per_s"] or {}).get("median")


def _q(name):
    return lambda p: p["endpoints"][name]["p95"]


MEASURES += [
    (7, "ingest, callback batches (20, gzip), 0 instances: events/s", _inst("0"), True),
    (7, "ingest, callback batches, 1 instance: events/s", _inst("1"), True),
    (7, "ingest, callback batches, 6 instances: events/s", _inst("6"), True),
    (7, "ingest, callback batches, 60 instances: events/s", _inst("60"), True),
    (7, "ingest, batches of 500, 1 instance: events/s", _inst("1", "500"), True),
    (7, "ingest, batches of 500, 60 instances: events/s", _inst("60", "500"), True),
    (7, "ingest, callback batches: 60 instances / 1 instance",
     lambda p: p["by_instances"]["60"]["20"]["vs_1"]["median"], True),
    (7, "like-for-like SQLite loop, batches of 20: events/s", lambda p: p["sqlite"]["20"]["median"], True),
    (7, "ingest, 64 KiB events: events/s", lambda p: p["by_size"]["64"]["events_per_s"]["median"], True),
    (8, "end to end, 1 no-op instance: deliveries/s", _e2e("1"), True),
    (8, "end to end, 6 no-op instances: deliveries/s", _e2e("6"), True),
    (8, "end to end, 60 no-op instances: deliveries/s", _e2e("60"), True),
    (8, "end to end, webhook: events/s", lambda p: (p["webhook"]["events_per_s"] or {}).get("median"), True),
    (8, "end to end, webhook / its sink alone", lambda p: (p["webhook"]["vs_sink"] or {}).get("median"), True),
    (8, "end to end, webhook / its sink alone from a task in its own process",
     lambda p: (p["webhook"].get("vs_sink_in_process") or {}).get("median"), True),
    (8, "latency at 1,000 events/s: sent → sink p99 ms", lambda p: p["latency"]["send_p99"]["median"], False),
    (9, "query p95 ms: runs list", _q("runs list"), False),
    (9, "query p95 ms: runs list, status=failed", _q("runs list, status=failed"), False),
    (9, "query p95 ms: a run", _q("a run"), False),
    (9, "query p95 ms: a run's events", _q("a run's events (first page)"), False),
    (9, "query p95 ms: a run's deliveries", _q("a run's deliveries"), False),
    (10, "RSS under load at the advertised rate, peak MiB", lambda p: p["load_peak_kib"] / 1024, False),
    (10, "RSS after the instances handled the events, MiB", lambda p: p["after_kib"] / 1024, False),
    (11, "playbook with six plugins: wall / no callback", lambda p: p["ratio_wall"]["median"], False),
    (11, "playbook: controller CPU added per event µs", lambda p: p["added_controller_per_event_us"]["median"],
     False),
    (11, "playbook: host CPU per event µs (ingest + six deliveries)", lambda p: p["host_cpu_per_event_us"]["median"],
     False),
]


# Parts whose herald-hostbench is only a load generator, watcher and SQLite loop over HTTP: both
# sides use this checkout's, so that only the `herald` binary differs (and any binary can be an A
# or a B). Parts 3-5 use each side's own (part 4 runs the side's host library in process).
LOAD_ONLY_PARTS = (7, 8, 9, 10, 11)


def one_round(part: int, sz: dict, side_bins, new_bins) -> dict:
    run.HERALD, run.HOSTBENCH = side_bins
    if part in LOAD_ONLY_PARTS:
        run.HOSTBENCH = new_bins[1]
    s = dict(sz, ingest_rounds=1, dispatch_rounds=1, webhook_rounds=1, latency_rounds=1, inst_rounds=1,
             e2e_rounds=1, pbh_rounds=1)
    return run.PARTS[part][1](s)


def fmt(x):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return "{:,.0f}".format(x)
    if abs(x) >= 10:
        return "{:.1f}".format(x)
    return "{:.2f}".format(x)


def summarise(res: dict) -> list:
    rows = []
    for part, label, get, higher in MEASURES:
        key = str(part)
        if key not in res["rounds"]:
            continue
        rs = res["rounds"][key]
        old = [get(r["old"]) for r in rs]
        new = [get(r["new"]) for r in rs]
        if None in old or None in new:  # e.g. an end-to-end run that did not finish in time
            rows.append({"label": label, "old": old, "new": new, "ratio": [], "noise": 0.0,
                         "verdict": "incomplete", "higher_is_better": higher})
            continue
        ratio = [n / o for n, o in zip(new, old) if o]
        noise = max((max(xs) - min(xs)) / statistics.median(xs) for xs in (old, new))
        med = statistics.median(ratio)
        change = med - 1.0
        worse = change < 0 if higher else change > 0
        if abs(change) <= noise:
            verdict = "within noise"
        else:
            verdict = "**worse**" if worse else "better"
        rows.append({"label": label, "old": old, "new": new, "ratio": ratio, "noise": noise,
                     "verdict": verdict, "higher_is_better": higher})
    return rows


def table(rows: list) -> str:
    L = ["| measure | old: median (min–max) | new: median (min–max) | new/old, paired (median, min–max) "
         "| noise ± | |", "|---|---:|---:|---|---:|---|"]
    for r in rows:
        if not r["ratio"]:
            L.append("| %s | %s | %s | – | – | %s |" % (r["label"], r["old"], r["new"], r["verdict"]))
            continue
        cell = lambda xs: "%s (%s–%s)" % (fmt(statistics.median(xs)), fmt(min(xs)), fmt(max(xs)))
        L.append("| %s | %s | %s | %.2fx (%.2f–%.2f) | %.0f %% | %s |" % (
            r["label"], cell(r["old"]), cell(r["new"]), statistics.median(r["ratio"]), min(r["ratio"]),
            max(r["ratio"]), 100 * r["noise"], r["verdict"]))
    return "\n".join(L)


def write_analysis(title: str, text: str):
    """Replaces (or appends) the section `## <title>` of bench/analysis.md with `text`."""
    path = os.path.join(run.BENCH, "analysis.md")
    with open(path) as f:
        doc = f.read()
    head = "## " + title
    section = head + "\n\n" + text.strip() + "\n"
    pat = re.compile(r"^" + re.escape(head) + r".*?(?=^## |\Z)", re.S | re.M)
    if pat.search(doc):
        doc = pat.sub(lambda _: section + "\n", doc, count=1).rstrip() + "\n"
    else:
        doc = doc.rstrip() + "\n\n" + section
    with open(path, "w") as f:
        f.write(doc)
    run.log("wrote section %r of %s" % (title, path))


PART_NAMES = {n: name for n, (name, _) in run.PARTS.items()}
HOST_PARTS = (3, 4, 5, 7, 8, 9, 10, 11)  # the parts where only the host differs


def pooled(part: int, sz: dict, calls: list) -> dict:
    """One side's single-round results of a part, pooled into the part's result as run.py makes it."""
    if part == 3:
        return run.summarise_ingest(sz, [r for c in calls for r in c["rounds"]])
    if part == 7:
        return run.realistic.summarise_instances(sz, [r for c in calls for r in c["rounds"]])
    if part == 8:
        return run.realistic.summarise_e2e(sz, [r for c in calls for r in c["rounds"]])
    if part == 11:
        return run.realistic.summarise_playbook_host(sz, [r for c in calls for r in c["rounds"]])
    if part in (9, 10):
        return calls[-1]  # one measurement per call; the last is kept
    if part == 4:
        def cat(key):
            out = dict(calls[0][key])
            for k, v in out.items():
                if isinstance(v, list):
                    out[k] = [x for c in calls for x in c[key][k]]
            return out
        return run.summarise_dispatch(cat("raw"), cat("v01_raw_json"), cat("webhook_raw_json"))
    rows = {int(b): [x for c in calls for x in c["by_batch"][b]["rounds"]] for b in calls[0]["by_batch"]}
    floor = {b: statistics.median(c["sqlite_floor"][b] for c in calls) for b in calls[0]["sqlite_floor"]}
    return run.summarise_latency(sz, rows, floor)


def record(res: dict, a, sz: dict):
    """The new side's rounds into bench/results/<size>.json, and BENCHMARKS.md rendered from it."""
    path = os.path.join(run.RESULTS, "%s.json" % a.size)
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    m = res["_meta"]
    for key, rounds in res["rounds"].items():
        part = int(key)
        saved[PART_NAMES[part]] = pooled(part, sz, [r["new"] for r in rounds])
        saved[PART_NAMES[part]]["_meta"] = {"date": m["date"], "commit": m["new"], "host_dirty": m["new_dirty"],
                                            "loadavg": m["loadavg"][0]}
    with open(path, "w") as f:
        json.dump(saved, f, indent=1)
    out = os.path.join(ROOT, "BENCHMARKS.md")
    with open(out, "w") as f:
        f.write(run.render(saved, a.size))
    run.log("recorded the new side's parts %s in %s and %s" % (", ".join(res["rounds"]), path, out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="the old commit (built in its own worktree)")
    ap.add_argument("--old-bin", help="a `herald` binary for the old side instead of --old (any build; "
                                      "parts 3, 5 and 7-10 only: part 4 needs the old host's library)")
    ap.add_argument("--new-bin", help="a `herald` binary for the new side instead of this checkout's build")
    ap.add_argument("--old-dir", default="/var/tmp/bench-old")
    ap.add_argument("--old-target", default="/var/tmp/bench-old-target")
    ap.add_argument("--warm-target", default=os.environ.get("CARGO_TARGET_DIR"),
                    help="copied to --old-target when that does not exist yet")
    ap.add_argument("--size", choices=sorted(run.SIZES), default="quick")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=N", help="override a size parameter")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per side (alternating)")
    ap.add_argument("--parts", default="3,4", help="host-side parts, by number or name: 3 ingest, 4 dispatch, "
                                                  "5 latency, 7 instances, 8 e2e, 9 queries, 10 rss, "
                                                  "11 playbook-host")
    ap.add_argument("--no-build", action="store_true", help="use what the target directories hold")
    ap.add_argument("--note", default="", help="sentence about the machine (load, other work)")
    ap.add_argument("--write-analysis", metavar="TITLE", help="write the table into bench/analysis.md")
    ap.add_argument("--record", action="store_true",
                    help="also put the new side's rounds into results/<size>.json and render BENCHMARKS.md "
                         "(after --write-analysis, so it carries the table)")
    a = ap.parse_args()
    sz = dict(run.SIZES[a.size])
    for kv in a.set:
        k, v = kv.split("=", 1)
        if k not in sz:
            ap.error("unknown size parameter %s" % k)
        sz[k] = int(v)
    parts = run.part_numbers(a.parts)
    if any(p not in HOST_PARTS for p in parts):
        ap.error("only the host-side parts %s are compared" % ", ".join(
            "%d %s" % (p, PART_NAMES[p]) for p in HOST_PARTS))
    if not a.old and not a.old_bin:
        ap.error("give --old COMMIT or --old-bin PATH")
    if a.old_bin and 4 in parts:
        ap.error("part 4 runs the old host's library in process: it needs --old, not --old-bin")
    new_target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    old_commit = prepare_old(a) if not a.old_bin else "binary %s" % a.old_bin
    new_commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    if a.new_bin:
        new_commit = "binary %s" % a.new_bin
    if not a.no_build:
        if not a.old_bin:
            build(a.old_dir, a.old_target)
        build(ROOT, new_target)
        if not all(os.path.exists(p) for p in (run.NOOP, run.NOOP_V01)):
            sh([os.path.join(run.BENCH, "build.sh")], ROOT, dict(os.environ, CARGO_TARGET_DIR=new_target))
    os.makedirs(run.WORK, exist_ok=True)
    old_target = new_target if a.old_bin else a.old_target
    bins = {"old": private_copies("old", old_target, a.old_bin), "new": private_copies("new", new_target, a.new_bin)}
    loads = [" ".join(open("/proc/loadavg").read().split()[:3])]
    res = {"_meta": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                     "old": old_commit, "new": new_commit, "size": a.size, "sizes": sz, "rounds": a.rounds,
                     "note": a.note,
                     "new_dirty": bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "host"],
                                                      capture_output=True, text=True).stdout.strip())},
           "rounds": {}}
    for r in range(a.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for part in parts:
            got = {}
            for side in order:
                run.log("round %d, part %d, %s" % (r, part, side))
                got[side] = one_round(part, sz, bins[side], bins["new"])
            res["rounds"].setdefault(str(part), []).append(got)
        loads.append(" ".join(open("/proc/loadavg").read().split()[:3]))
    res["_meta"]["loadavg"] = loads
    rows = summarise(res)
    res["summary"] = rows
    path = os.path.join(run.RESULTS, "ab-%s.json" % a.size)
    os.makedirs(run.RESULTS, exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    m = res["_meta"]
    intro = ("Old `%s`, new `%s`%s; size `%s`, %d rounds per side alternating (old new, new old, ...), "
             "same plugin files; run %s by `python3 bench/ab.py`. Load average at the start and after "
             "each round: %s.%s" % (m["old"], m["new"], " (host/ modified)" if m["new_dirty"] else "", a.size,
                                    a.rounds, m["date"], "; ".join(loads), (" " + a.note) if a.note else ""))
    text = intro + "\n\n" + table(rows)
    print(text)
    if a.write_analysis:
        write_analysis(a.write_analysis, text)
    if a.record:
        record(res, a, sz)
    run.log("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
