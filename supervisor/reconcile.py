"""Reconciliation with Asterisk, at start-up and after every events reconnect, and again with
backoff while it fails (ARI REST can fail while the events socket is up).

ARI does not replay StasisStart, and an ARI app that dies leaves its channels in Stasis and
its bridges alive. So after each connect a helper process lists channels and bridges (it
waits on Asterisk so the loop does not, supervisor/helpers.py), and the loop decides with
`plan()`, a pure function of the listing and the live calls:
- this instance's bridges and externalMedia channels (derived ids, callbridge/ids.py) that
  no live call owns are removed; so are callers whose call belonged to a dead run (they had
  such leftovers), and callers a dead run had turned away (marked by supervisor/turn_away.py),
  except those it was sending to a fallback: they are sent on to it, never hung up;
- any other caller waiting in our Stasis app is admitted: its StasisStart was missed while
  the events connection was down;
- live calls whose caller channel is gone are ended (the hang-up happened while disconnected);
- a call's bridge that holds its caller and its transfer's channel is a transferred call
  still talking (supervisor/transfers.py): adopted and watched, never removed; a transfer's
  channel outside such a bridge whose call is not live is removed.
Another instance's objects are never touched: its ids carry its own instance, and its
callers wait in its own app.

A listing is a snapshot taken while calls come and go: a call admitted after it was asked
for may or may not be in it, so such a call is never stripped (it is live) and never ended
for being absent (only calls older than the listing are).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from callbridge.ari_rest import AriError, AriRest
from callbridge.config import Settings
from callbridge.ids import InstanceIds, addressable_channel_id
from callbridge.teardown import Target
from supervisor.turn_away import TURNED_AWAY_VARIABLE, marked_fallback

log = logging.getLogger(__name__)

RETRY_FIRST = 2.0  # seconds before the first retry of a failed reconciliation
RETRY_CAP = 60.0
REQUEST_TIMEOUT = 15.0


def in_app(channel: dict, app: str) -> bool:
    dialplan = channel.get("dialplan") if isinstance(channel.get("dialplan"), dict) else {}
    return dialplan.get("app_name") == "Stasis" and str(dialplan.get("app_data", "")).split(",")[0] == app


def list_asterisk(settings: Settings, skip: set[str] = frozenset()) -> dict:
    """In the helper: channels and bridges, and for each caller waiting in our app (but the
    live calls in `skip`) whether a dead run turned it away; {"error": ...} when Asterisk
    refused or answered something that is not a listing (the loop retries)."""
    ari = AriRest.for_settings(settings, timeout=REQUEST_TIMEOUT)
    try:
        channels, bridges = ari.channels(), ari.bridges()
        if not isinstance(channels, list) or not isinstance(bridges, list):
            # Never read as "no channels": every live call would be taken for ended.
            return {"error": "Asterisk's channel or bridge list is not a list"}
        channels = [c for c in channels if isinstance(c, dict)]
        bridges = [b for b in bridges if isinstance(b, dict)]
        ids = settings.ids
        for channel in channels:
            channel_id = str(channel.get("id", ""))
            if channel_id in skip or not addressable_channel_id(channel_id):
                continue  # an id no path can name: asking about it would ask about another
            if in_app(channel, settings.ari_app_name) and not ids.is_media_channel(channel):
                marked = ari.variable(channel_id, TURNED_AWAY_VARIABLE)
                channel["turned_away"] = marked is not None
                channel["turned_away_mark"] = marked or ""
    except AriError as exc:
        return {"error": str(exc)}
    finally:
        ari.close()
    return {"channels": channels, "bridges": bridges}


@dataclass
class Plan:
    remove: list[Target] = field(default_factory=list)
    adopt: list[dict] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    transferred: dict[str, str] = field(default_factory=dict)  # call id -> destination channel
    pairs_gone: list[str] = field(default_factory=list)  # watched pairs missing a side: end them
    send_on: list[tuple] = field(default_factory=list)  # (caller, DialplanTarget): to their fallback

    def counts(self) -> dict:
        return {
            "removed": len(self.remove),
            "adopted": len(self.adopt),
            "gone": len(self.gone),
            "transferred": len(self.transferred),
            "transferred calls over": len(self.pairs_gone),
            "sent to a fallback": len(self.send_on),
        }


def _talking_pair(bridge: dict, owner: str, ids: InstanceIds) -> str | None:
    """The destination channel when `bridge` holds `owner`'s caller and its transfer's channel."""
    members = [str(c) for c in bridge.get("channels") or [] if isinstance(c, str)]
    if owner not in members:
        return None
    for member in members:
        found = ids.transfer_of(member)
        if found is not None and found[0] == owner and not member.endswith(";2"):
            return member
    return None


def plan(
    listing: dict,
    live: set[str],
    older: set[str],
    busy: set[str],
    ids: InstanceIds,
    app: str,
    watched: dict[str, str] | None = None,
    watched_older: set[str] = frozenset(),
) -> Plan:
    """What to do about a listing. `live`: every live call now (a call admitted while the
    listing ran may show up in it: it is not stale); `older`: the live calls admitted before
    the listing was asked for (only their absence means the caller left); `busy`: callers
    this run is turning away or has just had (turned away, or a call that ended while the
    listing ran): theirs to finish, never adopted; `watched`: transferred calls already
    watched (supervisor/transfers.py), call id -> destination channel, and `watched_older`
    those watched before the listing was asked for: only their missing side means it left
    (while the events link was down)."""
    watched = watched or {}
    channels = [c for c in listing.get("channels", []) if isinstance(c, dict)]
    bridges = [b for b in listing.get("bridges", []) if isinstance(b, dict)]
    result = Plan()
    stale: set[str] = set()
    talking: set[str] = set(watched)
    for bridge in bridges:
        owner = ids.call_id_of(str(bridge.get("id", "")))
        if owner is None or owner in live or owner in watched:
            continue
        destination = _talking_pair(bridge, owner, ids)
        if destination is not None:
            result.transferred[owner] = destination
            talking.add(owner)
            continue
        stale.add(owner)
        result.remove.append(Target("bridge", str(bridge["id"])))
    for channel in channels:
        channel_id = str(channel.get("id", ""))
        transfer = ids.transfer_of(channel_id)
        owner = transfer[0] if transfer is not None else ids.call_id_of(channel_id)
        if transfer is not None and (channel_id.endswith(";2") or owner in talking or owner in live):
            continue  # a Local half goes with its other half; a talking pair or live call keeps its own
        if owner is not None and owner not in live:
            stale.add(owner)
            result.remove.append(Target("channel", str(channel["id"])))
    # A caller in any bridge is somebody's live call (ours, or another program's that shares
    # the app by mistake): never a missed StasisStart.
    bridged = {str(c) for b in bridges if isinstance(b.get("channels"), list) for c in b["channels"]}
    present = set()
    for channel in channels:
        channel_id = str(channel.get("id", ""))
        present.add(channel_id)
        if channel_id in live or channel_id in busy or channel_id in talking or ids.is_media_channel(channel):
            continue
        if channel_id in stale:
            result.remove.append(Target("channel", channel_id))
        elif in_app(channel, app):
            if channel.get("turned_away"):
                # A caller being sent to a fallback is sent on, never hung up.
                fallback = marked_fallback(str(channel.get("turned_away_mark") or ""))
                if fallback is not None:
                    result.send_on.append((channel_id, fallback))
                else:
                    result.remove.append(Target("channel", channel_id))
            elif channel_id not in bridged:
                result.adopt.append(channel)
    result.gone = sorted((older & live) - present)
    bridge_ids = {str(b.get("id", "")) for b in bridges}
    for call_id in sorted(watched_older & set(watched)):
        if call_id not in present or watched[call_id] not in present or ids.bridge(call_id) not in bridge_ids:
            result.pairs_gone.append(call_id)
    return result


class Reconciliation:
    """When to list: after each connect and, while listing fails, again with doubling delays
    (leftovers and waiting callers must not wait for the next events reconnect, which may
    never come). At most one listing runs at a time; a connect during one asks for another."""

    def __init__(self) -> None:
        self.retry_at: float | None = None
        self.delay = RETRY_FIRST
        self.running_since: float | None = None  # monotonic time the running listing was asked for
        self.again = False
        self.failures = 0
        self.done = 0  # listings that worked, for status

    def after_connect(self) -> None:
        self.delay = RETRY_FIRST
        self.retry_at = time.monotonic()

    def due(self, now: float) -> bool:
        if self.running_since is not None:
            return False
        return self.retry_at is not None and now >= self.retry_at

    def started(self, now: float) -> None:
        self.running_since = now
        self.retry_at = None

    def finished(self, error: str | None) -> None:
        """The listing is back: None when it worked, else why not."""
        self.running_since = None
        if error is None:
            self.done += 1
            if self.failures:
                log.info(
                    "reconciliation with Asterisk succeeded on a retry (after %d failed attempts)",
                    self.failures,
                )
            self.failures = 0
            self.delay = RETRY_FIRST
            return
        self.failures += 1
        log.warning("reconciliation with Asterisk failed: %s (retrying in %.0f s)", error, self.delay)
        self.retry_at = time.monotonic() + self.delay
        self.delay = min(RETRY_CAP, self.delay * 2)
