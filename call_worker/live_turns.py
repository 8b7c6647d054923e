"""Turns, out of GPT-Live's streams: the replies and items the conversation plays, cuts and
records (call_worker/adapter.py), which GPT-Live has no word for.

GPT-Live streams the agent's audio without ids or a done event, silence between turns
included, and both transcripts as timed deltas that overlap. So, by our own rule:

- the agent's turn begins with its first sound (call_worker/voice_activity.py) or
  transcript delta, and ends once neither has come for QUIET seconds: one reply of one
  item, named here (`live_1`, `live_2`, ...);
- silence inside a turn is a pause and is played, but only when voice follows it: the
  silence after the last word is never queued, so the downlink drains as the agent stops;
  silence between turns is dropped (it would keep the downlink playing for ever);
- after a barge-in (`cut`) the rest of that speech is dropped until the agent is silent for
  CUT_QUIET (longer than a gap between words): the model stops by itself, a little later
  than our flush; if it goes on past CUT_HOLD it meant to, and a new turn plays;
- the caller's turn is their consecutive transcript deltas until the agent begins a turn
  or QUIET passes without one.

Sans-I/O: the adapter feeds it with the time, and `poll` is asked at each tick.
"""

from __future__ import annotations

import time

from call_worker import adapter as seam
from call_worker.voice_activity import AGENT_LOUD, loud_table, voiced

QUIET = 1.0  # seconds without the agent's voice or words: its turn is over
CUT_HOLD = 1.5  # seconds after a barge-in the agent's continued speech is still dropped
CUT_QUIET = 0.3  # seconds of silence that end the cut speech (a gap between words is shorter)
SOUND_SHARE = 0.02  # of a chunk's samples over AGENT_LOUD: sound, played (a pause otherwise)
MAX_PAUSE = 8000 * 3  # bytes of silence kept inside a turn (3 s): longer, and it is no pause


class LiveTurns:
    def __init__(self, law: str) -> None:
        self.table = loud_table(law, AGENT_LOUD)
        self.reply: str | None = None  # the agent's turn in progress
        self._turns = 0
        self._last_agent = 0.0  # when its voice or words last came
        self._pause = bytearray()  # silence inside the turn, queued when voice follows
        self._text: list[str] = []
        self._cut_at: float | None = None  # a barge-in cut the agent: its speech is dropped
        self._ended_cut = float("-inf")  # when the last cut turn ended
        self._cut_quiet: float | None = None  # since when the cut speech has been silent
        self._caller: list[str] = []
        self._caller_last = 0.0

    # --- the agent

    def agent_audio(self, now: float, audio: bytes) -> list:
        # Sound (a word's soft onset or tail) is played as it comes; only silence waits, as a
        # pause, for voice to follow it.
        sound = voiced(audio, self.table, SOUND_SHARE)
        events: list = []
        if self._cut_at is not None:
            if sound:
                self._cut_quiet = None
            elif self._cut_quiet is None:
                self._cut_quiet = now
            if self._cut_quiet is not None and now - self._cut_quiet >= CUT_QUIET:
                # The model stopped: the cut turn is over, the next voice is a new one.
                return self._end(now) if self.reply is not None else []
            if now - self._cut_at < CUT_HOLD:
                self._last_agent = now
                return []  # the speech our flush cut, still coming: the model stops soon
            # It went on past CUT_HOLD: it meant to. What follows plays, as a new turn.
            if self.reply is not None:
                events += self._end(now)
        if self.reply is None:
            if not sound:
                return events  # between turns
            events += self._begin(now)
        if not sound:
            if len(self._pause) < MAX_PAUSE:
                self._pause += audio
            return events
        self._last_agent = now
        if self._pause:
            events.append(seam.AgentAudio(self.reply, self.reply, bytes(self._pause)))
            self._pause.clear()
        events.append(seam.AgentAudio(self.reply, self.reply, audio))
        return events

    def agent_text(self, now: float, delta: str) -> list:
        if self.reply is None and now - self._ended_cut < QUIET:
            return []  # the late words of a cut turn that has ended (its record has the rest)
        events = self._begin(now) if self.reply is None else []
        self._last_agent = now
        self._text.append(delta)
        events.append(seam.AgentTextDelta(self.reply, delta))
        return events

    def cut(self, now: float) -> None:
        """(barge-in) What the agent says from now on, until it pauses for CUT_QUIET, is not
        played; the turn ends at that pause."""
        if self.reply is not None:
            self._cut_at, self._cut_quiet = now, None
        self._pause.clear()

    def _begin(self, now: float) -> list:
        self._turns += 1
        self.reply = f"live_{self._turns}"
        self._last_agent = now
        events = self._caller_done()  # the caller's turn ends where the agent's begins
        return [*events, seam.ReplyStarted(self.reply), seam.AgentItem(self.reply, self.reply, "")]

    def _end(self, now: float) -> list:
        reply, self.reply = self.reply, None
        if self._cut_at is not None:  # a cut turn: its late words are its own, not a new turn's
            self._cut_at, self._ended_cut = None, now
        text, self._text = "".join(self._text).strip(), []
        self._pause.clear()
        return [seam.AgentText(reply, reply, text), seam.ReplyDone(reply, {}, (reply,))]

    # --- the caller

    def caller_text(self, now: float, delta: str) -> list:
        self._caller.append(delta)
        self._caller_last = now
        return []

    def _caller_done(self) -> list:
        if not self._caller:
            return []
        text, self._caller = "".join(self._caller).strip(), []
        # No transcription is billed apart from the session's time: 0 seconds of it.
        return [seam.CallerText(text, 0.0)] if text else []

    # --- time

    def poll(self, now: float) -> list:
        """Turns that ended by the clock: QUIET passed since the last delta."""
        events = []
        if self.reply is not None and now - self._last_agent >= QUIET:
            events += self._end(now)
        if self._caller and now - self._caller_last >= QUIET:
            events += self._caller_done()
        return events

    def close(self, now: float) -> list:
        """End the agent's turn in progress now (the next sound is a new turn), unless a
        barge-in cut it: that one ends when the model stops."""
        return self._end(now) if self.reply is not None and self._cut_at is None else []

    def finish(self) -> list:
        """The session ended: what was said so far ends its turns."""
        events = self._end(time.monotonic()) if self.reply is not None else []
        return events + self._caller_done()
