"""The sending half of the built-in alerts: what an "alert" helper process runs.

The supervisor's tick decides (alerts/conditions.py) and forks one helper per batch of
notices (supervisor/helpers.py); the helper sends each notice through every channel, with
each channel's own timeouts, logs each outcome and returns them to the supervisor. A
receiver that is down, slow or answers garbage costs the helper time, never the loop.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def send_all(channels, notices, instance: str) -> list[dict]:
    outcomes = []
    for notice in notices:
        for channel in channels:
            delivered, how = channel.send(notice, instance)
            level = logging.INFO if delivered else logging.WARNING
            log.log(level, "alert %s %s via %s: %s", notice.key, notice.kind, channel.name, how)
            outcomes.append(
                {
                    "key": notice.key,
                    "kind": notice.kind,
                    "channel": channel.name,
                    "delivered": delivered,
                    "how": how,
                }
            )
    return outcomes
