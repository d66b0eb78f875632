"""Issue 20: `herald plugin test COMPONENT --config FILE --events FILE` runs a built component
against a recorded run offline: the host's runtime, limits and allow-lists, with outbound HTTP
answered by a scripted fake. It prints each call's outcome and each request; exit 0 when every
call answered ok, 1 on a fault or another outcome, 2 on bad input."""
from __future__ import annotations

import json
import subprocess

from conftest import HERALD_BIN, HOSTILE_DIR, PLUGIN_DIR, ROOT

RECORDED = ROOT / "plugins" / "chat" / "tests" / "data" / "deploy-failed.jsonl"
HOOK = "https://chat.example.com/hooks/right"


def write_config(tmp_path, component: str, config: dict, allow=("https://chat.example.com",), name="p"):
    lines = [f"[plugins.{name}]", 'tenant = "ops"', f'component = "{component}"',
             "allow_http = " + json.dumps(list(allow)), f"[plugins.{name}.config]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    path = tmp_path / "herald.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def plugin_test(component, config, events=RECORDED, http=None, tmp_path=None, *extra):
    argv = [str(HERALD_BIN), "plugin", "test", str(component), "--config", str(config), "--events", str(events)]
    if http is not None:
        script = tmp_path / "http.json"
        script.write_text(json.dumps(http))
        argv += ["--http", str(script)]
    return subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=300)


def test_the_python_chat_sink_against_a_recorded_run(tmp_path):
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK, "flavor": "discord", "username": "Herald"})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, http=[{"url": HOOK, "status": 204}], tmp_path=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.count(f"POST {HOOK} -> 204") == 3, out
    assert "#18 runner_on_failed web2: ok" in out
    assert '{"content":"❌ deploy.yml: task \'Migrate the database\' failed on web2: migration 42 failed on web2",' \
           '"username":"Herald","allowed_mentions":{"parse":[]}}' in out
    assert '"content":"🔴 deploy.yml failed in ' in out
    assert out.rstrip().endswith("27 events, every call answered ok")


def test_a_plugin_that_sends_the_wrong_thing_fails(tmp_path):
    # Configured with the wrong webhook: the script's service answers it 404.
    config = write_config(tmp_path, "x.wasm", {"webhook_url": "https://chat.example.com/hooks/wrong"})
    script = [{"url": HOOK, "status": 200, "body": "ok"},
              {"url": "https://chat.example.com/", "status": 404, "body": {"message": "Unknown Webhook"}}]
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, http=script, tmp_path=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert '#18 runner_on_failed web2: permanent: HTTP 404 from https://chat.example.com: {"message":"Unknown Webhook"}' \
        in r.stdout, r.stdout
    assert r.stdout.rstrip().endswith("NOT every call answered ok")
    # A 429 with Retry-After is shown as the host would retry it.
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, tmp_path=tmp_path,
                    http=[{"url": HOOK, "status": 429, "headers": {"Retry-After": "7"}, "times": 1}])
    assert r.returncode == 1 and "#8 runner_on_unreachable cache1: retryable after 7000 ms: HTTP 429" in r.stdout, r.stdout


def test_a_trap_is_reported_with_the_plugins_message(tmp_path):
    config = write_config(tmp_path, "x.wasm", {"mode": "panic", "only_host": "web2"}, allow=())
    r = plugin_test(HOSTILE_DIR / "hostile.wasm", config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "#17 runner_on_skipped db1: ok" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("#18 "))
    assert line.startswith("#18 runner_on_failed web2: FAULT plugin panicked: ") and \
        "hostile plugin panicked on purpose" in line, line


def test_the_sandbox_is_the_hosts_and_secrets_are_masked(tmp_path):
    # A destination outside allow_http is refused as in the host, before the fake is asked.
    config = write_config(tmp_path, "x.wasm", {"mode": "http", "url": "https://elsewhere.example.com/x"},
                          allow=("https://chat.example.com",))
    r = plugin_test(HOSTILE_DIR / "hostile.wasm", config, tmp_path=tmp_path, http=[])
    assert r.returncode == 1 and "POST https://elsewhere" not in r.stdout, r.stdout
    assert "#1 playbook_on_start: permanent: " in r.stdout and "not allowed" in r.stdout.splitlines()[0], r.stdout
    # The webhook's bearer token is sent, and printed masked.
    config = write_config(tmp_path, "x.wasm", {"url": HOOK, "bearer_token": "tok-s3cr3t"})
    r = plugin_test(PLUGIN_DIR / "webhook.wasm", config, tmp_path=tmp_path, http=[{"url": HOOK, "status": 200}])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "authorization: ***" in r.stdout and "tok-s3cr3t" not in r.stdout
    assert r.stdout.count(f"POST {HOOK} -> 200") == 27


def test_bad_input_names_the_file(tmp_path):
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK, "flavour": "x"})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config)
    assert r.returncode == 2 and "plugins.p: plugin refused its configuration: config key `flavour`: unknown key" \
        in r.stderr, r.stderr
    bad = tmp_path / "events.jsonl"
    bad.write_text(RECORDED.read_text().splitlines()[0] + "\nnot json\n")
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, bad)
    assert r.returncode == 2 and f"{bad}:2: not a JSON event" in r.stderr, r.stderr
