"""When each step of a call's set-up happened, for the call record and the log: where
set-up time goes is the first question when callers hear a late start."""

from __future__ import annotations

import time


class SetupTimeline:
    """Milestones in monotonic ns, reported in ms since the supervisor admitted the call
    (or since the worker started, when the admission time is unknown). Side threads of
    set-up add milestones too; a dict item assignment is atomic under the GIL."""

    def __init__(self, admitted_ns: int, forked_ns: int = 0) -> None:
        self.admitted_ns = admitted_ns
        # The first milestone, when the worker's process began (call_worker/process.py).
        self.marks: dict[str, int] = {"forked": forked_ns} if forked_ns else {}
        self.bridge_retries = 0  # addChannel answered 422 (externalMedia not in Stasis yet)

    def mark(self, name: str) -> int:
        self.marks[name] = now = time.monotonic_ns()
        return now

    def as_ms(self) -> dict[str, float]:
        marks = dict(self.marks)  # a copy: another thread may add one meanwhile
        origin = self.admitted_ns or marks.get("worker_started", 0)
        return {name: round((at - origin) / 1e6, 1) for name, at in marks.items()}
