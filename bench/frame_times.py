"""Histograms of where each frame's time went, from the workers' frame traces
(call_worker/frame_trace.py: CALLBRIDGE_FRAME_TRACE=DIR during a benchmark run).

    python bench/frame_times.py DIR

For every frame sent: its lateness (deadline to the end of its sendto) as a histogram, and
the parts it is made of, each as p50 / p99 / max over all frames and as a mean over the
late tail (the frames later than the p99):
- wake-up: deadline to the select() return before the frame (timer slack, the scheduler,
  another thread holding the interpreter lock);
- before the tick: select() return to the tick (a caller packet handled first);
- link work: the tick's reading of the Realtime link (audio deltas into the ring);
- frame work: choosing and packing the frame; sendto: the syscall itself;
and, beside them, the media thread's run delay (runnable, not running), its minor page
faults and the worker's garbage collection in the interval before the frame.
"""

from __future__ import annotations

import sys
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import percentile  # noqa: E402
from call_worker.frame_trace import FIELDS  # noqa: E402

BUCKETS_MS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)  # lateness histogram edges
_INDEX = {name: i for i, name in enumerate(FIELDS)}


def load(directory: Path) -> list[tuple[float, ...]]:
    rows = []
    for path in sorted(directory.glob("*.frames")):
        values = array("d")
        values.frombytes(path.read_bytes())
        width = len(FIELDS)
        rows += [tuple(values[i : i + width]) for i in range(0, len(values) - width + 1, width)]
    return rows


def parts(row: tuple[float, ...]) -> dict[str, float]:
    """One frame's parts, in ms."""
    get = {name: row[i] for name, i in _INDEX.items()}
    return {
        "late": get["sent"] * 1000,
        "wake": get["woke"] * 1000,
        "before_tick": (get["tick"] - get["woke"]) * 1000,
        "link_work": (get["send"] - get["tick"]) * 1000,
        "frame_work": (get["sendto"] - get["send"]) * 1000,
        "sendto": (get["sent"] - get["sendto"]) * 1000,
        "run_delay": get["run_delay"] * 1000,
        "minor_faults": get["minflt"],
        "gc": get["gc"] * 1000,
        "followed": get["path"],
    }


def summarize(rows: list[tuple[float, ...]]) -> dict:
    frames = [parts(row) for row in rows]
    if not frames:
        return {"frames_traced": 0}
    late = [f["late"] for f in frames]
    edges = (float("-inf"), *BUCKETS_MS, float("inf"))
    histogram = {}
    for low, high in zip(edges, edges[1:], strict=False):
        label = (
            f"<{high}" if low == float("-inf") else f">={low}" if high == float("inf") else f"{low}-{high}"
        )
        histogram[label] = sum(low <= v < high for v in late)
    p99 = percentile(late, 0.99)
    tail = [f for f in frames if f["late"] > p99] or frames
    names = [n for n in frames[0] if n != "followed"]
    result = {
        "frames_traced": len(frames),
        "followed_share": round(sum(f["followed"] for f in frames) / len(frames), 3),
        "late_histogram_ms": histogram,
        "late_p99_ms": round(p99, 3),
        "tail_frames": len(tail),
        "parts_ms": {
            name: {
                "p50": round(percentile([f[name] for f in frames], 0.5), 3),
                "p99": round(percentile([f[name] for f in frames], 0.99), 3),
                "max": round(max(f[name] for f in frames), 3),
                "tail_mean": round(sum(f[name] for f in tail) / len(tail), 3),
            }
            for name in names
        },
        "tail_with_gc_share": round(sum(f["gc"] > 0 for f in tail) / len(tail), 3),
        "tail_with_run_delay_over_0_5ms_share": round(sum(f["run_delay"] > 0.5 for f in tail) / len(tail), 3),
        "tail_with_page_faults_share": round(sum(f["minor_faults"] > 0 for f in tail) / len(tail), 3),
    }
    return result


def markdown(summary: dict) -> str:
    if not summary.get("frames_traced"):
        return "no frames traced"
    lines = [
        f"{summary['frames_traced']} frames, {summary['followed_share']:.0%} sent with a caller packet's wake-up",
        "",
        "| lateness ms | " + " | ".join(summary["late_histogram_ms"]) + " |",
        "|---|" + "---|" * len(summary["late_histogram_ms"]),
        "| frames | " + " | ".join(str(v) for v in summary["late_histogram_ms"].values()) + " |",
        "",
        f"| part (ms; faults: count) | p50 | p99 | max | mean over the {summary['tail_frames']} frames later than p99 |",
        "|---|---|---|---|---|",
    ]
    for name, figures in summary["parts_ms"].items():
        lines.append(
            f"| {name} | {figures['p50']} | {figures['p99']} | {figures['max']} | {figures['tail_mean']} |"
        )
    lines += [
        "",
        f"late tail: {summary['tail_with_gc_share']:.0%} with a collection, "
        f"{summary['tail_with_run_delay_over_0_5ms_share']:.0%} waited over 0.5 ms runnable, "
        f"{summary['tail_with_page_faults_share']:.0%} with page faults",
    ]
    return "\n".join(lines)


def main() -> None:
    print(markdown(summarize(load(Path(sys.argv[1])))))


if __name__ == "__main__":
    main()
