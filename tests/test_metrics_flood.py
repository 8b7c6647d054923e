"""The metrics listener under a flood (issue 22, item 1): idle connections, trickled
requests and parallel scrapes against a real `callbridge run` on the simulators. The
listener is httpd/bounded.py; before it, prometheus_client's server started a thread per
connection (2,000 idle connections, 2,000 threads, against the unit's TasksMax shared with
the workers) and every scrape was a control-socket request of its own (50 parallel scrapes
filled the socket's 32 slots, and `status` was refused)."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time

import psutil
import pytest
import requests
from testenv import ended, free_port

from shm_ring import wire

IDLE = 2000
SCRAPERS = 50
SCRAPERS_CODE = """
import sys, threading, time, requests
url, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
codes, until = [], time.monotonic() + seconds
def scrape():
    while time.monotonic() < until:
        try:
            codes.append(requests.get(url, timeout=5).status_code)
        except requests.RequestException:
            codes.append(0)
        time.sleep(0.1)
threads = [threading.Thread(target=scrape) for _ in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(map(str, codes)))
"""


def _metrics_helper(svc) -> psutil.Process | None:
    for child in psutil.Process(svc.proc.pid).children():
        try:
            if child.name() == "cb-web":
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _serving(svc, url: str) -> bool:
    """The helper is up and answers; its process exists a moment before it listens."""
    if _metrics_helper(svc) is None:
        return False
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def _timed(socket_path: str, message: dict) -> tuple[float, dict]:
    start = time.monotonic()
    reply = wire.request(socket_path, message, timeout=5)
    return (time.monotonic() - start) * 1000, reply


@pytest.fixture
def many_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, IDLE * 2 + 1024)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections that never send a byte (non-blocking connects: the listener's
    backlog may hold some of them unaccepted, as a real flood would)."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


@pytest.mark.slow
def test_idle_connections_and_parallel_scrapes_leave_status_hangup_and_calls_alone(
    service, asterisk, many_descriptors
):
    port = free_port()
    svc = service(METRICS_LISTEN=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    svc.wait(lambda: _serving(svc, url), timeout=15)
    helper = _metrics_helper(svc)
    live = [asterisk.place_call([{"say": 600}, {"silence": 30000}]) for _ in range(3)]
    svc.wait(lambda: all((r := svc.call_row(c)) and r["phase"] == "active" for c in live), timeout=15)

    idle = _open_idle(port, IDLE)
    # The scrapers are a process of their own: their threads must not take this process's
    # interpreter lock from the status timings below.
    scrapers = subprocess.Popen(
        [sys.executable, "-c", SCRAPERS_CODE, url, str(SCRAPERS), "8"], stdout=subprocess.PIPE, text=True
    )
    threads_seen = []
    status_ms = []
    try:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            threads_seen.append(helper.num_threads())
            ms, reply = _timed(svc.socket, {"cmd": "status"})
            assert reply["ok"], reply
            status_ms.append(ms)
            time.sleep(0.1)
        # A new call is admitted and bridged in the middle of all this.
        newcomer = asterisk.place_call([{"say": 600}, {"silence": 30000}])
        svc.wait(lambda: (r := svc.call_row(newcomer)) and r["phase"] == "active", timeout=15)
        ms, reply = _timed(svc.socket, {"cmd": "hangup", "call_id": live[0]})
        assert reply == {"ok": True, "ended": [live[0]]}
        hangup_ms = ms
        threads_seen.append(helper.num_threads())
    finally:
        out, _ = scrapers.communicate(timeout=30)
        for s in idle:
            s.close()
    scrape_codes = [int(code) for code in out.split()]
    print(
        f"status p100 {max(status_ms):.1f} ms over {len(status_ms)} requests, hangup {hangup_ms:.1f} ms; "
        f"exporter threads at most {max(threads_seen)}; {len(scrape_codes)} scrapes, "
        f"{scrape_codes.count(200)} answered 200"
    )
    assert max(status_ms) < 200, status_ms
    assert hangup_ms < 200
    assert max(threads_seen) <= 16, threads_seen
    # Scrapers were served, not only refused: the idle flood evicts itself.
    assert scrape_codes.count(200) >= len(scrape_codes) // 2, scrape_codes.count(200)
    assert helper.is_running() and _metrics_helper(svc).pid == helper.pid  # it held, not restarted
    for call_id in [*live[1:], newcomer]:
        asterisk.hangup(call_id)
    svc.wait(lambda: ended(asterisk, *live, newcomer), timeout=20)
    assert "too many clients" not in svc.log()


def test_idle_connections_under_the_cap_never_turn_scrapes_away(service):
    """uvicorn's limit_concurrency counted idle connections: 32 of them made every scrape a
    503, under the cap that would have evicted them."""
    from metrics import exporter

    port = free_port()
    svc = service(METRICS_LISTEN=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    svc.wait(lambda: _serving(svc, url), timeout=15)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(exporter.LIMITS.connections - 4)]
    try:
        codes = [requests.get(url, timeout=5).status_code for _ in range(5)]
    finally:
        for s in idle:
            s.close()
    assert codes == [200] * 5, codes


def test_a_connection_that_trickles_its_request_is_closed(service):
    from metrics import exporter

    port = free_port()
    svc = service(METRICS_LISTEN=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    svc.wait(lambda: _serving(svc, url), timeout=15)
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setblocking(False)
    start = time.monotonic()
    closed_after = None
    try:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            try:
                s.send(bytes([byte]))
                if s.recv(1) == b"":
                    closed_after = time.monotonic() - start
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.5)
    finally:
        s.close()
    assert closed_after is not None, "a trickled request held its connection for 100 s"
    assert exporter.LIMITS.read_seconds - 1 <= closed_after <= exporter.LIMITS.read_seconds + 3


def test_a_connection_that_sends_nothing_is_closed(service):
    from metrics import exporter

    port = free_port()
    svc = service(METRICS_LISTEN=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    svc.wait(lambda: _serving(svc, url), timeout=15)
    s = socket.create_connection(("127.0.0.1", port), timeout=exporter.LIMITS.read_seconds + 5)
    start = time.monotonic()
    try:
        assert s.recv(1) == b""
    finally:
        s.close()
    assert time.monotonic() - start <= exporter.LIMITS.read_seconds + 3


def test_one_process_cannot_take_every_control_socket_slot(service):
    svc = service()
    held = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(svc.socket)
            held.append(s)
        # This process holds its share; its next connection is refused with the reason...
        reply = wire.request(svc.socket, {"cmd": "status"})
        assert not reply["ok"] and "one process" in reply["error"]
        # ...and another process (the CLI) is served all the same.
        assert svc.cli("status").returncode == 0
    finally:
        for s in held:
            s.close()


def test_a_metrics_port_in_use_is_one_log_line_and_served_once_free(service):
    """It used to be a CRITICAL traceback at every restart of the helper (1, 5, 30 s...)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    svc = service(METRICS_LISTEN=f"127.0.0.1:{port}")
    try:
        svc.wait(lambda: "cannot listen on" in svc.log(), timeout=15)
        time.sleep(7)  # past one quiet retry
        assert svc.log().count("cannot listen on") == 1
        assert "Traceback" not in svc.log() and "CRITICAL" not in svc.log()
        svc.wait(lambda: "drainer started" in svc.log())
        assert "alembic" not in svc.log()  # its INFO lines at every drainer start are not for operators
    finally:
        taken.close()
    url = f"http://127.0.0.1:{port}/metrics"

    svc.wait(lambda: _serving(svc, url), timeout=15)
    assert "is free again" in svc.log()
