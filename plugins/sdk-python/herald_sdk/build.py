"""Builds a plugin component from Python source with componentize-py (pinned: 0.25.1):

    python -m herald_sdk.build path/to/src/app.py -o build/chat.wasm

The module (`app.py`, whose `Handler = export(MyPlugin)`) and the modules beside it are
compiled together with this SDK and the Python standard library against the SDK's world
(Herald's `sink` world, contract 0.3.0, plus `herald:grants`). Nothing is downloaded: the
tool and the interpreter it embeds come with the `componentize-py` wheel.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The componentize-py release the SDK is built and tested with.
COMPONENTIZE_PY = "0.25.1"
WIT_DIR = Path(__file__).resolve().parent / "wit"
WORLD = "sink-python"


def componentize_py() -> list[str]:
    """The command that runs componentize-py, from this interpreter's environment."""
    exe = shutil.which("componentize-py", path=str(Path(sys.executable).parent)) or shutil.which("componentize-py")
    if exe is None:
        raise SystemExit(f"herald_sdk.build: componentize-py is not installed; "
                         f"pip install componentize-py=={COMPONENTIZE_PY}")
    return [exe]


def build(app: Path, out: Path, extra_paths: list[Path] = ()) -> float:
    """Builds `app` (a .py file) into the component `out`; returns the seconds it took."""
    app = app.resolve()
    if not app.is_file() or app.suffix != ".py":
        raise SystemExit(f"herald_sdk.build: {app}: not a Python file")
    version = subprocess.run(componentize_py() + ["--version"], capture_output=True, text=True).stdout.split()
    if version[-1:] != [COMPONENTIZE_PY]:
        print(f"herald_sdk.build: warning: componentize-py {' '.join(version[-1:])} is not the tested "
              f"{COMPONENTIZE_PY}", file=sys.stderr)
    sdk_parent = Path(__file__).resolve().parent.parent
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = componentize_py() + ["-d", str(WIT_DIR), "-w", WORLD, "componentize",
                               "-p", str(app.parent), "-p", str(sdk_parent)]
    for p in extra_paths:
        cmd += ["-p", str(Path(p).resolve())]
    # Written beside, then renamed: a watching `herald serve` never reads half a file.
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        part = Path(tmp) / out.name
        cmd += ["-o", str(part), app.stem]
        start = time.monotonic()
        # componentize-py's own search of VIRTUAL_ENV would add every installed package.
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        r = subprocess.run(cmd, cwd=app.parent, env=env, capture_output=True, text=True)
        took = time.monotonic() - start
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"herald_sdk.build: componentize-py failed for {app} (exit {r.returncode})")
        os.replace(part, out)
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m herald_sdk.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("app", type=Path, help="the plugin's module, e.g. src/app.py")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the component to write (.wasm)")
    ap.add_argument("-p", "--python-path", type=Path, action="append", default=[],
                    help="another directory of modules to include (repeatable)")
    args = ap.parse_args(argv)
    took = build(args.app, args.output, args.python_path)
    size = args.output.stat().st_size
    print(f"{args.output}: {size / 1048576:.1f} MiB, built in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
