"""Turning a caller away (over MAX_CONCURRENT_CALLS, draining, no memory or worker): the
caller hears BUSY_PROMPT and is hung up. It runs in a helper process (supervisor/helpers.py)
because every step is an ARI request, and the supervisor's loop waits on none.

The channel is marked first with TURNED_AWAY_VARIABLE: a supervisor that restarts while the
prompt plays (or after its helper died) finds the caller still in its Stasis app, and the
mark tells reconciliation to hang up instead of taking it as a call whose StasisStart it
missed (supervisor/reconcile.py).
"""

from __future__ import annotations

import logging
import time

from callbridge.ari_rest import AriError, AriRest
from callbridge.config import Settings
from callbridge.teardown import Target, remove_all

log = logging.getLogger(__name__)

TURNED_AWAY_VARIABLE = "CALLBRIDGE_TURNED_AWAY"
PROMPT_LIMIT = 10.0  # seconds the busy prompt may play before the hang-up
REQUEST_TIMEOUT = 15.0  # per ARI request: slower than any Asterisk we expect, never forever
HANGUP_LIMIT = 60.0  # seconds to keep trying the hang-up
POLL = 0.25


def turn_away(settings: Settings, channel_id: str, why: str) -> dict:
    """Mark, answer, play the prompt until it ends (or PROMPT_LIMIT), hang up. Runs in a
    helper; returns what happened, for the supervisor's log."""
    ari = AriRest(
        settings.ari_base_url, settings.asterisk_username, settings.asterisk_password, timeout=REQUEST_TIMEOUT
    )
    extra = {"call_id": channel_id}
    played = False
    try:
        ari.set_variable(channel_id, TURNED_AWAY_VARIABLE, why)
        ari.answer(channel_id)
        playback_id = settings.ids.playback("busy", channel_id)
        ari.play(channel_id, settings.busy_prompt, playback_id)
        played = True
        deadline = time.monotonic() + PROMPT_LIMIT
        while time.monotonic() < deadline and ari.playback(playback_id) is not None:
            time.sleep(POLL)
    except AriError as exc:  # 404: the caller left; the hang-up below then finds nothing
        if exc.status != 404:
            log.warning("busy prompt failed: %s", exc, extra=extra)
    left = remove_all(ari, [Target("channel", channel_id)], time.monotonic() + HANGUP_LIMIT, channel_id)
    ari.close()
    return {"hung_up": not left, "played": played}
