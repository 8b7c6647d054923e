"""Turning callers away: the desk that starts the helpers for the queue of
supervisor/turn_aways.py and counts each caller once.

A caller goes to its fallback (a DialplanTarget) when there is one, else hears the busy
prompt and is hung up, or, past the prompt helpers, is hung up with the busy cause. All of
it is helpers' work (supervisor/turn_away.py); nothing here waits. A helper that cannot
start leaves its callers queued for the next tick (`pump`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from callbridge.config import Settings
from supervisor.calls import CallCounts
from supervisor.recent import RecentIds
from supervisor.turn_away import refuse, turn_away
from supervisor.turn_aways import TurnAways, Waiting

log = logging.getLogger(__name__)


class TurnAwayDesk:
    def __init__(
        self, settings: Settings, start_helper: Callable, recent: RecentIds, counts: CallCounts
    ) -> None:
        """`start_helper(kind, work, on_done, key=...)`: the supervisor's (it closes what is the
        supervisor's in the child); `recent`: marks each caller as this run's, for reconciliation."""
        self.settings = settings
        self.start_helper = start_helper
        self.recent = recent
        self.counts = counts
        self.queue = TurnAways()

    def turn_away(self, channel_id: str, why: str, fallback=None, busy: bool = True) -> None:
        """`busy`: for want of capacity (counted, and alerted on, as turned away busy); else
        routing (no agent for the number or the hour, a budget spent), counted apart."""
        if not self.queue.add(Waiting(channel_id, why, fallback)):
            return
        if busy:
            self.counts.busy += 1
        else:
            self.counts.routed_away += 1
        if fallback is not None:
            self.counts.to_fallback += 1
        how = f"to the fallback {fallback}" if fallback is not None else "busy prompt, then hang-up"
        log.warning("turning a call away (%s): %s", why, how, extra={"call_id": channel_id})
        self.recent.mark(channel_id, time.monotonic())
        self.pump()

    def refuse(self, channel_id: str, why: str) -> None:
        """Hung up busy at once, no prompt and no fallback (an id the prompt's playback id
        could not carry); counted as routed away."""
        self.queue.add_refusal(channel_id, why)
        self.counts.routed_away += 1
        self.pump()

    def pump(self) -> None:
        """Start what the free helper slots allow: prompts first, then one batch for the rest.
        A helper that cannot start leaves its callers queued for the next tick."""
        queue = self.queue
        while (waiting := queue.next_prompt()) is not None:
            helper = self.start_helper(
                "busy",
                lambda w=waiting: turn_away(self.settings, w.channel_id, w.why, w.fallback),
                lambda result, ok, w=waiting: self._prompted(w.channel_id),
                key=waiting.channel_id,
            )
            if helper is None:
                queue.unstarted(waiting, prompting=True)
                return
        batch = queue.next_batch()
        if not batch:
            return
        helper = self.start_helper(
            "refuse",
            lambda: refuse(self.settings, batch),
            lambda result, ok: self._refused(batch, result if ok else None),
        )
        if helper is None:
            for waiting in reversed(batch):
                queue.unstarted(waiting, prompting=False)

    def _prompted(self, channel_id: str) -> None:
        self.queue.prompt_done(channel_id)
        self.recent.mark(channel_id, time.monotonic())
        self.pump()

    def _refused(self, batch: list, result: dict | None) -> None:
        """A helper that died did nothing we can count on: its whole batch goes again (a
        caller it did hang up is simply not found the second time)."""
        done = set(result.get("done", [])) if isinstance(result, dict) else set()
        now = time.monotonic()
        for waiting in batch:
            self.recent.mark(waiting.channel_id, now)
        left = self.queue.batch_done([w for w in batch if w.channel_id not in done])
        for waiting in left:  # the next reconciliation finds them if they are still there
            log.error(
                "could not turn a caller away after %d tries; leaving it to reconciliation",
                waiting.tries,
                extra={"call_id": waiting.channel_id},
            )
        self.pump()
