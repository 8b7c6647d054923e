"""The supervisor's view of a call (supervisor/calls.py): every ending, whichever side began
it, arms the deadline after which a worker that has not exited is killed."""

from __future__ import annotations

import os
import signal
import time

import pytest
from testenv import TEST_PREFIX

from shm_ring import END_SIGNAL, CallSegment, CallState, EndReason, Slot, segment_name
from supervisor.calls import CallEntry, Phase


@pytest.fixture
def woken():
    """This process stands in for the worker: END_SIGNAL is recorded, not fatal."""
    received: list[int] = []
    previous = signal.signal(END_SIGNAL, lambda signo, _frame: received.append(signo))
    yield received
    signal.signal(END_SIGNAL, previous)


@pytest.fixture
def entry(woken):
    segment = CallSegment.create(segment_name("entry-test", TEST_PREFIX))
    yield CallEntry("entry-test", "+1555", "100", "PJSIP/x", os.getpid(), segment)
    segment.close()
    segment.unlink()


def test_an_end_request_is_written_then_signalled_once(entry, woken):
    """The worker's main thread sleeps until signalled (call_worker/process.py): the request
    must be in the header before the signal, and a second request sends nothing."""
    seen: list[int] = []
    signal.signal(END_SIGNAL, lambda signo, _frame: seen.append(entry.header.get(Slot.END_REQUEST)))
    assert entry.request_end(EndReason.CALLER_HANGUP)
    assert not entry.request_end(EndReason.OPERATOR_HANGUP)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [EndReason.CALLER_HANGUP]


def test_a_call_that_is_not_ending_has_no_deadline(entry):
    entry.header.set(Slot.CALL_STATE, CallState.ACTIVE)
    entry.observe()
    assert entry.phase is Phase.ACTIVE and entry.ending_since() is None


def test_an_ending_the_worker_began_arms_the_deadline(entry):
    """A limit or a Realtime failure ends the call from the worker's side: no end request."""
    entry.header.set(Slot.CALL_STATE, CallState.ACTIVE)
    entry.observe()
    entry.header.set(Slot.CALL_STATE, CallState.ENDING)
    entry.observe()
    assert entry.phase is Phase.ENDING
    since = entry.ending_since()
    assert since is not None
    entry.observe()
    assert entry.ending_since() == since  # armed once, not pushed back on every tick


def test_an_end_request_arms_it_too_and_the_earlier_time_counts(entry):
    assert entry.request_end(EndReason.OPERATOR_HANGUP)
    requested = entry.ending_since()
    entry.header.set(Slot.CALL_STATE, CallState.ENDING)
    entry.observe()
    assert entry.ending_since() == requested
