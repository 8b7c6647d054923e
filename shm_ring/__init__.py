"""Shared-memory audio rings, per-call headers, and the contract between the processes:
the header's slots and the values they hold (header.py), the workers' exit codes (header.py)
and the control socket's framing (wire.py). Stdlib only; imports nothing of ours."""

from shm_ring.errors import LayoutError, RingError, SegmentExistsError, SegmentGoneError
from shm_ring.header import (
    CLEAN_EXITS,
    END_SIGNAL,
    CallHeader,
    CallState,
    EndReason,
    RealtimeState,
    RecordingState,
    Slot,
    TransferNews,
    TransferState,
    VoiceApi,
    WorkerExit,
)
from shm_ring.ring import ByteRing, region_size
from shm_ring.segment import CallSegment, list_segments, segment_name, start_tracker, sweep

__all__ = [
    "CLEAN_EXITS",
    "END_SIGNAL",
    "ByteRing",
    "CallHeader",
    "CallSegment",
    "CallState",
    "EndReason",
    "LayoutError",
    "RealtimeState",
    "RingError",
    "SegmentExistsError",
    "SegmentGoneError",
    "Slot",
    "TransferNews",
    "TransferState",
    "RecordingState",
    "VoiceApi",
    "WorkerExit",
    "list_segments",
    "region_size",
    "segment_name",
    "start_tracker",
    "sweep",
]
