"""Outbound HTTP over the host's one-call `http.send`, and the mapping of answers to outcomes
that every HTTP sink shares (the same as the Rust SDK's `herald_sdk::http`):

| answer | outcome |
|---|---|
| 2xx | ok |
| 408, 429, 5xx | retryable, after `Retry-After` (seconds or HTTP date) when given |
| timeouts, DNS and connection errors | retryable |
| other 1xx/3xx/4xx | permanent, with the status and a bounded piece of the body |
| destination outside the instance's `allow_http` | permanent: "destination ... not allowed" |

Reasons never contain the URL's path or query (they can hold secrets, as chat webhook URLs
do): only `scheme://host:port`.
"""
from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from . import _host
from .event import truncate
from .outcome import Ok, Outcome, permanent, retryable

#: Characters of a response body quoted in a failure reason.
REASON_BODY_CHARS = 300
#: Default timeout when a request sets none (ms).
DEFAULT_TIMEOUT_MS = 10_000
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def origin(url: str) -> str:
    """`scheme://host[:port]` of `url`: what reasons and logs may show of it."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "(invalid URL)"
    return f"{u.scheme}://{host}{port}"


def check_url(url: str) -> str | None:
    """None for an absolute http(s) URL with a host, else why not."""
    try:
        u = urlsplit(url)
        u.port  # raises on a bad port
    except ValueError as e:
        return f"invalid URL: {e}"
    if u.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not u.hostname:
        return "the URL has no host"
    return None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header named `name` (case-insensitive), if it is UTF-8."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                try:
                    return bytes(v).decode()
                except UnicodeDecodeError:
                    return None
        return None

    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self):
        return _json.loads(self.body)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class HttpError(Exception):
    """A request got no HTTP answer. `kind`: denied, timeout, transport or invalid."""

    def __init__(self, kind: str, origin: str, detail: str):
        self.kind, self.origin, self.detail = kind, origin, detail
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.kind == "denied":
            return f"destination {self.origin} not allowed by the instance's allow_http (refused by the host)"
        if self.kind == "timeout":
            return f"timeout talking to {self.origin}: {self.detail}"
        if self.kind == "transport":
            return f"cannot reach {self.origin}: {self.detail}"
        return f"invalid request to {self.origin}: {self.detail}"

    def outcome(self) -> Outcome:
        """Denied and invalid are permanent, timeouts and transport errors retryable."""
        if self.kind in ("denied", "invalid"):
            return permanent(str(self))
        return retryable(str(self))


@dataclass
class Request:
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def header(self, name: str, value: str) -> "Request":
        self.headers.append((name, value))
        return self

    def bearer(self, token: str) -> "Request":
        return self.header("authorization", f"Bearer {token}")

    def json(self, value) -> "Request":
        """A JSON body (compact, UTF-8) with its content type."""
        self.headers.append(("content-type", "application/json"))
        self.body = _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return self

    def send(self) -> Response:
        """Sends the request and reads the whole response (the host reads at most 1 MiB of it).
        Raises `HttpError` when there is no answer."""
        if self.method not in METHODS:
            raise HttpError("invalid", origin(self.url), f"method {self.method!r}")
        headers = [(n, v.encode() if isinstance(v, str) else bytes(v)) for n, v in self.headers]
        timeout = max(1, min(int(self.timeout_ms), 0xFFFFFFFF))
        try:
            status, rh, rb = _host.http_send(self.method, self.url, headers, bytes(self.body), timeout)
        except _host.HostHttpError as e:
            raise HttpError(e.kind, origin(self.url), e.detail) from None
        return Response(status, rh, rb)

    def deliver(self) -> tuple[Outcome, Response | None]:
        """Sends the request and maps the answer to an outcome (see the module docs); the
        response is returned too when there was one."""
        try:
            resp = self.send()
        except HttpError as e:
            return e.outcome(), None
        return classify(resp.status, resp.header("retry-after"), resp.body, _host.now_ms(),
                        origin(self.url)), resp


def post(url: str) -> Request:
    return Request("POST", url)


def get(url: str) -> Request:
    return Request("GET", url)


def parse_retry_after(value: str, now_ms: int) -> int | None:
    """`Retry-After` (delay in seconds, or an HTTP date) as milliseconds from `now_ms`."""
    v = value.strip()
    if v.isdigit():
        return int(v) * 1000
    try:
        secs = float(v)
    except ValueError:
        pass
    else:
        return int(secs * 1000) if secs >= 0 and secs != float("inf") else None
    try:
        at = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if at is None or at.tzinfo is None:
        return None
    return max(0, int(at.timestamp() * 1000) - now_ms)


def _snippet(body: bytes, max_chars: int) -> str:
    return truncate(" ".join(body.decode(errors="replace").split()), max_chars)


def classify(status: int, retry_after: str | None, body: bytes, now_ms: int, origin: str) -> Outcome:
    """Maps an HTTP status to an outcome; `origin` names the sink in reasons."""
    if 200 <= status < 300:
        return Ok()
    snippet = _snippet(body, REASON_BODY_CHARS)
    reason = f"HTTP {status} from {origin}" + (f": {snippet}" if snippet else "")
    if status in (408, 429) or 500 <= status < 600:
        delay = parse_retry_after(retry_after, now_ms) if retry_after else None
        return retryable(reason, delay)
    if 300 <= status < 400:
        return permanent(f"{reason} (redirects are not followed; configure the final URL)")
    return permanent(reason)
