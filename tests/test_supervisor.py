"""The supervisor as a real `callbridge run` process with real workers, against the
simulated Asterisk and Realtime server: isolation, crashes, restarts, draining, systemd,
health. The control socket and the CLI are in test_control_socket.py."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil
import pytest
from analysis import assert_paced, gaps_ms, loud
from harness import AsteriskSim
from service import Service
from testenv import TEST_PREFIX

from shm_ring import list_segments

pytestmark = pytest.mark.slow


def _ended(asterisk: AsteriskSim, call_ids: list[str]) -> bool:
    import requests

    calls = {c["channel_id"]: c for c in requests.get(f"{asterisk.base}/sim/calls", timeout=10).json()}
    return all(calls[c]["hangup"] is not None for c in call_ids)


def test_killing_one_worker_costs_the_other_calls_nothing(service, asterisk, api):
    svc = service()
    script = [{"say": 1000}, {"silence": 5000}, {"hangup": True}]
    call_ids = [asterisk.place_call(script) for _ in range(10)]
    victim = call_ids[3]
    row = svc.wait(lambda: (r := svc.call_row(victim)) and r["frames_out"] >= 25 and r)  # mid-reply
    assert row["phase"] == "active" and row["pid"] > 0
    seen_in_status = {r["call_id"] for r in svc.status()["calls"]}
    assert set(call_ids) <= seen_in_status
    killed_at = time.monotonic()
    os.kill(row["pid"], signal.SIGKILL)
    svc.wait(lambda: asterisk.call(victim, packets=False)["hangup"] is not None, timeout=5)
    assert asterisk.call(victim, packets=False)["hangup"] - killed_at <= 1.0
    svc.wait(lambda: not [s for s in list_segments(TEST_PREFIX) if s.endswith(victim)], timeout=2)
    svc.wait(lambda: _ended(asterisk, call_ids), timeout=20)
    for call_id in call_ids:
        if call_id == victim:
            continue
        record = asterisk.call(call_id)
        reply = loud(record)
        assert len(reply) == 150, f"{call_id}: {len(reply)} reply frames"
        assert_paced(gaps_ms(reply), tolerance=3.0)
    svc.wait(lambda: f"worker {row['pid']} died (signal:SIGKILL)" in svc.log())
    svc.wait(lambda: svc.status()["supervisor"]["calls_live"] == 0)
    supervisor = svc.status()["supervisor"]
    assert supervisor["calls_failed"] == 1
    assert svc.log().count("call summary:") == 10
    # Ten calls, one killed: the loop was busy, and never for long (supervisor/loop_watch.py).
    assert 0 < supervisor["loop_busy_max_ms"] < 1000


def test_a_worker_killed_by_a_real_time_signal_ends_only_its_call(service, asterisk):
    """signal.Signals(SIGRTMIN+1) raises: the reap must describe it and go on."""
    svc = service()
    script = [{"say": 800}, {"silence": 4000}, {"hangup": True}]
    call_ids = [asterisk.place_call(script) for _ in range(3)]
    victim = call_ids[1]
    row = svc.wait(lambda: (r := svc.call_row(victim)) and r["phase"] == "active" and r)
    os.kill(row["pid"], signal.SIGRTMIN + 1)
    svc.wait(lambda: f"worker {row['pid']} died (signal:SIGRTMIN+1)" in svc.log(), timeout=5)
    svc.wait(lambda: asterisk.call(victim, packets=False)["hangup_by"] == "ari", timeout=5)
    later = asterisk.place_call([{"say": 600}, {"silence": 1500}, {"hangup": True}])  # still taking calls
    svc.wait(lambda: _ended(asterisk, call_ids + [later]), timeout=20)
    for call_id in (call_ids[0], call_ids[2], later):
        assert asterisk.call(call_id, packets=False)["hangup_by"] == "caller"  # lived to the end
    svc.wait(lambda: svc.status()["supervisor"]["calls_live"] == 0)
    assert svc.status()["supervisor"]["calls_failed"] == 1
    assert "Traceback" not in svc.log()


def test_supervisor_killed_workers_follow_and_a_new_one_cleans_up(service, asterisk):
    svc = service()
    call_ids = [asterisk.place_call([{"say": 800}, {"silence": 30000}]) for _ in range(5)]
    rows = svc.wait(
        lambda: len(r := svc.status()["calls"]) == 5 and all(x["phase"] == "active" for x in r) and r
    )
    pids = [r["pid"] for r in rows]
    svc.proc.kill()
    svc.proc.wait()
    gone_by = time.monotonic() + 2.0

    def workers_gone() -> bool:
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
        return True

    svc.wait(workers_gone, timeout=3)
    assert time.monotonic() <= gone_by + 0.5
    fresh = service()  # a new supervisor: sweep and reconcile
    fresh.wait(lambda: _ended(asterisk, call_ids), timeout=5)
    fresh.wait(lambda: list_segments(TEST_PREFIX) == [], timeout=5)
    state = asterisk.state()
    assert state["channels"] == [] and state["bridges"] == []


def test_a_failed_reconciliation_is_retried_without_a_reconnect(service, asterisk):
    """Leftovers of a killed supervisor, and ARI REST failing at the next start: the new
    supervisor retries on its own tick instead of waiting for an events reconnect."""
    import requests

    svc = service()
    call_ids = [asterisk.place_call([{"say": 800}, {"silence": 30000}]) for _ in range(2)]
    rows = svc.wait(
        lambda: len(r := svc.status()["calls"]) == 2 and all(x["phase"] == "active" for x in r) and r
    )
    for pid in [svc.proc.pid] + [row["pid"] for row in rows]:  # everything dies at once
        os.kill(pid, signal.SIGKILL)
    svc.proc.wait()
    assert len(asterisk.state()["bridges"]) == 2  # left behind, with their callers
    requests.post(f"{asterisk.base}/sim/fail-rest", params={"request": "GET /bridges", "count": 1}, timeout=5)
    fresh = service()
    connections = asterisk.state()["connections"]
    fresh.wait(lambda: _ended(asterisk, call_ids) and not asterisk.state()["bridges"], timeout=10)
    log = fresh.log()
    assert "reconciliation with Asterisk failed" in log and "succeeded on a retry" in log
    assert asterisk.state()["connections"] == connections  # no events reconnect was needed


def test_ari_restart_mid_call_calls_continue_and_events_resume(service, asterisk):
    svc = service()
    call_ids = [asterisk.place_call([{"say": 800}, {"silence": 4500}, {"hangup": True}]) for _ in range(3)]
    svc.wait(lambda: len(svc.status()["calls"]) == 3)
    connects = asterisk.state()["connections"]
    import requests

    requests.post(f"{asterisk.base}/sim/drop-events", timeout=5)
    svc.wait(lambda: asterisk.state()["connections"] > connects and "openai-app" in asterisk.state()["apps"])
    assert svc.status()["supervisor"]["ari_connects"] == 2
    svc.wait(lambda: _ended(asterisk, call_ids), timeout=15)
    svc.wait(lambda: svc.log().count("call summary:") == 3, timeout=5)
    assert svc.log().count("end=caller_hangup") == 3
    for call_id in call_ids:
        assert len(loud(asterisk.call(call_id))) == 150  # the reply played through the reconnect


def test_sigterm_drains_then_a_second_signal_ends_calls_at_once(service, asterisk):
    svc = service(DRAIN_TIMEOUT_SECONDS="30")
    first = asterisk.place_call([{"say": 800}, {"silence": 2500}, {"hangup": True}])
    long_call = asterisk.place_call([{"say": 800}, {"silence": 60000}])
    svc.wait(lambda: len(svc.status()["calls"]) == 2)
    svc.signal(signal.SIGTERM)
    svc.wait(lambda: svc.status()["supervisor"]["draining"])
    late = asterisk.place_call([{"silence": 5000}])  # arrives during the drain: turned away
    svc.wait(lambda: asterisk.call(late, packets=False)["hangup"] is not None, timeout=5)
    assert [p["media"] for p in asterisk.call(late, packets=False)["playbacks"]] == [
        "sound:all-circuits-busy-now"
    ]
    svc.wait(lambda: asterisk.call(first, packets=False)["hangup"] is not None, timeout=10)
    assert asterisk.call(first, packets=False)["hangup_by"] == "caller"  # allowed to finish
    assert svc.proc.poll() is None  # still draining the long call
    second_at = time.monotonic()
    svc.signal(signal.SIGINT)
    assert svc.proc.wait(5) == 0
    assert time.monotonic() - second_at < 3
    record = asterisk.call(long_call, packets=False)
    assert record["hangup_by"] == "ari"
    assert "end=shutdown" in svc.log()


def test_drain_timeout_ends_remaining_calls(service, asterisk):
    svc = service(DRAIN_TIMEOUT_SECONDS="1")
    call_id = asterisk.place_call([{"silence": 60000}])
    svc.wait(lambda: len(svc.status()["calls"]) == 1)
    svc.signal(signal.SIGTERM)
    assert svc.proc.wait(10) == 0
    assert asterisk.call(call_id, packets=False)["hangup_by"] == "ari"


def test_calls_over_the_limit_hear_busy_and_are_hung_up(service, asterisk):
    svc = service(MAX_CONCURRENT_CALLS="1")
    kept = asterisk.place_call([{"silence": 3000}, {"hangup": True}])
    svc.wait(lambda: len(svc.status()["calls"]) == 1)
    extra = asterisk.place_call([{"silence": 5000}])
    svc.wait(lambda: asterisk.call(extra, packets=False)["hangup"] is not None, timeout=5)
    assert [p["media"] for p in asterisk.call(extra, packets=False)["playbacks"]] == [
        "sound:all-circuits-busy-now"
    ]
    assert svc.status()["supervisor"]["calls_rejected_busy"] == 1
    svc.wait(lambda: asterisk.call(kept, packets=False)["hangup"] is not None, timeout=10)


def test_systemd_hears_ready_watchdog_status_and_stopping(asterisk, realtime, tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(0.2)
    svc = Service(asterisk, realtime, tmp_path, TEST_PREFIX)
    svc.env["NOTIFY_SOCKET"] = notify_path
    svc.start()
    messages: list[str] = []

    def heard(text: str) -> bool:
        try:
            while True:
                messages.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
        return any(text in m for m in messages)

    try:
        svc.wait(lambda: heard("READY=1"))
        svc.wait(lambda: heard("WATCHDOG=1"), timeout=5)
        svc.wait(lambda: heard("STATUS=0 live calls, ARI connected"), timeout=5)
        svc.signal(signal.SIGTERM)
        svc.wait(lambda: heard("STOPPING=1"), timeout=5)
        assert svc.proc.wait(10) == 0
    finally:
        svc.stop()
        listener.close()
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    stopping = next(i for i, m in enumerate(messages) if "STOPPING=1" in m)
    assert ready < stopping


def test_a_frozen_worker_is_detected_and_its_call_ended(service, asterisk):
    svc = service()
    call_id = asterisk.place_call([{"say": 800}, {"silence": 60000}])
    row = svc.wait(lambda: (r := svc.call_row(call_id)) and r["phase"] == "active" and r)
    os.kill(row["pid"], signal.SIGSTOP)  # every thread stops: heartbeats go stale
    svc.wait(lambda: "stuck" in ((svc.call_row(call_id) or {}).get("health", "")), timeout=10)
    svc.wait(lambda: asterisk.call(call_id, packets=False)["hangup"] is not None, timeout=25)
    assert f"worker {row['pid']} did not end" in svc.log()
    assert "died (signal:SIGKILL)" in svc.log()


def test_malformed_ari_events_change_nothing(service, asterisk):
    import requests

    svc = service()
    garbage = [
        "not json at all",
        "[1, 2, 3]",
        '"a string"',
        '{"no": "type"}',
        '{"type": 17}',
        '{"type": "StasisStart", "channel": "not an object"}',
        '{"type": "StasisStart", "channel": {"id": "../../etc/passwd", "name": "PJSIP/x"}}',
        '{"type": "StasisStart", "channel": {"id": "ok-id-1", "name": "PJSIP/x", "caller": 5, "dialplan": []}}',
        '{"type": "PlaybackFinished", "playback": "x"}',
        '{"type": "StasisEnd", "channel": {"id": ["list"]}}',
        '{"type": "ChannelDestroyed"}',
        '{"type": "SomethingNew", "channel": {"id": "z"}}',
    ]
    for raw in garbage:
        assert requests.post(f"{asterisk.base}/sim/emit", data=raw, timeout=5).json()["sent"]
    svc.wait(lambda: "ignoring a frame that is not JSON" in svc.log())
    assert svc.proc.poll() is None and svc.status()["ok"]
    assert "ignoring a channel whose id no ARI request can name: '../../etc/passwd'" in svc.log()
    # A channel that ARI does not know: the worker's set-up fails cleanly and is reaped.
    svc.wait(lambda: svc.status()["supervisor"]["calls_live"] == 0, timeout=20)
    call_id = asterisk.place_call([{"say": 800}, {"silence": 4500}, {"hangup": True}])
    svc.wait(lambda: asterisk.call(call_id, packets=False)["hangup"] is not None, timeout=15)
    assert len(loud(asterisk.call(call_id))) == 150  # a normal call still works in full
    assert list_segments(TEST_PREFIX) == [] or svc.wait(lambda: list_segments(TEST_PREFIX) == [])


def test_a_caller_with_an_unusable_id_is_turned_away_and_never_adopted_again(service, asterisk):
    """Issue 22, item 15: such a caller used to sit in Stasis in silence, and every
    reconciliation adopted and refused it again."""
    from urllib.parse import quote

    import requests

    svc = service()
    odd = asterisk.place_call([{"silence": 20000}], channel_id="bad!id " + "x" * 70)
    svc.wait(lambda: asterisk.call(odd, packets=False)["hangup"] is not None, timeout=15)
    record = asterisk.call(odd, packets=False)
    assert (record["hangup_by"], record["hangup_cause"], record["playbacks"]) == ("ari", 17, [])
    # An id no ARI path can name ("a/b" would name another resource): never asked about,
    # remembered, refused once, however many reconciliations see it.
    unnamable = asterisk.place_call([{"silence": 20000}], channel_id="a/b")
    svc.wait(lambda: "no ARI request can name" in svc.log())
    listed = svc.status()["supervisor"]["reconciliations"]
    requests.post(f"{asterisk.base}/sim/drop-events", timeout=5)
    svc.wait(lambda: svc.status()["supervisor"]["reconciliations"] > listed, timeout=15)
    requests.post(f"{asterisk.base}/sim/calls/{quote(unnamable, safe='')}/hangup", timeout=5)
    assert svc.log().count("no ARI request can name") == 1
    assert svc.log().count("refusing a channel with an unusable id") == 1
    assert "adopting a call" not in svc.log()
    assert svc.status()["supervisor"]["calls_live"] == 0


def test_a_caller_turned_away_while_draining_is_hung_up_before_the_exit(service, asterisk):
    svc = service(DRAIN_TIMEOUT_SECONDS="30")
    last = asterisk.place_call([{"say": 600}, {"silence": 300}, {"hangup": True}])
    svc.wait(lambda: len(svc.status()["calls"]) == 1)
    svc.signal(signal.SIGTERM)
    svc.wait(lambda: svc.status()["supervisor"]["draining"])
    late = asterisk.place_call([{"silence": 20000}])  # turned away; the live call ends first
    assert svc.proc.wait(15) == 0
    assert asterisk.call(last, packets=False)["hangup_by"] == "caller"
    record = asterisk.call(late, packets=False)
    assert [p["media"] for p in record["playbacks"]] == ["sound:all-circuits-busy-now"]
    assert record["hangup_by"] == "ari"  # before the supervisor exited, not left in Stasis


def test_a_restart_never_adopts_a_caller_a_dead_run_turned_away(service, asterisk):
    svc = service(MAX_CONCURRENT_CALLS="1")
    kept = asterisk.place_call([{"say": 600}, {"silence": 60000}])
    svc.wait(lambda: len(svc.status()["calls"]) == 1)
    turned = asterisk.place_call([{"silence": 60000}])
    svc.wait(lambda: asterisk.call(turned, packets=False)["playbacks"])
    everything = [svc.proc.pid] + [p.pid for p in psutil.Process(svc.proc.pid).children(recursive=True)]
    for pid in everything:  # supervisor, worker and the busy helper die together
        os.kill(pid, signal.SIGKILL)
    svc.proc.wait()
    assert asterisk.call(turned, packets=False)["hangup"] is None  # still waiting in Stasis
    fresh = service()
    fresh.wait(lambda: asterisk.call(turned, packets=False)["hangup"] is not None, timeout=10)
    fresh.wait(lambda: asterisk.call(kept, packets=False)["hangup"] is not None, timeout=10)
    assert asterisk.call(turned, packets=False)["hangup_by"] == "ari"
    assert "adopting" not in fresh.log()
    assert fresh.status()["supervisor"]["calls_taken"] == 0
