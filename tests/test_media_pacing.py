"""How one call's worker paces its audio and what a call costs, against the simulated Asterisk
and Realtime server as real processes: the caller's audio sent on at once, the agent's reply
in evenly paced frames, the send schedule following the caller's stream, and the wake-ups
per call-second.

Timing tests: their bounds are looser than the benchmarks' figures (docs/performance.md),
to leave room for a busy machine."""

from __future__ import annotations

import statistics

import pytest
from analysis import assert_paced, gaps_ms, loud, packets, session_events, uplink_latencies_ms
from harness import last_session, short_replies

from shm_ring import Slot

pytestmark = pytest.mark.slow


realtime = pytest.fixture(short_replies, scope="module", name="realtime")  # tests/harness.py


def test_uplink_is_immediate_and_every_frame_arrives(calls, asterisk, realtime):
    sup = calls()
    call = sup.place([{"say": 1500}, {"silence": 2500}, {"hangup": True}])
    assert sup.wait_ended(call) == 0
    record = asterisk.call(call.channel_id)
    session = last_session(realtime)
    appends = session_events(session, "in", "input_audio_buffer.append")
    assert appends[-1][1]["total"] == record["frames_sent"] * 160  # no frame lost or added
    latencies = uplink_latencies_ms(record, session)
    assert len(latencies) > 150
    ordered = sorted(latencies)
    p50, p99 = statistics.median(latencies), ordered[int(0.99 * (len(ordered) - 1))]
    # Target: 5 ms per frame (the benchmark measures 1.0 ms p99 for one call). Here the
    # median is held tight (any re-chunking would add 20 ms to it) and the tail loosely,
    # because this VM stalls every process now and then.
    assert p50 <= 2.0 and p99 <= 10.0 and max(latencies) <= 50.0, (
        f"uplink latency p50 {p50:.2f} p99 {p99:.2f} max {max(latencies):.2f} ms"
    )
    assert call.segment.header.get(Slot.FRAMES_IN) == record["frames_sent"]


def test_ten_second_reply_is_500_evenly_paced_frames(calls, asterisk, realtime_long):
    sup = calls(realtime_long)
    call = sup.place([{"say": 1000}, {"silence": 12500}, {"hangup": True}])
    assert sup.wait_ended(call, 30) == 0
    record = asterisk.call(call.channel_id)
    reply = loud(record)
    assert len(reply) == 500  # every byte of the 10 s reply, none dropped, none repeated
    assert_paced(gaps_ms(reply), tolerance=2.0)
    every = packets(record)
    assert len({p["ssrc"] for p in every}) == 1
    sequences = [p["sequence"] for p in every]
    assert all((b - a) % 65536 == 1 for a, b in zip(sequences, sequences[1:], strict=False))
    stamps = [p["timestamp"] for p in every]
    assert all((b - a) % 2**32 == 160 for a, b in zip(stamps, stamps[1:], strict=False))
    assert reply[0]["marker"] and sum(p["marker"] for p in every) <= 2  # talk-spurt starts only
    assert call.segment.header.get(Slot.UNDERRUNS) == 0


def test_a_stalled_worker_never_catches_up_in_a_burst(calls, asterisk, realtime_long):
    """The worker stopped for 100 ms in the middle of a reply (SIGSTOP, then SIGCONT): its
    schedule restarts after the stall (call_worker/media.py, RESCHEDULE_AFTER), so the
    caller sees one gap and never two frames less than 10 ms apart, where catching up on the
    old schedule would send five at once (kernel arrival stamps at the simulated caller)."""
    import os
    import signal
    import time

    sup = calls(realtime_long)
    call = sup.place([{"say": 1000}, {"silence": 6000}, {"hangup": True}])
    deadline = time.monotonic() + 10
    while call.segment.header.get(Slot.FRAMES_OUT) < 50:  # 1 s into the 10 s reply
        assert time.monotonic() < deadline, "the reply did not start"
        time.sleep(0.01)
    os.kill(call.pid, signal.SIGSTOP)
    try:
        time.sleep(0.1)  # the stall itself
    finally:
        os.kill(call.pid, signal.SIGCONT)
    assert sup.wait_ended(call, 30) == 0
    gaps = gaps_ms(packets(asterisk.call(call.channel_id)))
    assert len(gaps) > 300 and max(gaps) >= 90, f"the stall is not seen: longest gap {max(gaps):.1f} ms"
    assert min(gaps) >= 10.0, f"two frames {min(gaps):.2f} ms apart: a burst"
    assert call.segment.header.get(Slot.LATE_TICKS) >= 1  # the restart was counted


def test_a_call_costs_about_two_wake_ups_per_frame(calls, tmp_path):
    """One media thread: a packet in and a frame out per 20 ms, plus a little for replies
    and set-up (docs/performance.md). The worker of four threads and polling loops woke
    over 200 times per call-second; the benchmark's target is 110, this bound is loose."""
    import json

    sup = calls(CALL_RECORDS_DIR=str(tmp_path))
    script = [{"say": 1200}, {"silence": 2500}, {"say": 1200}, {"silence": 2500}, {"hangup": True}]
    call = sup.place(script)
    assert sup.wait_ended(call) == 0
    record = json.loads((tmp_path / f"{call.channel_id}.json").read_text())
    seconds = record["duration_s"]
    wakeups = record["rusage"]["ru_nvcsw"] / seconds
    assert seconds > 7 and record["frames_out"] > 100  # the call really talked
    assert wakeups < 150, f"{wakeups:.0f} voluntary context switches per call-second"


def test_the_send_schedule_follows_the_callers_and_one_wake_up_sends_both(calls, tmp_path):
    """While the caller's stream is steady, each frame to the caller leaves with the
    wake-up of a caller packet (call_worker/media.py, `_follow`): within a millisecond of
    the packet's send, and about one wake-up per 20 ms instead of two, with the pacing kept:
    no burst, gaps within FOLLOW_JOIN of 20 ms. A schedule that ignored the caller's would
    send at a random moment of the caller's 20 ms (about 1 in 20 within a millisecond)."""
    import bisect
    import json

    sup = calls(CALL_RECORDS_DIR=str(tmp_path))
    call = sup.place([{"say": 1200}, {"silence": 7000}, {"hangup": True}])
    assert sup.wait_ended(call) == 0
    caller = sup.asterisk.call(call.channel_id)
    sends = caller["send_times"]
    arrivals = [p["arrival"] for p in packets(caller)]
    settled = [t for t in arrivals if t > sends[0] + 3.0][:-5]  # steered in by then
    after_a_send = [t - sends[bisect.bisect_right(sends, t) - 1] for t in settled]
    within = sum(1 for lag in after_a_send if 0 <= lag <= 0.001) / len(after_a_send)
    # 90 % and more on a quiet machine; a loaded CI machine jitters the simulator's sends.
    assert len(settled) > 150 and within >= 0.5, f"{within:.0%} of frames within 1 ms of a caller frame"
    record = json.loads((tmp_path / f"{call.channel_id}.json").read_text())
    wakeups = record["rusage"]["ru_nvcsw"] / record["duration_s"]
    # About 60 on a quiet machine, 86 seen in CI, over 100 without following.
    assert wakeups < 95, f"{wakeups:.0f} voluntary context switches per call-second"
    assert_paced(gaps_ms(packets(caller)), tolerance=2.0)
