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
    """One tick's sampling; the calls whose USS this tick read."""
    before = {
        entry.pid: monitor.watches[entry.pid].uss_at for entry in entries if entry.pid in monitor.watches
    }
    monitor.plan_uss(entries, now)
    for entry in entries:
        monitor.sample(entry)
    return sorted(
        entry.call_id
        for entry in entries
        if entry.pid in monitor.watches
        and monitor.watches[entry.pid].uss_at != before.get(entry.pid, float("-inf"))
    )


def test_a_tick_reads_uss_for_a_few_workers_the_stalest_first(workers):
    monitor = HealthMonitor()
    # First sample: every worker is new (a burst of calls), and none has its USS read.
    assert _tick(monitor, workers, 0.0) == []
    assert all(entry.health["rss_mb"] > 0 and entry.health["uss_mb"] is None for entry in workers)
    assert _tick(monitor, workers, 1.0) == ["call-0", "call-1"] and USS_PER_TICK == 2
    assert all(entry.health["uss_mb"] > 0 for entry in workers[:2])
    assert _tick(monitor, workers, 2.0) == ["call-2", "call-3"]
    assert _tick(monitor, workers, 3.0) == ["call-4"]
    assert _tick(monitor, workers, 4.0) == []  # nothing is read again before USS_EVERY
    # All five due again, the ones read longest ago first, whatever the order of the calls.
    assert _tick(monitor, workers[::-1], 3.0 + USS_EVERY) == ["call-0", "call-1"]
    assert _tick(monitor, workers[::-1], 4.0 + USS_EVERY) == ["call-2", "call-3"]


def test_new_workers_do_not_keep_the_others_from_being_refreshed(workers):
    monitor = HealthMonitor()
    old, new = workers[:2], workers[2:]
    _tick(monitor, old, 0.0)
    assert _tick(monitor, old, 1.0) == ["call-0", "call-1"]
    _tick(monitor, workers, 0.5 + USS_EVERY)  # the new ones' first sample; the old not due yet
    # Three new workers and two old ones due: the stalest old one and one new one.
    assert _tick(monitor, workers, 2.0 + USS_EVERY) == ["call-0", "call-2"]
    assert _tick(monitor, workers, 3.0 + USS_EVERY) == ["call-1", "call-3"]
    assert new[2].health["uss_mb"] is None  # its turn comes next


def test_a_worker_setting_up_has_no_uss_read(workers):
    monitor = HealthMonitor()
    for entry in workers:
        entry.phase = Phase.STARTING
    for now in range(5):
        assert _tick(monitor, workers, float(now)) == []
    workers[3].phase = Phase.ACTIVE
    assert _tick(monitor, workers, 5.0) == ["call-3"]


def test_psutil_reads_each_worker_every_few_seconds_and_high_cpu_counts_readings(
    workers, monkeypatch, caplog
):
    """/proc is read at a worker's first tick and then every PROCESS_EVERY seconds (at 100
    calls those reads were a quarter of the supervisor's busy time); between readings the
    last figures stand, and "high CPU" needs BAD_SAMPLES readings, not BAD_SAMPLES ticks."""
    import logging

    from supervisor import health as health_module
    from supervisor.health import BAD_SAMPLES, PROCESS_EVERY

    monitor = HealthMonitor()
    entry = workers[0]
    monitor.sample(entry)
    watch = monitor.watches[entry.pid]
    first_read = watch.read_at
    assert entry.health["rss_mb"] > 0 and entry.health["threads"] >= 1
    monitor.sample(entry)
    assert watch.read_at == first_read  # the next tick: no /proc read, the figures kept
    assert entry.health["rss_mb"] > 0

    monkeypatch.setattr(watch.process, "cpu_percent", lambda _interval: 95.0)
    with caplog.at_level(logging.WARNING, logger=health_module.__name__):
        for reading in range(BAD_SAMPLES):
            watch.read_at -= PROCESS_EVERY  # the next reading is due
            monitor.sample(entry)
            assert entry.health["cpu_percent"] == 95.0 and "high CPU" in entry.health["health"]
            for _ in range(3):  # ticks between readings: the verdict stands, not another sample
                monitor.sample(entry)
                assert "high CPU" in entry.health["health"]
            warned = [r for r in caplog.records if "high CPU" in r.getMessage()]
            assert len(warned) == (1 if reading == BAD_SAMPLES - 1 else 0), (reading, warned)
    monkeypatch.setattr(watch.process, "cpu_percent", lambda _interval: 1.0)
    watch.read_at -= PROCESS_EVERY
    monitor.sample(entry)
    assert entry.health["health"] == "ok" and "high CPU" not in watch.streaks
