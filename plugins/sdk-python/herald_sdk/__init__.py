"""Herald's Python SDK: write a sink plugin in Python, build it into a WebAssembly component
with componentize-py (`python -m herald_sdk.build`), test it natively with
`herald_sdk.testing.FakeHost`.

A plugin is a class taking its config (a dict) and answering `handle(event, attempt)` with an
outcome; `export` turns it into the `Handler` the component exports:

    from herald_sdk import Plugin, export, ok, config, http

    class Chat(Plugin):
        def __init__(self, cfg: dict):
            config.reject_unknown(cfg, {"url"})
            self.url = config.granted_url(cfg, "url")

        def handle(self, event, attempt):
            if event.kind != "runner_on_failed":
                return ok()
            outcome, _ = http.post(self.url).json({"text": event.host}).deliver()
            return outcome

    Handler = export(Chat)
"""
from __future__ import annotations

import abc as _abc
import json as _json
import traceback as _traceback
import weakref as _weakref

# Imported here, not inside functions: componentize-py keeps only the modules imported while
# it builds the component, so a module first imported at run time is missing there.
from . import _host, config, http, summary, templates, time
from .config import ConfigError
from .event import (AD_HOC_RUN, Event, EventRef, HostStats, Play, Run, Stats, Task, Timing, host_failure,
                    is_host_result, playbook_name, result_message, truncate)
from .host import log, metrics, now_ms, state
from .outcome import Ok, Outcome, Permanent, Retryable, failure_reason, ok, permanent, retryable

__all__ = [
    "AD_HOC_RUN", "ConfigError", "Event", "EventRef", "HostStats", "Ok", "Outcome", "Permanent", "Play",
    "Plugin", "Retryable", "Run", "Stats", "Task", "Timing", "config", "export", "failure_reason",
    "host_failure", "http", "is_host_result", "log", "metrics", "now_ms", "ok", "permanent",
    "playbook_name", "result_message", "retryable", "state", "summary", "templates", "time", "truncate",
]


class Plugin(_abc.ABC):
    """Base class of a plugin: one object per instance, made from the instance's `config`
    table. Raise `ConfigError` (or `config.error(key, why)`) from `__init__` to refuse it.
    A subclass must define `handle`: `export` refuses one that does not, so the build fails
    with the class's name rather than the first event."""

    def __init__(self, cfg: dict):
        if cfg:
            raise config.error(next(iter(cfg)), "unknown key (this plugin takes no config)")

    @_abc.abstractmethod
    def handle(self, event, attempt: int) -> Outcome:
        """Deliver one event; `attempt` is 1 for the first try."""

    def default_templates(self) -> dict[str, str]:
        """The plugin's default message templates (name → Jinja2 source), given to the host
        after `__init__`; a user's template of the same name replaces one. None by default."""
        return {}


def parse_config(text: str) -> dict:
    """The config JSON the host passes to `configure`, which must be an object."""
    try:
        cfg = _json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise ConfigError(f"the config is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError("the config must be a table")
    return cfg


if _host.IN_COMPONENT:
    from componentize_py_types import Err as _Err  # type: ignore[import-not-found]
    from wit_world.imports import herald_plugin_types as _types  # type: ignore[import-not-found]


def _to_wit(outcome):
    t = _types
    if isinstance(outcome, Ok):
        return t.Outcome_Ok()
    if isinstance(outcome, Retryable):
        return t.Outcome_Retryable(t.Retry(outcome.reason, outcome.retry_after_ms))
    if isinstance(outcome, Permanent):
        return t.Outcome_Permanent(outcome.reason)
    raise TypeError(f"handle returned {outcome!r}, not herald_sdk.ok(), retryable(...) or permanent(...)")


def _retire_finalize_versions(rounds: int = 1100) -> None:
    """Makes CPython stop caching lookups on `weakref.finalize`, at build time.

    componentize-py lends each call's `event` through a `weakref.finalize`, whose constructor
    assigns a class attribute (`finalize._dirty = True`): a type change, so every call gives the
    class a new version tag, and its lookups land in new slots of the interpreter's type cache.
    Each slot they take drops the name the build left there, often its last reference, so over
    the first ~1000 calls an instance frees strings all over the snapshot's heap, writing (and
    mapping) pages of the shared memory image: about 1 MiB per instance. CPython 3.14 gives a
    class at most 1000 version tags (`MAX_VERSIONS_PER_CLASS`); spending them here, while the
    component is built, leaves `finalize` uncached from the first call on (its lookups walk its
    dict, as they already missed the cache on every call). Behaviour is unchanged."""
    f = _weakref.finalize
    for _ in range(rounds):
        f._dirty = f._dirty  # a type change, then a lookup that assigns the next version tag


def export(plugin_cls):
    """The class a component exports as `Handler` for `plugin_cls`: it builds the plugin from
    the config in `configure`, and turns each call's event and outcome into the host's types.

    A `ConfigError` refuses the config with its message (`herald check` shows it at the key);
    any other exception from `__init__` refuses it naming the exception. An exception from
    `handle` is logged with its traceback and traps the call, as a panic does in Rust: the
    host re-creates the instance and retries the event by its retry policy."""
    handle = getattr(plugin_cls, "handle", None)
    if not callable(handle) or getattr(handle, "__isabstractmethod__", False):
        raise TypeError(f"{getattr(plugin_cls, '__name__', plugin_cls)!s} does not define "
                        "handle(self, event, attempt): a plugin must answer each event with an outcome")
    current: dict = {}

    class Handler:
        def configure(self, config_json: str) -> None:
            Err = _Err
            try:
                plugin = plugin_cls(parse_config(config_json))
                templates.set_defaults(plugin.default_templates())
                current["plugin"] = plugin
            except ConfigError as e:
                raise Err(str(e)) from None
            except Exception as e:  # a bug in the plugin, reported rather than trapped
                _host.log("error", "configure failed:\n" + _traceback.format_exc())
                raise Err(f"the plugin failed while configuring: {type(e).__name__}: {e}") from None

        def handle(self, event, attempt: int):
            plugin = current.get("plugin")
            if plugin is None:
                raise RuntimeError("handle called before configure")
            try:
                return _to_wit(plugin.handle(EventRef(event), attempt))
            except templates.TemplateError as e:  # the host answers it as permanent too
                return _to_wit(permanent(str(e)))
            except Exception:
                _host.log("error", "handle raised:\n" + _traceback.format_exc())
                raise

    Handler.__name__ = Handler.__qualname__ = "Handler"
    if _host.IN_COMPONENT:  # at build time: componentize-py imports the app and snapshots it
        _retire_finalize_versions()
    return Handler
