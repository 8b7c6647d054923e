"""Shared-memory ring throughput: prints one JSON object.

    python bench/ring_bench.py [--seconds 2]

- one_process: 160-byte write + read pairs in a loop (the cost each audio frame pays
  per ring hop inside a worker).
- two_processes: a forked producer writes 160-byte frames as fast as the ring accepts
  them, the parent reads them; throughput and nanoseconds per frame moved.
Target on the 2-core reference machine: >= 100,000 pairs per second in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shm_ring import CallSegment, segment_name  # noqa: E402

FRAME = 160
TARGET_PAIRS_PER_SECOND = 100_000  # the 2-core reference machine, one process


def one_process(seg: CallSegment, seconds: float) -> dict:
    ring = seg.uplink
    frame = bytes(range(FRAME))
    out = bytearray(FRAME)
    pairs = 0
    batch = 10_000
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            ring.write(frame)
            ring.read_into(out)
        pairs += batch
    elapsed = time.perf_counter() - start
    assert out == frame
    return {
        "pairs": pairs,
        "pairs_per_second": round(pairs / elapsed),
        "ns_per_pair": round(elapsed / pairs * 1e9),
        "mb_per_second": round(pairs * FRAME / elapsed / 1e6, 1),
    }


def two_processes(seg: CallSegment, seconds: float) -> dict:
    ring = seg.downlink
    frame = bytes(range(FRAME))
    pid = os.fork()
    if pid == 0:
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            for _ in range(1000):
                ring.write_all(frame)
        os._exit(0)
    out = bytearray(FRAME * 64)
    moved = 0
    start = time.perf_counter()
    finished = 0  # reaped once: a second waitpid would raise ChildProcessError
    while True:
        n = ring.read_into(out)
        moved += n
        if n == 0:
            if not finished:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished and ring.readable() == 0:
                break
    elapsed = time.perf_counter() - start
    frames = moved // FRAME
    return {
        "frames": frames,
        "frames_per_second": round(frames / elapsed),
        "ns_per_frame": round(elapsed / max(frames, 1) * 1e9),
        "mb_per_second": round(moved / elapsed / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    seg = CallSegment.create(segment_name("ringbench", "callbridge-bench"))
    try:
        result = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "frame_bytes": FRAME,
            "one_process": one_process(seg, args.seconds),
            "two_processes": two_processes(seg, args.seconds),
            "target_pairs_per_second": TARGET_PAIRS_PER_SECOND,
        }
        result["meets_target"] = result["one_process"]["pairs_per_second"] >= TARGET_PAIRS_PER_SECOND
    finally:
        seg.destroy()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
