#!/usr/bin/env python3
"""Lay out the Ansible collection herald.events from the pip package's sources, and optionally
build the collection tarball.

    python3 callback/build_collection.py                 # writes collection/plugins/
    python3 callback/build_collection.py --build DIR     # ... then ansible-galaxy collection build into DIR

Files are copied unchanged:

    herald_ansible/callback_plugins/herald.py  ->  collection/plugins/callback/herald.py
    herald_ansible/<shared module>.py          ->  collection/plugins/plugin_utils/<shared module>.py

The plugin imports the shared modules as
`ansible_collections.herald.events.plugins.plugin_utils.<module>` when Ansible loads it from the
collection, and from the package `herald_ansible` otherwise; the shared modules import each other
relatively, so they work unchanged in both. The collection needs nothing but the standard library
and Ansible.
"""

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "herald_ansible")
SRC_PLUGIN = os.path.join(PACKAGE, "callback_plugins", "herald.py")
# The package's modules the callback plugin uses (herald-ship, path.py: pip package only).
SHARED = ("wire", "redact", "spool", "quarantine", "shipper", "background")
COLLECTION = os.path.join(HERE, "collection")
PLUGINS = os.path.join(COLLECTION, "plugins")  # generated entirely (ignored by git)
OUT_PLUGIN = os.path.join(PLUGINS, "callback", "herald.py")
OUT_UTILS = os.path.join(PLUGINS, "plugin_utils")


def module_level_unnamed_targets(text: str) -> list:
    """Lines of module-level assignments whose target is not a plain name (`a, b = ...`):
    ansible-doc's reader of plugin files warns `failed to assign id for <ast.Tuple ...>` on them."""
    bad = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign):
            if any(not isinstance(t, ast.Name) for t in node.targets):
                bad.append(node.lineno)
    return bad


def absolute_package_imports(text: str) -> list:
    """Lines importing `herald_ansible` by name: a shared module must import its siblings
    relatively (`from .spool import ...`), or it would need the pip package in the collection."""
    return [i for i, line in enumerate(text.splitlines(), 1) if re.match(r"\s*(from|import)\s+herald_ansible\b", line)]


def sources() -> dict:
    """{destination path: text} of every file the collection gets from the package, checked."""
    out = {}
    with open(SRC_PLUGIN, encoding="utf-8") as f:
        plugin = f.read()
    compile(plugin, SRC_PLUGIN, "exec")
    bad = module_level_unnamed_targets(plugin)
    if bad:
        raise SystemExit("build_collection: module-level assignment to a non-name at line(s) %s of %s; ansible-doc "
                         "warns about them (failed to assign id)" % (bad, SRC_PLUGIN))
    out[OUT_PLUGIN] = plugin
    for name in SHARED:
        src = os.path.join(PACKAGE, name + ".py")
        with open(src, encoding="utf-8") as f:
            text = f.read()
        compile(text, src, "exec")
        bad = absolute_package_imports(text)
        if bad:
            raise SystemExit("build_collection: %s imports herald_ansible at line(s) %s; import the package's "
                             "modules relatively (from .x import ...)" % (src, bad))
        out[os.path.join(OUT_UTILS, name + ".py")] = text
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", metavar="DIR", help="also run `ansible-galaxy collection build` into DIR")
    p.add_argument("--ansible-galaxy", default=shutil.which("ansible-galaxy") or "ansible-galaxy")
    a = p.parse_args(argv)
    files = sources()
    shutil.rmtree(PLUGINS, ignore_errors=True)  # no stale module of an older layout
    for path, text in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote %s" % path)
    if a.build:
        os.makedirs(a.build, exist_ok=True)
        subprocess.run([a.ansible_galaxy, "collection", "build", "--force", "--output-path", a.build, COLLECTION],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
