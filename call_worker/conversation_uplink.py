"""The conversation's side of the caller's audio (call_worker/conversation.py's
`Conversation` is made of it): each frame sent on as it arrives, our own detection of the
caller's voice where the model owns the turns (GPT-Live), and silence on the session's
clock while the caller's phone sends none. Media loop only; its state is the
conversation's (`uplink`, `link`, `voice`, `_input_origin`, `_input_bytes`, `_last_audio_at`)."""

from __future__ import annotations

import time

from call_worker import adapter as seam
from shm_ring import Slot

FRAME_SECONDS = 0.020
FRAME = 160  # bytes of 20 ms of G.711
FILL_MAX = 10  # silence frames sent at one tick at most (after a stall, the rest is skipped)
FILL_GRACE = 0.3  # seconds after a session opens before its input clock runs (the phone's stream starts)
_FRAMES_TO_REALTIME, _FRAMES_FILLED = int(Slot.FRAMES_TO_REALTIME), int(Slot.FRAMES_FILLED)


class UplinkSide:
    def send_uplink(self) -> None:
        """Send the uplink ring's audio (one frame as it arrives, or the backlog after a
        reconnect), unless a new session is opening."""
        if self._uplink_held or self.link is None:
            return
        uplink, link, append, view = self.uplink, self.link, self.adapter.append, self._append_view
        slots, voice = self.header.slots, self.voice
        while True:
            n = uplink.read_into(view)
            if n == 0:
                return
            if not link.send_text(append(view[:n])):
                return  # lost: the next tick notices and reconnects; this audio is gone
            slots[_FRAMES_TO_REALTIME] += n // 160
            self._input_bytes += n  # (10 and 30 ms packets too: bytes, not frames)
            self._last_audio_at = time.monotonic()
            if voice is not None:
                said = voice.feed(view[:n])
                if said:
                    self._caller_voice(said)

    def _caller_voice(self, said: str) -> None:
        """(model_turns) Our detection of the caller's voice: what server VAD is to Realtime."""
        if said == "started":
            self._on_speech_started(seam.CallerSpeechStarted())
        else:
            self._on_speech_stopped(seam.CallerSpeechStopped())

    def _fill_silence(self, now: float) -> None:
        """The session hears a microphone: 20 ms of audio every 20 ms. Asterisk relays nothing
        while the caller's phone sends nothing (muted, silence suppression, a caller script
        that ended), and then GPT-Live hears no microphone and Realtime's turn detection
        never hears the turn end; so silence takes the phone's place, on our clock. The
        adapter's `fill_slack` frames without a caller packet are jitter, not a silent phone
        (GPT-Live wants the stream steady, Realtime only the turn's end); then the clock's
        shortfall is filled, up to a frame. A stream that ran ahead of the clock (a backlog
        replayed) restarts it."""
        if self._uplink_held or self.link is None or now < self._input_origin:
            return
        behind = int((now - self._input_origin) * 8000 - self._input_bytes) // FRAME
        if behind < -5:
            self._input_origin = now - self._input_bytes / 8000
            return
        if behind < 2 or now - self._last_audio_at < self.adapter.fill_slack * FRAME_SECONDS:
            return
        message = self.adapter.append(self._silence)
        filled = 0
        for _ in range(min(behind - 1, FILL_MAX)):
            if not self.link.send_text(message):
                break
            filled += 1
        self._input_bytes += filled * FRAME
        self.header.slots[_FRAMES_FILLED] += filled
        if behind - 1 > FILL_MAX:  # a stall: the time it lost is not sent late
            self._input_origin = now - self._input_bytes / 8000
