"""The supervisor's view of a call (supervisor/calls.py): every ending, whichever side began
it, arms the deadline after which a worker that has not exited is killed."""

from __future__ import annotations

import os

import pytest
from testenv import TEST_PREFIX

from shm_ring import CallSegment, CallState, EndReason, Slot, segment_name
from supervisor.calls import CallEntry, Phase


@pytest.fixture
def entry():
    segment = CallSegment.create(segment_name("entry-test", TEST_PREFIX))
    yield CallEntry("entry-test", "+1555", "100", "PJSIP/x", os.getpid(), segment)
    segment.close()
    segment.unlink()


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
