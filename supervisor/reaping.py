"""The supervisor's end of a call: finishing each call whose worker exited.

A collaborator of the supervisor's loop (supervisor/service.py, which reaps every child and
hands a worker's exit here), given what it needs in its constructor. A worker's exit is
described (supervisor/exits.py) from
its status and its header's last counters; a teardown it did not finish, and a crashed
call's record, are helpers' work (supervisor/helpers.py); its segment is unlinked, a pair it
transferred is watched from then on (supervisor/transfers.py), the call is counted (the
totals, the daily budgets, the alerts) and its summary line logged (supervisor/summary.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from callbridge.config import Settings
from callbridge.teardown import Target
from records.drainer import crash_record_work
from records.handover import CrashedCall, Pricing
from shm_ring import EndReason, RecordingState, TransferState
from supervisor import asterisk_work
from supervisor.agents_side import AgentsSide
from supervisor.alerting import Alerting
from supervisor.calls import CallCounts, CallEntry, Phase
from supervisor.exits import describe_exit
from supervisor.health import HealthMonitor
from supervisor.recent import RecentIds
from supervisor.summary import summary_line
from supervisor.totals import Totals
from supervisor.transfers import Transfers

log = logging.getLogger(__name__)


class CallEnds:
    def __init__(
        self,
        settings: Settings,
        calls: dict[str, CallEntry],
        recent: RecentIds,
        health: HealthMonitor,
        transfers: Transfers,
        totals: Totals,
        alerting: Alerting,
        agents: AgentsSide,
        counts: CallCounts,
        start_helper: Callable,
        start_teardown: Callable,
        guarded: Callable,
    ) -> None:
        self.settings = settings
        self.ids = settings.ids
        self.calls = calls
        self.recent = recent
        self.health = health
        self.transfers = transfers
        self.totals = totals
        self.alerting = alerting
        self.agents = agents
        self.counts = counts
        self.start_helper = start_helper
        self.start_teardown = start_teardown
        self.guarded = guarded

    def _record_lost(self, call_id: str) -> None:
        """A crashed call's record could not be written (its helper failed): counted, alerted."""
        self.totals.records_lost += 1
        log.error(
            "a crashed call's record could not be written to the spool: it is lost",
            extra={"call_id": call_id},
        )
        self.alerting.record_lost(time.monotonic())

    def finish(self, entry: CallEntry, status: int) -> None:
        """The worker exited with `status` (already reaped): everything its call leaves behind."""
        entry.exit_status = status
        counters = entry.header.snapshot()
        ending = describe_exit(status, counters)
        if ending.crashed:
            self.counts.failed += 1
            log.error(
                "worker %d died (%s) with the call up; last counters: frames in %d out %d, state %d",
                entry.pid,
                ending.how,
                counters["frames_in"],
                counters["frames_out"],
                counters["call_state"],
                extra={"call_id": entry.call_id},
            )
        elif ending.reason is EndReason.SETUP_FAILED:
            self.counts.failed += 1
        if ending.crashed or ending.teardown_left:
            # The worker did not finish its own teardown: a helper does it, with the caller's
            # hang-up unless the caller left by itself.
            targets = asterisk_work.call_targets(
                self.ids, entry.call_id, hang_up_caller=not entry.caller_gone
            )
            transfer = TransferState.of(counters.get("transfer_state", 0))
            if transfer.transferred:  # the caller is not ours to end
                # (BRIDGED: the pair stays for supervisor/transfers.py; SENT: the caller left
                # Stasis, only our bridge and media channel remain)
                keep_bridge = transfer is TransferState.BRIDGED
                targets = [t for t in targets if t.object_id != entry.call_id]
                targets = [t for t in targets if not (keep_bridge and t.kind == "bridge")]
            if transfer.ringing:  # a transfer still ringing or answered
                attempt = counters.get("transfer_attempt", 0)
                targets.append(Target("channel", self.ids.transfer_channel(entry.call_id, attempt)))
            self.start_teardown(entry.call_id, targets)
        if ending.crashed:  # its record, from its journal and these last counters (records/spool.py)
            call_id = entry.call_id
            self.start_helper(
                "record",
                crash_record_work(
                    self.settings.spool_dir, crashed_call(self.settings, entry), counters, ending.how
                ),
                lambda _result, ok: ok or self._record_lost(call_id),
                key=call_id,
            )
        if entry.events is not None:
            entry.events.close()  # the worker's event channel (shm_ring/call_events.py)
        try:
            entry.segment.close()
        finally:
            entry.segment.unlink()
            entry.phase = Phase.GONE  # worker reaped, teardown done or handed over, segment unlinked
            self.calls.pop(entry.call_id, None)
            self.recent.mark(entry.call_id, time.monotonic())
            self.health.forget(entry.pid)
        self.transfers.call_reaped(entry, counters)
        reason, errors = self.totals.call_ended(counters, ending, entry.age(), self.agents.model_of(entry))
        if counters.get("record_lost"):
            log.error(
                "the call's record could not be written to the spool: it is lost",
                extra={"call_id": entry.call_id},
            )
            self.alerting.record_lost(time.monotonic())
        if counters.get("recording_state") == RecordingState.FAILED:
            log.warning("the call's recording stopped or could not start", extra={"call_id": entry.call_id})
            self.alerting.recording_failed(time.monotonic())
        self.guarded(self.agents.count_cost, entry, counters)
        self.alerting.call_ended(time.monotonic(), reason, errors, counters)
        log.info("%s", summary_line(entry, counters, ending), extra={"call_id": entry.call_id})


def crashed_call(settings, entry: CallEntry) -> CrashedCall:
    """What records/ is handed of a call whose worker died (records/handover.py)."""
    return CrashedCall(
        instance=settings.instance,
        call_id=entry.call_id,
        caller=entry.caller,
        caller_hash=entry.caller_hash,
        dialled=entry.dialled,
        agent=entry.agent,
        started_at=entry.started_wall,
        currency=settings.records_currency,
        pricing=Pricing.for_settings(settings),
        webhooks=entry.webhooks,
        recordings_dir=str(settings.recordings_path),  # its partial recording, if it was recorded
    )
