"""What a child's exit means (supervisor/exits.py), for every status the kernel can give:
the reap runs on the supervisor's loop, so describing an exit must never raise."""

from __future__ import annotations

import os
import signal

import pytest

from shm_ring import EndReason, Slot
from supervisor.exits import describe_exit, describe_status, signal_name

END = Slot.END_REASON.name.lower()


def _signalled(signum: int) -> int:
    return signum  # a wait status for "killed by signum", without a core dump


def _exited(code: int) -> int:
    return code << 8


@pytest.mark.parametrize("signum", range(1, signal.SIGRTMAX + 1))
def test_every_signal_is_described_as_a_crash(signum):
    ending = describe_exit(_signalled(signum), {END: EndReason.CALLER_HANGUP})
    assert ending.crashed and ending.reason is EndReason.WORKER_CRASHED
    assert ending.how == f"signal:{signal_name(signum)}"
    assert " " not in ending.how  # one token in the summary line


def test_real_time_signals_have_names():
    assert signal_name(signal.SIGRTMIN) == "SIGRTMIN"
    assert signal_name(signal.SIGRTMIN + 1) == "SIGRTMIN+1"
    assert signal_name(signal.SIGKILL) == "SIGKILL"
    assert signal_name(200) == "SIG200"


@pytest.mark.parametrize("code", range(256))
def test_every_exit_code_is_described(code):
    ending = describe_exit(_exited(code), {END: EndReason.IDLE_TIMEOUT})
    assert ending.how == f"exit:{code}"
    assert ending.crashed is (code not in (0, 3, 4))
    assert ending.reason is (EndReason.WORKER_CRASHED if ending.crashed else EndReason.IDLE_TIMEOUT)


def test_a_scribbled_end_reason_is_not_fatal():
    assert describe_exit(_exited(0), {END: 9999}).reason is EndReason.NONE


def test_a_core_dump_and_odd_statuses_are_described():
    assert describe_status(signal.SIGSEGV | 0x80) == "signal:SIGSEGV"
    assert describe_status(0x137F).startswith(("status:", "exit:", "signal:"))  # stopped
    assert describe_status(-1).startswith(("status:", "exit:", "signal:"))


def test_a_real_child_killed_with_a_real_time_signal():
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    os.kill(pid, signal.SIGRTMIN + 1)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == "signal:SIGRTMIN+1"
