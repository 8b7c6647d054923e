"""The conversation's side of the caller's keypad (call_worker/conversation.py's
`Conversation` is made of it): key presses from the supervisor's event channel
(shm_ring/call_events.py) through the agent's keypad (call_worker/keypad.py), to a mapped
action or to the model as the caller's turn. Media loop only; its state is the
conversation's (`keypad`, `_presses`, `toolbox`, `_after_reply`)."""

from __future__ import annotations

import logging

from call_worker.keypad import KeyOutcome
from shm_ring import call_events

log = logging.getLogger("call_worker.conversation")

MAX_KEY_PRESSES = 200  # of one call that reach the keypad (and so, the model)


class KeysSide:
    def call_events(self, sock, now: float) -> bool:
        """(media loop) The supervisor's messages (shm_ring/call_events.py); False once its
        end is closed."""
        messages, still_open = call_events.receive(sock)
        for message in messages:
            if isinstance(message, call_events.EventError):
                if not self._bad_event_logged:
                    self._bad_event_logged = True
                    log.warning("ignoring a message on the call's event channel: %s", message)
            elif message["type"] == "dtmf" and self.keypad is not None:
                self._presses += 1
                if self._presses <= MAX_KEY_PRESSES:
                    self._keys(self.keypad.press(message["digit"], now))
                elif self._presses == MAX_KEY_PRESSES + 1:  # each would be a turn for the model: tokens
                    log.warning("the caller pressed more than %d keys; the rest are ignored", MAX_KEY_PRESSES)
        return still_open

    def _keys(self, outcomes: list[KeyOutcome]) -> None:
        """What key presses mean (call_worker/keypad.py): a mapped action, taken at once, or
        text the model gets as the caller's turn."""
        for outcome in outcomes:
            if outcome.event is not None and self.toolbox is not None:
                self.toolbox.on_event("dtmf", outcome.event)
            if outcome.kind == "action":
                kind, destination = outcome.action
                taken = self.toolbox is not None and self.toolbox.keypad_action(kind, destination)
                log.info(
                    "key %s: %s%s",
                    outcome.event["key"],
                    kind,
                    "" if taken else " (not now: one is under way)",
                )
                if not taken or kind == "end":
                    continue  # the goodbye is the main thread's (call_worker/agent_actions.py)
                text = (
                    f"(The caller pressed {outcome.event['key']} on the keypad to be put through to "
                    f"{destination}; it is being dialled. Tell them in a few words.)"
                )
            else:
                text = outcome.text
                log.info(
                    "keypad: %s",
                    "digits given to the model" if "digits" in outcome.event else "a key pressed",
                )
            if not self.goodbye.requested:
                self._after_reply.append(("tell", self.adapter.note(text), True))
        if self._after_reply:
            self._send_after_reply()
