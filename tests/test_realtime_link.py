"""The Realtime WebSocket against a frozen service (simulators/realtime_freeze.py): every
wait is bounded, so a service that accepts TCP and then stops moving cannot hang a call."""

from __future__ import annotations

import select
import threading
import time

import pytest
import requests
from harness import API_KEY

from call_worker.adapter import ConnectError, adapter_for
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


def _adapter(settings):
    return adapter_for(settings)


def _run_until_closed(link, limit: float) -> None:
    """What the media loop does with a link: read it at ticks, keep it alive."""
    deadline = time.monotonic() + limit
    while link.closed is None and time.monotonic() < deadline:
        select.select([link], [link] if link.wants_write else [], [], 0.02)
        link.flush()
        link.receive()
        link.check_time(time.monotonic())


def test_silence_is_noticed_within_8_s(settings, realtime):
    link = _adapter(settings).connect(5, "cb_open_1")
    try:
        frozen_at = _freeze(realtime, new_handshakes=False)
        _run_until_closed(link, 15)
        assert link.closed is not None, "a frozen service went unnoticed for 15 s"
        assert time.monotonic() - frozen_at <= 8.0
    finally:
        link.close()


def test_a_send_the_frozen_service_never_reads_never_blocks_and_ends_the_link(settings, realtime):
    """The media loop sends the caller's audio itself: a send must never wait for a peer
    that stopped reading, and such a peer must end the link within seconds."""
    link = _adapter(settings).connect(5, "cb_open_1")
    frozen_at = _freeze(realtime, new_handshakes=False)
    chunk = "x" * 65536
    slowest = 0.0
    try:
        while link.closed is None and time.monotonic() - frozen_at < 15:
            started = time.monotonic()
            link.send_text(chunk)  # far more, over the loop, than any socket buffer holds
            slowest = max(slowest, time.monotonic() - started)
            link.receive()
            link.check_time(time.monotonic())
            time.sleep(0.02)
    finally:
        link.close()
    took = time.monotonic() - frozen_at
    assert link.closed is not None and took <= 8.0, f"still open after {took:.1f} s"
    assert slowest < 0.1, f"a send blocked for {slowest * 1000:.0f} ms"


def test_a_handshake_the_frozen_service_never_answers_times_out(settings, realtime):
    _freeze(realtime, new_handshakes=True)
    started = time.monotonic()
    with pytest.raises(ConnectError) as refused:
        _adapter(settings).connect(2.0, "cb_open_1")
    assert time.monotonic() - started < 3.0
    assert refused.value.fatal is False  # worth another try


def test_the_reconnect_budget_counts_from_the_loss_of_the_session(settings, realtime):
    from call_worker import conversation as conv_module
    from call_worker.playback import Playback
    from call_worker.wake import Waker
    from shm_ring import ByteRing, CallHeader
    from shm_ring.header import HEADER_BYTES
    from shm_ring.ring import region_size

    def ring() -> ByteRing:
        return ByteRing(memoryview(bytearray(region_size(16000))), 16000)

    failed: list[str] = []
    header = CallHeader(memoryview(bytearray(HEADER_BYTES)))
    conv = conv_module.Conversation(
        settings,
        header,
        ring(),
        Playback(ring()),
        _adapter(settings),
        Waker(),
        threading.Event(),
        failed.append,
    )
    conv.begin(*conv.connect(5), greet=False)
    conv.tick(time.monotonic())
    assert conv.link is not None
    _freeze(realtime, new_handshakes=True)  # the open connection and every new handshake
    lost_at = time.monotonic()
    conv._lost(None)
    while not failed and time.monotonic() - lost_at < 15:
        time.sleep(0.02)
        conv.tick(time.monotonic())
    elapsed = time.monotonic() - lost_at
    assert failed, "never gave up"
    assert elapsed <= conv_module.RECONNECT_BUDGET + 0.75, f"gave up {elapsed:.1f} s after the loss"
