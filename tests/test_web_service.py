"""The dashboard inside a real `callbridge run` on the simulators: 50 viewers polling the
live page cost the supervisor nothing it notices, and the web helper's crash mid-call costs
no call (the keeper starts it again)."""

from __future__ import annotations

import statistics
import threading
import time

import psutil
import pytest
import requests
from testenv import ended, free_port
from webtest import ADMIN, add_user, login

from shm_ring import wire

pytestmark = pytest.mark.slow

LONG_CALL = [{"say": 300}, {"silence": 60000}, {"hangup": True}]


def _dashboard(service, **overrides):
    port = free_port()
    svc = service(WEB_LISTEN=f"127.0.0.1:{port}", **overrides)
    base = f"http://127.0.0.1:{port}"
    add_user(svc.env, *ADMIN, "admin")
    svc.wait(lambda: _answers(base), timeout=15)
    return svc, base


def _answers(base: str) -> bool:
    try:
        return requests.get(base + "/login", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def web_helper(svc) -> psutil.Process | None:
    for child in psutil.Process(svc.proc.pid).children():
        try:
            if child.name() == "cb-web":
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _live_ids(session: requests.Session, base: str) -> list[str]:
    try:
        reply = session.get(base + "/api/live", timeout=5)
    except requests.RequestException:
        return []
    return [c["call_id"] for c in reply.json()["calls"]] if reply.status_code == 200 else []


def test_fifty_viewers_do_not_slow_status(service, asterisk):
    svc, base = _dashboard(service)
    call_id = asterisk.place_call(LONG_CALL)
    first = login(base, *ADMIN)
    svc.wait(lambda: call_id in _live_ids(first, base), timeout=15)
    stop = threading.Event()
    answered, failed = [0], []

    def viewer() -> None:
        s = requests.Session()
        s.cookies.update(first.cookies)  # its own connection, the same login
        while not stop.is_set():
            try:
                reply = s.get(base + "/api/live", timeout=10)
                assert reply.status_code == 200 and reply.json()["calls"][0]["call_id"] == call_id
                answered[0] += 1
            except Exception as exc:  # counted, and the test fails on it below
                failed.append(repr(exc))
            stop.wait(0.2)

    viewers = [threading.Thread(target=viewer, daemon=True) for _ in range(50)]
    for v in viewers:
        v.start()
    try:
        svc.wait(lambda: answered[0] >= 100, timeout=20)  # every viewer is polling now
        polled = answered[0]
        latencies = []
        for _ in range(30):
            started = time.monotonic()
            reply = wire.request(svc.socket, {"cmd": "status"})
            latencies.append((time.monotonic() - started) * 1000)
            assert reply["ok"] and reply["calls"][0]["call_id"] == call_id
            time.sleep(0.1)
        busy = svc.status()["supervisor"]["loop_busy_max_ms"]
    finally:
        stop.set()
        for v in viewers:
            v.join(15)
    print(
        f"status with 50 viewers: p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms; "
        f"{answered[0]} live polls answered; supervisor loop's longest pass {busy} ms"
    )
    assert not failed, failed[:3]
    assert answered[0] - polled > 50 * 3  # they went on polling while status was asked
    assert max(latencies) < 200
    asterisk.hangup(call_id)
    svc.wait(lambda: ended(asterisk, call_id), timeout=15)


def test_the_web_helper_s_crash_costs_no_call_and_it_comes_back(service, asterisk):
    svc, base = _dashboard(service)
    call_id = asterisk.place_call(LONG_CALL)
    s = login(base, *ADMIN)
    svc.wait(lambda: call_id in _live_ids(s, base), timeout=15)
    helper = web_helper(svc)
    assert helper is not None
    frames_before = svc.call_row(call_id)["frames_in"]
    helper.kill()
    svc.wait(lambda: (h := web_helper(svc)) is not None and h.pid != helper.pid, timeout=15)
    svc.wait(lambda: call_id in _live_ids(s, base), timeout=15)  # the same session, the same call
    row = svc.call_row(call_id)
    assert row is not None and row["frames_in"] > frames_before  # its audio never stopped
    assert not ended(asterisk, call_id)
    assert "the web helper exited; starting it again" in svc.log()
    asterisk.hangup(call_id)
    svc.wait(lambda: ended(asterisk, call_id), timeout=15)
