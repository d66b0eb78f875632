# -*- coding: utf-8 -*-
"""What never leaves the controller: no_log censoring, secret-key masking, fact dropping and
the truncation of oversized results, applied in the hook before anything is spooled.

Standard library only, no Ansible import; in the collection herald.events this module is
``plugins/plugin_utils/redact.py``.
"""

from __future__ import annotations

from .wire import encode_json

__all__ = ["CENSORED_MSG", "DEFAULT_REDACT_KEYS", "REDACTED", "TRUNCATED_KEY", "Cleaner", "truncate_result"]

CENSORED_MSG = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
DEFAULT_REDACT_KEYS = ("password", "passwd", "secret", "token", "api_key", "private_key", "authorization")
REDACTED = "********"
TRUNCATED_KEY = "_herald_truncated"
# keys Ansible keeps when it censors a no_log result (ansible-core 2.16 set; 2.19 adds
# exception/warnings/deprecations, which we do not add ourselves: Ansible censors first,
# we only censor what it left uncensored)
_CENSOR_PRESERVE = ("attempts", "changed", "retries", "_ansible_no_log")
_MAX_DEPTH = 64

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
