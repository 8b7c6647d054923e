"""Where a frame's milliseconds go, per frame: the benchmarks' view into the media loop.

Off unless the benchmark sets CALLBRIDGE_FRAME_TRACE to a directory (bench/frame_times.py
reads what it leaves there; docs/performance.md shows the histograms). Then the media loop
hands each frame it sends to `FrameTrace.frame`, which keeps one row of times, relative
to the frame's deadline:

- woke: when the select() before the frame returned (a late wake-up: the timer, the
  scheduler, or the interpreter lock held by another thread of the worker);
- tick / send / sendto: when the link work of the tick began, when the frame's own work
  began (the link work's end), when its sendto began, and when it returned;
- run delay: how long the media thread waited runnable but not running since the frame
  before (the kernel's /proc/thread-self/schedstat);
- minor faults: page faults of the media thread since the frame before (getrusage);
- gc: time spent in garbage collection, by any thread of the worker, since the frame before
  (it holds the interpreter lock, so it stalls the media thread wherever it runs);
- path: 0 sent at its deadline, 1 sent with a caller packet's wake-up (media.py's follow).

Reading schedstat and getrusage is two syscalls per frame, a few microseconds, on only
while tracing. Rows fill chunks of a minute of frames (240 KB, made when the last is full:
no copy of what is kept, no 15 MB taken up front); at the end of the call they go to
DIR/<pid>.frames (float64s, FIELDS per row) in one write. A trace that cannot be written
is logged and lost: the call is not the trace's.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import time
from array import array

log = logging.getLogger(__name__)

VARIABLE = "CALLBRIDGE_FRAME_TRACE"
FIELDS = ("deadline", "woke", "tick", "send", "sendto", "sent", "run_delay", "minflt", "gc", "path")
CHUNK_FRAMES = 50 * 60  # a minute of frames per chunk
MAX_FRAMES = 50 * 3600  # an hour of frames (15 MB): a longer call keeps its first hour


class FrameTrace:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, f"{os.getpid()}.frames")
        self.chunks: list[array] = []
        self.count = 0
        self.gc_seconds = 0.0
        self._gc_started = 0.0
        self._schedstat = -1
        self._last = (0.0, 0.0, 0.0)  # run delay, minor faults, gc: at the frame before
        gc.callbacks.append(self._gc)

    @classmethod
    def from_env(cls) -> FrameTrace | None:
        directory = os.environ.get(VARIABLE)
        return cls(directory) if directory else None

    def _gc(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            self.gc_seconds += time.monotonic() - self._gc_started

    def _counters(self) -> tuple[float, float, float]:
        if self._schedstat < 0:  # opened by the media thread: thread-self is the caller's
            self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        run_delay = int(os.pread(self._schedstat, 64, 0).split()[1]) / 1e9
        return run_delay, float(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt), self.gc_seconds

    def frame(
        self, deadline: float, woke: float, tick: float, send: float, sendto: float, sent: float, path: int
    ) -> None:
        if self.count >= MAX_FRAMES:
            return
        counters = self._counters()
        last, self._last = self._last, counters
        if self.count % CHUNK_FRAMES == 0:
            self.chunks.append(array("d", bytes(8 * len(FIELDS) * CHUNK_FRAMES)))
        row = (self.count % CHUNK_FRAMES) * len(FIELDS)
        self.chunks[-1][row : row + len(FIELDS)] = array(
            "d",
            (
                deadline,
                woke - deadline,
                tick - deadline,
                send - deadline,
                sendto - deadline,
                sent - deadline,
                counters[0] - last[0] if self.count else 0.0,
                counters[1] - last[1] if self.count else 0.0,
                counters[2] - last[2],
                float(path),
            ),
        )
        self.count += 1

    def close(self) -> None:
        """Write the rows (once, at the end of the call: no I/O while audio flows)."""
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._schedstat >= 0:
            os.close(self._schedstat)
            self._schedstat = -1
        rows = array("d")
        for chunk in self.chunks:
            rows.extend(chunk)
        del rows[self.count * len(FIELDS) :]  # the last chunk's unused rows
        try:
            with open(self.path, "wb") as out:
                out.write(rows.tobytes())
        except OSError as exc:
            log.warning("frame trace not written to %s: %s", self.path, exc)
