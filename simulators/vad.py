"""Server-side voice activity detection over G.711, as the simulated Realtime server
does it: per 20 ms frame, a level threshold; speech starts after `start_ms` of voiced
frames and stops after `silence_ms` of unvoiced ones. Times are on the input timeline
(milliseconds of audio appended so far), as the real server reports them."""

from __future__ import annotations

from dataclasses import dataclass

from simulators import g711

FRAME = 160


@dataclass
class VadEvent:
    kind: str  # "started" | "stopped"
    audio_ms: int


class Vad:
    def __init__(
        self,
        law: str = "ulaw",
        level_threshold: float = 1500.0,
        start_ms: int = 60,
        silence_ms: int = 500,
        prefix_ms: int = 300,
    ) -> None:
        self.law = law
        self.level_threshold = level_threshold
        self.start_ms = start_ms
        self.silence_ms = silence_ms
        self.prefix_ms = prefix_ms
        self.input_ms = 0
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0
        self._pending = bytearray()
        self.turn_audio = bytearray()  # the current turn's audio (for echo replies)
        self._history = bytearray()  # the last prefix_ms of audio before speech

    def feed(self, audio: bytes) -> list[VadEvent]:
        self._pending += audio
        events = []
        while len(self._pending) >= FRAME:
            frame = bytes(self._pending[:FRAME])
            del self._pending[:FRAME]
            self.input_ms += 20
            voiced = g711.level(frame, self.law) >= self.level_threshold
            if self.speaking:
                self.turn_audio += frame
                self._silent_run = 0 if voiced else self._silent_run + 20
                if self._silent_run >= self.silence_ms:
                    self.speaking = False
                    events.append(VadEvent("stopped", self.input_ms - self._silent_run))
            else:
                self._history += frame
                del self._history[: max(0, len(self._history) - self.prefix_ms * 8 - self.start_ms * 8)]
                self._voiced_run = self._voiced_run + 20 if voiced else 0
                if self._voiced_run >= self.start_ms:
                    self.speaking = True
                    self._silent_run = 0
                    self.turn_audio = bytearray(self._history)
                    events.append(VadEvent("started", max(0, self.input_ms - self._voiced_run)))
                    self._voiced_run = 0
        return events
