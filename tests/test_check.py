"""Issue 17, points 6, 14 and 15: `herald check` reports every problem at once, each at its
file:line:col, including destinations a plugin's grants do not admit (asked by the plugin
through `herald:grants/check` while it configures) and a token that is both a tenant's and
the admin's. Runs the real `herald check` (and `serve`) on broken files."""
from __future__ import annotations

import os
import subprocess

from conftest import HERALD_BIN, PLUGIN_DIR, token_pair

WEBHOOK = PLUGIN_DIR / "webhook.wasm"
SYSLOG = PLUGIN_DIR / "syslog.wasm"


def run(cmd: str, tmp_path, lines: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "herald.toml"
    path.write_text("\n".join(lines) + "\n")
    args = [str(HERALD_BIN), cmd, "--config", str(path)]
    full_env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), **(env or {})}
    full_env.pop("HERALD_TEST_UNSET_SECRET", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=full_env)


def problems(r: subprocess.CompletedProcess) -> list[str]:
    """The `herald.toml:L:C: key: message` lines, without the directory."""
    return [line.split("/herald.toml", 1)[1].lstrip(":") if "/herald.toml" in line else line
            for line in r.stderr.splitlines() if "herald.toml:" in line]


def test_check_reports_every_problem_at_its_own_line_and_column(tmp_path):
    _, h = token_pair()
    lines = [
        "[tenants.ops]",                                                       # 1
        f"tokens = [\"{h}\"]",                                                 # 2
        "",                                                                    # 3
        "[plugin.syslog]",                                                     # 4 typo of plugins
        "tenant = \"ops\"",                                                    # 5
        "[plugins.syslog.config]",                                             # 6
        "address = \"127.0.0.1:514\"",                                         # 7
        "",                                                                    # 8
        "[plugins.hook]",                                                      # 9
        "tenant = \"ops\"",                                                    # 10
        f"component = \"{WEBHOOK}\"",                                          # 11
        "allow_http = [\"http://127.0.0.1:9101\"]",                            # 12
        "rate_limit = { per_second = \"fast\", burst = 2, brust = 3 }",        # 13
        "[plugins.hook.config]",                                               # 14
        "url = \"http://127.0.0.1:9101/x\"",                                   # 15
        "bearer_token = \"${env:HERALD_TEST_UNSET_SECRET}\"",                  # 16
        "methd = \"POST\"",                                                    # 17
        "[[plugins.hook.routes]]",                                             # 18
        "kinds = [\"runner_on_nope\"]",                                        # 19
        "hosts = [\"web[\"]",                                                  # 20
        "labels = { env = 1 }",                                                # 21
    ]
    r = run("check", tmp_path, lines)
    assert r.returncode == 1, r.stdout + r.stderr
    assert problems(r) == [
        "4:2: plugin: unknown top-level table `plugin`; did you mean `plugins`?",
        "13:16: plugins.hook.rate_limit.per_second: invalid type: string \"fast\", expected f64",
        "13:48: plugins.hook.rate_limit.brust: unknown field `brust`, expected `per_second` or `burst`",
        "16:1: plugins.hook.config.bearer_token: environment variable HERALD_TEST_UNSET_SECRET "
        "(from `${env:HERALD_TEST_UNSET_SECRET}`) is not set",
        # The unset secret does not hide the plugin's own refusal, located at its key.
        "17:1: plugins.hook.config.methd: plugin refused its configuration: unknown field `methd`, "
        "expected one of `url`, `method`, `headers`, `bearer_token`, `hmac_secret`, `signature_header`, "
        "`timeout_ms`, `kinds`, `template`",
        # Every error of the route, not only the first.
        "19:1: plugins.hook.routes.kinds: route 1: unknown event kind \"runner_on_nope\" (see docs/wire-format.md)",
        "20:1: plugins.hook.routes.hosts: route 1: invalid glob \"web[\": error parsing glob 'web[': "
        "unclosed character class; missing ']'",
        "21:12: plugins.hook.routes.labels.env: invalid type: integer `1`, expected a string",
    ], r.stderr
    assert "8 problem(s) found" in r.stderr
    # No spurious "missing field `tenant`" for plugins.syslog: that is the [plugin.syslog] typo.
    assert "missing field" not in r.stderr


def test_a_duplicate_key_is_named(tmp_path):
    r = run("check", tmp_path, ["[server]", "listen = \"127.0.0.1:1\"", "listen = \"127.0.0.1:2\""])
    assert r.returncode == 1
    assert problems(r) == ["3:1: duplicate key `listen`"], r.stderr


def test_a_token_that_is_both_a_tenants_and_the_admins_is_refused(tmp_path):
    _, h = token_pair()
    _, other = token_pair()
    lines = ["[server]", f"admin_tokens = [\"{h}\"]", "", "[tenants.ops]", f"tokens = [\"{other}\", \"{h}\"]"]
    for cmd in ("check", "serve"):
        r = run(cmd, tmp_path, lines)
        assert r.returncode != 0, (cmd, r.stderr)
        assert "5:1: tenants.ops.tokens: this token hash is also in server.admin_tokens" in r.stderr, (cmd, r.stderr)
    lines[1] = f"admin_tokens = [\"{other}\"]"
    lines[4] = f"tokens = [\"{h}\"]"
    assert run("check", tmp_path, lines).returncode == 0


def webhook_lines(h: str, allow: str, url: str) -> list[str]:
    return [
        "[tenants.ops]",                                  # 1
        f"tokens = [\"{h}\"]",                            # 2
        "",                                               # 3
        "[plugins.hook]",                                 # 4
        "tenant = \"ops\"",                               # 5
        f"component = \"{WEBHOOK}\"",                     # 6
        f"allow_http = [\"{allow}\"]",                    # 7
        "",                                               # 8
        "[plugins.hook.config]",                          # 9
        "timeout_ms = 1000",                              # 10
        f"url = \"{url}\"",                               # 11
    ]


def test_a_destination_the_grants_do_not_admit_fails_check_and_load_at_its_key(tmp_path):
    _, h = token_pair()
    lines = webhook_lines(h, "http://127.0.0.1:9101", "http://localhost:9101/hook?secret=s3cret")
    for cmd in ("check", "serve"):
        r = run(cmd, tmp_path, lines)
        assert r.returncode != 0, (cmd, r.stdout, r.stderr)
        got = [p for p in problems(r) if "plugins.hook" in p]
        assert got and got[0].startswith(
            "11:1: plugins.hook.config.url: plugin refused its configuration: http://localhost:9101 is not in "
            "allow_http (it lists http://127.0.0.1:9101); host names are not resolved"), (cmd, r.stderr)
        # The URL's path and query (where secrets live) are not repeated.
        assert "s3cret" not in r.stderr and "/hook" not in r.stderr, r.stderr
    # The same destination, written as allowed, passes.
    r = run("check", tmp_path, webhook_lines(h, "http://127.0.0.1:9101", "http://127.0.0.1:9101/hook"))
    assert r.returncode == 0, r.stderr
    assert "ok (1 tenants, 1 plugin instances)" in r.stdout


def test_a_syslog_address_outside_allow_sockets_fails_check_at_its_key(tmp_path):
    _, h = token_pair()
    lines = [
        "[tenants.ops]",                                  # 1
        f"tokens = [\"{h}\"]",                            # 2
        "[plugins.sys]",                                  # 3
        "tenant = \"ops\"",                               # 4
        f"component = \"{SYSLOG}\"",                      # 5
        "allow_sockets = [\"127.0.0.1:514\"]",            # 6
        "[plugins.sys.config]",                           # 7
        "transport = \"tcp\"",                            # 8
        "address = \"127.0.0.1:515\"",                    # 9
    ]
    r = run("check", tmp_path, lines)
    assert r.returncode == 1, r.stderr
    assert problems(r)[0] == ("9:1: plugins.sys.config.address: plugin refused its configuration: 127.0.0.1:515 "
                              "is not in allow_sockets (it lists 127.0.0.1:514); add it to the instance's "
                              "allow_sockets"), r.stderr
    lines[-1] = "address = \"127.0.0.1:514\""
    r = run("check", tmp_path, lines)
    assert r.returncode == 0, r.stderr
