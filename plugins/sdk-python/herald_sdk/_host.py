"""The host's imports, or a stand-in outside a component.

Inside a component built by componentize-py the generated `wit_world` package exists and every
call goes to the host. Natively (a plugin's own pytest, the SDK's tests) there is no host: the
calls go to the `FakeHost` that `herald_sdk.testing` installs, and fail with a clear message
when none is installed, instead of pretending to have sent something.
"""
from __future__ import annotations

try:  # inside a component
    from wit_world.imports import check as _check  # type: ignore[import-not-found]
    from wit_world.imports import http as _http  # type: ignore[import-not-found]
    from wit_world.imports import log as _log  # type: ignore[import-not-found]
    from wit_world.imports import metrics as _metrics  # type: ignore[import-not-found]
    from wit_world.imports import state as _state  # type: ignore[import-not-found]
    from wit_world.imports import templates as _templates  # type: ignore[import-not-found]
    from wit_world.imports import wall_clock as _clock  # type: ignore[import-not-found]
    from componentize_py_types import Err as _Err  # type: ignore[import-not-found]

    IN_COMPONENT = True
except ImportError:  # native: a fake host, when a test installs one
    IN_COMPONENT = False

_fake = None


def install(fake) -> None:
    """Routes the host calls to `fake` (a `herald_sdk.testing.FakeHost`), or to nothing (None)."""
    global _fake
    _fake = fake


def _need():
    if _fake is None:
        raise RuntimeError(
            "herald_sdk: no host outside a component; use herald_sdk.testing.FakeHost in tests")
    return _fake


_LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: str) -> None:
    if IN_COMPONENT:
        _log.log(_log.Level[level.upper()], message)
    else:
        _need().log(level, message)


def metric(kind: str, name: str, help: str, labels: list[tuple[str, str]], value: float) -> None:
    if IN_COMPONENT:
        ls = [_metrics.Label(name=n, value=v) for n, v in labels]
        getattr(_metrics, kind)(name, help, ls, float(value))
    else:
        _need().metric(kind, name, help, labels, float(value))


def state_get(key: str) -> str | None:
    return _state.get(key) if IN_COMPONENT else _need().state.get(key)


def state_set(key: str, value: str) -> None:
    if IN_COMPONENT:
        _state.set(key, value)
    else:
        _need().state[key] = value


def state_delete(key: str) -> None:
    if IN_COMPONENT:
        _state.delete(key)
    else:
        _need().state.pop(key, None)


def now_ms() -> int:
    if IN_COMPONENT:
        t = _clock.now()
        return t.seconds * 1000 + t.nanoseconds // 1_000_000
    if _fake is not None and _fake.now_ms is not None:
        return _fake.now_ms
    import time

    return int(time.time() * 1000)


def _refusal(call, *args) -> str | None:
    """None when a host call returning `result<_, string>` succeeded, else the host's message."""
    try:
        call(*args)
        return None
    except _Err as e:
        return str(e.value)


def allows_http(url: str) -> str | None:
    """None when the instance's `allow_http` admits `url`, else the host's reason."""
    if IN_COMPONENT:
        return _refusal(_check.allows_http, url)
    return _fake.allows_http(url) if _fake is not None else None


def allows_socket(address: str) -> str | None:
    """None when the instance's `allow_sockets` admits `address`, else the host's reason."""
    if IN_COMPONENT:
        return _refusal(_check.allows_socket, address)
    return _fake.allows_socket(address) if _fake is not None else None


def http_send(method: str, url: str, headers: list[tuple[str, bytes]], body: bytes,
              timeout_ms: int | None):
    """(status, headers, body) or raises `HostHttpError(kind, detail)`."""
    if not IN_COMPONENT:
        return _need().http_send(method, url, headers, body, timeout_ms)
    req = _http.Request(method=method, url=url, headers=headers, body=body, timeout_ms=timeout_ms)
    try:
        r = _http.send(req)
    except _Err as e:
        err = e.value
        kind = type(err).__name__.split("_")[-1].lower()  # Error_Denied -> denied
        raise HostHttpError(kind, str(err.value)) from None
    return r.status, [(n, bytes(v)) for n, v in r.headers], bytes(r.body)


class HostHttpError(Exception):
    """`http.send` got no answer: kind is denied, timeout, transport or invalid."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def templates_configured() -> list[str]:
    if IN_COMPONENT:
        return list(_templates.configured())
    return list(_fake.templates) if _fake is not None else []


def templates_set_defaults(defaults: list[tuple[str, str]]) -> str | None:
    """None when the host compiled the defaults, else its message."""
    if IN_COMPONENT:
        return _refusal(_templates.set_defaults, defaults)
    if _fake is not None:
        _fake.default_templates = dict(defaults)
    return None


def templates_render(name: str, event) -> str | None:
    """The rendered text, None when no template has that name; raises TemplateError."""
    from .templates import TemplateError

    if not IN_COMPONENT:
        return _fake.render(name, event) if _fake is not None else None
    try:
        return _templates.render(name, event._r)
    except _Err as e:
        err = e.value
        if type(err).__name__.endswith("NotConfigured"):
            return None
        raise TemplateError(str(err.value)) from None
