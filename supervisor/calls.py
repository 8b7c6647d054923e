"""The supervisor's view of one call, with an explicit state machine.

    STARTING --worker reports media and Realtime ready----------------> ACTIVE
    STARTING|ACTIVE --caller left, operator, drain, health-------------> ENDING
    STARTING|ACTIVE --the worker says it is ending (limit, failure)----> ENDING
    STARTING|ACTIVE|ENDING --worker reaped, teardown handed over if the
                            worker did not finish it, segment gone-----> GONE

Every ENDING arms the same deadline (`ending_since`): a worker that does not exit in time
is killed, whichever side began the ending.

The worker's own progress is read from the call's shared header; nothing here sends
messages to it. The supervisor writes only END_REQUEST and a transfer's news into the
header (supervisor/transfers.py), each followed by END_SIGNAL.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from enum import Enum

from shm_ring import (
    END_SIGNAL,
    CallSegment,
    CallState,
    EndReason,
    RealtimeState,
    Slot,
    TransferState,
    VoiceApi,
)
from supervisor.key_presses import KeyPresses


class Phase(Enum):
    STARTING = "starting"
    ACTIVE = "active"
    ENDING = "ending"
    GONE = "gone"


@dataclass
class CallEntry:
    call_id: str
    caller: str
    dialled: str
    channel_name: str
    pid: int
    segment: CallSegment
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    phase: Phase = Phase.STARTING
    end_requested_at: float | None = None
    killed_at: float | None = None
    worker_ending_at: float | None = None
    caller_gone: bool = False
    exit_status: int | None = None
    health: dict = field(default_factory=dict)
    caller_hash: str = ""  # records/privacy.py; `caller` is masked when RECORDS_MASK_CALLERS
    agent: str = ""  # the name of the agent that answers (callbridge/agents.py)
    webhooks: tuple[str, ...] = ()  # its webhook target keys, for a crashed call's record
    events: socket.socket | None = None  # the supervisor's end of shm_ring/call_events.py
    events_dropped: int = 0  # messages the worker's full (or closed) end did not take
    keys: KeyPresses = field(default_factory=KeyPresses)  # one event per key press
    key_presses: int = 0  # passed to the worker (status)

    @property
    def header(self):
        return self.segment.header

    def observe(self) -> None:
        """Follow the worker's state from the header (called every tick)."""
        state = self.header.get(Slot.CALL_STATE)
        if self.phase is Phase.STARTING and state == CallState.ACTIVE:
            self.phase = Phase.ACTIVE  # media flows and the Realtime session is open
        if state in (CallState.ENDING, CallState.ENDED) and self.worker_ending_at is None:
            self.worker_ending_at = time.monotonic()
            if self.phase is not Phase.GONE:
                self.phase = Phase.ENDING  # the worker ended the call itself (a limit, a failure)

    def ending_since(self) -> float | None:
        """When this call began ending, by either side; None while it is not ending."""
        times = [t for t in (self.end_requested_at, self.worker_ending_at) if t is not None]
        return min(times) if times else None

    def request_end(self, reason: EndReason) -> bool:
        """Ask the worker to end the call; the first reason wins. False if already asked."""
        if self.phase is Phase.GONE or self.header.get(Slot.END_REQUEST):
            return False
        self.header.set(Slot.END_REQUEST, reason)
        self.end_requested_at = time.monotonic()
        self.phase = Phase.ENDING
        signal_end(self.pid)
        return True

    def age(self) -> float:
        return time.monotonic() - self.started

    def status_row(self) -> dict:
        """One row of `callbridge status`."""
        h = self.header
        return {
            "call_id": self.call_id,
            "caller": self.caller,
            "dialled": self.dialled,
            "agent": self.agent,
            "age_s": round(self.age(), 1),
            "pid": self.pid,
            "phase": self.phase.value,
            "worker_state": CallState(h.get(Slot.CALL_STATE)).name.lower(),
            "api": VoiceApi(h.get(Slot.VOICE_API)).name.lower(),
            "realtime": RealtimeState(h.get(Slot.REALTIME_STATE)).name.lower(),
            "frames_in": h.get(Slot.FRAMES_IN),
            "frames_out": h.get(Slot.FRAMES_OUT),
            "uplink_fill": self.segment.uplink.fill(),
            "downlink_fill": self.segment.downlink.fill(),
            "underruns": h.get(Slot.UNDERRUNS),
            "barge_ins": h.get(Slot.BARGE_INS),
            "rejected_packets": sum(
                h.get(s)
                for s in (
                    Slot.REJECTED_SOURCE,
                    Slot.REJECTED_MALFORMED,
                    Slot.REJECTED_PAYLOAD_TYPE,
                    Slot.REJECTED_SIZE,
                )
            ),
            "reconnects": h.get(Slot.RECONNECTS),
            "tool_calls": h.get(Slot.TOOL_CALLS),
            "key_presses": self.key_presses,
            "transfer": _transfer_state(h),
            **self.health,
        }


@dataclass
class CallCounts:
    """What this run did with its callers, for status, the metrics and the alerts. Each
    count has one writer: admission (taken), the reap (failed), the turn-away desk (the rest)."""

    taken: int = 0
    failed: int = 0  # crashed, or set-up failed
    busy: int = 0  # turned away for want of capacity (draining, full, no memory, no worker)
    to_fallback: int = 0  # of those turned away, the ones sent to a fallback, not the prompt
    routed_away: int = 0  # no agent for the number or the hour, a budget spent: not busy


# How status shows a transfer's state.
TRANSFER_WORDS = {
    TransferState.IDLE: "idle",
    TransferState.DIALING: "dialling",
    TransferState.ANSWERED: "answered",
    TransferState.BRIDGED: "bridged",
    TransferState.SENT: "sent",
}


def _transfer_state(header) -> str:
    """ "" (none), or the attempt's state and destination number (call_worker/transfer.py)."""
    state = TransferState.of(header.get(Slot.TRANSFER_STATE))
    if state is TransferState.IDLE and not header.get(Slot.TRANSFERS):
        return ""
    return f"{TRANSFER_WORDS[state]} #{header.get(Slot.TRANSFER_DESTINATION)}"


def signal_end(pid: int | None) -> None:
    """Wake a worker to read its END_REQUEST (a zombie or a worker gone meanwhile: nothing)."""
    if pid:
        try:
            os.kill(pid, END_SIGNAL)
        except (ProcessLookupError, PermissionError):
            pass
