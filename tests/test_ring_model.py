"""ByteRing against a trivially correct model, driven by hypothesis through random
write / read / read_into / discard sequences with small capacities (many wrap-arounds)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shm_ring import ByteRing, LayoutError, region_size


class RingModel(RuleBasedStateMachine):
    """The model: the whole written stream, a consumer position, a pending discard mark."""

    @initialize(capacity=st.integers(min_value=1, max_value=48))
    def setup(self, capacity: int) -> None:
        self.ring = ByteRing(memoryview(bytearray(region_size(capacity))), capacity)
        self.capacity = capacity
        self.stream = bytearray()
        self.position = 0
        self.mark = 0
        self.discarded = 0
        self.discarded_at = 0

    def _consumer_applies_discard(self) -> None:
        if self.mark > self.position:
            self.discarded_at = self.position
            self.discarded += self.mark - self.position
            self.position = self.mark

    @rule(data=st.binary(max_size=64))
    def write(self, data: bytes) -> None:
        free = self.capacity - (len(self.stream) - self.position)
        assert self.ring.write(data) == min(len(data), free)
        self.stream += data[:free]

    @rule(size=st.integers(min_value=0, max_value=64))
    def read(self, size: int) -> None:
        self._consumer_applies_discard()
        want = bytes(self.stream[self.position : self.position + size])
        assert self.ring.read(size) == want
        self.position += len(want)

    @rule(size=st.integers(min_value=1, max_value=64), slack=st.integers(0, 8))
    def read_into(self, size: int, slack: int) -> None:
        self._consumer_applies_discard()
        buffer = bytearray(size + slack)
        want = bytes(self.stream[self.position : self.position + size])
        assert self.ring.read_into(buffer, size) == len(want)
        assert bytes(buffer[: len(want)]) == want
        self.position += len(want)

    @rule()
    def request_discard(self) -> None:
        assert self.ring.request_discard() == len(self.stream)
        self.mark = len(self.stream)

    @rule()
    def readable(self) -> None:
        self._consumer_applies_discard()
        assert self.ring.readable() == len(self.stream) - self.position

    @invariant()
    def counters_match_the_model(self) -> None:
        if not hasattr(self, "ring"):
            return
        assert self.ring.write_total == len(self.stream)
        assert self.ring.discard_mark == self.mark
        assert self.ring.read_total == self.position
        assert self.ring.discarded_total == self.discarded
        assert self.ring.discarded_at == self.discarded_at
        assert self.ring.writable() == self.capacity - (len(self.stream) - self.position)


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_discard_tells_exactly_what_was_consumed_before_it():
    ring = ByteRing(memoryview(bytearray(region_size(1000))), 1000)
    assert ring.write(bytes(800)) == 800
    assert len(ring.read(160)) == 160
    assert len(ring.read(160)) == 160
    ring.request_discard()
    assert ring.readable() == 0
    assert ring.discarded_at == 320
    assert ring.discarded_total == 480
    assert ring.write(b"abc") == 3
    assert ring.read(10) == b"abc"


def test_write_reports_what_did_not_fit():
    ring = ByteRing(memoryview(bytearray(region_size(10))), 10)
    assert ring.write(b"0123456789ABC") == 10
    assert ring.write(b"x") == 0
    assert ring.read(4) == b"0123"
    assert ring.write(b"wxyz!") == 4  # wraps around the end
    assert ring.read(100) == b"456789wxyz"


def test_wrong_region_size_is_a_layout_error():
    with pytest.raises(LayoutError):
        ByteRing(memoryview(bytearray(50)), 10)
    with pytest.raises(LayoutError):
        ByteRing(memoryview(bytearray(region_size(0))), 0)
