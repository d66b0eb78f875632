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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paired  # noqa: E402
import plugin_cpu  # noqa: E402
import run as R  # noqa: E402


def main() -> int:
    a = paired.parser(__doc__, "--old", "--new", "directory of plugin components (<name>.wasm)").parse_args()
    sz = dict(R.SIZES[a.size])
    sz["pc_rounds"] = 1
    os.makedirs(R.WORK, exist_ok=True)

    def measure(plugins: str) -> dict:
        R.PLUGINS = plugins
        res = plugin_cpu.part_plugin_cpu(sz)
        return {n: res["us"][n]["median"] for n in res["order"]}

    out = paired.alternate(a.rounds, {"old": a.old, "new": a.new}, measure, "ab-plugins",
                           {"old": a.old, "new": a.new, "size": a.size, "rounds": a.rounds})
    print(paired.table(out, "configuration", "µs/event", "%.1f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
