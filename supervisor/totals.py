"""Process-lifetime totals the supervisor keeps for the metrics: what every reaped call added.

The supervisor already reads each call's header at the reap (its last counters, even after
a crash); `Totals.call_ended` adds them here, once per call. Nothing is counted from the
records database: retention shrinks a table, a counter must never go down. The metrics
helper asks for these over the control socket (supervisor/commands/metrics.py) and the
exporter (metrics/collector.py) turns them into Prometheus families.

Pure: no I/O, no clock; a few dict additions per call, on the supervisor's loop.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from callbridge.prices import PriceTable
from records.spool import usage_by_kind
from shm_ring import EndReason, RecordingState, Slot
from shm_ring.header import ERROR_CODE_SLOTS
from supervisor.exits import Ending

# Upper bounds in seconds. Set-up: from the admission to the bridged call (a healthy one
# takes well under a second; a slow Asterisk or Realtime several). Duration: a phone call.
SETUP_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
TOKEN_KINDS = ("input_audio", "input_text", "input_cached", "output_audio", "output_text")
OTHER_ERRORS = "other"  # errors whose code has no slot of its own (Slot.REALTIME_ERRORS)


@dataclass
class Histogram:
    """Counts per bucket (not cumulative), the sum and the count of what was observed."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)  # the first bound >= value (len: above all)
        self.counts[index] += 1
        self.total += value
        self.count += 1

    def as_dict(self) -> dict:
        """Cumulative, as Prometheus wants them: [[upper bound, calls at or below it], ...]."""
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, "+Inf"), self.counts, strict=True):
            running += count
            buckets.append([bound, running])
        return {"buckets": buckets, "sum": round(self.total, 6), "count": self.count}


@dataclass
class Totals:
    model: str
    prices: PriceTable
    calls_by_reason: dict[str, int] = field(default_factory=dict)
    worker_crashes: int = 0
    setup: Histogram = field(default_factory=lambda: Histogram(SETUP_BUCKETS))
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    errors_by_code: dict[str, int] = field(default_factory=dict)
    tokens_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    cost: float = 0.0
    underruns: int = 0
    barge_ins: int = 0
    session_seconds: int = 0  # GPT-Live's billed session time
    records_lost: int = 0  # records that could not be written to the spool (the worker's, a crash's)
    recordings: int = 0  # calls whose recording was finished whole
    recordings_failed: int = 0  # calls whose recording stopped (a full disk) or could not start

    def call_ended(
        self, counters: dict[str, int], ending: Ending, duration_s: float, model: str = ""
    ) -> tuple[str, dict]:
        """Add one reaped call: `counters` is its header's snapshot, taken at the reap, and
        `model` its voice model (an agent's own; "": the environment's). Returns the call's
        end reason and its Realtime errors by code (for the alerts)."""
        reason = ending.reason if ending.reason is not EndReason.NONE else None
        name = reason.name.lower() if reason is not None else "unknown"
        self.calls_by_reason[name] = self.calls_by_reason.get(name, 0) + 1
        if ending.crashed:
            self.worker_crashes += 1
        self.duration.observe(max(0.0, duration_s))
        created, ready = counters.get("created_ns", 0), counters.get("media_ready_ns", 0)
        if created and ready >= created:  # a call that never got bridged has no set-up time
            self.setup.observe((ready - created) / 1e9)
        errors = {code: counters.get(slot.name.lower(), 0) for code, slot in ERROR_CODE_SLOTS.items()}
        errors[OTHER_ERRORS] = counters.get(Slot.REALTIME_ERRORS.name.lower(), 0)
        for code, count in errors.items():
            self._add_error(code, count)
        usage = usage_by_kind(counters)  # the header's token slots carry the same names
        for kind in TOKEN_KINDS:
            self.tokens_by_kind[kind] += int(usage[f"{kind}_tokens"])
        cost = self.prices.estimate(model or self.model, usage)
        if cost is not None:  # a model without prices adds no cost, never a guess
            self.cost += cost
        self.underruns += counters.get("underruns", 0)
        self.barge_ins += counters.get("barge_ins", 0)
        self.session_seconds += counters.get("session_seconds", 0)
        self.records_lost += 1 if counters.get("record_lost", 0) else 0
        recording = counters.get("recording_state", 0)
        self.recordings += recording == RecordingState.DONE
        self.recordings_failed += recording == RecordingState.FAILED
        return name, {code: count for code, count in errors.items() if count}

    def _add_error(self, code: str, count: int) -> None:
        if count:
            self.errors_by_code[code] = self.errors_by_code.get(code, 0) + count

    def as_dict(self) -> dict:
        return {
            "calls_by_reason": dict(self.calls_by_reason),
            "worker_crashes": self.worker_crashes,
            "setup_seconds": self.setup.as_dict(),
            "duration_seconds": self.duration.as_dict(),
            "realtime_errors_by_code": dict(self.errors_by_code),
            "tokens_by_kind": dict(self.tokens_by_kind),
            "cost_estimate": round(self.cost, 6),
            "underruns": self.underruns,
            "barge_ins": self.barge_ins,
            "session_seconds": self.session_seconds,
            "records_lost": self.records_lost,
            "recordings": self.recordings,
            "recordings_failed": self.recordings_failed,
        }
