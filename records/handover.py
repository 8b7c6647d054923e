"""What the layers above hand `records/`: typed, defined here, so that records/ reads no
object of theirs (a worker's `Call`, the supervisor's `CallEntry`).

Two hand-overs, one per way a call's record comes to be:
- `WorkerEnding`: the worker ended its call and writes its own record
  (call_worker/ending.py builds it; records/spool.py::final_record turns it into the body);
- `CrashedCall`: the worker died, and the supervisor's "record" helper completes the record
  from the call's journal (supervisor/reaping.py::crashed_call builds it;
  records/drainer.py::crash_record_work and records/crashed.py::complete_crashed use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callbridge.prices import PriceTable
from shm_ring import EndReason, WorkerExit


@dataclass(frozen=True)
class Pricing:
    """What cost estimates need: the price table and the models priced (RECORDS_PRICES,
    OPENAI_REALTIME_MODEL, OPENAI_TRANSCRIPTION_MODEL)."""

    prices: PriceTable | None
    model: str
    transcription_model: str

    @classmethod
    def for_settings(cls, settings) -> Pricing:
        return cls(settings.prices, settings.openai_realtime_model, settings.openai_transcription_model)


@dataclass(frozen=True)
class WorkerEnding:
    """A call as its worker knew it at the end."""

    counters: dict  # the call header's last snapshot (shm_ring/header.py::CallHeader.snapshot)
    started_at: float  # wall clock, as the spool's header has it
    admitted_ns: int  # monotonic: when the supervisor admitted the call (0: not known)
    end_reason: EndReason
    teardown_left: bool  # the worker leaves its teardown to the supervisor's helper
    failure: str  # "" or what ended the call badly
    setup_ms: dict  # the set-up timeline, in ms after admission (call_worker/setup_timeline.py)
    bridge_retries: int
    usage: dict  # the Realtime server's usage, as the conversation summed it
    turns: list[dict]  # the transcript's entries
    events: list[dict]  # what happened during the call, with offsets
    pricing: Pricing
    transcripts: bool = True  # RECORDS_TRANSCRIPTS: false keeps no text
    recording: dict | None = None  # the finished recording (records/recordings.py::finish)

    @property
    def worker_exit(self) -> WorkerExit:
        """The code the worker is about to exit with (call_worker/process.py)."""
        if self.teardown_left:
            return WorkerExit.TEARDOWN_LEFT
        if self.end_reason is EndReason.SETUP_FAILED:
            return WorkerExit.SETUP_FAILED
        return WorkerExit.OK


@dataclass(frozen=True)
class CrashedCall:
    """What the supervisor knows of a call whose worker died: for a worker that died before
    it opened its journal, this is the whole header of the record."""

    instance: str
    call_id: str
    caller: str  # as masked at admission (RECORDS_MASK_CALLERS)
    caller_hash: str
    dialled: str
    agent: str
    started_at: float  # wall clock
    currency: str
    pricing: Pricing = field(default_factory=lambda: Pricing(None, "", ""))
    webhooks: tuple[str, ...] = ()  # the call's webhook target keys (records/spool.py::webhook_keys)
    recordings_dir: str = ""  # where its partial recording may be (RECORDINGS_DIR), "": not recorded

    def header(self, version: int) -> dict:
        return {
            "version": version,
            "instance": self.instance,
            "call_id": self.call_id,
            "caller": self.caller,
            "caller_hash": self.caller_hash,
            "dialled": self.dialled,
            "agent": self.agent,
            "started_at": self.started_at,
            "model": self.pricing.model,
            "transcription_model": self.pricing.transcription_model,
            "currency": self.currency,
            "webhooks": list(self.webhooks),
        }
