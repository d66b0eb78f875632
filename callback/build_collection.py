#!/usr/bin/env python3
"""Generate the collection's callback plugin from the pip package's sources, and optionally
build the collection tarball.

    python3 callback/build_collection.py                 # writes collection/plugins/callback/herald.py
    python3 callback/build_collection.py --build DIR     # ... then ansible-galaxy collection build into DIR

The collection's herald.py is herald_ansible/callback_plugins/herald.py with the block between
"# BEGIN herald-spool-import" and "# END herald-spool-import" replaced by the code of
herald_ansible/spool.py, so the collection needs nothing but the standard library and Ansible.
"""

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_PLUGIN = os.path.join(HERE, "herald_ansible", "callback_plugins", "herald.py")
SRC_SPOOL = os.path.join(HERE, "herald_ansible", "spool.py")
COLLECTION = os.path.join(HERE, "collection")
OUT = os.path.join(COLLECTION, "plugins", "callback", "herald.py")
BEGIN = "# BEGIN herald-spool-import"
END = "# END herald-spool-import"


def render() -> str:
    with open(SRC_PLUGIN, encoding="utf-8") as f:
        plugin = f.read()
    with open(SRC_SPOOL, encoding="utf-8") as f:
        spool = f.read()
    if plugin.count(BEGIN) != 1 or plugin.count(END) != 1:
        raise SystemExit("build_collection: markers not found exactly once in %s" % SRC_PLUGIN)
    # the plugin already starts with `from __future__ import annotations`
    spool_lines = [line for line in spool.splitlines() if line.strip() != "from __future__ import annotations"]
    inlined = "\n".join(
        ["# ---- inlined from herald_ansible/spool.py by build_collection.py (do not edit here) ----",
         "_herald_names_before = set(globals())"]
        + spool_lines
        + ["",
           "",
           "class _S:  # the spool's names, as `from herald_ansible import spool as _S` gives them",
           "    pass",
           "",
           "",
           "for _herald_name in set(globals()) - _herald_names_before - {'_S', '_herald_names_before'}:",
           "    setattr(_S, _herald_name, globals()[_herald_name])",
           "# ---- end of inlined spool.py ----"]
    )
    head, rest = plugin.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + inlined + tail


def module_level_unnamed_targets(text: str) -> list:
    """Lines of module-level assignments whose target is not a plain name (`a, b = ...`):
    ansible-doc's reader of plugin files warns `failed to assign id for <ast.Tuple ...>` on them."""
    import ast

    bad = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign):
            if any(not isinstance(t, ast.Name) for t in node.targets):
                bad.append(node.lineno)
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", metavar="DIR", help="also run `ansible-galaxy collection build` into DIR")
    p.add_argument("--ansible-galaxy", default=shutil.which("ansible-galaxy") or "ansible-galaxy")
    a = p.parse_args(argv)
    text = render()
    compile(text, OUT, "exec")
    bad = module_level_unnamed_targets(text)
    if bad:
        raise SystemExit("build_collection: module-level assignment to a non-name at line(s) %s of the generated "
                         "plugin; ansible-doc warns about them (failed to assign id)" % bad)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s" % OUT)
    if a.build:
        os.makedirs(a.build, exist_ok=True)
        subprocess.run([a.ansible_galaxy, "collection", "build", "--force", "--output-path", a.build, COLLECTION],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
