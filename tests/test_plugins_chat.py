"""Issue 20: the chat sink written in Python (plugins/chat, built with componentize-py) through
the real host, against strict fakes of the Mattermost, Rocket.Chat and Discord incoming
webhooks (plugins/testing/fakes.py check each service's documented body).

The module runs tests/support/playbooks/deploy.yml twice with Herald's callback, first failing
(web2 fails a task, cache1 is unreachable), then succeeding, into one host with one instance
per flavour. Discord answers the first message 429 with Retry-After and Rocket.Chat 503, so
the Python SDK's status → outcome mapping is exercised through the host's retries.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HERALD_BIN, PLUGIN_DIR, Host, run_playbook, token_pair

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import by_run, created_ms, delivery_counts, deploy_run, sample, stats_of, wait_settled  # noqa: E402
from fakes import FakeDiscord, FakeMattermost, FakeRocketChat, FakeWebhook  # noqa: E402

TENANT = "ops"
FAST_RETRY = {"initial_ms": 100, "max_ms": 1000, "max_attempts": 8}
CHAT = PLUGIN_DIR / "chat.wasm"
FLAVORS = ["mattermost", "rocketchat", "discord"]


def chat_instance(fake, flavor: str, **config) -> dict:
    return {"tenant": TENANT, "component": str(CHAT), "allow_http": [fake.url], "retry": FAST_RETRY,
            "config": {"webhook_url": fake.url + fake.hook_path, "flavor": flavor, **config}}


class Lifecycle:
    def __init__(self, host, fakes, runs, after_first):
        self.host, self.fakes, self.runs, self.after_first = host, fakes, runs, after_first


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    assert CHAT.is_file(), f"{CHAT} is missing: `make python-plugins` builds it"
    tmp = tmp_path_factory.mktemp("chat")
    fakes = {"mattermost": FakeMattermost(), "rocketchat": FakeRocketChat(), "discord": FakeDiscord()}
    templated = FakeMattermost()
    capture = FakeWebhook()
    token, token_hash = token_pair()
    plugins = {
        "mm": chat_instance(fakes["mattermost"], "mattermost", channel="#deploys", username="Herald",
                            mention="@channel", notify_on_success=True,
                            run_url="https://herald.example.com/runs/{run_id}"),
        "rc": chat_instance(fakes["rocketchat"], "rocketchat", channel="#ops", username="Herald"),
        "dc": chat_instance(fakes["discord"], "discord", username="Herald", mention="@here"),
        # The user's templates, rendered by the host (contract 0.3.0 through the Python SDK).
        "tpl": {**chat_instance(templated, "mattermost", mention="@channel"),
                "templates": {"failure_text": TEMPLATED_FAILURE, "summary_text": TEMPLATED_SUMMARY}},
        "capture": {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"), "allow_http": [capture.url],
                    "config": {"url": capture.url + "/events"}},
    }
    # Discord rate-limits the first message; Rocket.Chat fails twice.
    fakes["discord"].respond_next(429, {"message": "You are being rate limited.", "retry_after": 1.0,
                                        "global": False}, headers={"Retry-After": "1"})
    fakes["rocketchat"].respond_next(503, "upstream unavailable", count=2)
    (tmp / "host").mkdir()
    host = Host(tmp / "host", {TENANT: token_hash}, plugins).start(timeout=120)
    names = ["mm", "rc", "dc", "tpl", "capture"]
    try:
        r = deploy_run(run_playbook, host, token, tmp / "run1", fail_hosts=("web2",), cache_unreachable=True,
                       record=tmp / "run1.record")
        assert r.returncode == 4, r.stdout + r.stderr
        total = len((tmp / "run1.record").read_text().split())
        wait_settled(host, TENANT, names, total, timeout=120)
        after_first = {k: len(accepted(f)) for k, f in fakes.items()}
        r = deploy_run(run_playbook, host, token, tmp / "run2", record=tmp / "run2.record")
        assert r.returncode == 0, r.stdout + r.stderr
        total += len((tmp / "run2.record").read_text().split())
        wait_settled(host, TENANT, names, total, timeout=120)
        runs = sorted(by_run(capture.events()).values(), key=lambda evs: created_ms(evs[0]))
        assert len(runs) == 2
        lc = Lifecycle(host, fakes, runs, after_first)
        lc.templated = templated
        yield lc
    finally:
        host.kill(signal.SIGTERM)
        for f in [*fakes.values(), templated, capture]:
            f.stop()


TEMPLATED_FAILURE = "{{ event.host }}: {{ event.task }} {{ event.status }} ({{ event.message | truncate(40) }})"
TEMPLATED_SUMMARY = ("{{ run.playbook }} {{ run.status }}: "
                     "{% for h in summary.failed_hosts %}{{ h.host }}{{ ', ' if not loop.last }}{% endfor %}")


def test_the_users_templates_are_sent_exactly_as_the_host_renders_them(lifecycle):
    bodies = accepted(lifecycle.templated)
    assert not lifecycle.templated.errors, lifecycle.templated.errors
    texts = [b["text"] for b in bodies]
    # Run 1: two failures and the failed run's summary; run 2 (successful) is quiet.
    assert len(texts) == 3, texts
    assert "web2: Migrate the database failed (migration 42 failed on web2)" in texts
    assert any(t.startswith("cache1: Render the configuration unreachable (") for t in texts), texts
    assert texts[-1] == "deploy.yml failed: cache1, web2", texts
    # No mention: the user's text exactly; the card is still the plugin's.
    assert "`cache1` unreachable at **Render the configuration**" in bodies[-1]["attachments"][0]["text"]


def accepted(fake) -> list[dict]:
    """The bodies the service took (a request answered by a forced 429/5xx was not)."""
    return [r.json for r in fake.requests if r.status < 300]


def text_of(flavor: str, message: dict) -> str:
    return message["content" if flavor == "discord" else "text"]


def test_every_event_is_delivered_and_every_body_has_the_documented_shape(lifecycle):
    n = sum(len(r) for r in lifecycle.runs)
    text = lifecycle.host.metrics()
    for name, retries in [("mm", 0), ("rc", 2), ("dc", 1)]:
        expected = {"ok": n, **({"retry": retries} if retries else {})}
        assert delivery_counts(text, name) == expected, (name, delivery_counts(text, name))
    for f in lifecycle.fakes.values():
        assert not f.errors, f.errors
    # The plugin's own counter, with the host's tenant and plugin labels.
    assert sample(text, "chat_messages_total", tenant=TENANT, plugin="dc", kind="failure", result="failed") == 1
    assert sample(text, "chat_messages_total", tenant=TENANT, plugin="dc", kind="summary", result="ok") == 1
    assert sample(text, "chat_messages_total", tenant=TENANT, plugin="rc", kind="failure", result="failed") == 2


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_message_per_failure_and_a_summary_of_the_failed_run(lifecycle, flavor):
    fake = lifecycle.fakes[flavor]
    first = accepted(fake)[:lifecycle.after_first[flavor]]
    assert len(first) == 3, [text_of(flavor, m) for m in first]
    cache1, web2, summary = first
    mention = {"mattermost": "@channel ", "rocketchat": "", "discord": "@here "}[flavor]
    assert text_of(flavor, web2) == f"{mention}❌ deploy.yml: task 'Migrate the database' failed on web2: migration 42 failed on web2"
    assert text_of(flavor, cache1).startswith(f"{mention}❌ deploy.yml: task 'Render the configuration' unreachable on cache1: ")
    stats = stats_of(lifecycle.runs[0])
    total = lambda k: sum(stats[k].values())  # noqa: E731
    assert re.fullmatch(
        rf"{mention}🔴 deploy\.yml failed in \d+s: 4 host\(s\), ok={total('ok')} changed={total('changed')} failed=1 "
        rf"unreachable=1 skipped={total('skipped')}; failed hosts: cache1, web2", text_of(flavor, summary)), \
        text_of(flavor, summary)
    if flavor == "discord":
        embed = summary["embeds"][0]
        assert embed["color"] == 0xD62728 and embed["title"].startswith("deploy.yml failed in ")
        end = next(e for e in lifecycle.runs[0] if e["event"] == "playbook_on_stats")
        assert embed["timestamp"][:19] == end["created"][:19]
        assert "`web2` failed **Migrate the database**: migration 42 failed on web2" in embed["description"]
        assert {"name": "Failed hosts", "value": "cache1, web2", "inline": True} in embed["fields"]
        assert all(m["allowed_mentions"] == {"parse": ["everyone"]} and m["username"] == "Herald" for m in first)
    else:
        att = summary["attachments"][0]
        assert att["color"] == "#d62728" and "`cache1` unreachable at **Render the configuration**" in att["text"]
        assert {"short": True, "title": "Failed hosts", "value": "cache1, web2"} in att["fields"]
        custom = next(f["value"] for f in att["fields"] if f["title"] == "Custom stats")
        assert sorted(custom.split(", ")) == ['canary=true', 'healthy_hosts=3', 'release="2.0.1"'], custom
        if flavor == "mattermost":
            assert att["title_link"] == f"https://herald.example.com/runs/{lifecycle.runs[0][0]['run_id']}"
            assert all(m["channel"] == "#deploys" and m["username"] == "Herald" for m in first)
        else:
            assert all(m["channel"] == "#ops" and m["alias"] == "Herald" for m in first)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_successful_run_is_reported_only_when_asked(lifecycle, flavor):
    second = accepted(lifecycle.fakes[flavor])[lifecycle.after_first[flavor]:]
    if flavor != "mattermost":
        assert second == []
        return
    assert len(second) == 1
    assert re.fullmatch(r"🟢 deploy\.yml successful in \d+s: 4 host\(s\), ok=\d+ changed=1 failed=0 unreachable=0 "
                        r"skipped=\d+", second[0]["text"]), second[0]["text"]
    assert second[0]["attachments"][0]["color"] == "#2ca02c"


def test_429_waits_for_retry_after_and_5xx_is_retried(lifecycle):
    dc = lifecycle.fakes["discord"]
    first, again = dc.requests[0], [r for r in dc.requests[1:] if r.body == dc.requests[0].body]
    assert first.status == 429 and again and again[0].status == 204
    assert again[0].at - first.at >= 1.0 - 0.02, again[0].at - first.at
    rc = lifecycle.fakes["rocketchat"]
    assert [r.status for r in rc.requests[:3]] == [503, 503, 200]
    assert rc.requests[0].body == rc.requests[2].body


def test_the_webhook_secrets_stay_out_of_the_log(lifecycle):
    logs = lifecycle.host.logs()
    assert "HTTP 429 from http://127.0.0.1:%d" % lifecycle.fakes["discord"].port in logs
    for f in lifecycle.fakes.values():
        assert f.hook_path not in logs
        assert f.hook_path.rsplit("/", 1)[-1] not in logs


def test_check_names_the_file_line_and_key_of_a_bad_chat_config(tmp_path):
    mm = FakeMattermost()
    try:
        token, token_hash = token_pair()
        plugins = {
            "typo": chat_instance(mm, "mattermost", chanel="#x"),
            "ungranted": dict(chat_instance(mm, "discord"), allow_http=["http://127.0.0.1:1"]),
            "fine": chat_instance(mm, "rocketchat"),
        }
        h = Host(tmp_path, {TENANT: token_hash}, plugins)
        r = subprocess.run([str(HERALD_BIN), "check", "--config", str(h.config_path)], capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = h.config_path.read_text().splitlines()
        line = lambda table, key: next(i + 1 for i in range(lines.index(f"[{table}]"), len(lines))  # noqa: E731
                                       if lines[i].startswith(f"{key} = "))
        assert re.search(rf"herald\.toml:{line('plugins.typo.config', 'chanel')}:1: plugins\.typo\.config\.chanel: "
                         r"plugin refused its configuration: unknown key", r.stderr), r.stderr
        assert re.search(rf"herald\.toml:{line('plugins.ungranted.config', 'webhook_url')}:1: "
                         r"plugins\.ungranted\.config\.webhook_url: plugin refused its configuration: "
                         r"http://127\.0\.0\.1:\d+ is not in allow_http", r.stderr), r.stderr
        assert "2 problem(s) found" in r.stderr and mm.hook_path not in r.stderr
    finally:
        mm.stop()
