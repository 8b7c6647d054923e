"""Today's per-call JSON files (CALL_RECORDS_DIR, call_worker/ending.py::Ending._report) as
spool records, for `callbridge calls import DIR`.

Those files have no start time: the file's modification time is taken as the call's end
and the start is that less the duration. They carry usage totals (split by kind as the
worker does) and the transcript with wall-clock times, from which the offsets follow.
"""

from __future__ import annotations

from records import spool


def from_call_record(data: dict, instance: str, mtime: float) -> dict:
    """Raises KeyError/TypeError/ValueError for a file that is not such a record."""
    if not isinstance(data, dict) or not data.get("call_id"):
        raise ValueError("no call_id")
    duration = float(data.get("duration_s") or 0.0)
    started_at = mtime - duration
    turns = [
        spool.turn_entry(turn, started_at) for turn in data.get("transcript") or [] if isinstance(turn, dict)
    ]
    return {
        "version": spool.VERSION,
        "instance": instance,
        "call_id": str(data["call_id"]),
        "caller": data.get("caller", ""),
        "dialled": data.get("dialled", ""),
        "started_at": started_at,
        "ended_at": mtime,
        "duration_s": duration,
        "end_reason": data.get("end_reason") or "unknown",
        "failure": data.get("failure", ""),
        "complete": True,
        "setup_ms": data.get("setup_ms") or {},
        "setup_bridge_retries": data.get("setup_bridge_retries", 0),
        "figures": spool.figures(data),
        "usage": spool.usage_by_kind(data.get("usage") or {}),
        "turns": turns,
        "events": [],
    }
