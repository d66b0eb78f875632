# -*- coding: utf-8 -*-
# Herald spool and shipper: standard library only, no Ansible import.
#
# This module is shared by the callback plugin (herald.py, which loads it as
# `herald_ansible.spool`, by file path beside the package, or inlined into the
# collection build) and by the `herald-ship` console script.
#
# Spool layout (one directory, mode 0700, files 0600):
#   run-<start ns, 19 digits>-<run id>.jsonl   one event per line, appended with a
#                                             single write(2) per event (called with the
#                                             GIL held, see _write_all); locked with a
#                                             POSIX lock (lockf) by the run that writes it
#                                             (not inherited by Ansible's forked workers, so
#                                             a SIGKILLed run's spool is free at once)
#   run-....jsonl.ack                          byte offset already acknowledged (2xx)
#   run-....quarantine.jsonl                   events the host refused with a 4xx (never
#                                             shipped again: the run id of a spool file has
#                                             no "."; `herald-ship --requeue RUN_ID` moves
#                                             them back into the spool on purpose)
#   run-....quarantine.log                     one JSON line per refused batch (status, body)
#   dropped                                    events dropped by the spool cap, not yet
#                                             reported to the host (X-Herald-Dropped)
#   .lock                                      guards `dropped`
"""Write-ahead spool and batch shipper for Herald events (standard library only)."""

from __future__ import annotations

import errno
import fcntl
import gzip
import http.client
import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request

__all__ = [
    "VERSION", "CENSORED_MSG", "DEFAULT_REDACT_KEYS", "REDACTED", "Cleaner", "SpoolWriter",
    "Shipper", "BackgroundShipper", "default_spool_dir", "spool_files", "encode_json", "quarantined_runs",
    "requeue_quarantined", "run_id_of",
]

VERSION = "0.1.0"
CENSORED_MSG = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
DEFAULT_REDACT_KEYS = ("password", "passwd", "secret", "token", "api_key", "private_key", "authorization")
REDACTED = "********"
TRUNCATED_KEY = "_herald_truncated"
# keys Ansible keeps when it censors a no_log result (ansible-core 2.16 set; 2.19 adds
# exception/warnings/deprecations, which we do not add ourselves: Ansible censors first,
# we only censor what it left uncensored)
_CENSOR_PRESERVE = ("attempts", "changed", "retries", "_ansible_no_log")
_MAX_DEPTH = 64

# A run id has no ".", so `run-<ns>-<id>.quarantine.jsonl` is never taken for a spool file.
SPOOL_RE = re.compile(r"^run-(\d{19})-([0-9A-Za-z_-]{1,128})\.jsonl$")
# Quarantine files; older callbacks could also leave `….quarantine.quarantine….jsonl`.
QUARANTINE_RE = re.compile(r"^run-(\d{19})-([0-9A-Za-z_-]{1,128})((?:\.quarantine)+)\.jsonl$")


def default_spool_dir() -> str:
    """`$XDG_CACHE_HOME/herald/spool`, else `~/.cache/herald/spool`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "herald", "spool")


def _json_default(obj):
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, dict):  # a dict subclass the C encoder refused
        return dict(obj)
    return str(obj)


_encoder = json.JSONEncoder(
    skipkeys=True, ensure_ascii=False, check_circular=False, separators=(",", ":"), default=_json_default
)
encode_json = _encoder.encode


_iso_cache = [-1, ""]


def now_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC timestamp with an explicit +00:00 offset (cheap: called for every event)."""
    if ts is None:
        ts = time.time()
    sec = int(ts)
    c = _iso_cache
    if c[0] != sec:
        t = time.gmtime(sec)
        c[1] = "%04d-%02d-%02dT%02d:%02d:%02d" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
        c[0] = sec
        prefix = c[1]
    else:
        prefix = c[1]
    return "%s.%06d+00:00" % (prefix, int((ts - sec) * 1e6))


# Event ids come from a private generator seeded from os.urandom, not from
# os.urandom per event: that system call gives up the GIL, and on a busy
# controller getting it back (from the shipper thread) cost more than the rest
# of a hook. Private, so nothing that seeds the global `random` can repeat ids
# (a repeated id would be dropped by the host as a duplicate); reseeded after
# a fork.
_ids = random.Random()
_ids_pid = os.getpid()


def uuid4() -> str:
    """A random (version 4) UUID string, several times cheaper than str(uuid.uuid4())."""
    global _ids_pid
    if _ids_pid != os.getpid():
        _ids.seed()
        _ids_pid = os.getpid()
    b = bytearray(_ids.getrandbits(128).to_bytes(16, "big"))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


_SCALARS = frozenset((str, int, float, bool, type(None)))


class Cleaner:
    """Copies a result (never mutates it) applying, in one walk:

    * no_log: a mapping still carrying ``_ansible_no_log: true`` and not yet censored by
      Ansible is replaced exactly as Ansible censors it;
    * redaction: a key whose lower-cased name contains one of ``redact_keys`` gets the
      value ``********`` (recursive, case-insensitive);
    * facts: ``ansible_facts`` and ``ansible_env`` keys are dropped unless ``send_facts``.
    """

    def __init__(self, redact_keys=DEFAULT_REDACT_KEYS, send_facts=False):
        self.subs = tuple(str(k).lower() for k in (redact_keys or ()) if str(k).strip())
        self.drop = frozenset() if send_facts else frozenset(("ansible_facts", "ansible_env"))
        self._actions: dict = {}

    def _action(self, key) -> int:
        """0 keep, 1 redact, 2 drop (cached per key)."""
        a = self._actions.get(key)
        if a is None:
            k = key.lower() if isinstance(key, str) else str(key).lower()
            if k in self.drop:
                a = 2
            elif any(s in k for s in self.subs):
                a = 1
            else:
                a = 0
            if len(self._actions) < 10000:
                self._actions[key] = a
        return a

    def is_secret_key(self, key) -> bool:
        return self._action(key) == 1

    def clean(self, obj, depth=0):
        """Copy-on-write: returns `obj` itself when nothing in it needs a change (we never
        mutate what Ansible gave us, and the result is serialized at once)."""
        if isinstance(obj, dict):
            if depth > _MAX_DEPTH:
                return "<herald: nested too deep>"
            if obj.get("_ansible_no_log") is True and "censored" not in obj:
                return self.censor(obj, depth)
            out = None
            act = self._actions
            scalars = _SCALARS
            for k, v in obj.items():
                a = act.get(k)
                if a is None:
                    a = self._action(k)
                if a == 0:
                    if type(v) in scalars:
                        continue
                    if isinstance(v, (dict, list, tuple)):
                        nv = self.clean(v, depth + 1)
                        if nv is not v:
                            if out is None:
                                out = dict(obj)
                            out[k] = nv
                else:
                    if out is None:
                        out = dict(obj)
                    if a == 1:
                        out[k] = REDACTED
                    else:
                        del out[k]
            return obj if out is None else out
        if isinstance(obj, (list, tuple)):
            if depth > _MAX_DEPTH:
                return "<herald: nested too deep>"
            out = None
            scalars = _SCALARS
            for i, v in enumerate(obj):
                if type(v) in scalars or not isinstance(v, (dict, list, tuple)):
                    continue
                nv = self.clean(v, depth + 1)
                if nv is not v:
                    if out is None:
                        out = list(obj)
                    out[i] = nv
            return obj if out is None else out
        return obj

    def censor(self, obj, depth=0):
        out = {k: obj[k] for k in _CENSOR_PRESERVE if k in obj}
        out["censored"] = CENSORED_MSG
        results = obj.get("results")
        if isinstance(results, list):
            # keep the loop shape, as Ansible does
            out["results"] = [
                self.censor(r, depth + 1) if isinstance(r, dict) and r.get("_ansible_no_log") else self.clean(r, depth + 1)
                for r in results
            ]
        return out


def truncate_result(res: dict, res_json: str, limit: int) -> str:
    """Replace an oversized result by a small one with a marker; returns its JSON."""
    out = {TRUNCATED_KEY: {"original_bytes": len(res_json.encode("utf-8", "replace")), "max_result_bytes": limit}}
    budget = max(limit // 4, 64)
    for k in ("changed", "failed", "skipped", "unreachable", "rc", "attempts", "censored", "msg",
              "ansible_loop_var", "_ansible_no_log", "stderr", "stdout"):
        if k not in res:
            continue
        v = res[k]
        if isinstance(v, str):
            if len(v) > budget:
                v = v[:budget] + "...[truncated by herald]"
        elif not isinstance(v, (bool, int, float)) and v is not None:
            continue
        out[k] = v
        if len(encode_json(out)) > limit:
            del out[k]
            break
    return encode_json(out)


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


def spool_files(spool_dir: str) -> list:
    """Spool file names in the directory, oldest run first."""
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return []
    return sorted(n for n in names if SPOOL_RE.match(n))


def run_id_of(path: str) -> str:
    """The run id in a spool or quarantine file name (`run-<ns>-<id>[.quarantine].jsonl`)."""
    m = SPOOL_RE.match(os.path.basename(path)) or QUARANTINE_RE.match(os.path.basename(path))
    return m.group(2) if m else ""


def _count_lines(path: str) -> int:
    n = 0
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                n += chunk.count(b"\n")
    except OSError:
        pass
    return n


def quarantined_runs(spool_dir: str) -> list:
    """Quarantined events in the spool, oldest run first: one dict per quarantine file with
    `run_id`, `path`, `events` and, from its .log, `status` and `error` of the last refusal."""
    try:
        names = sorted(os.listdir(spool_dir))
    except OSError:
        return []
    out = []
    for name in names:
        m = QUARANTINE_RE.match(name)
        if not m:
            continue
        path = os.path.join(spool_dir, name)
        rec = {"run_id": m.group(2), "path": path, "events": _count_lines(path), "status": None, "error": None}
        log = path[: -len(".jsonl")] + ".log"
        try:
            with open(log, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and "status" in entry:
                        rec["status"], rec["error"] = entry.get("status"), entry.get("error")
        except OSError:
            pass
        out.append(rec)
    return out


def requeue_quarantined(spool_dir: str, run_id: str) -> list:
    """Move the quarantined events of `run_id` back into the spool, as a spool file of that
    run placed right after the run's own spool file (the next shipper sends them, in the
    usual order). Returns [(quarantine file, new spool file, events)]; [] if there is none.
    A quarantine file that a shipper is appending to at that moment is left for later."""
    moved = []
    for q in quarantined_runs(spool_dir):
        if q["run_id"] != run_id:
            continue
        m = QUARANTINE_RE.match(os.path.basename(q["path"]))
        fd = os.open(q["path"], os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # quarantine() holds it while writing
            ns = int(m.group(1))
            for _ in range(1000):
                ns += 1
                target = os.path.join(spool_dir, "run-%019d-%s.jsonl" % (ns, run_id))
                if not os.path.exists(target):
                    break
            else:
                raise OSError(errno.EEXIST, "no free spool file name", target)
            os.link(q["path"], target)  # never replaces an existing file
            os.unlink(q["path"])
        finally:
            os.close(fd)
        log = q["path"][: -len(".jsonl")] + ".log"
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, (encode_json({"time": now_iso(), "requeued": q["events"], "to": target}) + "\n")
                           .encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError:
            pass
        moved.append((q["path"], target, q["events"]))
    return moved


def _libc_write_holding_the_gil():
    """libc's write(2) called through ctypes.PyDLL, which keeps the GIL during the call.

    os.write gives up the GIL for every event. While the shipper thread has Python work
    (a batch, a request), it takes the GIL at each of those and the playbook's own thread
    then waits for it back: that handoff cost more than the rest of a hook (about 20 us
    of a 45-60 us hook, measured by callback/bench_hook.py). A write to the page cache
    takes about 2 us; holding the GIL that long costs the shipper nothing it notices.
    (write, get_errno), or (None, None) when ctypes or the symbol is not available
    (os.write is used then)."""
    try:
        import ctypes

        fn = ctypes.PyDLL(None, use_errno=True).write
        fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
        fn.restype = ctypes.c_ssize_t
        return fn, ctypes.get_errno
    except Exception:  # noqa: BLE001 - no ctypes (minimal builds) or no write symbol
        return None, None


# Two plain assignments, not `a, b = ...`: ansible-doc reads the module-level assignments of the
# collection's plugin file (where this code is inlined) and warns about a tuple target.
_gil_write = _libc_write_holding_the_gil()
_get_errno = _gil_write[1]
_gil_write = _gil_write[0]


def _write_all(fd: int, data: bytes) -> None:
    """Writes all of `data` (bytes) to `fd`; raises OSError like os.write."""
    if _gil_write is not None and type(data) is bytes:
        n = _gil_write(fd, data, len(data))
        if n == len(data):
            return
        if n < 0:
            err = _get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
            n = 0
        data = data[n:]  # a short write or a signal: os.write finishes it
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_int(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _write_int_atomic(path: str, value: int) -> None:
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, b"%d\n" % value)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class SpoolWriter:
    """The current run's spool file. `append` is one write(2): the event is in the kernel's
    page cache when the hook returns, so a SIGKILLed ansible-playbook keeps it."""

    def __init__(self, spool_dir: str, run_id: str, max_bytes: int):
        os.makedirs(spool_dir, mode=0o700, exist_ok=True)
        self.spool_dir = spool_dir
        self.name = "run-%019d-%s.jsonl" % (time.time_ns(), run_id)
        self.path = os.path.join(spool_dir, self.name)
        # O_RDWR: the shipper thread reads it with pread on this very descriptor, because
        # closing any other descriptor of the file would drop this process's POSIX lock
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.max_bytes = max_bytes
        self.size = 0          # bytes written (== file size)
        self.lines = 0         # events written
        self.dropped = 0       # events refused because of the spool cap or a write error
        self.write_error = None
        self.synced = 0
        self.lock = threading.Lock()

    def append(self, data: bytes) -> bool:
        if self.fd < 0:
            self.dropped += 1
            return False
        if self.size + len(data) > self.max_bytes:
            self.dropped += 1
            return False
        try:
            _write_all(self.fd, data)
        except OSError as e:  # disk full, ...: the event is lost, the playbook goes on
            self.dropped += 1
            self.write_error = e
            return False
        self.size += len(data)
        self.lines += 1
        return True

    def sync(self) -> None:
        if self.fd >= 0 and self.synced != self.size:
            size = self.size
            try:
                os.fsync(self.fd)
                self.synced = size
            except OSError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass


class _Result:
    __slots__ = ("sent", "remaining", "error", "retry_after", "fatal")

    def __init__(self):
        self.sent = 0          # events acknowledged by a 2xx
        self.remaining = 0     # events still spooled after this pass
        self.error = None      # last retryable error (str)
        self.retry_after = None
        self.fatal = False     # auth failure: stop shipping in this process


class Shipper:
    """Ships spool files in order, oldest run first, in batches bounded by count and bytes.

    Thread-agnostic: the callback runs it in a daemon thread (BackgroundShipper), `herald-ship`
    in the foreground. Events are forgotten (ack offset advanced, file removed) only after a
    2xx; 4xx batches (but 401/403) go to a quarantine file beside the spool, which is never
    shipped again unless requeued; 401/403 stop this shipper and leave the events spooled;
    other failures are retryable.
    """

    def __init__(self, url, token, spool_dir, batch_max_events=500, batch_max_bytes=1048576,
                 timeout=10.0, spool_max_bytes=256 * 1024 * 1024, use_gzip=True, own=None):
        self.url = (url or "").rstrip("/")
        self.endpoint = self.url + "/v1/events" if self.url else ""
        self.token = token or ""
        self.spool_dir = spool_dir
        self.batch_max_events = max(1, int(batch_max_events))
        self.batch_max_bytes = max(1024, int(batch_max_bytes))
        self.timeout = float(timeout)
        self.spool_max_bytes = int(spool_max_bytes)
        self.use_gzip = use_gzip
        self.own: SpoolWriter | None = own
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

    # ---------------------------------------------------------------- warnings
    def warn_once(self, kind: str, msg: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.warnings.append(msg)

    # ---------------------------------------------------------------- dropped counter
    def _dropped_path(self):
        return os.path.join(self.spool_dir, "dropped")

    def _with_dir_lock(self, fn):
        fd = os.open(os.path.join(self.spool_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fn()
        finally:
            os.close(fd)

    def add_dropped(self, n: int) -> None:
        if n <= 0:
            return
        self.total_dropped += n
        path = self._dropped_path()
        self._with_dir_lock(lambda: _write_int_atomic(path, _read_int(path) + n))

    def pending_dropped(self) -> int:
        return _read_int(self._dropped_path())

    def _sub_dropped(self, n: int) -> None:
        if n <= 0:
            return
        path = self._dropped_path()

        def sub():
            left = max(0, _read_int(path) - n)
            if left:
                _write_int_atomic(path, left)
            else:
                _unlink(path)
        self._with_dir_lock(sub)

    # ---------------------------------------------------------------- spool cap
    def enforce_cap(self) -> int:
        """Drop the oldest spooled runs (never the current one, never one a live process holds)
        until the spooled bytes fit in spool_max_bytes. Returns the number of events dropped."""
        names = spool_files(self.spool_dir)
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
            fd = self._lock_orphan(path)
            if fd is None:
                continue
            try:
                pos = _read_int(path + ".ack")
                count = 0
                while True:
                    chunk = os.pread(fd, 1 << 20, pos)
                    if not chunk:
                        break
                    count += chunk.count(b"\n")
                    pos += len(chunk)
                _unlink(path)
                _unlink(path + ".ack")
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

    # ---------------------------------------------------------------- locking
    @staticmethod
    def _lock_orphan(path: str):
        """Lock a spool file that no live process writes or ships; None if it is busy or gone."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the file may have been removed (shipped) between open and flock
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise OSError(errno.ENOENT, "gone")
        except OSError:
            os.close(fd)
            return None
        return fd

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
        stem = spool_path[: -len(".jsonl")]
        qpath = stem + ".quarantine.jsonl"
        fd = os.open(qpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)  # against a concurrent requeue_quarantined()
            _write_all(fd, b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        if isinstance(body, bytes):
            body_text = body.decode("utf-8", "replace")
        else:
            body_text = str(body)
        try:
            body_obj = json.loads(body_text)
        except ValueError:
            body_obj = body_text
        rec = {"time": now_iso(), "url": self.endpoint, "status": status, "error": body_obj, "events": len(lines)}
        fd = os.open(stem + ".quarantine.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, (encode_json(rec) + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)
        self.total_quarantined += len(lines)
        if self.own is not None and spool_path == self.own.path:
            self.own_quarantined += len(lines)
        rid = run_id_of(spool_path)
        self.warn_once(
            "4xx", "herald: the host at %s refused %d event(s) of run %s with HTTP %s (%s); they are moved to %s "
            "and not sent again (list: herald-ship --list-quarantined; send again: herald-ship --requeue %s)"
            % (self.url, len(lines), rid, status, body_text.strip()[:300], qpath, rid))

    # ---------------------------------------------------------------- one file
    def ship_file(self, path: str, fd: int, own: bool, deadline: float | None, res: _Result) -> bool:
        """Ship one spool file from its ack offset. Returns True when it is fully acknowledged
        (up to its current end), False when something is left (error or deadline)."""
        ack_path = path + ".ack"
        offset = self.own_acked if own else _read_int(ack_path)
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
                        _write_int_atomic(ack_path, offset)
                self._sub_dropped(dropped)
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
                _write_int_atomic(path + ".ack", offset)

    @staticmethod
    def _finish_orphan(path: str) -> None:
        _unlink(path)          # data first: a concurrent shipper then sees the file gone
        _unlink(path + ".ack")

    # ---------------------------------------------------------------- one pass
    def ship_all(self, deadline: float | None = None, include_own: bool = True) -> _Result:
        """One pass over the spool: orphaned runs oldest first, then the current run."""
        res = _Result()
        if not self.endpoint or self.auth_failed:
            res.remaining = -1
            return res
        own_name = self.own.name if self.own else None
        for name in spool_files(self.spool_dir):
            if name == own_name:
                continue
            path = os.path.join(self.spool_dir, name)
            fd = self._lock_orphan(path)
            if fd is None:
                continue  # a live run writes it, or another shipper has it
            try:
                done = self.ship_file(path, fd, False, deadline, res)
                if done:
                    self._finish_orphan(path)
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


class BackgroundShipper(threading.Thread):
    """Daemon thread around a Shipper for one run: wakes every `batch_max_age` seconds (or
    earlier when a batch is full), backs off exponentially on errors, and answers `flush`."""

    def __init__(self, shipper: Shipper, batch_max_age: float = 1.0):
        super().__init__(name="herald-shipper", daemon=True)
        self.shipper = shipper
        self.batch_max_age = max(0.01, float(batch_max_age))
        self.wake = threading.Event()
        self.cond = threading.Condition()
        self.stopping = False
        self.flushing = False
        self.flush_deadline = None
        self.passes = 0
        self.idle = False
        self.backoff = 0.0
        self.last_result = None

    def run(self):
        sh = self.shipper
        while True:
            try:
                sh.enforce_cap()
            except Exception as e:  # noqa: BLE001
                sh.warn_once("cap", "herald: spool cap check failed: %s" % e)
            try:
                res = sh.ship_all(deadline=self.flush_deadline)
            except Exception as e:  # noqa: BLE001 - the thread must survive anything
                res = _Result()
                res.error = "internal error: %r" % (e,)
                res.remaining = 1
                sh.last_error = res.error
            self.last_result = res
            with self.cond:
                self.passes += 1
                self.idle = res.remaining == 0
                self.cond.notify_all()
            if self.stopping:
                return
            if res.remaining == 0 or res.fatal or res.remaining < 0:
                self.backoff = 0.0
                delay = self.batch_max_age
                if res.fatal or res.remaining < 0:
                    delay = 3600.0
            else:
                if self.flushing:
                    self.backoff = min(max(self.backoff * 2, 0.05), 0.5)
                else:
                    self.backoff = min(max(self.backoff * 2, 0.5), 30.0)
                delay = self.backoff * (0.75 + random.random() / 2)
                if res.retry_after is not None:
                    delay = min(max(delay, res.retry_after), 30.0)
                if self.flushing and self.flush_deadline is not None:
                    delay = min(delay, max(0.0, self.flush_deadline - time.monotonic()))
            self.wake.wait(delay)
            self.wake.clear()

    def flush(self, timeout: float) -> bool:
        """Ask for everything to be shipped now; wait at most `timeout` seconds.
        True when the current run's spool is fully acknowledged."""
        sh = self.shipper
        deadline = time.monotonic() + max(0.0, timeout)
        self.flush_deadline = deadline
        self.flushing = True
        self.backoff = 0.0
        if not self.is_alive():
            return sh.own_pending() == 0
        with self.cond:
            start_pass = self.passes
            self.wake.set()
            while True:
                # a pass that started after the flush request and left nothing behind
                if self.passes > start_pass and self.idle and sh.own_pending() == 0:
                    return True
                if sh.auth_failed or not sh.endpoint:
                    return sh.own_pending() == 0
                left = deadline - time.monotonic()
                if left <= 0:
                    return sh.own_pending() == 0
                self.cond.wait(min(left, 0.5))

    def stop(self):
        self.stopping = True
        self.wake.set()
