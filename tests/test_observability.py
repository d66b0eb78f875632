"""Issue 8: the host is observable. Metrics pass `promtool check metrics`
after a real run with retries and a dead letter; delivery log lines carry the
ids of the ingest that produced them; secrets never reach the logs; OTLP
spans arrive with the ingest -> journal.commit -> delivery structure; /ready
follows the journal's writability; the operator kit passes promtool."""
from __future__ import annotations

import collections
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook, serve_http, token_pair, wait_for, webhook_plugin

MONITORING = ROOT / "examples" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")

SECRET_VALUE = "s3cr3t-db-password-" + uuid.uuid4().hex
PLAYBOOK = """
- name: Observed
  hosts: all
  gather_facts: false
  tasks:
    - name: Set a secret
      ansible.builtin.set_fact:
        db_password: "{secret}"
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
    - name: Fail on db1
      ansible.builtin.fail:
        msg: broken
      when: inventory_hostname == 'db1'
      ignore_errors: true
"""


def write_playbook(tmp: Path) -> Path:
    p = tmp / "observed.yml"
    p.write_text(PLAYBOOK.replace("{secret}", SECRET_VALUE))
    return p


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def field(line: dict, name: str):
    """A field of a JSON log line: the event's own, else its spans' (innermost first)."""
    if name in line:
        return line[name]
    for span in [line.get("span") or {}] + list(reversed(line.get("spans") or [])):
        if name in span:
            return span[name]
    return None


def test_metrics_logs_and_secrets_after_a_run_with_retries_and_a_dead_letter(
        make_host, receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "info,herald=debug")
    token, token_hash = token_pair()
    hmac_secret = "hmac-" + uuid.uuid4().hex
    sink_token = "sinktoken-" + uuid.uuid4().hex
    # Three retryable failures, then a permanent one (dead letter), then OK.
    receiver.responses = [(500, {}, b"boom")] * 3 + [(400, {}, b"bad request")]
    host = make_host({"ops": token_hash}, {"hook": webhook_plugin(
        "ops", receiver, hmac_secret=hmac_secret, bearer_token=sink_token)}).start()
    record = tmp_path / "record.txt"
    result = run_playbook(write_playbook(tmp_path), ROOT / "examples" / "inventory.ini", host, token, tmp_path,
                          record=record)
    assert result.returncode == 0, result.stdout + result.stderr
    n_events = len(record.read_text().split())
    assert n_events > 10
    # Every event ends delivered or dead: n - 1 OK requests plus 4 failed ones.
    wait_for(lambda: len(receiver.requests) >= n_events + 3, timeout=60, what="all deliveries")

    def settled():
        s = parse_metrics(host.metrics())
        done = total(s, "herald_deliveries_total", outcome="ok") + total(s, "herald_deliveries_total", outcome="dead")
        return s if done >= n_events and total(s, "herald_dead_letters") == 1 else None

    samples = wait_for(settled, timeout=30, what="delivery counters to settle")
    scrape = host.metrics()
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    samples = parse_metrics(scrape)
    assert total(samples, "herald_deliveries_total", tenant="ops", plugin="hook", outcome="retry") == 3
    assert total(samples, "herald_deliveries_total", tenant="ops", plugin="hook", outcome="dead") == 1
    assert total(samples, "herald_deliveries_total", tenant="ops", plugin="hook", outcome="ok") == n_events - 1
    assert total(samples, "herald_dead_letters", tenant="ops", plugin="hook") == 1
    assert total(samples, "herald_events_ingested_total", tenant="ops") == n_events
    assert total(samples, "herald_events_ingested_total", tenant="ops", kind="playbook_on_stats") == 1
    assert total(samples, "herald_events_ingested_total", tenant="ops", kind="runner_on_failed") == 1
    assert total(samples, "herald_ingest_batches_total", tenant="ops", status="202") >= 1
    assert total(samples, "herald_ingest_bytes_total", tenant="ops") > 0
    assert total(samples, "herald_delivery_seconds_count", tenant="ops", plugin="hook") == n_events + 3
    assert total(samples, "herald_journal_commit_seconds_count") >= 1
    assert total(samples, "herald_http_requests_total", method="POST", route="/v1/events", status="202") >= 1
    assert total(samples, "herald_http_request_duration_seconds_count", route="/v1/events") >= 1
    assert total(samples, "herald_queue_depth", tenant="ops", plugin="hook") == 0
    assert total(samples, "herald_plugin_state", plugin="hook", state="running") == 1
    assert total(samples, "herald_build_info") == 1
    assert total(samples, "herald_journal_size_bytes") > 0

    # Logs: each delivery line carries the request_id, run_id and trace_id
    # of the ingest that committed its event.
    lines = json_lines(host.logs())
    assert lines, host.logs()
    commits = [l for l in lines if l.get("message") == "batch committed"]
    assert commits
    ingests = {(field(l, "request_id"), field(l, "trace_id"), field(l, "run_id")) for l in commits}
    assert all(all(i) for i in ingests), commits
    deliveries = [l for l in lines if (l.get("span") or {}).get("name") == "delivery"]
    delivered = [l for l in deliveries if l.get("message") == "delivered"]
    assert len(delivered) == n_events - 1, len(delivered)
    retried = [l for l in deliveries if "will be retried" in (l.get("message") or "")]
    assert len(retried) == 3
    dead = [l for l in deliveries if "dead-lettered" in (l.get("message") or "")]
    assert len(dead) == 1
    run_ids = {field(l, "run_id") for l in delivered}
    assert len(run_ids) == 1
    for l in delivered + retried + dead:
        ids = (field(l, "request_id"), field(l, "trace_id"), field(l, "run_id"))
        assert ids in ingests, (l, ingests)
        assert field(l, "plugin") == "hook" and field(l, "tenant") == "ops" and field(l, "delivery_id")
    # The callback's traceparent makes the run id the trace id of every batch.
    run_id = run_ids.pop()
    assert {t for _, t, _ in ingests} == {run_id.replace("-", "")}
    # A run's start and end are INFO lines, once each; its batches are DEBUG.
    for what in ("run started", "run finished"):
        marks = [l for l in lines if l.get("message") == what]
        assert len(marks) == 1, (what, marks)
        assert marks[0]["level"] == "INFO" and field(marks[0], "run_id") == run_id, marks
        assert field(marks[0], "tenant") == "ops" and field(marks[0], "playbook"), marks
    # The playbook has an ignored failure: no host has failures in the recap.
    assert field([l for l in lines if l.get("message") == "run finished"][0], "outcome") == "ok"
    assert {l["level"] for l in commits} == {"DEBUG"}, commits
    for l in lines:
        assert l.get("timestamp") and l.get("level") and l.get("target"), l

    # Secrets never reach the logs: the tenant token, the plugin's secrets,
    # and the value the callback redacted.
    logs = host.logs()
    for secret in [token, hmac_secret, sink_token, SECRET_VALUE]:
        assert secret not in logs
    # (The receiver did get the redacted event, without the value.)
    assert all(SECRET_VALUE.encode() not in r["body"] for r in receiver.requests)


class OtlpReceiver:
    """A local OTLP/HTTP trace receiver decoding protobuf requests."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list = []
        self.resources: list = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 404
                if self.path == "/v1/traces":
                    req = trace_service_pb2.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    with rec.lock:
                        rec.content_types.append(self.headers.get("Content-Type"))
                        for rs in req.resource_spans:
                            rec.resources.append(rs.resource)
                            for ss in rs.scope_spans:
                                rec.spans.extend(ss.spans)
                    status = 200
                out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server, self.url = serve_http(Handler)

    def snapshot(self):
        with self.lock:
            return list(self.spans)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GrpcOtlpReceiver:
    """A local OTLP/gRPC trace receiver: just enough cleartext HTTP/2 (h2c,
    prior knowledge) to take `TraceService/Export` calls, decode their
    protobuf and answer `grpc-status: 0`. The request headers are not
    decoded (no HPACK here): the gRPC framing and the protobuf are checked."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self):
        import socket

        self.spans: list = []
        self.resources: list = []
        self.calls = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    @staticmethod
    def _read(conn, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = conn.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def _serve(self, conn):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        frame = self._frame
        # HPACK: `:status: 200` (static index 8); content-type (static name 31)
        # and grpc-status as literals without indexing, no Huffman.
        ctype = b"application/grpc"
        head = b"\x88" + b"\x0f\x10" + bytes([len(ctype)]) + ctype
        trailers = b"\x00" + bytes([len(b"grpc-status")]) + b"grpc-status" + b"\x01" + b"0"
        bodies: dict[int, bytes] = {}
        try:
            assert self._read(conn, len(self.PREFACE)) == self.PREFACE
            conn.sendall(frame(4, 0, 0))  # our SETTINGS: the defaults
            while True:
                header = self._read(conn, 9)
                length = int.from_bytes(header[:3], "big")
                kind, flags = header[3], header[4]
                stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                payload = self._read(conn, length)
                if kind == 4 and not flags & 1:  # SETTINGS: acknowledge
                    conn.sendall(frame(4, 1, 0))
                elif kind == 6 and not flags & 1:  # PING: answer
                    conn.sendall(frame(6, 1, 0, payload))
                elif kind == 7:  # GOAWAY
                    return
                elif kind == 1:  # HEADERS: a call starts
                    bodies.setdefault(stream, b"")
                elif kind == 0:  # DATA
                    data = payload
                    if flags & 8:  # padded
                        data = payload[1:len(payload) - payload[0]]
                    bodies[stream] = bodies.get(stream, b"") + data
                    if length:
                        inc = length.to_bytes(4, "big")
                        conn.sendall(frame(8, 0, 0, inc) + frame(8, 0, stream, inc))
                    if flags & 1:  # END_STREAM: the whole request is here
                        body = bodies.pop(stream)
                        # gRPC framing: uncompressed flag, length, message.
                        assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5, body[:5]
                        req = trace_service_pb2.ExportTraceServiceRequest()
                        req.ParseFromString(body[5:])
                        with self.lock:
                            self.calls += 1
                            for rs in req.resource_spans:
                                self.resources.append(rs.resource)
                                for ss in rs.scope_spans:
                                    self.spans.extend(ss.spans)
                        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                        message = b"\x00" + len(out).to_bytes(4, "big") + out
                        conn.sendall(frame(1, 4, stream, head) + frame(0, 0, stream, message)
                                     + frame(1, 5, stream, trailers))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.spans)

    def close(self):
        self.sock.close()


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def spans_of(otlp, trace_hex, want):
    def ready():
        got = [s for s in otlp.snapshot() if s.trace_id.hex() == trace_hex]
        names = collections.Counter(s.name for s in got)
        return got if all(names[k] >= v for k, v in want.items()) else None
    return ready


def check_a_traced_request(host, token, run, otlp):
    """Posts two events with a caller's traceparent and checks the spans
    `otlp` receives: ingest (server, the caller's child) -> journal.commit,
    and one delivery per attempt (the first event is retried once)."""
    caller_trace, caller_span = uuid.uuid4().hex, os.urandom(8).hex()
    events = [{"uuid": str(uuid.uuid4()), "event": "runner_on_ok", "counter": i, "run_id": run,
               "created": "2026-11-21T10:00:00+00:00",
               "event_data": {"playbook": "otlp.yml", "host": "h1"}} for i in range(2)]
    req = urllib.request.Request(host.url + "/v1/events", data=json.dumps(events).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json",
                                          "traceparent": f"00-{caller_trace}-{caller_span}-01"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202

    got = wait_for(spans_of(otlp, caller_trace, {"ingest": 1, "journal.commit": 1, "delivery": 3}),
                   timeout=30, what="spans of the traced request")
    service = {kv.key: kv.value.string_value for r in otlp.resources for kv in r.attributes}
    assert service.get("service.name") == "herald"
    ingest = [s for s in got if s.name == "ingest"]
    assert len(ingest) == 1
    ingest = ingest[0]
    assert ingest.parent_span_id.hex() == caller_span
    assert ingest.kind == 2  # SERVER
    assert attrs(ingest)["herald.tenant"] == "ops" and attrs(ingest)["http.response.status_code"] == 202
    commit = [s for s in got if s.name == "journal.commit"]
    assert len(commit) == 1 and commit[0].parent_span_id == ingest.span_id
    assert ingest.start_time_unix_nano <= commit[0].start_time_unix_nano <= commit[0].end_time_unix_nano \
        <= ingest.end_time_unix_nano
    deliveries = [s for s in got if s.name == "delivery"]
    assert all(d.parent_span_id == ingest.span_id for d in deliveries)
    assert len({d.span_id for d in deliveries}) == len(deliveries)
    by_outcome = collections.Counter((attrs(d)["herald.outcome"], attrs(d)["herald.attempt"]) for d in deliveries)
    assert by_outcome == {("retry", 1): 1, ("ok", 2): 1, ("ok", 1): 1}, by_outcome
    for d in deliveries:
        a = attrs(d)
        assert a["herald.plugin"] == "hook" and a["herald.tenant"] == "ops" and a["herald.run_id"] == run
    retry = next(d for d in deliveries if attrs(d)["herald.outcome"] == "retry")
    assert retry.status.code == 2  # ERROR


def test_otlp_spans_have_the_ingest_commit_delivery_structure(make_host, receiver, tmp_path):
    pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    otlp = OtlpReceiver()
    try:
        token, token_hash = token_pair()
        receiver.responses = [(503, {}, b"busy")]  # one retry: two delivery attempts of the first event
        host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)},
                         extra=f'[telemetry]\notlp_endpoint = "{otlp.url}"\n').start()

        # 1. An incoming traceparent is honoured.
        run = str(uuid.uuid4())
        check_a_traced_request(host, token, run, otlp)
        assert set(otlp.content_types) == {"application/x-protobuf"}

        # 2. A real run: every batch's ingest span and every delivery share the run's trace.
        record = tmp_path / "record.txt"
        result = run_playbook(write_playbook(tmp_path), ROOT / "examples" / "inventory.ini", host, token,
                              tmp_path, record=record)
        assert result.returncode == 0, result.stdout + result.stderr
        n_events = len(record.read_text().split())
        wait_for(lambda: len([e for e in receiver.events() if e.get("run_id") != run]) >= n_events, timeout=60,
                 what="the run's deliveries")
        run_id = next(e["run_id"] for e in receiver.events() if e.get("run_id") != run)
        trace = run_id.replace("-", "")
        got = wait_for(spans_of(otlp, trace, {"delivery": n_events}), timeout=30, what="the run's delivery spans")
        ingest_ids = {s.span_id for s in got if s.name == "ingest"}
        assert ingest_ids
        assert all(s.parent_span_id in ingest_ids for s in got if s.name != "ingest")
        assert {attrs(s)["herald.run_id"] for s in got if s.name == "delivery"} == {run_id}
    finally:
        otlp.close()


def test_otlp_spans_over_grpc_have_the_same_structure(make_host, receiver):
    pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    otlp = GrpcOtlpReceiver()
    try:
        token, token_hash = token_pair()
        receiver.responses = [(503, {}, b"busy")]  # one retry: two delivery attempts of the first event
        host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)},
                         extra=f'[telemetry]\notlp_endpoint = "{otlp.url}"\notlp_protocol = "grpc"\n').start()
        check_a_traced_request(host, token, str(uuid.uuid4()), otlp)
        assert otlp.calls >= 1
        assert "grpc" in host.logs()
    finally:
        otlp.close()


def test_without_an_endpoint_nothing_is_exported(make_host, receiver):
    token, token_hash = token_pair()
    host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)}).start()
    assert "OTLP" not in host.logs()


@pytest.mark.sqlite_only("fills the disk under the SQLite file")
def test_ready_turns_503_when_the_journal_is_unwritable_and_back(make_host, receiver, tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        token, token_hash = token_pair()
        host = make_host({"ops": token_hash}, {"hook": webhook_plugin("ops", receiver)})
        text = host.config_path.read_text().replace('path = "journal/herald.db"', f'path = "{disk}/herald.db"')
        host.config_path.write_text(text)
        host.start()

        def ready_status():
            try:
                with urllib.request.urlopen(host.url + "/ready", timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert ready_status()[0] == 200
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        run = str(uuid.uuid4())
        big = "x" * 4000

        def unready():
            # Writes fill the last free pages; the probe then fails.
            host.post(json.dumps([{"uuid": str(uuid.uuid4()), "event": "runner_on_ok", "counter": 1,
                                   "run_id": run, "created": "2026-11-21T10:00:00+00:00",
                                   "event_data": {"pad": big}} for _ in range(10)]).encode(), token)
            status, body = ready_status()
            return body if status == 503 else None

        body = wait_for(unready, timeout=30, what="/ready to answer 503")
        assert body["checks"]["journal"]["ok"] is False, body
        with urllib.request.urlopen(host.url + "/health", timeout=5) as r:
            assert r.status == 200  # liveness is not readiness
        filler.unlink()
        wait_for(lambda: ready_status()[0] == 200, timeout=30, what="/ready to recover")
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@needs_promtool
def test_alert_rules_pass_promtool():
    check = subprocess.run([PROMTOOL, "check", "rules", str(MONITORING / "herald-alerts.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = (MONITORING / "herald-alerts.yml").read_text()
    for alert in ["HeraldDown", "HeraldDeliveryFailureRateHigh", "HeraldQueueGrowing", "HeraldDeliveriesStale",
                  "HeraldDeadLetters", "HeraldPluginFaults", "HeraldBreakerOpen"]:
        assert f"alert: {alert}" in rules


def herald_series() -> set[str]:
    """Metric names the host's source defines (plus histogram suffixes)."""
    names = set()
    for src in (ROOT / "host").rglob("*.rs"):
        names |= set(re.findall(r'"(herald_[a-z_]+)"', src.read_text()))
    hist = {"herald_delivery_seconds", "herald_http_request_duration_seconds", "herald_journal_commit_seconds"}
    for h in hist:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def test_dashboard_queries_use_existing_series():
    dash = json.loads((MONITORING / "herald-dashboard.json").read_text())
    known = herald_series() | {"up"}
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for e in exprs:
        for name in re.findall(r'\bherald_[a-z_]+', e):
            assert name in known, (name, e)
    for must in ["herald_deliveries_total", "herald_queue_depth", "herald_dead_letters",
                 "herald_plugin_faults_total", "herald_plugin_state", "herald_events_ingested_total"]:
        assert any(must in e for e in exprs), must
    rule_names = set(re.findall(r'\bherald_[a-z_]+', (MONITORING / "herald-alerts.yml").read_text()))
    assert rule_names and rule_names <= known, rule_names - known


def _get(url: str, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_can_require_a_token_and_a_tenant_scrapes_only_its_own_series(make_host):
    """Issue 17 (5): with `metrics_auth = "token"`, /metrics answers only a
    metrics or admin token; a tenant token reads /v1/metrics, which holds only
    the series labelled with that tenant (Herald's and its plugins' own)."""
    from conftest import PLUGIN_DIR
    ta, ha = token_pair()
    tb, hb = token_pair()
    scrape, scrape_h = token_pair()
    admin, admin_h = token_pair()

    def prom(tenant):
        return {"tenant": tenant, "component": str(PLUGIN_DIR / "prometheus.wasm"), "config": {}}

    host = make_host({"a": ha, "b": hb}, {"prom-a": prom("a"), "prom-b": prom("b")})
    text = host.config_path.read_text().replace(
        "[server]\n", f'[server]\nmetrics_auth = "token"\nmetrics_tokens = ["{scrape_h}"]\n'
                      f'admin_tokens = ["{admin_h}"]\n', 1)
    host.config_path.write_text(text)
    host.start()
    for token, playbook in ((ta, "alpha-deploy.yml"), (tb, "bravo-deploy.yml")):
        run = str(uuid.uuid4())
        events = [{"uuid": str(uuid.uuid4()), "event": kind, "counter": i, "run_id": run,
                   "created": "2026-11-21T10:00:00+00:00",
                   "event_data": {"playbook": playbook, **({"host": "web1"} if kind == "runner_on_ok" else {})}}
                  for i, kind in enumerate(["playbook_on_start", "runner_on_ok", "runner_on_ok"])]
        assert host.post(json.dumps(events).encode(), token)[0] == 202
    metrics_url, mine_url = host.url + "/metrics", host.url + "/v1/metrics"
    wait_for(lambda: "bravo-deploy" in _get(metrics_url, scrape)[1] and "alpha-deploy" in _get(metrics_url, scrape)[1],
             timeout=30, what="both tenants' plugin series")
    # /metrics: no token, an unknown one or a tenant's are refused; the scraper's and the admin's read it.
    assert _get(metrics_url, None)[0] == 401
    assert _get(metrics_url, "nope")[0] == 403
    status, body = _get(metrics_url, ta)
    assert status == 403 and "/v1/metrics" in body, body
    assert _get(metrics_url, admin)[0] == 200
    # /v1/metrics: a tenant's own series only.
    assert _get(mine_url, None)[0] == 401
    assert _get(mine_url, "nope")[0] == 401
    status, mine = _get(mine_url, ta)
    assert status == 200
    assert "alpha-deploy" in mine and 'plugin="prom-a"' in mine, mine
    assert 'herald_events_ingested_total{tenant="a"' in mine, mine
    assert "bravo" not in mine and "prom-b" not in mine and 'tenant="b"' not in mine, mine
    samples = [line for line in mine.splitlines() if line and not line.startswith("#")]
    assert samples and all('tenant="a"' in line for line in samples), samples
    # Every family keeps its HELP/TYPE lines; the text parses as Prometheus's.
    parse_metrics(mine)
    assert "# TYPE herald_events_ingested_total counter" in mine
    if PROMTOOL:
        checked = subprocess.run([PROMTOOL, "check", "metrics"], input=mine, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    status, body = _get(mine_url, tb)
    assert status == 200 and "bravo-deploy" in body and "alpha" not in body
