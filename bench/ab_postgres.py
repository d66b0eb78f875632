#!/usr/bin/env python3
"""Old-vs-new benchmark of the host on PostgreSQL: part 12's ingest with 1 and 60 no-op
instances, and its dispatch with one replica (events fully delivered to 12 no-op instances),
for two `herald` binaries on one throwaway server, interleaved round by round (old new,
new old, ...), ratios paired within a round.

    cp target/release/herald /var/tmp/herald-old     # before the change
    python3 bench/ab_postgres.py --old-bin /var/tmp/herald-old --new-bin target/release/herald

Prints a Markdown table (per measure: each side's median and range, new/old paired) and
writes bench/results/ab-postgres.json. Sizes are part 12's (`--size`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_plugins  # noqa: E402  (its paired table)
import postgres  # noqa: E402
import run as R  # noqa: E402


def ingest(pg: postgres.Pg, instances: int, sz) -> float:
    """Durable ingest into a fresh database with `instances` no-op instances, events/s."""
    h = postgres.pg_host("ab-pg-ingest-%d" % instances, pg.database(), instances).start(timeout=300)
    try:
        return R.hostbench("ingest", "--url", h.url, "--tokens", R.TOKEN, "--events", sz["pg_events"],
                           "--batch", sz["ingest_batch"], "--concurrency", sz["ingest_concurrency"],
                           timeout=1800)["events_per_s"]
    finally:
        h.stop()


def one_round(pg: postgres.Pg, sz) -> dict:
    one, sixty = ingest(pg, 1, sz), ingest(pg, 60, sz)
    return {
        "ingest, 1 instance (events/s)": one,
        "ingest, 60 instances (events/s)": sixty,
        "ingest, 60 instances : 1": sixty / one,
        "dispatch, 1 replica, 12 instances (deliveries/s)":
            postgres.replica_dispatch(pg, 1, sz)["deliveries_per_s"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-bin", required=True, help="the old `herald` binary")
    ap.add_argument("--new-bin", required=True, help="the new `herald` binary")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per side (alternating)")
    ap.add_argument("--size", choices=sorted(R.SIZES), default="full")
    a = ap.parse_args()
    sz = R.SIZES[a.size]
    os.makedirs(R.WORK, exist_ok=True)
    sides = {"old": os.path.abspath(a.old_bin), "new": os.path.abspath(a.new_bin)}
    out = {"old": [], "new": [], "_meta": dict(sides, size=a.size, rounds=a.rounds)}
    pg = postgres.Pg()
    try:
        for r in range(a.rounds):
            for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                R.HERALD = sides[side]
                out[side].append(one_round(pg, sz))
                R.log("round %d, %s: %s" % (r, side, out[side][-1]))
    finally:
        pg.stop()
    os.makedirs(R.RESULTS, exist_ok=True)
    with open(os.path.join(R.RESULTS, "ab-postgres.json"), "w") as f:
        json.dump(out, f, indent=1)

    print(ab_plugins.paired_table(out, "measure"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
