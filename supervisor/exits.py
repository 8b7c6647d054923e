"""What a child's wait status means, for every status the kernel can report.

`signal.Signals(n)` raises ValueError for numbers that have no name in Python (the
real-time signals SIGRTMIN..SIGRTMAX among them), and the reap runs for every child on
the supervisor's loop: a description that can raise would end the loop and every call.
So every step here has a fallback and none can raise.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from shm_ring import CLEAN_EXITS, EndReason, Slot, WorkerExit


def signal_name(signum: int) -> str:
    """SIGKILL, SIGRTMIN+1, or SIG42: a name for any signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        pass
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1)
    if low <= signum <= high:
        return "SIGRTMIN" if signum == low else f"SIGRTMIN+{signum - low}"
    return f"SIG{signum}"


def describe_status(status: int) -> str:
    """One token for a wait status: `exit:0`, `signal:SIGKILL`, `signal:SIGRTMIN+1`."""
    try:
        if os.WIFSIGNALED(status):
            return f"signal:{signal_name(os.WTERMSIG(status))}"
        if os.WIFEXITED(status):
            return f"exit:{os.WEXITSTATUS(status)}"
    except (ValueError, OverflowError):
        pass
    return f"status:{status}"


@dataclass(frozen=True)
class Ending:
    crashed: bool
    how: str  # "exit:0", "signal:SIGKILL": one token, for the summary line
    reason: EndReason

    @property
    def teardown_left(self) -> bool:
        """The worker ended its call but left its teardown to the supervisor's helper."""
        return self.how == WorkerExit.TEARDOWN_LEFT.token


def describe_exit(status: int, counters: dict) -> Ending:
    """A worker's end: crashed unless it exited with one of its clean codes."""
    how = describe_status(status)
    crashed = how not in {code.token for code in CLEAN_EXITS}
    recorded = counters.get(Slot.END_REASON.name.lower(), 0)
    if crashed:
        reason = EndReason.WORKER_CRASHED
    else:
        try:
            reason = EndReason(recorded) if recorded else EndReason.NONE
        except ValueError:  # a header written by a newer worker, or scribbled on
            reason = EndReason.NONE
    return Ending(crashed, how, reason)
