"""After a worker exits: what its exit means, the idempotent teardown in Asterisk, and the
one summary line per call."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from callbridge import ids
from callbridge.ari_rest import AriError, AriRest
from shm_ring import EndReason, Slot

log = logging.getLogger(__name__)

MAX_RETRIES_PER_TICK = 4
# Exit codes of a worker that ended its call itself (call_worker/process.py).
_CLEAN_EXITS = (0, 3)


@dataclass(frozen=True)
class Ending:
    crashed: bool
    how: str  # "exit:0", "signal:SIGKILL": one token, for the summary line
    reason: EndReason


def describe_exit(status: int, counters: dict) -> Ending:
    signalled = os.WIFSIGNALED(status)
    code = None if signalled else os.waitstatus_to_exitcode(status)
    how = f"signal:{signal.Signals(os.WTERMSIG(status)).name}" if signalled else f"exit:{code}"
    crashed = signalled or code not in _CLEAN_EXITS
    recorded = counters.get(Slot.END_REASON.name.lower(), 0)
    reason = EndReason.WORKER_CRASHED if crashed else EndReason(recorded) if recorded else EndReason.NONE
    return Ending(crashed, how, reason)


def summary_line(entry, counters: dict, ending: Ending) -> str:
    return (
        f"call summary: caller={entry.caller or '-'} dialled={entry.dialled or '-'} "
        f"duration={entry.age():.1f}s end={ending.reason.name.lower()} worker={ending.how} "
        f"frames_in={counters['frames_in']} frames_out={counters['frames_out']} "
        f"barge_ins={counters['barge_ins']} underruns={counters['underruns']} "
        f"responses={counters['responses']} tokens_in={counters['input_tokens']} "
        f"tokens_out={counters['output_tokens']} reconnects={counters['reconnects']}"
    )


class AsteriskCleanup:
    """Deletes a call's bridge and externalMedia channel (derived ids, 404 is done) and hangs
    up its caller. Each step is tried even when another failed; failed calls are retried a
    few per tick, so that a slow or absent Asterisk never stalls the supervisor's loop
    (reconciliation after the next connect removes whatever is still left)."""

    def __init__(self, ari: AriRest) -> None:
        self.ari = ari
        self.pending: set[str] = set()

    def teardown(self, call_id: str, hang_up_caller: bool) -> None:
        steps = [
            (self.ari.delete_bridge, ids.bridge_id(call_id)),
            (self.ari.hangup, ids.external_channel_id(call_id)),
        ]
        if hang_up_caller:
            steps.append((self.ari.hangup, call_id))
        failures = []
        for step, target in steps:
            try:
                step(target)
            except AriError as exc:
                failures.append(exc)
        if not failures:
            self.pending.discard(call_id)
            return
        if call_id not in self.pending:
            log.warning(
                "teardown in Asterisk failed (%s); will retry", failures[0], extra={"call_id": call_id}
            )
        self.pending.add(call_id)

    def retry(self, live) -> None:
        for call_id in list(self.pending)[:MAX_RETRIES_PER_TICK]:
            if call_id not in live:
                self.teardown(call_id, hang_up_caller=True)
