"""Issue 20: `herald plugin new NAME --lang rust|python` makes a standalone project whose own
test passes, whose build (`make`, offline) writes the component where its herald.toml fragment
points, and whose component `herald check` loads and configures."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import HERALD_BIN, ROOT, token_pair

PYTHON_SDK = ROOT / "plugins" / "sdk-python"


def run(argv, cwd, env=None, timeout=900):
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def check(path):
    return subprocess.run([str(HERALD_BIN), "check", "--config", str(path)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("lang", ["rust", "python"])
def test_a_new_project_builds_passes_its_test_and_loads_in_check(tmp_path, lang):
    name = f"hello-{lang}"
    r = run([str(HERALD_BIN), "plugin", "new", name, "--lang", lang, "--dir", str(tmp_path), "--tenant", "ops"],
            tmp_path)
    project = tmp_path / name
    assert f"created {project}" in r.stdout
    for f in ["Makefile", "README.md", "herald.example.toml", ".gitignore"]:
        assert (project / f).is_file(), f
    env = dict(os.environ, CARGO_NET_OFFLINE="true")
    if lang == "rust":
        # Herald's plugin builds already compiled the same dependency versions (the lock file
        # is the SDK workspace's): reuse their target directory.
        env.setdefault("CARGO_TARGET_DIR", str(ROOT / "plugins" / "target"))
        assert (project / "Cargo.lock").is_file()
        assert f'path = "{ROOT / "plugins" / "sdk"}"' in (project / "Cargo.toml").read_text()
    else:
        env["PYTHONPATH"] = str(PYTHON_SDK)
        assert f"-e {PYTHON_SDK}" in (project / "requirements.txt").read_text()
    make = ["make", f"PYTHON={sys.executable}"]
    tested = run(make + ["test"], project, env)
    assert ("3 passed" if lang == "rust" else "3 passed") in tested.stdout, tested.stdout
    run(make, project, env)
    component = project / "build" / f"{name}.wasm"
    assert component.stat().st_size > 10_000

    fragment = (project / "herald.example.toml").read_text()
    assert f'component = "{component}"' in fragment
    _, token_hash = token_pair()
    base = f'[server]\nlisten = "127.0.0.1:0"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n' \
           f'[tenants.ops]\ntokens = ["{token_hash}"]\n'
    config = tmp_path / "herald.toml"
    config.write_text(base + fragment)
    r = check(config)
    assert r.returncode == 0 and "ok (1 tenants, 1 plugin instances)" in r.stdout, r.stdout + r.stderr
    # The component really ran its configure: a URL outside allow_http is refused at its line.
    config.write_text(base + fragment.replace('url = "http://127.0.0.1:9/hook"', 'url = "http://127.0.0.1:10/hook"'))
    r = check(config)
    line = next(i + 1 for i, text in enumerate(config.read_text().splitlines()) if text.startswith("url = "))
    assert r.returncode == 1 and f"herald.toml:{line}:1: plugins.{name}.config.url: plugin refused its configuration: " \
        "http://127.0.0.1:10 is not in allow_http" in r.stderr, r.stderr


def test_bad_names_and_existing_projects_are_refused(tmp_path):
    for name, why in [("Hello", "must start with a lower-case letter"), ("my_sink", "may hold only")]:
        r = subprocess.run([str(HERALD_BIN), "plugin", "new", name, "--lang", "rust", "--dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and f"plugin name `{name}`: {why}" in r.stderr, r.stderr
    (tmp_path / "taken").mkdir()
    r = subprocess.run([str(HERALD_BIN), "plugin", "new", "taken", "--lang", "python", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "exists already" in r.stderr, r.stderr
    r = subprocess.run([str(HERALD_BIN), "plugin", "new", "x", "--lang", "python", "--dir", str(tmp_path),
                        "--sdk", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "not Herald's plugins/sdk-python" in r.stderr, r.stderr
