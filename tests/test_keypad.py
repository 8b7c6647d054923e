"""The caller's key presses: the agents file's `[agents.NAME.dtmf]` (callbridge/agent_keypad.py),
the per-call event channel from the supervisor to the worker (shm_ring/call_events.py), the
worker's keypad (call_worker/keypad.py), and, through a worker on the simulators, a press
reaching the model as text, a mapped key ending the call, and a secret code the model gets
and the record does not."""

from __future__ import annotations

import json

import pytest
from analysis import is_live, replies_made, session_events
from harness import last_session

from call_worker.keypad import Keypad
from callbridge import agents
from callbridge import config as cfg
from callbridge.agent_file import AgentFileError
from callbridge.agent_keypad import Collect, KeyPlan
from records import spool
from shm_ring import EndReason, Slot, call_events

BASE = {
    "ASTERISK_HOST": "127.0.0.1",
    "ASTERISK_USERNAME": "u",
    "ASTERISK_PASSWORD": "p",
    "OPENAI_API_KEY": "sk-unit",
}


# --- the keypad, key by key


def test_a_mapped_key_acts_and_any_other_is_told_to_the_model():
    pad = Keypad(KeyPlan({"9": ("end", ""), "0": ("transfer", "reception")}))
    [end] = pad.press("9", 0.0)
    assert end.kind == "action" and end.action == ("end", "")
    [told] = pad.press("5", 0.0)
    assert told.kind == "text" and "pressed 5" in told.text and told.event == {"key": "5"}


def test_digits_are_collected_until_the_end_key_the_limit_or_the_timeout():
    pad = Keypad(
        KeyPlan({"0": ("transfer", "reception")}, Collect(until="#", timeout_seconds=5, max_digits=4))
    )
    assert pad.press("1", 0.0) == [] and pad.press("0", 1.0) == []  # a mapped key is a digit once collecting
    [typed] = pad.press("#", 2.0)
    assert "typed 10 " in typed.text and typed.event == {"digits": "10"}
    assert pad.press("#", 2.5) == []  # the end key alone says nothing
    for digit in "123":
        pad.press(digit, 3.0)
    [full] = pad.press("4", 3.1)  # max_digits
    assert "typed 1234 " in full.text
    pad.press("7", 10.0)
    assert pad.tick(14.9) == []
    [late] = pad.tick(15.0)  # timeout_seconds since the last key
    assert "typed 7 " in late.text and not pad.collecting


def test_a_secret_code_reaches_the_model_and_its_event_keeps_only_its_length():
    pad = Keypad(KeyPlan({}, Collect(secret=True)))
    outcomes = [o for key in "4321#" for o in pad.press(key, 0.0)]
    [code] = outcomes
    assert "4321" in code.text and "Never say it back" in code.text
    assert code.event == {"digits": 4, "secret": True}


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('"x" = { end_call = true }', "not a key"),
        ('"0" = { transfer = "nowhere" }', "not one of the agent's destinations"),
        ('"0" = { dial = "200" }', 'must be { transfer = "DESTINATION" } or { end_call = true }'),
        ('"9" = { end_call = false }', "end_call must be true"),
        ('"#" = { end_call = true }\ncollect = { until = "#" }', "also mapped to an action"),
        ('collect = { until = "#", timeout_seconds = 0 }', "between 1 and 60"),
        ("collect = { digits = 4 }", "unknown key"),
    ],
)
def test_a_bad_keypad_table_is_named_by_its_key(table, problem, tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text(f'[agents.a]\nnumbers = ["*"]\n[agents.a.dtmf]\n{table}\n')
    settings = cfg.load(env_file=None, environ=BASE | {"AGENTS_FILE": str(path)}).settings
    with pytest.raises(AgentFileError) as refused:
        agents.load_book(settings)
    assert "agents.a.dtmf" in str(refused.value) and problem in str(refused.value)


# --- the event channel


def test_the_channel_carries_key_presses_and_reads_anything_else_as_an_error():
    ours, theirs = call_events.pair()
    assert call_events.send(ours, call_events.dtmf("5"))
    for garbage in (
        b"{not json",
        b"[]",
        b'{"type": "dtmf"}',
        b'{"type": "dtmf", "digit": "55"}',
        b'{"type": "x"}',
        b"x" * 600,
    ):
        ours.send(garbage)
    messages, still_open = call_events.receive(theirs)
    assert still_open and messages[0] == {"type": "dtmf", "digit": "5"}
    assert len(messages) == 7 and all(isinstance(m, call_events.EventError) for m in messages[1:])
    with pytest.raises(call_events.EventError):
        call_events.dtmf("12")
    ours.close()
    assert call_events.receive(theirs) == ([], False)  # closed: the worker stops watching it
    theirs.close()


def test_a_worker_that_does_not_read_never_blocks_the_supervisor():
    ours, theirs = call_events.pair()
    sent = sum(call_events.send(ours, call_events.dtmf("1")) for _ in range(100000))
    assert 0 < sent < 100000  # the rest dropped, at once
    theirs.close()
    assert call_events.send(ours, call_events.dtmf("1")) is False
    ours.close()


# --- through a worker


def _agents(tmp_path, text: str) -> str:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return str(path)


def _notes(session: dict) -> list[str]:
    """The text items callbridge added as the caller's turns (GPT-Live: text appended for
    the model to act on)."""
    if is_live(session):
        return [e["content"] for _, e in session_events(session, "in", "session.instructions.append")]
    texts = []
    for _, event in session_events(session, "in", "conversation.item.create"):
        item = event["item"]
        if item.get("role") == "user":
            texts += [part.get("text", "") for part in item.get("content", [])]
    return texts


@pytest.mark.slow
def test_a_key_press_reaches_the_model_as_the_callers_turn(calls, asterisk, realtime, tmp_path, api):
    sup = calls(STATE_DIR=str(tmp_path / "state"))
    call = sup.place([{"silence": 4000}, {"hangup": True}])
    sup.wait(lambda: call.segment.header.get(Slot.FRAMES_IN) > 20)
    asterisk.dtmf(call.channel_id, "5")
    sup.wait(lambda: any("pressed 5" in t for t in _notes(last_session(realtime))), 5)
    assert sup.wait_ended(call, 15) == 0
    session = last_session(realtime)
    if api == "realtime":
        creates = [t for t, _ in session_events(session, "in", "response.create")]
        [(noted_at, _)] = [(t, e) for t, e in session_events(session, "in", "conversation.item.create")]
        assert creates and creates[0] >= noted_at  # and the model is asked to answer it
    else:  # instructions it acts on: it speaks
        assert replies_made(session)
    [record] = [json.loads(p.read_text()) for p in spool.pending_records(sup.settings.spool_dir)]
    assert {"kind": "dtmf", "detail": {"key": "5"}} in [
        {k: e[k] for k in ("kind", "detail")} for e in record["events"]
    ]


@pytest.mark.slow
def test_a_key_mapped_to_end_call_ends_it_with_a_goodbye(calls, asterisk, realtime, tmp_path):
    path = _agents(
        tmp_path, '[agents.desk]\nnumbers = ["*"]\n[agents.desk.dtmf]\n"9" = { end_call = true }\n'
    )
    sup = calls(AGENTS_FILE=path)
    call = sup.place([{"silence": 15000}, {"hangup": True}])
    sup.wait(lambda: call.segment.header.get(Slot.FRAMES_IN) > 20)
    asterisk.dtmf(call.channel_id, "9")
    assert sup.wait_ended(call, 15) == 0
    assert call.segment.header.get(Slot.END_REASON) == EndReason.AGENT_HANGUP
    asks = [e for _, e in session_events(last_session(realtime), "in", "response.create")]
    assert [a["response"].get("metadata", {}).get("purpose") for a in asks] == ["goodbye"]
    assert asterisk.call(call.channel_id)["hangup_by"] == "ari"


@pytest.mark.slow
def test_a_secret_code_reaches_the_model_and_nothing_else(calls, asterisk, realtime, tmp_path, api):
    path = _agents(
        tmp_path,
        '[agents.bank]\nnumbers = ["*"]\n[agents.bank.dtmf]\ncollect = { until = "#", secret = true }\n',
    )
    sup = calls(AGENTS_FILE=path, STATE_DIR=str(tmp_path / "state"), LOG_LEVEL="debug")
    call = sup.place([{"silence": 5000}, {"hangup": True}])
    sup.wait(lambda: call.segment.header.get(Slot.FRAMES_IN) > 20)
    for key in "9731#":
        asterisk.dtmf(call.channel_id, key)
    sup.wait(lambda: any("9731" in t for t in _notes(last_session(realtime))), 5)
    assert sup.wait_ended(call, 15) == 0
    [record_path] = spool.pending_records(sup.settings.spool_dir)
    text = record_path.read_text()
    assert "9731" not in text
    events = [e for e in json.loads(text)["events"] if e["kind"] == "dtmf"]
    assert [e["detail"] for e in events] == [{"digits": 4, "secret": True}]


def test_one_press_reported_again_and_again_by_asterisk_is_one_press():
    from supervisor.key_presses import KeyPresses

    keys = KeyPresses()
    # Asterisk's growing series for one press of 5 (seen with sipp on Asterisk 22), then a
    # second real press of 5 after a pause, then 0.
    reports = [("5", d, t) for d, t in ((0, 0.0), (20, 0.09), (40, 0.18), (60, 0.27), (80, 0.36))]
    reports += [("5", 0, 0.9), ("5", 20, 0.99), ("0", 0, 1.5), ("0", 20, 1.59)]
    kept = [digit for digit, duration, at in reports if keys.is_new(digit, duration, at)]
    assert kept == ["5", "5", "0"]
    # Quick real presses of one key, each reported once with its own duration: all kept.
    keys = KeyPresses()
    assert all(keys.is_new("1", 120, at) for at in (0.0, 0.25, 0.5))
    keys = KeyPresses()
    assert [keys.is_new("2", d, t) for d, t in ((80, 0.0), (80, 0.12), (60, 0.24))] == [True, True, True]


def test_presses_are_timed_by_asterisk_not_by_when_the_supervisor_reads_them():
    from supervisor.key_presses import KeyPresses, event_time

    assert event_time({"timestamp": "2026-12-07T08:02:37.683+0000"}, 0.0) == 1796630557.683
    assert event_time({"timestamp": "garbage"}, 5.0) == event_time({}, 5.0) == 5.0
    # "55" typed, the loop paused, both events read at once: two presses by Asterisk's clock.
    keys = KeyPresses()
    first = event_time({"timestamp": "2026-12-07T08:02:37.683+0000"}, 0.0)
    second = event_time({"timestamp": "2026-12-07T08:02:38.083+0000"}, 0.0)
    assert keys.is_new("5", 120, first) and keys.is_new("5", 160, second)


@pytest.mark.slow
def test_a_caller_who_presses_keys_without_end_grows_neither_the_record_nor_the_models_turns(
    calls, asterisk, realtime, tmp_path, monkeypatch
):
    from call_worker import call as call_module
    from call_worker import conversation_keys

    monkeypatch.setattr(call_module, "MAX_EVENTS", 20)  # the worker is forked from here
    monkeypatch.setattr(conversation_keys, "MAX_KEY_PRESSES", 25)
    sup = calls(STATE_DIR=str(tmp_path / "state"))
    call = sup.place([{"silence": 5000}, {"hangup": True}])
    sup.wait(lambda: call.segment.header.get(Slot.FRAMES_IN) > 20)
    for _ in range(30):
        asterisk.dtmf(call.channel_id, "7")
    assert sup.wait_ended(call, 15) == 0
    [record] = [json.loads(p.read_text()) for p in spool.pending_records(sup.settings.spool_dir)]
    events = record["events"]
    kinds = [e["kind"] for e in events]
    during = [k for k in kinds if not k.startswith("setup_")]  # the set-up marks come apart
    assert kinds[-1] == "ended" and kinds[-2] == "events_dropped" and len(during) == 20 + 2
    dtmf_kept = kinds.count("dtmf")
    assert events[-2]["detail"] == {"count": 25 - dtmf_kept, "first_kind": "dtmf"}  # 25 reached the keypad
    # Each press is a turn the model answers, one after another: fewer reach it before the
    # caller hangs up, and never more than the cap.
    assert 0 < len([t for t in _notes(last_session(realtime)) if "pressed 7" in t]) <= 25
