"""The Realtime WebSocket against a frozen service (simulators/realtime_freeze.py): every
wait is bounded, so a service that accepts TCP and then stops moving cannot hang a call."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from harness import API_KEY
from websockets.exceptions import ConnectionClosed

from call_worker import realtime_link
from callbridge import config as cfg
from simulators import clients

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(realtime):
    realtime.reset()
    env = clients.callbridge_env(realtime, ari_port=8088, ari_user="asterisk", ari_password="unused")
    assert env["OPENAI_API_KEY"] == API_KEY
    yield cfg.load(env_file=None, environ=env).settings
    realtime.reset()  # thaws


def _freeze(realtime, new_handshakes: bool) -> float:
    requests.get(f"{realtime.base}/sim/freeze", params={"new": int(new_handshakes)}, timeout=5)
    return time.monotonic()


def test_silence_is_noticed_within_8_s(settings, realtime):
    ws = realtime_link.connect_realtime(settings)
    try:
        frozen_at = _freeze(realtime, new_handshakes=False)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)  # session.created may come first
        assert time.monotonic() - frozen_at <= 8.0
    finally:
        ws.close()


def test_a_send_the_frozen_service_never_reads_fails_instead_of_hanging(settings, realtime):
    """Without a send timeout, websockets' sendall() would block forever while holding the
    connection's lock, and with it the keepalive pings that notice the freeze."""
    ws = realtime_link.connect_realtime(settings)
    outcome: list[BaseException] = []

    def flood() -> None:
        chunk = "x" * 65536
        try:
            for _ in range(100_000):  # far more than any socket buffer holds
                ws.send(chunk)
        except BaseException as exc:
            outcome.append(exc)

    frozen_at = _freeze(realtime, new_handshakes=False)
    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    sender.join(timeout=15)
    took = time.monotonic() - frozen_at
    if sender.is_alive():
        ws.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked send; close() would wait for it
        pytest.fail("a send to the frozen service blocked for 15 s")
    ws.close()
    assert outcome and isinstance(outcome[0], ConnectionClosed), outcome
    assert took <= 8.0


def test_a_handshake_the_frozen_service_never_answers_times_out(settings, realtime):
    _freeze(realtime, new_handshakes=True)
    started = time.monotonic()
    with pytest.raises(realtime_link.RealtimeConnectError) as refused:
        realtime_link.connect_realtime(settings, timeout=2.0)
    assert time.monotonic() - started < 3.0
    assert refused.value.fatal is False  # worth another try


def test_the_reconnect_budget_counts_from_the_loss_of_the_session(settings, realtime):
    """Closing a frozen connection takes its close timeout: that time is part of the 5 s
    from the loss of a session to giving up, not added to it."""
    from call_worker import conversation as conv_module
    from call_worker.playback import Playback
    from shm_ring import ByteRing, CallHeader
    from shm_ring.header import HEADER_BYTES
    from shm_ring.ring import region_size

    def ring() -> ByteRing:
        return ByteRing(memoryview(bytearray(region_size(16000))), 16000)

    failed = threading.Event()
    header = CallHeader(memoryview(bytearray(HEADER_BYTES)))
    conv = conv_module.Conversation(
        settings,
        header,
        ring(),
        Playback(ring()),
        threading.Event(),
        threading.Event(),
        lambda m: failed.set(),
    )
    conv.ws = realtime_link.connect_realtime(settings)
    _freeze(realtime, new_handshakes=True)  # the open connection and every new handshake
    lost_at = time.monotonic()
    assert conv._recover(None) is False
    elapsed = time.monotonic() - lost_at
    assert failed.is_set()
    assert elapsed <= conv_module.RECONNECT_BUDGET + 0.75, f"gave up {elapsed:.1f} s after the loss"
