"""RTP (RFC 3550) as externalMedia speaks it: parse and validate inbound packets,
build outbound ones with a correct sequence, timestamp, SSRC and marker bit.

Only what a G.711 leg needs: no CSRC lists or extensions are produced; on input they are
skipped correctly, and padding is removed. Parsing never raises on bad input; it returns
a reason that the media loop counts, because a malformed or foreign packet must cost nothing
but a counter.
"""

from __future__ import annotations

import random
import struct
from enum import Enum

HEADER = struct.Struct("!BBHII")
HEADER_BYTES = HEADER.size  # 12
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 160  # G.711: one byte per sample
PAYLOAD_TYPES = {"ulaw": 0, "alaw": 8}
SILENCE_BYTE = {"ulaw": 0xFF, "alaw": 0xD5}


class Reject(Enum):
    """Why an inbound datagram was dropped (each has a counter in the call header)."""

    MALFORMED = "malformed"
    PAYLOAD_TYPE = "payload_type"
    SIZE = "size"


def parse(packet: bytes | memoryview, payload_type: int) -> tuple[int, int, int] | Reject:
    """Validate `packet`; return (payload offset, payload length, sequence) or why not.

    Accepts any payload length from 1 to 1024 bytes (a phone may send 10 or 30 ms frames;
    the uplink ring and the service take audio of any length).
    """
    size = len(packet)
    if size < HEADER_BYTES:
        return Reject.MALFORMED
    # What Asterisk sends (version 2, no padding, extension or CSRCs, our payload type),
    # told from the first two bytes: the media loop's hot path, once per packet.
    if packet[0] == 0x80 and packet[1] & 0x7F == payload_type and HEADER_BYTES < size <= HEADER_BYTES + 1024:
        return HEADER_BYTES, size - HEADER_BYTES, (packet[2] << 8) | packet[3]
    first, second, sequence, _timestamp, _ssrc = HEADER.unpack_from(packet)
    if first >> 6 != 2:
        return Reject.MALFORMED
    offset = HEADER_BYTES + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4-byte header whose second half is its length in words
        if size < offset + 4:
            return Reject.MALFORMED
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    end = size
    if first & 0x20:  # padding: the last byte says how many bytes to drop
        pad = packet[-1]
        if pad == 0 or pad > size - offset:
            return Reject.MALFORMED
        end -= pad
    if offset >= end:
        return Reject.SIZE if offset <= size else Reject.MALFORMED
    if second & 0x7F != payload_type:
        return Reject.PAYLOAD_TYPE
    length = end - offset
    if length > 1024:
        return Reject.SIZE
    return offset, length, sequence


class RtpPacketizer:
    """Builds outbound packets into one reusable buffer (no allocation per frame)."""

    __slots__ = ("_buffer", "_marker_next", "payload_type", "sequence", "ssrc", "timestamp", "view")

    def __init__(self, payload_type: int, ssrc: int | None = None, rng: random.Random | None = None) -> None:
        rng = rng or random.SystemRandom()
        self.payload_type = payload_type
        self.ssrc = rng.getrandbits(32) if ssrc is None else ssrc
        # Random initial sequence and timestamp, as RFC 3550 asks (known-plaintext hygiene).
        self.sequence = rng.getrandbits(16)
        self.timestamp = rng.getrandbits(32)
        self._marker_next = True
        self._buffer = bytearray(HEADER_BYTES + FRAME_BYTES)
        self.view = memoryview(self._buffer)

    def start_talkspurt(self) -> None:
        """The next frame begins a talk-spurt: it carries the marker bit."""
        self._marker_next = True

    def payload_area(self) -> memoryview:
        """Where the caller copies the next frame's 160 payload bytes before `finish()`."""
        return self.view[HEADER_BYTES:]

    def finish(self) -> memoryview:
        """Write the header for the payload in place; return the whole packet; advance."""
        second = self.payload_type | (0x80 if self._marker_next else 0)
        HEADER.pack_into(self._buffer, 0, 0x80, second, self.sequence, self.timestamp, self.ssrc)
        self._marker_next = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        return self.view


def build(
    payload: bytes, payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool = False
) -> bytes:
    """One packet as bytes (simulators and tests; the hot path uses RtpPacketizer)."""
    second = payload_type | (0x80 if marker else 0)
    return HEADER.pack(0x80, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def unpack_header(packet: bytes) -> tuple[int, bool, int, int, int]:
    """(payload type, marker, sequence, timestamp, ssrc) of a packet known to be RTP."""
    _first, second, sequence, timestamp, ssrc = HEADER.unpack_from(packet)
    return second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc
