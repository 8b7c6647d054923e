"""The same benchmark against two versions of callbridge in one run: each figure before and after.

    python bench/compare.py --before main --after HEAD [--calls 10,50,100] [--seconds 20]
                            [--split-cpus] [--repeat 1] [--out bench/results]
    python bench/compare.py --bench asterisk --before main --after HEAD --calls 10,50 [--rate 10]
                            [--seconds 6]
    python bench/compare.py --bench asterisk --baseline plain [--after .] --calls 20,50 --repeat 3

`--baseline plain` puts bench/plain_bridge.py (one process, a thread per direction per
call; `--plain-priority 1` gives its sending threads callbridge's media priority) in the place of "before", and callbridge (`--after`, this tree by default) beside
it: every ratio is then callbridge's figure over the plain bridge's (1.0 is level, under
1 is better for most figures), and with --repeat the table ends with each side's median.

Each ref is checked out into a temporary git worktree (`git worktree add --detach`; `.`
means this tree as it is, uncommitted changes included). Only the code under test comes
from the ref: `callbridge run` is started with the ref's tree first on PYTHONPATH, while
the benchmark, its simulators, the harness and the way figures are computed are this
tree's, so both refs are measured by the same tools. Each run checks where the started
service imports the worker from.

Runs alternate: for each call count (and each repetition) one ref then the other, the
order swapped every time, so that drift on the machine (load, steal) hits both. Prints one
table, a row per figure and per run the figure before, after and their ratio, and writes
compare-<bench>.json and .md to --out. `--bench asterisk` runs bench/asterisk_bench.py's measurement on the real
Asterisk (root, see tests/asterisk/), started once for all runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import calls_bench, plain_bridge  # noqa: E402

# (key, title): the figures, then what says how the run went.
CALLS_FIGURES = [
    ("wakeups_per_call_second", "wake-ups per call-second"),
    ("cpu_percent_per_call_kernel", "CPU % of a core per call (rusage)"),
    ("cpu_percent_per_call", "CPU % of a core per call (psutil)"),
    ("wakeups_per_call_second_steady", "wake-ups per call-second, once bridged"),
    ("cpu_percent_per_call_steady", "CPU % of a core per call, once bridged"),
    ("setup_cpu_ms_per_call", "set-up CPU ms per call"),
    ("pacing_dev_p99_ms", "pacing dev p99 ms"),
    ("pacing_dev_max_ms", "pacing dev max ms"),
    ("bursts", "bursts"),
    ("frames_lost", "lost"),
    ("uplink_p99_ms", "uplink p99 ms"),
    ("setup_p50_ms", "set-up p50 ms"),
    ("setup_p99_ms", "set-up p99 ms"),
    ("outside_to_admission_p99_ms", "set-up: placed to admitted p99 ms"),
    ("inside_forked_p99_ms", "set-up: admitted to forked p99 ms"),
    ("inside_bridged_p99_ms", "set-up: admitted to bridged p99 ms"),
    ("outside_bridged_to_first_frame_p99_ms", "set-up: bridged to first frame p99 ms"),
    ("supervisor_loop_busy_max_ms", "supervisor loop: longest pass ms"),
    ("supervisor_loop_slow_passes", "supervisor loop: passes over 100 ms"),
    ("downlink_first_audio_p99_ms", "first audio p99 ms"),
    ("barge_in_stop_max_ms", "barge-in stop max ms"),
    ("worker_uss_max_mb", "worker USS MB"),
    ("involuntary_switches_per_call_second", "involuntary switches per call-second"),
    ("minor_faults_per_call", "minor faults per call"),
    ("setup_minor_faults_per_call", "minor faults per call, until bridged"),
    ("callbridge_cpu_percent", "callbridge CPU %"),
    ("load_generator_cpu_percent", "load generator CPU %"),
    ("steal_percent", "steal %"),
    ("cost_source", "wake-ups and CPU counted from"),
]
ASTERISK_FIGURES = [
    ("wakeups_per_call_second", "wake-ups per call-second"),
    ("cpu_percent_per_call_kernel", "CPU % of a core per call (rusage)"),
    ("cpu_percent_per_call", "CPU % of a core per call (psutil)"),
    ("wakeups_per_call_second_steady", "wake-ups per call-second, once bridged"),
    ("cpu_percent_per_call_steady", "CPU % of a core per call, once bridged"),
    ("setup_cpu_ms_per_call", "set-up CPU ms per call"),
    ("cpu_percent_per_call_all", "CPU % of a core per call, every process of the service (psutil)"),
    ("pacing_dev_p99_ms", "pacing dev p99 ms (at the caller)"),
    ("pacing_dev_max_ms", "pacing dev max ms (at the caller)"),
    ("bursts", "bursts"),
    ("frames_lost", "lost (downlink sequence gaps)"),
    ("egress_pacing_dev_p99_ms", "pacing dev p99 ms (as the frames leave the service)"),
    ("egress_pacing_dev_max_ms", "pacing dev max ms (as the frames leave the service)"),
    ("egress_bursts", "bursts (as the frames leave the service)"),
    ("setup_p50_ms", "set-up p50 ms"),
    ("setup_p99_ms", "set-up p99 ms"),
    ("calls_measured", "calls measured"),
    ("caller_in_gap_dev_p99_ms", "callers' streams at callbridge: gap dev p99 ms"),
    ("caller_in_within_0_5ms_share", "callers' packets within 0.5 ms of their clock"),
    ("worker_uss_max_mb", "worker USS MB"),
    ("involuntary_switches_per_call_second", "involuntary switches per call-second"),
    ("minor_faults_per_call", "minor faults per call"),
    ("setup_minor_faults_per_call", "minor faults per call, until bridged"),
    ("callbridge_cpu_percent", "callbridge CPU %"),
    ("steal_percent", "steal %"),
    ("cost_source", "wake-ups and CPU counted from"),
]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def checked_out(ref: str, scratch: Path, name: str):
    """(tree, description) of ref: this tree for `.`, else a detached worktree removed after."""
    if ref == ".":
        yield ROOT, f". ({git('rev-parse', '--short', 'HEAD').strip()} + working tree)"
        return
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    tree = scratch / name
    git("worktree", "add", "--detach", str(tree), commit)
    try:
        yield tree, f"{ref} ({commit[:10]})"
    finally:
        git("worktree", "remove", "--force", str(tree))


def runs(counts: list[int], repeat: int) -> list[tuple[int, int, tuple[str, str]]]:
    """(count, repetition, order) for every pair of runs, the order swapped each time."""
    plan = []
    for repetition in range(repeat):
        for count in counts:
            order = ("before", "after") if len(plan) % 2 == 0 else ("after", "before")
            plan.append((count, repetition, order))
    return plan


def ratio(before, after) -> str:
    if (
        isinstance(before, bool)
        or not isinstance(before, (int, float))
        or not isinstance(after, (int, float))
    ):
        return ""
    return f"{after / before:.2f}" if before else ""


def medians(results: list[dict], figures: list[tuple[str, str]]) -> list[dict]:
    """Per call count and side, the median of each numeric figure over the repetitions
    (the machine is shared and noisy: one run says little), as runs of repetition -1."""
    rows = []
    for n in sorted({r["calls"] for r in results}):
        for side in ("before", "after"):
            runs_ = [r for r in results if r["calls"] == n and r["side"] == side]
            row = {"calls": n, "side": side, "repetition": -1}
            for key, _ in figures:
                values = [r.get(key) for r in runs_]
                if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    row[key] = round(statistics.median(values), 2)
            rows.append(row)
    return rows


def table(
    results: list[dict], figures: list[tuple[str, str]], sides: tuple[str, str] = ("before", "after")
) -> str:
    """A row per figure; per call count (and repetition) the before and after columns and
    their ratio (after / before: 0.5 is half). Repetition -1 is the median (`medians`)."""
    by_run = {(r["calls"], r["repetition"], r["side"]): r for r in results}
    pairs = sorted({(r["calls"], r["repetition"]) for r in results}, key=lambda p: (p[0], p[1] < 0, p[1]))
    repeated = any(k for _, k in pairs)
    titles = []
    first, second = sides
    for n, k in pairs:
        run = f"{n}{' median' if k < 0 else f' #{k + 1}' if repeated else ''}"
        titles += [f"{run} {first}", f"{run} {second}", f"{run} {second}/{first}"]
    lines = ["| figure | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for key, title in figures:
        cells = []
        for n, k in pairs:
            before, after = by_run[(n, k, "before")].get(key), by_run[(n, k, "after")].get(key)
            cells += ["" if before is None else str(before), "" if after is None else str(after)]
            cells.append(ratio(before, after))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git ref of the code before (or . for this tree)")
    parser.add_argument(
        "--after", default=".", help="git ref of the code after (or . for this tree, the default)"
    )
    parser.add_argument(
        "--baseline", choices=("plain",), help="bench/plain_bridge.py in the place of --before"
    )
    parser.add_argument("--bench", choices=("calls", "asterisk"), default="calls")
    parser.add_argument("--calls", default="10,50,100", help="comma-separated concurrent call counts")
    parser.add_argument("--seconds", type=float, help="length of each call (default 20, asterisk: 6)")
    parser.add_argument("--rate", type=int, default=10, help="calls placed per second (asterisk bench)")
    parser.add_argument("--split-cpus", action="store_true", help="as calls_bench.py --split-cpus")
    parser.add_argument("--callers-in-step", action="store_true", help="as calls_bench.py --callers-in-step")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each ref per call count")
    parser.add_argument(
        "--asterisk-high-priority",
        action="store_true",
        help="Asterisk under SCHED_RR (asterisk -p, as Debian runs it)",
    )
    parser.add_argument(
        "--plain-priority",
        type=int,
        default=0,
        help="SCHED_FIFO priority of the plain bridge's sending threads (as MEDIA_REALTIME_PRIORITY); 0: none",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.split_cpus and args.bench != "calls":
        parser.error("--split-cpus is for the calls bench")
    if (args.before is None) == (args.baseline is None):
        parser.error("give --before REF or --baseline plain")
    counts = [int(c) for c in args.calls.split(",")]
    os.environ[plain_bridge.PRIORITY_VARIABLE] = str(args.plain_priority)  # read by the runs' start
    if args.seconds is None:
        args.seconds = 6.0 if args.bench == "asterisk" else 20.0
    callbridge_cpus = calls_bench.split_cpus(parser) if args.split_cpus else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="callbridge-compare-")))
        trees = {}
        for side, ref in (("before", args.before), ("after", args.after)):
            if ref is None:  # the baseline: not callbridge at all
                trees[side] = (None, "plain bridge (bench/plain_bridge.py)")
            else:
                trees[side] = stack.enter_context(checked_out(ref, scratch, side))
            print(f"{side}: {trees[side][1]}", file=sys.stderr, flush=True)
        if args.bench == "asterisk":
            from bench import asterisk_bench  # needs tests/asterisk only here

            bench = stack.enter_context(asterisk_bench.Bench(scratch, args.asterisk_high_priority))

            def measure(count: int, tree: Path | None) -> dict:
                if tree is None:
                    return bench.measure(count, args.rate, seconds=args.seconds, baseline="plain")
                return bench.measure(count, args.rate, code_dir=tree, seconds=args.seconds)
        else:

            def measure(count: int, tree: Path | None) -> dict:
                return calls_bench.measure(
                    count,
                    args.seconds,
                    scratch,
                    callbridge_cpus,
                    tree or ROOT,
                    callers_in_step=args.callers_in_step,
                    baseline="" if tree else "plain",
                )

        for count, repetition, order in runs(counts, args.repeat):
            for side in order:
                tree, description = trees[side]
                print(f"{count} calls, {side}: {description} ...", file=sys.stderr, flush=True)
                result = measure(count, tree)
                if tree is not None and Path(result["code_under_test"]).resolve() != tree.resolve():
                    raise SystemExit(f"the service imported {result['code_under_test']}, not {tree}")
                results.append({**result, "side": side, "ref": description, "repetition": repetition})
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    figures = ASTERISK_FIGURES if args.bench == "asterisk" else CALLS_FIGURES
    sides = ("plain", "callbridge") if args.baseline else ("before", "after")
    text = table(results + (medians(results, figures) if args.repeat > 1 else []), figures, sides)
    header = f"before: {trees['before'][1]}; after: {trees['after'][1]}"
    report = {
        "bench": args.bench,
        "before": trees["before"][1],
        "after": trees["after"][1],
        "machine": calls_bench.machine(),
        "seconds_per_call": args.seconds,
        "arrivals_per_second": args.rate if args.bench == "asterisk" else calls_bench.ARRIVALS_PER_SECOND,
        "callbridge_cpus": sorted(callbridge_cpus) if callbridge_cpus else "shared with the load generator",
        "asterisk_high_priority": args.asterisk_high_priority,
        "plain_priority": args.plain_priority,
        "results": results,
    }
    (out / f"compare-{args.bench}.json").write_text(json.dumps(report, indent=2))
    (out / f"compare-{args.bench}.md").write_text(f"{header}\n\n{text}\n")
    print(header)
    print(text)


if __name__ == "__main__":
    main()
