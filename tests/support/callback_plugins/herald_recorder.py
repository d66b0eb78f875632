# Test-only Ansible callback: an independent record of which callbacks Ansible
# called, one ansible-runner event name per line, to compare with what the
# Herald callback shipped and the sink received.
from __future__ import annotations

import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: herald_recorder
    type: notification
    short_description: records callback names for Herald's tests
    description: Appends the ansible-runner event name of each callback Ansible calls to HERALD_RECORD_FILE.
"""

_NAMES = {
    "v2_playbook_on_start": "playbook_on_start",
    "v2_playbook_on_play_start": "playbook_on_play_start",
    "v2_playbook_on_task_start": "playbook_on_task_start",
    # named as ansible-runner (and Herald's callback) name them
    "v2_playbook_on_handler_task_start": "playbook_on_task_start",
    "v2_playbook_on_cleanup_task_start": "playbook_on_task_start",
    "v2_playbook_on_no_hosts_matched": "playbook_on_no_hosts_matched",
    "v2_playbook_on_no_hosts_remaining": "playbook_on_no_hosts_remaining",
    "v2_playbook_on_include": "playbook_on_include",
    "v2_playbook_on_notify": "playbook_on_notify",
    "v2_playbook_on_vars_prompt": "playbook_on_vars_prompt",
    "v2_playbook_on_import_for_host": "playbook_on_import_for_host",
    "v2_playbook_on_not_import_for_host": "playbook_on_not_import_for_host",
    "v2_playbook_on_stats": "playbook_on_stats",
    "v2_runner_on_start": "runner_on_start",
    "v2_runner_on_ok": "runner_on_ok",
    "v2_runner_on_failed": "runner_on_failed",
    "v2_runner_on_skipped": "runner_on_skipped",
    "v2_runner_on_unreachable": "runner_on_unreachable",
    "v2_runner_on_no_hosts": "runner_on_no_hosts",
    "v2_runner_on_async_poll": "runner_on_async_poll",
    "v2_runner_on_async_ok": "runner_on_async_ok",
    "v2_runner_on_async_failed": "runner_on_async_failed",
    "v2_runner_item_on_ok": "runner_item_on_ok",
    "v2_runner_item_on_failed": "runner_item_on_failed",
    "v2_runner_item_on_skipped": "runner_item_on_skipped",
    "v2_runner_retry": "runner_retry",
    "v2_on_file_diff": "runner_on_file_diff",
}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "herald_recorder"
    CALLBACK_NEEDS_ENABLED = True

    def __getattribute__(self, name):
        kind = _NAMES.get(name)
        if kind is None:
            return super().__getattribute__(name)

        def record(*args, **kwargs):
            path = os.environ.get("HERALD_RECORD_FILE")
            if path:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(kind + "\n")

        return record
