"""How soon the agent answers once the caller stops, per turn detection mode, and whether a
reply in phases (a preamble, then the answer) reaches the caller without a gap.

    python bench/turns_bench.py [--turns 3] [--preamble-ms 600] [--think-ms 200]
        [--answer-ms 1500] [--out bench/results]

One `callbridge run` on the simulators, with one agent per mode (an agents file: server_vad
with OPENAI_VAD_SILENCE_MS's 500 ms, semantic_vad high, medium and low), one call to each at
once, each caller speaking `--turns` times. The simulated Realtime server answers every
turn in two items of one response: a preamble of --preamble-ms, --think-ms of reasoning,
then the answer; semantic_vad's end-of-turn waits are the simulator's stand-in for the
service's (simulators/realtime_settings.py), so the figures per mode show what callbridge
adds on top of them, not what OpenAI's semantic_vad will do with real speech.

Measured outside callbridge, at the caller (the simulated Asterisk's arrival stamps):
- `reply_after_ms`: from the end of the caller's speech (the send time of its last spoken
  frame) to the first reply frame;
- `gap_frames`: silent frames between a reply's first and last loud frame (0: the two items
  were played back to back);
and from the worker's call record, its `underruns` (a frame due while the reply had none
ready). Prints a table and writes turns-bench.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators.clients import AsteriskSim, RealtimeSim, simulated_env, stop_process  # noqa: E402

LOUD = 1000
LEAD_MS, SAY_MS, PAUSE_MS = 300, 800, 4500  # each turn: speak, then listen
MODES = {  # dialled number -> (mode, the agent's [turns] table)
    "601": ("server_vad 500 ms", 'detection = "server_vad"\nsilence_ms = 500'),
    "602": ("semantic_vad high", 'detection = "semantic_vad"\neagerness = "high"'),
    "603": ("semantic_vad medium", 'detection = "semantic_vad"\neagerness = "medium"'),
    "604": ("semantic_vad low", 'detection = "semantic_vad"\neagerness = "low"'),
}


def agents_file(path: Path) -> None:
    tables = [
        f'[agents.a{number}]\nnumbers = ["{number}"]\n[agents.a{number}.turns]\n{turns}\n'
        for number, (_mode, turns) in MODES.items()
    ]
    path.write_text("\n".join(tables))


def script(turns: int) -> list[dict]:
    steps: list[dict] = [{"silence": LEAD_MS}]
    for _ in range(turns):
        steps += [{"say": SAY_MS}, {"silence": PAUSE_MS}]
    return steps + [{"hangup": True}]


def ends_of_speech(record: dict, turns: int) -> list[float]:
    """When each turn's last spoken frame left the caller, plus its 20 ms."""
    sends = record["send_times"]
    ends = []
    for turn in range(turns):
        last = (LEAD_MS + turn * (SAY_MS + PAUSE_MS) + SAY_MS) // 20 - 1
        ends.append(sends[last] + 0.020)
    return ends


def replies(record: dict, ends: list[float], reply_ms: int) -> list[dict]:
    """Per turn: the delay to the first reply frame, and the silent frames inside the reply."""
    received = [(row[0], row[-1]) for row in record["received"]]  # (arrival, level)
    found = []
    for end in ends:
        window = [(t, level) for t, level in received if end < t <= end + (reply_ms + 2500) / 1000]
        loud = [i for i, (_t, level) in enumerate(window) if level >= LOUD]
        if not loud:
            found.append({"reply_after_ms": None, "gap_frames": None, "frames": 0})
            continue
        first, last = loud[0], loud[-1]
        found.append(
            {
                "reply_after_ms": round((window[first][0] - end) * 1000, 1),
                "gap_frames": (last - first + 1) - len(loud),
                "frames": len(loud),
            }
        )
    return found


def measure(turns: int, preamble_ms: int, think_ms: int, answer_ms: int, workdir: Path) -> dict:
    asterisk = AsteriskSim(quiet=True)
    realtime = RealtimeSim(
        "--reply-ms",
        str(answer_ms),
        "--preamble-ms",
        str(preamble_ms),
        "--think-ms",
        str(think_ms),
        quiet=True,
    )
    run_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="turns-"))
    records_dir = run_dir / "records"
    records_dir.mkdir()
    agents_file(run_dir / "agents.toml")
    env = {
        **os.environ,
        **simulated_env(
            asterisk,
            realtime,
            CONTROL_SOCKET_PATH=str(run_dir / "control.sock"),
            AGENTS_FILE=str(run_dir / "agents.toml"),
            LOG_LEVEL="warning",
            SHM_PREFIX=f"callbridge-turns{os.getpid()}",
            RTP_PORT_RANGE="40000-49999",
            CALL_RECORDS_DIR=str(records_dir),
            STATE_DIR=str(records_dir),
        ),
    }
    env.pop("NOTIFY_SOCKET", None)
    with open(run_dir / "callbridge.log", "w") as log_file:
        service = subprocess.Popen(
            [sys.executable, "-m", "callbridge.cli", "run"],
            env=env,
            cwd=run_dir,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 15
        while "openai-app" not in asterisk.state()["apps"]:
            if time.monotonic() > deadline:
                raise RuntimeError("callbridge did not connect to the simulated Asterisk")
            time.sleep(0.05)
        ids = {}
        for number in MODES:
            reply = requests.post(
                f"{asterisk.base}/sim/calls", json={"script": script(turns), "exten": number}, timeout=10
            )
            reply.raise_for_status()
            ids[reply.json()["channel_id"]] = number
        deadline = time.monotonic() + turns * (SAY_MS + PAUSE_MS) / 1000 + 30
        while time.monotonic() < deadline:
            calls = requests.get(f"{asterisk.base}/sim/calls", timeout=10).json()
            if all(c["hangup"] is not None for c in calls) and len(list(records_dir.glob("*.json"))) >= len(
                ids
            ):
                break
            time.sleep(0.5)
        records = {call_id: asterisk.call(call_id) for call_id in ids}
    finally:
        stop_process(service, timeout=30)
        asterisk.stop()
        realtime.stop()
    underruns = {}
    for path in records_dir.glob("*.json"):
        call = json.loads(path.read_text())
        underruns[call.get("call_id", path.stem)] = (call.get("figures") or {}).get(
            "underruns", call.get("underruns")
        )
    modes = {}
    for call_id, number in ids.items():
        per_turn = replies(records[call_id], ends_of_speech(records[call_id], turns), preamble_ms + answer_ms)
        delays = [t["reply_after_ms"] for t in per_turn if t["reply_after_ms"] is not None]
        modes[MODES[number][0]] = {
            "turns": per_turn,
            "reply_after_ms_median": round(statistics.median(delays), 1) if delays else None,
            "reply_after_ms_max": max(delays) if delays else None,
            "gap_frames": sum(t["gap_frames"] or 0 for t in per_turn),
            "replies_heard": len(delays),
            "underruns": underruns.get(call_id),
        }
    return {
        "turns": turns,
        "preamble_ms": preamble_ms,
        "think_ms": think_ms,
        "answer_ms": answer_ms,
        "modes": modes,
    }


def table(result: dict) -> str:
    lines = [
        f"replies of a {result['preamble_ms']} ms preamble, {result['think_ms']} ms of thinking, "
        f"a {result['answer_ms']} ms answer; {result['turns']} turns per mode",
        f"{'mode':22} {'reply after (median)':>21} {'(max)':>8} {'heard':>6} {'gap frames':>11} {'underruns':>10}",
    ]
    for mode, figures in result["modes"].items():
        median, worst = figures["reply_after_ms_median"], figures["reply_after_ms_max"]
        lines.append(
            f"{mode:22} {median if median is not None else '-':>18} ms {worst if worst is not None else '-':>5} ms"
            f" {figures['replies_heard']:>3}/{result['turns']} {figures['gap_frames']:>11} {figures['underruns']!s:>10}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--preamble-ms", type=int, default=600)
    parser.add_argument("--think-ms", type=int, default=200)
    parser.add_argument("--answer-ms", type=int, default=1500)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="turns-bench-") as workdir:
        result = measure(args.turns, args.preamble_ms, args.think_ms, args.answer_ms, Path(workdir))
    (out / "turns-bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
