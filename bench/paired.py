"""What the A/B scripts share (bench/ab_plugins.py, bench/ab_postgres.py): rounds that alternate
the two sides (old new, new old, ...), their results saved, and the table of ratios paired within
a round. (bench/ab.py, which compares whole parts of the suite, has its own.)"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Callable

import run as R


def parser(doc: str, old: str, new: str, what: str) -> argparse.ArgumentParser:
    """The arguments of an A/B script: the two sides (`--old`/`--new` or `--old-bin`/`--new-bin`,
    as `old` and `new` say, each `what`), `--rounds` per side and the suite's `--size`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(old, required=True, help="the old " + what)
    ap.add_argument(new, required=True, help="the new " + what)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per side (alternating)")
    ap.add_argument("--size", choices=sorted(R.SIZES), default="full")
    return ap


def alternate(rounds: int, sides: dict, measure: Callable[[str], dict], name: str, meta: dict) -> dict:
    """Calls `measure(sides[side])` for each side, `rounds` times, the order alternating per round;
    each call returns {measure name: value}. Saves {"old": [...], "new": [...], "_meta": meta} as
    bench/results/<name>.json and returns it."""
    out = {"old": [], "new": [], "_meta": meta}
    for r in range(rounds):
        for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
            out[side].append(measure(sides[side]))
            R.log("round %d, %s: %s" % (r, side, out[side][-1]))
    os.makedirs(R.RESULTS, exist_ok=True)
    with open(os.path.join(R.RESULTS, name + ".json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def table(out: dict, what: str, unit: str = "", fmt: str | None = None) -> str:
    """A Markdown table of `alternate`'s result: per measure, each side's median (min–max)
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
