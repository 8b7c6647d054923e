"""The README's first command: `callbridge demo` runs everything and exits 0, showing one
status table (not a copy per second) with its legend, and a summary with units."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
import requests
from rich.console import Console
from testenv import wait_until
from webtest import answers

from callbridge.cli.demo import LEGEND, StatusView


@pytest.mark.slow
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
    # stdout is a pipe: one table, the last sample with both calls live, and its legend
    assert out.count("live / 20 max") == 1 and "2 live" in out
    assert LEGEND in out and "fill: " in out and "underruns: " in out
    assert "per-call summary" in out
    summary = out.split("per-call summary", 1)[1]
    rows = [line for line in summary.splitlines() if line.startswith("sim-")]
    assert len(rows) == 2 and all(row.endswith("caller_hangup") for row in rows)
    for row in rows:  # said, heard in s; reply after, gap p50, dev p99, dev max in ms
        cells = row.split()
        assert cells[2] == "s" and cells[4] == "s" and cells[6:13:2] == ["ms"] * 4, row
    # Issue 22, item 16: what was said, as text; its own ports; and commands that work.
    assert out.count("caller: caller speech of") >= 4 and "agent: reply to" in out
    assert "metrics at http://127.0.0.1:" in out and "127.0.0.1:9464" not in out
    assert "status --socket " in out and "logged" not in out.split("what was said", 1)[1].split("look at")[0]
    commands = [
        line.split() for line in out.splitlines() if line.startswith("  ") and " calls --env-file " in line
    ]
    assert len(commands) == 1
    listed = subprocess.run(commands[0], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and sum(line.startswith("20") for line in listed.stdout.splitlines()) == 2

    # the dashboard: its address and the demo user while it ran, and the printed command
    # serves it again over the demo's history
    found = re.search(r"the dashboard at (http://127\.0\.0\.1:\d+)/ \(user demo, password (\S+):", out)
    assert found, out[:2000]
    base, password = found.groups()
    serve = [line.split() for line in out.splitlines() if line.startswith("  ") and " web serve " in line]
    assert len(serve) == 1
    web = subprocess.Popen(serve[0], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(base) or web.poll() is not None, timeout=30, interval=0.1)
        session = requests.Session()
        form = session.get(base + "/login", timeout=10).text
        csrf = re.search(r'name="csrf" value="([^"]*)"', form).group(1)
        reply = session.post(
            base + "/login",
            data={"csrf": csrf, "name": "demo", "password": password, "next": "/calls"},
            timeout=10,
        )
        assert reply.url.endswith("/calls"), reply.text[:500]
        assert reply.text.count("reason-caller_hangup") == 2
    finally:
        web.terminate()
        web.wait(10)


def _status(live: int, frames: int) -> dict:
    supervisor = {
        "version": "0",
        "pid": 1,
        "uptime_s": frames / 50,
        "ari": "connected",
        "draining": False,
        "calls_live": live,
        "max_concurrent_calls": 20,
        "calls_taken": 1,
        "calls_failed": 0,
        "calls_rejected_busy": 0,
    }
    calls = [{"call_id": "sim-1", "age_s": 1.0, "frames_in": frames}] if live else []
    return {"supervisor": supervisor, "calls": calls}


def test_on_a_terminal_the_table_is_redrawn_in_place_and_the_last_live_one_stays():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    with StatusView(console, echo=lambda text: console.print(text)) as view:
        for frames in (50, 100, 150):
            view.show(_status(1, frames))
        view.show(_status(0, 150))
    drawn = screen.getvalue()
    assert "\x1b[2K" in drawn and "\x1b[1A" in drawn  # rich's Live erases and rewrites its lines
    assert drawn.count(LEGEND.splitlines()[0]) >= 4  # each sample drawn over the one before
    final = drawn.rsplit("\x1b[2K", 1)[1]  # what stays on the screen: the last sample with the call
    assert final.startswith("callbridge 0") and "1 live" in final and final.count("live /") == 1
    below = final.split("sim-1", 1)[1].splitlines()
    assert below[0].split() == ["0:01"] and any("frames in 150 out -" in line for line in below)


def test_off_a_terminal_only_the_last_sample_with_calls_live_is_printed():
    printed: list[str] = []
    console = Console(file=io.StringIO(), force_terminal=False)
    with StatusView(console, echo=printed.append) as view:
        for frames in (50, 100, 150):
            view.show(_status(1, frames))
        view.show(_status(0, 150))
    assert len(printed) == 1
    assert "1 live" in printed[0] and "frames in 150" in printed[0] and printed[0].rstrip().endswith(LEGEND)


def test_the_service_s_errors_reach_the_terminal():
    from callbridge.cli.demo import _problems

    log = (
        "2026-12-03 10:00:00,000 INFO    [-] supervisor.service: started\n"
        "2026-12-03 10:00:01,000 CRITICAL [-] supervisor.helpers: metrics helper failed\n"
        "2026-12-03 10:00:02,000 ERROR   [x] records.drainer: cannot set aside\n"
    )
    assert [line.split()[2] for line in _problems(log)] == ["CRITICAL", "ERROR"]
