"""Call ids this run admitted or turned away lately, and when they were last ours.

A listing of Asterisk (supervisor/reconcile.py) is a snapshot taken while calls go on: a
call that ended while it was taken must not have its caller read as a missed StasisStart.
So each id is kept for KEEP seconds after it was last ours, long enough for any listing
running then (RECONCILE_LIMIT) plus the margin the listing is read with.

Kept in the order of last use (a mark moves the id to the end), so that forgetting walks
from the oldest and stops at the first young one: the tick does not scan every id. It used
to keep ten minutes of ids (about 6,000 at 10 calls a second), far more than a listing
needs (measured: the supervisor's largest per-call structure).
"""

from __future__ import annotations

KEEP = 130.0  # 2 x (RECONCILE_LIMIT 60 s + the listing's margin 5 s)


class RecentIds:
    def __init__(self, keep: float = KEEP) -> None:
        self.keep = keep
        self._when: dict[str, float] = {}

    def mark(self, call_id: str, now: float) -> None:
        self._when.pop(call_id, None)
        self._when[call_id] = now

    def since(self, start: float) -> set[str]:
        return {call_id for call_id, when in self._when.items() if when >= start}

    def forget_old(self, now: float) -> None:
        while self._when:
            oldest = next(iter(self._when))
            if now - self._when[oldest] <= self.keep:
                return
            del self._when[oldest]

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._when
