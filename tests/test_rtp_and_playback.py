"""Unit tests: RTP parsing and building, and barge-in bookkeeping on a real ring."""

from __future__ import annotations

import random
import struct

from hypothesis import given
from hypothesis import strategies as st

from call_worker import rtp
from call_worker.playback import Playback, Truncation
from shm_ring import ByteRing, region_size


def test_parse_accepts_a_plain_frame():
    packet = rtp.build(bytes(range(160)), 0, 7, 1000, 0xABCDEF, marker=True)
    assert rtp.parse(packet, 0) == (12, 160, 7)
    assert rtp.unpack_header(packet) == (0, True, 7, 1000, 0xABCDEF)


def test_parse_skips_csrcs_and_extension_and_padding():
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 1, 2, 3)  # 2 CSRCs, ext, padding
    csrcs = bytes(8)
    extension = b"\xbe\xde\x00\x01" + bytes(4)
    payload = bytes([5]) * 160
    packet = header + csrcs + extension + payload + bytes([0, 0, 3])
    assert rtp.parse(packet, 0) == (12 + 8 + 8, 160, 1)


def test_parse_rejects_bad_packets_with_a_reason():
    good = rtp.build(bytes(160), 0, 1, 2, 3)
    assert rtp.parse(good[:11], 0) is rtp.Reject.MALFORMED
    assert rtp.parse(bytes([0x40]) + good[1:], 0) is rtp.Reject.MALFORMED
    assert rtp.parse(good, 8) is rtp.Reject.PAYLOAD_TYPE
    assert rtp.parse(good[:12], 0) is rtp.Reject.SIZE
    assert rtp.parse(bytes([0xA0]) + good[1:-1] + bytes([200]), 0) is rtp.Reject.MALFORMED
    assert rtp.parse(rtp.build(bytes(1500), 0, 1, 2, 3), 0) is rtp.Reject.SIZE


@given(st.binary(max_size=400))
def test_parse_never_raises(data):
    result = rtp.parse(data, 0)
    if not isinstance(result, rtp.Reject):
        offset, length, _ = result
        assert offset >= 12 and offset + length <= len(data) and length > 0


def test_packetizer_advances_sequence_timestamp_and_marks_talkspurts():
    packetizer = rtp.RtpPacketizer(0, rng=random.Random(1))
    headers = []
    for index in range(5):
        if index == 3:
            packetizer.start_talkspurt()
        packetizer.payload_area()[:160] = bytes(160)
        headers.append(rtp.unpack_header(bytes(packetizer.finish())))
    assert [h[1] for h in headers] == [True, False, False, True, False]
    assert all((b[2] - a[2]) % 65536 == 1 for a, b in zip(headers, headers[1:], strict=False))
    assert all((b[3] - a[3]) % 2**32 == 160 for a, b in zip(headers, headers[1:], strict=False))
    assert len({h[4] for h in headers}) == 1


def _ring(capacity: int = 16000) -> ByteRing:
    return ByteRing(memoryview(bytearray(region_size(capacity))), capacity)


def _play(ring: ByteRing, frames: int) -> None:
    """rtp-out's part: send `frames` 20 ms frames to the caller."""
    sent = bytearray(160)
    for _ in range(frames):
        assert ring.read_into(sent) == 160


def test_barge_in_discards_at_once_and_truncates_where_playback_stood():
    """The media loop is producer and consumer: between two frames, the discard is done
    before barge_in returns, so the next frame is silence and the cut is exact."""
    ring = _ring()
    playback = Playback(ring)
    playback.response_started("r1")
    playback.add_audio("r1", "item1", bytes(8000))  # 1 s of audio
    _play(ring, 10)  # 200 ms played
    truncation = playback.barge_in()
    # Observed without performing a discard ourselves (fill() does not):
    assert ring.discarded_total == 8000 - 1600 and ring.fill() == 0
    assert ring.discarded_at == 1600
    assert truncation == Truncation("item1", 200, 1000)  # 200 ms heard of 1000 received
    # Late deltas of the interrupted response are ignored.
    playback.add_audio("r1", "item1", bytes(1600))
    assert ring.fill() == 0 and playback.late_deltas == 1


def test_no_truncate_after_the_item_finished_playing():
    ring = _ring()
    playback = Playback(ring)
    playback.response_started("r1")
    playback.add_audio("r1", "item1", bytes(1600))
    playback.response_finished("r1")
    ring.read(1600)
    assert playback.barge_in() is None
