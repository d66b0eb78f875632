"""{{name}}: a Herald sink plugin. It posts a line to `url` for each host whose task failed or
was unreachable. Edit `handle` (and the config keys) to make it yours; plugins/sdk-python in
Herald documents the SDK."""
from __future__ import annotations

from herald_sdk import Plugin, config, host_failure, http, ok, playbook_name, result_message


def message(e) -> str | None:
    """The line posted for a failed host's result, None for every other event."""
    what = host_failure(e)
    if what is None:
        return None
    task = e.task.name if e.task else "?"
    return (f"{playbook_name(e.run.playbook)}: task '{task}' {what} on {e.host or '?'}: "
            f"{result_message(e.res, 500) or ''}")


class Sink(Plugin):
    def __init__(self, cfg: dict):
        config.reject_unknown(cfg, {"url", "timeout_ms"})
        # Refuses, at `herald check`, a URL the instance's allow_http would refuse.
        self.url = config.granted_url(cfg, "url")
        self.timeout_ms = config.timeout_ms(cfg)

    def handle(self, event, attempt):
        text = message(event)
        if text is None:
            return ok()
        req = http.post(self.url).header("idempotency-key", event.id).json({"text": text})
        req.timeout_ms = self.timeout_ms
        outcome, _response = req.deliver()
        return outcome
