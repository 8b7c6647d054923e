"""A slow Asterisk never stalls the supervisor: every ARI REST reply 3 s late (today's
timeouts were 1 s in the supervisor and 5 s in the workers), the events connection dropped
once, five calls ending and one worker killed. Meanwhile a new call is admitted within
100 ms of its StasisStart, `status` answers within 200 ms, WATCHDOG=1 keeps coming, and in
the end nothing is left in Asterisk or in shared memory."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import datetime

import requests
from service import Service
from testenv import TEST_PREFIX

from shm_ring import list_segments, wire

REST_DELAY = 3.0


def _sim_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _log_time(line: str) -> float:
    return datetime.strptime(line[:23] + "+0000", "%Y-%m-%d %H:%M:%S,%f%z").timestamp()


class StatusProbe(threading.Thread):
    """Asks `status` every 50 ms and keeps the slowest answer."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.slowest = 0.0
        self.answers = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            began = time.monotonic()
            wire.request(self.path, {"cmd": "status"}, timeout=5)
            self.slowest = max(self.slowest, time.monotonic() - began)
            self.answers += 1


class Watchdog(threading.Thread):
    """Collects the times of WATCHDOG=1 on a real notify socket."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.beats: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                if b"WATCHDOG=1" in self.sock.recv(4096):
                    self.beats.append(time.monotonic())
            except TimeoutError:
                pass
        self.sock.close()


def test_a_slow_asterisk_stalls_nothing(asterisk, realtime, tmp_path):
    watchdog = Watchdog(str(tmp_path / "notify.sock"))
    watchdog.start()
    svc = Service(asterisk, realtime, tmp_path, TEST_PREFIX)
    svc.env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    svc.env["TZ"] = "UTC"
    svc.start()
    probe = StatusProbe(svc.socket)
    try:
        ending = [asterisk.place_call([{"say": 600}, {"silence": 4000}, {"hangup": True}]) for _ in range(5)]
        doomed = asterisk.place_call([{"say": 600}, {"silence": 60000}])
        rows = svc.wait(
            lambda: len(r := svc.status()["calls"]) == 6 and all(x["phase"] == "active" for x in r) and r
        )
        requests.post(f"{asterisk.base}/sim/rest-delay", params={"seconds": REST_DELAY}, timeout=5)
        probe.start()
        os.kill(next(r["pid"] for r in rows if r["call_id"] == doomed), signal.SIGKILL)
        requests.post(f"{asterisk.base}/sim/drop-events", timeout=5)
        svc.wait(lambda: svc.status()["supervisor"]["ari_connects"] >= 2, timeout=15)
        # The five callers hang up now, while their teardowns and the crashed call's wait on
        # the slow Asterisk: the loop must still take a new call at once.
        svc.wait(lambda: all(asterisk.call(c, packets=False)["hangup"] for c in ending), timeout=15)
        fresh = asterisk.place_call([{"say": 600}, {"silence": 60000}])
        line = svc.wait(
            lambda: next((x for x in svc.log().splitlines() if f"[{fresh}]" in x and "call from" in x), None)
        )
        start = next(
            e
            for e in requests.get(f"{asterisk.base}/sim/events", timeout=5).json()
            if e["type"] == "StasisStart" and e["channel"]["id"] == fresh
        )
        admitted_after = _log_time(line) - _sim_time(start["timestamp"])
        print(
            f"admitted {admitted_after * 1000:.0f} ms after StasisStart; slowest status {probe.slowest * 1000:.0f} ms"
        )
        assert admitted_after < 0.1, f"admitted {admitted_after * 1000:.0f} ms after its StasisStart"
        asterisk.hangup(fresh)
        # Everything is torn down at the slow Asterisk's pace: 3 s a request.
        svc.wait(lambda: not asterisk.state()["channels"] and not asterisk.state()["bridges"], timeout=60)
        svc.wait(lambda: svc.status()["supervisor"]["calls_live"] == 0, timeout=30)
    finally:
        probe.done.set()
        requests.post(f"{asterisk.base}/sim/rest-delay", params={"seconds": 0}, timeout=5)
        svc.stop()
        watchdog.done.set()
    probe.join(5)
    watchdog.join(5)
    assert probe.answers > 50 and probe.slowest < 0.2, f"slowest status answer {probe.slowest * 1000:.0f} ms"
    gaps = [b - a for a, b in zip(watchdog.beats, watchdog.beats[1:], strict=False)]
    assert len(watchdog.beats) > 10 and max(gaps) < 2.5, gaps
    assert list_segments(TEST_PREFIX) == []
    log = svc.log()
    assert "died (signal:SIGKILL)" in log
    assert "Traceback" not in log
