"""The chat sink natively, with the SDK's FakeHost: what each flavour sends, and how answers map
to outcomes. The end-to-end tests (a real playbook through `herald serve` into strict fakes of
the three services) are in tests/test_plugins_chat.py at the repository root."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parents[1] / "sdk-python")]

from chat import Chat  # noqa: E402
from herald_sdk import ConfigError, Permanent, Retryable, ok  # noqa: E402
from herald_sdk.testing import FakeHost, event, host_event, stats_event  # noqa: E402

HOOK = "https://chat.example.com/hooks/s3cr3t"


def failed_run(run="r1"):
    return [
        event("playbook_on_start", run, "deploy.yml", created_ms=1_700_000_000_000),
        host_event("runner_on_ok", "changed", "web1", "Render", run_id=run, playbook="deploy.yml"),
        host_event("runner_on_failed", "failed", "web2", "Migrate", {"msg": "migration 42 failed"}, run_id=run,
                   playbook="deploy.yml"),
        stats_event({"web1": {"ok": 1, "changed": 1}, "web2": {"failures": 1}}, {"_run": {"release": "2.0.1"}},
                    run_id=run, playbook="deploy.yml", created_ms=1_700_000_075_000),
    ]


def deliver(plugin, events):
    return [plugin.handle(e, 1) for e in events]


@pytest.mark.parametrize("flavor", ["mattermost", "rocketchat", "discord"])
def test_a_failure_and_the_failed_run_summary(flavor):
    with FakeHost(allow_http=["https://chat.example.com"]) as host:
        host.respond(HOOK, 204 if flavor == "discord" else 200,
                     '{"success":true}' if flavor == "rocketchat" else ("" if flavor == "discord" else "ok"))
        cfg = {"webhook_url": HOOK, "flavor": flavor, "username": "Herald", "mention": "@here"}
        if flavor != "discord":
            cfg["channel"] = "#deploys"
        plugin = Chat(cfg)
        assert deliver(plugin, failed_run()) == [ok()] * 4
        assert len(host.requests) == 2
        failure, summary = (r.json() for r in host.requests)
        text_key = "content" if flavor == "discord" else "text"
        assert failure[text_key] == "@here ❌ deploy.yml: task 'Migrate' failed on web2: migration 42 failed"
        assert summary[text_key] == ("@here 🔴 deploy.yml failed in 1m15s: 2 host(s), ok=1 changed=1 failed=1 "
                                     "unreachable=0 skipped=0; failed hosts: web2")
        if flavor == "discord":
            assert failure["allowed_mentions"] == {"parse": ["everyone"]} and failure["username"] == "Herald"
            embed = summary["embeds"][0]
            assert embed["color"] == 0xD62728 and embed["timestamp"] == "2023-11-14T22:14:35.000Z"
            assert {"name": "Custom stats", "value": 'release="2.0.1"', "inline": True} in embed["fields"]
            assert "`web2` failed **Migrate**: migration 42 failed" in embed["description"]
        else:
            att = summary["attachments"][0]
            assert att["color"] == "#d62728" and att["text"] == "`web2` failed **Migrate**: migration 42 failed"
            assert {"short": True, "title": "Failed hosts", "value": "web2"} in att["fields"]
            assert summary["channel"] == "#deploys"
            assert summary["username" if flavor == "mattermost" else "alias"] == "Herald"
        # The run is complete: a re-delivered stats event sends nothing again.
        assert plugin.handle(failed_run()[-1], 2) == ok() and len(host.requests) == 2


def test_answers_map_to_outcomes_and_the_secret_path_stays_out_of_reasons():
    with FakeHost(allow_http=["https://chat.example.com"], now_ms=0) as host:
        plugin = Chat({"webhook_url": HOOK, "flavor": "discord"})
        evs = failed_run()
        host.respond(HOOK, 429, {"retry_after": 1.5}, {"Retry-After": "2"}, then=[(500, "oops"), (400, "bad")])
        assert plugin.handle(evs[2], 1) == Retryable("HTTP 429 from https://chat.example.com: {\"retry_after\": 1.5}", 2000)
        assert plugin.handle(evs[2], 2) == Retryable("HTTP 500 from https://chat.example.com: oops", None)
        out = plugin.handle(evs[2], 3)
        assert isinstance(out, Permanent) and out.reason == "HTTP 400 from https://chat.example.com: bad"
        assert all("s3cr3t" not in m for m in host.logged())
        assert [m[3] for m in host.metrics if m[2] == {"kind": "failure", "result": "failed"}] == [1.0] * 3


def test_a_successful_run_is_quiet_unless_asked():
    good = [event("playbook_on_start", "r2"), host_event("runner_on_ok", "ok", "web1", run_id="r2"),
            stats_event({"web1": {"ok": 1}}, run_id="r2")]
    with FakeHost(allow_http=["https://chat.example.com"]) as host:
        host.respond(HOOK, 200, "ok")
        assert deliver(Chat({"webhook_url": HOOK}), good) == [ok()] * 3 and host.requests == []
    with FakeHost(allow_http=["https://chat.example.com"]) as host:   # another instance, its own state
        host.respond(HOOK, 200, "ok")
        assert deliver(Chat({"webhook_url": HOOK, "notify_on_success": True}), good)[-1] == ok()
        assert host.requests[0].json()["text"].startswith("🟢 site.yml successful in ")


def test_rocketchat_success_false_is_permanent():
    with FakeHost(allow_http=["https://chat.example.com"]) as host:
        host.respond(HOOK, 200, {"success": False, "error": "invalid-channel"})
        out = Chat({"webhook_url": HOOK, "flavor": "rocketchat"}).handle(failed_run()[2], 1)
        assert out == Permanent("Rocket.Chat refused the message: invalid-channel")


@pytest.mark.parametrize("cfg, message", [
    ({"webhook_url": HOOK, "flavour": "x"}, "config key `flavour`: unknown key"),
    ({"webhook_url": HOOK, "flavor": "teams"}, "config key `flavor`: must be one of mattermost, rocketchat, discord"),
    ({"webhook_url": HOOK, "flavor": "discord", "channel": "#x"}, "config key `channel`: Discord webhooks"),
    ({"webhook_url": "https://other.example.com/h"}, "config key `webhook_url`: https://other.example.com is not in allow_http"),
    ({}, "config key `webhook_url`: is required"),
    ({"webhook_url": HOOK, "timeout_ms": 0}, "config key `timeout_ms`: must be between 1 and 600000"),
])
def test_bad_config_names_the_key(cfg, message):
    with FakeHost(allow_http=["https://chat.example.com"]):
        with pytest.raises(ConfigError) as e:
            Chat(cfg)
        assert str(e.value).startswith(message), str(e.value)


def test_against_a_recorded_run():
    """tests/data/deploy-failed.jsonl is `herald runs export` of a real run of Herald's
    tests/support/playbooks/deploy.yml (web2 fails the migration, cache1 is unreachable)."""
    from herald_sdk.testing import load_events

    events = load_events(HERE / "data" / "deploy-failed.jsonl")
    assert len(events) == 27 and events[0].kind == "playbook_on_start" and events[-1].kind == "playbook_on_stats"
    with FakeHost(allow_http=["https://chat.example.com"]) as host:
        host.respond(HOOK, 200, "ok")
        plugin = Chat({"webhook_url": HOOK, "flavor": "mattermost"})
        assert [plugin.handle(e, 1) for e in events] == [ok()] * 27
        texts = [r.json()["text"] for r in host.requests]
        assert len(texts) == 3, texts
        assert texts[0].startswith("❌ deploy.yml: task 'Render the configuration' unreachable on cache1: ")
        assert texts[1] == "❌ deploy.yml: task 'Migrate the database' failed on web2: migration 42 failed on web2"
        assert texts[2].startswith("🔴 deploy.yml failed in ")
        assert texts[2].endswith(": 4 host(s), ok=5 changed=1 failed=1 unreachable=1 skipped=3; failed hosts: cache1, web2")


def test_the_users_templates_give_exactly_the_text():
    from herald_sdk import templates

    def broken(e):
        raise templates.TemplateError("template `summary_text`: line 1: undefined filter")

    user = {"failure_text": lambda e: f"{e.host} broke {e.task.name}", "summary_text": "run over"}
    with FakeHost(allow_http=["https://chat.example.com"], templates=user) as host:
        host.respond(HOOK, 200, "ok")
        plugin = Chat({"webhook_url": HOOK, "mention": "@here"})
        assert deliver(plugin, failed_run()) == [ok()] * 4
        failure, summary = (r.json() for r in host.requests)
        # Exactly the user's: no mention added, the card (attachments) kept.
        assert failure["text"] == "web2 broke Migrate" and summary["text"] == "run over"
        assert summary["attachments"][0]["text"] == "`web2` failed **Migrate**: migration 42 failed"
    # A failing render raises the template's message (`export` answers it as permanent) and
    # sends nothing.
    with FakeHost(allow_http=["https://chat.example.com"], templates={"failure_text": broken}) as host:
        plugin = Chat({"webhook_url": HOOK})
        with pytest.raises(templates.TemplateError, match="undefined filter"):
            plugin.handle(failed_run()[2], 1)
        assert host.requests == []
