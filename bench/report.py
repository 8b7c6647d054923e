"""Figures and tables shared by the benchmarks: nearest-rank percentiles, the set-up
breakdown from callbridge's call records, markdown tables."""

from __future__ import annotations

import json
from pathlib import Path


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * (len(ordered) - 1) + 0.5))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def setup_breakdown(records_dir: Path) -> dict:
    """Where set-up time goes, from callbridge's own call records (ms after admission):
    reported beside the outside measurement, never instead of it."""
    milestones: dict[str, list[float]] = {}
    retries = 0
    for path in records_dir.glob("*.json"):
        record = json.loads(path.read_text())
        retries += record.get("setup_bridge_retries", 0)
        for name, ms in record.get("setup_ms", {}).items():
            milestones.setdefault(name, []).append(ms)
    result = {"inside_bridge_retries": retries}
    for name in (
        "forked",
        "worker_started",
        "answered",
        "external_media",
        "bridge_created",
        "bridged",
        "realtime_open",
    ):
        values = milestones.get(name, [])
        result[f"inside_{name}_p50_ms"] = percentile(values, 0.5)
        result[f"inside_{name}_p99_ms"] = percentile(values, 0.99)
    return result


def outside_shares(records_dir: Path, placed: dict[str, float], first_frame: dict[str, float]) -> dict:
    """The two parts of the outside set-up that are not the worker's: from the call placed
    (the simulator's StasisStart) to the supervisor's admission, and from the worker's
    "bridged" to the caller's first frame forwarded (the simulator's addChannel answer and
    its caller leg's next 20 ms phase). `placed` and `first_frame` are the simulator's
    monotonic times by call id, as is a record's `admitted_ns` (one clock for the machine)."""
    admission, after_bridged = [], []
    for path in records_dir.glob("*.json"):
        record = json.loads(path.read_text())
        call_id = record.get("call_id")
        if call_id not in placed or not record.get("admitted_ns"):
            continue
        admitted = record["admitted_ns"] / 1e9
        admission.append((admitted - placed[call_id]) * 1000)
        bridged = (record.get("setup_ms") or {}).get("bridged")
        if bridged is not None and first_frame.get(call_id) is not None:
            after_bridged.append((first_frame[call_id] - admitted) * 1000 - bridged)
    return {
        "outside_to_admission_p50_ms": _ms(percentile(admission, 0.5)),
        "outside_to_admission_p99_ms": _ms(percentile(admission, 0.99)),
        "outside_bridged_to_first_frame_p50_ms": _ms(percentile(after_bridged, 0.5)),
        "outside_bridged_to_first_frame_p99_ms": _ms(percentile(after_bridged, 0.99)),
    }


def markdown(results: list[dict], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in results:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in columns) + " |")
    return "\n".join(lines)


def pacing(streams: list[list[tuple[float, int]]]) -> dict:
    """Downlink pacing from each stream's (arrival time, RTP sequence) in arrival order:
    |gap - 20 ms| between consecutive packets, bursts (gaps under 10 ms), sequence gaps."""
    deviations: list[float] = []
    bursts = lost = 0
    for stream in streams:
        for (a, seq_a), (b, seq_b) in zip(stream, stream[1:], strict=False):
            gap = (b - a) * 1000
            deviations.append(abs(gap - 20.0))
            bursts += gap < 10.0
            lost += (seq_b - seq_a - 1) % 65536
    return {
        "pacing_dev_p50_ms": percentile(deviations, 0.5),
        "pacing_dev_p99_ms": percentile(deviations, 0.99),
        "pacing_dev_max_ms": max(deviations) if deviations else None,
        "bursts": bursts,
        "frames_lost": lost,
        "frames_paced": len(deviations),
    }


def caller_stream(streams: list[list[tuple[float, int]]]) -> dict:
    """|gap - 20 ms| of the packets arriving at callbridge, and the share of packets that come
    within 0.5 and 1 ms of a steady 20 ms clock (each stream's own, fitted on its median
    phase over the 50 packets around it)."""
    gaps = pacing(streams)
    offsets_near = {0.5: 0, 1.0: 0}
    counted = 0
    for stream in streams:
        times = [t for t, _ in stream]
        for i, t in enumerate(times):
            window = times[max(0, i - 25) : i + 25]
            if len(window) < 10:
                continue
            phases = sorted(((u - t) * 1000 + 10.0) % 20.0 - 10.0 for u in window)
            offset = abs(phases[len(phases) // 2])  # this packet against its neighbours' clock
            counted += 1
            for bound in offsets_near:
                offsets_near[bound] += offset <= bound
    return {
        "caller_in_gap_dev_p50_ms": gaps["pacing_dev_p50_ms"],
        "caller_in_gap_dev_p99_ms": gaps["pacing_dev_p99_ms"],
        "caller_in_within_0_5ms_share": offsets_near[0.5] / counted if counted else None,
        "caller_in_within_1ms_share": offsets_near[1.0] / counted if counted else None,
    }
