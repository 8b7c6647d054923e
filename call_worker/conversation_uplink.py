"""The conversation's side of the caller's audio (call_worker/conversation.py's
`Conversation` is made of it): each frame sent on as it arrives, our own detection of the
caller's voice where the model owns the turns (GPT-Live), and silence on the session's
clock while the caller's phone sends none. Media loop only; its state is the
conversation's (`uplink`, `link`, `voice`, `_input_origin`, `_input_frames`)."""

from __future__ import annotations

from call_worker import adapter as seam
from shm_ring import Slot

FRAME_SECONDS = 0.020
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
            self._input_frames += n // 160
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
        adapter's `fill_slack` frames of lateness are the caller's jitter, not a silent phone
        (GPT-Live wants the stream steady, Realtime only the turn's end). A stream that ran
        ahead of the clock (a backlog replayed) restarts it."""
        if self._uplink_held or self.link is None:
            return
        behind = int((now - self._input_origin) / FRAME_SECONDS) - self._input_frames
        if behind < -5:
            self._input_origin = now - self._input_frames * FRAME_SECONDS
            return
        if behind <= self.adapter.fill_slack:
            return
        message = self.adapter.append(self._silence)
        filled = 0
        for _ in range(min(behind - 1, FILL_MAX)):
            if not self.link.send_text(message):
                break
            filled += 1
        self._input_frames += filled
        self.header.slots[_FRAMES_FILLED] += filled
        if behind - 1 > FILL_MAX:  # a stall: the time it lost is not sent late
            self._input_origin = now - self._input_frames * FRAME_SECONDS
