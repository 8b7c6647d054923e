"""psutil health checks of the workers, and watchdogs over their shared counters.

Sampled once a second from the supervisor's tick. A problem is acted on only after
`BAD_SAMPLES` consecutive bad samples (one slow second is not a failure):
- a worker thread whose heartbeat stopped (its loop is stuck): end the call; the
  supervisor kills the worker if it does not exit;
- CPU above 90 % or an uplink that stopped advancing: logged, shown in `status`.
The heartbeats and the uplink come from the call's shared memory, every second. What psutil
reads from /proc (CPU, RSS, fds, threads, state) is read at a worker's first tick and then
every `PROCESS_EVERY` seconds: at 100 calls those reads were a quarter of the supervisor's
busy time while a burst of calls waited for admission (py-spy, docs/performance.md, issue 27).
CPU is then the average over those seconds, and "high CPU" counts one sample per reading.
USS needs /proc/PID/smaps_rollup, which the kernel builds by walking the worker's page
tables: about 1.5 ms per worker here on a quiet machine, more under load, all of it on
the supervisor's loop. Reading it at each worker's first sample made the tick after a burst
of calls stall the loop for 50 reads (py-spy: a quarter of the supervisor's busy time at 50
arrivals per second, while admissions waited). So `plan_uss()` lets each tick read at most
`USS_PER_TICK` of them: the worker measured longest ago and new ones, each at most every
`USS_EVERY` seconds, and none before its first full sample (not while it sets up).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psutil

from shm_ring import CallState, Slot
from supervisor.calls import CallEntry, Phase

log = logging.getLogger(__name__)

BAD_SAMPLES = 3
PROCESS_EVERY = 5.0  # seconds between two psutil reads of one worker
HIGH_CPU = "high CPU"
USS_PER_TICK = 2
USS_EVERY = 10.0  # seconds
HEARTBEAT_LIMIT_NS = 2_000_000_000
CPU_LIMIT = 90.0
# The worker's one hot thread (call_worker/media.py) beats at every frame; its main thread
# sleeps until something can end the call, so it has no heartbeat to check.
_HEARTBEATS = {"media": Slot.HEARTBEAT_MEDIA}


@dataclass
class WorkerWatch:
    process: psutil.Process
    samples: int = 0
    streaks: dict[str, int] = field(default_factory=dict)
    last_uplink: int = -1
    reported: set[str] = field(default_factory=set)
    uss_mb: float | None = None  # not measured yet
    uss_at: float = float("-inf")  # monotonic time of the last USS read
    uss_turn: bool = False  # chosen by plan_uss() for this tick
    read_at: float = float("-inf")  # monotonic time of the last psutil read
    figures: dict = field(default_factory=dict)  # what that read found


class HealthMonitor:
    def __init__(self) -> None:
        self.watches: dict[int, WorkerWatch] = {}

    def forget(self, pid: int) -> None:
        self.watches.pop(pid, None)

    def plan_uss(self, entries: list[CallEntry], now: float) -> None:
        """Choose the workers whose USS this tick reads (see the module doc): the one read
        longest ago, and new ones; with no new one, the two read longest ago. A worker's
        first USS comes soon, and however many calls arrive, the others' is still refreshed."""
        for watch in self.watches.values():
            watch.uss_turn = False  # a turn a failed sample did not take ends with its tick
        due = []
        for entry in entries:
            watch = self.watches.get(entry.pid)
            if watch is not None and entry.phase is Phase.ACTIVE and now - watch.uss_at >= USS_EVERY:
                due.append(watch)
        due.sort(key=lambda watch: watch.uss_at)
        fresh = [watch for watch in due if watch.uss_mb is None]
        seen = [watch for watch in due if watch.uss_mb is not None]
        for watch in (seen[:1] + fresh + seen[1:])[:USS_PER_TICK]:
            watch.uss_turn = True
            watch.uss_at = now

    def sample(self, entry: CallEntry) -> str | None:
        """Refresh `entry.health`; return a problem that must end the call, if any."""
        watch = self.watches.get(entry.pid)
        if watch is None:
            try:
                watch = self.watches[entry.pid] = WorkerWatch(psutil.Process(entry.pid))
                watch.process.cpu_percent(None)  # the first call only starts the measurement
            except psutil.Error:
                return None
        watch.samples += 1
        now = time.monotonic()
        fresh = now - watch.read_at >= PROCESS_EVERY
        try:
            if fresh:
                with watch.process.oneshot():
                    watch.figures = {
                        "cpu_percent": round(watch.process.cpu_percent(None), 1),
                        "rss_mb": round(watch.process.memory_info().rss / 2**20, 1),
                        "fds": watch.process.num_fds(),
                        "threads": watch.process.num_threads(),
                        "process_state": watch.process.status(),
                    }
                watch.read_at = now
            if watch.uss_turn:
                watch.uss_turn = False
                watch.uss_mb = round(watch.process.memory_full_info().uss / 2**20, 1)
        except psutil.Error:
            return None  # exited between the reap and this sample
        problems = self._problems(entry, watch, watch.figures["cpu_percent"] if fresh else None)
        entry.health = {
            **watch.figures,
            "uss_mb": watch.uss_mb,
            "health": ", ".join(problems) if problems else "ok",
        }
        fatal = None
        for problem in problems:
            if problem == HIGH_CPU and not fresh:
                continue  # the same reading as at the last tick: not another sample
            streak = watch.streaks.get(problem, 0) + 1
            watch.streaks[problem] = streak
            if streak == BAD_SAMPLES and problem not in watch.reported:
                watch.reported.add(problem)
                log.warning(
                    "worker %d: %s for %d samples",
                    entry.pid,
                    problem,
                    streak,
                    extra={"call_id": entry.call_id},
                )
                if problem.startswith("stuck"):
                    fatal = problem
        for problem in list(watch.streaks):
            if problem not in problems:
                del watch.streaks[problem]
        return fatal

    @staticmethod
    def _problems(entry: CallEntry, watch: WorkerWatch, cpu: float | None) -> list[str]:
        """cpu: a fresh reading, or None between readings (the last one's verdict stands)."""
        problems = []
        # Heartbeats are checked only while the worker itself says ACTIVE: once it is
        # ENDING its threads stop by design (prompt, teardown); END_GRACE covers that phase.
        if entry.phase is Phase.ACTIVE and entry.header.get(Slot.CALL_STATE) == CallState.ACTIVE:
            now = time.monotonic_ns()
            for name, slot in _HEARTBEATS.items():
                beat = entry.header.get(slot)
                if beat and now - beat > HEARTBEAT_LIMIT_NS:
                    problems.append(f"stuck {name} thread")
            uplink = entry.segment.uplink.write_total
            if uplink == watch.last_uplink:
                problems.append("no audio from Asterisk")
            watch.last_uplink = uplink
        if cpu is None:
            if HIGH_CPU in watch.streaks:
                problems.append(HIGH_CPU)
        elif cpu > CPU_LIMIT:
            problems.append(HIGH_CPU)
        return problems
