# -*- coding: utf-8 -*-
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
#                                             no "."; see quarantine.py)
#   run-....quarantine.log                     one JSON line per refused batch (status, body)
#   dropped                                    events dropped by the spool cap, not yet
#                                             reported to the host (X-Herald-Dropped)
#   .lock                                      guards `dropped`
"""The write-ahead spool: the current run's spool file (one write(2) per event), the names,
ack offsets and locks of the files in the spool directory, and its `dropped` counter.

Standard library only, no Ansible import; in the collection herald.events this module is
``plugins/plugin_utils/spool.py``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time

__all__ = [
    "SPOOL_RE", "QUARANTINE_RE", "SpoolWriter", "default_spool_dir", "spool_files", "run_id_of", "lock_orphan",
    "read_ack", "write_ack", "remove_spool_file", "append_file", "read_int", "add_dropped", "pending_dropped",
    "sub_dropped",
]

# A run id has no ".", so `run-<ns>-<id>.quarantine.jsonl` is never taken for a spool file.
SPOOL_RE = re.compile(r"^run-(\d{19})-([0-9A-Za-z_-]{1,128})\.jsonl$")
# Quarantine files; older callbacks could also leave `….quarantine.quarantine….jsonl`.
QUARANTINE_RE = re.compile(r"^run-(\d{19})-([0-9A-Za-z_-]{1,128})((?:\.quarantine)+)\.jsonl$")


def default_spool_dir() -> str:
    """`$XDG_CACHE_HOME/herald/spool`, else `~/.cache/herald/spool`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "herald", "spool")


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


# ---------------------------------------------------------------- writing


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


_gil_write, _get_errno = _libc_write_holding_the_gil()


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


def append_file(path: str, data: bytes, lock: bool = False, sync: bool = False) -> None:
    """Append `data` to `path` (created 0600) in one write; with `lock`, under an exclusive
    POSIX lock on the file; with `sync`, fsync'd before it is closed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        if lock:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_int(path: str) -> int:
    """The integer in a small file (an ack offset, the dropped counter); 0 if absent or bad."""
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


# ---------------------------------------------------------------- acks and ownership


def read_ack(spool_path: str) -> int:
    """The byte offset of a spool file the host has acknowledged (0 if none yet)."""
    return read_int(spool_path + ".ack")


def write_ack(spool_path: str, offset: int) -> None:
    """Record (atomically) that the host acknowledged `spool_path` up to `offset`."""
    _write_int_atomic(spool_path + ".ack", offset)


def remove_spool_file(spool_path: str) -> None:
    """Forget a spool file: data first, so a concurrent shipper sees it gone, then its ack."""
    _unlink(spool_path)
    _unlink(spool_path + ".ack")


def lock_orphan(path: str):
    """Lock a spool file that no live process writes or ships; its descriptor (O_RDWR), or
    None if it is busy or gone."""
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


# ---------------------------------------------------------------- the dropped counter


def _with_dir_lock(spool_dir: str, fn):
    fd = os.open(os.path.join(spool_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fn()
    finally:
        os.close(fd)


def add_dropped(spool_dir: str, n: int) -> None:
    """Count `n` more events dropped (spool cap, write error) for the host to be told."""
    if n <= 0:
        return
    path = os.path.join(spool_dir, "dropped")
    _with_dir_lock(spool_dir, lambda: _write_int_atomic(path, read_int(path) + n))


def pending_dropped(spool_dir: str) -> int:
    """Dropped events not yet reported to the host."""
    return read_int(os.path.join(spool_dir, "dropped"))


def sub_dropped(spool_dir: str, n: int) -> None:
    """`n` dropped events were reported to the host (a 2xx to X-Herald-Dropped: n)."""
    if n <= 0:
        return
    path = os.path.join(spool_dir, "dropped")

    def sub():
        left = max(0, read_int(path) - n)
        if left:
            _write_int_atomic(path, left)
        else:
            _unlink(path)
    _with_dir_lock(spool_dir, sub)


# ---------------------------------------------------------------- the current run's file


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
