"""The ring benchmark meets its target: 100,000 write + read pairs of a 160-byte frame a
second in one process (bench/ring_bench.py prints the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ring_bench.py"
TARGET_PAIRS_PER_SECOND = 100_000


def test_ring_bench_meets_its_target():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "0.5"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    print(result.stdout)  # the figures, for `pytest -s` and for the report of a failure
    figures = json.loads(result.stdout)
    assert figures["target_pairs_per_second"] == TARGET_PAIRS_PER_SECOND
    # The target itself, not a fraction of it: the reference VM measures about 490,000 to
    # 690,000 pairs a second, so the target leaves room for a second busy process on a
    # 2-core machine (which halves this one's share) and still catches a ring that got
    # several times slower.
    pairs = figures["one_process"]["pairs_per_second"]
    assert pairs >= TARGET_PAIRS_PER_SECOND, f"{pairs} pairs/s, target {TARGET_PAIRS_PER_SECOND}"
    assert figures["meets_target"] is True
    assert figures["one_process"]["ns_per_pair"] <= 1e9 / TARGET_PAIRS_PER_SECOND
    # Across processes the forked producer's frames reached the reader (no target there:
    # that throughput is informational).
    assert figures["two_processes"]["frames"] > 0
