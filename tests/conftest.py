"""Fixtures for Herald's end-to-end tests: the real `herald` binary, real
plugin components, a real `ansible-playbook`, and a local HTTP receiver that
stands in for the webhook's destination.

Everything listens on 127.0.0.1 and every wait is bounded.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HERALD_BIN = Path(os.environ.get("HERALD_BIN", ROOT / "target" / "release" / "herald"))
PLUGIN_DIR = Path(os.environ.get("HERALD_PLUGIN_DIR", ROOT / "build" / "plugins"))
HOSTILE_DIR = Path(os.environ.get("HERALD_HOSTILE_DIR", ROOT / "build" / "hostile"))
VENV_BIN = Path(sys.executable).parent
SUPPORT = Path(__file__).resolve().parent / "support"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Polls `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def token_pair() -> tuple[str, str]:
    token = "test_" + secrets.token_hex(16)
    return token, "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def serve_http(handler) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serves `handler` on a free 127.0.0.1 port from a daemon thread; returns the
    server (stop it with `shutdown()` and `server_close()`) and its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Receiver:
    """A local HTTP server that records every request. `responses` is a list
    of (status, headers, body) consumed one per request; when it is empty,
    `default` answers."""

    def __init__(self):
        self.requests: list[dict] = []
        self.responses: list[tuple[int, dict, bytes]] = []
        self.default = (200, {}, b"ok")
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self._handle()

            def do_PUT(self):
                self._handle()

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        {"method": self.command, "path": self.path,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body, "at": time.monotonic()})
                    status, headers, out = receiver.responses.pop(0) if receiver.responses else receiver.default
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server, self.url = serve_http(Handler)
        self.port = self.server.server_address[1]

    def events(self) -> list[dict]:
        with self.lock:
            out = []
            for r in self.requests:
                try:
                    out.append(json.loads(r["body"]))
                except ValueError:
                    pass
            return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


SQLITE_STORAGE = '[storage]\ndata_dir = "data"\npath = "journal/herald.db"\n'


class Host:
    """A `herald serve` process with a generated configuration. `storage` is
    its `[storage]` table (default: a SQLite journal in the work directory)."""

    def __init__(self, workdir: Path, tenants: dict[str, str], plugins: dict[str, dict], extra: str = "",
                 storage: str | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "herald.toml"
        self.log_path = workdir / "herald.log"
        self.proc: subprocess.Popen | None = None
        lines = [f'[server]\nlisten = "127.0.0.1:{self.port}"\n', storage or SQLITE_STORAGE, extra]
        for name, token_hash in tenants.items():
            lines.append(f'[tenants.{name}]\ntokens = ["{token_hash}"]\n')
        for name, spec in plugins.items():
            lines.append(toml_table(f"plugins.{name}", spec))
        self.config_path.write_text("\n".join(lines))

    def start(self, timeout: float = 60.0):
        log = open(self.log_path, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(
            [str(HERALD_BIN), "serve", "--config", str(self.config_path)],
            stdout=log, stderr=log, env=env, cwd=self.workdir)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"herald exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(up, timeout=timeout, what="herald /health")
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            return r.read().decode()

    def post(self, body: bytes, token: str | None, content_type: str = "application/json",
             encoding: str | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + "/v1/events", data=body, method="POST")
        req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if encoding:
            req.add_header("Content-Encoding", encoding)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw.decode(errors="replace")}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def toml_key(key: str) -> str:
    """A key as TOML reads it back: bare when it can be, else quoted (a `.` would nest it)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_table(name: str, spec: dict) -> str:
    """`[name]` (a dotted path of keys already written as TOML) with `spec`'s values."""
    scalars = {k: v for k, v in spec.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in spec.items() if isinstance(v, dict)}
    out = [f"[{name}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in scalars.items()]
    for k, v in tables.items():
        out.append(toml_table(f"{name}.{toml_key(k)}", v))
    return "\n".join(out) + "\n"


class PgServer:
    """A real PostgreSQL (Debian's initdb/pg_ctl) in a temporary directory on
    127.0.0.1 and a free port; as root it runs as `nobody` (PostgreSQL refuses
    root). One per test session, a database per host. With `tls=(cert, key)`
    (PEM files) it serves TLS only: `hostssl` connections, plain ones refused."""

    def __init__(self, tls: tuple[Path, Path] | None = None):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if os.environ.get("HERALD_PG_BIN"):
            bins = [Path(os.environ["HERALD_PG_BIN"]) / "initdb"]
        if not bins:
            raise AssertionError("no PostgreSQL server (install the Debian `postgresql` package)")
        self.bin = bins[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="herald-pg-"))
        self.port = free_port()
        self.as_nobody = os.geteuid() == 0
        if self.as_nobody:
            shutil.chown(self.dir, "nobody")
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "herald", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=300"
        if tls is not None:
            data = self.dir / "data"
            for src, name in ((tls[0], "server.crt"), (tls[1], "server.key")):
                shutil.copy(src, data / name)
                os.chmod(data / name, 0o600)
                if self.as_nobody:
                    shutil.chown(data / name, "nobody")
            (data / "pg_hba.conf").write_text("local all all trust\n"
                                              "hostssl all all 127.0.0.1/32 trust\n"
                                              "hostnossl all all 127.0.0.1/32 reject\n")
            self.options += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "-o", self.options, "start")

    def _run(self, tool: str, *args: str, check: bool = True):
        cmd = [str(self.bin / tool), *args]
        if self.as_nobody:
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        r = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"{tool} failed: {r.stdout}{r.stderr}")
        return r

    def psql(self, sql: str, db: str = "postgres") -> str:
        # Over the socket directory: `local` connections work with or without TLS.
        r = subprocess.run([str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "herald",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"psql: {r.stderr}")
        return r.stdout.strip()

    def dump(self, db: str) -> bytes:
        """Everything database `db` holds, as pg_dump writes it (data included)."""
        r = subprocess.run([str(self.bin / "pg_dump"), "-h", str(self.dir), "-p", str(self.port), "-U", "herald",
                            "--inserts", db], capture_output=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"pg_dump: {r.stderr.decode(errors='replace')}")
        return r.stdout

    def database(self, name: str) -> str:
        """The URL of database `name`, created if it does not exist."""
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self.psql(f'CREATE DATABASE "{name}"')
        return f"postgres://herald@127.0.0.1:{self.port}/{name}"

    @staticmethod
    def db_name(workdir: Path) -> str:
        return "h_" + hashlib.sha256(str(workdir).encode()).hexdigest()[:16]

    def storage(self, workdir: Path) -> str:
        """A `[storage]` table for a host in `workdir` (its own database)."""
        name = self.db_name(workdir)
        return f'[storage]\nbackend = "postgres"\nurl = "{self.database(name)}"\ndata_dir = "data"\n'

    def restart(self):
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "restart", "-o", self.options)

    def stop(self):
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


_PG: PgServer | None = None


def pg_server() -> PgServer:
    """The session's PostgreSQL server, started on first use."""
    global _PG
    if _PG is None:
        _PG = PgServer()
    return _PG


def pytest_sessionfinish(session, exitstatus):
    if _PG is not None:
        _PG.stop()


# The journal backends the end-to-end tests run against (HERALD_TEST_BACKENDS
# narrows it, e.g. "sqlite" on a machine without PostgreSQL).
BACKENDS = [b.strip() for b in os.environ.get("HERALD_TEST_BACKENDS", "sqlite,postgres").split(",") if b.strip()]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each test that starts hosts runs once per journal backend; a test
    marked `sqlite_only` (it reads or breaks the SQLite file itself) runs on
    SQLite only."""
    marker = request.node.get_closest_marker("sqlite_only")
    if request.param == "postgres" and marker is not None:
        pytest.skip("SQLite only: " + (marker.args[0] if marker.args else "it works on the journal file"))
    return request.param


@pytest.fixture
def make_host(tmp_path, backend):
    hosts: list[Host] = []

    def make(tenants, plugins, extra: str = "") -> Host:
        d = tmp_path / f"host{len(hosts)}"
        d.mkdir()
        storage = pg_server().storage(d) if backend == "postgres" else None
        h = Host(d, tenants, plugins, extra, storage=storage)
        h.backend = backend
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.kill(signal.SIGTERM)


def journal_bytes(host) -> bytes:
    """Every byte the host's journal keeps: the SQLite files, or a dump of its
    PostgreSQL database."""
    if getattr(host, "backend", "sqlite") == "postgres":
        return pg_server().dump(PgServer.db_name(host.workdir))
    out = b""
    for p in sorted((host.workdir / "journal").rglob("*")):
        if p.is_file():
            out += p.read_bytes()
    return out


def journal_scalar(host, sql: str):
    """One value of a SQL query on the host's journal, whichever the backend."""
    if getattr(host, "backend", "sqlite") == "postgres":
        out = pg_server().psql(sql, db=PgServer.db_name(host.workdir))
        return int(out) if out.lstrip("-").isdigit() else out
    import sqlite3
    with sqlite3.connect(host.workdir / "journal" / "herald.db") as c:
        return c.execute(sql).fetchone()[0]


def api(host, method: str, path: str, token: str, body: dict | None = None):
    """One JSON API call with a bearer token: (status, decoded body), errors included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(host.url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def admin_get(host, path: str, token: str) -> dict:
    """GET an admin endpoint; the parsed JSON."""
    req = urllib.request.Request(host.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def add_admin(host, admin_hash: str):
    """Grants `admin_hash` the admin endpoints (call before `host.start()`)."""
    text = host.config_path.read_text()
    host.config_path.write_text(text.replace("[server]\n", f'[server]\nadmin_tokens = ["{admin_hash}"]\nwatch_config = false\n', 1))


def webhook_plugin(tenant: str, receiver: Receiver, **config) -> dict:
    """A webhook instance posting to `receiver`, with a fast retry policy."""
    return {
        "tenant": tenant,
        "component": str(PLUGIN_DIR / "webhook.wasm"),
        "allow_http": [receiver.url],
        "config": {"url": receiver.url + "/hook", **config},
        "retry": {"initial_ms": 100, "max_ms": 1000, "max_attempts": 50},
    }


def run_playbook(playbook: Path, inventory: Path, host: Host | None, token: str | None, tmp: Path,
                 record: Path | None = None, extra_env: dict | None = None, timeout: float = 300):
    """Runs the real ansible-playbook with Herald's callback (and the test
    recorder when `record` is given)."""
    callback_dir = subprocess.run([str(VENV_BIN / "python"), "-m", "herald_ansible.path"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    enabled = ["herald"] + (["herald_recorder"] if record else [])
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CALLBACK_PLUGINS": f"{callback_dir}:{SUPPORT / 'callback_plugins'}",
        "ANSIBLE_CALLBACKS_ENABLED": ",".join(enabled),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"),
        "HERALD_SPOOL_DIR": str(tmp / "spool"),
        "HERALD_URL": host.url if host else "http://127.0.0.1:9",
        "HERALD_TOKEN": token or "",
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
    })
    if record:
        env["HERALD_RECORD_FILE"] = str(record)
    env.update(extra_env or {})
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only(reason): runs on the SQLite journal only (it reads or breaks the journal file)")
