"""Tools through a real `callbridge run` with real workers, on the simulators: the Realtime
simulator calls the function when scripted (/sim/tool-calls), the simulated Asterisk
originates into a scripted destination (/sim/destination) and sends its tone to a caller
bridged with it. The same paths run on the real Asterisk in tests/asterisk/test_transfers.py."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import requests
from analysis import asked

pytestmark = pytest.mark.slow

AGENTS = """
    [agents.desk]
    numbers = ["*"]
    instructions = "You answer for the front desk."

    [agents.desk.transfer.reception]
    context = "from-internal"
    extension = "200"
    description = "the reception desk"
    timeout = 5
"""
CALLER = [{"say": 800}, {"silence": 9000}, {"hangup": True}]


def _setup(asterisk, realtime, tmp_path, tool: str, arguments: dict, behaviour: str = "answer", after=0.3):
    realtime.reset()
    requests.get(
        f"{realtime.base}/sim/tool-calls",
        params={"name": tool, "arguments": json.dumps(arguments), "after_turn": 1},
        timeout=5,
    ).raise_for_status()
    requests.post(
        f"{asterisk.base}/sim/destination",
        params={"endpoint": "Local/200@from-internal", "behaviour": behaviour, "after": after, "hz": 600},
        timeout=5,
    ).raise_for_status()
    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(AGENTS))
    return str(path)


def _show(svc, call_id: str) -> subprocess.CompletedProcess:
    """`callbridge calls show` with the service's environment (the records' database)."""
    return subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "calls", "show", call_id],
        env=svc.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _events(tmp_path, call_id: str) -> list[str]:
    try:
        with sqlite3.connect(tmp_path / "state" / "callbridge.db") as db:
            rows = db.execute("SELECT kind FROM events WHERE call_id = ? ORDER BY seq", (call_id,)).fetchall()
    except sqlite3.Error:
        return []
    return [kind for (kind,) in rows]


def test_an_answered_transfer_bridges_the_caller_and_the_pair_is_removed_when_it_ends(
    service, asterisk, realtime, tmp_path, api
):
    svc = service(
        AGENTS_FILE=_setup(asterisk, realtime, tmp_path, "transfer_call", {"destination": "reception"})
    )
    call = asterisk.place_call(CALLER)
    svc.wait(lambda: "end=transferred" in svc.log(), timeout=30)
    status = svc.status()
    assert [row["call_id"] for row in status["transferred"]] == [call]
    assert status["calls"] == []  # the worker is gone; the pair is the supervisor's to watch
    # The caller hangs up (its script): the destination is hung up and the bridge removed.
    svc.wait(lambda: asterisk.call(call, packets=False)["hangup"] is not None, timeout=20)
    svc.wait(lambda: not svc.status()["transferred"], timeout=10)
    svc.wait(lambda: not asterisk.state()["channels"] and not asterisk.state()["bridges"], timeout=10)
    record = asterisk.call(call)
    heard = [s for s in record["sources"].values() if s.get("hz") and abs(s["hz"] - 600) < 40]
    assert heard and heard[0]["loud_packets"] > 50  # the destination's own tone reached the caller
    outputs = realtime.sessions()[-1]["tools"]["outputs"]
    assert outputs and "dialling" in outputs[0]["output"]
    kinds = svc.wait(lambda: (k := _events(tmp_path, call)) and "ended" in k and k, timeout=20)
    assert [k for k in kinds if k in ("tool_call", "transfer_dialled", "transferred")] == [
        "tool_call",
        "transfer_dialled",
        "transferred",
    ]
    shown = _show(svc, call)
    assert shown.returncode == 0, shown.stderr
    assert "event  tool transfer_call" in shown.stdout and "transferred reception: answered" in shown.stdout


def test_a_busy_destination_leaves_the_caller_with_the_agent_which_is_told(
    service, asterisk, realtime, tmp_path
):
    svc = service(
        AGENTS_FILE=_setup(
            asterisk, realtime, tmp_path, "transfer_call", {"destination": "reception"}, "busy"
        )
    )
    call = asterisk.place_call(CALLER)
    svc.wait(lambda: "end=caller_hangup" in svc.log(), timeout=30)
    told = [text for text in asked(realtime.sessions()[-1]) if "busy" in str(text)]
    assert told
    assert "transfer_failed" in svc.wait(lambda: _events(tmp_path, call), timeout=20)
    assert "transfer_failed reception: the line is busy" in _show(svc, call).stdout
    svc.wait(lambda: not asterisk.state()["channels"] and not asterisk.state()["bridges"], timeout=10)


def test_end_call_ends_the_call_as_the_agent_s_hang_up(service, asterisk, realtime, tmp_path, api):
    svc = service(AGENTS_FILE=_setup(asterisk, realtime, tmp_path, "end_call", {}))
    call = asterisk.place_call([{"say": 800}, {"silence": 20000}, {"hangup": True}])
    svc.wait(lambda: "end=agent_hangup" in svc.log(), timeout=30)
    record = asterisk.call(call, packets=False)
    assert record["hangup_by"] == "ari"  # we hung up, long before the caller's script would


def test_when_realtime_refuses_the_caller_goes_to_the_fallback_instead_of_the_prompt(
    service, asterisk, realtime
):
    svc = service(FALLBACK_DESTINATION="from-internal,voicemail,1")
    realtime.fault("invalid_key")
    try:
        call = asterisk.place_call([{"say": 600}, {"silence": 20000}])
        svc.wait(lambda: asterisk.call(call, packets=False)["continued_to"] is not None, timeout=20)
        svc.wait(lambda: "end=realtime_failed" in svc.log(), timeout=20)
    finally:
        realtime.reset()
    record = asterisk.call(call, packets=False)
    assert record["continued_to"]["extension"] == "voicemail"
    assert record["playbacks"] == []  # no failure prompt
    assert record["hangup"] is None  # never hung up: the dialplan has the caller now
    asterisk.hangup(call)
    svc.wait(lambda: not asterisk.state()["channels"] and not asterisk.state()["bridges"], timeout=10)


def test_a_call_limit_reached_while_the_destination_rings_lets_the_transfer_finish(
    service, asterisk, realtime, tmp_path
):
    """MAX_CALL_SECONDS passes while the line rings: an answered destination is still
    bridged (the attempt is bounded by its own timeout), instead of a goodbye cutting it."""
    agents = _setup(asterisk, realtime, tmp_path, "transfer_call", {"destination": "reception"}, after=4.0)
    svc = service(AGENTS_FILE=agents, MAX_CALL_SECONDS="3")
    call = asterisk.place_call(CALLER)
    svc.wait(lambda: "call summary" in svc.log(), timeout=30)
    assert "end=transferred" in svc.log(), svc.log()[-2000:]
    svc.wait(lambda: asterisk.call(call, packets=False)["hangup"] is not None, timeout=20)
    svc.wait(lambda: not asterisk.state()["channels"] and not asterisk.state()["bridges"], timeout=10)
