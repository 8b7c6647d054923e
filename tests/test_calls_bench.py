"""The call benchmark runs from a clean tree with one command and reports every figure the
issue asks for, measured outside callbridge. A short run with two calls: the figures
themselves (and their targets) belong to the benchmark's own runs, see
docs/performance.md; here only what must hold on any machine is asserted. The comparison
(bench/compare.py) measures two refs in one run, each from its own worktree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cost import call_cost

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "calls_bench.py"
COMPARE = ROOT / "bench" / "compare.py"
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
    "wakeups_per_call_second",
    "cpu_percent_per_call_kernel",
    "wakeups_per_call_second_reap",
    "supervisor_loop_busy_max_ms",
    "supervisor_loop_slow_passes",
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
    assert 0 < row["supervisor_loop_busy_max_ms"] < 1000
    assert "| 2 |" in (tmp_path / "calls-bench.md").read_text()
    # Wake-ups and CPU come from the workers' records, and the kernel's figures at the reap
    # agree with them (they also count the few milliseconds after the record is written).
    assert row["cost_source"] == "record" and row["calls_counted"] == row["workers_reaped"] == 2
    assert 50 < row["wakeups_per_call_second"] < 2000
    assert abs(row["wakeups_per_call_second_reap"] / row["wakeups_per_call_second"] - 1) < 0.1
    # Both CPU figures count the workers' whole lives: psutil's and the kernel's agree.
    assert abs(row["cpu_percent_per_call_kernel"] / row["cpu_percent_per_call"] - 1) < 0.25


def test_cost_of_records_without_usage_is_counted_at_the_reap(tmp_path):
    """Code whose records lack `rusage` (before issue 12) is measured from the reap log,
    over the same active seconds (duration minus set-up up to "bridged")."""
    records = tmp_path / "records"
    records.mkdir()
    for call_id in ("a", "b"):
        record = {"duration_s": 10.05, "setup_ms": {"worker_started": 5.0, "bridged": 55.0}}
        (records / f"{call_id}.json").write_text(json.dumps(record))
    usage = {"ru_utime": 0.1, "ru_stime": 0.05, "ru_nvcsw": 2000, "ru_nivcsw": 100, "ru_minflt": 900}
    reap_log = tmp_path / "reaped.jsonl"
    lines = [{"pid": 11, **usage}, {"pid": 12, **usage}, {"pid": 99, **usage, "ru_nvcsw": 10**6}]
    reap_log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cost = call_cost(records, reap_log, worker_pids={11, 12})  # 99: a helper, not a worker
    assert cost["cost_source"] == "reap"
    assert cost["wakeups_per_call_second"] == 200.0
    assert cost["cpu_percent_per_call_kernel"] == 1.5
    assert cost["minor_faults_per_call"] == 900
    only_one = call_cost(records, reap_log, worker_pids={11})
    assert only_one["cost_source"] == "reap (1 of 2)" and only_one["wakeups_per_call_second"] == 200.0


@pytest.mark.slow
def test_compare_measures_each_ref_from_its_own_worktree(tmp_path):
    """One call against HEAD (a worktree the comparison adds and removes) and against this
    tree: one table with each figure before and after, and the service of each run
    imported the worker from the tree meant."""
    result = subprocess.run(
        [sys.executable, str(COMPARE), "--before", "HEAD", "--after", ".", "--calls", "1"]
        + ["--seconds", "7", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "compare-calls.json").read_text())
    before, after = sorted(report["results"], key=lambda r: r["side"] != "before")
    assert (before["side"], after["side"]) == ("before", "after")
    assert Path(after["code_under_test"]) == ROOT
    assert Path(before["code_under_test"]) != ROOT and not Path(before["code_under_test"]).exists()
    for row in (before, after):
        assert row["sessions_matched"] == 1 and row["frames_lost"] == 0, row
        assert row["wakeups_per_call_second"] and row["cpu_percent_per_call_kernel"], row
    lines = (tmp_path / "compare-calls.md").read_text().splitlines()
    assert "| figure | 1 before | 1 after | 1 after/before |" in lines
    assert any(line.startswith("| wake-ups per call-second |") for line in lines)
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True)
    assert before["code_under_test"] not in worktrees.stdout


@pytest.mark.slow
def test_the_plain_baseline_carries_calls_beside_callbridge_and_the_ratios_are_printed(tmp_path):
    """bench/compare.py --baseline plain on the simulators: the plain bridge (one process, a
    thread per direction per call, bench/plain_bridge.py) carries the same calls with nothing
    lost, its cost comes from its own counters, and the table holds each run, the medians
    and callbridge / plain ratios."""
    result = subprocess.run(
        [sys.executable, str(COMPARE), "--baseline", "plain", "--calls", "2", "--repeat", "2"]
        + ["--seconds", "7", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "compare-calls.json").read_text())
    plain = [r for r in report["results"] if r["side"] == "before"]
    ours = [r for r in report["results"] if r["side"] == "after"]
    assert len(plain) == len(ours) == 2
    for row in plain:
        assert row["code_under_test"] == "bench/plain_bridge.py"
        assert row["cost_source"] == "plain bridge's getrusage" and row["calls_counted"] == 2, row
        # The same measurement outside the bridge as for callbridge: both calls set up,
        # heard and paced, nothing lost, their sessions found by the callers' tags.
        assert row["sessions_matched"] == 2 and row["frames_lost"] == 0 and row["bursts"] == 0, row
        assert row["setup_p99_ms"] < 1000 and row["frames_lost"] == 0
        assert 0 < row["cpu_percent_per_call"] < 50 and row["wakeups_per_call_second"] > 50, row
    assert all(Path(r["code_under_test"]) == ROOT for r in ours)
    lines = (tmp_path / "compare-calls.md").read_text().splitlines()
    assert "plain bridge (bench/plain_bridge.py)" in lines[0]
    header = next(line for line in lines if line.startswith("| figure |"))
    assert "| 2 median plain | 2 median callbridge | 2 median callbridge/plain |" in header
    pacing = next(line for line in lines if line.startswith("| pacing dev p99 ms |"))
    assert len(pacing.split("|")) == 2 + 3 * 3 + 1  # two runs and the median, three columns each


def test_the_callers_streams_steadiness_is_measured_against_each_streams_own_clock():
    """bench/report.py::caller_stream: a steady stream at any phase is all within 0.5 ms; one
    with 1 ms of jitter (normal) has about 38 % within 0.5 ms and 68 % within 1 ms."""
    import random

    from bench.report import caller_stream

    steady = [(1000.0137 + i * 0.02, i) for i in range(500)]
    assert caller_stream([steady])["caller_in_within_0_5ms_share"] == 1.0
    rng = random.Random(7)
    jittered = [(2000.0 + i * 0.02 + rng.gauss(0, 0.001), i) for i in range(2000)]
    figures = caller_stream([steady, jittered])
    jitter_only = caller_stream([jittered])
    assert 0.33 < jitter_only["caller_in_within_0_5ms_share"] < 0.45
    assert 0.62 < jitter_only["caller_in_within_1ms_share"] < 0.75
    assert 0.9 < jitter_only["caller_in_gap_dev_p50_ms"] < 1.1  # |N(0, 2 ms^2)|'s median
    assert figures["caller_in_within_0_5ms_share"] > jitter_only["caller_in_within_0_5ms_share"]
