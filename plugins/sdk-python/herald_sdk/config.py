"""Checking a plugin's `config` table. Errors start with ``config key `<key>`: `` so `herald
check` and the host point at that key's line in herald.toml."""
from __future__ import annotations

from . import _host
from .http import check_url

#: Default request timeout (10 s).
DEFAULT_TIMEOUT_MS = 10_000


class ConfigError(Exception):
    """A refused configuration; the message names the key."""


def error(key: str, why: str) -> ConfigError:
    return ConfigError(f"config key `{key}`: {why}")


def reject_unknown(config: dict, known) -> None:
    """Refuses keys not in `known` (typos in herald.toml are reported, not ignored)."""
    for k in config:
        if k not in known:
            raise error(k, "unknown key (known: " + ", ".join(sorted(known)) + ")")


def string(config: dict, key: str, default: str | None = None, required: bool = False) -> str | None:
    """A string value; `required` refuses a missing or blank one."""
    v = config.get(key, default)
    if v is None:
        if required:
            raise error(key, "is required")
        return None
    if not isinstance(v, str):
        raise error(key, f"must be a string, not {type(v).__name__}")
    if required and not v.strip():
        raise error(key, "must not be empty")
    return v


def boolean(config: dict, key: str, default: bool) -> bool:
    v = config.get(key, default)
    if not isinstance(v, bool):
        raise error(key, f"must be true or false, not {v!r}")
    return v


def integer(config: dict, key: str, default: int, lo: int, hi: int) -> int:
    """An integer in `lo..=hi`."""
    v = config.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise error(key, f"must be an integer, not {v!r}")
    if not lo <= v <= hi:
        raise error(key, f"must be between {lo} and {hi}")
    return v


def timeout_ms(config: dict, key: str = "timeout_ms") -> int:
    return integer(config, key, DEFAULT_TIMEOUT_MS, 1, 600_000)


def granted_url(config: dict, key: str, required: bool = True) -> str | None:
    """An http(s) URL that the instance's `allow_http` admits (asked of the host), so a
    destination the sandbox would refuse fails `herald check` at this key."""
    url = string(config, key, required=required)
    if url is None:
        return None
    why = check_url(url)
    if why:
        raise error(key, why)
    refused = _host.allows_http(url)
    if refused:
        raise error(key, refused)
    return url


def require_socket(key: str, address: str) -> None:
    """Refuses an `ip:port` the instance's `allow_sockets` does not admit."""
    refused = _host.allows_socket(address)
    if refused:
        raise error(key, refused)
