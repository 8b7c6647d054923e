"""The voice's tuning and phased replies through a real worker, on the simulators: what the
session is configured with, a setting the service refuses, a preamble and an answer played
back to back (at the caller: no silence frame between them, no underrun), a barge-in in
either item, and parallel tool calls answered with one reply. The conversation's side of
the same paths, event by event, is tests/test_phased_replies.py's."""

from __future__ import annotations

import json
import textwrap

import pytest
import requests
from analysis import LOUD, packets, session_events
from harness import RealtimeSim, last_session, started

from shm_ring import EndReason, Slot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def realtime():
    """Phased replies: a preamble of 1 s, 300 ms of thinking, then an answer of 1.5 s."""
    yield from started(
        RealtimeSim(
            "--reply-ms", "1500", "--greeting-ms", "1000", "--preamble-ms", "1000", "--think-ms", "300"
        )
    )


def record_of(tmp_path, call) -> dict:
    return json.loads((tmp_path / f"{call.channel_id}.json").read_text())


def agent_turns(record: dict) -> list[dict]:
    return [t for t in record["transcript"] if t["role"] == "agent"]


def reply_items(session: dict) -> dict[str, str]:
    """phase -> item id, of the session's first phased reply."""
    added = [e["item"] for _, e in session_events(session, "out", "response.output_item.added")]
    items: dict[str, str] = {}
    for item in added:
        if item.get("type") == "message":
            items.setdefault(item["phase"], item["id"])
    return items


def turn_ms(session: dict) -> float:
    """From the caller's first turn's start to its end, as the service saw them (the caller's
    audio comes in real time, so this is the speech and the silence that ended it)."""
    [(started, _)] = session_events(session, "out", "input_audio_buffer.speech_started")
    [(stopped, _)] = session_events(session, "out", "input_audio_buffer.speech_stopped")
    return (stopped - started) * 1000


def sent(session: dict, kind: str) -> list[dict]:
    return [e for _, e in session_events(session, "in", kind)]


def test_the_tuning_reaches_the_session_and_the_service_takes_it(calls, realtime):
    sup = calls(
        OPENAI_TURN_DETECTION="semantic_vad",
        OPENAI_VAD_EAGERNESS="high",
        OPENAI_NOISE_REDUCTION="near_field",
        OPENAI_REASONING_EFFORT="low",
        OPENAI_SPEED="1.2",
        OPENAI_TRANSCRIPTION_KEYWORDS="fibra, router",
    )
    call = sup.place([{"say": 800}, {"silence": 3500}, {"hangup": True}])
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    [update] = sent(session, "session.update")
    audio = update["session"]["audio"]
    assert audio["input"]["turn_detection"]["type"] == "semantic_vad"
    assert audio["input"]["turn_detection"]["eagerness"] == "high"
    assert audio["input"]["noise_reduction"] == {"type": "near_field"}
    assert audio["output"]["speed"] == 1.2 and update["session"]["reasoning"] == {"effort": "low"}
    assert audio["input"]["transcription"]["prompt"] == "Words the caller may use: fibra, router."
    assert session_events(session, "out", "session.updated")
    assert not session_events(session, "out", "error")
    # semantic_vad "high" ends the turn after 250 ms of silence (the simulator's timing)
    assert turn_ms(session) < 800 + 250 + 50  # the default 500 ms would give about 1240
    assert call.segment.header.get(Slot.RESPONSES) == 1


CLINIC = """
    [agents.clinic]
    numbers = ["*"]
    reasoning_effort = "minimal"
    noise_reduction = "far_field"
    speed = 0.9
    [agents.clinic.turns]
    detection = "semantic_vad"
    eagerness = "low"
"""


def test_an_agents_tuning_reaches_its_calls_session(calls, realtime, tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(CLINIC))
    sup = calls(AGENTS_FILE=str(path), OPENAI_NOISE_REDUCTION="near_field", OPENAI_SPEED="1.3")
    call = sup.place([{"say": 800}, {"silence": 3500}, {"hangup": True}])
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    [update] = sent(session, "session.update")
    audio = update["session"]["audio"]
    assert audio["input"]["turn_detection"]["type"] == "semantic_vad"
    assert audio["input"]["turn_detection"]["eagerness"] == "low"
    assert audio["input"]["noise_reduction"] == {"type": "far_field"}  # the agent's, not the env's
    assert audio["output"]["speed"] == 0.9 and update["session"]["reasoning"] == {"effort": "minimal"}
    # "low" lets the caller pause: the turn ends only after 1 s of silence (the simulator's timing)
    assert turn_ms(session) >= 800 + 1000 - 100


def test_a_setting_the_service_refuses_ends_the_call_with_the_failure_prompt(calls, asterisk, realtime):
    sup = calls()
    realtime.fault("refuse_update")
    call = sup.place([{"say": 1000}, {"silence": 20000}])
    assert sup.wait_ended(call, 20) == 0
    [session] = realtime.sessions()  # no new session for a configuration the service refuses
    [(_, error)] = session_events(session, "out", "error")
    assert error["error"]["event_id"] == "cb_open_1"
    record = asterisk.call(call.channel_id)
    assert [p["media"] for p in record["playbacks"]] == ["sound:an-error-has-occurred"]
    assert record["hangup"] - record["placed"] < 5
    assert call.segment.header.get(Slot.END_REASON) == EndReason.REALTIME_FAILED


def test_a_preamble_and_its_answer_reach_the_caller_back_to_back(calls, asterisk, realtime, tmp_path):
    sup = calls(CALL_RECORDS_DIR=str(tmp_path))
    call = sup.place([{"say": 800}, {"silence": 4500}, {"hangup": True}])
    assert sup.wait_ended(call, 20) == 0
    received = packets(asterisk.call(call.channel_id))
    loud_at = [i for i, p in enumerate(received) if p["level"] >= LOUD]
    first, last = loud_at[0], loud_at[-1]
    # 50 frames of preamble and 75 of answer, every frame between them loud: no gap, no overlap
    assert len(loud_at) == 125 and last - first + 1 == 125
    arrivals = [p["arrival"] for p in received[first : last + 1]]
    assert max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) < 0.1
    assert call.segment.header.get(Slot.UNDERRUNS) == 0
    record = record_of(tmp_path, call)
    turns = agent_turns(record)
    assert [t.get("phase") for t in turns] == ["preamble", "answer"]
    assert turns[0]["text"] == "preamble: p1 p2 p3 p4" and turns[1]["text"].startswith("reply to")
    assert not any(t["interrupted"] for t in turns)
    assert record["usage"]["output_audio_tokens"] == (2500 * 8) // 80  # one response.done, counted once


def test_a_barge_in_in_the_preamble_cuts_it_and_takes_the_answer_out(calls, realtime, tmp_path):
    sup = calls(CALL_RECORDS_DIR=str(tmp_path))
    realtime.reply(preamble_ms=3000, think_ms=0)  # the reply is all received before the barge-in
    call = sup.place(
        [{"say": 800}, {"silence": 1700}, {"say": 1000, "hz": 600}, {"silence": 2000}, {"hangup": True}]
    )
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    items = reply_items(session)
    [truncate] = sent(session, "conversation.item.truncate")
    assert truncate["item_id"] == items["commentary"] and 500 <= truncate["audio_end_ms"] <= 2000
    assert [d["item_id"] for d in sent(session, "conversation.item.delete")] == [items["final_answer"]]
    assert [e["item_id"] for _, e in session_events(session, "out", "conversation.item.deleted")] == [
        items["final_answer"]
    ]
    assert not session_events(session, "out", "error")
    preamble, answer = agent_turns(record_of(tmp_path, call))[:2]
    assert preamble["phase"] == "preamble" and preamble["interrupted"]
    assert 0 < len(preamble["heard"]) < len(preamble["text"])
    assert answer["phase"] == "answer" and answer["interrupted"] and answer["heard"] == ""


def test_a_barge_in_in_the_answer_cuts_it_and_keeps_the_preamble_whole(calls, realtime, tmp_path):
    sup = calls(CALL_RECORDS_DIR=str(tmp_path))
    realtime.reply(preamble_ms=500, think_ms=0, reply_ms=3000)
    call = sup.place(
        [{"say": 800}, {"silence": 2200}, {"say": 1000, "hz": 600}, {"silence": 2000}, {"hangup": True}]
    )
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    items = reply_items(session)
    [truncate] = sent(session, "conversation.item.truncate")
    assert truncate["item_id"] == items["final_answer"] and 300 <= truncate["audio_end_ms"] <= 2500
    assert sent(session, "conversation.item.delete") == []
    preamble, answer = agent_turns(record_of(tmp_path, call))[:2]
    assert preamble["phase"] == "preamble" and not preamble["interrupted"]
    assert preamble["heard"] == preamble["text"] == "preamble: p1 p2"
    assert answer["phase"] == "answer" and answer["interrupted"] and answer["heard"] != answer["text"]


AGENTS = """
    [agents.desk]
    numbers = ["*"]
    instructions = "You answer for the front desk."

    [agents.desk.transfer.reception]
    context = "from-internal"
    extension = "200"
    description = "the reception desk"
"""


def test_parallel_tool_calls_each_get_their_output_and_one_reply_comes_after_them(calls, realtime, tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(AGENTS))
    sup = calls(CALL_RECORDS_DIR=str(tmp_path), AGENTS_FILE=str(path))
    for destination in ("billing", "sales"):  # neither is known: each is told why, as a tool result
        requests.get(
            f"{realtime.base}/sim/tool-calls",
            params={
                "name": "transfer_call",
                "arguments": json.dumps({"destination": destination}),
                "after_turn": 1,
            },
            timeout=5,
        ).raise_for_status()
    call = sup.place([{"say": 800}, {"silence": 6000}, {"hangup": True}])
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    calls_made = session["tools"]["calls"]
    assert len(calls_made) == 2
    # One response: the preamble, then both calls; their outputs, then one response.create.
    [first] = [e for _, e in session_events(session, "out", "response.done")][:1]
    assert [o["type"] for o in first["response"]["output"]] == ["message", "function_call", "function_call"]
    sent_kinds = [
        (e["type"], (e.get("item") or {}).get("call_id"))
        for _, direction, e in ((t, d, e) for t, d, e in session["events"])
        if direction == "in" and e["type"] in ("conversation.item.create", "response.create")
    ]
    assert sent_kinds == [("conversation.item.create", c["call_id"]) for c in calls_made] + [
        ("response.create", None)
    ]
    assert [o["call_id"] for o in session["tools"]["outputs"]] == [c["call_id"] for c in calls_made]
    turns = agent_turns(record_of(tmp_path, call))
    assert turns[0]["phase"] == "preamble"
    assert turns[-1]["text"].startswith("after tool transfer_call: after tool transfer_call: ")
    assert len([t for t in turns if t["text"].startswith("after tool")]) == 1
