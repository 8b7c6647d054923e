"""A wake-up a thread can wait on in select() beside its sockets: a non-blocking pipe.

Another thread (or a signal, through signal.set_wakeup_fd) writes a byte; the waiting
thread's select() returns and it drains the pipe. Writing to a full pipe is a wake-up
already pending, so it is simply dropped.
"""

from __future__ import annotations

import os


class Waker:
    def __init__(self) -> None:
        self._read, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass  # full: a wake-up is pending; closed: nobody waits any more

    def drain(self) -> None:
        try:
            while os.read(self._read, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self._read, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
