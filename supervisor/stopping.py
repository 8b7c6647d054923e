"""How the supervisor stops. Signal handlers only record the signal (and wake the loop
through `signal.set_wakeup_fd`); the loop acts on it. The first SIGTERM or SIGINT drains:
no new calls, live calls may finish for DRAIN_TIMEOUT_SECONDS. A second one ends every
call at once. SIGHUP asks for a reload (supervisor/agents_side.py::AgentsSide.reload, run
by the loop); SIGCHLD only wakes the loop, which reaps."""

from __future__ import annotations

import selectors
import signal
import socket
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopping:
    def __init__(self, drain_timeout_seconds: int) -> None:
        self.drain_timeout_seconds = drain_timeout_seconds
        self.draining = False
        self.drain_deadline = 0.0
        self.drain_forced = False
        self.hard_stop_at: float | None = None
        self._signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()

    def install(self, selector: selectors.BaseSelector) -> None:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        selector.register(self._wake_r, selectors.EVENT_READ, ("wakeup", None))
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for signum in (*STOP_SIGNALS, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame) -> None:
        self._signals.append(signum)

    def on_wakeup(self) -> None:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass

    def take_signals(self) -> list[int]:
        taken, self._signals = self._signals, []
        return taken

    def begin_drain(self) -> None:
        self.draining = True
        self.drain_deadline = time.monotonic() + self.drain_timeout_seconds

    def begin_hard_stop(self) -> None:
        self.hard_stop_at = time.monotonic()

    def drain_expired(self, now: float) -> bool:
        """True once, when the drain's time is up."""
        if self.draining and not self.drain_forced and now >= self.drain_deadline:
            self.drain_forced = True
            return True
        return False

    def fds(self) -> list[int]:
        """The wake-up pair: the supervisor's, never a worker's to hold."""
        return [self._wake_r.fileno(), self._wake_w.fileno()]

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self._wake_r.close()
        self._wake_w.close()
