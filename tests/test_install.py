"""Installing and operating Herald like a service (issue 18): `make install`,
the Debian package, the systemd unit, the journal lock, and the CLI's
conventions (completions, man pages, `token new`, run ids, port in use).

Everything runs the real binary, the real Makefile and the real dpkg-deb;
nothing is installed outside temporary directories.
"""
from __future__ import annotations

import configparser
import os
import re
import shutil
import socket
import subprocess
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import HERALD_BIN, PLUGIN_DIR, ROOT, Host, free_port, token_pair

PLUGINS = ["webhook", "prometheus", "pagerduty", "slack", "grafana", "syslog", "teams", "splunk_hec", "datadog",
           "otel", "email", "chat"]  # chat: the Python plugin (componentize-py)


def herald(*args, env=None, timeout=60, binary=HERALD_BIN) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else os.environ)


def make(*args, timeout=900, env=None) -> subprocess.CompletedProcess:
    p = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env=env if env is not None else os.environ)
    assert p.returncode == 0, f"make {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    return p


def check_layout(root: Path, prefix: str, sysconfdir: str, plugindir: str, unitdir: str):
    """Asserts the installed tree under `root` (DESTDIR or /) holds every part."""
    r = lambda p: root / p.lstrip("/")  # noqa: E731
    binary = r(f"{prefix}/bin/herald")
    assert os.access(binary, os.X_OK)
    # stripped: no debug sections, and far from the 186 MB of a build with debug info
    sections = subprocess.run(["objdump", "-h", str(binary)], capture_output=True, text=True).stdout
    assert ".debug_info" not in sections and ".debug_line" not in sections
    assert binary.stat().st_size < 80_000_000, binary.stat().st_size
    for p in PLUGINS:
        assert r(f"{plugindir}/{p}.wasm").stat().st_size > 1000
    config = r(f"{sysconfdir}/herald/herald.toml")
    assert f'component = "{plugindir}/webhook.wasm"' in config.read_text()
    unit = r(f"{unitdir}/herald.service").read_text()
    assert f"ExecStart={prefix}/bin/herald serve --config {sysconfdir}/herald/herald.toml" in unit
    assert r(f"{prefix}/share/doc/herald/herald.toml.example").exists()
    man1 = r(f"{prefix}/share/man/man1")
    pages = sorted(p.name for p in man1.iterdir())
    assert any(p.startswith("herald.1") for p in pages) and any(p.startswith("herald-serve.1") for p in pages)
    for c in ["bash-completion/completions/herald", "zsh/site-functions/_herald",
              "fish/vendor_completions.d/herald.fish"]:
        assert r(f"{prefix}/share/{c}").stat().st_size > 500, c
    return binary


def test_make_install_prefix_runs_check_on_the_installed_config_and_plugins(tmp_path):
    prefix = tmp_path / "prefix"
    make("install", f"PREFIX={prefix}", f"STATEDIR={tmp_path / 'state'}")
    binary = check_layout(Path("/"), str(prefix), f"{prefix}/etc", f"{prefix}/lib/herald/plugins",
                          f"{prefix}/lib/systemd/system")
    out = herald("check", "--config", str(prefix / "etc/herald/herald.toml"), binary=binary)
    assert out.returncode == 0, out.stderr
    assert "ok (1 tenants, 1 plugin instances)" in out.stdout

    # an edited config survives a second install; the example beside the docs is refreshed
    config = prefix / "etc/herald/herald.toml"
    config.write_text(config.read_text() + "\n# mine\n")
    p = make("install", f"PREFIX={prefix}", f"STATEDIR={tmp_path / 'state'}")
    assert "keeping" in p.stdout and config.read_text().endswith("# mine\n")

    make("uninstall", f"PREFIX={prefix}")
    assert not (prefix / "bin/herald").exists() and not (prefix / "lib/herald/plugins").exists()
    assert config.exists()


def test_make_install_destdir_stages_the_default_prefix(tmp_path):
    dest = tmp_path / "dest"
    make("install", f"DESTDIR={dest}")
    binary = check_layout(dest, "/usr/local", "/usr/local/etc", "/usr/local/lib/herald/plugins",
                          "/usr/local/lib/systemd/system")
    assert not (dest / "usr/local/etc/herald/herald.toml").read_text().count(str(dest))
    # the staged config names the final paths; checked here with DESTDIR put in front
    staged = tmp_path / "staged.toml"
    text = (dest / "usr/local/etc/herald/herald.toml").read_text()
    text = text.replace('"/usr/local/', f'"{dest}/usr/local/').replace('"/var/lib/herald"', f'"{tmp_path}/state"')
    staged.write_text(text)
    out = herald("check", "--config", str(staged), binary=binary)
    assert out.returncode == 0, out.stderr


def test_readme_install_commands_run(tmp_path):
    """The README's install block, run as written with /usr/local moved into
    a temporary directory (and `sudo` left out)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- install-commands -->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "README.md has no install-commands block"
    prefix = tmp_path / "usr-local"
    env = dict(os.environ, PREFIX=str(prefix), STATEDIR=str(tmp_path / "state"),
               PATH=f"{prefix}/bin:{os.environ['PATH']}")
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert any("make install" in c for c in commands) and any("herald check" in c for c in commands)
    for cmd in commands:
        cmd = cmd.removeprefix("sudo ").replace("/usr/local", str(prefix))
        p = subprocess.run(cmd, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"{cmd}:\n{p.stdout}\n{p.stderr}"
    assert (prefix / "bin/herald").exists()


def test_cargo_install_path_host_installs_the_binary(tmp_path):
    # same profile and target directory as the build: nothing is recompiled
    p = subprocess.run(["cargo", "install", "--locked", "--offline", "--path", "host/herald", "--root", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr
    out = herald("--version", binary=tmp_path / "bin" / "herald")
    assert out.returncode == 0 and out.stdout.startswith("herald ")


@pytest.fixture(scope="module")
def deb() -> Path:
    for old in (ROOT / "build").glob("herald_*.deb"):
        old.unlink()
    make("deb")
    (path,) = sorted((ROOT / "build").glob("herald_*.deb"))
    return path


def test_deb_contents_control_and_extracted_binary(deb, tmp_path):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in listing.splitlines():
        perms, owner, *_rest = line.split()
        path = line.split()[-1] if " -> " not in line else line.split(" -> ")[0].split()[-1]
        entries[path.lstrip(".")] = (perms, owner)
    expected = ["/usr/bin/herald", "/etc/herald/herald.toml", "/usr/lib/systemd/system/herald.service",
                "/usr/share/man/man1/herald.1.gz", "/usr/share/man/man1/herald-serve.1.gz",
                "/usr/share/doc/herald/copyright", "/usr/share/bash-completion/completions/herald"]
    expected += [f"/usr/lib/herald/plugins/{p}.wasm" for p in PLUGINS]
    for path in expected:
        assert path in entries, (path, listing)
    assert entries["/usr/bin/herald"] == ("-rwxr-xr-x", "root/root")
    assert any(re.fullmatch(r"/usr/share/herald/herald-events-.*\.tar\.gz", p) for p in entries), listing
    assert not any(p.startswith("/usr/local") for p in entries)

    control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Package: herald$", control, re.M)
    assert re.search(r"^Depends: libc6 \(>= 2\.\d+\)", control, re.M)
    ctl = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(ctl)], check=True)
    assert (ctl / "conffiles").read_text().split() == ["/etc/herald/herald.toml"]
    assert "useradd --system" in (ctl / "postinst").read_text()
    for script in ["postinst", "prerm", "postrm"]:
        assert os.access(ctl / script, os.X_OK)
        subprocess.run(["sh", "-n", str(ctl / script)], check=True)

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    out = herald("--version", binary=root / "usr/bin/herald")
    assert out.returncode == 0 and out.stdout.startswith("herald ")
    text = (root / "etc/herald/herald.toml").read_text()
    assert 'component = "/usr/lib/herald/plugins/webhook.wasm"' in text and 'data_dir = "/var/lib/herald"' in text
    # the packaged config checks with the packaged plugins (paths moved into the extracted tree)
    moved = tmp_path / "herald.toml"
    moved.write_text(text.replace('"/usr/lib/herald', f'"{root}/usr/lib/herald')
                     .replace('"/var/lib/herald"', f'"{tmp_path}/state"'))
    out = herald("check", "--config", str(moved), binary=root / "usr/bin/herald")
    assert out.returncode == 0, out.stderr


def test_deb_systemd_unit_verifies(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    unit = root / "usr/lib/systemd/system/herald.service"
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(unit.read_text())
    svc = parser["Service"]
    assert svc["User"] == "herald" and svc["StateDirectory"] == "herald"
    assert svc["ExecStart"] == "/usr/bin/herald serve --config /etc/herald/herald.toml"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ReadWritePaths": "/var/lib/herald"}.items():
        assert svc[key] == value, key
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    # the config's data_dir is the one directory the unit lets the service write
    assert tomllib.loads((root / "etc/herald/herald.toml").read_text())["storage"]["data_dir"] == "/var/lib/herald"
    if shutil.which("systemd-analyze"):
        # verify resolves ExecStart= on the host: point it at the extracted binary
        copy = tmp_path / "herald.service"
        copy.write_text(unit.read_text().replace("ExecStart=/usr/bin/herald", f"ExecStart={root}/usr/bin/herald"))
        p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
        assert p.returncode == 0, p.stderr
        assert "herald.service" not in p.stderr, p.stderr


@pytest.mark.sqlite_only("PostgreSQL is shared by N hosts by design")
def test_second_host_on_one_journal_refuses_and_names_the_first(make_host, tmp_path):
    _, token_hash = token_pair()
    first = make_host({"t": token_hash}, {}).start()
    lock = first.workdir / "journal" / "herald.db.lock"
    assert lock.read_text().strip() == str(first.proc.pid)
    port = free_port()
    second = subprocess.run([str(HERALD_BIN), "serve", "--config", str(first.config_path),
                             "--listen", f"127.0.0.1:{port}", "--log-format", "text"],
                            cwd=first.workdir, capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"in use by another herald serve (pid {first.proc.pid}" in second.stderr, second.stderr
    assert str(lock) in second.stderr
    with urllib.request.urlopen(first.url + "/health", timeout=5) as r:
        assert r.status == 200
    # a killed first host leaves no stale lock: the next one starts
    first.kill()
    again = Host(first.workdir, {"t": token_hash}, {})
    try:
        again.start()
    finally:
        again.kill()


def test_port_in_use_is_one_clean_message(tmp_path):
    _, token_hash = token_pair()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # with a plugin instance, whose worker must not be cancelled under the error
        host = Host(tmp_path, {"t": token_hash}, {"w": {
            "tenant": "t", "component": str(PLUGIN_DIR / "webhook.wasm"), "allow_http": ["http://127.0.0.1:9"],
            "config": {"url": "http://127.0.0.1:9/x"}}})
        for fmt in ["json", "text"]:
            p = subprocess.run([str(HERALD_BIN), "serve", "--config", str(host.config_path), "--listen",
                                f"127.0.0.1:{port}", "--log-format", fmt],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert p.returncode == 1
            errors = [line for line in p.stderr.splitlines() if "ERROR" in line or "error" in line.lower()]
            assert f"herald: cannot listen on 127.0.0.1:{port}: " in p.stderr, p.stderr
            assert "Address already in use" in p.stderr
            assert "cancel" not in p.stderr.lower() and "panic" not in p.stderr.lower(), p.stderr
            assert len(errors) == 1, p.stderr


def test_token_new_prints_lines_to_paste_into_herald_toml(tmp_path):
    out = herald("token", "new", "--tenant", "ops")
    assert out.returncode == 0, out.stderr
    token = re.search(r"^token: (hrld_[0-9a-f]{48})$", out.stdout, re.M).group(1)
    pasted = out.stdout.split("Paste into herald.toml", 1)[1].split("\n", 1)[1]
    table = tomllib.loads(pasted)
    assert list(table["tenants"]) == ["ops"]
    host = Host(tmp_path, {}, {})
    host.config_path.write_text(host.config_path.read_text() + "\n" + pasted)
    host.start()
    try:
        def get(tok):
            req = urllib.request.Request(host.url + "/v1/runs", headers={"Authorization": f"Bearer {tok}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        assert get(token) == 200
        assert get(token + "x") == 401
    finally:
        host.kill()


def test_completions_and_man_pages_come_from_the_clap_definitions(tmp_path):
    for shell, marker in [("bash", "_herald()"), ("zsh", "#compdef herald"), ("fish", "complete -c herald"),
                          ("elvish", "herald"), ("powershell", "herald")]:
        out = herald("completions", shell)
        assert out.returncode == 0 and marker in out.stdout, (shell, out.stderr)
    bash = herald("completions", "bash").stdout
    for word in ["serve", "check", "token", "runs", "deliveries", "dlq", "replay", "import", "--log-format"]:
        assert word in bash, word
    man = herald("man").stdout
    assert man.startswith(".ie") or man.startswith(".TH"), man[:200]
    assert ".TH herald 1" in man and "serve" in man
    out = herald("man", "--dir", str(tmp_path / "man"))
    assert out.returncode == 0, out.stderr
    pages = {p.name for p in (tmp_path / "man").iterdir()}
    assert {"herald.1", "herald-serve.1", "herald-runs-show.1", "herald-token-new.1"} <= pages, pages
    assert "\\-\\-log\\-format" in (tmp_path / "man" / "herald-serve.1").read_text()


def test_cli_flags_live_where_they_apply():
    # --log-format belongs to serve only
    assert "--log-format" in herald("serve", "--help").stdout
    assert "--log-format" not in herald("--help").stdout
    assert "--log-format" not in herald("check", "--help").stdout
    bad = herald("--log-format", "text", "check", "--config", "x.toml")
    assert bad.returncode == 2 and "--log-format" in bad.stderr
    # --token tells about HERALD_TOKEN, and so does the error without one
    assert "HERALD_TOKEN" in herald("runs", "list", "--help").stdout
    env = {k: v for k, v in os.environ.items() if k not in ("HERALD_TOKEN",)}
    out = herald("runs", "show", "some-run", "--url", "http://127.0.0.1:1", env=env)
    assert out.returncode == 1 and "HERALD_TOKEN" in out.stderr, out.stderr


@pytest.mark.parametrize("argv", [["runs", "show"], ["runs", "events"], ["runs", "artifacts"],
                                  ["replay"], ["deliveries", "list"]])
def test_run_ids_are_positional_everywhere(argv):
    usage = herald(*argv, "--help").stdout
    assert "--run " not in usage and "--run\n" not in usage and "--id " not in usage, usage
    assert re.search(r"^Usage: herald .*(<RUN>|\[RUN\])", usage, re.M), usage
    # the positional form parses (the call itself fails: nothing listens on port 1)
    extra = ["--plugin", "p"] if argv == ["replay"] else []
    out = herald(*argv, "run-1", *extra, "--url", "http://127.0.0.1:1", "--token", "t")
    assert out.returncode == 1 and "cannot reach herald" in out.stderr, out.stderr


def test_one_default_port_across_the_server_cli_and_callback_docs(tmp_path):
    # the server's default listen address, as the running binary uses it
    host = Host(tmp_path, {}, {})
    host.config_path.write_text(host.config_path.read_text().replace(f'listen = "127.0.0.1:{host.port}"\n', ""))
    port = 8765
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip("something already listens on 127.0.0.1:8765")
    host.url = f"http://127.0.0.1:{port}"
    host.start()
    host.kill()
    cli_default = re.search(r"\[default: http://127\.0\.0\.1:(\d+)\]", herald("runs", "list", "--help").stdout)
    assert cli_default and int(cli_default.group(1)) == port
    callback = ROOT / "callback"
    for doc in [callback / "README.md", callback / "collection" / "README.md",
                callback / "herald_ansible" / "callback_plugins" / "herald.py", ROOT / "examples" / "ansible.cfg"]:
        urls = re.findall(r"(?:url = |HERALD_URL=)http://127\.0\.0\.1:(\d+)", doc.read_text())
        assert urls and set(urls) == {str(port)}, (doc, urls)
