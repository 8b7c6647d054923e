"""Short-lived helper processes: where the supervisor sends work that may wait on the network.

The supervisor's loop must never wait on Asterisk (a slow REST reply would delay new calls
and trip the systemd watchdog), so every ARI request it would make is done by a helper:
teardown after a worker crash, turning a caller away with the busy prompt, listing channels
and bridges for reconciliation, the daily model check. A helper is forked like a worker
(no threads alive in the supervisor at fork), runs one function, writes its JSON result to
a pipe and exits. The loop reads the pipe when the selector says so and, once the helper is
reaped and its pipe closed, hands the result to the callback given at start.

A helper has no parent-death signal: a teardown that has begun should finish even if the
supervisor alone is killed, and each helper's work is bounded by its own deadline. Under
systemd (KillMode=mixed) whatever is left when the supervisor exits is killed with it, so
the supervisor waits for the helpers a caller depends on before it exits, and the next
start's reconciliation takes care of anything a killed helper left.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callbridge import logs
from supervisor.exits import describe_status

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 70
HELPER_NAME_PREFIX = "cb-"  # a helper's process name: cb-<kind> (workers keep python's)
_PR_SET_NAME = 15
READ_CHUNK = 65536
MAX_RESULT = 16 * 1024 * 1024  # a channel list of thousands of calls fits; more is a bug


@dataclass
class Helper:
    kind: str  # "teardown", "busy", "reconcile", "models": what it does, for logs and status
    pid: int
    fd: int  # read end of the result pipe
    key: str  # what it works for (a call id), or ""
    on_done: Callable[[Any, bool], None] | None
    started: float = field(default_factory=time.monotonic)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    eof: bool = False
    status: int | None = None


class Helpers:
    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.by_pid: dict[int, Helper] = {}
        self.started = self.failed = 0

    def start(
        self,
        kind: str,
        work: Callable[[], Any],
        on_done: Callable[[Any, bool], None] | None = None,
        key: str = "",
        close_fds: list[int] = (),
        close_segments: list = (),
    ) -> Helper | None:
        """Fork a helper running `work()`; `on_done(result, ok)` runs in the loop when it has
        exited. None (logged) when the fork failed; the caller decides what that means."""
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:
            log.error("cannot start a %s helper: %s", kind, exc)
            return None
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            log.error("cannot start a %s helper: %s", kind, exc)
            return None
        if pid == 0:
            code = EXIT_FAILED
            try:
                os.close(read_fd)
                _become_helper(close_fds, key, kind)
                for segment in close_segments:  # no helper may touch a call's audio
                    segment.close()
                result = work()
                _write_all(write_fd, json.dumps(result).encode())
                code = EXIT_OK
            except BaseException:
                log.critical("%s helper failed", kind, exc_info=True)
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        helper = Helper(kind, pid, read_fd, key, on_done)
        self.by_pid[pid] = helper
        self.selector.register(read_fd, selectors.EVENT_READ, ("helper", helper))
        self.started += 1
        return helper

    def on_readable(self, helper: Helper) -> bool:
        """Read what the pipe holds; False when it would block (more is still to come)."""
        try:
            data = os.read(helper.fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError as exc:
            log.warning("%s helper %d: result pipe failed: %s", helper.kind, helper.pid, exc)
            data = b""
        if data and helper.size + len(data) <= MAX_RESULT:
            helper.chunks.append(data)
            helper.size += len(data)
            return True
        if data:
            log.error(
                "%s helper %d sent more than %d bytes; ignoring it", helper.kind, helper.pid, MAX_RESULT
            )
            helper.chunks, helper.size = [], 0
        helper.eof = True
        self._unregister(helper)
        self._maybe_done(helper)
        return True

    def reaped(self, pid: int, status: int) -> bool:
        """True when `pid` was a helper (the supervisor's reap asks for every child)."""
        helper = self.by_pid.get(pid)
        if helper is None:
            return False
        helper.status = status
        # The exit closed the pipe: read what is left now. Should something else still hold
        # the write end (a child the helper forked), the selector delivers the rest later.
        while not helper.eof and self.on_readable(helper):
            pass
        self._maybe_done(helper)
        return True

    def running(self, kind: str | None = None) -> list[Helper]:
        return [h for h in self.by_pid.values() if kind is None or h.kind == kind]

    def fds(self) -> list[int]:
        """Result pipes: the supervisor's, never a child's to hold."""
        return [h.fd for h in self.by_pid.values() if not h.eof]

    def kill(self, kinds: tuple[str, ...], older_than: float = 0.0) -> list[Helper]:
        """SIGKILL running helpers of these kinds (started over `older_than` s ago); the
        reap then reports them as failed to their callbacks."""
        now = time.monotonic()
        killed = []
        for helper in self.running():
            if helper.kind in kinds and helper.status is None and now - helper.started >= older_than:
                try:
                    os.kill(helper.pid, signal.SIGKILL)
                    killed.append(helper)
                except ProcessLookupError:
                    pass
        return killed

    def _maybe_done(self, helper: Helper) -> None:
        if not helper.eof or helper.status is None or helper.pid not in self.by_pid:
            return
        del self.by_pid[helper.pid]
        ok = helper.status == 0
        result = None
        if ok:
            try:
                result = json.loads(b"".join(helper.chunks) or b"null")
            except ValueError:
                ok = False
        if not ok:
            self.failed += 1
            log.warning(
                "%s helper %d failed (%s)",
                helper.kind,
                helper.pid,
                describe_status(helper.status),
                extra={"call_id": helper.key} if helper.key else {},
            )
        if helper.on_done is not None:
            try:
                helper.on_done(result, ok)
            except Exception:
                log.exception("handling the result of a %s helper failed", helper.kind)

    def _unregister(self, helper: Helper) -> None:
        try:
            self.selector.unregister(helper.fd)
        except (KeyError, ValueError):
            pass
        os.close(helper.fd)


def _name_process(name: str) -> None:
    """The name `ps`, `top` and the benchmarks see (Linux only): `cb-teardown`, `cb-drainer`."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15] + b"\0", 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _become_helper(close_fds: list[int], key: str, kind: str) -> None:
    """In the child: drop what is the supervisor's, and keep Ctrl-C for the supervisor."""
    _name_process(f"{HELPER_NAME_PREFIX}{kind}")
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    # SIGINT from a terminal reaches the whole process group; the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if key:
        logs.set_process_call_id(key)
    sys.setswitchinterval(0.005)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.close(fd)
