"""Issue 20: `herald serve` reloads a plugin instance when its component file changes (a
rebuilt .wasm), without SIGHUP or an edit of herald.toml, and keeps the running instance when
the new file does not load.

The instance's component starts as the 0.3.0 webhook (it forwards events to a local receiver);
it is replaced by the 0.1.0 `legacy` test plugin (it counts `legacy_events_total` instead), then
by a file that is not a component.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid

from conftest import HOSTILE_DIR, PLUGIN_DIR, add_admin, admin_get, token_pair, wait_for, webhook_plugin

TENANT = "ops"


def events(run: str, n: int) -> list[dict]:
    return [{"uuid": str(uuid.uuid4()), "event": "runner_on_ok", "counter": i + 1, "run_id": run,
             "created": "2026-11-21T10:00:00+00:00", "event_data": {"playbook": "site.yml", "host": f"web{i}"}}
            for i in range(n)]


def post(host, token, batch):
    status, body = host.post(json.dumps(batch).encode(), token)
    assert status == 202 and body["accepted"] == len(batch), body


def legacy_count(host) -> int:
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in host.metrics().splitlines()
                   if line.startswith("legacy_events_total{") and 'plugin="sink"' in line))


def replace(path, source: bytes):
    """Writes `source` beside `path` and renames it over, as a build tool does."""
    tmp = path.with_suffix(".part")
    tmp.write_bytes(source)
    os.replace(tmp, path)


def test_a_rebuilt_component_is_reloaded_and_a_broken_one_keeps_the_running_instance(make_host, receiver, tmp_path):
    component = tmp_path / "sink.wasm"
    shutil.copy(PLUGIN_DIR / "webhook.wasm", component)
    token, token_hash = token_pair()
    admin, admin_hash = token_pair()
    spec = webhook_plugin(TENANT, receiver)
    spec["component"] = str(component)
    host = make_host({TENANT: token_hash}, {"sink": spec})
    add_admin(host, admin_hash)
    # add_admin turns the config watcher off; component watching comes with it: turn it back on.
    host.config_path.write_text(host.config_path.read_text().replace("watch_config = false", "watch_config = true"))
    host.start()

    def contract():
        return {p["name"]: p["contract"] for p in admin_get(host, "/v1/plugins", admin)["plugins"]}["sink"]

    def generation():
        return admin_get(host, "/v1/admin/reload", admin)

    assert contract() == "herald:plugin/handler@0.3.0"
    post(host, token, events("r1", 3))
    wait_for(lambda: len(receiver.events()) == 3, what="the webhook to forward run r1")

    # A new build of the component: picked up within seconds, no signal, no config edit.
    replace(component, (HOSTILE_DIR / "legacy_v0_1.wasm").read_bytes())
    wait_for(lambda: contract() == "herald:plugin/handler@0.1.0", timeout=30, what="the new component to load")
    assert generation()["ok"] is True
    assert "plugin component changed" in host.logs()
    post(host, token, events("r2", 4))
    wait_for(lambda: legacy_count(host) == 4, timeout=20, what="the new component to count run r2")
    assert len(receiver.events()) == 3  # the old webhook got none of run r2

    # A broken build: refused and logged, the running (legacy) instance keeps delivering.
    before = generation()["generation"]
    component.write_bytes(b"\0asm not really a component")
    wait_for(lambda: generation()["generation"] > before, timeout=30, what="the reload attempt")
    status = generation()
    assert status["ok"] is False and any("plugins.sink.component" in p for p in status["problems"]), status
    assert "configuration reload refused" in host.logs()
    assert contract() == "herald:plugin/handler@0.1.0"
    post(host, token, events("r3", 2))
    wait_for(lambda: legacy_count(host) == 6, timeout=20, what="the running instance to count run r3")

    # Fixed again: the webhook is back.
    replace(component, (PLUGIN_DIR / "webhook.wasm").read_bytes())
    wait_for(lambda: contract() == "herald:plugin/handler@0.3.0", timeout=30, what="the fixed component to load")
    post(host, token, events("r4", 2))
    wait_for(lambda: len(receiver.events()) == 5, what="the webhook to forward run r4")
    assert [e["run_id"] for e in receiver.events()[3:]] == ["r4", "r4"]
