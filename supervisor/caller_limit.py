"""MAX_CALLS_PER_CALLER_PER_HOUR: one number calling again and again, within capacity, can
still run up the cost. Past the limit its calls are turned away busy.

Pure and small: the admissions of the last hour per caller, as monotonic times, pruned on
the supervisor's tick. Only calls that were taken count (a redialler's refused attempts do
not keep it locked out longer). The key is the keyed hash when callers are masked
(RECORDS_MASK_CALLERS: the full number is never kept), else the number. A caller with no
number (withheld, anonymous) is never limited: pooling them would turn away every withheld
caller for the calls of one.
"""

from __future__ import annotations

from collections import deque

WINDOW = 3600.0
PRUNE_EVERY = 60.0  # the tick calls prune each second; a walk over an hour's callers needs far less
WITHHELD = {"", "anonymous", "unknown", "restricted", "private"}


class CallerLimit:
    def __init__(self, limit: int, window: float = WINDOW) -> None:
        self.limit = limit  # 0: off
        self.window = window
        self.calls: dict[str, deque[float]] = {}
        self.refused = 0  # callers turned away for it, since the start
        self.next_prune = 0.0

    @staticmethod
    def key(number: str, number_hash: str) -> str:
        if number.strip().lower() in WITHHELD:
            return ""
        return number_hash or number

    def over(self, key: str, now: float) -> bool:
        """True when `key` has made `limit` calls within the window (counts it as refused)."""
        if not self.limit or not key:
            return False
        times = self.calls.get(key)
        while times and now - times[0] > self.window:
            times.popleft()
        if times and len(times) >= self.limit:
            self.refused += 1
            return True
        return False

    def taken(self, key: str, now: float) -> None:
        if self.limit and key:
            self.calls.setdefault(key, deque()).append(now)

    def prune(self, now: float) -> None:
        """Forget callers with no call in the window: memory stays bounded by the hour's
        callers. At most once a minute: at 50 calls a second an hour is 180,000 callers, too
        many to walk on every tick of the supervisor's loop."""
        if now < self.next_prune:
            return
        self.next_prune = now + PRUNE_EVERY
        for key in [k for k, times in self.calls.items() if not times or now - times[-1] > self.window]:
            del self.calls[key]
