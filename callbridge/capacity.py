"""Whether the configured limits fit the memory and tasks the service may use.

MAX_CONCURRENT_CALLS allows 2,000, but each call is a process: its own memory (measured:
USS about 9.5 MB, docs/performance.md), its shared-memory segment (about 1.1 MB) and socket
buffers, about CALL_MEMORY in all; and a few threads, each a task. The unit caps both
(MemoryMax=4G, TasksMax=8192): at 4 GiB about 340 calls fit, and the 341st would not fail
politely, it would bring the kernel's OOM killer. So `check` and the start-up warn (they
do not refuse: the numbers are estimates, and an operator may know better) when the
configured limits cannot fit.

Where the limits come from: the cgroup this process runs in (under systemd, the unit's;
v2, or v1's memory and pids controllers), walking up to the tightest; for `check`, run
from a shell, the unit's own MemoryMax and TasksMax (`systemctl show`) when it is
installed; else the machine (its memory, its thread limit).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
CALL_MEMORY = 12 * MIB  # a worker's USS, its segment and socket buffers (measured, rounded up)
CALL_TASKS = 5  # main, media, the Realtime opener and side requests while they run, a spare
SERVICE_MEMORY = 150 * MIB  # supervisor, drainer, metrics helper, turn-away and other helpers
SERVICE_TASKS = 40


@dataclass(frozen=True)
class Limits:
    memory: int | None  # bytes; None: no limit found
    tasks: int | None
    source: str  # where the memory limit was read, for the message
    tasks_source: str = ""  # where the task limit was read ("": the same)

    def calls_that_fit(self) -> int | None:
        fits = []
        if self.memory is not None:
            fits.append(max(0, (self.memory - SERVICE_MEMORY) // CALL_MEMORY))
        if self.tasks is not None:
            fits.append(max(0, (self.tasks - SERVICE_TASKS) // CALL_TASKS))
        return min(fits) if fits else None


def problems(max_calls: int, limits: Limits) -> list[str]:
    found = []
    memory = SERVICE_MEMORY + max_calls * CALL_MEMORY
    if limits.memory is not None and memory > limits.memory:
        found.append(
            f"MAX_CONCURRENT_CALLS={max_calls} needs about {_gib(memory)} of memory, but {limits.source} "
            f"allows {_gib(limits.memory)}: about {limits.calls_that_fit()} calls fit (raise MemoryMax, or "
            "lower MAX_CONCURRENT_CALLS)"
        )
    tasks = SERVICE_TASKS + max_calls * CALL_TASKS
    if limits.tasks is not None and tasks > limits.tasks:
        found.append(
            f"MAX_CONCURRENT_CALLS={max_calls} needs about {tasks} tasks (threads), but "
            f"{limits.tasks_source or limits.source} "
            f"allows {limits.tasks} (raise TasksMax, or lower MAX_CONCURRENT_CALLS)"
        )
    return found


def _gib(value: int) -> str:
    return f"{value / (1024 * MIB):.1f} GiB"


def _number(text: str) -> int | None:
    text = text.strip()
    if not text or text in ("max", "infinity"):
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= 2**62 else value  # v1's "no limit" is a huge number


def cgroup_limits(
    proc: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> Limits | None:
    """The tightest memory and task limits of this process's cgroup and its parents."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    memory = tasks = None
    for line in lines:
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        path = path.lstrip("/")
        if number == "0" and controllers == "":  # v2: one tree
            memory = _tightest(memory, _walk(root, path, "memory.max"))
            tasks = _tightest(tasks, _walk(root, path, "pids.max"))
        elif "memory" in controllers.split(","):
            memory = _tightest(memory, _walk(root / "memory", path, "memory.limit_in_bytes"))
        elif "pids" in controllers.split(","):
            tasks = _tightest(tasks, _walk(root / "pids", path, "pids.max"))
    return Limits(memory, tasks, "this process's cgroup")


def _walk(base: Path, path: str, name: str) -> int | None:
    """The smallest `name` from the cgroup `path` up to the root of `base`."""
    found = None
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        try:
            value = _number((base.joinpath(*parts[:depth]) / name).read_text())
        except OSError:
            continue
        found = _tightest(found, value)
    return found


def _tightest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def machine_limits(
    meminfo: Path = Path("/proc/meminfo"), threads_max: Path = Path("/proc/sys/kernel/threads-max")
) -> Limits:
    memory = tasks = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        tasks = _number(threads_max.read_text())
    except OSError:
        pass
    return Limits(memory, tasks, "this machine")


def unit_limits(unit: str) -> Limits | None:
    """The installed unit's MemoryMax and TasksMax (for `check`, run from a shell); None when
    systemd does not know the unit."""
    if shutil.which("systemctl") is None:
        return None
    try:
        shown = subprocess.run(
            ["systemctl", "show", unit, "--property=LoadState,MemoryMax,TasksMax"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    if shown.returncode != 0 or values.get("LoadState") != "loaded":
        return None
    return Limits(
        _number(values.get("MemoryMax", "")), _number(values.get("TasksMax", "")), f"the unit {unit}"
    )


def effective(limits: list[Limits | None]) -> Limits:
    """The tightest of several sources (the machine always counts: no cgroup grows it)."""
    found = [lim for lim in limits if lim is not None]
    memory = tasks = None
    source = tasks_source = "this machine"
    for lim in found:
        if lim.memory is not None and (memory is None or lim.memory < memory):
            memory, source = lim.memory, lim.source
        if lim.tasks is not None and (tasks is None or lim.tasks < tasks):
            tasks, tasks_source = lim.tasks, lim.tasks_source or lim.source
    return Limits(memory, tasks, source, tasks_source)
