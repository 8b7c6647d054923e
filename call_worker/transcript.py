"""The call's turns as the worker keeps them: what each side said, and for the agent both
the whole text and what the caller heard of it (call_worker/heard.py).

An agent turn's text arrives as deltas and then, normally, a final transcript; a reply cut
short by a barge-in may end without one, and its deltas are then its text. Its truncation
(what the caller heard) may come before or after the text. After a reconnect, the new
session gets `history()`: the agent's turns as heard, as the old session had them after
its `conversation.item.truncate`.

A reply of gpt-realtime-2.x may hold several items, each with its phase (a spoken
"preamble", then the "answer"): each is a turn of its own, with its phase, and an item a
barge-in dropped before the caller heard any of it is kept with nothing heard.

Written by the media loop; once it has stopped, Conversation.close() settles it (a
reply still in the ring at the end of the call) and the main thread reads it.
"""

from __future__ import annotations

import time

from call_worker.heard import heard_text
from call_worker.playback import Truncation


class Transcript:
    def __init__(self) -> None:
        self.entries: list[dict] = []
        self._agent: dict[str, dict] = {}  # item_id -> its entry
        self._partial: dict[str, str] = {}  # item_id -> deltas so far
        self._cuts: dict[str, Truncation] = {}  # item_id -> how much of it was heard
        self._phases: dict[str, str] = {}  # item_id -> "preamble" | "answer", when the model says

    def caller(self, text: str) -> None:
        self.entries.append({"role": "caller", "text": text, "t": time.time()})

    def agent_item(self, item_id: str, phase: str) -> None:
        """A reply's item began, in this phase ("" when the model does not say)."""
        if phase:
            self._phases[item_id] = phase
            entry = self._agent.get(item_id)
            if entry is not None:
                entry["phase"] = phase

    def agent_delta(self, item_id: str, delta: str) -> None:
        if item_id not in self._agent:
            self._partial[item_id] = self._partial.get(item_id, "") + delta

    def agent_done(self, item_id: str, text: str, interrupted: bool) -> dict:
        """The item's final transcript; returns its entry. An empty one (a cancelled reply
        may end so) leaves the item the deltas it had."""
        text = text or self._partial.get(item_id, "").strip()
        self._partial.pop(item_id, None)
        entry = self._agent.get(item_id)
        if entry is None:
            entry = {"role": "agent", "text": text, "heard": text, "t": time.time(), "item_id": item_id}
            if item_id in self._phases:
                entry["phase"] = self._phases[item_id]
            self._agent[item_id] = entry
            self.entries.append(entry)
        entry["text"] = text
        entry["interrupted"] = interrupted or item_id in self._cuts
        self._apply_cut(entry)
        return entry

    def response_ended(self, item_ids: list[str]) -> None:
        """A response is done: an item that never got its final transcript (cancelled)
        keeps the deltas it had."""
        for item_id in item_ids:
            partial = self._partial.get(item_id)
            if item_id not in self._agent and partial and partial.strip():
                self.agent_done(item_id, partial.strip(), interrupted=True)

    def session_lost(self) -> None:
        """The session died: no item of it will get its final transcript, so each one in
        flight ends now with the deltas it had (before the history is built from them)."""
        self.response_ended(list(self._partial))

    def truncated(self, cut: Truncation) -> None:
        self._cuts[cut.item_id] = cut
        entry = self._agent.get(cut.item_id)
        if entry is not None:
            entry["interrupted"] = True
            self._apply_cut(entry)

    def _apply_cut(self, entry: dict) -> None:
        cut = self._cuts.get(entry["item_id"])
        if cut is not None:
            entry["heard"] = heard_text(entry["text"], cut.audio_end_ms, cut.item_audio_ms)

    def has_agent(self, item_id: str) -> bool:
        return item_id in self._agent

    def heard(self, item_id: str) -> str:
        return self._agent[item_id]["heard"]

    def history(self, held: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """(role, text) per turn as the caller lived it: agent turns as heard, but for the
        `held` items, whose hearing is not over yet."""
        return [
            (e["role"], e["heard"] if e["role"] == "agent" else e["text"])
            for e in self.entries
            if e.get("item_id") not in held
        ]
