"""Removing a call's objects from Asterisk: written once, used by the worker after its call,
by the supervisor's teardown helper process after a crash, and by reconciliation for what a
dead run left.

Every object is deleted by its derived id (callbridge/ids.py), so a DELETE that finds
nothing (404) is success and running the same teardown twice is harmless. Each object is
tried even when another failed, and failed ones are tried again until the deadline: a slow
Asterisk makes teardown slow, never incomplete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from callbridge.ari_rest import AriError, AriRest
from callbridge.ids import InstanceIds

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_CAP = 0.5, 5.0
MIN_REQUEST = 0.2  # seconds: a request given less than this is not worth starting


@dataclass(frozen=True)
class Target:
    kind: str  # "bridge" or "channel"
    object_id: str

    def remove(self, ari: AriRest) -> None:
        if self.kind == "bridge":
            ari.delete_bridge(self.object_id)
        else:
            ari.hangup(self.object_id)


def call_targets(ids: InstanceIds, call_id: str, hang_up_caller: bool) -> list[Target]:
    """What one call leaves in Asterisk, in the order it is taken down: the bridge first
    (so the caller is not left hearing the media channel go), then our media channel, then
    the caller when the call must not outlive us."""
    targets = [Target("bridge", ids.bridge(call_id)), Target("channel", ids.external_channel(call_id))]
    if hang_up_caller:
        targets.append(Target("channel", call_id))
    return targets


def remove_all(ari: AriRest, targets: list[Target], deadline: float, call_id: str = "") -> list[Target]:
    """Remove every target, retrying failed ones with growing pauses until `deadline`
    (time.monotonic()). No request outlives the deadline: each waits at most what is left
    of it. Returns what is still there (logged); [] means done."""
    left = list(targets)
    delay = RETRY_FIRST
    attempt = 0
    extra = {"call_id": call_id} if call_id else {}
    request_timeout = ari.timeout
    while left:
        attempt += 1
        failed = []
        for target in left:
            remaining = deadline - time.monotonic()
            if remaining <= MIN_REQUEST:
                failed.append(target)
                continue
            ari.timeout = min(request_timeout, remaining)
            try:
                target.remove(ari)
            except AriError as exc:
                failed.append(target)
                if attempt == 1:
                    log.warning("teardown: %s; will retry", exc, extra=extra)
        left = failed
        if not left or time.monotonic() + delay >= deadline:
            break
        time.sleep(delay)
        delay = min(RETRY_CAP, delay * 2)
    ari.timeout = request_timeout
    if left:
        log.error(
            "teardown gave up after %d attempts; still in Asterisk: %s",
            attempt,
            ", ".join(t.object_id for t in left),
            extra=extra,
        )
    elif attempt > 1:
        log.info("teardown done on attempt %d", attempt, extra=extra)
    return left
