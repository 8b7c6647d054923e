"""The ARI events link (supervisor/ari_events.py) over real sockets: it never blocks, it gives
up on an Asterisk that accepts TCP but never answers the upgrade, it notices one that stops
answering pings, and it names a refused login. Each test drives the link the way the
supervisor's loop does: a selector, and `check_time` as the tick."""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest
from testenv import wait_until

from callbridge import config as cfg
from simulators.wsframe import accept_key
from supervisor import ari_events
from supervisor.ari_events import AriEvents, LinkState


def _settings(port: int) -> cfg.Settings:
    env = {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_PORT": str(port),
        "ASTERISK_USERNAME": "u",
        "ASTERISK_PASSWORD": "a-secret-pw",
        "OPENAI_API_KEY": "sk-x",
    }
    return cfg.load(env_file=None, environ=env).settings


def _drive(link: AriEvents, until, timeout: float) -> list[dict]:
    """The supervisor's loop, reduced: select on the link's socket, tick every 50 ms."""
    selector = selectors.DefaultSelector()
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    registered = None
    while not until() and time.monotonic() < deadline:
        if registered is not None:
            selector.unregister(registered)
            registered = None
        if link.sock is not None and link.interest():
            selector.register(link.sock, link.interest())
            registered = link.sock
        began = time.monotonic()
        for _key, mask in selector.select(0.05):
            events.extend(link.on_ready(mask))
        assert time.monotonic() - began < 2.0  # nothing in the link blocks (loose: a busy VM)
        link.check_time(time.monotonic())
    selector.close()
    return events


def _connect(link: AriEvents, port: int) -> None:
    link.connect(socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)[0])


@pytest.fixture
def silent_server():
    """Accepts TCP (the kernel does, from the backlog) and never says a word."""
    server = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield server.getsockname()[1]
    server.close()


def test_an_asterisk_that_never_answers_the_upgrade_is_given_up_in_time(silent_server, monkeypatch):
    monkeypatch.setattr(ari_events, "CONNECT_TIMEOUT", 0.5)
    link = AriEvents(_settings(silent_server))
    began = time.monotonic()
    _connect(link, silent_server)
    assert time.monotonic() - began < 0.1  # connect() returns at once
    _drive(link, lambda: link.state is LinkState.DISCONNECTED, timeout=5)
    assert link.state is LinkState.DISCONNECTED and time.monotonic() - began < 2
    assert "no answer within" in link.last_error


EVENT = b'{"type": "StasisStart"}'


class UpgradeThenSilence(threading.Thread):
    """Answers the upgrade (or refuses it with `status`), then reads and ignores everything,
    pings included: an Asterisk whose host froze after the connect."""

    def __init__(self, status: int = 101) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.status = status
        self.request = b""

    def run(self) -> None:
        conn, _ = self.server.accept()
        while b"\r\n\r\n" not in self.request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            self.request += chunk
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in self.request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        if self.status == 101:
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
                + bytes([0x81, len(EVENT)])
                + EVENT  # one event, then silence
            )
        else:
            conn.sendall(f"HTTP/1.1 {self.status} Unauthorized\r\nContent-Length: 0\r\n\r\n".encode())
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass


def test_a_link_that_stops_answering_pings_is_dropped(monkeypatch):
    monkeypatch.setattr(ari_events, "PING_AFTER", 0.3)
    monkeypatch.setattr(ari_events, "PING_TIMEOUT", 0.4)
    server = UpgradeThenSilence()
    server.start()
    link = AriEvents(_settings(server.port))
    _connect(link, server.port)
    events = _drive(link, lambda: link.state is LinkState.CONNECTED and link.connects == 1, timeout=5)
    wait_until(lambda: server.request)
    assert b"Authorization: Basic " in server.request and b"a-secret-pw" not in server.request
    events += _drive(link, lambda: link.state is LinkState.DISCONNECTED, timeout=5)
    assert [e["type"] for e in events] == ["StasisStart"]
    assert link.state is LinkState.DISCONNECTED
    assert "did not answer a ping" in link.last_error


def test_a_refused_login_is_named_without_the_password():
    server = UpgradeThenSilence(status=401)
    server.start()
    link = AriEvents(_settings(server.port))
    _connect(link, server.port)
    _drive(link, lambda: link.state is LinkState.DISCONNECTED, timeout=5)
    assert "ARI refused the credentials" in link.last_error
    assert "a-secret-pw" not in link.last_error


def test_nobody_listening_is_named():
    probe = socket.create_server(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    link = AriEvents(_settings(free))
    _connect(link, free)
    _drive(link, lambda: link.state is LinkState.DISCONNECTED, timeout=5)
    assert "connection refused" in link.last_error
