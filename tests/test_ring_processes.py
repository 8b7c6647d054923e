"""Rings across real forked processes: bulk transfer with a checksum, a producer killed
mid-stream, ownership and the start-up sweep."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testenv import TEST_PREFIX, gone, reap, wait_until

from shm_ring import CallSegment, SegmentGoneError, Slot, list_segments, segment_name, sweep

REPO = Path(__file__).resolve().parents[1]


def _pattern(total: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(total)


@pytest.fixture
def segment(request):
    seg = CallSegment.create(
        segment_name(request.node.name[:40], TEST_PREFIX), uplink_capacity=4096, downlink_capacity=8192
    )
    yield seg
    seg.close()
    seg.unlink()


def _child(body) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def test_forked_producer_moves_10_MB_intact(segment):
    total = 10 * 1024 * 1024
    payload = _pattern(total, seed=7)
    ring = segment.downlink

    def produce():
        view = memoryview(payload)
        sent = 0
        chunk_sizes = random.Random(3)
        deadline = time.monotonic() + 60
        while sent < total and time.monotonic() < deadline:
            size = chunk_sizes.randint(1, 3000)
            sent += ring.write(view[sent : sent + size])
        assert sent == total

    pid = _child(produce)
    digest = hashlib.sha256()
    received = 0
    buffer = bytearray(5000)
    deadline = time.monotonic() + 60
    while received < total and time.monotonic() < deadline:
        n = ring.read_into(buffer, random.randint(1, 5000))
        if n:
            digest.update(buffer[:n])
            received += n
    assert os.waitstatus_to_exitcode(reap(pid, timeout=30)) == 0
    assert received == total
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert ring.write_total == ring.read_total == total


def test_producer_killed_mid_stream_leaves_every_committed_byte_readable(segment):
    ring = segment.uplink
    stream = bytes(index % 251 for index in range(251 * 160))  # repeats seamlessly

    def produce_forever():
        view = memoryview(stream + stream)
        position = 0
        while True:
            position = (position + ring.write(view[position % len(stream) :][:1000])) % len(stream)
            segment.header.set(Slot.FRAMES_IN, ring.write_total // 160)

    pid = _child(produce_forever)
    received = bytearray()
    # Consume while it produces, then kill it mid-stream with data still in the ring.
    deadline = time.monotonic() + 30
    while ring.write_total < 2_000_000:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            reap(pid)
            pytest.fail(f"the producer wrote only {ring.write_total} bytes in 30 s")
        received += ring.read(700)
    os.kill(pid, signal.SIGKILL)
    status = reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    committed = ring.write_total
    while ring.readable():
        received += ring.read(4096)
    assert len(received) == committed
    assert all(byte == index % 251 for index, byte in enumerate(received))
    assert committed // 160 - segment.header.get(Slot.FRAMES_IN) in (0, 1)
    assert segment.name in list_segments(TEST_PREFIX)
    segment.close()
    assert segment.unlink() is True
    assert segment.name not in list_segments(TEST_PREFIX)


def test_write_all_keeps_frames_whole(segment):
    ring = segment.uplink  # 4096 bytes: 25 frames and 96 bytes spare
    frames = sum(ring.write_all(bytes(160)) for _ in range(30))
    assert frames == 25
    assert ring.readable() == 25 * 160


def test_attach_sees_the_same_memory_and_cannot_unlink(segment):
    segment.uplink.write(b"hello")
    other = CallSegment.attach(segment.name)
    try:
        assert other.uplink.read(5) == b"hello"
        assert segment.uplink.readable() == 0
        with pytest.raises(PermissionError):
            other.unlink()
    finally:
        other.close()


def test_attach_to_a_missing_segment_is_a_clear_error():
    with pytest.raises(SegmentGoneError, match="no shared memory segment"):
        CallSegment.attach(f"{TEST_PREFIX}.1.never-made")


def test_sweep_removes_dead_owners_segments_and_keeps_live_ones():
    dead_pid = _child(lambda: None)
    reap(dead_pid)
    stale = CallSegment.create(segment_name("stale", TEST_PREFIX, owner_pid=dead_pid))
    live = CallSegment.create(segment_name("live", TEST_PREFIX, owner_pid=os.getppid()))
    stale.close()
    live.close()
    removed = sweep(TEST_PREFIX)
    assert stale.name in removed
    assert live.name not in removed
    assert list_segments(TEST_PREFIX) == [live.name]
    assert live.unlink() is True


_ATTACH_AND_EXIT = """
import sys
from shm_ring import CallSegment
seg = CallSegment.attach(sys.argv[1])
assert seg.uplink.read(3) == b"abc", "wrong data"
seg.close()
from multiprocessing import resource_tracker
print(resource_tracker._resource_tracker._pid or "")  # the tracker this process started, if any
"""


def _interpreters() -> list[str]:
    found = []
    for minor in (11, 12, 13):
        candidates = [f"python3.{minor}"]
        candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python3"))
        for candidate in candidates:
            try:
                out = subprocess.run(
                    [candidate, "-c", "import sys; print(sys.version_info[1])"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip() == str(minor):
                found.append(candidate)
                break
    return found


@pytest.mark.parametrize("interpreter", _interpreters() or [sys.executable])
def test_no_tracker_warning_and_no_early_unlink_on_this_python(segment, interpreter):
    """Python 3.11/3.12's resource tracker unlinks attached segments when the attaching
    process exits and prints 'leaked shared_memory' warnings; ours must do neither."""
    segment.uplink.write(b"abc")
    result = subprocess.run(
        [interpreter, "-c", _ATTACH_AND_EXIT, segment.name],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert "resource_tracker" not in result.stderr and "leaked" not in result.stderr
    assert "Traceback" not in result.stderr
    # A tracker unlinks what is still registered when it shuts down, after this process
    # exited: once it is gone too, the name must still be there.
    tracker = result.stdout.strip()
    if tracker:
        wait_until(lambda: gone(int(tracker)), timeout=10)
    assert segment.name in list_segments(TEST_PREFIX)


@pytest.mark.parametrize("interpreter", _interpreters() or [sys.executable])
def test_creator_fork_and_destroy_is_silent_on_this_python(interpreter):
    script = f"""
import os
from shm_ring import CallSegment, segment_name, list_segments
seg = CallSegment.create(segment_name("fork", {TEST_PREFIX!r}))
pid = os.fork()
if pid == 0:
    seg.downlink.write(b"x" * 160)
    os._exit(0)
os.waitpid(pid, 0)
assert seg.downlink.read(1000) == b"x" * 160
seg.destroy()
assert list_segments({TEST_PREFIX!r}) == []
"""
    result = subprocess.run(
        [interpreter, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
