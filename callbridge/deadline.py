"""A deadline for blocking work in a helper process: the whole of it, not each read.

Per-read timeouts (requests', smtplib's) do not bound a peer that answers a byte at a
time: every byte starts the timer again. `deadline(seconds)` arms SIGALRM for the whole
block and raises DeadlineExceeded inside it when the time is up, wherever it waits.

Only for a helper's main thread (supervisor/helpers.py: one job per process, no wake-up
fd): the supervisor and the call workers own their signals and must never use it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class DeadlineExceeded(BaseException):
    """The block's time ran out. A BaseException, not a TimeoutError: libraries turn a
    socket timeout into their own error (requests: ReadTimeout) or retry it, and the
    deadline must reach the `deadline` block's owner whatever the code in between does."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("deadline() needs the main thread (SIGALRM)")

    def expired(_signum, _frame) -> None:
        raise DeadlineExceeded(f"took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
