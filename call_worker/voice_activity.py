"""Is there a voice in this G.711 audio? The worker's own answer, for GPT-Live, which tells
us nothing of the kind: whether the agent's audio is speech or the silence the service
streams between turns (call_worker/live_turns.py), and when the caller starts talking over
the agent (`CallerVoice`, the barge-in's trigger).

A sample is loud when its magnitude passes a threshold; a 20 ms frame is voiced when a
share of its samples are. Counting is one `bytes.translate` through a 256-entry table and
one `count`, both in C: a caller frame costs about a microsecond in the media loop.
"""

from __future__ import annotations

from call_worker.g711 import magnitude

FRAME = 160  # bytes of a 20 ms G.711 frame

# Thresholds in 16-bit linear magnitude. The caller's is higher than the agent's, and
# rises while the agent talks: the agent's own voice comes back from the phone or the line
# (echo), and a flush it triggered would cut the agent for nothing (a false stop). As a
# Geigel double-talk detector does, the bar follows the agent's recent peaks: while they
# were P in the last ECHO_FRAMES, the caller counts when some of its samples pass P / 4,
# i.e. an echo returned at least ECHO_LOSS_DB down is never the caller (telephone hybrids
# return 11-20 dB down; G.168 requires at least 6).
AGENT_LOUD = 300
CALLER_LOUD = 1000
CALLER_LEVELS = (1000, 2000, 4000, 8000, 16000)  # the caller's thresholds, 6 dB apart
ECHO_FRAMES = 25  # the agent frames an echo may come back within (500 ms)
ECHO_LOSS_DB = 12  # two steps of CALLER_LEVELS
VOICED_SHARE = 0.2  # of a frame's samples loud: the frame is voiced
ECHO_SHARE = 0.05  # over the raised bar, peaks suffice (speech passes it in bursts)
CALLER_START_FRAMES = 2  # voiced frames in a row: the caller talks (40 ms)
CALLER_STOP_FRAMES = 15  # unvoiced frames in a row: they stopped (300 ms)


def loud_table(law: str, threshold: int) -> bytes:
    """bytes.translate's table: 1 for a sample louder than `threshold`, else 0."""
    return bytes(1 if magnitude(law, byte) > threshold else 0 for byte in range(256))


def voiced(audio: bytes | memoryview, table: bytes, share: float = VOICED_SHARE) -> bool:
    """Is a `share` of the samples loud (by `table`)?"""
    size = len(audio)
    return size > 0 and bytes(audio).translate(table).count(1) >= size * share


def level_table(law: str) -> bytes:
    """bytes.translate's table: how many of CALLER_LEVELS a sample reaches (0-5)."""
    return bytes(sum(magnitude(law, byte) >= level for level in CALLER_LEVELS) for byte in range(256))


class CallerVoice:
    """The caller's speech on the uplink, frame by frame: started after CALLER_START_FRAMES
    voiced frames in a row, stopped after CALLER_STOP_FRAMES unvoiced ones; while the agent
    talks, over a bar ECHO_LOSS_DB under its recent peaks (`agent_frame`)."""

    def __init__(self, law: str) -> None:
        self.tables = [loud_table(law, level) for level in CALLER_LEVELS]
        self.table, self.share = self.tables[0], VOICED_SHARE
        self.levels = level_table(law)
        self.speaking = False
        self._run = 0  # voiced frames in a row (not speaking), or unvoiced ones (speaking)
        self._agent = bytearray(ECHO_FRAMES)  # the agent's peak level of each recent frame
        self._at = 0

    def agent_frame(self, frame: bytes | memoryview) -> None:
        """(each frame sent to the caller) The agent's peak level in it: the echo to expect."""
        self._agent[self._at] = max(bytes(frame).translate(self.levels)) if frame else 0
        self._at = (self._at + 1) % ECHO_FRAMES
        # Its peaks reached k of CALLER_LEVELS, so stayed under the next one (or full
        # scale): a quarter of that is the bar, two steps down.
        step = max(0, max(self._agent) - 2)
        self.table = self.tables[step]
        self.share = ECHO_SHARE if step else VOICED_SHARE

    def feed(self, audio: bytes | memoryview) -> str:
        """ "started", "stopped" or "" for the audio just received (a frame, usually)."""
        frames = max(1, len(audio) // FRAME)
        if voiced(audio, self.table, self.share) != self.speaking:
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
