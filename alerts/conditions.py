"""Built-in alerts, the deciding half: which conditions hold, and which notices that makes.

Pure: no I/O and no clock of its own (the caller passes `now`, monotonic seconds), so it
runs on the supervisor's tick, from state the supervisor already has, and is tested with
a fake clock. Sending is a helper's (alerts/send.py).

Each condition has a key ("ari_unreachable", "worker_crashes") and this state machine:

    IDLE --holds--> PENDING --held for `hold` s--> FIRING (a "firing" notice, when allowed)
    PENDING --clears--> IDLE (nothing was said, nothing to take back)
    FIRING --clears--> IDLE ("resolved", only if its "firing" was sent)

Deduplicated: a condition that keeps holding says so once. Rate-limited: a key says
"firing" at most once per `repeat_after` seconds; a condition that comes back sooner
(flapping) stays FIRING unannounced until the limit allows, and is announced then if it
still holds, so an operator never has a "resolved" as the last word about a condition
that holds. Events (started, stopping) are one-shot notices with no resolve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    IDLE = "idle"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True)
class Notice:
    key: str
    kind: str  # "firing", "resolved", "event"
    severity: str  # "critical", "warning", "info"
    text: str


@dataclass(frozen=True)
class Holding:
    """A condition that holds now, as the supervisor's tick found it."""

    text: str
    severity: str = "warning"
    hold: float = 0.0  # seconds it must hold before it fires (ARI unreachable: 30)


@dataclass
class _Track:
    state: State = State.IDLE
    since: float = 0.0  # when it began to hold
    announced: bool = False  # its "firing" was sent
    text: str = ""
    severity: str = "warning"


@dataclass
class Tracker:
    repeat_after: float = 900.0  # seconds between two "firing" notices of one key (ALERT_REPEAT_SECONDS)
    tracks: dict[str, _Track] = field(default_factory=dict)
    last_fired: dict[str, float] = field(default_factory=dict)

    def update(self, now: float, holding: dict[str, Holding]) -> list[Notice]:
        """`holding`: every condition that holds now, by key. Returns the notices to send."""
        notices = []
        for key, found in holding.items():
            track = self.tracks.setdefault(key, _Track())
            if track.state is State.IDLE:
                track.state, track.since = State.PENDING, now  # it begins to hold
            track.text, track.severity = found.text, found.severity
            if track.state is State.PENDING and now - track.since >= found.hold:
                track.state = State.FIRING  # held long enough; announced below when allowed
            if track.state is State.FIRING and not track.announced and self._allowed(key, now):
                track.announced = True
                self.last_fired[key] = now
                notices.append(Notice(key, "firing", found.severity, found.text))
        for key, track in self.tracks.items():
            if key in holding or track.state is State.IDLE:
                continue
            if track.announced:  # it cleared: take back what was said
                notices.append(Notice(key, "resolved", "info", f"resolved: {track.text}"))
            self.tracks[key] = _Track()  # back to IDLE
        return notices

    def event(self, key: str, text: str, severity: str = "info") -> Notice:
        """A one-shot notice (started, stopping): nothing to resolve."""
        return Notice(key, "event", severity, text)

    def firing(self) -> list[str]:
        return sorted(key for key, track in self.tracks.items() if track.state is State.FIRING)

    def _allowed(self, key: str, now: float) -> bool:
        last = self.last_fired.get(key)
        return last is None or now - last >= self.repeat_after
