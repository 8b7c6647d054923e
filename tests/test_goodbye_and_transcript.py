"""The worker's goodbye state machine (call_worker/goodbye.py) and its transcript keeping
(call_worker/transcript.py), driven event by event."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from call_worker import realtime_protocol as proto
from call_worker.conversation import Conversation
from call_worker.goodbye import Goodbye, GoodbyeState
from call_worker.playback import Playback, Truncation
from call_worker.realtime_adapter import RealtimeAdapter
from call_worker.transcript import Transcript
from call_worker.wake import Waker
from callbridge import config as cfg
from shm_ring import ByteRing, CallHeader
from shm_ring.header import HEADER_BYTES
from shm_ring.ring import region_size


@pytest.fixture
def goodbye():
    env = {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_USERNAME": "u",
        "ASTERISK_PASSWORD": "p",
        "OPENAI_API_KEY": "sk-unit",
    }
    settings = cfg.load(env_file=None, environ=env).settings
    adapter = RealtimeAdapter(settings)
    sent: list[dict] = []

    def send(texts: list[str]) -> bool:
        sent.extend(json.loads(text) for text in texts)
        return True

    machine = Goodbye(
        lambda event_id: send(adapter.quiet(event_id)),
        lambda instructions, event_id: send(adapter.respond(instructions, "goodbye", event_id)),
    )
    machine.sent = sent
    machine.settings = settings
    return machine


def _kinds(goodbye) -> list[str]:
    return [e["type"] for e in goodbye.sent]


def test_automatic_responses_go_off_before_the_goodbye_is_asked_for(goodbye):
    goodbye.begin("say bye")
    assert _kinds(goodbye) == ["session.update"]
    detection = goodbye.sent[0]["session"]["audio"]["input"]["turn_detection"]
    assert detection["create_response"] is False and detection["interrupt_response"] is False
    goodbye.on_session_updated(response_active=False, event_id=goodbye.update_id)
    assert _kinds(goodbye) == ["session.update", "response.create"]
    goodbye.on_response_created("resp_1")  # no metadata needed: nothing else can create one
    goodbye.on_response_done("resp_1", response_active=False)
    assert goodbye.state is GoodbyeState.DONE and goodbye.done.is_set()


def test_a_reply_created_just_before_the_update_is_not_taken_for_the_goodbye(goodbye):
    goodbye.begin("say bye")
    goodbye.on_response_created("resp_vad")  # VAD made it before the update arrived
    goodbye.on_session_updated(response_active=True, event_id=goodbye.update_id)
    assert goodbye.state is GoodbyeState.WAITING and _kinds(goodbye) == ["session.update"]
    goodbye.on_response_done("resp_vad", response_active=False)
    assert _kinds(goodbye)[-1] == "response.create" and not goodbye.done.is_set()
    goodbye.on_response_created("resp_bye")
    goodbye.on_response_done("resp_bye", response_active=False)
    assert goodbye.done.is_set()


def test_a_session_lost_before_the_goodbye_is_asked_quiets_the_new_one_and_asks(goodbye):
    goodbye.begin("say bye")
    goodbye.on_response_created("resp_vad")
    goodbye.on_session_updated(response_active=True, event_id=goodbye.update_id)  # WAITING for resp_vad
    assert goodbye.session_lost() is True
    goodbye.on_response_done("resp_vad", response_active=False)  # a stale id changes nothing
    assert _kinds(goodbye) == ["session.update"] and not goodbye.done.is_set()
    goodbye.session_opened()
    assert _kinds(goodbye) == ["session.update", "session.update"]
    goodbye.on_session_updated(response_active=False, event_id=goodbye.update_id)
    goodbye.on_response_created("resp_2")
    goodbye.on_response_done("resp_2", response_active=False)
    assert _kinds(goodbye)[-1] == "response.create" and goodbye.done.is_set()


@pytest.mark.parametrize("received", [False, True])
def test_a_session_lost_once_the_goodbye_is_asked_ends_it_without_a_new_session(goodbye, received):
    """A new session would answer the caller again: the goodbye ends with what arrived."""
    goodbye.begin("say bye")
    goodbye.on_session_updated(response_active=False, event_id=goodbye.update_id)
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
    goodbye.on_error(response_active=False, event_id=goodbye.update_id)
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


def test_an_empty_final_transcript_keeps_the_deltas():
    """A cancelled reply may end with an empty transcript.done: its deltas are its text."""
    transcript = Transcript()
    for word in ("Good ", "morning, ", "how "):
        transcript.agent_delta("item_d", word)
    entry = transcript.agent_done("item_d", "", interrupted=True)
    assert entry["text"] == "Good morning, how" and entry["heard"] == "Good morning, how"
    transcript.response_ended(["item_d"])
    assert transcript.history() == [("agent", "Good morning, how")]


# --- which session.updated is the goodbye's, through Conversation's handlers


class _Link:
    """What Conversation sends, as the server would receive it."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.closed = None

    def send_text(self, text: str) -> bool:
        self.sent.append(json.loads(text))
        return True


def _ring() -> ByteRing:
    return ByteRing(memoryview(bytearray(region_size(16000))), 16000)


@pytest.fixture(params=["ga", "beta"])
def conversation(goodbye, request):
    settings = replace(goodbye.settings, openai_api_shape=request.param)
    header = CallHeader(memoryview(bytearray(HEADER_BYTES)))
    conv = Conversation(
        settings,
        header,
        _ring(),
        Playback(_ring()),
        RealtimeAdapter(settings),
        Waker(),
        threading.Event(),
        print,
    )
    conv.link = _Link()
    conv.updates.opened("cb_open_1")  # what _install() does with the session's opening id
    return conv


def _server(conv: Conversation, event: dict) -> None:
    conv._dispatch(json.dumps(event))


def _echo(conv: Conversation, update: dict, echoes: bool) -> dict:
    """session.updated as a server sends it: the session it now has, or (some servers) {}."""
    return {"type": "session.updated", "session": update["session"] if echoes else {}}


def _reconnected(conv: Conversation) -> dict:
    """What _lost and _install do around a new connection; returns the opening update sent."""
    conv.goodbye.session_lost()
    opening = proto.session_update(conv.settings) | {"event_id": "cb_open_2"}
    conv.link.sent.append(opening)
    conv.updates.opened("cb_open_2")
    conv.goodbye.session_opened()
    return opening


@pytest.mark.parametrize("echoes", [True, False], ids=["echoes-session", "echoes-nothing"])
def test_after_a_reconnect_the_opening_acknowledgement_is_not_the_goodbyes(conversation, echoes):
    conv = conversation
    conv.say_goodbye("say bye")
    conv._start_goodbye()  # quiet update on the first connection, lost before its answer
    opening = _reconnected(conv)
    quiet = conv.link.sent[-1]
    assert quiet["type"] == "session.update" and quiet["event_id"] == conv.goodbye.update_id
    _server(conv, _echo(conv, opening, echoes))  # answers the opening update
    assert conv.goodbye.state is GoodbyeState.QUIETING
    assert "response.create" not in [e["type"] for e in conv.link.sent]
    _server(conv, {"type": "response.created", "response": {"id": "resp_vad"}})  # VAD's, before ours
    _server(conv, _echo(conv, quiet, echoes))  # answers the goodbye's update
    assert conv.goodbye.state is GoodbyeState.WAITING and conv.goodbye.response_id is None
    _server(conv, {"type": "response.done", "response": {"id": "resp_vad", "output": []}})
    assert conv.link.sent[-1]["type"] == "response.create" and conv.goodbye.state is GoodbyeState.ASKED


UNRELATED = {"type": "invalid_request_error", "code": "invalid_value", "message": "no"}


def test_an_error_caused_by_another_event_is_not_the_quiet_updates_refusal(conversation):
    conv = conversation
    conv.say_goodbye("say bye")
    conv._start_goodbye()
    _server(conv, {"type": "error", "error": UNRELATED})  # names no event
    _server(conv, {"type": "error", "error": UNRELATED | {"event_id": "cb_open_1"}})  # the opening's
    assert conv.goodbye.state is GoodbyeState.QUIETING
    _server(conv, {"type": "session.updated", "session": {}})  # the opening was refused: this is ours
    assert conv.goodbye.state is GoodbyeState.ASKED


def test_the_quiet_updates_refusal_gets_the_goodbye_asked_anyway(conversation):
    conv = conversation
    conv.say_goodbye("say bye")
    conv._start_goodbye()
    _server(conv, {"type": "error", "error": UNRELATED | {"event_id": conv.goodbye.update_id}})
    assert conv.goodbye.state is GoodbyeState.ASKED and conv.link.sent[-1]["type"] == "response.create"


def test_a_refused_goodbye_request_waits_for_the_active_reply_then_asks_again(goodbye):
    """response.create refused (conversation_already_has_active_response, named by its
    event_id): ask again once that reply is done, instead of waiting out GOODBYE_LIMIT."""
    goodbye.begin("say bye")
    goodbye.on_session_updated(response_active=False, event_id=goodbye.update_id)
    ask = goodbye.sent[-1]
    assert ask["type"] == "response.create" and ask["event_id"]
    goodbye.on_error(response_active=True, event_id="cb_other")  # not ours: nothing changes
    assert goodbye.state is GoodbyeState.ASKED
    goodbye.on_error(response_active=True, event_id=ask["event_id"])
    assert goodbye.state is GoodbyeState.WAITING
    goodbye.on_response_created("resp_vad")  # (not taken for ours)
    goodbye.on_response_done("resp_vad", response_active=False)
    again = goodbye.sent[-1]
    assert again["type"] == "response.create" and again["event_id"] != ask["event_id"]
    assert goodbye.state is GoodbyeState.ASKED


def test_a_goodbye_request_refused_with_nothing_active_ends_the_goodbye(goodbye):
    goodbye.begin("say bye")
    goodbye.on_session_updated(response_active=False, event_id=goodbye.update_id)
    goodbye.on_error(response_active=False, event_id=goodbye.sent[-1]["event_id"])
    assert goodbye.state is GoodbyeState.DONE and goodbye.done.is_set()  # the call ends now
