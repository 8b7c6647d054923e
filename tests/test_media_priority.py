"""The media thread's real-time priority (MEDIA_REALTIME_PRIORITY, call_worker/media_priority.py)
and the per-frame trace the benchmarks read (call_worker/frame_trace.py, bench/frame_times.py),
on a real worker against the simulators."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from bench import frame_times
from call_worker import frame_trace, media_priority
from shm_ring import Slot

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _policies(pid: int) -> list[int]:
    """The scheduling policy of each thread of pid (without its reset-on-fork flag)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found.append(os.sched_getscheduler(int(task)) & ~os.SCHED_RESET_ON_FORK)
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _talking(call, frames: int = 20) -> None:
    deadline = time.monotonic() + 10
    while (
        call.segment.header.get(Slot.FRAMES_OUT) + call.segment.header.get(Slot.SILENCE_FRAMES_OUT) < frames
    ):
        assert time.monotonic() < deadline, "the call never sent audio"
        time.sleep(0.01)


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root or an rtprio limit")
@pytest.mark.parametrize(("priority", "fifo_threads"), [("1", 1), ("0", 0)])
def test_the_media_thread_alone_runs_at_the_real_time_priority(calls, priority, fifo_threads):
    sup = calls(MEDIA_REALTIME_PRIORITY=priority)
    call = sup.place([{"say": 500}, {"silence": 2000}, {"hangup": True}])
    _talking(call)
    policies = _policies(call.pid)
    assert len(policies) >= 2  # the worker's main thread and its media thread (which reads the link)
    assert policies.count(os.SCHED_FIFO) == fifo_threads, policies
    if fifo_threads:
        assert os.sched_getparam(call.pid).sched_priority == 0  # the main thread kept its own
    assert sup.wait_ended(call) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root or an rtprio limit")
def test_threads_the_media_thread_starts_are_not_real_time():
    """A reconnect's opener or a tool's pool thread is started by the media thread: it must
    not inherit the priority (an HTTP response parsed at real-time priority would delay
    other calls' frames)."""
    import threading

    seen = {}

    def media() -> None:
        seen["problem"] = media_priority.raise_to(1)
        seen["media"] = os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK
        child = threading.Thread(target=lambda: seen.update(child=os.sched_getscheduler(0)))
        child.start()
        child.join()

    thread = threading.Thread(target=media)
    thread.start()
    thread.join()
    assert seen == {"problem": None, "media": os.SCHED_FIFO, "child": os.SCHED_OTHER}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread was never touched


def test_a_refused_priority_is_reported_not_raised():
    """As a user without an rtprio limit (what a unit without LimitRTPRIO= gives): the check
    says why, and the thread that asked is left as it was."""
    script = (
        "import os, resource; from call_worker import media_priority as m; "
        "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0)); "
        # root may ignore the limit (CAP_SYS_NICE): become nobody, as a unit's User= is
        "os.geteuid() == 0 and (os.setgid(65534), os.setuid(65534)); "
        "print(m.check(1)); print(m.raise_to(0)); print(os.sched_getscheduler(0) == os.SCHED_OTHER)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    answer = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert answer.returncode == 0, answer.stderr
    refused, untouched, normal = answer.stdout.splitlines()
    assert refused == "Operation not permitted" and untouched == "None" and normal == "True"
    assert media_priority.raise_to(0) is None  # 0 asks for nothing, here too


def test_the_frame_trace_accounts_for_every_frame(calls, tmp_path, monkeypatch):
    monkeypatch.setenv(frame_trace.VARIABLE, str(tmp_path))  # read by the forked worker
    sup = calls()
    call = sup.place([{"say": 800}, {"silence": 2500}, {"hangup": True}])
    assert sup.wait_ended(call) == 0
    sent = call.segment.header.get(Slot.FRAMES_OUT) + call.segment.header.get(Slot.SILENCE_FRAMES_OUT)
    (trace,) = tmp_path.glob("*.frames")
    assert trace.name == f"{call.pid}.frames"
    values = array("d")
    values.frombytes(trace.read_bytes())
    rows = len(values) // len(frame_trace.FIELDS)
    assert rows == sent > 100  # one row per frame, none missing, none extra
    summary = frame_times.summarize(frame_times.load(tmp_path))
    assert sum(summary["late_histogram_ms"].values()) == rows
    width, at = len(frame_trace.FIELDS), {name: i for i, name in enumerate(frame_trace.FIELDS)}
    for row in range(rows):
        woke, tick, send, sendto, sent = (
            values[row * width + at[name]] for name in ("woke", "tick", "send", "sendto", "sent")
        )
        # Each part begins where the one before ended: wake-up, link work, frame work, sendto.
        assert woke <= tick <= send <= sendto <= sent, (row, woke, tick, send, sendto, sent)
        assert values[row * width + at["path"]] in (0.0, 1.0) and values[row * width + at["run_delay"]] >= 0
    # The median frame on this quiet a machine leaves within 5 ms of its deadline.
    assert summary["parts_ms"]["late"]["p50"] < 5.0
    deadlines = values[0 :: len(frame_trace.FIELDS)]
    steps = [(b - a) * 1000 for a, b in zip(deadlines, deadlines[1:], strict=False)]
    assert 19.0 < sorted(steps)[len(steps) // 2] < 21.0  # the deadlines are the 20 ms schedule
    assert "lateness ms" in frame_times.markdown(summary)


@pytest.mark.parametrize(
    ("scheduling", "state"),
    [
        ("SCHED_FIFO 1", "good"),
        ("normal (SCHED_FIFO 1 refused: Operation not permitted)", "warn"),
        ("normal (MEDIA_REALTIME_PRIORITY=0)", ""),
    ],
)
def test_status_and_the_dashboard_say_what_the_media_threads_got(scheduling, state):
    from supervisor.commands import status
    from web.views import health

    supervisor = {
        "version": "x",
        "pid": 1,
        "uptime_s": 5,
        "ari": "connected",
        "draining": False,
        "calls_live": 0,
        "max_concurrent_calls": 10,
        "calls_taken": 0,
        "calls_failed": 0,
        "calls_rejected_busy": 0,
        "media_scheduling": scheduling,
    }
    assert f"media threads: {scheduling}" in status.render({"supervisor": supervisor, "calls": []})
    rows = {
        label: (value, s)
        for label, value, s in health({"ok": True, "supervisor": supervisor}, {}, {}, 0, str)
    }
    assert rows["media threads"] == (scheduling, state)


def test_the_supervisor_says_once_at_start_when_the_priority_is_refused(monkeypatch, caplog):
    import logging

    from supervisor import start_checks

    monkeypatch.setattr(media_priority, "check", lambda priority: "Operation not permitted")
    with caplog.at_level(logging.WARNING, logger="supervisor.service"):
        said = start_checks.media_scheduling(1)
    assert said == "normal (SCHED_FIFO 1 refused: Operation not permitted)"
    (line,) = [r.getMessage() for r in caplog.records]
    assert "LimitRTPRIO=1" in line and "MEDIA_REALTIME_PRIORITY=0" in line
    caplog.clear()
    assert start_checks.media_scheduling(0) == "normal (MEDIA_REALTIME_PRIORITY=0)" and not caplog.records
