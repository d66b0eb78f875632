"""Self-tests of the strict fakes: good requests pass, each documented rule is enforced."""

import hashlib
import hmac
import json
import urllib.error
import urllib.request

import pytest

from fakes import FakeGrafana, FakePagerDuty, FakeSlack, FakeWebhook

KEY = "R" * 32


def post(url, body, headers=None, method="POST"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_pagerduty_lifecycle_and_rules():
    with FakePagerDuty(routing_key=KEY) as pd:
        trig = {"routing_key": KEY, "event_action": "trigger", "dedup_key": "k1",
                "payload": {"summary": "s", "source": "ctl", "severity": "error", "timestamp": "2023-11-14T22:13:20.000Z"}}
        assert post(pd.url + "/v2/enqueue", trig)[0] == 202
        assert pd.incidents == {"k1": "triggered"}
        assert post(pd.url + "/v2/enqueue", {"routing_key": KEY, "event_action": "resolve", "dedup_key": "k1"})[0] == 202
        assert pd.incidents == {"k1": "resolved"}
        assert not pd.errors
        bad = dict(trig, payload=dict(trig["payload"], summary="x" * 1025, severity="fatal"))
        status, body, _ = post(pd.url + "/v2/enqueue", bad)
        assert status == 400 and b"invalid event" in body
        assert any("1024" in e for e in pd.errors) and any("severity" in e for e in pd.errors)
        assert post(pd.url + "/v2/enqueue", dict(trig, routing_key="short"))[0] == 400
        assert post(pd.url + "/v2/enqueue", trig, headers={"Content-Type": "text/plain"})[0] == 400
        assert post(pd.url + "/v2/change/enqueue", {"routing_key": KEY, "payload": {"summary": "deployed"}})[0] == 202
        pd.respond_next(429, headers={"Retry-After": "3"})
        status, _, headers = post(pd.url + "/v2/enqueue", trig)
        assert status == 429 and headers["Retry-After"] == "3"
        pd.respond_next(503, count=2)
        assert post(pd.url + "/v2/enqueue", trig)[0] == 503
        assert post(pd.url + "/v2/enqueue", trig)[0] == 503
        assert post(pd.url + "/v2/enqueue", trig)[0] == 202


def test_slack_rules():
    with FakeSlack() as sl:
        ok = {"text": "hi", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h"}},
                                       {"type": "section", "fields": [{"type": "mrkdwn", "text": "*a*"}]},
                                       {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]}]}
        status, body, _ = post(sl.url + "/services/T/B/X", ok)
        assert (status, body) == (200, b"ok")
        assert post(sl.url, {})[1] == b"no_text"
        long_header = {"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}
        assert post(sl.url, long_header)[:2] == (400, b"invalid_blocks")
        many = {"text": "x", "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "a"}] * 11}]}
        assert post(sl.url, many)[1] == b"invalid_blocks"
        assert post(sl.url, b"not json")[1] == b"invalid_payload"
        assert len(sl.messages) == 1


def test_grafana_rules():
    with FakeGrafana(token="t") as g:
        ann = {"time": 1_700_000_000_000, "timeEnd": 1_700_000_060_000, "tags": ["ansible"], "text": "run"}
        status, body, _ = post(g.url + "/api/annotations", ann, {"Authorization": "Bearer t"})
        assert status == 200 and json.loads(body)["id"] == 1
        assert post(g.url + "/api/annotations", ann)[0] == 401
        assert post(g.url + "/api/annotations", dict(ann, timeEnd=1), {"Authorization": "Bearer t"})[0] == 400
        assert post(g.url + "/api/annotations", dict(ann, time=1_700_000_000), {"Authorization": "Bearer t"})[0] == 400
        assert post(g.url + "/api/annotations", dict(ann, panelId=2), {"Authorization": "Bearer t"})[0] == 400
        assert post(g.url + "/api/dashboards", ann, {"Authorization": "Bearer t"})[0] == 404
        assert [a["id"] for a in g.annotations] == [1]


def test_webhook_signature():
    with FakeWebhook(secret="s") as w:
        body = b'{"a":1}'
        sig = "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
        assert post(w.url + "/x", body, {"X-Herald-Event-Id": "e1", "X-Herald-Signature": sig})[0] == 200
        assert post(w.url + "/x", body, {"X-Herald-Event-Id": "e1", "X-Herald-Signature": "sha256=00"})[0] == 400
        assert post(w.url + "/x", body)[0] == 400
        assert w.events() == [{"a": 1}]
