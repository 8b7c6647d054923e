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
