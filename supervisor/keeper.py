"""Keeping one long-lived helper running: start it on the tick, start it again with growing
delays when it exits; a helper that ran long enough to be healthy starts the delays over.
The one owner of each long-lived helper's life: the records drainer (records/drainer.py),
the web helper (web/helper.py: /metrics and the dashboard) and the webhook sender
(webhooks/sender.py).

`tick` runs on the supervisor's loop and only forks (through the supervisor's `_helper`,
which closes what is the supervisor's in the child).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RESTART_DELAYS = (1.0, 5.0, 30.0)
HEALTHY_AFTER = 60.0  # a helper that ran this long had no start-up problem: delays start over


class Keeper:
    def __init__(
        self, kind: str, work: Callable[[], Callable[[], object]], wanted: Callable[[], bool] = lambda: True
    ) -> None:
        """`work()` builds the helper's function (called in the supervisor, at each start);
        `wanted()` says whether it should run at all now (the webhook sender: receivers)."""
        self.kind = kind
        self.work = work
        self.wanted = wanted
        self.helper = None
        self.started_at = 0.0
        self.next_start = 0.0
        self.failures = 0
        self.starts = 0

    def tick(self, now: float, start_helper) -> None:
        if self.helper is not None or now < self.next_start or not self.wanted():
            return
        self.helper = start_helper(self.kind, self.work(), self._exited)
        if self.helper is None:  # could not fork: try again later
            self.next_start = now + RESTART_DELAYS[-1]
            return
        self.started_at = now
        self.starts += 1

    def _exited(self, _result, _ok: bool) -> None:
        self.helper = None
        now = time.monotonic()
        if now - self.started_at >= HEALTHY_AFTER:
            self.failures = 0
        delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]
        self.failures += 1
        self.next_start = now + delay
        log.warning("the %s helper exited; starting it again in %.0f s", self.kind, delay)
