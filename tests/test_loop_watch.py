"""The supervisor loop's busy-time figures (supervisor/loop_watch.py), on a clock the test
moves: which passes count as slow, which step a warning names, how often it logs."""

from __future__ import annotations

import logging

from supervisor.loop_watch import LOG_EVERY, SLOW_PASS, WINDOW, LoopWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pass(
    watch: LoopWatch, clock: Clock, steps: list[tuple[str, float]], outer: str = "Supervisor._tick", own=0.001
) -> None:
    """One pass: `outer` runs the `steps` (name, seconds) one after another, and does `own`
    seconds of work of its own."""
    watch.begin_pass()
    watch.begin_step(outer)
    for name, seconds in steps:
        watch.begin_step(name)
        clock.now += seconds
        watch.end_step()
    clock.now += own
    watch.end_step()
    watch.end_pass()


def test_a_slow_pass_is_counted_and_logged_once_naming_the_inner_step_that_took_most(caplog):
    clock = Clock()
    watch = LoopWatch(clock)
    caplog.set_level(logging.WARNING, logger="supervisor.loop_watch")
    _pass(watch, clock, [("Supervisor._watch_call", 0.002)] * 5)  # a quiet tick: 11 ms
    assert watch.slow_passes == 0 and not caplog.records
    # A hundred calls' health samples of 1.5 ms, and one admission of 20 ms.
    _pass(watch, clock, [("Supervisor._watch_call", 0.0015)] * 100 + [("Admission.admit", 0.02)])
    assert watch.slow_passes == 1
    [line] = caplog.records
    assert "took 171 ms (mostly Supervisor._watch_call, 150 ms;" in line.getMessage()
    assert watch.busy_max_ms() == 171.0
    # More slow passes within LOG_EVERY are counted, not logged; the next line says how many.
    for _ in range(3):
        _pass(watch, clock, [("Admission.admit", SLOW_PASS + 0.05)])
    assert watch.slow_passes == 4 and len(caplog.records) == 1
    clock.now += LOG_EVERY
    _pass(watch, clock, [("Reaping._reap", 0.3)])
    assert len(caplog.records) == 2 and "4 slow passes since" in caplog.records[1].getMessage()
    assert "mostly Reaping._reap, 300 ms;" in caplog.records[1].getMessage()
    # Within the minute, only a pass at least twice the last one logged is told (the worst
    # stall is always named): 0.5 s is not, 0.61 s is.
    _pass(watch, clock, [("Admission.admit", 0.5)])
    assert len(caplog.records) == 2
    _pass(watch, clock, [("Reaping._count_cost", 0.01)], outer="Reaping._finish_call", own=0.6)
    # The step's own work is named, not the short step it ran inside it.
    assert len(caplog.records) == 3
    assert "took 610 ms (mostly Reaping._finish_call, 600 ms;" in caplog.records[2].getMessage()


def test_the_histogram_holds_every_pass_and_the_maximum_ages_out():
    clock = Clock()
    watch = LoopWatch(clock)
    _pass(watch, clock, [("Admission.admit", 0.4)])
    for _ in range(9):
        _pass(watch, clock, [])
    data = watch.passes.as_dict()
    assert data["count"] == 10 and data["buckets"][-1] == ["+Inf", 10]
    assert dict(data["buckets"])[0.25] == 9 and dict(data["buckets"])[0.5] == 10
    assert watch.busy_max_ms() == 401.0
    clock.now += WINDOW
    _pass(watch, clock, [])
    assert watch.busy_max_ms() == 401.0  # still within the last one to two windows
    clock.now += WINDOW
    _pass(watch, clock, [])
    assert watch.busy_max_ms() == 1.0
    # A long pause between two passes (the process stopped) leaves no stale maximum.
    _pass(watch, clock, [("Admission.admit", 0.3)])
    clock.now += 3 * WINDOW
    _pass(watch, clock, [])
    assert watch.busy_max_ms() == 1.0


def test_time_between_passes_is_not_busy():
    clock = Clock()
    watch = LoopWatch(clock)
    watch.end_pass()  # before the first pass: nothing to end
    _pass(watch, clock, [])
    clock.now += 5.0  # waiting in select()
    watch.end_pass()
    assert watch.passes.count == 1 and watch.busy_max_ms() == 1.0
