"""Is there a voice in this G.711 audio? The worker's own answer, for GPT-Live, which tells
us nothing of the kind: whether the agent's audio is speech or the silence the service
streams between turns (call_worker/live_turns.py), and when the caller starts talking over
the agent (`CallerVoice`, the barge-in's trigger).

A sample is loud when its magnitude passes a threshold; a 20 ms frame is voiced when a
share of its samples are. Counting is one `bytes.translate` through a 256-entry table and
one `count`, both in C: a caller frame costs about a microsecond in the media loop.
"""

from __future__ import annotations

FRAME = 160  # bytes of a 20 ms G.711 frame

# Thresholds in 16-bit linear magnitude. The caller's is higher than the agent's: the
# agent's own echo, coming back from a phone or a line, is usually 20 dB or more below its
# voice, and a flush it triggered would cut the agent for nothing (a false stop).
AGENT_LOUD = 300
CALLER_LOUD = 1000
VOICED_SHARE = 0.2  # of a frame's samples loud: the frame is voiced
CALLER_START_FRAMES = 2  # voiced frames in a row: the caller talks (40 ms)
CALLER_STOP_FRAMES = 15  # unvoiced frames in a row: they stopped (300 ms)


def _ulaw_magnitude(byte: int) -> int:
    value = ~byte & 0xFF
    exponent, mantissa = (value >> 4) & 7, value & 0x0F
    return (((mantissa << 3) + 0x84) << exponent) - 0x84


def _alaw_magnitude(byte: int) -> int:
    value = byte ^ 0x55
    exponent, mantissa = (value >> 4) & 7, value & 0x0F
    if exponent == 0:
        return (mantissa << 4) + 8
    return ((mantissa << 4) + 0x108) << (exponent - 1)


_MAGNITUDES = {"ulaw": _ulaw_magnitude, "alaw": _alaw_magnitude}


def loud_table(law: str, threshold: int) -> bytes:
    """bytes.translate's table: 1 for a sample louder than `threshold`, else 0."""
    magnitude = _MAGNITUDES[law]
    return bytes(1 if magnitude(byte) > threshold else 0 for byte in range(256))


def voiced(audio: bytes | memoryview, table: bytes) -> bool:
    """Is a share VOICED_SHARE of the samples loud (by `table`)?"""
    size = len(audio)
    return size > 0 and bytes(audio).translate(table).count(1) >= size * VOICED_SHARE


class CallerVoice:
    """The caller's speech on the uplink, frame by frame: started after CALLER_START_FRAMES
    voiced frames in a row, stopped after CALLER_STOP_FRAMES unvoiced ones."""

    def __init__(self, law: str) -> None:
        self.table = loud_table(law, CALLER_LOUD)
        self.speaking = False
        self._run = 0  # voiced frames in a row (not speaking), or unvoiced ones (speaking)

    def feed(self, audio: bytes | memoryview) -> str:
        """ "started", "stopped" or "" for the audio just received (a frame, usually)."""
        frames = max(1, len(audio) // FRAME)
        if voiced(audio, self.table) != self.speaking:
            self._run += frames
        else:
            self._run = 0
        if not self.speaking and self._run >= CALLER_START_FRAMES:
            self.speaking, self._run = True, 0
            return "started"
        if self.speaking and self._run >= CALLER_STOP_FRAMES:
            self.speaking, self._run = False, 0
            return "stopped"
        return ""
