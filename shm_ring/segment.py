"""One call's shared-memory segment: header, uplink ring, downlink ring.

Ownership (docs/architecture.md): the supervisor creates a call's segment before it forks the
worker and unlinks it after the reap; the worker only uses the mapping it inherited.
No process ever attaches by name on the hot path, so nothing depends on the name
staying valid while a call runs, and the supervisor can read a crashed call's last
counters before it unlinks.

Python's resource tracker is kept out of it on every supported version:
- 3.11/3.12 register every SharedMemory with the tracker, even one merely attached,
  and the tracker unlinks what is still registered when its process group's creator
  exits (an "early unlink" for whoever else uses the segment) and warns about "leaked"
  segments. We unregister right after creating or attaching.
- 3.13 added `track=False`, which does the same without a round trip.
- `SharedMemory.unlink()` on 3.11/3.12 would unregister a second time, which makes the
  tracker print a KeyError traceback; we unlink with `shm_unlink` directly instead.
Segments that outlive a crashed supervisor are removed by `sweep()` at the next start.

Names are `<prefix>.<creator pid>.<key>`, so `sweep()` can tell a dead owner's
leftovers from a live supervisor's segments (tests and the demo can run beside the
service).
"""

from __future__ import annotations

import _posixshmem
import os
import sys
import time
from multiprocessing import resource_tracker, shared_memory

from shm_ring.errors import LayoutError, SegmentExistsError, SegmentGoneError
from shm_ring.header import HEADER_BYTES, LAYOUT_VERSION, MAGIC, CallHeader, Slot
from shm_ring.ring import ByteRing, region_size

DEFAULT_PREFIX = "callbridge"
SHM_DIR = "/dev/shm"
# 2 s of G.711 each way by default: the uplink only buffers while the Realtime link
# stalls; the downlink holds a reply that arrives faster than real time (a 60 s reply
# at 8 bytes/ms is 480 kB, so replies longer than the ring are written as they play).
DEFAULT_UPLINK_CAPACITY = 64 * 1024
DEFAULT_DOWNLINK_CAPACITY = 1024 * 1024


def _open(name: str, create: bool, size: int) -> shared_memory.SharedMemory:
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, create=create, size=size, track=False)
    shm = shared_memory.SharedMemory(name, create=create, size=size)
    resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 (see module doc)
    return shm


def start_tracker() -> None:
    """3.11/3.12 start the tracker process at the first SharedMemory; starting a Python
    process beside the first call's set-up slowed that call (its worker started 9 ms after
    admission instead of 5). The supervisor calls this once at start-up instead."""
    if sys.version_info < (3, 13):
        resource_tracker.ensure_running()


def _unlink_name(name: str) -> bool:
    """Remove a segment by its name; False when it was already gone."""
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        return False
    return True


def segment_name(key: str, prefix: str = DEFAULT_PREFIX, owner_pid: int | None = None) -> str:
    pid = os.getpid() if owner_pid is None else owner_pid
    return f"{prefix}.{pid}.{key}"


class CallSegment:
    """A call's shared segment. `create()` in the supervisor, inherited by the worker."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self._shm = shm
        self.owner = owner
        self.name = shm.name
        buf = shm.buf
        if len(buf) < HEADER_BYTES:
            raise LayoutError(f"segment {self.name} is too small to hold a header")
        self.header = CallHeader(buf[:HEADER_BYTES])
        if self.header.get(Slot.MAGIC) != MAGIC:
            raise LayoutError(f"segment {self.name} is not a callbridge call segment")
        if self.header.get(Slot.LAYOUT_VERSION) != LAYOUT_VERSION:
            raise LayoutError(f"segment {self.name} has layout {self.header.get(Slot.LAYOUT_VERSION)}")
        up = self.header.get(Slot.UPLINK_CAPACITY)
        down = self.header.get(Slot.DOWNLINK_CAPACITY)
        up_end = HEADER_BYTES + region_size(up)
        down_end = up_end + region_size(down)
        if down_end > len(buf):
            raise LayoutError(f"segment {self.name} is smaller than its rings")
        self.uplink = ByteRing(buf[HEADER_BYTES:up_end], up)
        self.downlink = ByteRing(buf[up_end:down_end], down)
        self._closed = False

    @classmethod
    def create(
        cls,
        name: str,
        uplink_capacity: int = DEFAULT_UPLINK_CAPACITY,
        downlink_capacity: int = DEFAULT_DOWNLINK_CAPACITY,
    ) -> CallSegment:
        """Create and initialise a new segment; this process becomes its owner."""
        size = HEADER_BYTES + region_size(uplink_capacity) + region_size(downlink_capacity)
        try:
            shm = _open(name, True, size)
        except FileExistsError:
            raise SegmentExistsError(f"shared memory segment {name} exists already") from None
        # A new POSIX segment is zero-filled, so every counter starts at 0; only the
        # layout needs writing. MAGIC goes last: a reader that sees it sees the rest.
        slots = shm.buf[:HEADER_BYTES].cast("Q")
        slots[Slot.LAYOUT_VERSION] = LAYOUT_VERSION
        slots[Slot.UPLINK_CAPACITY] = uplink_capacity
        slots[Slot.DOWNLINK_CAPACITY] = downlink_capacity
        slots[Slot.CREATED_NS] = time.monotonic_ns()
        slots[Slot.MAGIC] = MAGIC
        slots.release()
        try:
            return cls(shm, owner=True)
        except BaseException:
            shm.close()
            _unlink_name(name)
            raise

    @classmethod
    def attach(cls, name: str) -> CallSegment:
        """Map an existing segment by name (inspection and tests; workers inherit instead)."""
        try:
            shm = _open(name, False, 0)
        except FileNotFoundError:
            raise SegmentGoneError(f"no shared memory segment named {name}") from None
        try:
            return cls(shm, owner=False)
        except BaseException:
            shm.close()
            raise

    def close(self) -> None:
        """Unmap this process's view (idempotent). The segment lives on until unlinked."""
        if self._closed:
            return
        self._closed = True
        self.uplink.release()
        self.downlink.release()
        self.header.release()
        self._shm.close()

    def unlink(self) -> bool:
        """Remove the name (owner only); mappings that exist keep working until closed."""
        if not self.owner:
            raise PermissionError(f"only the creator of {self.name} unlinks it")
        return _unlink_name(self.name)

    def destroy(self) -> None:
        """close() and unlink(): what the supervisor does after the reap."""
        self.close()
        self.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def list_segments(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Names of this program's segments that exist now."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(entry for entry in entries if entry.startswith(prefix + "."))


def sweep(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Unlink segments left by dead owners and by this pid (start-up); return their names.

    A segment whose creator pid is alive belongs to another running supervisor and is kept.
    """
    removed = []
    me = os.getpid()
    for name in list_segments(prefix):
        pid_text = name[len(prefix) + 1 :].split(".", 1)[0]
        owner = int(pid_text) if pid_text.isdigit() else None
        if owner is not None and owner != me and _pid_alive(owner):
            continue
        if _unlink_name(name):
            removed.append(name)
    return removed
