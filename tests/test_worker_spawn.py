"""What `call_worker.process.spawn` gives a worker, seen from outside the real process:
the supervisor's descriptors closed, other calls' audio unmapped, the signal set-up, and
the exit code of a call whose set-up failed."""

from __future__ import annotations

import os
import signal

import pytest
from harness import MiniSupervisor, settings_for
from testenv import TEST_PREFIX

from shm_ring import EndReason, Slot, WorkerExit, list_segments

pytestmark = pytest.mark.slow


@pytest.fixture
def supervisor(asterisk, realtime):
    realtime.reset()
    sup = MiniSupervisor(asterisk, settings_for(asterisk, realtime), TEST_PREFIX)
    yield sup
    sup.close()
    state = asterisk.state()
    assert state["channels"] == [] and state["bridges"] == [], f"left in Asterisk: {state}"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _signal_mask(pid: int, field: str) -> int:
    """SigIgn or SigCgt of /proc/PID/status: bit n-1 stands for signal n."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _has(mask: int, signum: int) -> bool:
    return bool(mask >> (signum - 1) & 1)


def test_worker_holds_nothing_of_the_supervisor_or_of_other_calls(supervisor):
    first = supervisor.place([{"say": 600}, {"silence": 6000}, {"hangup": True}])
    supervisor.wait(lambda: first.segment.header.get(Slot.FRAMES_IN) > 5)
    second = supervisor.place([{"say": 600}, {"silence": 4000}, {"hangup": True}])
    supervisor.wait(lambda: second.segment.header.get(Slot.FRAMES_IN) > 5)
    # Set-up is over in both (audio flows), so each child ran spawn's preparations long ago.
    events_socket = str(os.fstat(supervisor.ws.sock.fileno()).st_ino)
    for call in (first, second):
        assert events_socket not in _socket_inodes(call.pid), "worker holds the ARI events socket"
    with open(f"/proc/{second.pid}/maps") as maps:
        mapped = maps.read()
    assert f"/dev/shm/{second.segment.name}" in mapped
    assert f"/dev/shm/{first.segment.name}" not in mapped, "worker maps another call's audio"
    # SIGTERM ends the call politely (caught); Ctrl-C and SIGHUP are the supervisor's.
    caught = _signal_mask(second.pid, "SigCgt")
    ignored = _signal_mask(second.pid, "SigIgn")
    assert _has(caught, signal.SIGTERM)
    assert _has(ignored, signal.SIGINT) and _has(ignored, signal.SIGHUP)
    assert supervisor.wait_ended(first, 20) == 0 and supervisor.wait_ended(second, 20) == 0
    # Reaped and unlinked, as the supervisor does; the counters stay readable here.
    assert {first.segment.name, second.segment.name}.isdisjoint(list_segments(TEST_PREFIX))
    assert first.segment.header.get(Slot.END_REASON) == EndReason.CALLER_HANGUP


def test_worker_whose_set_up_failed_exits_with_its_own_code(asterisk, realtime):
    realtime.reset()
    # A documentation address (RFC 5737) is on no interface here: binding RTP fails.
    settings = settings_for(asterisk, realtime, LOCAL_IP_ADDRESS="192.0.2.1")
    sup = MiniSupervisor(asterisk, settings, TEST_PREFIX)
    try:
        call = sup.place([{"silence": 10000}])
        assert sup.wait_ended(call, 20) == WorkerExit.SETUP_FAILED
        assert call.segment.header.get(Slot.END_REASON) == EndReason.SETUP_FAILED
    finally:
        sup.close()
    state = asterisk.state()
    assert state["channels"] == [] and state["bridges"] == [], f"left in Asterisk: {state}"
