"""The control socket when descriptors run out (issue 22, item 4): accept() fails while the
listener stays readable, so the loop used to log a traceback at every pass. Driven in this
process with a real ControlServer, a real selector and a real descriptor limit."""

from __future__ import annotations

import logging
import os
import resource
import selectors
import socket
import time

from shm_ring import wire
from supervisor import control


def _pump(server: control.ControlServer, selector: selectors.BaseSelector, seconds: float) -> int:
    """Serve like the supervisor's loop; return how many passes woke up for something."""
    passes = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = selector.select(0.02)
        if events:
            passes += 1
        for key, mask in events:
            kind, obj = key.data
            if kind == "control":
                server.accept()
            else:
                server.on_event(obj, mask)
        server.tick()
    return passes


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_out_of_descriptors_rests_logs_once_and_recovers(tmp_path, caplog):
    selector = selectors.DefaultSelector()
    server = control.ControlServer(str(tmp_path / "c.sock"), selector, lambda request, uid: {"ok": True})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients, filler = [], []
    try:
        for _ in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(server.path)  # queued in the backlog, not accepted yet
            c.sendall(wire.encode({"cmd": "status"}))
            clients.append(c)
        baseline = _open_fds()
        resource.setrlimit(resource.RLIMIT_NOFILE, (baseline + 2, hard))
        while True:
            try:
                filler.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        with caplog.at_level(logging.INFO, logger="supervisor.control"):
            busy = _pump(server, selector, 0.5)
            # It rests instead of spinning: a handful of passes, not thousands, one line.
            assert busy < 10, busy
            assert sum("cannot accept" in r.getMessage() for r in caplog.records) == 1
            assert not server.clients
            for fd in filler:
                os.close(fd)
            filler.clear()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            _pump(server, selector, control.ACCEPT_REST + 0.5)
            assert any("accepting connections again" in r.getMessage() for r in caplog.records)
        for c in clients:
            c.settimeout(2)
            assert wire.decode(c.recv(65536)[4:]) == {"ok": True}
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for c in clients:
            c.close()
        server.close()
        selector.close()


def test_a_failure_after_accept_leaks_no_connection(tmp_path, monkeypatch):
    selector = selectors.DefaultSelector()
    server = control.ControlServer(str(tmp_path / "c.sock"), selector, lambda request, uid: {"ok": True})

    class Broken:
        size = control._UCRED.size

        @staticmethod
        def unpack(_data):
            raise OSError("peer credentials unreadable")

    try:
        before = _open_fds()
        monkeypatch.setattr(control, "_UCRED", Broken)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(server.path)
        try:
            server.accept()
        except OSError:
            pass
        assert _open_fds() == before + 1  # only the client's own end
        c.close()
    finally:
        server.close()
        selector.close()
