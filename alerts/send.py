"""The sending half of the built-in alerts: what an "alert" helper process runs.

The supervisor's tick decides (alerts/conditions.py) and forks one helper per batch of
notices (supervisor/helpers.py); the helper sends each notice through every channel, logs
each outcome and returns them to the supervisor. A receiver that is down, slow or answers
garbage costs the helper time, never the loop, and bounded time: each delivery has a
deadline for the whole of it (callbridge/deadline.py; per-read timeouts do not stop a
receiver that trickles its answer a byte at a time), a channel that ran out of time is not
tried again in the same batch, and the batch as a whole has BATCH_BUDGET seconds (the
supervisor kills an alert helper past a minute, supervisor/alerting.py::HELPER_LIMIT).
The outcomes are also spooled for the drainer, which stores them in the records database.
"""

from __future__ import annotations

import logging
import time

from alerts import email, webhook
from callbridge.alert_settings import Email, Webhook
from callbridge.deadline import DeadlineExceeded, deadline
from records.spool import write_alerts

log = logging.getLogger(__name__)

DELIVERY_DEADLINE = 15.0  # seconds for one notice through one channel, everything included
BATCH_BUDGET = 45.0  # seconds for the whole batch; past it the rest is "not tried"
SENDERS = {Email: email.send, Webhook: webhook.send}  # a channel's settings -> what sends through it


def deliver(channel, notice, instance: str) -> tuple[bool, str]:
    """One notice through one channel (callbridge/alert_settings.py: Email or Webhook):
    (delivered, what happened in a few words, never a URL or a password)."""
    sender = SENDERS.get(type(channel))
    if sender is None:  # not a channel the settings build: one failed delivery, not a lost batch
        return False, f"no sender for a {type(channel).__name__}"
    return sender(channel, notice, instance)


def send_all(channels, notices, instance: str, spool_dir=None) -> list[dict]:
    """Send, then spool the outcomes for the drainer (records/spool.py::write_alerts), so
    that every alert and what became of it is in the records database even when the
    database is down now."""
    outcomes = []
    until = time.monotonic() + BATCH_BUDGET
    timed_out: set[str] = set()  # channels that ran out of time once in this batch
    for notice in notices:
        for channel in channels:
            left = until - time.monotonic()
            if channel.name in timed_out:
                delivered, how = False, "not tried: it timed out earlier in this batch"
            elif left <= 0:
                delivered, how = False, "not tried: the batch's time ran out"
            else:
                try:
                    with deadline(min(getattr(channel, "DEADLINE", DELIVERY_DEADLINE), left)):
                        delivered, how = deliver(channel, notice, instance)
                except DeadlineExceeded as exc:
                    timed_out.add(channel.name)
                    delivered, how = False, f"timed out: {exc}"
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
