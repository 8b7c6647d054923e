"""The supervisor's health sampling of real worker processes (supervisor/health.py).

USS is the costly figure (the kernel walks the worker's page tables for it, on the
supervisor's loop): a tick reads it for a few workers only, never for one still setting up.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from testenv import TEST_PREFIX

from shm_ring import CallSegment, segment_name
from supervisor.calls import CallEntry, Phase
from supervisor.health import USS_EVERY, USS_PER_TICK, HealthMonitor


@pytest.fixture
def workers():
    """Five sleeping processes standing for workers, each with its call's segment."""
    entries, processes = [], []
    try:
        for n in range(5):
            process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            processes.append(process)
            segment = CallSegment.create(segment_name(f"health{n}", TEST_PREFIX))
            entries.append(CallEntry(f"call-{n}", "", "", "", process.pid, segment, phase=Phase.ACTIVE))
        yield entries
    finally:
        for process in processes:
            process.kill()
            process.wait()
        for entry in entries:
            entry.segment.destroy()


def _tick(monitor: HealthMonitor, entries: list[CallEntry], now: float) -> list[str]:
    monitor.plan_uss(entries, now)
    for entry in entries:
        monitor.sample(entry)
    return [entry.call_id for entry in entries if entry.health.get("uss_mb") is not None]


def test_a_tick_reads_uss_for_a_few_workers_and_the_stalest_first(workers):
    monitor = HealthMonitor()
    # First sample: every worker is new (a burst of calls), and none has its USS read.
    assert _tick(monitor, workers, 0.0) == []
    assert all(entry.health["rss_mb"] > 0 for entry in workers)  # the cheap figures are there
    measured = _tick(monitor, workers, 1.0)
    assert len(measured) == USS_PER_TICK
    assert all(entry.health["uss_mb"] > 0 for entry in workers[:USS_PER_TICK])
    assert len(_tick(monitor, workers, 2.0)) == 2 * USS_PER_TICK
    assert len(_tick(monitor, workers, 3.0)) == len(workers)  # the last one's turn
    assert _tick(monitor, workers, 4.0) and not any(w.uss_turn for w in monitor.watches.values())
    # Nothing is read again before USS_EVERY, then the ones read longest ago come first.
    before = {entry.call_id: monitor.watches[entry.pid].uss_at for entry in workers}
    _tick(monitor, workers, 1.0 + USS_EVERY - 0.5)
    assert {entry.call_id: monitor.watches[entry.pid].uss_at for entry in workers} == before
    _tick(monitor, workers, 1.0 + USS_EVERY)
    again = [entry.call_id for entry in workers if monitor.watches[entry.pid].uss_at != before[entry.call_id]]
    assert again == [entry.call_id for entry in workers[:USS_PER_TICK]]


def test_a_worker_setting_up_has_no_uss_read(workers):
    monitor = HealthMonitor()
    for entry in workers:
        entry.phase = Phase.STARTING
    for now in range(5):
        assert _tick(monitor, workers, float(now)) == []
    workers[3].phase = Phase.ACTIVE
    assert _tick(monitor, workers, 5.0) == ["call-3"]
