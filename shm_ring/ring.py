"""A single-producer single-consumer byte ring over a shared memory region.

Layout of a region: two 64-byte control lines, then `capacity` data bytes.

    line 0, written only by the producer: write_total, discard_mark
    line 1, written only by the consumer: read_total, discarded_total, discarded_at

The totals are monotonic 64-bit byte counters (they never wrap in practice: 2**64 bytes
is 2.9 million years of G.711). The data index of a total is `total % capacity`.
Keeping each counter single-writer is what makes the ring correct without locks
between processes; keeping the two sides on separate cache lines keeps them fast.

Ordering: the producer copies the data before it publishes the new write_total, and the
consumer reads write_total before the data; x86-64 keeps stores in program order (TSO),
which is what this relies on, and CPython performs each counter update as one aligned
8-byte store.

Discard (barge-in): the producer cannot move the read cursor, so it publishes
`discard_mark = write_total`. The consumer, at its next read or size query, moves
`read_total` up to the mark, adds what it skipped to `discarded_total` and records the
`read_total` it had reached in `discarded_at`. After that, `discarded_at` tells the
producer exactly how many bytes were consumed before the discard took effect.
"""

from __future__ import annotations

from shm_ring.errors import LayoutError

CONTROL_BYTES = 128
_W, _DISCARD_MARK = 0, 1  # producer's line (uint64 slots)
_R, _DISCARDED, _DISCARDED_AT = 8, 9, 10  # consumer's line


def region_size(capacity: int) -> int:
    """Bytes a ring of `capacity` data bytes occupies."""
    return CONTROL_BYTES + capacity


class ByteRing:
    """One ring inside `region` (a writable memoryview of exactly `region_size(capacity)`).

    Each process (or thread) uses it as producer or consumer, never both; that is a
    convention, not enforced, because a forked child uses the same object as its parent.
    """

    __slots__ = ("capacity", "_ctl", "_data", "_region")

    def __init__(self, region: memoryview, capacity: int) -> None:
        if capacity <= 0:
            raise LayoutError(f"ring capacity must be positive, got {capacity}")
        if len(region) != region_size(capacity):
            raise LayoutError(f"ring region is {len(region)} bytes, expected {region_size(capacity)}")
        self.capacity = capacity
        self._region = region
        self._ctl = region[:CONTROL_BYTES].cast("Q")
        self._data = region[CONTROL_BYTES:]

    # --- producer side

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Copy as much of `data` as fits; return how many bytes were written.

        Never blocks. `len(data) - returned` bytes did not fit (an overrun to count).
        """
        ctl = self._ctl
        w = ctl[_W]
        n = min(len(data), self.capacity - (w - ctl[_R]))
        if n <= 0:
            return 0
        cap = self.capacity
        pos = w % cap
        first = min(n, cap - pos)
        src = data if isinstance(data, memoryview) else memoryview(data)
        self._data[pos : pos + first] = src[:first]
        if n > first:
            self._data[: n - first] = src[first:n]
        ctl[_W] = w + n  # publish after the copy
        return n

    def write_all(self, data: bytes | bytearray | memoryview) -> bool:
        """Write all of `data`, or nothing when it does not fit (keeps audio frames whole)."""
        ctl = self._ctl
        if len(data) > self.capacity - (ctl[_W] - ctl[_R]):
            return False
        return self.write(data) == len(data)

    def writable(self) -> int:
        ctl = self._ctl
        return self.capacity - (ctl[_W] - ctl[_R])

    def request_discard(self) -> int:
        """Ask the consumer to drop everything written so far; return the mark."""
        mark = self._ctl[_W]
        self._ctl[_DISCARD_MARK] = mark
        return mark

    # --- consumer side

    def _apply_discard(self) -> int:
        ctl = self._ctl
        r = ctl[_R]
        mark = ctl[_DISCARD_MARK]
        if mark > r:
            ctl[_DISCARDED_AT] = r
            ctl[_DISCARDED] = ctl[_DISCARDED] + (mark - r)
            ctl[_R] = mark
            return mark
        return r

    def readable(self) -> int:
        """Bytes ready to read (after performing any pending discard)."""
        r = self._apply_discard()
        return self._ctl[_W] - r

    def read_into(self, buffer: bytearray | memoryview, size: int | None = None) -> int:
        """Copy up to `size` (default: len(buffer)) ready bytes into `buffer`; return the count."""
        r = self._apply_discard()
        want = len(buffer) if size is None else min(size, len(buffer))
        n = min(want, self._ctl[_W] - r)
        if n <= 0:
            return 0
        cap = self.capacity
        pos = r % cap
        first = min(n, cap - pos)
        dst = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
        dst[:first] = self._data[pos : pos + first]
        if n > first:
            dst[first:n] = self._data[: n - first]
        self._ctl[_R] = r + n  # release the space after the copy
        return n

    def read(self, size: int) -> bytes:
        """Up to `size` ready bytes (fewer, or b"", when less is ready)."""
        buffer = bytearray(min(size, self.capacity))
        n = self.read_into(buffer)
        return bytes(buffer[:n])

    # --- either side, and observers (the supervisor) that only read

    @property
    def write_total(self) -> int:
        return self._ctl[_W]

    @property
    def read_total(self) -> int:
        return self._ctl[_R]

    @property
    def discard_mark(self) -> int:
        return self._ctl[_DISCARD_MARK]

    @property
    def discarded_total(self) -> int:
        return self._ctl[_DISCARDED]

    @property
    def discarded_at(self) -> int:
        """`read_total` as it stood when the last discard was performed."""
        return self._ctl[_DISCARDED_AT]

    def fill(self) -> int:
        """Bytes written and not yet consumed, without performing a discard (for observers)."""
        ctl = self._ctl
        return ctl[_W] - ctl[_R]

    def release(self) -> None:
        """Drop this object's views so the shared memory can be closed."""
        self._ctl.release()
        self._data.release()
        self._region.release()
