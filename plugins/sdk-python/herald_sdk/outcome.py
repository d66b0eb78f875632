"""What `handle` answers: delivered, retry later, or never going to work."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ok:
    """Delivered; the host forgets the event for this instance."""


@dataclass(frozen=True)
class Retryable:
    """Not delivered now (timeout, 429, 5xx): the host retries with backoff, or after
    `retry_after_ms` when it is given (from `Retry-After`)."""

    reason: str
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class Permanent:
    """Never going to work (a 4xx, a refused destination): dead-lettered now."""

    reason: str


Outcome = Ok | Retryable | Permanent


def ok() -> Ok:
    return Ok()


def retryable(reason: str, retry_after_ms: int | None = None) -> Retryable:
    return Retryable(reason, None if retry_after_ms is None else max(0, int(retry_after_ms)))


def permanent(reason: str) -> Permanent:
    return Permanent(reason)


def failure_reason(outcome: Outcome) -> str | None:
    """The reason of a failed outcome, None for ok: what a sink logs when a delivery failed."""
    return None if isinstance(outcome, Ok) else outcome.reason
