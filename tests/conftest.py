"""Shared fixtures. Every shared-memory segment a test makes uses TEST_PREFIX, and the
session fails if any is left behind (the "no leaked segment" rule, checked for real)."""

from __future__ import annotations

import pytest
from harness import AsteriskSim, started
from testenv import TEST_PREFIX

from shm_ring import list_segments, sweep


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind():
    yield
    left = list_segments(TEST_PREFIX)
    sweep(TEST_PREFIX)
    assert left == [], f"tests left shared memory segments behind: {left}"


@pytest.fixture
def shm_prefix() -> str:
    return TEST_PREFIX


@pytest.fixture(scope="module")
def asterisk():
    """The simulated Asterisk, one per test module."""
    yield from started(AsteriskSim())
