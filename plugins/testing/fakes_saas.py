"""Strict local fakes of the SaaS APIs of the teams, splunk_hec, datadog and otel sinks.

Same base as fakes.py (`FakeServer`: 127.0.0.1, a free port, every request recorded and checked,
`respond_next` to answer 429/5xx/4xx, `errors` lists what broke the documented shape):

- FakeTeams: a Workflows webhook taking an Adaptive Card message;
- FakeSplunkHec: the HTTP Event Collector's `/services/collector/event` (token, channel, batches);
- FakeDatadog: the Events API v1 and the metrics API v2 (`DD-API-KEY`);
- FakeOtlp: an OTLP/HTTP collector, `/v1/traces` and `/v1/metrics` in protobuf, decoded with the
  official definitions (the `opentelemetry-proto` package, pinned in requirements-test.txt; only
  this fake needs it, and imports it when created).

    sys.path.insert(0, "plugins/testing")
    from fakes_saas import FakeTeams
    with FakeTeams() as teams:
        ...  # point the plugin at teams.hook_url
        assert teams.cards and not teams.errors

Run one by hand: `python3 plugins/testing/fakes_saas.py teams --port 8080`.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

from fakes import FakeServer, Invalid

__all__ = ["FakeTeams", "FakeSplunkHec", "FakeDatadog", "FakeOtlp"]


# -- Microsoft Teams (Workflows webhook) ------------------------------------------------------

_TEXT_SIZES = {"Small", "Default", "Medium", "Large", "ExtraLarge"}
_WEIGHTS = {"Lighter", "Default", "Bolder"}
_COLORS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}
_SPACINGS = {"None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"}
_VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}
# Properties every element may have (Adaptive Cards schema 1.4, `Element` base).
_COMMON = {"type", "id", "spacing", "separator", "isVisible", "height", "requires", "fallback"}
_ELEMENT_PROPS = {
    "TextBlock": {"text", "color", "fontType", "horizontalAlignment", "isSubtle", "maxLines", "size", "weight",
                  "wrap", "style"},
    "FactSet": {"facts"},
    "Container": {"items", "selectAction", "style", "verticalContentAlignment", "bleed", "backgroundImage",
                  "minHeight", "rtl"},
    "ColumnSet": {"columns", "selectAction", "style", "bleed", "minHeight", "horizontalAlignment"},
    "ActionSet": {"actions"},
    "Image": {"url", "altText", "size", "style", "width", "horizontalAlignment", "backgroundColor", "selectAction"},
    "RichTextBlock": {"inlines", "horizontalAlignment"},
}


class FakeTeams(FakeServer):
    """A Microsoft Teams Workflows webhook ("When a Teams webhook request is received" → "Post
    card in a chat or channel").

    Checks: POST to the hook path with its `sig` query parameter (else 401, as Logic Apps
    answers a missing signature), `Content-Type: application/json`, a body
    `{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
    "contentUrl": null, "content": <AdaptiveCard>}]}`, the card against the Adaptive Cards
    schema's element types, required properties and enumerations (version 1.0-1.5, TextBlock
    `text`/`size`/`weight`/`color`, FactSet `facts` of `{title, value}` strings, Action.OpenUrl
    `title` and absolute `url`), and the message size (Teams refuses over 28 KB: 413).
    Answers 202 with an empty body, as the flow's trigger does. `cards` holds the accepted cards.
    """

    name = "teams"
    MAX_BYTES = 28 * 1024

    def __init__(self, port: int = 0, hook_path: str = "/workflows/4f2e/triggers/manual/paths/invoke",
                 sig: str = "Zs3cr3tSignature0123456789abcdefXYZ"):
        self.cards: list[dict] = []
        self.hook_path, self.sig = hook_path, sig
        super().__init__(port)
        self.hook_url = f"{self.url}{hook_path}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}"

    def _element(self, e: Any, where: str, problems: list[str]) -> None:
        if not isinstance(e, dict) or not isinstance(e.get("type"), str):
            problems.append(f"{where}: an element must be an object with a type")
            return
        t = e["type"]
        if t not in _ELEMENT_PROPS:
            problems.append(f"{where}: unknown element type {t!r}")
            return
        extra = set(e) - _COMMON - _ELEMENT_PROPS[t]
        if extra:
            problems.append(f"{where}: {t} has unknown properties {sorted(extra)}")
        if "spacing" in e and e["spacing"] not in _SPACINGS:
            problems.append(f"{where}.spacing {e['spacing']!r}")
        if "separator" in e and not isinstance(e["separator"], bool):
            problems.append(f"{where}.separator must be a boolean")
        if t == "TextBlock":
            if not isinstance(e.get("text"), str):
                problems.append(f"{where}.text is required (a string)")
            for key, allowed in (("size", _TEXT_SIZES), ("weight", _WEIGHTS), ("color", _COLORS)):
                if key in e and e[key] not in allowed:
                    problems.append(f"{where}.{key} {e[key]!r} is not one of {sorted(allowed)}")
            if "wrap" in e and not isinstance(e["wrap"], bool):
                problems.append(f"{where}.wrap must be a boolean")
        elif t == "FactSet":
            facts = e.get("facts")
            if not isinstance(facts, list) or not facts:
                problems.append(f"{where}.facts must be a non-empty list")
            else:
                for i, f in enumerate(facts):
                    if not (isinstance(f, dict) and set(f) == {"title", "value"}
                            and isinstance(f["title"], str) and isinstance(f["value"], str)):
                        problems.append(f"{where}.facts[{i}] must be {{title, value}} strings, got {f!r}")
        elif t == "Container":
            for i, x in enumerate(e.get("items") or []):
                self._element(x, f"{where}.items[{i}]", problems)
        elif t == "ColumnSet":
            for i, col in enumerate(e.get("columns") or []):
                for j, x in enumerate((col or {}).get("items") or []):
                    self._element(x, f"{where}.columns[{i}].items[{j}]", problems)
        elif t == "ActionSet":
            self._actions(e.get("actions"), f"{where}.actions", problems)

    @staticmethod
    def _actions(actions: Any, where: str, problems: list[str]) -> None:
        if not isinstance(actions, list):
            problems.append(f"{where} must be a list")
            return
        for i, a in enumerate(actions):
            w = f"{where}[{i}]"
            if not isinstance(a, dict) or a.get("type") not in ("Action.OpenUrl", "Action.ShowCard",
                                                                 "Action.ToggleVisibility", "Action.Execute"):
                problems.append(f"{w}: unknown action")
                continue
            if a["type"] == "Action.OpenUrl":
                url = a.get("url")
                p = urllib.parse.urlsplit(url) if isinstance(url, str) else None
                if not p or p.scheme not in ("http", "https") or not p.netloc:
                    problems.append(f"{w}.url must be an absolute http(s) URL, got {url!r}")
                if not isinstance(a.get("title"), str) or not a["title"]:
                    problems.append(f"{w}.title is required")

    def handle(self, rec):
        if rec.method != "POST":
            raise Invalid([f"method {rec.method}"], 405)
        url = urllib.parse.urlsplit(rec.path)
        if url.path != self.hook_path:
            raise Invalid([f"no flow at {url.path}"], 404)
        if urllib.parse.parse_qs(url.query).get("sig") != [self.sig]:
            raise Invalid(["missing or wrong sig"], 401, json.dumps(
                {"error": {"code": "DirectApiAuthorizationRequired", "message": "The request must be authenticated"}}
            ).encode())
        if len(rec.body) > self.MAX_BYTES:
            raise Invalid([f"message is {len(rec.body)} bytes, more than {self.MAX_BYTES}"], 413)
        problems: list[str] = []
        body = self.require_json(rec, problems)
        if body is None:
            raise Invalid(problems)
        if body.get("type") != "message":
            problems.append(f"type must be \"message\", got {body.get('type')!r}")
        atts = body.get("attachments")
        if not isinstance(atts, list) or not atts:
            raise Invalid(problems + ["attachments must be a non-empty list"])
        cards = []
        for i, a in enumerate(atts):
            w = f"attachments[{i}]"
            if not isinstance(a, dict):
                problems.append(f"{w} must be an object")
                continue
            if a.get("contentType") != "application/vnd.microsoft.card.adaptive":
                problems.append(f"{w}.contentType {a.get('contentType')!r}")
            if a.get("contentUrl") is not None:
                problems.append(f"{w}.contentUrl must be null")
            c = a.get("content")
            if not isinstance(c, dict) or c.get("type") != "AdaptiveCard":
                problems.append(f"{w}.content must be an AdaptiveCard")
                continue
            if c.get("version") not in _VERSIONS:
                problems.append(f"{w}.content.version {c.get('version')!r} is not one Teams renders (1.0-1.5)")
            if "$schema" in c and c["$schema"] != "http://adaptivecards.io/schemas/adaptive-card.json":
                problems.append(f"{w}.content.$schema {c['$schema']!r}")
            elements = c.get("body")
            if not isinstance(elements, list) or not elements:
                problems.append(f"{w}.content.body must be a non-empty list")
            else:
                for j, e in enumerate(elements):
                    self._element(e, f"{w}.content.body[{j}]", problems)
            if "actions" in c:
                self._actions(c["actions"], f"{w}.content.actions", problems)
            ms = c.get("msteams")
            if ms is not None and (not isinstance(ms, dict) or ms.get("width", "Full") != "Full"):
                problems.append(f"{w}.content.msteams {ms!r}")
            cards.append(c)
        if problems:
            raise Invalid(problems)
        self.cards.extend(cards)
        return 202, b"", "text/plain", {}


# -- Splunk HTTP Event Collector --------------------------------------------------------------

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEC_KEYS = {"time", "host", "source", "sourcetype", "index", "event", "fields"}


class FakeSplunkHec(FakeServer):
    """Splunk's HTTP Event Collector, `POST /services/collector/event` (and `/services/collector`).

    Checks as HEC does, answering its JSON `{"text", "code"}`: `Authorization: Splunk <token>`
    (401 code 2 when missing, 403 code 4 when wrong), `X-Splunk-Request-Channel` a GUID (400
    code 11; with `require_channel`, as for a token with indexer acknowledgment, missing is 400
    code 10), a body of one or more stacked JSON event objects, each with a non-blank `event`
    (codes 12, 13), `time` a number of epoch seconds, `host`/`source`/`sourcetype`/`index`
    strings, `index` among `indexes` (400 code 7), `fields` an object of strings or lists of
    strings, and no other keys (400 code 6 with `invalid-event-number`). Answers 200
    `{"text":"Success","code":0}`. `events` holds the accepted events, `batches` the number
    of events of each accepted request.
    """

    name = "splunk_hec"

    def __init__(self, port: int = 0, token: str = "8c1d3a2e-6f4b-4b7e-9a55-2f0c9e1d7b10",
                 indexes: tuple[str, ...] = ("main", "ansible"), require_channel: bool = False):
        self.events: list[dict] = []
        self.batches: list[int] = []
        self.token, self.indexes, self.require_channel = token, set(indexes), require_channel
        super().__init__(port)

    @staticmethod
    def _hec(status: int, text: str, code: int, problems: list[str], **extra) -> Invalid:
        return Invalid(problems, status, json.dumps({"text": text, "code": code, **extra}).encode())

    def handle(self, rec):
        path = urllib.parse.urlsplit(rec.path).path
        if rec.method != "POST" or path not in ("/services/collector/event", "/services/collector"):
            raise self._hec(404, "The requested URL was not found on this server.", 404, [f"{rec.method} {path}"])
        auth = rec.header("Authorization")
        if not auth:
            raise self._hec(401, "Token is required", 2, ["no Authorization header"])
        if auth != f"Splunk {self.token}":
            raise self._hec(403, "Invalid token", 4, [f"Authorization is not `Splunk <token>`: {auth[:12]}..."])
        channel = rec.header("X-Splunk-Request-Channel")
        if channel is None and self.require_channel:
            raise self._hec(400, "Data channel is missing", 10, ["no X-Splunk-Request-Channel"])
        if channel is not None and not _GUID.match(channel):
            raise self._hec(400, "Invalid data channel", 11, [f"channel {channel!r} is not a GUID"])
        text = rec.body.decode("utf-8", errors="strict")
        if not text.strip():
            raise self._hec(400, "No data", 5, ["empty body"])
        decoder, pos, events = json.JSONDecoder(), 0, []
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except ValueError as e:
                raise self._hec(400, "Invalid data format", 6, [f"event {len(events)}: {e}"],
                                **{"invalid-event-number": len(events)})
            events.append(obj)
        for i, ev in enumerate(events):
            problems: list[str] = []
            if not isinstance(ev, dict):
                raise self._hec(400, "Invalid data format", 6, [f"event {i} is not an object"], **{"invalid-event-number": i})
            if "event" not in ev:
                raise self._hec(400, "Event field is required", 12, [f"event {i}: no event"], **{"invalid-event-number": i})
            if ev["event"] in ("", None, {}):
                raise self._hec(400, "Event field cannot be blank", 13, [f"event {i}: blank"], **{"invalid-event-number": i})
            extra = set(ev) - _HEC_KEYS
            if extra:
                problems.append(f"event {i}: unknown keys {sorted(extra)}")
            t = ev.get("time")
            if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 1e9 < t < 1e10):
                problems.append(f"event {i}: time {t!r} is not epoch seconds")
            for k in ("host", "source", "sourcetype", "index"):
                if k in ev and (not isinstance(ev[k], str) or not ev[k]):
                    problems.append(f"event {i}: {k} must be a non-empty string")
            fields = ev.get("fields", {})
            if not isinstance(fields, dict):
                problems.append(f"event {i}: fields must be an object")
            else:
                for k, v in fields.items():
                    if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))):
                        problems.append(f"event {i}: fields.{k} must be a string or a list of strings")
            if problems:
                raise self._hec(400, "Invalid data format", 6, problems, **{"invalid-event-number": i})
            if "index" in ev and ev["index"] not in self.indexes:
                raise self._hec(400, "Incorrect index", 7, [f"event {i}: index {ev['index']!r}"], **{"invalid-event-number": i})
        self.events.extend(events)
        self.batches.append(len(events))
        return 200, b'{"text":"Success","code":0}', "application/json", {}


# -- Datadog (Events API v1, metrics API v2) --------------------------------------------------

_DD_TAG = re.compile(r"^[a-z][a-z0-9_\-:./]{0,199}$")
_DD_METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,199}$")
_DD_EVENT_KEYS = {"title", "text", "alert_type", "priority", "date_happened", "host", "tags", "aggregation_key",
                  "source_type_name", "related_event_id", "device_name"}
_DD_SERIES_KEYS = {"metric", "type", "points", "tags", "resources", "unit", "interval", "source_type_name",
                   "metadata"}


class FakeDatadog(FakeServer):
    """Datadog's `POST /api/v1/events` and `POST /api/v2/series`, keyed by `DD-API-KEY`.

    Checks: the key (403 `{"errors": ["Forbidden"]}`), JSON, for an event a non-empty `title`,
    a `text` of at most 4000 characters, `alert_type` (error, warning, info, success,
    user_update, recommendation, snapshot), `priority` (normal, low), `date_happened` epoch
    seconds no older than 18 hours, `aggregation_key` of at most 100 characters, `tags` as Datadog
    stores them (lower case `key:value`, 200 characters), no other keys; for series a metric
    name, `type` 0-3, `points` of `{timestamp, value}` with the timestamp at most 10 minutes ahead
    and 1 hour behind, `resources` of `{name, type}`. Answers 202 `{"status": "ok", "event":
    {...}}` and 202 `{"errors": []}`. `events` and `series` hold what was accepted.
    """

    name = "datadog"
    ALERT_TYPES = {"error", "warning", "info", "success", "user_update", "recommendation", "snapshot"}

    def __init__(self, port: int = 0, api_key: str = "4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c"):
        self.events: list[dict] = []
        self.series: list[dict] = []
        self.api_key = api_key
        super().__init__(port)

    def _tags(self, tags, where, problems):
        if not isinstance(tags, list):
            problems.append(f"{where} must be a list")
            return
        for t in tags:
            if not isinstance(t, str) or not _DD_TAG.match(t):
                problems.append(f"{where}: {t!r} is not a tag as Datadog stores it")

    def handle(self, rec):
        path = urllib.parse.urlsplit(rec.path).path
        if rec.method != "POST" or path not in ("/api/v1/events", "/api/v2/series"):
            raise Invalid([f"{rec.method} {path}"], 404, b'{"errors":["Not found"]}')
        if rec.header("DD-API-KEY") != self.api_key:
            raise Invalid(["missing or wrong DD-API-KEY"], 403, b'{"errors":["Forbidden"]}')
        problems: list[str] = []
        body = self.require_json(rec, problems)
        if body is None:
            raise Invalid(problems, 400, json.dumps({"errors": problems}).encode())
        now = time.time()
        if path == "/api/v1/events":
            if set(body) - _DD_EVENT_KEYS:
                problems.append(f"unknown keys {sorted(set(body) - _DD_EVENT_KEYS)}")
            if not isinstance(body.get("title"), str) or not body["title"]:
                problems.append("title is required")
            if not isinstance(body.get("text"), str) or not body["text"]:
                problems.append("text is required")
            elif len(body["text"]) > 4000:
                problems.append(f"text is {len(body['text'])} characters, more than 4000")
            if body.get("alert_type", "info") not in self.ALERT_TYPES:
                problems.append(f"alert_type {body.get('alert_type')!r}")
            if body.get("priority", "normal") not in ("normal", "low"):
                problems.append(f"priority {body.get('priority')!r}")
            d = body.get("date_happened")
            if d is not None and (not isinstance(d, int) or isinstance(d, bool) or not now - 18 * 3600 <= d <= now + 600):
                problems.append(f"date_happened {d!r} is not epoch seconds of the last 18 hours")
            if len(body.get("aggregation_key") or "") > 100:
                problems.append("aggregation_key over 100 characters")
            for k in ("host", "aggregation_key", "source_type_name"):
                if k in body and not isinstance(body[k], str):
                    problems.append(f"{k} must be a string")
            self._tags(body.get("tags", []), "tags", problems)
            if problems:
                raise Invalid(problems, 400, json.dumps({"errors": problems}).encode())
            self.events.append(body)
            out = {"status": "ok", "event": dict(body, id=len(self.events), url=f"https://app.datadoghq.com/event/event?id={len(self.events)}")}
            return 202, json.dumps(out).encode(), "application/json", {}
        series = body.get("series")
        if not isinstance(series, list) or not series:
            problems.append("series must be a non-empty list")
            series = []
        for i, m in enumerate(series):
            w = f"series[{i}]"
            if not isinstance(m, dict):
                problems.append(f"{w} must be an object")
                continue
            if set(m) - _DD_SERIES_KEYS:
                problems.append(f"{w}: unknown keys {sorted(set(m) - _DD_SERIES_KEYS)}")
            if not isinstance(m.get("metric"), str) or not _DD_METRIC.match(m["metric"]):
                problems.append(f"{w}.metric {m.get('metric')!r}")
            if m.get("type", 0) not in (0, 1, 2, 3):
                problems.append(f"{w}.type {m.get('type')!r}")
            pts = m.get("points")
            if not isinstance(pts, list) or not pts:
                problems.append(f"{w}.points must be a non-empty list")
            else:
                for p in pts:
                    ts, v = (p or {}).get("timestamp"), (p or {}).get("value")
                    if not isinstance(ts, int) or isinstance(ts, bool) or not now - 3600 <= ts <= now + 600:
                        problems.append(f"{w}: timestamp {ts!r} is not within the last hour")
                    if not isinstance(v, (int, float)) or isinstance(v, bool):
                        problems.append(f"{w}: value {v!r}")
            self._tags(m.get("tags", []), f"{w}.tags", problems)
            for r in m.get("resources", []):
                if not (isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("type"), str)):
                    problems.append(f"{w}.resources: {r!r}")
        if problems:
            raise Invalid(problems, 400, json.dumps({"errors": problems}).encode())
        self.series.extend(series)
        return 202, b'{"errors":[]}', "application/json", {}

    def value(self, metric: str, *tags: str) -> list[float]:
        """The values of accepted points of `metric` whose tags include `tags`."""
        return [p["value"] for m in self.series if m["metric"] == metric and set(tags) <= set(m.get("tags", []))
                for p in m["points"]]


# -- OpenTelemetry collector (OTLP/HTTP, protobuf) --------------------------------------------

def _attrs(kvs) -> dict:
    """OTLP KeyValues as a dict of Python values."""
    out = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind else None
    return out


class FakeOtlp(FakeServer):
    """An OpenTelemetry collector's OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/metrics`
    with `Content-Type: application/x-protobuf`, decoded with the official definitions
    (`opentelemetry-proto`). Checks what the OTLP specification requires of a span (16-byte
    non-zero trace id, 8-byte non-zero span id, an 8-byte or empty parent, a name, a known kind,
    start <= end, a status code 0-2) and of a metric (a name, data points with a time), and that
    the resource has `service.name`. A body that does not decode is 400 (a `google.rpc.Status`
    is not needed by the plugin: the fake answers plain text). Answers 200 with an empty
    `Export*ServiceResponse`. `spans` holds `(resource attributes, span)` pairs, `metrics`
    `(resource attributes, metric)`; `headers` checks extra request headers.
    """

    name = "otlp"

    def __init__(self, port: int = 0, headers: dict[str, str] | None = None):
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        self._trace_pb, self._metrics_pb = trace_service_pb2, metrics_service_pb2
        self.spans: list[tuple[dict, Any]] = []
        self.metrics: list[tuple[dict, Any]] = []
        self.required_headers = dict(headers or {})
        super().__init__(port)

    def handle(self, rec):
        from google.protobuf.message import DecodeError
        path = urllib.parse.urlsplit(rec.path).path
        if rec.method != "POST" or path not in ("/v1/traces", "/v1/metrics"):
            raise Invalid([f"{rec.method} {path}"], 404, b"404 page not found", "text/plain")
        ctype = (rec.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-protobuf":
            raise Invalid([f"Content-Type {ctype!r}"], 415, b"unsupported content type", "text/plain")
        for k, v in self.required_headers.items():
            if rec.header(k) != v:
                raise Invalid([f"header {k} missing or wrong"], 401, b"unauthorized", "text/plain")
        problems: list[str] = []
        if path == "/v1/traces":
            req = self._trace_pb.ExportTraceServiceRequest()
            try:
                req.ParseFromString(rec.body)
            except DecodeError as e:
                raise Invalid([f"not an ExportTraceServiceRequest: {e}"], 400, b"bad protobuf", "text/plain")
            got = []
            for rs in req.resource_spans:
                res = _attrs(rs.resource.attributes)
                if not res.get("service.name"):
                    problems.append("resource without service.name")
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        w = f"span {sp.name!r}"
                        if len(sp.trace_id) != 16 or not any(sp.trace_id):
                            problems.append(f"{w}: trace_id must be 16 non-zero bytes")
                        if len(sp.span_id) != 8 or not any(sp.span_id):
                            problems.append(f"{w}: span_id must be 8 non-zero bytes")
                        if len(sp.parent_span_id) not in (0, 8):
                            problems.append(f"{w}: parent_span_id must be 8 bytes or empty")
                        if not sp.name:
                            problems.append("span without a name")
                        if sp.kind not in range(0, 6):
                            problems.append(f"{w}: kind {sp.kind}")
                        if not 0 < sp.start_time_unix_nano <= sp.end_time_unix_nano:
                            problems.append(f"{w}: start {sp.start_time_unix_nano} after end {sp.end_time_unix_nano}")
                        if sp.status.code not in (0, 1, 2):
                            problems.append(f"{w}: status code {sp.status.code}")
                        got.append((res, sp))
            if problems:
                raise Invalid(problems, 400, "; ".join(problems).encode(), "text/plain")
            self.spans.extend(got)
            return 200, self._trace_pb.ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf", {}
        req = self._metrics_pb.ExportMetricsServiceRequest()
        try:
            req.ParseFromString(rec.body)
        except DecodeError as e:
            raise Invalid([f"not an ExportMetricsServiceRequest: {e}"], 400, b"bad protobuf", "text/plain")
        got = []
        for rm in req.resource_metrics:
            res = _attrs(rm.resource.attributes)
            if not res.get("service.name"):
                problems.append("resource without service.name")
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if not m.name or kind is None:
                        problems.append(f"metric {m.name!r} without a name or data")
                        continue
                    for dp in getattr(m, kind).data_points:
                        if not dp.time_unix_nano:
                            problems.append(f"metric {m.name}: a point without time_unix_nano")
                    got.append((res, m))
        if problems:
            raise Invalid(problems, 400, "; ".join(problems).encode(), "text/plain")
        self.metrics.extend(got)
        return 200, self._metrics_pb.ExportMetricsServiceResponse().SerializeToString(), "application/x-protobuf", {}

    def gauge(self, name: str, **attrs) -> list[float]:
        """Values of the accepted gauge points of `name` whose attributes include `attrs`."""
        return [dp.as_double for _, m in self.metrics if m.name == name for dp in m.gauge.data_points
                if all(_attrs(dp.attributes).get(k) == v for k, v in attrs.items())]


if __name__ == "__main__":  # pragma: no cover
    import argparse

    kinds = {"teams": FakeTeams, "splunk_hec": FakeSplunkHec, "datadog": FakeDatadog, "otlp": FakeOtlp}
    ap = argparse.ArgumentParser(description="Run a strict fake SaaS sink until interrupted.")
    ap.add_argument("kind", choices=sorted(kinds))
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = kinds[args.kind](port=args.port)
    print(f"{args.kind} fake listening on {srv.url}", flush=True)
    try:
        while True:
            time.sleep(1)
            for e in srv.errors:
                print("INVALID:", e, flush=True)
            srv.errors.clear()
    except KeyboardInterrupt:
        srv.stop()
