"""Packaging: ansible-doc shows every option, the pip package prints its callback directory, the
collection builds, installs with ansible-galaxy and works as herald.events.herald."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from herald_cb_helpers import CALLBACK_DIR, CALLBACK_ROOT, ansible_bin

OPTIONS = ["url", "token", "spool_dir", "flush_timeout", "batch_max_events", "batch_max_bytes", "batch_max_age",
           "spool_max_bytes", "send_task_args", "send_facts", "redact_keys", "max_result_bytes", "timeout", "labels"]


def _check_doc(out: str):
    for opt in OPTIONS:
        assert opt in out, opt
        assert "HERALD_" + opt.upper() in out, opt
    assert "callback_herald" in out


def test_ansible_doc_shows_every_option(runner):
    env = runner.env()
    p = subprocess.run([ansible_bin("ansible-doc"), "-t", "callback", "herald"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    _check_doc(p.stdout)
    assert "DEPRECAT" not in p.stdout + p.stderr
    assert p.stderr == "", "ansible-doc warns about the pip package's plugin: %s" % p.stderr
    p = subprocess.run([ansible_bin("ansible-doc"), "-t", "callback", "-l"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "herald" in p.stdout


def test_python_m_path_prints_the_callback_dir():
    p = subprocess.run([sys.executable, "-m", "herald_ansible.path"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(CALLBACK_ROOT), "PATH": "/usr/bin:/bin"}, check=True)
    d = Path(p.stdout.strip())
    assert d == CALLBACK_DIR
    assert (d / "herald.py").is_file()


def test_herald_ship_help():
    p = subprocess.run([sys.executable, "-m", "herald_ansible.ship", "--help"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(CALLBACK_ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and "--url" in p.stdout and "--spool-dir" in p.stdout
    p = subprocess.run([sys.executable, "-m", "herald_ansible.ship"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(CALLBACK_ROOT), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert p.returncode == 2 and "no URL" in p.stderr


def test_collection_builds_installs_and_runs(runner, receiver, tmp_path):
    out = tmp_path / "dist"
    p = subprocess.run([sys.executable, str(CALLBACK_ROOT / "build_collection.py"), "--build", str(out),
                        "--ansible-galaxy", ansible_bin("ansible-galaxy")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    generated = (CALLBACK_ROOT / "collection" / "plugins" / "callback" / "herald.py").read_text()
    assert not re.search(r"^\s*(from|import) herald_ansible", generated, re.M), "the collection is self-contained"
    (tarball,) = out.glob("herald-events-*.tar.gz")
    cpath = tmp_path / "collections"
    env = runner.env(enabled=False)
    p = subprocess.run([ansible_bin("ansible-galaxy"), "collection", "install", "-p", str(cpath), str(tarball)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (cpath / "ansible_collections" / "herald" / "events" / "plugins" / "callback" / "herald.py").is_file()

    extra = {"ANSIBLE_COLLECTIONS_PATH": str(cpath), "ANSIBLE_CALLBACKS_ENABLED": "herald.events.herald"}
    d = subprocess.run([ansible_bin("ansible-doc"), "-t", "callback", "herald.events.herald"],
                       env=runner.env(enabled=False, **extra), capture_output=True, text=True, timeout=60)
    assert d.returncode == 0, d.stderr
    _check_doc(d.stdout)
    # issue 17 point 11: no `failed to assign id for <ast.Tuple ...>` (nor any other warning)
    assert d.stderr == "", "ansible-doc warns about the collection's plugin: %s" % d.stderr

    pb = runner.write("c.yml", "- hosts: local\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    r = runner.playbook(pb, enabled=False, PYTHONNOUSERSITE="1", **extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr and "DEPRECAT" not in r.stderr, r.stderr
    kinds = receiver.kinds()
    assert kinds["playbook_on_start"] == 1 and kinds["runner_on_ok"] == 2 and kinds["playbook_on_stats"] == 1
    assert runner.spool_files() == []


SHARED = ["wire", "redact", "spool", "quarantine", "shipper", "background"]


def test_collection_ships_the_package_modules_unchanged_and_imports_only_them(runner, receiver, tmp_path):
    """The collection gets the package's files copied, not spliced (the plugin as it is, the shared
    modules under plugins/plugin_utils/), and its plugin imports them from there by the collection's
    name: a herald_ansible that Ansible's Python could import is never touched."""
    out = tmp_path / "dist"
    p = subprocess.run([sys.executable, str(CALLBACK_ROOT / "build_collection.py"), "--build", str(out),
                        "--ansible-galaxy", ansible_bin("ansible-galaxy")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    (tarball,) = out.glob("herald-events-*.tar.gz")
    cpath = tmp_path / "collections"
    p = subprocess.run([ansible_bin("ansible-galaxy"), "collection", "install", "-p", str(cpath), str(tarball)],
                       env=runner.env(enabled=False), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    plugins = cpath / "ansible_collections" / "herald" / "events" / "plugins"
    assert (plugins / "callback" / "herald.py").read_bytes() == (CALLBACK_DIR / "herald.py").read_bytes()
    pkg = CALLBACK_ROOT / "herald_ansible"
    assert sorted(f.stem for f in (plugins / "plugin_utils").glob("*.py")) == sorted(SHARED)
    for name in SHARED:
        assert (plugins / "plugin_utils" / (name + ".py")).read_bytes() == (pkg / (name + ".py")).read_bytes(), name

    # A herald_ansible first on Ansible's sys.path that records being imported and then fails.
    decoy = tmp_path / "decoy" / "herald_ansible"
    decoy.mkdir(parents=True)
    marker = tmp_path / "decoy-imported"
    (decoy / "__init__.py").write_text("open(%r, 'w').close()\nraise RuntimeError('decoy herald_ansible')\n"
                                       % str(marker))
    pb = runner.write("c.yml", "- hosts: local\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    r = runner.playbook(pb, enabled=False, PYTHONNOUSERSITE="1", PYTHONPATH=str(decoy.parent),
                        ANSIBLE_COLLECTIONS_PATH=str(cpath), ANSIBLE_CALLBACKS_ENABLED="herald.events.herald")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr
    assert not marker.exists(), "the collection's plugin imported herald_ansible"
    kinds = receiver.kinds()
    assert kinds["playbook_on_start"] == 1 and kinds["runner_on_ok"] == 2 and kinds["playbook_on_stats"] == 1
    assert runner.spool_files() == []


def test_every_place_that_names_the_version_names_the_same_one():
    """Herald ships as one version: the callback's package, its User-Agent, the collection, the host
    and the Python plugin SDK. A release that bumps one place and not the others fails here."""
    import tomllib

    repo = CALLBACK_ROOT.parent
    found = {}
    for path in ["Cargo.toml", "plugins/Cargo.toml"]:
        found[path] = tomllib.loads((repo / path).read_text())["workspace"]["package"]["version"]
    for path in ["callback/pyproject.toml", "plugins/sdk-python/pyproject.toml"]:
        found[path] = tomllib.loads((repo / path).read_text())["project"]["version"]
    galaxy = (repo / "callback/collection/galaxy.yml").read_text()
    found["callback/collection/galaxy.yml"] = re.search(r"^version:\s*(\S+)\s*$", galaxy, re.M).group(1)
    for path, pattern in [("callback/herald_ansible/__init__.py", r'^__version__ = "([^"]+)"$'),
                          ("callback/herald_ansible/wire.py", r'^VERSION = "([^"]+)"$')]:
        found[path] = re.search(pattern, (repo / path).read_text(), re.M).group(1)
    assert len(set(found.values())) == 1, found
    assert re.fullmatch(r"\d+\.\d+\.\d+", found["Cargo.toml"]), found
