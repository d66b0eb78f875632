"""Part 15: message templates, render cost per event (issue 21).

Runs `cargo bench -p herald-templates` (host/templates/benches/render.rs: Slack's default
templates rendered by the host's `herald-templates`) `template_rounds` times and keeps each row's
median over the rounds. The goal is judged against the plugin call the render precedes: the
webhook plugin's raw call (part 4, `webhook: raw plugin calls/s`, one HTTP POST to a local sink),
read from the same results file.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess

R = None  # bench/run.py, set by it

SIZES = {
    # `divide`: the bench's calls per round divided by this (quick runs).
    "quick": dict(template_rounds=3, template_divide=10),
    "full": dict(template_rounds=5, template_divide=1),
}

# Render cost per event of a failure message (text and blocks) as a share of the call.
GOAL_SHARE = 0.25


def run_bench(divide: int) -> dict:
    env = dict(os.environ, RENDER_BENCH_DIVIDE=str(divide))
    out = subprocess.run(["cargo", "bench", "-q", "-p", "herald-templates", "--bench", "render"],
                         cwd=R.ROOT, env=env, capture_output=True, text=True, timeout=3600, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\|\s*(.+?)\s*\|\s*([0-9.]+)\s*\|", line)
        if m:
            rows[m.group(1)] = float(m.group(2))
    if not rows:
        raise RuntimeError("cargo bench -p herald-templates printed no table:\n" + out)
    return rows


def part_templates(sz):
    rounds = [run_bench(sz["template_divide"]) for _ in range(sz["template_rounds"])]
    for i, r in enumerate(rounds):
        R.log("templates round %d: %s" % (i + 1, r))
    names = list(rounds[0])
    return {"rounds": rounds,
            "rows": {n: R.stats([r[n] for r in rounds if n in r]) for n in names}}


def call_us(res: dict):
    """The webhook plugin's raw call in µs (part 4), if it was measured."""
    d = res.get("dispatch") or {}
    rate = (d.get("webhook_raw") or {}).get("median")
    return 1e6 / rate if rate else None


def render(res: dict, targets: list) -> list:
    t = res.get("templates")
    if not t:
        return []
    call = call_us(res)
    L = ["## 15. Message templates: render cost per event (issue 21)\n",
         "`cargo bench -p herald-templates` (`host/templates/benches/render.rs`): Slack's default templates "
         "(`plugins/slack/templates/` and the plugin's texts) rendered by the host's `herald-templates`, "
         "median of 7 rounds inside the bench, then the median of %d bench runs. A context is built once "
         "per plugin call and converted to template values once, whatever the number of templates the "
         "call renders; the run's facts read from the journal (one indexed run lookup; the run's failed "
         "results on the stats event only) are not included. The call it precedes: the webhook plugin's "
         "raw call from part 4 (%s).\n" % (len(t["rounds"]), "%.0f µs" % call if call else "part 4 not run"),
         "| what (Slack's default templates) | µs per event, median (min–max) |",
         "|---|---|"]
    for name, s in t["rows"].items():
        L.append("| %s | %.1f (%.1f–%.1f) |" % (name, s["median"], s["min"], s["max"]))
    L.append("")
    failure = next((s["median"] for n, s in t["rows"].items() if n.startswith("failure: the whole")), None)
    if call and failure is not None:
        targets.append(("a failure's whole Slack message renders in ≤ %d %% of the plugin call (%.1f µs of %.0f µs)"
                        % (GOAL_SHARE * 100, failure, call), failure <= GOAL_SHARE * call))
    return L
