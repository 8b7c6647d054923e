"""Issue 27's baseline on the real Asterisk: bench/plain_bridge.py (one process, a thread per
direction per call) carries sipp's calls through Asterisk 22 and is measured exactly as
callbridge is (bench/asterisk_bench.py: set-up seen by an ARI observer, pacing from the
kernel's capture at the caller and as frames leave the bridge, cost from its own counters),
so `bench/compare.py --bench asterisk --baseline plain` compares like with like."""

from __future__ import annotations

from bench import asterisk_bench


def test_the_plain_bridge_carries_real_calls_and_is_measured_like_callbridge(
    bridge, real_asterisk, realtime, voices, tmp_path
):
    result = asterisk_bench.measure(
        real_asterisk,
        realtime,
        voices["question"],
        calls=3,
        rate=10,
        work=tmp_path,
        seconds=5.0,
        baseline="plain",
    )
    assert result["sipp_exit"] == 0, result.get("sipp_output")
    assert result["code_under_test"] == "bench/plain_bridge.py"
    assert result["calls_measured"] == 3 and result["downlink_streams"] == 3, result
    # 5 s of call: about 250 frames each way per call, none lost, at the caller and as they
    # leave the bridge.
    assert result["frames_paced"] > 600 and result["egress_frames_paced"] > 600, result
    assert result["frames_lost"] == result["egress_frames_lost"] == 0, result
    # No burst as frames leave the bridge (its own schedule's rule); at the caller Asterisk's
    # relaying adds its own jitter, which this test does not judge.
    assert result["egress_bursts"] == 0, result
    assert result["cost_source"] == "plain bridge's getrusage" and result["calls_counted"] == 3, result
    assert 0 < result["cpu_percent_per_call"] < 50 and result["wakeups_per_call_second"] > 50, result
    assert result["setup_p99_ms"] < 1000, result
