"""Names and helpers shared by the test modules (conftest.py files cannot import each other)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callbridge import config as cfg

TEST_PREFIX = f"cbtest{os.getpid()}"


def free_port() -> int:
    """A loopback TCP port nobody listens on now (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.005):
    """Poll `predicate` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def reap(pid: int, timeout: float = 10.0) -> int:
    """Wait for the child `pid` to exit, polling to a deadline; return its wait status.

    Past the deadline the child is killed, so that no test leaves it behind, and the test
    fails (waiting after SIGKILL is bounded: the signal cannot be caught or ignored)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"process {pid} did not exit within {timeout} s")
        time.sleep(0.005)


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie counts: it runs no more), for processes that
    are not our children and so cannot be waited for."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def no_configuration(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Run the test in `directory` with no callbridge variable set and no env file to find,
    so that a developer's ./.env or the machine's own env file is never read: the test sees
    only what it sets."""
    monkeypatch.chdir(directory)
    monkeypatch.setattr(cfg, "SYSTEM_ENV_FILE", directory / "absent.env")
    monkeypatch.setattr(cfg, "OPERATORS_ENV_FILE", directory / "absent-operators.env")
    for var in cfg.VARIABLES:
        monkeypatch.delenv(var.name, raising=False)


def ended(asterisk, *call_ids: str) -> bool:
    """True once the simulated Asterisk has seen every one of these calls hang up."""
    return all(asterisk.call(call_id, packets=False)["hangup"] is not None for call_id in call_ids)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA, as a private CA would be)."""
    import subprocess

    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def days_to(day) -> int:
    """Days from today to `day`, counted now: a run that crosses midnight (UTC) sees one fewer
    than at import, as the code under test does."""
    return (day - datetime.now(UTC).date()).days
