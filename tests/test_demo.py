"""The README's first command: `callbridge demo` runs everything and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_calls_and_exits_zero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "demo", "--calls", "2", "--seconds", "9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "2 live" in out  # live status was shown while the calls ran
    assert "per-call summary" in out
    summary = out.split("per-call summary", 1)[1]
    rows = [line for line in summary.splitlines() if line.startswith("sim-")]
    assert len(rows) == 2 and all(row.endswith("caller_hangup") for row in rows)
