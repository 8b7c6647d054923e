"""The worker's goodbye state machine (call_worker/goodbye.py) and its transcript keeping
(call_worker/transcript.py), driven event by event."""

from __future__ import annotations

from dataclasses import replace

import pytest

from call_worker import realtime_protocol as proto
from call_worker.goodbye import Goodbye, GoodbyeState
from call_worker.playback import Truncation
from call_worker.transcript import Transcript
from callbridge import config as cfg


@pytest.fixture
def goodbye():
    env = {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_USERNAME": "u",
        "ASTERISK_PASSWORD": "p",
        "OPENAI_API_KEY": "sk-unit",
    }
    sent: list[dict] = []
    machine = Goodbye(cfg.load(env_file=None, environ=env).settings, lambda e: sent.append(e) or True)
    machine.sent = sent
    return machine


def _kinds(goodbye) -> list[str]:
    return [e["type"] for e in goodbye.sent]


def test_automatic_responses_go_off_before_the_goodbye_is_asked_for(goodbye):
    goodbye.begin("say bye")
    assert _kinds(goodbye) == ["session.update"]
    detection = goodbye.sent[0]["session"]["audio"]["input"]["turn_detection"]
    assert detection["create_response"] is False and detection["interrupt_response"] is False
    goodbye.on_session_updated(response_active=False)
    assert _kinds(goodbye) == ["session.update", "response.create"]
    goodbye.on_response_created("resp_1")  # no metadata needed: nothing else can create one
    goodbye.on_response_done("resp_1", response_active=False)
    assert goodbye.state is GoodbyeState.DONE and goodbye.done.is_set()


def test_a_reply_created_just_before_the_update_is_not_taken_for_the_goodbye(goodbye):
    goodbye.begin("say bye")
    goodbye.on_response_created("resp_vad")  # VAD made it before the update arrived
    goodbye.on_session_updated(response_active=True)
    assert goodbye.state is GoodbyeState.WAITING and _kinds(goodbye) == ["session.update"]
    goodbye.on_response_done("resp_vad", response_active=False)
    assert _kinds(goodbye)[-1] == "response.create" and not goodbye.done.is_set()
    goodbye.on_response_created("resp_bye")
    goodbye.on_response_done("resp_bye", response_active=False)
    assert goodbye.done.is_set()


def test_a_session_lost_before_the_goodbye_is_asked_quiets_the_new_one_and_asks(goodbye):
    goodbye.begin("say bye")
    goodbye.on_response_created("resp_vad")
    goodbye.on_session_updated(response_active=True)  # WAITING for resp_vad
    assert goodbye.session_lost() is True
    goodbye.on_response_done("resp_vad", response_active=False)  # a stale id changes nothing
    assert _kinds(goodbye) == ["session.update"] and not goodbye.done.is_set()
    goodbye.session_opened()
    assert _kinds(goodbye) == ["session.update", "session.update"]
    goodbye.on_session_updated(response_active=False)
    goodbye.on_response_created("resp_2")
    goodbye.on_response_done("resp_2", response_active=False)
    assert _kinds(goodbye)[-1] == "response.create" and goodbye.done.is_set()


@pytest.mark.parametrize("received", [False, True])
def test_a_session_lost_once_the_goodbye_is_asked_ends_it_without_a_new_session(goodbye, received):
    """A new session would answer the caller again: the goodbye ends with what arrived."""
    goodbye.begin("say bye")
    goodbye.on_session_updated(response_active=False)
    if received:
        goodbye.on_response_created("resp_1")
    assert goodbye.session_lost() is False
    assert goodbye.state is GoodbyeState.DONE and goodbye.done.is_set()
    goodbye.session_opened()
    assert _kinds(goodbye) == ["session.update", "response.create"]  # nothing asked again


def test_without_a_goodbye_a_lost_session_is_replaced(goodbye):
    assert goodbye.session_lost() is True and goodbye.state is GoodbyeState.IDLE


def test_one_goodbye_per_call(goodbye):
    goodbye.begin("first")
    goodbye.begin("second")
    assert _kinds(goodbye) == ["session.update"]


def test_a_refused_update_still_gets_the_goodbye_asked(goodbye):
    goodbye.begin("say bye")
    goodbye.on_error(response_active=False)
    assert _kinds(goodbye) == ["session.update", "response.create"]


def test_an_interrupted_turn_keeps_its_text_and_what_was_heard_in_either_order():
    text = "reply to 900 ms of speech: w1 w2 w3 w4 w5 w6 w7 w8"
    after = Transcript()
    after.agent_done("item_a", text, interrupted=False)
    after.truncated(Truncation("item_a", audio_end_ms=1100, item_audio_ms=2000))
    before = Transcript()
    before.truncated(Truncation("item_a", audio_end_ms=1100, item_audio_ms=2000))
    before.agent_done("item_a", text, interrupted=False)
    for transcript in (after, before):
        (entry,) = transcript.entries
        assert entry["text"] == text and entry["interrupted"] is True
        assert entry["heard"] == "reply to 900 ms of speech:"
        assert transcript.history() == [("agent", "reply to 900 ms of speech:")]


def test_a_reply_cancelled_before_its_transcript_keeps_its_deltas():
    transcript = Transcript()
    transcript.caller("hello")
    for word in ("Good ", "morning, ", "how "):
        transcript.agent_delta("item_b", word)
    transcript.truncated(Truncation("item_b", audio_end_ms=700, item_audio_ms=900))
    transcript.response_ended(["item_b"])
    assert transcript.entries[1]["text"] == "Good morning, how"
    assert transcript.history() == [("caller", "hello"), ("agent", "Good morning,")]


def test_a_whole_turn_is_heard_whole():
    transcript = Transcript()
    transcript.agent_done("item_c", "All done.", interrupted=False)
    transcript.response_ended(["item_c"])
    assert transcript.entries[0]["heard"] == "All done." and transcript.entries[0]["interrupted"] is False


@pytest.mark.parametrize("shape", ["ga", "beta"])
def test_the_goodbyes_acknowledgement_is_told_from_the_opening_one(goodbye, shape):
    """After a reconnect the opening session.update (responses on) is acknowledged first:
    only the acknowledgement of the goodbye's own update may let it ask."""
    settings = replace(goodbye.settings, openai_api_shape=shape)
    beta = shape == "beta"
    opening = proto.session_update(settings)["session"]
    quiet = proto.session_update_no_responses(settings)["session"]
    assert proto.creates_responses(opening, beta) is True
    assert proto.creates_responses(quiet, beta) is False
    assert proto.creates_responses({}, beta) is None  # a server that echoes nothing


def test_an_empty_final_transcript_keeps_the_deltas():
    """A cancelled reply may end with an empty transcript.done: its deltas are its text."""
    transcript = Transcript()
    for word in ("Good ", "morning, ", "how "):
        transcript.agent_delta("item_d", word)
    entry = transcript.agent_done("item_d", "", interrupted=True)
    assert entry["text"] == "Good morning, how" and entry["heard"] == "Good morning, how"
    transcript.response_ended(["item_d"])
    assert transcript.history() == [("agent", "Good morning, how")]
