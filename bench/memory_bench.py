"""Does the supervisor's memory stay flat over many calls? (a year without a restart)

    python bench/memory_bench.py --calls 20000 [--concurrency 12] [--warmup 3000] [--every 500]

A fresh `callbridge run` on the simulators takes --calls short calls (about 0.6 s each, at
most --concurrency live), and the supervisor's anonymous memory (RssAnon in
/proc/PID/status: its heap, not the call segments it maps or the files it reads) is read
every --every calls. Prints each sample, then, after --warmup calls (longer than anything
the supervisor keeps per call for a while: supervisor/recent.py keeps ids 130 s), the
spread (max - min) and the least-squares slope in bytes per call. Exits 1 when the spread
is over --limit-kb (default 1024, 1 MB) with --check.

Measured before the fix (docs/performance.md, "A year without a restart"): about 90
bytes kept per call for ever (the alerts' window of ended calls, never pruned with alerts
off), plus ten minutes of call ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shm_ring import wire  # noqa: E402
from simulators.clients import AsteriskSim, RealtimeSim, simulated_env, stop_process  # noqa: E402

SCRIPT = [{"silence": 100}, {"say": 300, "hz": 440}, {"silence": 200}, {"hangup": True}]


def rss_anon_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def slope(points: list[tuple[int, int]]) -> float:
    """Least squares, bytes per call."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 1024 * sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--limit-kb", type=int, default=1024)
    p.add_argument("--check", action="store_true", help="exit 1 when the spread is over the limit")
    p.add_argument("--out", default="", help="write the samples as JSON here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cb-memory-bench-"))
    asterisk = AsteriskSim(quiet=True)
    realtime = RealtimeSim("--reply-ms", "300", "--speed", "5", quiet=True)
    sock = work / "control.sock"
    env = {
        **{k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        **simulated_env(
            asterisk,
            realtime,
            CONTROL_SOCKET_PATH=str(sock),
            MAX_CONCURRENT_CALLS=str(max(50, args.concurrency * 2)),
            LOG_LEVEL="warning",
            LOG_FILE_PATH=str(work / "callbridge.log"),
            SHM_PREFIX=f"cbmem{os.getpid()}",
            RTP_PORT_RANGE="40000-59999",
            STATE_DIR=str(work / "state"),
            METRICS_LISTEN="",
            WEB_LISTEN="",
        ),
        "PYTHONPATH": str(ROOT),
    }
    import subprocess

    service = subprocess.Popen(
        [sys.executable, "-m", "callbridge.cli", "run"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() or "openai-app" not in asterisk.state()["apps"]:
            if time.monotonic() > deadline:
                raise RuntimeError("callbridge did not connect to the simulated Asterisk")
            time.sleep(0.1)
        session = requests.Session()
        started = time.monotonic()
        placed = ended = 0
        next_sample = 0
        while ended < args.calls:
            status = wire.request(str(sock), {"cmd": "status"}, timeout=10)["supervisor"]
            ended = status["calls_taken"] - status["calls_live"]
            if ended >= next_sample:
                samples.append((ended, rss_anon_kb(service.pid)))
                print(
                    f"{ended:>7} calls  RssAnon {samples[-1][1]:>7} kB  ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
                next_sample += args.every
            in_flight = placed - ended
            while in_flight < args.concurrency and placed < args.calls:
                session.post(
                    f"{asterisk.base}/sim/calls",
                    json={"script": SCRIPT, "caller": f"+1555{placed % 5000:07d}"},
                    timeout=10,
                )
                placed += 1
                in_flight += 1
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        stop_process(service, timeout=30)
        asterisk.stop()
        realtime.stop()
    after = [(calls, kb) for calls, kb in samples if calls >= args.warmup]
    spread = max(kb for _, kb in after) - min(kb for _, kb in after) if after else 0
    per_call = slope(after)
    print(
        f"\n{args.calls} calls in {elapsed:.0f} s; after {args.warmup} calls of warm-up: RssAnon "
        f"{min(kb for _, kb in after)}-{max(kb for _, kb in after)} kB, spread {spread} kB "
        f"(limit {args.limit_kb}), slope {per_call:.1f} bytes per call"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"samples": samples, "spread_kb": spread, "slope_b": per_call}))
    return 1 if args.check and spread > args.limit_kb else 0


if __name__ == "__main__":
    raise SystemExit(main())
