"""Helpers for the callback tests: a strict stdlib Herald receiver and a runner for the real
ansible-playbook / ansible binaries (the fixtures are in conftest.py; this module has a unique
name so that it never clashes with another test directory's conftest).

ANSIBLE_PLAYBOOK=/path/to/venv/bin/ansible-playbook runs the suite against another
ansible-core (e.g. a 2.16 virtualenv); `ansible`, `ansible-doc` and `ansible-galaxy` are taken
from the same directory. Default: the binaries beside the Python running pytest.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CALLBACK_ROOT = Path(__file__).resolve().parent.parent
CALLBACK_DIR = CALLBACK_ROOT / "herald_ansible" / "callback_plugins"
DOCS = CALLBACK_ROOT.parent / "docs" / "wire-format.md"
TOKEN = "test-token-123"

EVENT_NAMES = {
    "playbook_on_start", "playbook_on_play_start", "playbook_on_task_start", "playbook_on_handler_task_start",
    "playbook_on_cleanup_task_start", "playbook_on_no_hosts_matched", "playbook_on_no_hosts_remaining",
    "playbook_on_include", "playbook_on_notify", "playbook_on_vars_prompt", "playbook_on_import_for_host",
    "playbook_on_not_import_for_host", "playbook_on_setup", "playbook_on_stats", "runner_on_start",
    "runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable", "runner_on_no_hosts",
    "runner_on_async_poll", "runner_on_async_ok", "runner_on_async_failed", "runner_item_on_ok",
    "runner_item_on_failed", "runner_item_on_skipped", "runner_retry", "runner_on_file_diff", "verbose", "debug",
    "warning", "deprecated", "error", "system_warning",
}
STR_FIELDS = ("playbook", "playbook_uuid", "play", "play_uuid", "play_pattern", "task", "task_uuid", "task_action",
              "task_path", "task_args", "host", "remote_addr")
STATS_FIELDS = ("changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped")


def _bin_dir() -> Path:
    pb = os.environ.get("ANSIBLE_PLAYBOOK")
    if pb:
        return Path(pb).resolve().parent
    return Path(sys.executable).parent


def ansible_bin(name: str) -> str:
    return str(_bin_dir() / name)


def ansible_version() -> tuple:
    out = subprocess.run([ansible_bin("ansible"), "--version"], capture_output=True, text=True, check=True).stdout
    v = out.split("core ", 1)[1].split("]", 1)[0]
    return tuple(int(x) for x in v.split(".")[:2])


def _iso(value) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def validate_event(ev) -> tuple | None:
    """Check one event against docs/wire-format.md. Returns (field, message) or None."""
    if not isinstance(ev, dict):
        return ("", "event is not an object")
    u = ev.get("uuid")
    if not isinstance(u, str) or not 1 <= len(u) <= 128:
        return ("uuid", "required string of 1-128 chars")
    if ev.get("event") not in EVENT_NAMES:
        return ("event", "unknown event %r" % (ev.get("event"),))
    c = ev.get("counter")
    if not isinstance(c, int) or isinstance(c, bool) or c < 0:
        return ("counter", "required integer >= 0")
    if not _iso(ev.get("created")):
        return ("created", "required ISO 8601 string")
    if "runner_ident" in ev and not isinstance(ev["runner_ident"], str):
        return ("runner_ident", "string")
    rid = ev.get("run_id")
    if rid is None and "runner_ident" not in ev:
        return ("run_id", "required unless runner_ident is given")
    if rid is not None and (not isinstance(rid, str) or not 1 <= len(rid) <= 128):
        return ("run_id", "string of 1-128 chars")
    if "labels" in ev and (not isinstance(ev["labels"], dict)
                           or not all(isinstance(v, str) for v in ev["labels"].values())):
        return ("labels", "object of strings")
    for f in ("parent_uuid", "controller", "stdout"):
        if f in ev and not isinstance(ev[f], str):
            return (f, "string")
    ed = ev.get("event_data", {})
    if not isinstance(ed, dict):
        return ("event_data", "object")
    for f in STR_FIELDS:
        if f in ed and not isinstance(ed[f], str):
            return ("event_data." + f, "string")
    if "res" in ed and not isinstance(ed["res"], dict):
        return ("event_data.res", "object")
    if "ignore_errors" in ed and not isinstance(ed["ignore_errors"], bool):
        return ("event_data.ignore_errors", "boolean")
    for f in ("start", "end"):
        if f in ed and not _iso(ed[f]):
            return ("event_data." + f, "ISO 8601 string")
    if "duration" in ed and (not isinstance(ed["duration"], (int, float)) or isinstance(ed["duration"], bool)):
        return ("event_data.duration", "number")
    for f in STATS_FIELDS:
        if f in ed:
            if not isinstance(ed[f], dict):
                return ("event_data." + f, "object host -> integer")
            for h, n in ed[f].items():
                if not isinstance(n, int) or isinstance(n, bool):
                    return ("event_data.%s.%s" % (f, h), "integer")
    for f in ("artifact_data", "custom_stats", "herald"):
        if f in ed and not isinstance(ed[f], dict):
            return ("event_data." + f, "object")
    return None


class Receiver:
    """A strict stand-in for `POST /v1/events` of the Herald host.

    mode: "ok" (202), "401", "500", "503", "400"; `delay` seconds before answering (a slow or
    hanging host); `down()` closes the listening socket (connection refused), `up()` reopens it
    on the same port.
    """

    def __init__(self, token=TOKEN):
        self.token = token
        self.mode = "ok"
        self.delay = 0.0
        self.events: list = []        # accepted events (first copy of each uuid), in arrival order
        self.duplicates = 0
        self.seen: set = set()
        self.requests: list = []      # dicts: status, n, headers, bytes
        self.errors: list = []        # validation failures (a test fails when not empty)
        self.raw_bodies: list = []    # decompressed bodies, for byte-wise secret checks
        self.lock = threading.Lock()
        self.server = None
        self.thread = None
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = "http://127.0.0.1:%d" % self.port

    # ------------------------------------------------------------------ server
    def up(self):
        if self.server is not None:
            return
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                rec._handle(self)

            def do_GET(self):
                self._answer(404, {"error": "not_found"})

        deadline = time.time() + 5
        while True:
            try:
                ThreadingHTTPServer.allow_reuse_address = True
                self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def down(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ------------------------------------------------------------------ request handling
    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        rec = {"status": None, "n": 0, "headers": dict(h.headers), "bytes": len(raw), "path": h.path,
               "time": time.time()}
        with self.lock:
            self.requests.append(rec)
        if self.delay:
            time.sleep(self.delay)

        def answer(status, obj):
            rec["status"] = status
            h._answer(status, obj)

        if h.path != "/v1/events":
            self.errors.append("POST to %s" % h.path)
            return answer(404, {"error": "not_found"})
        if h.headers.get("Authorization") != "Bearer " + self.token:
            self.errors.append("bad Authorization header %r" % h.headers.get("Authorization"))
            return answer(401, {"error": "unauthorized", "message": "unknown token"})
        if self.mode == "401":
            return answer(401, {"error": "unauthorized", "message": "unknown token"})
        if self.mode in ("500", "503"):
            return answer(int(self.mode), {"error": "journal_unavailable", "message": "try later"})
        enc = h.headers.get("Content-Encoding")
        if enc not in (None, "", "identity", "gzip"):
            self.errors.append("Content-Encoding %r" % enc)
            return answer(415, {"error": "unsupported_media_type", "message": enc})
        if enc == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError as e:
                self.errors.append("bad gzip: %s" % e)
                return answer(400, {"error": "bad_gzip", "message": str(e)})
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if ctype == "application/x-ndjson":
                events = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
            elif ctype == "application/json":
                events = json.loads(raw.decode("utf-8"))
                if not isinstance(events, list):
                    raise ValueError("not an array")
            else:
                self.errors.append("Content-Type %r" % ctype)
                return answer(415, {"error": "unsupported_media_type", "message": ctype})
        except (ValueError, UnicodeDecodeError) as e:
            self.errors.append("malformed body: %s" % e)
            return answer(400, {"error": "malformed", "message": str(e)})
        dropped = h.headers.get("X-Herald-Dropped")
        if dropped is not None:
            try:
                rec["dropped"] = int(dropped)
            except ValueError:
                self.errors.append("X-Herald-Dropped %r" % dropped)
        for i, ev in enumerate(events):
            bad = validate_event(ev)
            if bad:
                self.errors.append("event %d: %s: %s (%r)" % (i, bad[0], bad[1], ev))
                return answer(400, {"error": "invalid_event", "index": i, "field": bad[0], "message": bad[1]})
        if self.mode == "400":
            return answer(400, {"error": "invalid_event", "index": 0, "field": "uuid", "message": "refused by test"})
        acc = dup = 0
        with self.lock:
            self.raw_bodies.append(raw)
            for ev in events:
                if ev["uuid"] in self.seen:
                    dup += 1
                else:
                    self.seen.add(ev["uuid"])
                    self.events.append(ev)
                    acc += 1
            self.duplicates += dup
        rec["n"] = len(events)
        return answer(202, {"accepted": acc, "duplicates": dup})

    # ------------------------------------------------------------------ helpers
    def kinds(self, run_id=None):
        out = {}
        for ev in self.events:
            if run_id is None or ev["run_id"] == run_id:
                out[ev["event"]] = out.get(ev["event"], 0) + 1
        return out

    def of(self, kind, run_id=None):
        return [e for e in self.events if e["event"] == kind and (run_id is None or e["run_id"] == run_id)]

    def run_ids(self):
        seen = []
        for e in self.events:
            if e["run_id"] not in seen:
                seen.append(e["run_id"])
        return seen

    def wait_for(self, pred, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return True
            time.sleep(0.05)
        return pred()


INVENTORY = """\
[local]
alpha ansible_connection=local
beta ansible_connection=local

[empty]

[all:vars]
ansible_python_interpreter={{ ansible_playbook_python }}
"""


class Runner:
    """Runs the real ansible-playbook / ansible with the Herald callback enabled."""

    def __init__(self, tmp: Path, receiver: Receiver | None):
        self.tmp = tmp
        self.receiver = receiver
        self.spool = tmp / "spool"
        self.inventory = tmp / "inventory.ini"
        self.inventory.write_text(INVENTORY)
        (tmp / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")

    def env(self, enabled=True, **extra):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("HERALD_") or k.startswith("ANSIBLE_"):
                del env[k]
        env.update({
            "ANSIBLE_CONFIG": str(self.tmp / "ansible.cfg"),
            "ANSIBLE_HOME": str(self.tmp / "ansible_home"),
            "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible_tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.tmp / "ansible_remote_tmp"),
            "ANSIBLE_FORKS": "2",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "HERALD_SPOOL_DIR": str(self.spool),
            "HERALD_TOKEN": TOKEN,
            "HERALD_FLUSH_TIMEOUT": "2",
            "HERALD_BATCH_MAX_AGE": "0.2",
            "HERALD_TIMEOUT": "5",
        })
        if self.receiver is not None:
            env["HERALD_URL"] = self.receiver.url
        if enabled:
            env["ANSIBLE_CALLBACKS_ENABLED"] = "herald"
            env["ANSIBLE_CALLBACK_PLUGINS"] = str(CALLBACK_DIR)
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def write(self, name: str, text: str) -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p

    def playbook(self, playbook: Path, *args, enabled=True, timeout=120, **env):
        cmd = [ansible_bin("ansible-playbook"), "-i", str(self.inventory), str(playbook), *args]
        t0 = time.monotonic()
        p = subprocess.run(cmd, env=self.env(enabled, **env), cwd=str(self.tmp), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        p.elapsed = time.monotonic() - t0
        return p

    def adhoc(self, *args, enabled=True, timeout=120, **env):
        cmd = [ansible_bin("ansible"), "-i", str(self.inventory), *args]
        p = subprocess.run(cmd, env=self.env(enabled, ANSIBLE_LOAD_CALLBACK_PLUGINS="True", **env),
                           cwd=str(self.tmp), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return p

    def ship(self, *args, timeout=60, **env):
        cmd = [sys.executable, "-m", "herald_ansible.ship", *args]
        e = self.env(True, **env)
        e["PYTHONPATH"] = str(CALLBACK_ROOT)
        return subprocess.run(cmd, env=e, cwd=str(self.tmp), capture_output=True, text=True, timeout=timeout)

    def spool_files(self):
        if not self.spool.exists():
            return []
        return sorted(p for p in self.spool.iterdir() if p.name.startswith("run-") and p.name.endswith(".jsonl")
                      and ".quarantine" not in p.name)

    def spooled_events(self):
        out = []
        for p in self.spool_files():
            out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        return out

    def unsent_events(self):
        """Spooled events past each file's acknowledged offset (.ack)."""
        out = []
        for p in self.spool_files():
            ack = Path(str(p) + ".ack")
            off = int(ack.read_text().strip() or 0) if ack.exists() else 0
            out += [json.loads(line) for line in p.read_bytes()[off:].decode().splitlines() if line.strip()]
        return out

    def spool_bytes(self) -> bytes:
        if not self.spool.exists():
            return b""
        return b"".join(p.read_bytes() for p in sorted(self.spool.iterdir()) if p.is_file())


def herald_warnings(output: str) -> list:
    return [line for line in output.splitlines() if "[WARNING]" in line and "herald" in line.lower()]


def descendants(pid: int) -> list:
    """All live descendants of pid (Ansible's workers call setsid, so killpg misses them)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
