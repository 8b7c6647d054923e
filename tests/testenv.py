"""Names and helpers shared by the test modules (conftest.py files cannot import each other)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

TEST_PREFIX = f"cbtest{os.getpid()}"


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
