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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paired  # noqa: E402
import postgres  # noqa: E402
import run as R  # noqa: E402


def ingest(pg: postgres.Pg, instances: int, sz) -> float:
    """Durable ingest into a fresh database with `instances` no-op instances, events/s."""
    return postgres.measured_ingest(pg, instances, sz)["events_per_s"]


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
    a = paired.parser(__doc__, "--old-bin", "--new-bin", "`herald` binary").parse_args()
    sz = R.SIZES[a.size]
    os.makedirs(R.WORK, exist_ok=True)
    sides = {"old": os.path.abspath(a.old_bin), "new": os.path.abspath(a.new_bin)}
    pg = postgres.Pg()

    def measure(herald: str) -> dict:
        R.HERALD = herald
        return one_round(pg, sz)

    try:
        out = paired.alternate(a.rounds, sides, measure, "ab-postgres", dict(sides, size=a.size, rounds=a.rounds))
    finally:
        pg.stop()
    print(paired.table(out, "measure"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
