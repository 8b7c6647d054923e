"""Two callbridge instances share one (simulated) Asterisk, each with its own ARI app: one
is SIGKILLed mid-call and started again, and its reconciliation must not touch the other's
calls, whose callers keep every frame of their replies."""

from __future__ import annotations

import os
import signal

import pytest
from analysis import assert_paced, gaps_ms, loud
from service import Service
from testenv import TEST_PREFIX

pytestmark = pytest.mark.slow


def test_restarting_one_instance_leaves_the_others_calls_whole(asterisk, realtime, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Service(asterisk, realtime, tmp_path / "a", TEST_PREFIX, ARI_APP_NAME="openai-app").start()
    peer = Service(asterisk, realtime, tmp_path / "b", TEST_PREFIX, ARI_APP_NAME="peer-app").start()
    again = None
    try:
        peer_calls = [
            asterisk.place_call([{"say": 1000}, {"silence": 6000}, {"hangup": True}], app="peer-app")
            for _ in range(3)
        ]
        first_calls = [asterisk.place_call([{"say": 800}, {"silence": 60000}]) for _ in range(2)]
        first.wait(lambda: len(r := first.status()["calls"]) == 2 and all(x["phase"] == "active" for x in r))
        peer.wait(lambda: all((r := peer.call_row(c)) and r["frames_out"] >= 25 for c in peer_calls))
        os.kill(first.proc.pid, signal.SIGKILL)  # mid-reply for the peer's callers
        first.proc.wait()
        again = Service(asterisk, realtime, tmp_path / "a", TEST_PREFIX, ARI_APP_NAME="openai-app").start()
        again.wait(
            lambda: all(asterisk.call(c, packets=False)["hangup"] is not None for c in first_calls),
            timeout=15,
        )
        peer.wait(
            lambda: all(asterisk.call(c, packets=False)["hangup"] is not None for c in peer_calls), timeout=20
        )
        for call_id in peer_calls:
            record = asterisk.call(call_id)
            assert record["hangup_by"] == "caller", call_id  # not cut by the other instance
            reply = loud(record)
            assert len(reply) == 150, f"{call_id}: {len(reply)} of 150 reply frames"
            assert_paced(gaps_ms(reply), tolerance=3.0)
        again.wait(lambda: not asterisk.state()["channels"] and not asterisk.state()["bridges"], timeout=15)
    finally:
        for svc in (peer, again, first):
            if svc is not None:
                svc.stop()
