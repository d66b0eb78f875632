"""Time formatting for sinks' payloads."""
from __future__ import annotations

from datetime import datetime, timezone


def rfc3339_ms(ms: int) -> str:
    """`2023-11-14T22:13:20.123Z` for epoch milliseconds (UTC)."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def rfc3339_s(ms: int) -> str:
    """`2023-11-14T22:13:20Z` for epoch milliseconds (UTC, seconds)."""
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
