"""G.711 samples as 16-bit linear values: the worker's one codec table (voice detection
measures magnitudes with it, the recording decodes with it).

Python 3.13 removed `audioop`; ITU-T G.711's decoding is a 256-entry table, and decoding a
buffer is `bytes.translate` through a low-byte and a high-byte table (both in C), so a
second of audio costs microseconds in the recording's writer thread.
"""

from __future__ import annotations

from functools import cache


def ulaw(byte: int) -> int:
    value = ~byte & 0xFF
    exponent, mantissa = (value >> 4) & 7, value & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if value & 0x80 else magnitude


def alaw(byte: int) -> int:
    value = byte ^ 0x55
    exponent, mantissa = (value >> 4) & 7, value & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if value & 0x80 else -magnitude


LAWS = {"ulaw": ulaw, "alaw": alaw}


def magnitude(law: str, byte: int) -> int:
    return abs(LAWS[law](byte))


@cache
def decode_tables(law: str) -> tuple[bytes, bytes]:
    """(low bytes, high bytes) of each code's little-endian 16-bit sample, as translate tables."""
    samples = [LAWS[law](byte) & 0xFFFF for byte in range(256)]
    return bytes(s & 0xFF for s in samples), bytes(s >> 8 for s in samples)
