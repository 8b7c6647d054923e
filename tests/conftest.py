"""Shared fixtures. Every shared-memory segment a test makes uses TEST_PREFIX, and the
session fails if any is left behind (the "no leaked segment" rule, checked for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import AsteriskSim, MiniSupervisor, RealtimeSim, settings_for, started
from service import Service
from testenv import TEST_PREFIX

from shm_ring import list_segments, sweep

DEFAULT_STATE_DIR = Path("/var/lib/callbridge")


@pytest.fixture(scope="session", autouse=True)
def the_machines_state_dir_is_left_alone():
    """Tests, the demo and the benchmarks keep their history and spool in their own
    directories: none may write to the service's default STATE_DIR on this machine."""
    existed = DEFAULT_STATE_DIR.exists()
    yield
    assert existed or not DEFAULT_STATE_DIR.exists(), f"something wrote to {DEFAULT_STATE_DIR}"


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind():
    yield
    left = list_segments(TEST_PREFIX)
    sweep(TEST_PREFIX)
    assert left == [], f"tests left shared memory segments behind: {left}"


@pytest.fixture(scope="module")
def asterisk():
    """The simulated Asterisk, one per test module."""
    yield from started(AsteriskSim())


@pytest.fixture(scope="module")
def realtime():
    """The simulated Realtime server, one per test module (modules may override it)."""
    yield from started(RealtimeSim("--reply-ms", "3000"))


@pytest.fixture(scope="module")
def realtime_long():
    """A simulated Realtime server whose replies last 10 s (500 frames), one per test module."""
    yield from started(RealtimeSim("--reply-ms", "10000"))


@pytest.fixture(params=["realtime", "live"])
def api(request):
    """The voice API a test runs against (OPENAI_API): a test that takes it runs once for
    Realtime and once for GPT-Live, and `calls` and `service` use it."""
    return request.param


@pytest.fixture
def calls(asterisk, realtime, request):
    """A MiniSupervisor factory (tests/harness.py) for one worker's calls: `calls(rt=None,
    **settings)` runs them against `rt`, else the module's `realtime`; checks after the test
    that nothing is left in Asterisk. A test that takes `api` runs on that API."""
    made = []
    chosen = request.getfixturevalue("api") if "api" in request.fixturenames else None

    def make(rt=None, **overrides) -> MiniSupervisor:
        if chosen is not None:
            overrides.setdefault("OPENAI_API", chosen)
        (rt or realtime).reset()
        sup = MiniSupervisor(asterisk, settings_for(asterisk, rt or realtime, **overrides), TEST_PREFIX)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.close()
    state = asterisk.state()
    assert state["channels"] == [] and state["bridges"] == [], f"left in Asterisk: {state}"


@pytest.fixture
def service(asterisk, realtime, tmp_path, request):
    """Starts `callbridge run` processes; each is stopped after the test, and nothing may be
    left in the simulated Asterisk or in shared memory. A test that takes `api` runs on it."""
    started = []
    chosen = request.getfixturevalue("api") if "api" in request.fixturenames else None

    def make(**overrides) -> Service:
        if chosen is not None:
            overrides.setdefault("OPENAI_API", chosen)
        svc = Service(asterisk, realtime, tmp_path, TEST_PREFIX, **overrides)
        started.append(svc)
        return svc.start()

    yield make
    for svc in started:
        svc.stop()
    state = asterisk.state()
    assert state["channels"] == [] and state["bridges"] == [], f"left in Asterisk: {state}"
    assert list_segments(TEST_PREFIX) == []
