"""Agents through a real `callbridge run` with real workers, against the simulated Asterisk
and Realtime server: each number reaches its own agent (what the Realtime server was sent),
callers we cannot take go to the fallback (the simulated Asterisk records the `continue`),
SIGHUP reads the file again without touching live calls, a broken file at reload keeps the
old agents, a broken file at start stops the start, and a daily budget sends new callers to
the fallback."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from analysis import session_events
from service import Service
from testenv import TEST_PREFIX, ended

from callbridge.config import EX_CONFIG

pytestmark = pytest.mark.slow

SHORT = [{"say": 800}, {"silence": 1500}, {"hangup": True}]
FRONT_DESK = """
    [fallback]
    context = "from-internal"
    extension = "voicemail"

    [agents.clinic]
    numbers = ["100"]
    instructions = "You answer for the clinic's front desk."
    voice = "marin"
    notice = "An AI answers and this call is recorded."
    greeting = "Greet the caller for the clinic."

    [agents.clinic.transfer.reception]
    context = "from-internal"
    extension = "200"

    [agents.helpdesk]
    numbers = ["_9XXX"]
    instructions = "You are the internal helpdesk."
    voice = "cedar"
    language = "es"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def first_update(session: dict) -> dict:
    return session_events(session, "in", "session.update")[0][1]["session"]


def sessions_by_instructions(realtime) -> dict[str, dict]:
    found = {}
    for session in realtime.sessions():
        updates = session_events(session, "in", "session.update")
        if updates:
            found[updates[0][1]["session"]["instructions"].split("\n")[0]] = session
    return found


def test_two_numbers_reach_two_agents_and_an_unclaimed_number_the_fallback(
    service, asterisk, realtime, tmp_path
):
    realtime.reset()
    agents = write(tmp_path / "agents.toml", FRONT_DESK)
    svc = service(AGENTS_FILE=str(agents))
    clinic = asterisk.place_call(SHORT, exten="100")
    helpdesk = asterisk.place_call(SHORT, exten="9123")
    nobody = asterisk.place_call([{"silence": 20000}], exten="555")
    svc.wait(lambda: asterisk.call(nobody, packets=False)["continued_to"] is not None)
    asterisk.hangup(nobody)  # the caller's script runs once bridged: in the fallback it never is
    svc.wait(lambda: all(ended(asterisk, c) for c in (clinic, helpdesk)), timeout=20)
    sessions = sessions_by_instructions(realtime)
    assert set(sessions) == {"You answer for the clinic's front desk.", "You are the internal helpdesk."}
    desk = sessions["You answer for the clinic's front desk."]
    assert first_update(desk)["audio"]["output"]["voice"] == "marin"
    # The notice is said first, word for word, in the greeting's own instructions.
    greeting = session_events(desk, "in", "response.create")[0][1]["response"]["instructions"]
    assert '"An AI answers and this call is recorded."' in greeting
    assert greeting.index("An AI answers") < greeting.index("Greet the caller for the clinic.")
    help_update = first_update(sessions["You are the internal helpdesk."])
    assert help_update["audio"]["output"]["voice"] == "cedar"
    assert help_update["audio"]["input"]["transcription"]["language"] == "es"
    assert "Speak Spanish" in help_update["instructions"]
    # No agent claims 555: the caller went to the file's fallback, never heard the prompt.
    record = asterisk.call(nobody, packets=False)
    assert record["continued_to"]["context"] == "from-internal"
    assert record["continued_to"]["extension"] == "voicemail"
    assert record["playbacks"] == [] and record["hangup_by"] == "caller"
    assert asterisk.call(clinic, packets=False)["continued_to"] is None
    # The agent's name is in the call's record in the history database.
    database = tmp_path / "state" / "callbridge.db"

    def stored() -> dict:
        try:
            with sqlite3.connect(database) as db:
                return dict(db.execute("SELECT call_id, agent FROM calls").fetchall())
        except sqlite3.Error:
            return {}

    rows = svc.wait(lambda: len(r := stored()) == 2 and r, timeout=20)
    assert rows == {clinic: "clinic", helpdesk: "helpdesk"}


def test_over_capacity_the_caller_goes_to_the_fallback_instead_of_the_prompt(service, asterisk, tmp_path):
    svc = service(MAX_CONCURRENT_CALLS="1", FALLBACK_DESTINATION="from-internal,queue-1,2")
    first = asterisk.place_call([{"say": 800}, {"silence": 6000}, {"hangup": True}])
    svc.wait(lambda: (r := svc.call_row(first)) and r["phase"] == "active")
    second = asterisk.place_call([{"silence": 20000}])
    svc.wait(lambda: asterisk.call(second, packets=False)["continued_to"] is not None)
    record = asterisk.call(second, packets=False)
    assert {k: record["continued_to"][k] for k in ("context", "extension", "priority")} == {
        "context": "from-internal",
        "extension": "queue-1",
        "priority": 2,
    }
    assert record["playbacks"] == [] and record["answered"] is None
    assert "to the fallback queue-1@from-internal:2" in svc.log()
    assert svc.call_row(first)["phase"] == "active"
    asterisk.hangup(second)  # the caller's script runs once bridged: in the fallback it never is
    svc.wait(lambda: ended(asterisk, second) and ended(asterisk, first), timeout=15)
    assert asterisk.call(second, packets=False)["hangup_by"] == "caller"  # never hung up by us
    summary = svc.status()["supervisor"]
    assert summary["calls_to_fallback"] == 1 and summary["calls_rejected_busy"] == 1


def test_when_realtime_refuses_a_bridged_call_the_worker_sends_it_to_the_fallback(
    service, asterisk, tmp_path, api
):
    """The worker's own fallback (call_worker/ending.py::Ending._send_to_fallback): Realtime
    refuses the session (a wrong key) once the caller is bridged, so the caller is taken out
    of the bridge and sent to FALLBACK_DESTINATION instead of hearing the failure prompt and
    being hung up, and the call's record in the history says so."""
    import json

    svc = service(OPENAI_API_KEY="sk-wrong-key", FALLBACK_DESTINATION="from-internal,operator,1")
    call_id = asterisk.place_call([{"silence": 20000}])
    try:
        svc.wait(lambda: asterisk.call(call_id, packets=False)["continued_to"] is not None, timeout=20)
        record = asterisk.call(call_id, packets=False)
        assert {k: record["continued_to"][k] for k in ("context", "extension", "priority")} == {
            "context": "from-internal",
            "extension": "operator",
            "priority": 1,
        }
        assert record["playbacks"] == [] and record["hangup"] is None  # no prompt, not hung up by us
        assert "the caller was sent to the fallback operator@from-internal:1" in svc.log()
        database = tmp_path / "state" / "callbridge.db"

        def stored() -> list:
            try:
                with sqlite3.connect(database) as db:
                    return db.execute(
                        "SELECT c.end_reason, e.detail FROM calls c JOIN events e"
                        " ON e.call_id = c.call_id WHERE c.call_id = ? AND e.kind = 'fallback'",
                        (call_id,),
                    ).fetchall()
            except sqlite3.Error:
                return []

        [(end_reason, detail)] = svc.wait(stored, timeout=20)
        assert end_reason == "realtime_failed"
        assert json.loads(detail)["to"] == "operator@from-internal:1"
        # What set-up created is gone (the bridge, the media channel); the caller lives on.
        state = asterisk.state()
        assert state["bridges"] == [] and [c["id"] for c in state["channels"]] == [call_id]
    finally:
        asterisk.hangup(call_id)
    svc.wait(lambda: ended(asterisk, call_id))


def test_sighup_changes_the_agent_of_new_calls_and_a_live_call_keeps_its_own(
    service, asterisk, realtime, tmp_path
):
    realtime.reset()
    agents = write(tmp_path / "agents.toml", '[agents.one]\nnumbers = ["*"]\ninstructions = "First."\n')
    svc = service(AGENTS_FILE=str(agents))
    live = asterisk.place_call([{"say": 800}, {"silence": 7000}, {"hangup": True}])
    svc.wait(lambda: (r := svc.call_row(live)) and r["phase"] == "active")
    write(agents, '[agents.two]\nnumbers = ["*"]\ninstructions = "Second."\nvoice = "cedar"\n')
    svc.signal(signal.SIGHUP)
    svc.wait(lambda: "agents file read again (1 agents): added two; removed one" in svc.log())
    later = asterisk.place_call(SHORT)
    svc.wait(lambda: (r := svc.call_row(later)) is not None and r["agent"] == "two")
    assert svc.call_row(live)["agent"] == "one"  # the live call is left alone
    svc.wait(lambda: ended(asterisk, later) and ended(asterisk, live), timeout=20)
    sessions = sessions_by_instructions(realtime)
    assert set(sessions) == {"First.", "Second."}
    assert len(session_events(sessions["First."], "in", "session.update")) >= 1
    assert all(
        e["session"].get("instructions", "First.") == "First."
        for _, e in session_events(sessions["First."], "in", "session.update")
    )
    assert first_update(sessions["Second."])["audio"]["output"]["voice"] == "cedar"
    assert asterisk.call(live, packets=False)["hangup_by"] == "caller"


def test_a_broken_file_at_reload_keeps_the_agents_loaded_before(service, asterisk, realtime, tmp_path):
    realtime.reset()
    agents = write(tmp_path / "agents.toml", '[agents.one]\nnumbers = ["*"]\ninstructions = "Kept."\n')
    svc = service(AGENTS_FILE=str(agents))
    write(agents, '[agents.one]\nnumbers = ["*"\ninstructions = "Lost."\n[agents.two]\nvoise = "x"\n')
    svc.signal(signal.SIGHUP)
    svc.wait(lambda: "keeping the agents loaded before" in svc.log())
    assert f"{agents}:3: " in svc.log()  # the syntax error, by file and line
    call = asterisk.place_call(SHORT)
    svc.wait(lambda: ended(asterisk, call), timeout=15)
    assert set(sessions_by_instructions(realtime)) == {"Kept."}
    assert svc.proc.poll() is None


def test_an_invalid_agents_file_stops_the_start_with_the_config_exit_code(asterisk, realtime, tmp_path):
    agents = write(
        tmp_path / "agents.toml",
        """
        [agents.clinic]
        numbers = ["100"]
        [agents.clinic.transfer.reception]
        context = "from-internal"
        extension = "two words"
        """,
    )
    svc = Service(asterisk, realtime, tmp_path, TEST_PREFIX, AGENTS_FILE=str(agents))
    done = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "run"],
        env=svc.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == EX_CONFIG
    assert (
        f"AGENTS_FILE: {agents}: agents.clinic.transfer.reception.extension: must be a dialplan name"
        in done.stderr
    )


def test_an_agent_over_its_daily_budget_sends_new_callers_to_the_fallback(service, asterisk, tmp_path):
    agents = write(
        tmp_path / "agents.toml",
        """
        [agents.thrifty]
        numbers = ["*"]
        daily_budget = 0.000001
        [agents.thrifty.fallback]
        context = "from-internal"
        extension = "operator"
        """,
    )
    svc = service(AGENTS_FILE=str(agents))
    first = asterisk.place_call(SHORT)
    svc.wait(lambda: ended(asterisk, first), timeout=15)
    svc.wait(lambda: "agent thrifty reached its daily budget" in svc.log())
    assert asterisk.call(first, packets=False)["continued_to"] is None
    second = asterisk.place_call([{"silence": 20000}])
    svc.wait(lambda: asterisk.call(second, packets=False)["continued_to"] is not None)
    assert asterisk.call(second, packets=False)["continued_to"]["extension"] == "operator"
    assert svc.status()["supervisor"]["agents"]["thrifty"]["spent_today"] > 0.000001
    asterisk.hangup(second)
    svc.wait(lambda: ended(asterisk, second), timeout=10)
    assert svc.log().count("reached its daily budget") == 1
