"""The chat sink's logic: importable natively, so its tests run under pytest with the SDK's
FakeHost; `app.py` only exports it.

One message per failed or unreachable host as it happens, and one summary per run when its
stats event arrives (failed runs always, successful ones with `notify_on_success`), to an
incoming webhook of Mattermost, Rocket.Chat or Discord (`flavor`), in that service's format.
The message text is the instance's `failure_text` / `summary_text` template when the user
configured one (herald.toml `[plugins.<name>.templates]`, rendered by the host), exactly as
rendered; else the text built here.
"""
from __future__ import annotations

import json

from herald_sdk import (Plugin, config, failure_reason, host_failure, http, log, metrics, ok, permanent,
                        playbook_name, result_message, summary, templates, truncate)
from herald_sdk.time import rfc3339_ms

FLAVORS = ("mattermost", "rocketchat", "discord")
KEYS = {"webhook_url", "flavor", "username", "icon_url", "channel", "mention", "notify_on_success",
        "failures", "run_url", "timeout_ms"}
#: Colours of the summary: failed, successful.
RED, GREEN = "#d62728", "#2ca02c"
#: The services' limits: Discord content 2000, embed description 4096, field value 1024, 25
#: fields; Mattermost posts 16383; Rocket.Chat messages 5000 by default.
TEXT_MAX = {"mattermost": 16000, "rocketchat": 5000, "discord": 2000}
FAILURES_LISTED = 10


def _duration(ms: int | None) -> str:
    if ms is None:
        return "?"
    s = ms // 1000
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Chat(Plugin):
    def __init__(self, cfg: dict):
        config.reject_unknown(cfg, KEYS)
        self.flavor = config.string(cfg, "flavor", "mattermost")
        if self.flavor not in FLAVORS:
            raise config.error("flavor", f"must be one of {', '.join(FLAVORS)}, not {self.flavor!r}")
        self.url = config.granted_url(cfg, "webhook_url")
        self.username = config.string(cfg, "username")
        self.icon_url = config.string(cfg, "icon_url")
        self.channel = config.string(cfg, "channel")
        if self.channel is not None and self.flavor == "discord":
            raise config.error("channel", "Discord webhooks post to their own channel; remove the key")
        if self.username is not None and self.flavor == "discord" and not 1 <= len(self.username) <= 80:
            raise config.error("username", "must be 1 to 80 characters for Discord")
        self.mention = config.string(cfg, "mention", "")
        self.notify_on_success = config.boolean(cfg, "notify_on_success", False)
        self.failures = config.boolean(cfg, "failures", True)
        self.run_url = config.string(cfg, "run_url")
        self.timeout_ms = config.timeout_ms(cfg)
        self.tracker = summary.RunTracker("chat:")

    # -- events ------------------------------------------------------------------------------

    def handle(self, event, attempt):
        state, run, fresh = self.tracker.observe_fresh(event)
        what = host_failure(event)
        if what is not None and self.failures:
            return self._send("failure", self.failure_message(event, what), event.id)
        if state == summary.FINISHED:
            if run.status() == "successful" and not self.notify_on_success:
                return self.tracker.finish(run.run_id, ok())
            outcome = self._send("summary", self.summary_message(run, event), event.id)
            return self.tracker.finish(run.run_id, outcome)
        return ok()

    def failure_message(self, e, what: str) -> dict:
        def built() -> str:
            task = e.task.name if e.task else "?"
            text = f"❌ {playbook_name(e.run.playbook)}: task '{task}' {what} on {e.host or '?'}"
            msg = result_message(e.res, 500)
            return self._with_mention(text + (f": {msg}" if msg else ""))
        return self._body(templates.text(e, "failure_text", built), None)

    def summary_message(self, run: summary.RunSummary, end=None) -> dict:
        """`end`: the stats event, which the `summary_text` template renders against."""
        status = run.status()
        # The PLAY RECAP's totals (ok counts changed tasks too, as ansible-playbook prints it);
        # the results seen when the stats carry no hosts.
        if run.hosts:
            r = {k: sum(h[k2] for h in run.hosts) for k, k2 in (("ok", "ok"), ("changed", "changed"),
                 ("failed", "failures"), ("unreachable", "unreachable"), ("skipped", "skipped"))}
        else:
            r = run.results
        hosts = len(run.hosts) or len({f.host for f in run.failures})
        head = f"{playbook_name(run.playbook)} {status} in {_duration(run.duration_ms())}"
        text = (f"{'🔴' if status == 'failed' else '🟢'} {head}: {hosts} host(s), ok={r['ok']} "
                f"changed={r['changed']} failed={r['failed']} unreachable={r['unreachable']} "
                f"skipped={r['skipped']}")
        failed = run.failed_hosts()
        if failed:
            text += "; failed hosts: " + ", ".join(failed)
        lines = [f"`{f.host}` {'unreachable at' if f.unreachable else 'failed'} **{f.task}**"
                 + (f": {truncate(f.message, 200)}" if f.message else "")
                 for f in run.failures[:FAILURES_LISTED]]
        more = len(run.failures) - FAILURES_LISTED + run.failures_dropped
        if more > 0:
            lines.append(f"... and {more} more")
        fields = [("Hosts", str(hosts)), ("Changed", str(r["changed"]))]
        if failed:
            fields.append(("Failed hosts", ", ".join(failed)))
        custom = run.run_custom_stats()
        if custom:
            fields.append(("Custom stats", ", ".join(f"{k}={json.dumps(v)}" for k, v in custom.items())))
        card = {"title": head, "text": "\n".join(lines), "color": RED if status == "failed" else GREEN,
                "fields": fields, "url": run.run_url(self.run_url) if self.run_url else None,
                "ended_ms": run.ended_ms}
        if status == "failed":
            text = self._with_mention(text)
        if end is not None:
            text = templates.text(end, "summary_text", lambda: text)
        return self._body(text, card)

    def _with_mention(self, text: str) -> str:
        return f"{self.mention} {text}" if self.mention else text

    # -- the services' formats ---------------------------------------------------------------

    def _body(self, text: str, card: dict | None) -> dict:
        text = truncate(text, TEXT_MAX[self.flavor])
        if self.flavor == "discord":
            return self._discord(text, card)
        body: dict = {"text": text}
        if self.channel:
            body["channel"] = self.channel
        if self.flavor == "mattermost":
            if self.username:
                body["username"] = self.username
            if self.icon_url:
                body["icon_url"] = self.icon_url
        else:  # Rocket.Chat names them alias and avatar
            if self.username:
                body["alias"] = self.username
            if self.icon_url:
                body["avatar"] = self.icon_url
        if card:
            att = {"fallback" if self.flavor == "mattermost" else "title": card["title"], "color": card["color"],
                   "text": card["text"],
                   "fields": [{"short": len(v) < 40, "title": k, "value": v} for k, v in card["fields"]]}
            if self.flavor == "mattermost":
                att["title"] = card["title"]
            if card["url"]:
                att["title_link"] = card["url"]
            body["attachments"] = [att]
        return body

    def _discord(self, text: str, card: dict | None) -> dict:
        body: dict = {"content": text}
        if self.username:
            body["username"] = self.username
        if self.icon_url:
            body["avatar_url"] = self.icon_url
        # Pings only what the config's mention asks for, never a name found in a task's output.
        parse = [p for p, token in (("everyone", "@everyone"), ("everyone", "@here")) if token in self.mention]
        body["allowed_mentions"] = {"parse": sorted(set(parse))}
        if card:
            embed = {"title": truncate(card["title"], 256), "color": int(card["color"][1:], 16),
                     "fields": [{"name": truncate(k, 256), "value": truncate(v, 1024), "inline": len(v) < 40}
                                for k, v in card["fields"][:25]]}
            if card["text"]:
                embed["description"] = truncate(card["text"], 4096)
            if card["url"]:
                embed["url"] = card["url"]
            if card["ended_ms"] is not None:
                embed["timestamp"] = rfc3339_ms(card["ended_ms"])
            body["embeds"] = [embed]
        return body

    # -- sending ------------------------------------------------------------------------------

    def _send(self, kind: str, body: dict, event_id: str):
        req = http.post(self.url).json(body)
        req.timeout_ms = self.timeout_ms
        outcome, resp = req.deliver()
        if (resp is not None and resp.is_success and self.flavor == "rocketchat"
                and resp.body[:1] == b"{" and _json_field(resp.body, "success") is False):
            outcome = permanent(f"Rocket.Chat refused the message: {_json_field(resp.body, 'error') or resp.text()[:200]}")
        reason = failure_reason(outcome)
        metrics.counter_add("chat_messages_total", "Chat messages sent, by kind and result.",
                            {"kind": kind, "result": "ok" if reason is None else "failed"}, 1)
        if reason is not None:
            log.warn(f"{kind} message for event {event_id} not delivered: {reason}")
        return outcome


def _json_field(body: bytes, key: str):
    try:
        v = json.loads(body)
    except ValueError:
        return None
    return v.get(key) if isinstance(v, dict) else None
