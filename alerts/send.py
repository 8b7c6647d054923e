"""The sending half of the built-in alerts: what an "alert" helper process runs.

The supervisor's tick decides (alerts/conditions.py) and forks one helper per batch of
notices (supervisor/helpers.py); the helper sends each notice through every channel, with
each channel's own timeouts, logs each outcome and returns them to the supervisor. A
receiver that is down, slow or answers garbage costs the helper time, never the loop.
The outcomes are also spooled for the drainer, which stores them in the records database.
"""

from __future__ import annotations

import logging
import time

from records.spool import write_alerts

log = logging.getLogger(__name__)


def send_all(channels, notices, instance: str, spool_dir=None) -> list[dict]:
    """Send, then spool the outcomes for the drainer (records/spool.py::write_alerts), so
    that every alert and what became of it is in the records database even when the
    database is down now."""
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
                    "severity": notice.severity,
                    "text": notice.text,
                    "channel": channel.name,
                    "delivered": delivered,
                    "how": how,
                }
            )
    if spool_dir is not None and outcomes:
        try:
            write_alerts(spool_dir, instance, outcomes, time.time())
        except OSError as exc:
            log.warning("alerts: cannot spool the outcomes for the records database: %s", exc)
    return outcomes
