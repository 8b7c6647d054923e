"""Shared fixtures. Every shared-memory segment a test makes uses TEST_PREFIX, and the
session fails if any is left behind (the "no leaked segment" rule, checked for real)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from shm_ring import list_segments, sweep

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


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind():
    yield
    left = list_segments(TEST_PREFIX)
    sweep(TEST_PREFIX)
    assert left == [], f"tests left shared memory segments behind: {left}"


@pytest.fixture
def shm_prefix() -> str:
    return TEST_PREFIX
