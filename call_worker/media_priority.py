"""Real-time scheduling for the media thread (MEDIA_REALTIME_PRIORITY), so that its 20 ms
wake-ups run when they are due.

Under the fair scheduler a worker's media thread that wakes at its deadline waits its turn
behind whatever runs on the CPU: Asterisk's threads, the callers, the other workers. Traced
frame by frame (bench/frame_times.py, 20 calls through the real Asterisk), that wait was
the p99 of a frame's lateness: 1.6 ms runnable-but-not-running per frame at the median,
4.4 ms late at the p99. SCHED_FIFO at priority 1, the lowest real-time one, for this thread
alone (the calling thread's, pid 0): 0.6 ms at the p99 (docs/performance.md, issue 27). It
sleeps between frames (about 0.2 ms of CPU per frame, syscalls included), and the kernel
keeps 5 % of every CPU for normal tasks whatever real-time ones do, so the supervisor and the
workers' other threads are not shut out; but where the calls' audio fills a CPU they live on
what is left, and new calls' set-up waits (docs/performance.md measures both).

A unit must allow it (LimitRTPRIO=, RestrictRealtime=no, the sched_setscheduler call: the
shipped units do, and LimitRTTIME= kills a real-time thread that never sleeps; docs/operations.md). Where it is refused, the thread keeps normal
scheduling: the supervisor says so once at start (`check`), the workers say nothing.
"""

from __future__ import annotations

import os
import threading


def raise_to(priority: int) -> str | None:
    """Put the calling thread in SCHED_FIFO at `priority` (0: leave it). None when done,
    else why not. Threads it starts later (a reconnect's opener, a tool's pool thread) are
    born under normal scheduling (SCHED_RESET_ON_FORK): the priority is this thread's alone."""
    if priority <= 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check(priority: int) -> str | None:
    """Whether a worker's media thread will get `priority`: tried on a thread of its own
    that ends at once (the asking thread's scheduling is left as it was)."""
    answer: list[str | None] = []
    tester = threading.Thread(target=lambda: answer.append(raise_to(priority)), name="priority-check")
    tester.start()
    tester.join()
    return answer[0] if answer else "the check did not run"
