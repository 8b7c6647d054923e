"""One key press, one event: Asterisk's ChannelDtmfReceived can report a single press many
times, and the worker must hear it once.

Seen on the real Asterisk 22 with sipp's RFC 4733 events (tests/asterisk/test_keypad_e2e.py):
when a phone's telephone-event packets carry timestamps out of step with its audio packets,
Asterisk ends and restarts the event every ~90 ms, and raises ChannelDtmfReceived for the
same digit each time, with a growing `duration_ms` (0, 20, 40, ... 200). A caller who typed
"55501#" reached the model as "555555555555". Two real presses of one key end at least a
tone and a pause apart, and each reports its own duration from zero; so an event for the
same digit as the last, within REPEAT_WINDOW of it and with a longer duration, is the same
press going on, and is dropped. Times are Asterisk's own (the event's `timestamp`), not
when the supervisor's loop read the event: after a pause of the loop, events queued on
the link arrive together, and two real presses must not look like one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

REPEAT_WINDOW = 0.15  # seconds between two reports of one press (Asterisk's are ~90 ms apart)


@dataclass
class KeyPresses:
    last: tuple[str, int, float] | None = None  # (digit, duration_ms, when) of the last report

    def is_new(self, digit: str, duration_ms: int, now: float) -> bool:
        last, self.last = self.last, (digit, duration_ms, now)
        if last is None:
            return True
        same_press = digit == last[0] and now - last[2] <= REPEAT_WINDOW and duration_ms > last[1]
        return not same_press


def event_time(event: dict, fallback: float) -> float:
    """An ARI event's `timestamp` ("2026-12-07T08:02:37.683+0000") in seconds; `fallback`
    when it has none or it cannot be read."""
    try:
        return datetime.strptime(str(event["timestamp"]), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except (KeyError, ValueError):
        return fallback
