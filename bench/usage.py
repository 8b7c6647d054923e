"""What a benchmark run costs the machine, read outside callbridge: CPU and memory of the
supervisor, its workers and the load generator (psutil), the VM's steal time and the
kernel's listen-backlog overflows."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from supervisor.helpers import HELPER_NAME_PREFIX


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def cpu_seconds(process: psutil.Process, reaped_children: bool = False) -> float:
    """CPU seconds of the process itself, or of its children it has reaped (exact: the
    kernel adds each child's total when it is waited for); 0 once it is gone."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    if reaped_children:
        return times.children_user + times.children_system
    return times.user + times.system


def listen_overflows() -> int:
    """The kernel's count of connections dropped by a full listen backlog: a dropped SYN
    costs the client a 1 s retransmission, so any increase during a run is reported."""
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return 0
    for names, values in zip(lines, lines[1:], strict=False):
        if names[0] == "TcpExt:" and values[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return 0


class Sampler:
    """psutil over the supervisor and its workers (CPU seconds per worker, USS, RSS), and
    over the load generator (the simulators and this process) to show what it costs."""

    def __init__(self, supervisor_pid: int, load_pids: dict[str, int]) -> None:
        self.supervisor = psutil.Process(supervisor_pid)
        self.load = {name: psutil.Process(pid) for name, pid in load_pids.items()}
        self.cpu: dict[int, float] = {}
        self.uss: dict[int, float] = {}
        self.supervisor_rss = 0.0
        self.started = time.monotonic()
        self.supervisor_cpu_start = cpu_seconds(self.supervisor)
        self.reaped_cpu_start = cpu_seconds(self.supervisor, reaped_children=True)
        self.final_worker_cpu = 0.0
        self.final_supervisor_cpu = 0.0
        self.load_cpu_start = {name: cpu_seconds(p) for name, p in self.load.items()}
        self.steal_start = psutil.cpu_times().steal  # the hypervisor's share, all CPUs
        self.overflows_start = listen_overflows()

    def worker_cpu(self) -> float:
        """Workers' CPU seconds. Sampling once a second misses what a worker spends after its
        last sample (teardown, its record); the kernel's total for reaped children is exact
        once every worker is reaped (it also counts nothing else: the resource tracker lives
        as long as the supervisor)."""
        return max(
            sum(self.cpu.values()), cpu_seconds(self.supervisor, reaped_children=True) - self.reaped_cpu_start
        )

    def totals(self) -> dict:
        """Average use of the machine's cores over the run, in % of one core."""
        elapsed = time.monotonic() - self.started
        self.final_worker_cpu = self.worker_cpu()  # while the supervisor still runs
        load = {name: cpu_seconds(p) - self.load_cpu_start[name] for name, p in self.load.items()}
        supervisor = cpu_seconds(self.supervisor) - self.supervisor_cpu_start
        self.final_supervisor_cpu = supervisor
        result = {
            "callbridge_cpu_percent": round((supervisor + self.final_worker_cpu) / elapsed * 100, 1),
            "supervisor_cpu_percent": round(supervisor / elapsed * 100, 1),
            "load_generator_cpu_percent": round(sum(load.values()) / elapsed * 100, 1),
            # CPU time the VM's vCPUs wanted but the host gave to others, over the run:
            # it varies from run to run and moves the tails with it.
            "steal_percent": round((psutil.cpu_times().steal - self.steal_start) / elapsed * 100, 1),
            "listen_overflows": listen_overflows() - self.overflows_start,
        }
        for name, seconds in load.items():
            result[f"{name}_cpu_percent"] = round(seconds / elapsed * 100, 1)
        return result

    def sample(self, measure_uss: bool) -> int:
        # Workers only: the supervisor also starts Python's resource tracker (3.11/3.12) and
        # helper processes, which name themselves cb-<kind> (supervisor/helpers.py).
        children = [
            c
            for c in self.supervisor.children()
            if "resource_tracker" not in " ".join(_cmdline(c)) and not _name(c).startswith(HELPER_NAME_PREFIX)
        ]
        for child in children:
            try:
                times = child.cpu_times()
                self.cpu[child.pid] = times.user + times.system
                if measure_uss and child.pid not in self.uss and len(self.uss) < 12:
                    self.uss[child.pid] = child.memory_full_info().uss / 2**20
            except psutil.Error:
                continue
        self.supervisor_rss = max(self.supervisor_rss, self.supervisor.memory_info().rss / 2**20)
        return len(children)
