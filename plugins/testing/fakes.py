"""Strict local fakes of the HTTP sinks Herald's plugins talk to (standard library only).

Each fake validates the documented request shape (method, path, content type, auth header,
required fields, types, lengths), answers like the real service, and records every request. It
can be told to answer with a given status for the next requests (429 with Retry-After, 5xx, 4xx).

    sys.path.insert(0, "plugins/testing")    # from the repository root
    from fakes import FakePagerDuty
    with FakePagerDuty() as pd:            # listens on 127.0.0.1, a free port
        ...  # point the plugin at pd.url + "/v2/enqueue"
        pd.respond_next(429, headers={"Retry-After": "2"})
        assert pd.incidents["herald:acme:site.yml"] == "resolved"
        assert not pd.errors               # every request had the documented shape

Fakes: FakeWebhook (any path; optional HMAC check), FakePagerDuty (Events API v2 and change
events), FakeSlack (incoming webhook + Block Kit limits), FakeGrafana (POST /api/annotations),
FakeMattermost, FakeRocketChat and FakeDiscord (their incoming webhooks).
Run one by hand: `python3 plugins/testing/fakes.py slack --port 8080`.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import http.server
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Recorded", "FakeServer", "FakeWebhook", "FakePagerDuty", "FakeSlack", "FakeGrafana", "FakeMattermost",
           "FakeRocketChat", "FakeDiscord"]


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    status: int = 0
    problems: list[str] = field(default_factory=list)
    at: float = 0.0

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


class Invalid(Exception):
    """A request that does not have the documented shape."""

    def __init__(self, problems: list[str], status: int = 400, body: bytes | None = None, content_type: str = "application/json"):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.status = status
        self.body = body
        self.content_type = content_type


class FakeServer(abc.ABC):
    """A threaded HTTP server on 127.0.0.1 that records and validates requests."""

    name = "fake"

    def __init__(self, port: int = 0):
        self.requests: list[Recorded] = []
        self.errors: list[str] = []
        self._forced: list[tuple[int, bytes, dict[str, str]]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()

    # -- control -----------------------------------------------------------------------------
    def respond_next(self, status: int, body: bytes | str | dict = b"", headers: dict[str, str] | None = None, count: int = 1):
        """Answer the next `count` requests with `status` (after recording them)."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        elif isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._forced.extend([(status, body, dict(headers or {}))] * count)

    def wait_for(self, n: int, timeout: float = 10.0, pred=None) -> list[Recorded]:
        """Wait until `n` recorded requests (matching `pred`) arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [r for r in self.requests if pred is None or pred(r)]
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- serving -----------------------------------------------------------------------------
    def _serve(self, h: http.server.BaseHTTPRequestHandler):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        rec = Recorded(h.command, h.path, dict(h.headers.items()), body, at=time.time())
        with self._lock:
            forced = self._forced.pop(0) if self._forced else None
        try:
            status, out, ctype, extra = self.handle(rec)
        except Invalid as e:
            rec.problems = e.problems
            status, extra = e.status, {}
            out = e.body if e.body is not None else json.dumps({"error": "invalid request", "problems": e.problems}).encode()
            ctype = e.content_type
            with self._lock:
                self.errors.extend(f"{rec.method} {rec.path}: {p}" for p in e.problems)
        if forced is not None:
            status, out, extra = forced[0], forced[1], dict(forced[2])
            ctype = extra.pop("Content-Type", "text/plain")
        rec.status = status
        with self._lock:
            self.requests.append(rec)
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        for k, v in extra.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    @abc.abstractmethod
    def handle(self, rec: Recorded) -> tuple[int, bytes, str, dict[str, str]]:
        """Validates one request against the API the fake stands for and
        returns (status, body, content type, extra headers)."""

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def require_json(rec: Recorded, problems: list[str]) -> Any:
        ctype = (rec.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            problems.append(f"Content-Type is {ctype or 'missing'}, expected application/json")
        try:
            rec.json = json.loads(rec.body)
        except ValueError as e:
            problems.append(f"body is not JSON: {e}")
            return None
        if not isinstance(rec.json, dict):
            problems.append("body is not a JSON object")
            return None
        return rec.json


def _str(obj: dict, key: str, problems: list[str], *, where: str = "", required: bool = True, max_len: int | None = None, min_len: int = 1):
    v = obj.get(key)
    name = f"{where}{key}"
    if v is None:
        if required:
            problems.append(f"missing {name}")
        return None
    if not isinstance(v, str):
        problems.append(f"{name} must be a string, got {type(v).__name__}")
        return None
    if len(v) < min_len:
        problems.append(f"{name} is empty")
    if max_len is not None and len(v) > max_len:
        problems.append(f"{name} is {len(v)} characters, more than {max_len}")
    return v


_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


class FakeWebhook(FakeServer):
    """Any path; JSON body; `X-Herald-Event-Id` required; checks the HMAC when `secret` is set."""

    name = "webhook"

    def __init__(self, port: int = 0, secret: str | None = None, signature_header: str = "X-Herald-Signature", bearer: str | None = None):
        self.secret, self.signature_header, self.bearer = secret, signature_header, bearer
        super().__init__(port)

    def events(self) -> list[Any]:
        return [r.json for r in self.requests if r.status < 300]

    def handle(self, rec):
        problems: list[str] = []
        if rec.method not in ("POST", "PUT"):
            raise Invalid([f"method {rec.method}"], 405)
        if self.bearer is not None and rec.header("Authorization") != f"Bearer {self.bearer}":
            raise Invalid(["missing or wrong bearer token"], 401)
        self.require_json(rec, problems)
        if not rec.header("X-Herald-Event-Id"):
            problems.append("missing X-Herald-Event-Id")
        if self.secret is not None:
            want = "sha256=" + hmac.new(self.secret.encode(), rec.body, hashlib.sha256).hexdigest()
            got = rec.header(self.signature_header) or ""
            if not hmac.compare_digest(want, got):
                problems.append(f"bad signature in {self.signature_header}")
        if problems:
            raise Invalid(problems)
        return 200, b'{"ok":true}', "application/json", {}


class FakePagerDuty(FakeServer):
    """Events API v2: `POST /v2/enqueue` and `POST /v2/change/enqueue`, validated as documented.

    `incidents` maps dedup_key -> "triggered" | "acknowledged" | "resolved";
    `events` and `change_events` hold the accepted bodies.
    """

    name = "pagerduty"
    SEVERITIES = {"critical", "error", "warning", "info"}

    def __init__(self, port: int = 0, routing_key: str | None = None):
        self.routing_key = routing_key
        self.incidents: dict[str, str] = {}
        self.events: list[dict] = []
        self.change_events: list[dict] = []
        super().__init__(port)

    def _invalid(self, problems):
        return Invalid(problems, 400, json.dumps({"status": "invalid event", "message": "Event object is invalid", "errors": problems}).encode())

    def _routing(self, body, problems):
        rk = _str(body, "routing_key", problems)
        if rk is not None and len(rk) != 32:
            problems.append(f"routing_key must be 32 characters, got {len(rk)}")
        if rk is not None and self.routing_key is not None and rk != self.routing_key:
            problems.append("unknown routing_key")

    def handle(self, rec):
        if rec.method != "POST":
            raise Invalid([f"method {rec.method} (expected POST)"], 405)
        path = rec.path.split("?")[0]
        if path not in ("/v2/enqueue", "/v2/change/enqueue"):
            raise Invalid([f"unknown path {path}"], 404)
        problems: list[str] = []
        body = self.require_json(rec, problems)
        if body is None:
            raise self._invalid(problems)
        self._routing(body, problems)
        if path == "/v2/change/enqueue":
            payload = body.get("payload")
            if not isinstance(payload, dict):
                problems.append("missing payload object")
            else:
                _str(payload, "summary", problems, where="payload.", max_len=1024)
                _str(payload, "source", problems, where="payload.", required=False)
                ts = _str(payload, "timestamp", problems, where="payload.", required=False)
                if ts is not None and not _ISO.match(ts):
                    problems.append(f"payload.timestamp {ts!r} is not ISO 8601")
                if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
                    problems.append("payload.custom_details must be an object")
            if "links" in body and not isinstance(body["links"], list):
                problems.append("links must be a list")
            if problems:
                raise self._invalid(problems)
            self.change_events.append(body)
            return 202, json.dumps({"status": "success", "message": "Change event processed"}).encode(), "application/json", {}

        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            problems.append(f"event_action {action!r} is not trigger, acknowledge or resolve")
        dedup = _str(body, "dedup_key", problems, required=action in ("acknowledge", "resolve"), max_len=255)
        if action == "trigger":
            payload = body.get("payload")
            if not isinstance(payload, dict):
                problems.append("missing payload object")
            else:
                _str(payload, "summary", problems, where="payload.", max_len=1024)
                _str(payload, "source", problems, where="payload.")
                sev = payload.get("severity")
                if sev not in self.SEVERITIES:
                    problems.append(f"payload.severity {sev!r} is not one of {sorted(self.SEVERITIES)}")
                ts = _str(payload, "timestamp", problems, where="payload.", required=False)
                if ts is not None and not _ISO.match(ts):
                    problems.append(f"payload.timestamp {ts!r} is not ISO 8601")
                for k in ("component", "group", "class"):
                    _str(payload, k, problems, where="payload.", required=False)
                if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, str)):
                    problems.append("payload.custom_details must be an object")
        for k in ("links", "images"):
            if k in body and not isinstance(body[k], list):
                problems.append(f"{k} must be a list")
        if problems:
            raise self._invalid(problems)
        if dedup is None:
            dedup = hashlib.md5(rec.body).hexdigest()
        self.events.append(body)
        if action == "trigger":
            self.incidents[dedup] = "triggered"
        elif dedup in self.incidents:
            self.incidents[dedup] = "acknowledged" if action == "acknowledge" else "resolved"
        return 202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": dedup}).encode(), "application/json", {}


class FakeSlack(FakeServer):
    """A Slack incoming webhook: `POST` JSON with `text` and/or `blocks` within Block Kit limits.

    Answers 200 `ok`, or Slack's plain-text errors (`invalid_payload`, `no_text`,
    `invalid_blocks`) with 400. `messages` holds the accepted bodies.
    """

    name = "slack"
    BLOCK_TYPES = {"section", "header", "context", "divider", "actions", "image", "rich_text", "input", "file", "video"}

    def __init__(self, port: int = 0):
        self.messages: list[dict] = []
        super().__init__(port)

    def _fail(self, code: str, problems: list[str]):
        return Invalid(problems, 400, code.encode(), "text/plain")

    @staticmethod
    def _text_obj(t: Any, where: str, max_len: int, problems: list[str], plain_only: bool = False):
        if not isinstance(t, dict):
            problems.append(f"{where} must be a text object")
            return
        if t.get("type") not in (("plain_text",) if plain_only else ("plain_text", "mrkdwn")):
            problems.append(f"{where}.type {t.get('type')!r}")
        s = t.get("text")
        if not isinstance(s, str) or not s:
            problems.append(f"{where}.text must be a non-empty string")
        elif len(s) > max_len:
            problems.append(f"{where}.text is {len(s)} characters, more than {max_len}")

    def handle(self, rec):
        if rec.method != "POST":
            raise self._fail("invalid_payload", [f"method {rec.method}"])
        problems: list[str] = []
        body = self.require_json(rec, problems)
        if body is None:
            raise self._fail("invalid_payload", problems)
        text, blocks = body.get("text"), body.get("blocks")
        if text is not None and not isinstance(text, str):
            problems.append("text must be a string")
        if not text and not blocks:
            raise self._fail("no_text", ["neither text nor blocks"])
        if text is not None and isinstance(text, str) and len(text) > 40000:
            problems.append("text over 40000 characters")
        block_problems: list[str] = []
        if blocks is not None:
            if not isinstance(blocks, list) or len(blocks) > 50:
                block_problems.append("blocks must be a list of at most 50")
            else:
                for i, b in enumerate(blocks):
                    w = f"blocks[{i}]"
                    if not isinstance(b, dict) or b.get("type") not in self.BLOCK_TYPES:
                        block_problems.append(f"{w}: unknown block type")
                        continue
                    t = b["type"]
                    if t == "header":
                        self._text_obj(b.get("text"), f"{w}.text", 150, block_problems, plain_only=True)
                    elif t == "section":
                        if "text" not in b and "fields" not in b:
                            block_problems.append(f"{w}: section needs text or fields")
                        if "text" in b:
                            self._text_obj(b["text"], f"{w}.text", 3000, block_problems)
                        if "fields" in b:
                            f = b["fields"]
                            if not isinstance(f, list) or not 1 <= len(f) <= 10:
                                block_problems.append(f"{w}.fields must hold 1-10 items")
                            else:
                                for j, x in enumerate(f):
                                    self._text_obj(x, f"{w}.fields[{j}]", 2000, block_problems)
                    elif t == "context":
                        els = b.get("elements")
                        if not isinstance(els, list) or not 1 <= len(els) <= 10:
                            block_problems.append(f"{w}.elements must hold 1-10 items")
                        else:
                            for j, x in enumerate(els):
                                if isinstance(x, dict) and x.get("type") in ("plain_text", "mrkdwn"):
                                    self._text_obj(x, f"{w}.elements[{j}]", 3000, block_problems)
        for k in ("channel", "username", "icon_emoji", "icon_url"):
            if k in body and not isinstance(body[k], str):
                problems.append(f"{k} must be a string")
        if block_problems:
            raise self._fail("invalid_blocks", block_problems)
        if problems:
            raise self._fail("invalid_payload", problems)
        self.messages.append(body)
        return 200, b"ok", "text/plain", {}


class FakeGrafana(FakeServer):
    """Grafana's `POST /api/annotations` (bearer token checked when `token` is set).

    Answers `{"message":"Annotation added","id":N}`; `annotations` holds the accepted bodies
    with their ids.
    """

    name = "grafana"

    def __init__(self, port: int = 0, token: str | None = None, org_id: int | None = None):
        self.token, self.org_id = token, org_id
        self.annotations: list[dict] = []
        super().__init__(port)

    def handle(self, rec):
        path = rec.path.split("?")[0].rstrip("/")
        if not path.endswith("/api/annotations"):
            raise Invalid([f"unknown path {path}"], 404, json.dumps({"message": "Not found"}).encode())
        if rec.method != "POST":
            raise Invalid([f"method {rec.method}"], 405, json.dumps({"message": "Method not allowed"}).encode())
        if self.token is not None and rec.header("Authorization") != f"Bearer {self.token}":
            raise Invalid(["missing or wrong bearer token"], 401, json.dumps({"message": "Unauthorized"}).encode())
        if self.org_id is not None and rec.header("X-Grafana-Org-Id") != str(self.org_id):
            raise Invalid([f"X-Grafana-Org-Id is {rec.header('X-Grafana-Org-Id')!r}"], 400, json.dumps({"message": "bad org"}).encode())
        problems: list[str] = []
        body = self.require_json(rec, problems)
        if body is not None:
            t, te = body.get("time"), body.get("timeEnd")
            if not isinstance(t, int) or isinstance(t, bool) or t < 10**12:
                problems.append(f"time must be epoch milliseconds (int), got {t!r}")
            if te is not None and (not isinstance(te, int) or isinstance(te, bool) or (isinstance(t, int) and te < t)):
                problems.append(f"timeEnd must be epoch milliseconds >= time, got {te!r}")
            _str(body, "text", problems)
            tags = body.get("tags", [])
            if not isinstance(tags, list) or not all(isinstance(x, str) and x for x in tags):
                problems.append("tags must be a list of non-empty strings")
            if "dashboardUID" in body:
                _str(body, "dashboardUID", problems)
            if "panelId" in body and (not isinstance(body["panelId"], int) or isinstance(body["panelId"], bool)):
                problems.append("panelId must be an integer")
            if "panelId" in body and "dashboardUID" not in body and "dashboardId" not in body:
                problems.append("panelId without dashboardUID")
        if problems:
            raise Invalid(problems, 400, json.dumps({"message": "; ".join(problems)}).encode())
        ann = dict(body, id=len(self.annotations) + 1)
        self.annotations.append(ann)
        return 200, json.dumps({"message": "Annotation added", "id": ann["id"]}).encode(), "application/json", {}


class _ChatHook(FakeServer):
    """Shared by the chat webhooks: `POST <hook_path>` with a JSON object; a wrong path is 404."""

    def __init__(self, hook_path: str, port: int = 0):
        self.hook_path = hook_path
        self.messages: list[dict] = []
        super().__init__(port)

    def body(self, rec) -> dict:
        if rec.path != self.hook_path:
            raise Invalid([f"unknown webhook path {rec.path!r}"], 404, b"Not Found", "text/plain")
        if rec.method != "POST":
            raise Invalid([f"method {rec.method}"], 405, b"Method Not Allowed", "text/plain")
        problems: list[str] = []
        body = self.require_json(rec, problems)
        if problems:
            raise Invalid(problems, 400, json.dumps({"message": "; ".join(problems)}).encode())
        return body


def _attachments(body: dict, problems: list[str], title_key: str) -> None:
    atts = body.get("attachments")
    if atts is None:
        return
    if not isinstance(atts, list):
        problems.append("attachments must be a list")
        return
    for i, a in enumerate(atts):
        w = f"attachments[{i}]"
        if not isinstance(a, dict):
            problems.append(f"{w} must be an object")
            continue
        for k in ("fallback", "title", "title_link", "text", "pretext"):
            if k in a and not isinstance(a[k], str):
                problems.append(f"{w}.{k} must be a string")
        if title_key not in a:
            problems.append(f"{w}.{title_key} is required by this fake")
        c = a.get("color")
        if c is not None and not (isinstance(c, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", c)):
            problems.append(f"{w}.color must be #rrggbb, got {c!r}")
        for j, f in enumerate(a.get("fields", [])):
            if not isinstance(f, dict) or not isinstance(f.get("title"), str) or not isinstance(f.get("value"), str) \
                    or not isinstance(f.get("short", False), bool) or set(f) - {"title", "value", "short"}:
                problems.append(f"{w}.fields[{j}] must be {{title, value, short}}, got {f!r}")


class FakeMattermost(_ChatHook):
    """A Mattermost incoming webhook (developers.mattermost.com, "Incoming webhooks"): `POST` JSON
    with `text` (at most 16383 characters) and/or `attachments`; optional `channel`, `username`,
    `icon_url`, `icon_emoji`, `props`. Answers 200 `ok`, 400 with Mattermost's error JSON."""

    name = "mattermost"
    KEYS = {"text", "channel", "username", "icon_url", "icon_emoji", "attachments", "props", "type", "priority"}

    def __init__(self, hook_path: str = "/hooks/x7k2mattermostsecret", port: int = 0):
        super().__init__(hook_path, port)

    def handle(self, rec):
        body = self.body(rec)
        problems: list[str] = [f"unknown field {k!r}" for k in body if k not in self.KEYS]
        text = body.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > 16383):
            problems.append("text must be a string of at most 16383 characters")
        if not text and not body.get("attachments"):
            problems.append("neither text nor attachments")
        for k in ("channel", "username", "icon_url", "icon_emoji"):
            if k in body and not isinstance(body[k], str):
                problems.append(f"{k} must be a string")
        _attachments(body, problems, "fallback")
        if problems:
            raise Invalid(problems, 400, json.dumps({
                "id": "web.incoming_webhook.parse.app_error", "message": "; ".join(problems),
                "status_code": 400}).encode())
        self.messages.append(body)
        return 200, b"ok", "text/plain", {}


class FakeRocketChat(_ChatHook):
    """A Rocket.Chat incoming webhook (`/hooks/<id>/<token>`, docs.rocket.chat "Integrations"):
    `POST` JSON with `text` and/or `attachments`; optional `alias`, `avatar`, `emoji`, `channel`
    (`#name` or `@user`). Answers 200 `{"success": true}`, 400 `{"success": false, "error": ...}`."""

    name = "rocketchat"
    KEYS = {"text", "alias", "avatar", "emoji", "channel", "roomId", "attachments"}

    def __init__(self, hook_path: str = "/hooks/6571a0b1/rocketTOKENsecret", port: int = 0):
        super().__init__(hook_path, port)

    def handle(self, rec):
        body = self.body(rec)
        problems: list[str] = [f"unknown field {k!r}" for k in body if k not in self.KEYS]
        if not body.get("text") and not body.get("attachments"):
            problems.append("neither text nor attachments")
        for k in ("text", "alias", "avatar", "emoji"):
            if k in body and not isinstance(body[k], str):
                problems.append(f"{k} must be a string")
        ch = body.get("channel")
        if ch is not None and not (isinstance(ch, str) and ch[:1] in ("#", "@")):
            problems.append(f"channel must start with # or @, got {ch!r}")
        _attachments(body, problems, "title")
        if problems:
            raise Invalid(problems, 400, json.dumps({"success": False, "error": "; ".join(problems)}).encode())
        self.messages.append(body)
        return 200, json.dumps({"success": True}).encode(), "application/json", {}


class FakeDiscord(_ChatHook):
    """A Discord webhook (`POST /api/webhooks/<id>/<token>`, discord.com/developers "Execute
    Webhook"): `content` at most 2000 characters and/or `embeds` (at most 10; title 256,
    description 4096, at most 25 fields of name 256 / value 1024, colour an integer, timestamp
    ISO 8601, 6000 characters in all), optional `username` (1-80), `avatar_url`,
    `allowed_mentions`. Answers 204; 400 with Discord's error JSON; a forced 429 is answered
    with `retry_after` in the body too."""

    name = "discord"
    KEYS = {"content", "username", "avatar_url", "tts", "embeds", "allowed_mentions", "flags", "thread_name"}
    EMBED_KEYS = {"title", "type", "description", "url", "timestamp", "color", "footer", "image", "thumbnail",
                  "author", "fields"}

    def __init__(self, hook_path: str = "/api/webhooks/1234567890/discordTOKENsecret", port: int = 0):
        super().__init__(hook_path, port)

    def handle(self, rec):
        body = self.body(rec)
        problems: list[str] = [f"unknown field {k!r}" for k in body if k not in self.KEYS]
        content, embeds = body.get("content"), body.get("embeds")
        if content is not None and (not isinstance(content, str) or len(content) > 2000):
            problems.append("content must be a string of at most 2000 characters")
        if not content and not embeds:
            problems.append("Cannot send an empty message")
        u = body.get("username")
        if u is not None and not (isinstance(u, str) and 1 <= len(u) <= 80):
            problems.append("username must be 1-80 characters")
        am = body.get("allowed_mentions")
        if am is not None and (not isinstance(am, dict) or not set(am.get("parse", [])) <= {"roles", "users", "everyone"}):
            problems.append(f"allowed_mentions.parse holds roles, users or everyone, got {am!r}")
        total = 0
        if embeds is not None:
            if not isinstance(embeds, list) or len(embeds) > 10:
                problems.append("embeds must be a list of at most 10")
                embeds = []
            for i, e in enumerate(embeds):
                w = f"embeds[{i}]"
                if not isinstance(e, dict):
                    problems.append(f"{w} must be an object")
                    continue
                problems += [f"{w}: unknown field {k!r}" for k in e if k not in self.EMBED_KEYS]
                for k, n in (("title", 256), ("description", 4096)):
                    if k in e:
                        if not isinstance(e[k], str) or len(e[k]) > n:
                            problems.append(f"{w}.{k} must be a string of at most {n} characters")
                        else:
                            total += len(e[k])
                c = e.get("color")
                if c is not None and (not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 0xFFFFFF):
                    problems.append(f"{w}.color must be an integer 0..0xFFFFFF, got {c!r}")
                ts = e.get("timestamp")
                if ts is not None and not (isinstance(ts, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", ts)):
                    problems.append(f"{w}.timestamp must be ISO 8601, got {ts!r}")
                fields = e.get("fields", [])
                if not isinstance(fields, list) or len(fields) > 25:
                    problems.append(f"{w}.fields must be a list of at most 25")
                    fields = []
                for j, f in enumerate(fields):
                    ok = isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("value"), str) \
                        and 0 < len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 \
                        and isinstance(f.get("inline", False), bool) and not set(f) - {"name", "value", "inline"}
                    if not ok:
                        problems.append(f"{w}.fields[{j}] must be {{name (1-256), value (1-1024), inline}}, got {f!r}")
                    else:
                        total += len(f["name"]) + len(f["value"])
        if total > 6000:
            problems.append(f"embeds hold {total} characters, more than 6000")
        if problems:
            raise Invalid(problems, 400, json.dumps({"message": "Invalid Form Body", "code": 50035,
                                                     "errors": problems}).encode())
        self.messages.append(body)
        return 204, b"", "text/plain", {}


if __name__ == "__main__":  # pragma: no cover
    import argparse

    kinds = {"webhook": FakeWebhook, "pagerduty": FakePagerDuty, "slack": FakeSlack, "grafana": FakeGrafana,
             "mattermost": FakeMattermost, "rocketchat": FakeRocketChat, "discord": FakeDiscord}
    ap = argparse.ArgumentParser(description="Run a strict fake sink until interrupted.")
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
