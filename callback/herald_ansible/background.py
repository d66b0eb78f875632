# -*- coding: utf-8 -*-
"""The callback's shipper thread: runs a shipper.Shipper for one run in the background.

Standard library only, no Ansible import; in the collection herald.events this module is
``plugins/plugin_utils/background.py``.
"""

from __future__ import annotations

import random
import threading
import time

from .shipper import Result, Shipper

__all__ = ["BackgroundShipper"]


class BackgroundShipper(threading.Thread):
    """Daemon thread around a Shipper for one run: wakes every `batch_max_age` seconds (or
    earlier when a batch is full), backs off exponentially on errors, and answers `flush`."""

    def __init__(self, shipper: Shipper, batch_max_age: float = 1.0):
        super().__init__(name="herald-shipper", daemon=True)
        self.shipper = shipper
        self.batch_max_age = max(0.01, float(batch_max_age))
        self.wake = threading.Event()
        self.cond = threading.Condition()
        self.stopping = False
        self.flushing = False
        self.flush_deadline = None
        self.passes = 0
        self.idle = False
        self.backoff = 0.0
        self.last_result = None

    def run(self):
        sh = self.shipper
        while True:
            try:
                sh.enforce_cap()
            except Exception as e:  # noqa: BLE001
                sh.warn_once("cap", "herald: spool cap check failed: %s" % e)
            try:
                res = sh.ship_all(deadline=self.flush_deadline)
            except Exception as e:  # noqa: BLE001 - the thread must survive anything
                res = Result()
                res.error = "internal error: %r" % (e,)
                res.remaining = 1
                sh.last_error = res.error
            self.last_result = res
            with self.cond:
                self.passes += 1
                self.idle = res.remaining == 0
                self.cond.notify_all()
            if self.stopping:
                return
            if res.remaining == 0 or res.fatal or res.remaining < 0:
                self.backoff = 0.0
                delay = self.batch_max_age
                if res.fatal or res.remaining < 0:
                    delay = 3600.0
            else:
                if self.flushing:
                    self.backoff = min(max(self.backoff * 2, 0.05), 0.5)
                else:
                    self.backoff = min(max(self.backoff * 2, 0.5), 30.0)
                delay = self.backoff * (0.75 + random.random() / 2)
                if res.retry_after is not None:
                    delay = min(max(delay, res.retry_after), 30.0)
                if self.flushing and self.flush_deadline is not None:
                    delay = min(delay, max(0.0, self.flush_deadline - time.monotonic()))
            self.wake.wait(delay)
            self.wake.clear()

    def flush(self, timeout: float) -> bool:
        """Ask for everything to be shipped now; wait at most `timeout` seconds.
        True when the current run's spool is fully acknowledged."""
        sh = self.shipper
        deadline = time.monotonic() + max(0.0, timeout)
        self.flush_deadline = deadline
        self.flushing = True
        self.backoff = 0.0
        if not self.is_alive():
            return sh.own_pending() == 0
        with self.cond:
            start_pass = self.passes
            self.wake.set()
            while True:
                # a pass that started after the flush request and left nothing behind
                if self.passes > start_pass and self.idle and sh.own_pending() == 0:
                    return True
                if sh.auth_failed or not sh.endpoint:
                    return sh.own_pending() == 0
                left = deadline - time.monotonic()
                if left <= 0:
                    return sh.own_pending() == 0
                self.cond.wait(min(left, 0.5))

    def stop(self):
        self.stopping = True
        self.wake.set()
