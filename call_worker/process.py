"""Starting a call worker: fork, then run one Call in the child and exit.

The supervisor calls `spawn()` with no threads alive. The child:
- asks the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), and also
  checks getppid() in its control loop, which covers the race before prctl;
- closes descriptors that belong to the supervisor (ARI socket, control socket,
  other workers' pipes), so a dead supervisor's sockets are not held open by a child;
- turns SIGTERM into an end request (the call ends politely: teardown, record) and
  ignores SIGINT, so that Ctrl-C in a terminal reaches the supervisor's drain logic;
- wakes the call's main thread for any signal (signal.set_wakeup_fd): the supervisor
  writes END_REQUEST into the header and then sends END_SIGNAL, so the call's main thread
  sleeps until then instead of polling the header;
- exits with a code the supervisor can explain (shm_ring/header.py::WorkerExit), via os._exit so that no
  atexit handler or buffered state of the parent runs twice.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time

from call_worker.call import Call, CallInfo
from call_worker.wake import Waker
from callbridge import logs
from callbridge.config import Settings
from shm_ring import END_SIGNAL, CallSegment, EndReason, Slot, WorkerExit

_PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the getppid() check still works
        pass


def spawn(
    settings: Settings,
    info: CallInfo,
    segment: CallSegment,
    close_fds: list[int] = (),
    close_segments: list[CallSegment] = (),
    in_child: list = (),
    events: socket.socket | None = None,
) -> int:
    """Fork a worker for `info`; return its pid (in the parent).

    `events` is the worker's end of the call's event channel (shm_ring/call_events.py):
    the parent closes it once forked; the supervisor's end must be among `close_fds`.

    `close_segments` are the other live calls' segments: the child unmaps them, so no
    worker can read or write another call's audio. `in_child` are callables run first in
    the child (the supervisor closes its HTTP connection pool there)."""
    supervisor_pid = os.getpid()
    pid = os.fork()
    if pid:
        if events is not None:
            events.close()  # the worker's; the supervisor keeps its own end
        return pid
    forked_ns = time.monotonic_ns()
    code = WorkerExit.CRASHED
    try:
        for action in in_child:
            action()
        code = _child(settings, info, segment, supervisor_pid, close_fds, close_segments, forked_ns, events)
    except BaseException:
        # Through logging, so the redacting formatter sees the traceback too.
        log.critical("call worker crashed", exc_info=True)
    finally:
        os._exit(code)


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    log.critical(
        "thread %s crashed",
        getattr(args.thread, "name", "?"),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _child(
    settings: Settings,
    info: CallInfo,
    segment: CallSegment,
    supervisor_pid: int,
    close_fds: list[int],
    close_segments: list[CallSegment],
    forked_ns: int = 0,
    events: socket.socket | None = None,
) -> int:
    _die_with_parent()
    sys.setswitchinterval(0.001)
    main_wake = Waker()
    # The supervisor's wake-up socket is not ours to write to; our main thread's pipe is.
    signal.set_wakeup_fd(main_wake.write_fd, warn_on_full_buffer=False)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for other in close_segments:
        other.close()
    logs.set_process_call_id(info.call_id)
    threading.excepthook = _log_thread_crash
    header = segment.header

    def on_term(_signo, _frame) -> None:
        # Only record it: the wake-up fd wakes the control loop, which ends the call.
        # END_REQUEST is the supervisor's slot, but the supervisor writes it only before it
        # signals, so standing in for it here cannot race with it.
        if not header.get(Slot.END_REQUEST):
            header.set(Slot.END_REQUEST, EndReason.SHUTDOWN)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(END_SIGNAL, lambda _signo, _frame: None)  # the wake-up fd is the point
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if supervisor_pid != os.getppid():  # the supervisor died before prctl took effect
        return WorkerExit.SETUP_FAILED
    call = Call(
        settings,
        info,
        segment,
        supervisor_pid=supervisor_pid,
        main_wake=main_wake,
        forked_ns=forked_ns,
        events=events,
    )
    reason = call.run()
    if call.teardown_left:
        return WorkerExit.TEARDOWN_LEFT
    return WorkerExit.SETUP_FAILED if reason is EndReason.SETUP_FAILED else WorkerExit.OK
