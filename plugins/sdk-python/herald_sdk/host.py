"""The host's log, metrics and durable state, for a plugin instance.

    from herald_sdk.host import log, metrics, state
    log.info("sent")
    metrics.counter_add("chat_messages_total", "Messages sent.", {"kind": "failure"}, 1)
    state.set_json("open", {"run": 1})
"""
from __future__ import annotations

import json as _json

from . import _host


class log:  # noqa: N801 - a namespace, like the Rust SDK's `log` module
    """Lines in the host's log, tagged with the plugin instance."""

    @staticmethod
    def trace(msg: str) -> None:
        _host.log("trace", msg)

    @staticmethod
    def debug(msg: str) -> None:
        _host.log("debug", msg)

    @staticmethod
    def info(msg: str) -> None:
        _host.log("info", msg)

    @staticmethod
    def warn(msg: str) -> None:
        _host.log("warn", msg)

    @staticmethod
    def error(msg: str) -> None:
        _host.log("error", msg)


def _labels(labels) -> list[tuple[str, str]]:
    items = labels.items() if isinstance(labels, dict) else (labels or [])
    return [(str(n), str(v)) for n, v in items]


class metrics:  # noqa: N801
    """Series on the host's /metrics (the host adds `tenant` and `plugin` labels; names
    starting with `herald_` are refused)."""

    @staticmethod
    def counter_add(name: str, help: str, labels=None, value: float = 1.0) -> None:
        _host.metric("counter_add", name, help, _labels(labels), value)

    @staticmethod
    def gauge_set(name: str, help: str, labels=None, value: float = 0.0) -> None:
        _host.metric("gauge_set", name, help, _labels(labels), value)

    @staticmethod
    def histogram_observe(name: str, help: str, labels=None, value: float = 0.0) -> None:
        _host.metric("histogram_observe", name, help, _labels(labels), value)


class state:  # noqa: N801
    """A small durable key-value store of the instance, kept in the host's journal."""

    get = staticmethod(_host.state_get)
    set = staticmethod(_host.state_set)
    delete = staticmethod(_host.state_delete)

    @staticmethod
    def get_json(key: str):
        v = _host.state_get(key)
        if v is None:
            return None
        try:
            return _json.loads(v)
        except ValueError:
            return None

    @staticmethod
    def set_json(key: str, value) -> None:
        _host.state_set(key, _json.dumps(value, separators=(",", ":")))


def now_ms() -> int:
    """Milliseconds since the Unix epoch, from the host's wall clock."""
    return _host.now_ms()
