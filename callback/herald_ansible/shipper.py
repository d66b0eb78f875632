# -*- coding: utf-8 -*-
"""The shipper: sends spool files to `POST {url}/v1/events` in order, oldest run first, in
batches bounded by count and bytes, and forgets events only after a 2xx.

Thread-agnostic (the callback runs it in background.BackgroundShipper, `herald-ship` in the
foreground). Standard library only, no Ansible import; in the collection herald.events this
module is ``plugins/plugin_utils/shipper.py``.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

from . import spool
from .quarantine import add as add_to_quarantine
from .wire import VERSION

__all__ = ["Result", "Shipper", "traceparent_for"]


def traceparent_for(spool_path: str) -> str | None:
    """A W3C traceparent whose trace id is the run id of a spool file
    (`run-<ns>-<uuid4>.jsonl`): every batch of a run shares one trace."""
    name = os.path.basename(spool_path)
    if not name.endswith(".jsonl") or name.count("-") < 2:
        return None
    trace = name[:-len(".jsonl")].split("-", 2)[2].replace("-", "").lower()
    if len(trace) != 32 or trace.strip("0") == "" or any(c not in "0123456789abcdef" for c in trace):
        return None
    return "00-%s-%s-01" % (trace, os.urandom(8).hex())


class Result:
    """What one pass over the spool did."""

    __slots__ = ("sent", "remaining", "error", "retry_after", "fatal")

    def __init__(self):
        self.sent = 0          # events acknowledged by a 2xx
        self.remaining = 0     # events still spooled after this pass
        self.error = None      # last retryable error (str)
        self.retry_after = None
        self.fatal = False     # auth failure: stop shipping in this process


def split_urls(url) -> list:
    """The host URLs of a setting: one URL, or several separated by commas or
    spaces (N Herald replicas), or a list."""
    parts = url if isinstance(url, (list, tuple)) else re.split(r"[,\s]+", url or "")
    return [str(p).strip().rstrip("/") for p in parts if str(p).strip()]


# Answers after which the next host URL is tried at once (the host is down,
# restarting, or cannot reach its journal); any other answer is the host's.
FAILOVER_STATUSES = (502, 503, 504)


class Shipper:
    """Ships spool files in order, oldest run first, in batches bounded by count and bytes.

    Thread-agnostic: the callback runs it in a daemon thread (background.BackgroundShipper), `herald-ship`
    in the foreground. Events are forgotten (ack offset advanced, file removed) only after a
    2xx; 4xx batches (but 401/403) go to a quarantine file beside the spool, which is never
    shipped again unless requeued; 401/403 stop this shipper and leave the events spooled;
    other failures are retryable.
    """

    def __init__(self, url, token, spool_dir, batch_max_events=500, batch_max_bytes=1048576,
                 timeout=10.0, spool_max_bytes=256 * 1024 * 1024, use_gzip=True, own=None):
        self.urls = split_urls(url)
        self._current = 0             # the URL that answered last (failover moves it)
        self.token = token or ""
        self.spool_dir = spool_dir
        self.batch_max_events = max(1, int(batch_max_events))
        self.batch_max_bytes = max(1024, int(batch_max_bytes))
        self.timeout = float(timeout)
        self.spool_max_bytes = int(spool_max_bytes)
        self.use_gzip = use_gzip
        self.own: spool.SpoolWriter | None = own
        self.own_acked = 0            # byte offset of own spool acknowledged
        self.own_acked_lines = 0
        self.lock = threading.Lock()  # guards own ack offset vs. the end of run
        self.auth_failed = False
        self.auth_error = None        # "HTTP 401: <host's message>" once the token was refused
        self.own_quarantined = 0      # events of the current run moved to quarantine
        self.warnings: list = []      # messages for the caller to show (Ansible display or stderr)
        self._warned: set = set()
        self.requests = 0
        self.total_sent = 0
        self.total_quarantined = 0
        self.total_dropped = 0
        self.last_error = None
        self._opener = urllib.request.build_opener()

    @property
    def url(self) -> str:
        """The host URL batches go to now."""
        return self.urls[self._current] if self.urls else ""

    @property
    def endpoint(self) -> str:
        return self.url + "/v1/events" if self.url else ""

    # ---------------------------------------------------------------- warnings
    def warn_once(self, kind: str, msg: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.warnings.append(msg)

    # ---------------------------------------------------------------- dropped counter
    def add_dropped(self, n: int) -> None:
        if n <= 0:
            return
        self.total_dropped += n
        spool.add_dropped(self.spool_dir, n)

    def pending_dropped(self) -> int:
        return spool.pending_dropped(self.spool_dir)

    # ---------------------------------------------------------------- spool cap
    def enforce_cap(self) -> int:
        """Drop the oldest spooled runs (never the current one, never one a live process holds)
        until the spooled bytes fit in spool_max_bytes. Returns the number of events dropped."""
        names = spool.spool_files(self.spool_dir)
        own_name = self.own.name if self.own else None
        sizes = {}
        total = 0
        for n in names:
            if n == own_name:
                continue
            try:
                sizes[n] = os.path.getsize(os.path.join(self.spool_dir, n))
            except OSError:
                continue
            total += sizes[n]
        if self.own is not None:
            total += self.own.size - self.own_acked
        dropped_events = 0
        dropped_runs = 0
        for n in names:
            if total <= self.spool_max_bytes:
                break
            if n not in sizes:
                continue
            path = os.path.join(self.spool_dir, n)
            fd = spool.lock_orphan(path)
            if fd is None:
                continue
            try:
                pos = spool.read_ack(path)
                count = 0
                while True:
                    chunk = os.pread(fd, 1 << 20, pos)
                    if not chunk:
                        break
                    count += chunk.count(b"\n")
                    pos += len(chunk)
                spool.remove_spool_file(path)
            finally:
                os.close(fd)
            total -= sizes[n]
            dropped_events += count
            dropped_runs += 1
        if dropped_events:
            self.add_dropped(dropped_events)
            self.warnings.append(
                "herald: spool over spool_max_bytes (%d bytes): dropped the %d oldest spooled run(s), %d events; "
                "the host is told with the next batch" % (self.spool_max_bytes, dropped_runs, dropped_events))
        return dropped_events

    # ---------------------------------------------------------------- reading
    def _read_batch(self, fd: int, offset: int, end: int | None, max_events: int):
        """Complete lines from offset (up to end if given). Returns (lines, byte length)."""
        want = self.batch_max_bytes
        if end is not None:
            want = min(want, end - offset)
            if want <= 0:
                return [], 0
        data = os.pread(fd, want, offset)
        if not data:
            return [], 0
        nl = data.rfind(b"\n")
        if nl < 0:
            # one event bigger than batch_max_bytes: read up to its end and send it alone
            chunks = [data]
            pos = offset + len(data)
            while True:
                more = os.pread(fd, 1 << 20, pos)
                if not more:
                    return [], 0  # incomplete last line (writer killed mid-write or still writing)
                i = more.find(b"\n")
                if i >= 0:
                    chunks.append(more[: i + 1])
                    line = b"".join(chunks)
                    if end is not None and offset + len(line) > end:
                        return [], 0
                    return [line], len(line)
                chunks.append(more)
                pos += len(more)
        lines = data[: nl + 1].splitlines(keepends=True)
        if len(lines) > max_events:
            lines = lines[:max_events]
        return lines, sum(len(x) for x in lines)

    # ---------------------------------------------------------------- HTTP
    def post(self, lines: list, dropped: int, traceparent: str | None = None):
        """POST one NDJSON batch. Returns (status or None, body bytes or error text, retry_after)."""
        body = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines if line.strip())
        headers = {
            "Content-Type": "application/x-ndjson",
            "Authorization": "Bearer " + self.token,
            "User-Agent": "herald-ansible/" + VERSION,
        }
        if self.use_gzip and len(body) > 2048:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if dropped > 0:
            headers["X-Herald-Dropped"] = str(dropped)
        if traceparent:
            headers["traceparent"] = traceparent
        # With several host URLs (replicas), a batch the current one cannot take
        # goes to the next at once; the one that answers stays current. Sending a
        # batch again is safe: hosts drop events they already have (tenant + uuid).
        for tried in range(max(1, len(self.urls))):
            status, data, retry_after = self._post_once(body, headers)
            if status is not None and status not in FAILOVER_STATUSES:
                return status, data, retry_after
            if tried + 1 < len(self.urls):
                failed = self.url
                self._current = (self._current + 1) % len(self.urls)
                self.warn_once("failover:" + failed, "herald: %s did not take a batch (%s); sending to %s"
                               % (failed, status if status is not None else data, self.url))
        return status, data, retry_after

    def _post_once(self, body: bytes, headers: dict):
        req = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        self.requests += 1
        timeout = self.timeout
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read(65536), None
        except urllib.error.HTTPError as e:
            try:
                data = e.read(65536)
            except Exception:  # noqa: BLE001
                data = b""
            ra = None
            try:
                ra = float(e.headers.get("Retry-After")) if e.headers and e.headers.get("Retry-After") else None
            except (TypeError, ValueError):
                ra = None
            return e.code, data, ra
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            return None, str(reason), None

    # ---------------------------------------------------------------- quarantine
    def quarantine(self, spool_path: str, lines: list, status, body) -> None:
        if isinstance(body, bytes):
            body_text = body.decode("utf-8", "replace")
        else:
            body_text = str(body)
        try:
            body_obj = json.loads(body_text)
        except ValueError:
            body_obj = body_text
        qpath = add_to_quarantine(spool_path, lines, {"url": self.endpoint, "status": status, "error": body_obj,
                                                      "events": len(lines)})
        self.total_quarantined += len(lines)
        if self.own is not None and spool_path == self.own.path:
            self.own_quarantined += len(lines)
        rid = spool.run_id_of(spool_path)
        self.warn_once(
            "4xx", "herald: the host at %s refused %d event(s) of run %s with HTTP %s (%s); they are moved to %s "
            "and not sent again (list: herald-ship --list-quarantined; send again: herald-ship --requeue %s)"
            % (self.url, len(lines), rid, status, body_text.strip()[:300], qpath, rid))

    # ---------------------------------------------------------------- one file
    def ship_file(self, path: str, fd: int, own: bool, deadline: float | None, res: Result) -> bool:
        """Ship one spool file from its ack offset. Returns True when it is fully acknowledged
        (up to its current end), False when something is left (error or deadline)."""
        offset = self.own_acked if own else spool.read_ack(path)
        max_events = self.batch_max_events
        while True:
            if self.auth_failed:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if own:
                with self.lock:  # the end of run closes the descriptor under this lock
                    if self.own.fd < 0:
                        return self.own_acked >= self.own.size
                    lines, nbytes = self._read_batch(self.own.fd, offset, self.own.size, max_events)
                    if lines:
                        self.own.sync()
            else:
                lines, nbytes = self._read_batch(fd, offset, None, max_events)
            if not lines:
                return True
            dropped = self.pending_dropped()
            status, body, retry_after = self.post(lines, dropped, traceparent_for(path))
            if status is not None and 200 <= status < 300:
                offset += nbytes
                with self.lock:
                    if own:
                        self.own_acked = offset
                        self.own_acked_lines += len(lines)
                    if os.path.exists(path):
                        spool.write_ack(path, offset)
                spool.sub_dropped(self.spool_dir, dropped)
                res.sent += len(lines)
                self.total_sent += len(lines)
                max_events = self.batch_max_events
                continue
            if status in (401, 403):
                # The token is refused, not the events: they stay spooled for a fixed token,
                # and nothing more is sent by this process (the caller reports it).
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
                try:
                    msg = json.loads(text).get("message") or text
                except (ValueError, AttributeError):
                    msg = text
                self.auth_error = "HTTP %s: %s" % (status, str(msg).strip()[:200])
                self.last_error = "%s refused the token (%s)" % (self.url, self.auth_error)
                self.auth_failed = True
                res.fatal = True
                return False
            if status == 413 and len(lines) > 1:
                max_events = max(1, len(lines) // 2)
                continue
            if status == 400 and len(lines) > 1:
                idx = None
                try:
                    idx = json.loads(body.decode("utf-8", "replace")).get("index")
                except (ValueError, AttributeError):
                    idx = None
                if isinstance(idx, int) and 0 <= idx < len(lines):
                    # ship what precedes the bad event, quarantine it, go on
                    if idx > 0:
                        max_events = idx
                        continue
                    self.quarantine(path, lines[:1], status, body)
                    offset += len(lines[0])
                    self._advance(path, own, offset, 1)
                    max_events = self.batch_max_events
                    continue
            if status is not None and 400 <= status < 500 and status not in (408, 425, 429):
                self.quarantine(path, lines, status, body)
                offset += nbytes
                self._advance(path, own, offset, len(lines))
                max_events = self.batch_max_events
                continue
            # connection error, timeout, 408/425/429, 5xx, unexpected 1xx/3xx: retry later
            if status is None:
                res.error = "%s (%s)" % (self.url, body)
            else:
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
                res.error = "%s answered HTTP %s %s" % (self.url, status, text.strip()[:200])
            res.retry_after = retry_after
            self.last_error = res.error
            return False

    def _advance(self, path, own, offset, nlines):
        with self.lock:
            if own:
                self.own_acked = offset
                self.own_acked_lines += nlines
            if os.path.exists(path):
                spool.write_ack(path, offset)

    # ---------------------------------------------------------------- one pass
    def ship_all(self, deadline: float | None = None, include_own: bool = True) -> Result:
        """One pass over the spool: orphaned runs oldest first, then the current run."""
        res = Result()
        if not self.endpoint or self.auth_failed:
            res.remaining = -1
            return res
        own_name = self.own.name if self.own else None
        for name in spool.spool_files(self.spool_dir):
            if name == own_name:
                continue
            path = os.path.join(self.spool_dir, name)
            fd = spool.lock_orphan(path)
            if fd is None:
                continue  # a live run writes it, or another shipper has it
            try:
                done = self.ship_file(path, fd, False, deadline, res)
                if done:
                    spool.remove_spool_file(path)
            finally:
                os.close(fd)
            if not done:
                res.remaining += 1
                return res  # keep the order: nothing newer before this one is through
        if include_own and self.own is not None and self.own.fd >= 0:
            if not self.ship_file(self.own.path, -1, True, deadline, res):
                res.remaining += 1
        return res

    def own_pending(self) -> int:
        if self.own is None:
            return 0
        return self.own.size - self.own_acked

