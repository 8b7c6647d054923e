"""The caller's key presses during a call (callbridge/agent_keypad.py's plan), run by the
media loop: each press either takes the agent's mapped action at once, or goes to the model
as text, alone or as collected digits.

    idle ──key mapped to an action──▶ the action (transfer, end), idle
      │ ──other key, no collect──────▶ "the caller pressed K", idle
      └─other key, with collect─────▶ collecting
    collecting ──digit───────────────▶ collecting (timeout restarts)
      ├─the `until` key, max_digits, or timeout_seconds since the last key
      └──────────────────────────────▶ "the caller typed DIGITS", idle

While collecting, every key is a digit of the number (a mapped key too: an account number
may hold a 0). A secret collection's digits go to the model only: what is recorded and
logged is how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass

from callbridge.agent_keypad import KeyPlan


@dataclass(frozen=True)
class KeyOutcome:
    kind: str  # "action" | "text"
    action: tuple[str, str] = ("", "")  # ("transfer", destination) | ("end", "")
    text: str = ""  # for the model
    event: dict | None = None  # the call's event: what may be recorded


class Keypad:
    def __init__(self, plan: KeyPlan) -> None:
        self.plan = plan
        self.digits = ""
        self.last_key_at = 0.0

    @property
    def collecting(self) -> bool:
        return bool(self.digits)

    def press(self, key: str, now: float) -> list[KeyOutcome]:
        collect = self.plan.collect
        if not self.digits and key in self.plan.actions:
            action = self.plan.actions[key]
            return [KeyOutcome("action", action, event={"key": key, "action": action[0], "to": action[1]})]
        if collect is None:
            text = f"(The caller pressed {key} on the phone's keypad.)"
            return [KeyOutcome("text", text=text, event={"key": key})]
        if key == collect.until:
            return self._collected() if self.digits else []
        self.digits += key
        self.last_key_at = now
        if len(self.digits) >= collect.max_digits:
            return self._collected()
        return []

    def tick(self, now: float) -> list[KeyOutcome]:
        """(each media tick, while collecting) The timeout since the last key."""
        collect = self.plan.collect
        if self.digits and collect is not None and now - self.last_key_at >= collect.timeout_seconds:
            return self._collected()
        return []

    def _collected(self) -> list[KeyOutcome]:
        digits, self.digits = self.digits, ""
        secret = self.plan.collect is not None and self.plan.collect.secret
        if secret:
            text = f"(The caller typed a code on the phone's keypad: {digits}. Never say it back.)"
        else:
            text = f"(The caller typed {digits} on the phone's keypad.)"
        event = {"digits": len(digits), "secret": True} if secret else {"digits": digits}
        return [KeyOutcome("text", text=text, event=event)]
