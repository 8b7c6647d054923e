"""How long each pass of the supervisor's loop is busy: the figure that says it stalls.

Admissions, reaps, the control socket and the systemd watchdog all wait behind a busy pass
of the loop (supervisor/service.py::Supervisor.run), so nothing in it may block; this is
how an operator, and the benchmarks, see whether something does. A pass is busy from
`select()` returning to the next `select()`. Each pass goes into a histogram (the metrics),
the longest of the last one to two minutes into `status`, and a pass over `SLOW_PASS`
logs one warning naming the step that took most of it: at most one line per `LOG_EVERY`
seconds, with the count since the last line (a saturated machine must not flood the log),
except that a pass at least twice as long as the last one logged is told at once (a stall
much worse than the last one told does not wait a minute to be named).

Steps are the supervisor's guarded steps (`Supervisor._guarded`, named by their qualified
name, e.g. `Keeper.tick`). Each is credited with its own time, its inner steps'
excluded, and added up by name over the pass, so a tick made slow by a hundred calls'
health samples names `Supervisor._watch_call`, not `Supervisor._tick`.

Pure bookkeeping on the loop: two clock reads per step and a few dict updates per pass.
"""

from __future__ import annotations

import logging
import time

from supervisor.totals import Histogram

log = logging.getLogger(__name__)

PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)  # seconds
SLOW_PASS = 0.1  # seconds: one admission waits this long behind the pass
WINDOW = 60.0  # seconds: the longest pass is kept for one to two of these
LOG_EVERY = 60.0  # seconds between two slow-pass warnings


class LoopWatch:
    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.passes = Histogram(PASS_BUCKETS)
        self.slow_passes = 0
        self._began: float | None = None
        self._steps: dict[str, float] = {}  # this pass: step name -> its own seconds
        self._open: list[list] = []  # steps running now, outermost first
        self._window_start = clock()
        self._max_now = self._max_before = 0.0  # this window's longest pass, and the last one's
        self._logged_at = float("-inf")
        self._logged_busy = 0.0  # the last logged pass's length
        self._unlogged = 0  # slow passes since the last warning

    def begin_pass(self) -> None:
        self._began = self.clock()
        self._steps.clear()

    def begin_step(self, name: str) -> None:
        self._open.append([name, self.clock(), 0.0])  # name, start, its inner steps' time

    def end_step(self) -> None:
        """Credit the step with its own time: its length less its inner steps', which are
        credited to themselves (a tick made slow by a hundred health samples names the
        samples; a reap whose own work is slow names the reap, not the step it ran last)."""
        name, start, inner = self._open.pop()
        elapsed = self.clock() - start
        self._steps[name] = self._steps.get(name, 0.0) + elapsed - inner
        if self._open:
            self._open[-1][2] += elapsed

    def end_pass(self) -> None:
        if self._began is None:
            return
        now = self.clock()
        busy, self._began = now - self._began, None
        self.passes.observe(busy)
        if now - self._window_start >= WINDOW:
            # Two windows or more since the last roll (a stopped process): both are stale.
            stale = now - self._window_start >= 2 * WINDOW
            self._max_before, self._max_now = (0.0 if stale else self._max_now), 0.0
            self._window_start = now
        self._max_now = max(self._max_now, busy)
        if busy <= SLOW_PASS:
            return
        self.slow_passes += 1
        self._unlogged += 1
        if now - self._logged_at < LOG_EVERY and busy < 2 * self._logged_busy:
            return  # counted; a pass twice as long as the last one logged is told at once
        step, seconds = max(self._steps.items(), key=lambda item: item[1], default=("?", 0.0))
        log.warning(
            "supervisor: a pass of its loop took %.0f ms (mostly %s, %.0f ms; %d slow passes since "
            "the last such line). Admissions and status wait behind it: is the machine short of CPU?",
            busy * 1000,
            step,
            seconds * 1000,
            self._unlogged,
        )
        self._logged_at, self._logged_busy, self._unlogged = now, busy, 0

    def busy_max_ms(self) -> float:
        """The longest pass of the last one to two minutes."""
        return round(max(self._max_now, self._max_before) * 1000, 1)
