# The naive event forwarder of Ansible tutorials and community callbacks, for
# comparison only (bench/README.md): one synchronous HTTP POST per event,
# made in the hook, so every event waits for the endpoint. Errors are swallowed
# (as most such callbacks do) so a failing endpoint does not fail the run.
from __future__ import annotations

DOCUMENTATION = """
    name: naive_http
    type: notification
    short_description: POST every event synchronously (benchmark baseline)
    description: One urllib POST of a JSON document per callback event.
    options:
      url:
        description: endpoint
        env:
          - name: NAIVE_HTTP_URL
        default: http://127.0.0.1:8080/events
"""

import datetime
import json
import urllib.request

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "naive_http"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.url = None

    def set_options(self, *args, **kwargs):
        super().set_options(*args, **kwargs)
        self.url = self.get_option("url")

    def _post(self, event, **data):
        doc = {"event": event, "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        doc.update(data)
        req = urllib.request.Request(self.url, data=json.dumps(doc, default=str).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except Exception:
            pass

    def _result(self, event, result, **extra):
        self._post(event, host=result._host.get_name(), task=result._task.get_name(),
                   res=result._result, **extra)

    def v2_playbook_on_start(self, playbook):
        self._post("playbook_on_start", playbook=playbook._file_name)

    def v2_playbook_on_play_start(self, play):
        self._post("playbook_on_play_start", play=play.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._post("playbook_on_task_start", task=task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._post("playbook_on_handler_task_start", task=task.get_name())

    def v2_runner_on_start(self, host, task):
        self._post("runner_on_start", host=host.get_name(), task=task.get_name())

    def v2_runner_on_ok(self, result):
        self._result("runner_on_ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("runner_on_failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result("runner_on_skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("runner_on_unreachable", result)

    def v2_runner_item_on_ok(self, result):
        self._result("runner_item_on_ok", result)

    def v2_runner_item_on_failed(self, result):
        self._result("runner_item_on_failed", result)

    def v2_runner_item_on_skipped(self, result):
        self._result("runner_item_on_skipped", result)

    def v2_playbook_on_notify(self, handler, host):
        self._post("playbook_on_notify", handler=handler.get_name(), host=host.get_name())

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._post("playbook_on_stats", stats={h: stats.summarize(h) for h in hosts},
                   custom_stats=stats.custom)
