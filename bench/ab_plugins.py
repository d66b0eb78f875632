#!/usr/bin/env python3
"""Old-vs-new benchmark of the plugin components: part 16 (the host's CPU per event, plugin by
plugin) with two plugin directories and the same host, interleaved round by round (old new,
new old, ...), ratios paired within a round.

    make plugins && cp -r build/plugins /var/tmp/plugins-new     # the change
    git stash && make plugins && cp -r build/plugins /var/tmp/plugins-old && git stash pop
    python3 bench/ab_plugins.py --old /var/tmp/plugins-old --new /var/tmp/plugins-new --rounds 3

Prints a Markdown table (per configuration: each side's median and range of µs per event, and
new/old paired) and writes bench/results/ab-plugins.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plugin_cpu  # noqa: E402
import run as R  # noqa: E402


def paired_table(out: dict, what: str, unit: str = "", fmt: str | None = None) -> str:
    """A Markdown table of an A/B's rounds, `out["old"]` and `out["new"]` (a list of
    {measure: value} per round, in the order run): per measure, each side's median (min–max)
    formatted with `fmt` (by default two decimals below 10, none above), and new/old paired
    within each round."""
    unit = " " + unit if unit else ""
    lines = ["| %s | old%s (median, min–max) | new%s | new/old, paired (median, min–max) |" % (what, unit, unit),
             "|---|---:|---:|---|"]
    for n in out["old"][0]:
        old = [x[n] for x in out["old"]]
        new = [x[n] for x in out["new"]]
        f = fmt or ("%.2f" if max(old + new) < 10 else "%.0f")

        def span(xs):
            return ("%s (%s–%s)" % (f, f, f)) % (statistics.median(xs), min(xs), max(xs))

        ratios = [b / a for a, b in zip(old, new)]
        lines.append("| %s | %s | %s | %.2f (%.2f–%.2f) |" % (n, span(old), span(new), statistics.median(ratios),
                                                               min(ratios), max(ratios)))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="directory of the old plugin components (<name>.wasm)")
    ap.add_argument("--new", required=True, help="directory of the new plugin components")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per side (alternating)")
    ap.add_argument("--size", choices=sorted(R.SIZES), default="full")
    a = ap.parse_args()
    sz = dict(R.SIZES[a.size])
    sz["pc_rounds"] = 1
    os.makedirs(R.WORK, exist_ok=True)
    sides = {"old": a.old, "new": a.new}
    out = {"old": [], "new": [], "_meta": {"old": a.old, "new": a.new, "size": a.size, "rounds": a.rounds}}
    for r in range(a.rounds):
        for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
            R.PLUGINS = sides[side]
            res = plugin_cpu.part_plugin_cpu(sz)
            out[side].append({n: res["us"][n]["median"] for n in res["order"]})
            R.log("round %d, %s done" % (r, side))
    os.makedirs(R.RESULTS, exist_ok=True)
    with open(os.path.join(R.RESULTS, "ab-plugins.json"), "w") as f:
        json.dump(out, f, indent=1)

    print(paired_table(out, "configuration", "µs/event", "%.1f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
