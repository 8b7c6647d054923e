"""What the supervisor looks at once, at start, and says in a line when it is wrong: the
host's limits against MAX_CONCURRENT_CALLS, and whether the media threads will get their
real-time priority. Warnings, never refusals: the service runs either way."""

from __future__ import annotations

import logging

from call_worker import media_priority
from callbridge import capacity

log = logging.getLogger("supervisor.service")  # the lines operators know from the service's start


def warn_capacity(max_concurrent_calls: int) -> None:
    """MAX_CONCURRENT_CALLS against this cgroup's (the unit's) and the machine's limits
    (local files only: callbridge/capacity.py)."""
    limits = capacity.effective([capacity.cgroup_limits(), capacity.machine_limits()])
    for problem in capacity.problems(max_concurrent_calls, limits):
        log.warning("capacity: %s", problem)


def media_scheduling(priority: int) -> str:
    """What the workers' media threads will run at (MEDIA_REALTIME_PRIORITY,
    call_worker/media_priority.py), for `status`; said here, once, so that 100 workers do
    not each log it."""
    if priority <= 0:
        return "normal (MEDIA_REALTIME_PRIORITY=0)"
    problem = media_priority.check(priority)
    if problem is None:
        return f"SCHED_FIFO {priority}"
    log.warning(
        "media threads run at normal priority: SCHED_FIFO %d was refused (%s); frames leave late "
        "when the host is busy. The unit needs LimitRTPRIO=%d and RestrictRealtime=no (docs/operations.md), "
        "or set MEDIA_REALTIME_PRIORITY=0 to silence this",
        priority,
        problem,
        priority,
    )
    return f"normal (SCHED_FIFO {priority} refused: {problem})"
