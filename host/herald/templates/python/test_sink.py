"""The plugin natively, with the SDK's fake host: `make test` (or `pytest tests`)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from herald_sdk import ConfigError, Retryable, ok  # noqa: E402
from herald_sdk.testing import FakeHost, event, host_event  # noqa: E402
from sink import Sink  # noqa: E402

URL = "http://127.0.0.1:9/hook"


def test_a_failed_host_is_posted_and_other_events_are_not():
    with FakeHost(allow_http=["http://127.0.0.1:9"]) as host:
        host.respond(URL, 200)
        sink = Sink({"url": URL})
        assert sink.handle(event("playbook_on_start"), 1) == ok()
        failed = host_event("runner_on_failed", "failed", "web2", "install", {"msg": "no package"})
        assert sink.handle(failed, 1) == ok()
        assert [r.json() for r in host.requests] == [{"text": "site.yml: task 'install' failed on web2: no package"}]
        assert host.requests[0].header("idempotency-key") == failed.id


def test_a_busy_sink_is_retried_after_retry_after():
    with FakeHost(allow_http=["http://127.0.0.1:9"], now_ms=0) as host:
        host.respond(URL, 429, "slow down", {"Retry-After": "5"})
        out = Sink({"url": URL}).handle(host_event("runner_on_unreachable", "unreachable", "db1"), 1)
        assert out == Retryable("HTTP 429 from http://127.0.0.1:9: slow down", 5000)


def test_the_config_names_a_bad_key():
    with FakeHost(allow_http=["http://127.0.0.1:9"]):
        with pytest.raises(ConfigError, match="config key `timeout`"):
            Sink({"url": URL, "timeout": 5})
