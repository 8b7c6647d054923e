"""G.711 mu-law and A-law, and the few signal tools the simulators need.

Python 3.13 removed `audioop`, so the codec is here: ITU-T G.711 reference algorithms,
turned into lookup tables once at import (decode: 256 entries; encode: 65,536).
"""

from __future__ import annotations

import functools
import math
from array import array

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_sample(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = max(0, magnitude.bit_length() - 8)
    exponent = min(exponent, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_byte(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if sign else magnitude


def _alaw_encode_sample(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    magnitude = min(sample if sample >= 0 else -sample - 1, 32767) >> 3
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = min(magnitude.bit_length() - 5, 7)
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return (sign | code) ^ 0x55


def _alaw_decode_byte(byte: int) -> int:
    byte ^= 0x55
    exponent, mantissa = (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if byte & 0x80 else -magnitude


ULAW_DECODE = array("h", (_ulaw_decode_byte(b) for b in range(256)))
ALAW_DECODE = array("h", (_alaw_decode_byte(b) for b in range(256)))
_ULAW_ENCODE = bytes(_ulaw_encode_sample(s - 32768) for s in range(65536))
_ALAW_ENCODE = bytes(_alaw_encode_sample(s - 32768) for s in range(65536))
SILENCE = {"ulaw": 0xFF, "alaw": 0xD5}


def encode(samples: list[int] | array, law: str = "ulaw") -> bytes:
    table = _ULAW_ENCODE if law == "ulaw" else _ALAW_ENCODE
    return bytes(table[max(-32768, min(32767, int(s))) + 32768] for s in samples)


def decode(data: bytes, law: str = "ulaw") -> array:
    table = ULAW_DECODE if law == "ulaw" else ALAW_DECODE
    return array("h", (table[b] for b in data))


# |sample| >> 7 per code byte: `bytes.translate` then `sum` run in C, which keeps level
# metering cheap enough for hundreds of simulated callers.
_ULAW_MAGNITUDE = bytes(min(255, abs(v) >> 7) for v in ULAW_DECODE)
_ALAW_MAGNITUDE = bytes(min(255, abs(v) >> 7) for v in ALAW_DECODE)


def level(data: bytes, law: str = "ulaw") -> float:
    """Mean absolute amplitude of a G.711 buffer (0 for digital silence, ~6000 for a loud
    tone), to a resolution of 128."""
    if not data:
        return 0.0
    table = _ULAW_MAGNITUDE if law == "ulaw" else _ALAW_MAGNITUDE
    return sum(bytes(data).translate(table)) * 128 / len(data)


@functools.lru_cache(maxsize=64)  # callers and replies reuse a few tones; encoding is slow
def tone(
    milliseconds: int,
    frequency: float = 440.0,
    amplitude: int = 10000,
    law: str = "ulaw",
    phase_samples: int = 0,
) -> bytes:
    """A sine tone, 8 kHz, encoded: what the simulators use as speech."""
    count = milliseconds * 8
    step = 2 * math.pi * frequency / 8000
    return encode([amplitude * math.sin(step * (i + phase_samples)) for i in range(count)], law)


def silence(milliseconds: int, law: str = "ulaw") -> bytes:
    return bytes([SILENCE[law]]) * (milliseconds * 8)
