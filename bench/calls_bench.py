"""How fast, how smooth, how many calls: N concurrent calls against `callbridge run`.

    python bench/calls_bench.py --calls 1,10,50,100 --seconds 20 [--out bench/results]

For each N: fresh simulators (a simulated Asterisk whose callers speak, listen and
sometimes talk over the reply; a simulated Realtime server), a fresh `callbridge run`,
N calls arriving at 50 per second, each lasting about T seconds. Everything is measured
outside callbridge: the callers' kernel arrival stamps (SO_TIMESTAMPNS), the Realtime
server's event log, and psutil on the worker processes. Writes calls-bench.json and
calls-bench.md to --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import plain_bridge  # noqa: E402
from bench.cost import call_cost, code_env, code_location  # noqa: E402
from bench.report import markdown, outside_shares, percentile, setup_breakdown  # noqa: E402
from bench.usage import Sampler  # noqa: E402
from shm_ring import wire  # noqa: E402
from simulators.clients import AsteriskSim, RealtimeSim, simulated_env, stop_process  # noqa: E402

LOUD = 1000
ARRIVALS_PER_SECOND = 50
TARGETS = {  # issue 7, at 100 concurrent calls
    "pacing_dev_p99_ms": 2.0,
    "pacing_dev_max_ms": 10.0,
    "bursts": 0,
    "frames_lost": 0,
    "uplink_p99_ms": 5.0,
    "downlink_first_audio_p99_ms": 25.0,
    "barge_in_stop_max_ms": 40.0,
    "setup_p99_ms": 100.0,
    "worker_uss_max_mb": 15.0,
}


def script(seconds: float, index: int) -> list[dict]:
    """Speak, listen to the 2 s reply; every third caller talks over part of a reply."""
    steps: list[dict] = [{"silence": 200 + (index * 37) % 400}]
    used = steps[0]["silence"]
    turn = 0
    while used < seconds * 1000 - 4500:
        if index % 3 == 0 and turn % 2 == 1:
            steps += [{"say": 900, "hz": 500}, {"silence": 1300}, {"say": 700, "hz": 620}, {"silence": 3000}]
            used += 5900
        else:
            steps += [{"say": 1200, "hz": 440}, {"silence": 3000}]
            used += 4200
        turn += 1
    steps.append({"hangup": True})
    return steps


def measure(
    calls: int,
    seconds: float,
    workdir: Path,
    callbridge_cpus: set[int] | None,
    code_dir: Path = ROOT,
    callers_in_step: bool = False,
    baseline: str = "",
    record: bool = False,
) -> dict:
    """One run of N calls; `callbridge run` imports callbridge from code_dir (bench/compare.py
    passes a worktree of another ref), everything else comes from this tree. The callers send
    at phases of their own unless `callers_in_step` (simulators/caller_media.py). baseline
    "plain": bench/plain_bridge.py carries the calls instead, measured the same way. `record`:
    every call recorded (RECORD_CALLS), to measure what recording costs the media loop."""
    asterisk = AsteriskSim(*(["--callers-in-step"] if callers_in_step else []), quiet=True)
    realtime = RealtimeSim("--reply-ms", "2000", "--speed", "5", quiet=True)
    run_dir = Path(tempfile.mkdtemp(dir=workdir, prefix=f"calls-{calls}-"))  # N may repeat
    socket_path = run_dir / "control.sock"
    records_dir = run_dir / "records"
    records_dir.mkdir()
    reap_log = run_dir / "reaped.jsonl"
    env = {
        **os.environ,
        **code_env(code_dir, reap_log),
        **simulated_env(
            asterisk,
            realtime,
            CONTROL_SOCKET_PATH=str(socket_path),
            MAX_CONCURRENT_CALLS=str(calls + 10),
            LOG_LEVEL="warning",
            SHM_PREFIX=f"callbridge-bench{os.getpid()}",
            RTP_PORT_RANGE="40000-59999",
            CALL_RECORDS_DIR=str(records_dir),
            STATE_DIR=str(records_dir),
            RECORD_CALLS="true" if record else "false",
        ),
    }
    env.pop("NOTIFY_SOCKET", None)
    plain_summary = run_dir / "plain-summary.json"
    if baseline == "plain":
        command = plain_bridge.command(env, realtime.api_key, (40000, 59999), plain_summary)
        location = "bench/plain_bridge.py"
    else:
        command = [sys.executable, "-m", "callbridge.cli", "run"]
        location = code_location(env, run_dir)
    with open(run_dir / "callbridge.log", "w") as log_file:
        service = subprocess.Popen(
            command,
            env=env,
            cwd=run_dir,
            stdout=log_file,
            stderr=log_file,
            # Workers are forked by the supervisor and inherit its CPUs.
            preexec_fn=(lambda: os.sched_setaffinity(0, callbridge_cpus)) if callbridge_cpus else None,
        )
    try:
        deadline = time.monotonic() + 15
        while "openai-app" not in asterisk.state()["apps"]:
            if time.monotonic() > deadline:
                raise RuntimeError("callbridge did not connect to the simulated Asterisk")
            time.sleep(0.05)
        sampler = Sampler(
            service.pid,
            {"asterisk_sim": asterisk.proc.pid, "realtime_sim": realtime.proc.pid, "bench": os.getpid()},
        )
        ids: dict[str, int] = {}
        started = time.monotonic()
        for index in range(calls):
            due = started + index / ARRIVALS_PER_SECOND
            while time.monotonic() < due:
                time.sleep(0.002)
            reply = requests.post(
                f"{asterisk.base}/sim/calls",
                timeout=10,
                json={
                    "script": script(seconds, index),
                    "caller": f"+1555{index:07d}",
                    "tag": f"CBBENCH{index:06d}",
                },
            )
            ids[reply.json()["channel_id"]] = index
        peak = 0
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            live = sampler.sample(measure_uss=time.monotonic() - started > seconds / 2)
            peak = max(peak, live)
            records = requests.get(f"{asterisk.base}/sim/calls", timeout=30).json()
            if all(r["hangup"] is not None for r in records) and live == 0:
                break
            time.sleep(1.0)
        usage = sampler.totals()
        usage |= supervisor_loop(socket_path)
        time.sleep(0.5)
        sessions = realtime.sessions()
        records = {call_id: asterisk.call(call_id) for call_id in ids}
    finally:
        stop_process(service, timeout=30)
        asterisk.stop()
        realtime.stop()
    breakdown = setup_breakdown(records_dir)
    breakdown |= outside_shares(
        records_dir,
        {call_id: record["placed"] for call_id, record in records.items()},
        {call_id: record["media_started"] for call_id, record in records.items()},
    )
    cost = call_cost(records_dir, reap_log, set(sampler.cpu))
    figures = analyse(calls, seconds, ids, records, sessions, sampler, peak)
    if baseline == "plain":  # one process: all of it is the calls' cost
        cost.update(plain_bridge.cost(plain_summary))
        cost.pop("call_seconds")
        figures["cpu_percent_per_call"] = round(
            sampler.final_supervisor_cpu / max(1, calls) / figures["seconds_per_call"] * 100, 2
        )
    return {
        **figures,
        **usage,
        **breakdown,
        **cost,
        "code_under_test": location,
    }


def supervisor_loop(socket_path: Path) -> dict:
    """The supervisor's own figures of its loop (supervisor/loop_watch.py): the longest busy
    pass of the last minute or two (the calls' set-up burst while --seconds is under about
    a minute; with longer calls, `supervisor_loop_slow_passes`, counted since the start,
    still covers it). None from code that does not report them (a `before` of
    bench/compare.py)."""
    try:
        reply = wire.request(str(socket_path), {"cmd": "status"}, timeout=10)
    except (OSError, wire.WireError):
        return {"supervisor_loop_busy_max_ms": None, "supervisor_loop_slow_passes": None}
    supervisor = reply.get("supervisor") or {}
    return {
        "supervisor_loop_busy_max_ms": supervisor.get("loop_busy_max_ms"),
        "supervisor_loop_slow_passes": supervisor.get("loop_slow_passes"),
    }


def analyse(calls, seconds, ids, records, sessions, sampler, peak) -> dict:
    by_tag = {}
    for session in sessions:
        for _, direction, event in session["events"]:
            if direction == "in" and event.get("type") == "first_audio":
                by_tag[bytes.fromhex(event["head"])[:13].decode("ascii", "replace")] = session
                break
    setup, uplink, downlink, deviations, barge = [], [], [], [], []
    bursts = lost = 0
    durations = []
    for call_id, index in ids.items():
        record = records[call_id]
        if record.get("media_started") is None:
            lost += 1
            continue
        setup.append((record["media_started"] - record["placed"]) * 1000)
        durations.append((record["hangup"] or record["media_started"]) - record["placed"])
        received = record["received"]
        loud = [row[0] for row in received if row[7] >= LOUD]
        for (a, seq_a), (b, seq_b) in zip(
            ((r[0], r[1]) for r in received), ((r[0], r[1]) for r in received[1:]), strict=False
        ):
            gap = (b - a) * 1000
            deviations.append(abs(gap - 20.0))
            bursts += gap < 10.0
            lost += (seq_b - seq_a - 1) % 65536
        session = by_tag.get(f"CBBENCH{index:06d}")
        if session is None:
            continue
        sends = record["send_times"]
        appends = [
            (t, e["total"])
            for t, d, e in session["events"]
            if d == "in" and e.get("type") == "input_audio_buffer.append"
        ]
        if appends:
            frame = 0
            for t, total in appends:
                while frame < min(total // 160, len(sends)):
                    if sends[frame] >= appends[0][0]:
                        uplink.append((t - sends[frame]) * 1000)
                    frame += 1
            before_end = sum(1 for s in sends if s < appends[-1][0] - 0.2)
            lost += max(0, before_end - appends[-1][1] // 160)
        first_delta = {}
        for t, d, e in session["events"]:
            if d == "out" and e.get("type") == "response.output_audio.delta":
                first_delta.setdefault(e["response_id"], t)
            if d == "out" and e.get("type") == "input_audio_buffer.speech_started":
                playing = [a for a in loud if t - 0.1 < a < t]
                if playing:
                    after = [a for a in loud if t <= a < t + 0.5]
                    barge.append(((max(after) - t) if after else 0.0) * 1000)
        for t0 in first_delta.values():
            heard = next((a for a in loud if a > t0), None)
            if heard is not None and heard - t0 < 1.0:
                downlink.append((heard - t0) * 1000)
    worker_cpu = sampler.final_worker_cpu
    mean_duration = statistics.mean(durations) if durations else seconds
    result = {
        "calls": calls,
        "peak_live_calls": peak,
        "seconds_per_call": round(mean_duration, 1),
        "setup_p50_ms": percentile(setup, 0.5),
        "setup_p99_ms": percentile(setup, 0.99),
        "uplink_p50_ms": percentile(uplink, 0.5),
        "uplink_p99_ms": percentile(uplink, 0.99),
        "uplink_max_ms": max(uplink) if uplink else None,
        "downlink_first_audio_p50_ms": percentile(downlink, 0.5),
        "downlink_first_audio_p99_ms": percentile(downlink, 0.99),
        "pacing_dev_p50_ms": percentile(deviations, 0.5),
        "pacing_dev_p99_ms": percentile(deviations, 0.99),
        "pacing_dev_max_ms": max(deviations) if deviations else None,
        "bursts": bursts,
        "frames_lost": lost,
        "barge_ins_measured": len(barge),
        "barge_in_stop_p50_ms": percentile(barge, 0.5),
        "barge_in_stop_max_ms": max(barge) if barge else None,
        "cpu_percent_per_call": round(worker_cpu / max(1, calls) / mean_duration * 100, 2),
        "worker_uss_p50_mb": percentile(list(sampler.uss.values()), 0.5),
        "worker_uss_max_mb": max(sampler.uss.values()) if sampler.uss else None,
        "supervisor_rss_mb": round(sampler.supervisor_rss, 1),
        "sessions_matched": sum(1 for i in ids.values() if f"CBBENCH{i:06d}" in by_tag),
    }
    for key, value in list(result.items()):
        if isinstance(value, float):
            result[key] = round(value, 2)
    result["misses"] = [
        key for key, limit in TARGETS.items() if result.get(key) is None or result[key] > limit
    ]
    result["meets_targets"] = not result["misses"]
    return result


COLUMNS = [
    ("calls", "N"),
    ("setup_p99_ms", "setup p99"),
    ("uplink_p99_ms", "uplink p99"),
    ("downlink_first_audio_p99_ms", "first audio p99"),
    ("pacing_dev_p99_ms", "pacing dev p99"),
    ("pacing_dev_max_ms", "pacing dev max"),
    ("bursts", "bursts"),
    ("frames_lost", "lost"),
    ("barge_in_stop_max_ms", "barge-in stop max"),
    ("cpu_percent_per_call", "CPU %/call"),
    ("cpu_percent_per_call_kernel", "CPU %/call (rusage)"),
    ("wakeups_per_call_second", "wake-ups/call-s"),
    ("cost_source", "counted from"),
    ("worker_uss_max_mb", "worker USS MB"),
    ("supervisor_rss_mb", "supervisor RSS MB"),
    ("callbridge_cpu_percent", "callbridge CPU %"),
    ("load_generator_cpu_percent", "load generator CPU %"),
    ("steal_percent", "steal %"),
    ("meets_targets", "meets targets"),
]


def split_cpus(parser: argparse.ArgumentParser) -> set[int]:
    """The last CPU for callbridge, the others for this process and the simulators it
    starts (they inherit its affinity)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        parser.error("--split-cpus needs at least two CPUs")
    os.sched_setaffinity(0, set(cpus[:-1]))
    return {cpus[-1]}


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,10,50,100", help="comma-separated concurrent call counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each call")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--split-cpus",
        action="store_true",
        help="run callbridge on the last CPU and the load generator on the others, so each "
        "side's limit shows apart from the other's",
    )
    parser.add_argument(
        "--callers-in-step",
        action="store_true",
        help="every simulated caller sends at the same instant of each 20 ms, as figures before "
        "2026-12-02 were measured (default: each at its own phase, as phones do)",
    )
    parser.add_argument(
        "--baseline", choices=("plain",), help="run bench/plain_bridge.py instead of callbridge"
    )
    parser.add_argument("--record", action="store_true", help="record every call (RECORD_CALLS=true)")
    args = parser.parse_args()
    callbridge_cpus = split_cpus(parser) if args.split_cpus else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as scratch:
        for count in (int(c) for c in args.calls.split(",")):
            print(
                f"running {count} concurrent calls of {args.seconds:.0f} s ...", file=sys.stderr, flush=True
            )
            results.append(
                measure(
                    count,
                    args.seconds,
                    Path(scratch),
                    callbridge_cpus,
                    callers_in_step=args.callers_in_step,
                    baseline=args.baseline or "",
                    record=args.record,
                )
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    passing = [r["calls"] for r in results if r["meets_targets"]]
    report = {
        "machine": machine(),
        "arrivals_per_second": ARRIVALS_PER_SECOND,
        "callbridge_cpus": sorted(callbridge_cpus) if callbridge_cpus else "shared with the load generator",
        "seconds_per_call": args.seconds,
        "callers": "in step" if args.callers_in_step else "each at its own phase",
        "recorded": args.record,
        "targets": TARGETS,
        "results": results,
        "largest_n_meeting_targets": max(passing) if passing else None,
    }
    (out / "calls-bench.json").write_text(json.dumps(report, indent=2))
    table = markdown(results, COLUMNS)
    (out / "calls-bench.md").write_text(table + "\n")
    print(table)
    print(f"\nlargest N meeting every target: {report['largest_n_meeting_targets']}")


if __name__ == "__main__":
    main()
