# -*- coding: utf-8 -*-
"""Quarantine: the events the host refused with a 4xx (other than 401/403).

`run-<ns>-<run id>.quarantine.jsonl` beside the run's spool file holds the refused events
(never shipped again by themselves: the run id of a spool file has no "."), and
`run-<ns>-<run id>.quarantine.log` one JSON line per refused batch (time, url, status, the
host's answer, events). `herald-ship --list-quarantined` reads them and
`herald-ship --requeue RUN_ID` moves a run's events back into the spool on purpose.

Standard library only, no Ansible import; in the collection herald.events this module is
``plugins/plugin_utils/quarantine.py``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os

from .spool import QUARANTINE_RE, append_file
from .wire import encode_json, now_iso

__all__ = ["add", "quarantined_runs", "requeue_quarantined"]


def add(spool_path: str, lines: list, record: dict) -> str:
    """Append refused `lines` of `spool_path` to its quarantine file (synced) and `record`
    (with the time) to its log. Returns the quarantine file's path."""
    stem = spool_path[: -len(".jsonl")]
    qpath = stem + ".quarantine.jsonl"
    # under the file's lock, against a concurrent requeue_quarantined()
    append_file(qpath, b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines),
                lock=True, sync=True)
    rec = dict(time=now_iso(), **record)
    append_file(stem + ".quarantine.log", (encode_json(rec) + "\n").encode("utf-8", "replace"))
    return qpath


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
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # add() holds it while writing
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
            append_file(log, (encode_json({"time": now_iso(), "requeued": q["events"], "to": target}) + "\n")
                        .encode("utf-8", "replace"))
        except OSError:
            pass
        moved.append((q["path"], target, q["events"]))
    return moved
