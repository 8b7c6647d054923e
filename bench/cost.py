"""What a call costs the worker, counted by the kernel: CPU seconds and wake-ups
(voluntary context switches of all its threads, ended ones too) per second of call.

Two sources, the same kernel counters (getrusage) for both:
- "record": the worker's call record (call_worker/ending.py puts its RUSAGE_SELF figures
  and its active seconds there as it ends);
- "reap": for code whose records lack them, what the supervisor's wait4 returned when it
  reaped each worker (bench/inject/sitecustomize.py), which also counts the few
  milliseconds after the record is written.
Both count the worker's whole life (set-up and teardown included) and divide by the
seconds from media ready to the end of the call, which old records give too (duration
minus the set-up up to "bridged").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

INJECT_DIR = Path(__file__).resolve().parent / "inject"
REAP_LOG_VARIABLE = "CALLBRIDGE_BENCH_REAP_LOG"


def code_env(code_dir: Path, reap_log: Path) -> dict[str, str]:
    """Variables that make `python -m callbridge.cli run` import the code under test from
    code_dir (ahead of the editable install) and log each reaped child's usage."""
    paths = [str(code_dir), str(INJECT_DIR)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(paths), REAP_LOG_VARIABLE: str(reap_log)}


def active_seconds(record: dict) -> float:
    if "active_s" in record:
        return record["active_s"]
    setup = record.get("setup_ms", {})
    bridged = (setup.get("bridged", 0.0) - setup.get("worker_started", 0.0)) / 1000
    return max(0.0, record.get("duration_s", 0.0) - bridged)


def reaped_usage(reap_log: Path, worker_pids: set[int]) -> list[dict]:
    if not reap_log.exists():
        return []
    lines = [json.loads(line) for line in reap_log.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["pid"] in worker_pids]


def _figures(usages: list[dict], seconds: float, calls: int) -> dict:
    cpu = sum(u["ru_utime"] + u["ru_stime"] for u in usages)
    return {
        "wakeups_per_call_second": round(sum(u["ru_nvcsw"] for u in usages) / seconds, 1),
        "involuntary_switches_per_call_second": round(sum(u["ru_nivcsw"] for u in usages) / seconds, 1),
        "cpu_percent_per_call_kernel": round(cpu / seconds * 100, 2),
        "minor_faults_per_call": round(sum(u["ru_minflt"] for u in usages) / max(1, calls)),
    }


def call_cost(records_dir: Path, reap_log: Path, worker_pids: set[int]) -> dict:
    """Wake-ups per call-second, CPU % of a core per call, and how they were counted."""
    records = [json.loads(p.read_text()) for p in records_dir.glob("*.json")]
    seconds = sum(active_seconds(r) for r in records)
    reaped = reaped_usage(reap_log, worker_pids)
    result: dict = {"calls_counted": len(records), "workers_reaped": len(reaped)}
    if not records or seconds <= 0:
        return {**result, "cost_source": None, "wakeups_per_call_second": None}
    if all("rusage" in r for r in records):
        result.update(_figures([r["rusage"] for r in records], seconds, len(records)), cost_source="record")
        if all(r.get("rusage_bridged") for r in records):  # without set-up's share: the steady state
            steady = [
                {name: r["rusage"][name] - r["rusage_bridged"][name] for name in r["rusage"]} for r in records
            ]
            figures = _figures(steady, seconds, len(records))
            result["wakeups_per_call_second_steady"] = figures["wakeups_per_call_second"]
            result["cpu_percent_per_call_steady"] = figures["cpu_percent_per_call_kernel"]
            setup_cpu = [r["rusage_bridged"]["ru_utime"] + r["rusage_bridged"]["ru_stime"] for r in records]
            result["setup_cpu_ms_per_call"] = round(sum(setup_cpu) / len(records) * 1000, 1)
            setup_faults = sum(r["rusage_bridged"].get("ru_minflt", 0) for r in records)
            result["setup_minor_faults_per_call"] = round(setup_faults / len(records))
        if reaped:  # the same kernel counters read at the reap: a cross-check
            check = _figures(reaped, seconds, len(reaped))
            result["wakeups_per_call_second_reap"] = check["wakeups_per_call_second"]
    elif reaped:
        # A worker the sampler never saw is missing from `reaped`: its share of the seconds
        # goes too (the calls are alike), and the source says how many were counted.
        share = seconds * len(reaped) / len(records)
        source = "reap" if len(reaped) == len(records) else f"reap ({len(reaped)} of {len(records)})"
        result.update(_figures(reaped, share, len(reaped)), cost_source=source)
    else:
        result.update(cost_source=None, wakeups_per_call_second=None)
    return result


def code_location(env: dict[str, str], cwd: Path) -> str:
    """Where `callbridge run` started with env imports the worker from: proof that the
    code under test is the one meant."""
    found = subprocess.run(
        [sys.executable, "-c", "import call_worker; print(call_worker.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return str(Path(found.stdout.strip()).parent.parent)
