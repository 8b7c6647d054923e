"""Reading what a simulated caller received: reply frames, gaps, bursts, latencies."""

from __future__ import annotations

LOUD = 1000  # mean |amplitude| above which a received frame is reply audio, not silence


def packets(record: dict) -> list[dict]:
    keys = ("arrival", "sequence", "timestamp", "ssrc", "marker", "payload_type", "length", "level")
    return [dict(zip(keys, row, strict=True)) for row in record["received"]]


def loud(record: dict) -> list[dict]:
    return [p for p in packets(record) if p["level"] >= LOUD]


def gaps_ms(rows: list[dict]) -> list[float]:
    return [(b["arrival"] - a["arrival"]) * 1000 for a, b in zip(rows, rows[1:], strict=False)]


def session_events(session: dict, direction: str, kind: str) -> list[tuple[float, dict]]:
    return [(t, e) for t, d, e in session["events"] if d == direction and e.get("type") == kind]


def uplink_latencies_ms(record: dict, session: dict) -> list[float]:
    """For each caller frame, the time from its send to the server's receipt of the append
    that completed it (frames sent before the session's first append are skipped)."""
    appends = session_events(session, "in", "input_audio_buffer.append")
    if not appends:
        return []
    first_append_time = appends[0][0]
    sends = record["send_times"]
    result = []
    frame = 0
    for t, event in appends:
        complete = event["total"] // 160
        while frame < complete and frame < len(sends):
            if sends[frame] >= first_append_time:
                result.append((t - sends[frame]) * 1000)
            frame += 1
    return result
