"""Reconciliation with Asterisk, at start-up and after every events reconnect, and
again with backoff while it fails (ARI REST can fail while the events socket is up).

ARI does not replay StasisStart, and an ARI app that dies leaves its channels in Stasis
and its bridges alive (reference/asterisk.md). So after each connect the supervisor lists
channels and bridges and:
- deletes our bridges and externalMedia channels (derived ids) that no live call owns;
- hangs up callers whose call belonged to a dead run (they had such leftovers);
- starts a call for any other caller waiting in our Stasis app (its StasisStart was
  missed while the events connection was down);
- ends live calls whose caller channel is gone (the hang-up happened while disconnected).
"""

from __future__ import annotations

import logging
import time

from callbridge import ids
from callbridge.ari_rest import AriError
from shm_ring import EndReason

log = logging.getLogger(__name__)


RETRY_FIRST = 2.0  # seconds before the first retry of a failed reconciliation
RETRY_CAP = 60.0


class Reconciliation:
    """Runs `reconcile` after each connect and, while it fails, again on the supervisor's
    tick with doubling delays: leftovers and waiting callers must not wait for the next
    events reconnect, which may never come."""

    def __init__(self) -> None:
        self.retry_at: float | None = None
        self.delay = RETRY_FIRST

    def after_connect(self, supervisor) -> None:
        self.delay = RETRY_FIRST
        self._run(supervisor)

    def due(self, now: float) -> bool:
        return self.retry_at is not None and now >= self.retry_at

    def retry(self, supervisor) -> None:
        self._run(supervisor)

    def _run(self, supervisor) -> None:
        try:
            reconcile(supervisor)
        except AriError as exc:
            log.warning("reconciliation with Asterisk failed: %s (retrying in %.0f s)", exc, self.delay)
            self.retry_at = time.monotonic() + self.delay
            self.delay = min(RETRY_CAP, self.delay * 2)
            return
        if self.retry_at is not None:
            log.info("reconciliation with Asterisk succeeded on a retry")
        self.retry_at = None


def in_our_app(channel: dict, app: str) -> bool:
    dialplan = channel.get("dialplan") or {}
    return dialplan.get("app_name") == "Stasis" and str(dialplan.get("app_data", "")).split(",")[0] == app


def reconcile(supervisor) -> dict:
    ari = supervisor.ari
    channels = [c for c in (ari.channels() or []) if isinstance(c, dict)]
    bridges = [b for b in (ari.bridges() or []) if isinstance(b, dict)]
    live = set(supervisor.calls)
    stale: set[str] = set()
    removed = {"bridges": 0, "channels": 0, "callers": 0, "adopted": 0, "gone": 0}
    for bridge in bridges:
        owner = ids.call_id_of(str(bridge.get("id", "")))
        if owner is not None and owner not in live:
            stale.add(owner)
            removed["bridges"] += _attempt(ari.delete_bridge, bridge["id"])
    present = {str(c.get("id", "")) for c in channels}
    for channel in channels:
        owner = ids.call_id_of(str(channel.get("id", "")))
        if owner is not None and owner not in live:
            stale.add(owner)
            removed["channels"] += _attempt(ari.hangup, channel["id"])
    for channel in channels:
        channel_id = str(channel.get("id", ""))
        if channel_id in live or ids.is_our_channel(channel):
            continue
        if channel_id in stale:
            removed["callers"] += _attempt(ari.hangup, channel_id)
        elif in_our_app(channel, supervisor.settings.ari_app_name):
            log.info(
                "adopting a call that entered while the events connection was down",
                extra={"call_id": channel_id},
            )
            supervisor.admit(channel)
            removed["adopted"] += 1
    for call_id in live - present:
        entry = supervisor.calls.get(call_id)
        if entry is not None and not entry.caller_gone:
            entry.caller_gone = True
            entry.request_end(EndReason.CALLER_HANGUP)
            removed["gone"] += 1
    if any(removed.values()):
        log.info("reconciled with Asterisk: %s", ", ".join(f"{k} {v}" for k, v in removed.items() if v))
    return removed


def _attempt(action, target: str) -> int:
    """1 when done, 0 (logged) when ARI refused: one failure must not stop the others."""
    try:
        action(target)
        return 1
    except AriError as exc:
        log.warning("reconciliation: %s", exc)
        return 0
