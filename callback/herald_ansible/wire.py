# -*- coding: utf-8 -*-
"""The event line as it is spooled and sent: JSON encoding, timestamps and event ids.

Every function here runs for every event, in the hook (standard library only, no Ansible
import). Shared by the callback plugin, the shipper and `herald-ship`; in the collection
herald.events this module is ``plugins/plugin_utils/wire.py``.
"""

from __future__ import annotations

import json
import os
import random
import time

__all__ = ["VERSION", "encode_json", "now_iso", "uuid4"]

# The callback's version: `callback_version` in the run context, the shipper's User-Agent.
VERSION = "0.1.0"


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
