"""Fixtures of the end-to-end suite: a real Asterisk 22 with sipp callers, `callbridge run`
as a real process, the simulated Realtime server in place of OpenAI.

When the suite cannot run here (no root, no Debian mirror, missing tools) it says why in
capital letters and fails, unless CALLBRIDGE_E2E=skip explicitly allows skipping it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speech  # noqa: E402
from harness import RealtimeSim  # noqa: E402
from real_asterisk import ARI_PASSWORD, ARI_USER, Asterisk, CannotRun, Ports, check_tools, ensure_root  # noqa: E402
from service import Service  # noqa: E402
from testenv import TEST_PREFIX  # noqa: E402  (tests/conftest.py)

from shm_ring import list_segments  # noqa: E402

PORTS = Ports()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/asterisk" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_asterisk():
    try:
        check_tools()
        asterisk = Asterisk(ensure_root(), PORTS)
        asterisk.start()
    except CannotRun as exc:
        message = f"END-TO-END TESTS AGAINST A REAL ASTERISK CANNOT RUN: {exc}"
        print("\n" + message, file=sys.stderr)
        if os.environ.get("CALLBRIDGE_E2E") == "skip":
            pytest.skip(message)
        pytest.fail(message + "\n(set CALLBRIDGE_E2E=skip to skip this suite explicitly)", pytrace=False)
    yield asterisk
    asterisk.stop()


@pytest.fixture(scope="session")
def realtime():
    sim = RealtimeSim("--reply-ms", "6000", "--greeting-ms", "1500")
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def voices(tmp_path_factory, real_asterisk):
    folder = tmp_path_factory.mktemp("voices")
    return {
        "question": speech.script(
            ["Hello, I would like to know your opening hours today, please.", 14.0], folder / "question.wav"
        ),
        "barge": speech.script(
            ["Hello, can you tell me about your prices?", 3.0, "Wait, sorry, I have another question.", 8.0],
            folder / "barge.wav",
        ),
        "silent": speech.script([30.0], folder / "silent.wav"),
    }


class Bridge:
    """One `callbridge run` against the real Asterisk, plus the checks every scenario ends with."""

    def __init__(
        self, asterisk: Asterisk, realtime: RealtimeSim, workdir: Path, api: str | None = None
    ) -> None:
        self.asterisk = asterisk
        self.realtime = realtime
        self.workdir = workdir
        self.api = api  # OPENAI_API for every service, when the test takes `api` (tests/conftest.py)
        self.services: list[Service] = []
        self.worker_pids: set[int] = set()

    def start(self, workdir: Path | None = None, **overrides: str) -> Service:
        if workdir is not None:
            workdir.mkdir(exist_ok=True)
        if self.api is not None:
            overrides.setdefault("OPENAI_API", self.api)
        service = Service(
            None,
            self.realtime,
            workdir or self.workdir,
            TEST_PREFIX,
            ari=(PORTS.ari, ARI_USER, ARI_PASSWORD),
            RTP_PORT_RANGE=f"{PORTS.callbridge_rtp[0]}-{PORTS.callbridge_rtp[1]}",
            **overrides,
        )
        self.services.append(service.start())
        return service

    def note_workers(self, service: Service) -> list[dict]:
        rows = service.status()["calls"]
        self.worker_pids.update(row["pid"] for row in rows)
        return rows

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 8
        while True:
            left = self.asterisk.leftovers()
            segments = list_segments(TEST_PREFIX)
            workers = [pid for pid in self.worker_pids if _alive(pid)]
            if not (left["channels"] or left["bridges"] or segments or workers):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"left behind: Asterisk {left}, segments {segments}, workers {workers}")
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def bridge(real_asterisk, realtime, tmp_path, request):
    realtime.reset()
    api = request.getfixturevalue("api") if "api" in request.fixturenames else None
    made = Bridge(real_asterisk, realtime, tmp_path, api)
    yield made
    for service in made.services:
        service.stop()
    made.assert_nothing_left()
