"""The ring benchmark runs and prints its JSON (a short run; figures live in the bench)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ring_bench.py"


def test_ring_bench_prints_json_figures():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "0.3"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    # Generous bound (10x below the target) so a loaded CI machine does not flake.
    assert figures["one_process"]["pairs_per_second"] > 10_000
    assert figures["two_processes"]["frames"] > 0
    assert figures["one_process"]["ns_per_pair"] > 0
