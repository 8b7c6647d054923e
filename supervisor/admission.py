"""The supervisor's admission of a call: the agent, the caller's masking, the segment, the worker.

A collaborator of the supervisor's loop (supervisor/service.py), given what it needs in its
constructor: what happens between a caller's StasisStart (or its adoption by
reconciliation) and its worker running. The agent is chosen first (callbridge/agents.py,
pure); a caller that cannot be taken (draining, at MAX_CONCURRENT_CALLS, no agent, a budget
spent, no shared memory, no worker) goes to the turn-away desk (supervisor/turning_away.py).
Nothing here waits: the call's segment is created and its worker forked (by `spawn`, the
supervisor's, which closes what is its own in the child) on the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from call_worker.call import CallInfo
from callbridge import ids
from callbridge.config import Settings
from records.privacy import caller_fields, private_channel_name
from records.spool import webhook_keys
from shm_ring import CallSegment, SegmentExistsError, segment_name
from supervisor.agents_side import AgentsSide
from supervisor.caller_limit import CallerLimit
from supervisor.calls import CallCounts, CallEntry
from supervisor.recent import RecentIds
from supervisor.stopping import Stopping
from supervisor.turning_away import TurnAwayDesk

log = logging.getLogger(__name__)

UNUSABLE_KEEP = 1000  # ids no request can name, remembered (oldest forgotten first)


class Admission:
    def __init__(
        self,
        settings: Settings,
        agents: AgentsSide,
        calls: dict[str, CallEntry],
        by_pid: dict[int, CallEntry],
        desk: TurnAwayDesk,
        recent: RecentIds,
        stopping: Stopping,
        counts: CallCounts,
        spawn: Callable,
    ) -> None:
        """`calls` and `by_pid` are the supervisor's tables (admission adds, the reap removes);
        `spawn(info, segment)` forks the worker and returns its pid."""
        self.settings = settings
        self.agents = agents
        self.calls = calls
        self.by_pid = by_pid
        self.desk = desk
        self.recent = recent
        self.stopping = stopping
        self.counts = counts
        self.spawn = spawn
        self.caller_limit = CallerLimit(settings.max_calls_per_caller_per_hour)  # supervisor/caller_limit.py
        # Channels whose id no ARI request can name (see _refuse_unusable): not ours to admit
        # or turn away, and not to be adopted again by each reconciliation.
        self.unusable: dict[str, None] = {}

    def _refuse_unusable(self, channel_id: str) -> None:
        """The id names a shared-memory segment, ARI paths and a record file: anything but
        Asterisk's own id alphabet is refused rather than escaped everywhere. The caller is
        turned away (hung up busy, no prompt: the prompt's playback id would carry the id),
        not left in Stasis; an id no ARI path can name is remembered, so that reconciliation
        does not adopt and refuse it again at every pass."""
        if channel_id in self.unusable:
            return
        if ids.addressable_channel_id(channel_id):
            log.error("refusing a channel with an unusable id %r: turning it away", channel_id[:80])
            self.desk.refuse(channel_id, "unusable channel id")
            return
        log.error("ignoring a channel whose id no ARI request can name: %r", channel_id[:80])
        self.unusable[channel_id] = None
        while len(self.unusable) > UNUSABLE_KEEP:
            self.unusable.pop(next(iter(self.unusable)))

    def admit(self, channel: dict) -> CallEntry | None:
        """The call's entry, its worker running; None: not admitted (turned away, or not ours)."""
        channel_id = str(channel.get("id", ""))
        if channel_id in self.calls or channel_id in self.desk.queue:
            return None
        if not ids.valid_call_id(channel_id):
            self._refuse_unusable(channel_id)
            return None
        # The agent first (pure, cheap): its fallback is where a caller we cannot take goes.
        dialled = str(_field(channel, "dialplan", "exten"))
        now_wall = time.time()
        choice = self.agents.book.choose(dialled, datetime.fromtimestamp(now_wall, UTC))
        agent = choice.agent
        if self.stopping.draining or len(self.calls) >= self.settings.max_concurrent_calls:
            why = "draining" if self.stopping.draining else "at MAX_CONCURRENT_CALLS"
            self.desk.turn_away(channel_id, why, choice.fallback)
            return None
        # Masked here, once (RECORDS_MASK_CALLERS): the entry, its log lines, status, the
        # worker and its record never hold the full number, only it and its keyed hash.
        number = str(_field(channel, "caller", "number"))
        caller, caller_hash = caller_fields(self.settings, number)
        caller_key = CallerLimit.key(number, caller_hash)
        if self.caller_limit.over(caller_key, time.monotonic()):
            # Busy, not the fallback: a number calling again and again is not sent to a person.
            self.desk.turn_away(channel_id, "over MAX_CALLS_PER_CALLER_PER_HOUR", None, busy=False)
            return None
        if agent is None:
            self.desk.turn_away(
                channel_id, f"no agent for {dialled or '?'} ({choice.how})", choice.fallback, busy=False
            )
            return None
        if self.agents.budgets.over(agent.name, agent.daily_budget, now_wall):
            self.desk.turn_away(
                channel_id, f"agent {agent.name} is over its daily budget", choice.fallback, busy=False
            )
            return None
        name = private_channel_name(self.settings, str(channel.get("name", "")), number)
        if choice.fallback != agent.fallback:  # the worker's in-call fallback (call_worker/ending.py)
            agent = replace(agent, fallback=choice.fallback)
        info = CallInfo(channel_id, caller, dialled, name, time.monotonic_ns(), caller_hash, agent)
        try:
            segment = CallSegment.create(segment_name(channel_id, self.settings.segment_prefix))
        except SegmentExistsError:
            log.error("a segment for call %s exists already; not starting it twice", channel_id)
            return None
        except OSError as exc:  # /dev/shm full, or limits
            log.error("cannot create the call's shared memory (%s); turning it away", exc)
            self.desk.turn_away(channel_id, "no shared memory", choice.fallback)
            return None
        try:
            pid = self.spawn(info, segment)
        except OSError as exc:  # fork failed: EAGAIN (process limit), ENOMEM
            segment.destroy()
            log.error("cannot start a worker (%s); turning the call away", exc, extra={"call_id": channel_id})
            self.desk.turn_away(channel_id, "no worker", choice.fallback)
            return None
        entry = CallEntry(
            channel_id,
            caller,
            dialled,
            info.channel_name,
            pid,
            segment,
            caller_hash=caller_hash,
            agent=agent.name,
            webhooks=tuple(webhook_keys(self.settings, agent)),
        )
        self.calls[channel_id] = entry
        self.recent.mark(channel_id, time.monotonic())
        self.caller_limit.taken(caller_key, time.monotonic())
        self.by_pid[pid] = entry
        self.counts.taken += 1
        log.info(
            "call from %s to %s (%s): agent %s (%s), worker %d",
            caller or "unknown",
            dialled or "?",
            info.channel_name,
            agent.name,
            choice.how,
            pid,
            extra={"call_id": channel_id},
        )
        return entry


def _field(obj: dict, outer: str, inner: str) -> str:
    """obj[outer][inner] from an ARI event, tolerating missing or mistyped parts."""
    value = obj.get(outer)
    return str(value.get(inner, "")) if isinstance(value, dict) else ""
