# -*- coding: utf-8 -*-
# Herald callback plugin: Ansible events -> local write-ahead spool -> Herald host.
# Standard library only. Never raises into Ansible, never blocks a task on the network.
from __future__ import annotations

DOCUMENTATION = r"""
name: herald
type: notification
short_description: Send every playbook event to a Herald host (spooled, batched, never blocking)
description:
  - Forwards every v2 callback event (playbook, play, task and handler starts, runner results,
    loop items, retries, async, notify, include, no-hosts, diff, vars_prompt and the stats with
    C(set_stats) custom stats) to a Herald host in the ansible-runner job event format.
  - Each event is appended to a per-run spool file (JSON lines, one write per event) before the
    hook returns; a background thread ships batches to C({url}/v1/events) and forgets them only
    after a 2xx answer. A killed ansible-playbook leaves its events in the spool; the next run
    or C(herald-ship) sends them, oldest run first.
  - At the end of the run (stats, interpreter exit, SIGINT/SIGTERM) it waits at most
    O(flush_timeout) seconds; whatever is not sent stays spooled. Network failures never change
    the playbook's exit code; they cause at most one warning per run.
  - The end of the run prints one line naming the run id (for C(herald runs show RUN_ID)) and what
    became of its events; when some were not sent, it is a warning saying why and what to do (a
    refused token keeps them spooled, check C(HERALD_TOKEN)). At C(-v) the run id is also printed
    when the run starts.
  - Events the host refuses (4xx other than 401/403) are moved to a quarantine file and never
    sent again by themselves; C(herald-ship --list-quarantined) lists them and
    C(herald-ship --requeue RUN_ID) sends them again.
  - C(no_log) is honoured for results and loop items, O(redact_keys) are masked and facts are
    dropped before anything is written to the spool.
requirements:
  - A Herald host reachable at O(url) (events are spooled until it is).
options:
  url:
    description:
      - Base URL of the Herald host; events are POSTed to C({url}/v1/events).
      - Several URLs separated by commas (N Herald replicas on one PostgreSQL) are tried in
        order when one is down or answers 502/503/504; the one that answers is kept.
    type: str
    env:
      - name: HERALD_URL
    ini:
      - section: callback_herald
        key: url
  token:
    description: "Tenant token, sent as C(Authorization: Bearer <token>)."
    type: str
    env:
      - name: HERALD_TOKEN
    ini:
      - section: callback_herald
        key: token
  spool_dir:
    description:
      - Directory of the write-ahead spool (created with mode 0700).
      - Default C($XDG_CACHE_HOME/herald/spool), or C(~/.cache/herald/spool) without XDG_CACHE_HOME.
    type: path
    env:
      - name: HERALD_SPOOL_DIR
    ini:
      - section: callback_herald
        key: spool_dir
  flush_timeout:
    description: Seconds to wait at most, at the end of a run, for spooled events to be shipped.
    type: float
    default: 2.0
    env:
      - name: HERALD_FLUSH_TIMEOUT
    ini:
      - section: callback_herald
        key: flush_timeout
  batch_max_events:
    description: Maximum number of events in one POST.
    type: int
    default: 500
    env:
      - name: HERALD_BATCH_MAX_EVENTS
    ini:
      - section: callback_herald
        key: batch_max_events
  batch_max_bytes:
    description: Maximum size in bytes of one POST body before compression (a single larger event is sent alone).
    type: int
    default: 1048576
    env:
      - name: HERALD_BATCH_MAX_BYTES
    ini:
      - section: callback_herald
        key: batch_max_bytes
  batch_max_age:
    description: Seconds an event waits at most in the spool before the shipper sends what it has.
    type: float
    default: 1.0
    env:
      - name: HERALD_BATCH_MAX_AGE
    ini:
      - section: callback_herald
        key: batch_max_age
  spool_max_bytes:
    description:
      - Cap on the spooled, unsent bytes. Over it the oldest spooled runs are dropped first (with a
        warning) and their event count is reported to the host in C(X-Herald-Dropped) with the next
        batch; when the current run alone exceeds it, its new events are dropped and counted.
    type: int
    default: 268435456
    env:
      - name: HERALD_SPOOL_MAX_BYTES
    ini:
      - section: callback_herald
        key: spool_max_bytes
  send_task_args:
    description: Send task arguments (C(event_data.task_args), redacted) on task events. Never for no_log tasks.
    type: bool
    default: false
    env:
      - name: HERALD_SEND_TASK_ARGS
    ini:
      - section: callback_herald
        key: send_task_args
  send_facts:
    description: Keep C(ansible_facts) and C(ansible_env) in results (they are removed by default).
    type: bool
    default: false
    env:
      - name: HERALD_SEND_FACTS
    ini:
      - section: callback_herald
        key: send_facts
  redact_keys:
    description:
      - Result, task argument and custom stats keys whose value is replaced by C(********) before
        anything is spooled. Case-insensitive, recursive; a key matches when its name contains an entry.
    type: list
    elements: str
    default: [password, passwd, secret, token, api_key, private_key, authorization]
    env:
      - name: HERALD_REDACT_KEYS
    ini:
      - section: callback_herald
        key: redact_keys
  max_result_bytes:
    description:
      - Results whose JSON is larger are replaced by a short version (status keys and the head of
        C(msg), C(stdout), C(stderr)) with the marker C(_herald_truncated).
    type: int
    default: 65536
    env:
      - name: HERALD_MAX_RESULT_BYTES
    ini:
      - section: callback_herald
        key: max_result_bytes
  labels:
    description:
      - Run labels, sent as the C(labels) object on every event of the run, for
        C(herald runs list --label KEY=VALUE), C(GET /v1/runs?label=KEY=VALUE) and the host's C(routes.labels).
      - Comma-separated C(KEY=VALUE) pairs, for example C(team=platform,env=prod). Spaces around keys and values
        are removed; a pair without C(=) or with an empty key is ignored with a warning.
    type: str
    env:
      - name: HERALD_LABELS
    ini:
      - section: callback_herald
        key: labels
  timeout:
    description: Timeout in seconds of one HTTP request to the host.
    type: float
    default: 10.0
    env:
      - name: HERALD_TIMEOUT
    ini:
      - section: callback_herald
        key: timeout
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = herald            # or herald.events.herald from the collection
# [callback_herald]
# url = http://127.0.0.1:8765
# token = my-tenant-token
# labels = team=platform,env=prod
"""

import atexit
import getpass
import os
import signal
import socket
import sys
import threading
import time

from ansible.plugins.callback import CallbackBase

try:
    from ansible import context as _ansible_context
except ImportError:  # pragma: no cover
    _ansible_context = None
try:
    from ansible.release import __version__ as _ANSIBLE_VERSION
except ImportError:  # pragma: no cover
    _ANSIBLE_VERSION = None

# The shared code lives in modules of its own (herald_ansible/*.py; in the collection,
# plugins/plugin_utils/*.py), imported, never copied into this file, which both packagings ship as is.
if __name__.startswith("ansible_collections."):
    # the collection herald.events (this file is plugins/callback/herald.py): its plugin_utils
    from ansible_collections.herald.events.plugins.plugin_utils import background as _background
    from ansible_collections.herald.events.plugins.plugin_utils import redact as _redact
    from ansible_collections.herald.events.plugins.plugin_utils import shipper as _shipper
    from ansible_collections.herald.events.plugins.plugin_utils import spool as _spool
    from ansible_collections.herald.events.plugins.plugin_utils import wire as _wire
else:
    # the pip package herald-ansible (ANSIBLE_CALLBACK_PLUGINS=$(python3 -m herald_ansible.path);
    # this file is herald_ansible/callback_plugins/herald.py)
    import importlib
    import importlib.util

    def _load_herald_ansible():
        """Make the package herald_ansible importable: as installed for this Python, else
        loaded from the directory above this file (Ansible may run on another Python than
        the one the package was installed for)."""
        if "herald_ansible" in sys.modules or importlib.util.find_spec("herald_ansible") is not None:
            return
        pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        spec = importlib.util.spec_from_file_location(
            "herald_ansible", os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["herald_ansible"] = pkg
        try:
            spec.loader.exec_module(pkg)
        except BaseException:
            del sys.modules["herald_ansible"]
            raise

    _load_herald_ansible()
    # by name through importlib: this same file is the collection's plugin, which has no
    # `import herald_ansible` statement (the packaging test checks it)
    _background = importlib.import_module("herald_ansible.background")
    _redact = importlib.import_module("herald_ansible.redact")
    _shipper = importlib.import_module("herald_ansible.shipper")
    _spool = importlib.import_module("herald_ansible.spool")
    _wire = importlib.import_module("herald_ansible.wire")

_LOOP_EVENTS = frozenset(("runner_on_ok", "runner_on_failed", "runner_on_skipped"))
_ASYNC_EVENTS = frozenset(("runner_on_async_poll", "runner_on_async_ok", "runner_on_async_failed"))

_AWX_ENV = (
    ("JOB_ID", "awx_job_id"),
    ("AWX_HOST", "awx_host"),
    ("INVENTORY_ID", "awx_inventory_id"),
    ("PROJECT_REVISION", "awx_project_revision"),
    ("AD_HOC_COMMAND_ID", "awx_ad_hoc_command_id"),
    ("PROJECT_UPDATE_ID", "awx_project_update_id"),
    ("INVENTORY_UPDATE_ID", "awx_inventory_update_id"),
    ("TOWER_HOST", "tower_host"),
)

def _safe(fn):
    """Every hook: nothing escapes into Ansible (except KeyboardInterrupt/SystemExit)."""
    name = fn.__name__

    def wrapper(self, *args, **kwargs):
        try:
            fn(self, *args, **kwargs)
            if self._warnings_pending():
                self._show_warnings()
        except Exception as e:  # noqa: BLE001
            self._internal_error(name, e)

    wrapper.__name__ = name
    wrapper.__doc__ = fn.__doc__
    return wrapper


def parse_labels(text):
    """`team=platform, env=prod` -> ({"team": "platform", "env": "prod"}, [ignored items])."""
    labels, bad = {}, []
    for item in _str(text).split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            bad.append(item.strip())
            continue
        labels[key.strip()] = value.strip()
    return labels, bad


def _str(v):
    return v if isinstance(v, str) else ("" if v is None else str(v))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "herald"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._cfg = None
        self._run_id = _wire.uuid4()
        self._controller = socket.gethostname()
        self._controller_json = _wire.encode_json(self._controller)
        self._counter = 0
        self._lock = threading.Lock()
        self._writer = None
        self._shipper = None
        self._bg = None
        self._started = False
        self._finished = False
        self._disabled = False
        self._pid = os.getpid()
        self._shown = set()
        self._cleaner = None
        self._playbook_uuid = None
        self._playbook = None
        self._play = None           # (name, uuid, pattern)
        self._play_event = None
        self._task_events = {}      # task._uuid -> task start event uuid
        self._task_info = {}        # task._uuid -> dict of task fields
        self._starts = {}           # (host, task uuid) -> [start ts, last ts]
        self._host_task = {}        # host name -> task of its last runner_on_start (for async polls)
        self._notifiers = {}        # host name -> [recent changed tasks with `notify`], newest last
        self._last_task_event = None
        self._prev_sigterm = None
        self._wake_events = 0
        self._wake_bytes = 0
        self._labels_json = ""

    # ------------------------------------------------------------------ options
    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        try:
            self._load_options()
        except Exception as e:  # noqa: BLE001
            self._internal_error("set_options", e)

    def _load_options(self):
        g = self.get_option
        keys = g("redact_keys")
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",")]
        self._cfg = {
            "url": (g("url") or "").strip(),
            "token": g("token") or "",
            "spool_dir": g("spool_dir") or _spool.default_spool_dir(),
            "flush_timeout": float(g("flush_timeout")),
            "batch_max_events": int(g("batch_max_events")),
            "batch_max_bytes": int(g("batch_max_bytes")),
            "batch_max_age": float(g("batch_max_age")),
            "spool_max_bytes": int(g("spool_max_bytes")),
            "send_task_args": bool(g("send_task_args")),
            "send_facts": bool(g("send_facts")),
            "redact_keys": [k for k in (keys or []) if k],
            "max_result_bytes": int(g("max_result_bytes")),
            "timeout": float(g("timeout")),
        }
        self._cleaner = _redact.Cleaner(self._cfg["redact_keys"], self._cfg["send_facts"])
        labels, bad = parse_labels(g("labels"))
        self._cfg["labels"] = labels
        self._labels_json = ',"labels":' + _wire.encode_json(labels) if labels else ""
        if bad:
            self._display.warning("herald: labels: ignored %s (expected KEY=VALUE pairs separated by commas)"
                                  % ", ".join(repr(b) for b in bad))

    # ------------------------------------------------------------------ plumbing
    def _internal_error(self, where, exc):
        key = "internal:" + where
        if key in self._shown:
            return
        self._shown.add(key)
        try:
            self._display.warning("herald: internal error in %s (event skipped): %r" % (where, exc))
        except Exception:  # noqa: BLE001
            pass

    def _warnings_pending(self):
        sh = self._shipper
        return sh is not None and sh.warnings and threading.current_thread() is threading.main_thread()

    def _show_warnings(self):
        sh = self._shipper
        while sh.warnings:
            msg = sh.warnings.pop(0)
            try:
                self._display.warning(msg)
            except Exception:  # noqa: BLE001
                pass

    def _start(self):
        """First event: open the spool, start the shipper thread, install exit handlers."""
        self._started = True
        if self._cfg is None:
            self._load_options()
        cfg = self._cfg
        try:
            self._writer = _spool.SpoolWriter(cfg["spool_dir"], self._run_id, cfg["spool_max_bytes"])
        except OSError as e:
            self._disabled = True
            self._display.warning("herald: cannot open the spool in %s (%s); events of this run are not recorded"
                                  % (cfg["spool_dir"], e))
            return
        self._shipper = _shipper.Shipper(
            cfg["url"], cfg["token"], cfg["spool_dir"],
            batch_max_events=cfg["batch_max_events"], batch_max_bytes=cfg["batch_max_bytes"],
            timeout=cfg["timeout"], spool_max_bytes=cfg["spool_max_bytes"], own=self._writer)
        self._display.v("herald: run %s: spooling to %s, shipping to %s%s"
                        % (self._run_id, self._writer.path, cfg["url"] or "(no url)",
                           (" with labels " + ",".join("%s=%s" % kv for kv in cfg["labels"].items()))
                           if cfg["labels"] else ""))
        if not cfg["url"]:
            self._shipper.warn_once(
                "nourl", "herald: no url set ([callback_herald] url or HERALD_URL); the events of run %s are only "
                "spooled in %s (send them later with herald-ship)" % (self._run_id, cfg["spool_dir"]))
        else:
            self._bg = _background.BackgroundShipper(self._shipper, cfg["batch_max_age"])
            self._bg.start()
        atexit.register(self._atexit)
        if threading.current_thread() is threading.main_thread():
            try:
                self._prev_sigterm = signal.getsignal(signal.SIGTERM)
                signal.signal(signal.SIGTERM, self._on_sigterm)
            except (ValueError, OSError):
                self._prev_sigterm = None

    def _emit(self, event, event_data, parent_uuid=None, res=None, event_uuid=None, now=None):
        """Serialize one event (one JSON encoding) and append it to the spool with one write."""
        if self._disabled or self._finished:
            return None
        if not self._started:
            self._start()
            if self._disabled:
                return None
        ev_uuid = event_uuid or _wire.uuid4()
        event_data["uuid"] = ev_uuid  # as ansible-runner: the event's uuid, again, in event_data
        enc = _wire.encode_json
        if res is not None:
            event_data["res"] = self._cleaner.clean(res) if isinstance(res, dict) else {"value": res}
        ed_json = enc(event_data)
        limit = self._cfg["max_result_bytes"]
        if res is not None and len(ed_json) > limit:
            res = event_data.pop("res")
            res_json = enc(res)
            if len(res_json) > limit:
                res_json = _redact.truncate_result(res, res_json, limit)
            ed_json = enc(event_data)
            ed_json = '{"res":' + res_json + "}" if ed_json == "{}" else ed_json[:-1] + ',"res":' + res_json + "}"
        # uuid, event, run_id, created and parent_uuid are ours and need no escaping
        head = '{"uuid":"%s","event":"%s","run_id":"%s","created":"%s","controller":%s%s' % (
            ev_uuid, event, self._run_id, _wire.now_iso(now), self._controller_json, self._labels_json)
        if parent_uuid:
            head += ',"parent_uuid":"%s"' % parent_uuid
        with self._lock:
            self._counter += 1
            line = ('%s,"counter":%d,"event_data":%s}\n' % (head, self._counter, ed_json)).encode("utf-8", "replace")
            w = self._writer
            ok = w.append(line)
        if not ok:
            if w.write_error is not None:
                self._shipper.warn_once("write", "herald: cannot write the spool %s: %s" % (w.path, w.write_error))
            else:
                self._shipper.warn_once(
                    "owncap", "herald: this run's spool reached spool_max_bytes (%d); further events are dropped "
                    "and counted" % w.max_bytes)
            return ev_uuid
        bg = self._bg
        # A full batch wakes the shipper early, unless it is backing off after a failure:
        # then an early pass would only read, compress and fail again on the playbook's CPU.
        if bg is not None and not bg.backoff:
            cfg = self._cfg
            if (w.lines - self._wake_events >= cfg["batch_max_events"]
                    or w.size - self._wake_bytes >= cfg["batch_max_bytes"]):
                self._wake_events = w.lines
                self._wake_bytes = w.size
                bg.wake.set()
        return ev_uuid

    # ------------------------------------------------------------------ context helpers
    def _run_context(self, playbook_path):
        ctx = {
            "user": None,
            "ansible_version": _ANSIBLE_VERSION,
            "callback_version": _wire.VERSION,
            "python_version": "%d.%d.%d" % sys.version_info[:3],
            "controller": self._controller,
            "pid": os.getpid(),
        }
        try:
            ctx["user"] = getpass.getuser()
        except Exception:  # noqa: BLE001
            pass
        cli = {}
        if _ansible_context is not None:
            try:
                cli = _ansible_context.CLIARGS or {}
            except Exception:  # noqa: BLE001
                cli = {}
        ctx["check_mode"] = bool(cli.get("check", False))
        ctx["diff_mode"] = bool(cli.get("diff", False))
        ctx["limit"] = cli.get("subset") or None
        ctx["tags"] = [str(t) for t in (cli.get("tags") or ()) if str(t) != "all"]
        ctx["skip_tags"] = [str(t) for t in (cli.get("skip_tags") or ())]
        ctx["forks"] = cli.get("forks")
        ctx["verbosity"] = cli.get("verbosity")
        inv = cli.get("inventory")
        if inv:
            ctx["inventory"] = [str(i) for i in inv]
        if playbook_path:
            ctx["playbook_path"] = os.path.abspath(playbook_path)
        if cli.get("module_name"):
            ctx["adhoc"] = True
            ctx["module_name"] = str(cli.get("module_name"))
            ctx["pattern"] = str(cli.get("pattern") or "")
        env = os.environ
        for var, key in _AWX_ENV:
            if env.get(var):
                ctx[key] = env[var]
        artifacts = env.get("AWX_ISOLATED_DATA_DIR")
        if artifacts:
            ctx["runner_artifact_dir"] = artifacts
            ctx["runner_ident"] = os.path.basename(artifacts.rstrip("/"))
        return ctx

    def _base(self):
        d = {}
        if self._playbook is not None:
            d["playbook"] = self._playbook
            d["playbook_uuid"] = self._playbook_uuid
        if self._play is not None:
            d["play"], d["play_uuid"], d["play_pattern"] = self._play
        return d

    def _ensure_playbook(self):
        """ad-hoc or a callback loaded late: synthesize playbook_on_start once."""
        if self._playbook_uuid is None:
            self._playbook_on_start_impl("__adhoc_playbook__", synthesized=True)

    def _task_fields(self, task):
        tu = _str(getattr(task, "_uuid", ""))
        info = self._task_info.get(tu)
        if info is None:
            info = {"task": "", "task_uuid": tu}
            try:
                info["task"] = _str(task.get_name())
                info["task_action"] = _str(task.action)
                info["resolved_action"] = _str(getattr(task, "resolved_action", None) or task.action)
                path = task.get_path()
                if path:
                    info["task_path"] = _str(path)
                role = getattr(task, "_role", None)
                if role is not None:
                    info["role"] = _str(role.get_name())
            except Exception:  # noqa: BLE001
                pass
            if len(self._task_info) > 20000:
                self._task_info.clear()
            self._task_info[tu] = info
        return info

    def _host_data(self, host, task):
        d = self._base()
        d.update(self._task_fields(task))
        name = _str(host.get_name()) if host is not None else ""
        d["host"] = name
        addr = getattr(host, "address", None)
        d["remote_addr"] = _str(addr) if addr else name
        return d

    def _parent_for(self, task):
        p = self._task_events.get(_str(getattr(task, "_uuid", "")))
        if p is None:
            p = self._play_event or self._playbook_uuid
        return p

    @staticmethod
    def _parts(result):
        """(host, task, result dict) without the attributes deprecated in ansible-core 2.19."""
        try:
            return result.host, result.task, result.result
        except AttributeError:  # ansible-core < 2.19
            return result._host, result._task, result._result

    def _result_event(self, event, result, extra=None, item=False, finished=True):
        self._ensure_playbook()
        host, task, res = self._parts(result)
        if event == "runner_on_async_poll":
            # Ansible polls with an internal async_status task: report the user's task
            try:
                task = self._host_task.get(_str(host.get_name()), task)
            except Exception:  # noqa: BLE001
                pass
        d = self._host_data(host, task)
        now = time.time()
        key = (d["host"], d["task_uuid"])
        st = self._starts.get(key)
        if st is not None:
            start = st[1] if item else st[0]
            st[1] = now
            if finished and not item:
                self._starts.pop(key, None)
        else:
            start = None
        if start is not None:
            d["start"] = _wire.now_iso(start)
            d["duration"] = round(now - start, 6)
        d["end"] = _wire.now_iso(now)
        if event in _LOOP_EVENTS:
            # as ansible-runner: the task's `with_<lookup>` name (null for `loop:` and no loop)
            d["event_loop"] = getattr(task, "loop_with", None)
        elif event in _ASYNC_EVENTS and isinstance(res, dict):
            d["jid"] = _str(res.get("ansible_job_id")) if res.get("ansible_job_id") is not None else None
        if extra:
            d.update(extra)
        if event == "runner_on_ok" and isinstance(res, dict) and res.get("changed") and getattr(task, "notify", None):
            recent = self._notifiers.setdefault(d["host"], [])
            recent.append(task)
            del recent[:-16]
        self._emit(event, d, parent_uuid=self._parent_for(task), res=res, now=now)

    # ------------------------------------------------------------------ playbook / play / task
    def _playbook_on_start_impl(self, file_name, synthesized=False):
        self._playbook_uuid = _wire.uuid4()
        self._playbook = _str(file_name) if file_name else "__adhoc_playbook__"
        self._play = None
        self._play_event = None
        path = file_name if file_name and not str(file_name).startswith("__") else None
        ctx = self._run_context(path)
        if synthesized or self._playbook == "__adhoc_playbook__":
            ctx["adhoc"] = ctx.get("adhoc", True)
        d = {"playbook": self._playbook, "playbook_uuid": self._playbook_uuid, "herald": ctx}
        self._emit("playbook_on_start", d, event_uuid=self._playbook_uuid)

    @_safe
    def v2_playbook_on_start(self, playbook):
        self._playbook_on_start_impl(getattr(playbook, "_file_name", None))

    @_safe
    def v2_playbook_on_play_start(self, play):
        self._ensure_playbook()
        hosts = getattr(play, "hosts", None)
        if isinstance(hosts, (list, tuple)):
            pattern = ",".join(_str(h) for h in hosts)
        else:
            pattern = _str(hosts)
        self._play = (_str(play.get_name()), _str(getattr(play, "_uuid", "")), pattern)
        self._task_events.clear()
        self._task_info.clear()
        d = self._base()
        d["name"] = self._play[0]
        d["pattern"] = pattern
        self._play_event = self._emit("playbook_on_play_start", d, parent_uuid=self._playbook_uuid)

    def _task_start(self, event, task, is_conditional=None, is_handler=False):
        self._ensure_playbook()
        d = self._base()
        d.update(self._task_fields(task))
        d["name"] = d.get("task", "")
        if is_conditional is not None:
            d["is_conditional"] = bool(is_conditional)
        if is_handler:
            d["is_handler"] = True
        if self._cfg["send_task_args"] and not getattr(task, "no_log", False):
            args = getattr(task, "args", None) or {}
            if isinstance(args, dict) and args:
                clean = self._cleaner.clean(args)
                d["task_args"] = ", ".join("%s=%s" % (k, v) for k, v in clean.items())
        ev = self._emit(event, d, parent_uuid=self._play_event or self._playbook_uuid)
        if ev:
            self._task_events[d["task_uuid"]] = ev
            self._last_task_event = ev

    @_safe
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start("playbook_on_task_start", task, is_conditional)

    # Handler and cleanup task starts are named as ansible-runner names them: playbook_on_task_start
    # with is_conditional true (how Ansible 1 marked a handler); is_handler tells handlers apart.
    @_safe
    def v2_playbook_on_handler_task_start(self, task):
        self._task_start("playbook_on_task_start", task, True, is_handler=True)

    @_safe
    def v2_playbook_on_cleanup_task_start(self, task):  # ansible-core < 2.19 declares it
        self._task_start("playbook_on_task_start", task, True)

    @_safe
    def v2_playbook_on_no_hosts_matched(self):
        self._ensure_playbook()
        self._emit("playbook_on_no_hosts_matched", self._base(), parent_uuid=self._play_event or self._playbook_uuid)

    @_safe
    def v2_playbook_on_no_hosts_remaining(self):
        self._ensure_playbook()
        self._emit("playbook_on_no_hosts_remaining", self._base(), parent_uuid=self._play_event or self._playbook_uuid)

    @_safe
    def v2_playbook_on_notify(self, handler, host):
        self._ensure_playbook()
        d = self._base()
        try:
            d["handler"] = _str(handler.get_name())
        except Exception:  # noqa: BLE001
            d["handler"] = _str(handler)
        d["host"] = _str(host.get_name()) if hasattr(host, "get_name") else _str(host)
        task = self._notifier(handler, d["host"])
        if task is not None:
            d.update(self._task_fields(task))
            parent = self._parent_for(task)
        else:
            parent = self._last_task_event or self._play_event
        self._emit("playbook_on_notify", d, parent_uuid=parent)

    def _notifier(self, handler, host):
        """The task that notified `handler` on `host`: the newest changed task of that host whose
        `notify` names the handler or one of its `listen` topics (else the newest one)."""
        recent = self._notifiers.get(host)
        if not recent:
            return None
        try:
            names = {_str(handler.get_name())}
            listen = getattr(handler, "listen", None) or []
            names.update(_str(x) for x in (listen if isinstance(listen, (list, tuple)) else [listen]))
        except Exception:  # noqa: BLE001
            names = set()
        for task in reversed(recent):
            notify = getattr(task, "notify", None) or []
            if isinstance(notify, str):
                notify = [notify]
            if names & {_str(n) for n in notify}:
                return task
        return recent[-1]

    @_safe
    def v2_playbook_on_include(self, included_file):
        self._ensure_playbook()
        d = self._base()
        task = getattr(included_file, "_task", None)
        if task is not None:
            d.update(self._task_fields(task))
        d["included_file"] = _str(getattr(included_file, "_filename", ""))
        hosts = getattr(included_file, "_hosts", None) or []
        d["hosts"] = [_str(h.get_name()) if hasattr(h, "get_name") else _str(h) for h in hosts]
        parent = self._parent_for(task) if task is not None else self._play_event
        self._emit("playbook_on_include", d, parent_uuid=parent)

    @_safe
    def v2_playbook_on_vars_prompt(self, varname, private=True, prompt=None, encrypt=None, confirm=False,
                                   salt_size=None, salt=None, default=None, unsafe=None):
        self._ensure_playbook()
        d = self._base()
        d["varname"] = _str(varname)
        d["private"] = bool(private)
        if prompt is not None:
            d["prompt"] = _str(prompt)
        d["confirm"] = bool(confirm)
        self._emit("playbook_on_vars_prompt", d, parent_uuid=self._play_event or self._playbook_uuid)

    @_safe
    def v2_playbook_on_import_for_host(self, result, imported_file):  # ansible-core < 2.19 declares it
        self._result_event("playbook_on_import_for_host", result, {"imported_file": _str(imported_file)})

    @_safe
    def v2_playbook_on_not_import_for_host(self, result, missing_file):  # ansible-core < 2.19 declares it
        self._result_event("playbook_on_not_import_for_host", result, {"missing_file": _str(missing_file)})

    # ------------------------------------------------------------------ runner events
    @_safe
    def v2_runner_on_start(self, host, task):
        self._ensure_playbook()
        d = self._host_data(host, task)
        now = time.time()
        self._starts[(d["host"], d["task_uuid"])] = [now, now]
        self._host_task[d["host"]] = task
        d["start"] = _wire.now_iso(now)
        self._emit("runner_on_start", d, parent_uuid=self._parent_for(task), now=now)

    @_safe
    def v2_runner_on_ok(self, result):
        self._result_event("runner_on_ok", result)

    @_safe
    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result_event("runner_on_failed", result, {"ignore_errors": bool(ignore_errors)})

    @_safe
    def v2_runner_on_skipped(self, result):
        self._result_event("runner_on_skipped", result)

    @_safe
    def v2_runner_on_unreachable(self, result):
        self._result_event("runner_on_unreachable", result)

    @_safe
    def v2_runner_item_on_ok(self, result):
        self._result_event("runner_item_on_ok", result, item=True)

    @_safe
    def v2_runner_item_on_failed(self, result):
        self._result_event("runner_item_on_failed", result, item=True)

    @_safe
    def v2_runner_item_on_skipped(self, result):
        self._result_event("runner_item_on_skipped", result, item=True)

    @_safe
    def v2_runner_retry(self, result):
        self._result_event("runner_retry", result, item=True)

    @_safe
    def v2_runner_on_async_poll(self, result):
        self._result_event("runner_on_async_poll", result, item=True)

    @_safe
    def v2_runner_on_async_ok(self, result):
        self._result_event("runner_on_async_ok", result, item=True)

    @_safe
    def v2_runner_on_async_failed(self, result):
        self._result_event("runner_on_async_failed", result, item=True)

    @_safe
    def v2_on_file_diff(self, result):
        self._result_event("runner_on_file_diff", result, item=True)

    # ------------------------------------------------------------------ stats and end of run
    @_safe
    def v2_playbook_on_stats(self, stats):
        self._ensure_playbook()
        d = self._base()
        d.pop("play", None)
        d.pop("play_uuid", None)
        d.pop("play_pattern", None)
        for attr in ("changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped"):
            src = getattr(stats, attr, None) or {}
            d[attr] = {_str(h): int(n) for h, n in src.items()}
        custom = getattr(stats, "custom", None) or {}
        custom = self._cleaner.clean({_str(k): v for k, v in custom.items()})
        d["custom_stats"] = custom
        run = custom.get("_run")
        d["artifact_data"] = run if isinstance(run, dict) else {}
        self._emit("playbook_on_stats", d, parent_uuid=self._playbook_uuid)
        self._finish()

    def _finish(self, budget=None):
        """Bounded end of run: wait at most flush_timeout for the shipper, then close the spool.
        What is not acknowledged stays spooled for the next run or herald-ship."""
        if self._finished or not self._started or self._writer is None:
            self._finished = True
            return
        self._finished = True
        cfg = self._cfg
        timeout = cfg["flush_timeout"] if budget is None else budget
        sh, bg, w = self._shipper, self._bg, self._writer
        delivered = False
        if bg is not None:
            delivered = bg.flush(timeout)
            bg.stop()
        with sh.lock:
            if delivered and sh.own_pending() == 0:
                w.close()
                try:
                    os.unlink(w.path)
                    os.unlink(w.path + ".ack")
                except FileNotFoundError:
                    pass
            else:
                w.sync()
                w.close()
        if w.dropped:
            try:
                sh.add_dropped(w.dropped)
            except OSError:
                pass
        self._report_end(delivered)
        if threading.current_thread() is threading.main_thread():
            self._show_warnings()

    def _report_end(self, delivered):
        """The end-of-run line: this run's id, what became of its events and, if any were not
        sent, why and what to do (a warning then; a plain line when all went well)."""
        cfg, sh, w = self._cfg, self._shipper, self._writer
        rid = self._run_id
        if not cfg["url"]:
            return  # said once at the start (nourl), with the run id
        pending = max(0, w.lines - sh.own_acked_lines)
        sent = max(0, sh.own_acked_lines - sh.own_quarantined)
        extra = ""
        if sh.own_quarantined:
            extra = "; %d refused by the host and quarantined (herald-ship --list-quarantined)" % sh.own_quarantined
        if w.dropped:
            extra += "; %d dropped (spool_max_bytes or write error), the host is told" % w.dropped
        if sh.auth_failed:
            sh.warn_once(
                "auth", "herald: run %s: the host at %s refused the token (%s): %d event(s) of this run spooled, "
                "not sent%s%s. Check HERALD_TOKEN (or [callback_herald] token); then herald-ship or the next run "
                "sends them from %s"
                % (rid, cfg["url"], sh.auth_error, pending, (", %d sent before" % sent) if sent else "", extra,
                   cfg["spool_dir"]))
        elif not delivered or pending:
            sh.warn_once(
                "undelivered", "herald: run %s: %d event(s) not delivered to %s within flush_timeout=%ss (%s); "
                "they stay spooled in %s and are sent by the next run or herald-ship%s"
                % (rid, pending, cfg["url"], cfg["flush_timeout"], sh.last_error or "host busy", cfg["spool_dir"],
                   extra))
        else:
            msg = "herald: run %s: %d event(s) sent to %s%s (herald runs show %s)" % (rid, sent, cfg["url"], extra, rid)
            try:
                self._display.display(msg)
            except Exception:  # noqa: BLE001
                pass

    def _atexit(self):
        try:
            if os.getpid() == self._pid:
                self._finish()
        except Exception:  # noqa: BLE001
            pass

    def _on_sigterm(self, signum, frame):
        prev = self._prev_sigterm
        try:
            if os.getpid() == self._pid:
                self._finish()
        except Exception:  # noqa: BLE001
            pass
        try:
            signal.signal(signal.SIGTERM, prev if prev is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):
            pass
        if callable(prev):
            prev(signum, frame)
        elif prev in (None, signal.SIG_DFL):
            os.kill(os.getpid(), signal.SIGTERM)
