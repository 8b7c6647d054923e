"""Turning a caller away (over MAX_CONCURRENT_CALLS, draining, no memory or worker, no agent
for the number or the hour, an agent over its daily budget). With a fallback destination
(the agent's, else the agents file's [fallback], else FALLBACK_DESTINATION) the caller is
sent there, out of our Stasis app (ARI `continue`): a queue, voicemail, a person. Without
one, the caller hears BUSY_PROMPT and is hung up (`turn_away`, one caller per helper);
or, when several prompt helpers are at work already, is hung up at once with the busy
cause (`refuse`, a batch in one helper: supervisor/turn_aways.py says why). Both run in a
helper process (supervisor/helpers.py) because every step is an ARI request, and the
supervisor's loop waits on none.

The channel is marked first with TURNED_AWAY_VARIABLE: a supervisor that restarts while the
prompt plays (or after its helper died) finds the caller still in its Stasis app, and the
mark tells reconciliation what to finish instead of taking it as a call whose StasisStart
it missed (supervisor/reconcile.py): a value starting with FALLBACK_MARK names the fallback
(the caller is sent on, never hung up), any other means hang up.
"""

from __future__ import annotations

import logging
import time

from callbridge.ari_rest import AriError, AriRest
from callbridge.config import Settings
from callbridge.dialplan import DialplanTarget, parse_target
from callbridge.teardown import Target, remove_all

log = logging.getLogger(__name__)

TURNED_AWAY_VARIABLE = "CALLBRIDGE_TURNED_AWAY"
FALLBACK_MARK = "fallback:"  # the mark's value when the caller goes to a fallback
PROMPT_LIMIT = 10.0  # seconds the busy prompt may play before the hang-up
REQUEST_TIMEOUT = 15.0  # per ARI request: slower than any Asterisk we expect, never forever
HANGUP_LIMIT = 60.0  # seconds to keep trying the hang-up
POLL = 0.25
REFUSE_LIMIT = 20.0  # one batch's whole time; what it did not reach goes back to the queue
BUSY_CAUSE = "busy"  # ARI's hang-up reason: Q.850 cause 17, the caller hears a busy tone


def fallback_mark(target: DialplanTarget) -> str:
    return f"{FALLBACK_MARK}{target.context},{target.extension},{target.priority}"


def marked_fallback(mark: str | None) -> DialplanTarget | None:
    """The fallback a mark names (None: the mark says hang up, or there is none)."""
    if not mark or not mark.startswith(FALLBACK_MARK):
        return None
    try:
        return parse_target(mark.removeprefix(FALLBACK_MARK))
    except ValueError:
        return None


def turn_away(settings: Settings, channel_id: str, why: str, fallback: DialplanTarget | None = None) -> dict:
    """To the fallback when there is one; else mark, answer, play the prompt until it ends
    (or PROMPT_LIMIT), hang up. Runs in a helper; returns what happened, for the log."""
    ari = AriRest.for_settings(settings, timeout=REQUEST_TIMEOUT)
    try:
        if fallback is not None:
            sent = send_to_fallback(ari, channel_id, fallback)
            if sent is not None:
                return sent
        return _busy(settings, ari, channel_id, why)
    finally:
        ari.close()


def refuse(settings: Settings, batch: list, deadline: float = REFUSE_LIMIT) -> dict:
    """Turn a batch away with no prompt: each to its fallback, else marked and hung up with
    the busy cause. Returns the ids done and the ids left when the deadline came (an
    Asterisk too slow for the batch): the supervisor queues those again."""
    ari = AriRest.for_settings(settings, timeout=REQUEST_TIMEOUT)
    until = time.monotonic() + deadline
    done, left = [], []
    try:
        for waiting in batch:
            if time.monotonic() >= until:
                left.append(waiting.channel_id)
                continue
            if waiting.fallback is not None and send_to_fallback(ari, waiting.channel_id, waiting.fallback):
                done.append(waiting.channel_id)
                continue
            try:
                ari.set_variable(waiting.channel_id, TURNED_AWAY_VARIABLE, waiting.why)
                ari.hangup(waiting.channel_id, reason=BUSY_CAUSE)
            except AriError as exc:
                if exc.status != 404:  # 404: the caller left already
                    log.warning("refusing a caller failed: %s", exc, extra={"call_id": waiting.channel_id})
                    left.append(waiting.channel_id)
                    continue
            done.append(waiting.channel_id)
    finally:
        ari.close()
    return {"done": done, "left": left}


def send_to_fallback(ari: AriRest, channel_id: str, fallback: DialplanTarget) -> dict | None:
    """Mark and `continue`; None when Asterisk refused (the busy prompt then: the caller
    must not stay in Stasis). A caller already gone (404) needs nothing more."""
    extra = {"call_id": channel_id}
    try:
        ari.set_variable(channel_id, TURNED_AWAY_VARIABLE, fallback_mark(fallback))
        ari.continue_in_dialplan(channel_id, fallback.context, fallback.extension, fallback.priority)
    except AriError as exc:
        if exc.status == 404:
            return {"fallback": str(fallback), "sent": False, "gone": True}
        log.warning(
            "sending the caller to the fallback %s failed (%s): busy prompt instead",
            fallback,
            exc,
            extra=extra,
        )
        return None
    return {"fallback": str(fallback), "sent": True}


def _busy(settings: Settings, ari: AriRest, channel_id: str, why: str) -> dict:
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
    return {"hung_up": not left, "played": played}
