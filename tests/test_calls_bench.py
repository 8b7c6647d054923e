"""The call benchmark runs from a clean tree with one command and reports every figure the
issue asks for, measured outside callbridge. A short run with two calls: the figures
themselves (and their targets) belong to the benchmark's own runs, see
docs/performance.md; here only what must hold on any machine is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "calls_bench.py"
FIGURES = [
    "setup_p99_ms",
    "uplink_p99_ms",
    "downlink_first_audio_p99_ms",
    "pacing_dev_p50_ms",
    "pacing_dev_p99_ms",
    "pacing_dev_max_ms",
    "bursts",
    "frames_lost",
    "barge_in_stop_max_ms",
    "cpu_percent_per_call",
    "worker_uss_max_mb",
    "supervisor_rss_mb",
    "load_generator_cpu_percent",
    "callbridge_cpu_percent",
    "inside_bridged_p99_ms",
]


@pytest.mark.slow
def test_two_calls_report_every_figure_with_nothing_lost(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--calls", "2", "--seconds", "9", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "calls-bench.json").read_text())
    (row,) = report["results"]
    missing = [name for name in FIGURES if row.get(name) is None]
    assert not missing, row
    assert row["sessions_matched"] == 2 and row["peak_live_calls"] == 2
    assert row["bursts"] == 0 and row["frames_lost"] == 0
    # Generous bounds for a loaded CI machine; the benchmark's runs hold the real figures.
    assert row["setup_p99_ms"] < 1000 and row["uplink_p99_ms"] < 100
    assert 0 < row["worker_uss_max_mb"] < 30
    assert "| 2 |" in (tmp_path / "calls-bench.md").read_text()
