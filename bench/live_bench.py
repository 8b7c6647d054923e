"""GPT-Live against Realtime on the simulators, as a phone line hears them: barge-in, the
playout lead, false stops, the caller's silence filled, wake-ups and reply latency.

    python bench/live_bench.py [--calls 6] [--echo-calls 10] [--echo-db -20] [--out bench/results]

Real workers (tests/harness.py's MiniSupervisor: the real spawn path) on the simulated
Asterisk and the simulated voice service, which speaks both APIs (simulators/realtime.py,
simulators/live_session.py). Three scenarios, each run under `realtime` and `live`:

- barge-in: the caller asks, the 10 s reply plays, the caller talks over it. Stop time:
  from the caller's speech leaving the phone to the last loud frame it hears. Under
  Realtime the service's VAD says so; under GPT-Live our own detection flushes playback
  (call_worker/voice_activity.py), and the simulated model stops by itself `stop_ms` later.
- echo: the caller says one thing, then stays silent while the agent talks for a minute,
  its phone sending the agent's voice back `--echo-db` quieter. False stops: barge-ins
  with no caller speech, per ten minutes of agent speech (the target under GPT-Live: at
  most one).
- muted: a phone that sends no RTP between utterances (silence suppression). Under GPT-Live
  the worker fills the gaps with silence on its own clock: input gaps over 100 ms at the
  service (the target: none), and wake-ups per call-second (the target: at most 110).

The playout lead (the reply's audio queued in our downlink ring behind each reply frame;
target p99 at most 300 ms under GPT-Live) comes from every call's record. The reply latency
(the caller's last frame of speech to the first reply frame heard) measures the simulators'
turn-taking, not OpenAI's: both use the same VAD, so it shows what callbridge adds.
Prints a table and writes live-bench.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from analysis import LOUD, packets  # noqa: E402
from harness import AsteriskSim, MiniSupervisor, RealtimeSim, settings_for  # noqa: E402

from bench.report import percentile  # noqa: E402

BARGE = [{"say": 1000}, {"silence": 3000}, {"say": 1200, "hz": 600}, {"silence": 3000}, {"hangup": True}]
MUTED = [{"say": 800}, {"mute": 4000}, {"say": 800}, {"mute": 4000}, {"hangup": True}]
PREFIX = "/cbbench"


def echo_script(echo_db: float, agent_seconds: int) -> list[dict]:
    return [{"echo_db": echo_db}, {"say": 800}, {"silence": agent_seconds * 1000 + 2000}, {"hangup": True}]


def run_calls(asterisk, realtime, api: str, script: list[dict], count: int, workdir: Path) -> list[dict]:
    """`count` calls at once; each one's caller record and call record, and (on the first)
    every session the service had."""
    records = workdir / f"records-{api}-{os.urandom(3).hex()}"
    records.mkdir()
    realtime.reset()
    settings = settings_for(
        asterisk, realtime, OPENAI_API=api, CALL_RECORDS_DIR=str(records), LOG_LEVEL="warning"
    )
    sup = MiniSupervisor(asterisk, settings, PREFIX)
    try:
        placed = [sup.place(script, timeout=10) for _ in range(count)]
        for call in placed:
            sup.wait_ended(call, 120)
        results = [
            {
                "caller": asterisk.call(call.channel_id),
                "record": json.loads((records / f"{call.channel_id}.json").read_text()),
            }
            for call in placed
        ]
        results[0]["sessions"] = realtime.sessions()
        return results
    finally:
        sup.close()


def barge_in(results: list[dict]) -> dict:
    stops = []
    for result in results:
        caller = result["caller"]
        first, _frames = caller["utterances"][1]
        spoke_at = caller["send_times"][first]
        heard = [
            p["arrival"]
            for p in packets(caller)
            if p["level"] >= LOUD and spoke_at <= p["arrival"] <= spoke_at + 1.5
        ]
        if heard:
            stops.append((max(heard) - spoke_at) * 1000)
    return {
        "calls": len(results),
        "stopped": len(stops),
        "stop_p50_ms": percentile(stops, 0.5),
        "stop_max_ms": max(stops) if stops else None,
        "barge_ins": sum(r["record"]["barge_ins"] for r in results),
    }


def false_stops(results: list[dict]) -> dict:
    speech_s = sum(sum(1 for p in packets(r["caller"]) if p["level"] >= LOUD) * 0.02 for r in results)
    stops = sum(r["record"]["barge_ins"] for r in results)
    return {
        "calls": len(results),
        "agent_speech_min": round(speech_s / 60, 2),
        "false_stops": stops,
        "per_10_min": round(stops / (speech_s / 600), 2) if speech_s else None,
    }


def muted(results: list[dict]) -> dict:
    gaps = [
        e["ms"]
        for session in results[0]["sessions"]
        for _, d, e in session["events"]
        if d == "sim" and e["type"] == "<input gap>"
    ]
    wakeups = [r["record"]["rusage"]["ru_nvcsw"] / r["record"]["duration_s"] for r in results]
    return {
        "calls": len(results),
        "input_gaps_over_100ms": len(gaps),
        "longest_input_gap_ms": max(gaps) if gaps else 0,
        "wakeups_per_call_second_mean": round(statistics.mean(wakeups), 1),
        "wakeups_per_call_second_max": round(max(wakeups), 1),
        "reply_latency_p50_ms": percentile(
            [latency(r["caller"]) for r in results if latency(r["caller"])], 0.5
        ),
    }


def latency(caller: dict) -> float | None:
    """The caller's last frame of its first utterance to the first loud frame it hears."""
    first, frames = caller["utterances"][0]
    ended = caller["send_times"][first + frames - 1]
    heard = [p["arrival"] for p in packets(caller) if p["level"] >= LOUD and p["arrival"] > ended]
    return (min(heard) - ended) * 1000 if heard else None


def lead(results: list[dict]) -> dict:
    leads = [r["record"]["playout_lead"] for r in results if r["record"]["playout_lead"].get("frames")]
    return {
        "lead_p99_ms_worst_call": max((x["p99_ms"] for x in leads), default=None),
        "lead_p50_ms_median_call": statistics.median([x["p50_ms"] for x in leads]) if leads else None,
        "lead_max_ms": max((x["max_ms"] for x in leads), default=None),
    }


def measure(calls: int, echo_calls: int, echo_db: float, agent_seconds: int, apis: list[str]) -> dict:
    out: dict = {"echo_db": echo_db, "agent_seconds": agent_seconds}
    with tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        workdir = Path(tmp)
        asterisk = AsteriskSim()
        short = RealtimeSim("--reply-ms", "1500", "--greeting-ms", "1000")
        long = RealtimeSim("--reply-ms", "10000")
        speaking = RealtimeSim("--reply-ms", str(agent_seconds * 1000))
        try:
            for api in apis:
                found = {}
                barge = run_calls(asterisk, long, api, BARGE, calls, workdir)
                found["barge_in"] = {**barge_in(barge), **lead(barge)}
                echo = run_calls(
                    asterisk, speaking, api, echo_script(echo_db, agent_seconds), echo_calls, workdir
                )
                found["echo"] = {**false_stops(echo), **lead(echo)}
                quiet = run_calls(asterisk, short, api, MUTED, calls, workdir)
                found["muted"] = muted(quiet)
                out[api] = found
        finally:
            for sim in (asterisk, short, long, speaking):
                sim.stop()
    return out


def table(result: dict) -> str:
    rows = [
        (
            "barge-in: stop p50 / max (ms)",
            lambda f: f"{f['barge_in']['stop_p50_ms']:.1f} / {f['barge_in']['stop_max_ms']:.1f}",
        ),
        ("barge-in: calls stopped", lambda f: f"{f['barge_in']['stopped']}/{f['barge_in']['calls']}"),
        (
            "playout lead p99, worst call (ms)",
            lambda f: (
                f"{max(x for x in (f['barge_in']['lead_p99_ms_worst_call'], f['echo']['lead_p99_ms_worst_call']) if x is not None)}"
            ),
        ),
        (
            "playout lead max (ms)",
            lambda f: (
                f"{max(x for x in (f['barge_in']['lead_max_ms'], f['echo']['lead_max_ms']) if x is not None)}"
            ),
        ),
        (
            f"false stops, echo {result['echo_db']:.0f} dB (per 10 min)",
            lambda f: (
                f"{f['echo']['false_stops']} in {f['echo']['agent_speech_min']} min ({f['echo']['per_10_min']})"
            ),
        ),
        (
            "muted phone: input gaps > 100 ms",
            lambda f: (  # (only the simulated GPT-Live records its input's gaps)
                f"{f['muted']['input_gaps_over_100ms']} (longest {f['muted']['longest_input_gap_ms']} ms)"
                if f is result.get("live")
                else "not recorded"
            ),
        ),
        (
            "wake-ups per call-second, mean / max",
            lambda f: (
                f"{f['muted']['wakeups_per_call_second_mean']} / {f['muted']['wakeups_per_call_second_max']}"
            ),
        ),
        ("reply latency p50 (ms, simulators)", lambda f: f"{f['muted']['reply_latency_p50_ms']:.0f}"),
    ]
    apis = [api for api in ("realtime", "live") if api in result]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{api:>24}" for api in apis)]
    for name, cell in rows:
        lines.append(f"{name:{width}}  " + "  ".join(f"{cell(result[api]):>24}" for api in apis))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=6, help="calls at once in the barge-in and muted scenarios"
    )
    parser.add_argument("--echo-calls", type=int, default=10, help="calls at once with an echoing phone")
    parser.add_argument(
        "--echo-db", type=float, default=-20.0, help="the phone's echo, relative to what it hears"
    )
    parser.add_argument(
        "--agent-seconds", type=int, default=60, help="how long the agent talks to the echoing phone"
    )
    parser.add_argument("--api", choices=["realtime", "live", "both"], default="both")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    apis = ["realtime", "live"] if args.api == "both" else [args.api]
    result = measure(args.calls, args.echo_calls, args.echo_db, args.agent_seconds, apis)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "live-bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
