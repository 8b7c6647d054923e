"""Which session.update a session.updated acknowledges (the goodbye waits for its own,
call_worker/goodbye.py).

Written and read only by the media loop (call_worker/media.py).
"""

from __future__ import annotations

from collections import deque


class SessionUpdates:
    """Which session.update a session.updated acknowledges. The acknowledgement names no
    event_id and its content is whatever the server echoes (possibly nothing), but events
    are answered in order: the Nth session.updated on a connection acknowledges the Nth
    update sent on it that was not refused (an error naming its event_id)."""

    def __init__(self) -> None:
        self._pending: deque[str] = deque()

    def opened(self, event_id: str) -> None:
        """A new connection, configured by the update sent as `event_id`."""
        self._pending = deque([event_id])

    def sent(self, event_id: str) -> None:
        self._pending.append(event_id)

    def acknowledged(self) -> str | None:
        """A session.updated arrived: the event_id of the update it answers."""
        return self._pending.popleft() if self._pending else None

    def refused(self, event_id: str) -> None:
        if event_id in self._pending:
            self._pending.remove(event_id)
