"""Shared-memory audio rings and per-call headers (stdlib only, no third-party imports)."""

from shm_ring.errors import LayoutError, RingError, SegmentExistsError, SegmentGoneError
from shm_ring.header import END_SIGNAL, CallHeader, CallState, EndReason, RealtimeState, Slot, TransferNews
from shm_ring.ring import ByteRing, region_size
from shm_ring.segment import CallSegment, list_segments, segment_name, start_tracker, sweep

__all__ = [
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
    "list_segments",
    "region_size",
    "segment_name",
    "start_tracker",
    "sweep",
]
