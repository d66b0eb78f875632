"""Issue 17, ingest and query points: multi-member gzip bodies, numbers out of
range, the X-Herald-Dropped count, empty filters and non-UTF-8 paths, against
the real host binary."""
from __future__ import annotations

import gzip
import http.client
import json
import re
import urllib.request
import uuid

import pytest

from conftest import token_pair

MAX_SAFE = 2**53 - 1


def event(run_id: str, counter: int = 1, kind: str = "verbose", **extra) -> dict:
    return {"uuid": str(uuid.uuid4()), "event": kind, "counter": counter, "created": "2026-01-01T00:00:00Z",
            "run_id": run_id, **extra}


def ndjson(*events) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def get(host, path: str, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(host.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def post(host, body: bytes, token: str, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(host.url + "/v1/events", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/x-ndjson", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def dropped_metric(host, tenant: str) -> int:
    m = re.search(r'^herald_callback_dropped_events_total\{tenant="%s"\} (\d+)' % tenant, host.metrics(), re.M)
    return int(m.group(1)) if m else 0


@pytest.fixture
def host(make_host):
    token, token_hash = token_pair()
    h = make_host({"ops": token_hash}, {})
    text = h.config_path.read_text()
    # A small body limit (the decompressed limit too) and a slow rate limit for the tenant.
    text = text.replace("[server]\n", "[server]\nbody_limit = 65536\n", 1)
    text = text.replace("[tenants.ops]\n", "[tenants.ops]\nmax_events_per_second = 0.01\nburst = 20\n", 1)
    h.config_path.write_text(text)
    h.start()
    h.token = token
    return h


def test_every_member_of_a_multi_member_gzip_body_is_stored(host):
    run = "gz-" + uuid.uuid4().hex[:8]
    a, b = event(run, 1), event(run, 2)
    body = gzip.compress(ndjson(a)) + gzip.compress(ndjson(b))  # what `cat a.gz b.gz` makes
    status, answer = host.post(body, host.token, content_type="application/x-ndjson", encoding="gzip")
    assert (status, answer) == (202, {"accepted": 2, "duplicates": 0})
    status, page = get(host, f"/v1/runs/{run}/events", host.token)
    assert status == 200 and [e["uuid"] for e in page["items"]] == [a["uuid"], b["uuid"]]

    # Each member is under the 64 KiB limit; together they are over it.
    pad = json.dumps(event(run, 3, stdout="x" * 40_000)).encode() + b"\n"
    status, answer = host.post(gzip.compress(pad) + gzip.compress(pad), host.token,
                               content_type="application/x-ndjson", encoding="gzip")
    assert status == 413 and answer["error"] == "payload_too_large", answer
    # Bytes after a member that are not a gzip member: refused, not silently ignored.
    status, answer = host.post(gzip.compress(ndjson(event(run, 4))) + b"junk", host.token,
                               content_type="application/x-ndjson", encoding="gzip")
    assert status == 400 and answer["error"] == "invalid_body", answer
    assert get(host, f"/v1/runs/{run}", host.token)[1]["events"] == 2


@pytest.mark.parametrize("counter", [2**53, 2**63, 2**64 - 1])
def test_counters_beyond_2_pow_53_are_refused(host, counter):
    run = "big-" + uuid.uuid4().hex[:8]
    for body in [ndjson(event(run, counter)), json.dumps([event(run, 1), event(run, counter)]).encode()]:
        ctype = "application/json" if body.startswith(b"[") else "application/x-ndjson"
        status, answer = host.post(body, host.token, content_type=ctype)
        assert status == 400, answer
        assert answer["field"] == "counter" and str(MAX_SAFE) in answer["message"], answer
    status, _ = get(host, f"/v1/runs/{run}", host.token)
    assert status == 404, "nothing of a refused batch is stored"
    status, answer = host.post(ndjson(event(run, MAX_SAFE)), host.token, content_type="application/x-ndjson")
    assert status == 202, answer


@pytest.mark.parametrize("key,bad", [("failures", "1"), ("ok", -1), ("dark", 1e300), ("changed", 1.5),
                                     ("rescued", None), ("skipped", 2**53), ("ignored", True),
                                     ("processed", [1])])
def test_per_host_stats_take_only_non_negative_integers(host, key, bad):
    run = "stats-" + uuid.uuid4().hex[:8]
    stats = event(run, 9, "playbook_on_stats", event_data={key: {"host0": 1, "host1": bad}, "ok": {"host0": 2}}
                  if key != "ok" else {key: {"host0": 1, "host1": bad}})
    status, answer = host.post(ndjson(event(run, 1), stats), host.token, content_type="application/x-ndjson")
    assert status == 400, answer
    assert (answer["index"], answer["field"]) == (1, f"event_data.{key}.host1"), answer
    good = event(run, 9, "playbook_on_stats", event_data={"ok": {"host0": 3}, "failures": {"host0": 0},
                                                          "dark": {}, "rescued": None})
    status, answer = host.post(ndjson(event(run, 1), good), host.token, content_type="application/x-ndjson")
    assert status == 202, answer
    detail = get(host, f"/v1/runs/{run}", host.token)[1]
    assert detail["status"] == "ok" and detail["hosts"]["host0"]["ok"] == 3, detail


def test_dropped_events_are_counted_once_after_the_commit_and_bounded(host):
    run = "drop-" + uuid.uuid4().hex[:8]
    batch = ndjson(event(run, 1), event(run, 2))
    # Refused batches count nothing: invalid, and a malformed header.
    status, _ = post(host, ndjson(event(run, -1)), host.token, {"X-Herald-Dropped": "7"})
    assert status == 400
    status, answer = post(host, batch, host.token, {"X-Herald-Dropped": "seven"})
    assert (status, answer.get("field")) == (400, "X-Herald-Dropped"), answer
    assert dropped_metric(host, "ops") == 0

    status, answer = post(host, batch, host.token, {"X-Herald-Dropped": "7"})
    assert status == 202 and answer["accepted"] == 2
    assert dropped_metric(host, "ops") == 7
    # The same batch resent (its answer was lost): all duplicates, not counted again.
    status, answer = post(host, batch, host.token, {"X-Herald-Dropped": "7"})
    assert (status, answer) == (202, {"accepted": 0, "duplicates": 2})
    assert dropped_metric(host, "ops") == 7
    # One request adds at most a million, whatever it claims.
    status, _ = post(host, ndjson(event(run, 3)), host.token, {"X-Herald-Dropped": str(MAX_SAFE)})
    assert status == 202
    assert dropped_metric(host, "ops") == 7 + 1_000_000

    # Over the rate limit (burst 20, then 0.01/s): refused with 429, nothing counted.
    many = ndjson(*[event(run, 10 + i) for i in range(30)])
    status, _ = post(host, many, host.token, {"X-Herald-Dropped": "5"})
    assert status == 429
    assert dropped_metric(host, "ops") == 7 + 1_000_000


def raw_get(host, path: str, token: str) -> tuple[int, str, bytes]:
    """A GET with the path sent exactly as given (no client-side quoting)."""
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        conn.close()


def test_bad_filters_and_paths_get_the_json_error_body(host):
    run = "q-" + uuid.uuid4().hex[:8]
    assert host.post(ndjson(event(run, 1)), host.token, content_type="application/x-ndjson")[0] == 202
    for path, field in [(f"/v1/runs/{run}/events?host=", "host"), ("/v1/runs?playbook=", "playbook"),
                        ("/v1/runs?controller=", "controller"), ("/v1/deliveries?run=", "run"),
                        ("/v1/deliveries?plugin=", "plugin")]:
        status, body = get(host, path, host.token)
        assert (status, body.get("error"), body.get("field")) == (400, "invalid_parameter", field), (path, body)
    # A path that is not UTF-8 once decoded: the documented JSON error, naming the id.
    for path in ["/v1/runs/%FF", "/v1/runs/%C3%28/events", "/v1/runs/a%80b/artifacts",
                 "/v1/dead-letters/1:%FE/retry"]:
        method_path = path
        if path.endswith("/retry"):
            conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
            conn.request("POST", path, headers={"Authorization": f"Bearer {host.token}"})
            r = conn.getresponse()
            status, ctype, raw = r.status, r.getheader("Content-Type") or "", r.read()
            conn.close()
        else:
            status, ctype, raw = raw_get(host, method_path, host.token)
        assert status == 400 and ctype.startswith("application/json"), (path, status, ctype, raw)
        body = json.loads(raw)
        assert (body["error"], body["field"]) == ("invalid_parameter", "id"), body
    # An unknown path: a JSON 404 too.
    status, ctype, raw = raw_get(host, "/v1/nothing/%FF", host.token)
    assert status == 404 and json.loads(raw)["error"] == "not_found", raw
    # A known path with another method: a JSON 405 that names the method, and the Allow header.
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    conn.request("DELETE", "/v1/events", headers={"Authorization": f"Bearer {host.token}"})
    r = conn.getresponse()
    status, ctype, allow, raw = r.status, r.getheader("Content-Type") or "", r.getheader("Allow"), r.read()
    conn.close()
    assert status == 405 and ctype.startswith("application/json"), (status, ctype, raw)
    body = json.loads(raw)
    assert body["error"] == "method_not_allowed" and "DELETE" in body["message"], body
    assert allow == "POST", allow
