"""Replies in phases (gpt-realtime-2.x: a spoken preamble, then the answer, as items of one
response), parallel tool calls and a refused opening, driven event by event through the
conversation (call_worker/conversation.py) with a real downlink ring: what is sent to the
service, what the transcript keeps. The same paths through a worker and the simulated
server are tests/test_voice_service.py's."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from call_worker.conversation import Conversation
from call_worker.playback import Playback
from call_worker.realtime_adapter import RealtimeAdapter
from call_worker.tools import ToolBox, tools_for
from call_worker.wake import Waker
from callbridge import agents
from callbridge import config as cfg
from shm_ring import ByteRing, CallHeader
from shm_ring.header import HEADER_BYTES
from shm_ring.ring import region_size

RING = 64000  # 8 s of audio: a reply fits whole, as in a worker's downlink ring


class Link:
    """What the conversation sends, as the service would receive it."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.closed = None

    def send_text(self, text: str) -> bool:
        self.sent.append(json.loads(text))
        return True

    def close(self) -> None:
        pass

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]


def _settings(**env: str):
    base = {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_USERNAME": "u",
        "ASTERISK_PASSWORD": "p",
        "OPENAI_API_KEY": "sk-unit",
    }
    return cfg.load(env_file=None, environ=base | env).settings


def _ring() -> ByteRing:
    return ByteRing(memoryview(bytearray(region_size(RING))), RING)


@pytest.fixture
def conv():
    settings = _settings()
    fatal: list[str] = []
    toolbox = ToolBox(agents.default_agent(settings), lambda action: None, lambda kind, detail: None)
    conversation = Conversation(
        settings,
        CallHeader(memoryview(bytearray(HEADER_BYTES))),
        _ring(),
        Playback(_ring()),
        RealtimeAdapter(settings, tools_for(agents.default_agent(settings))),
        Waker(),
        threading.Event(),
        fatal.append,
        toolbox=toolbox,
    )
    conversation.link = Link()
    conversation._opening_id = "cb_open_1"  # what _install() keeps of the session's opening
    conversation.updates.opened("cb_open_1")
    conversation.fatal = fatal
    return conversation


def server(conv: Conversation, **event) -> None:
    conv._dispatch(json.dumps(event))


def item_added(conv, response: str, item: str, phase: str | None) -> None:
    message = {"id": item, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    if phase is not None:
        message["phase"] = phase
    server(conv, type="response.output_item.added", response_id=response, output_index=0, item=message)


def audio(conv, response: str, item: str, ms: int) -> None:
    delta = base64.b64encode(b"\x55" * (8 * ms)).decode()
    server(conv, type="response.output_audio.delta", response_id=response, item_id=item, delta=delta)


def transcript_done(conv, response: str, item: str, text: str) -> None:
    server(
        conv,
        type="response.output_audio_transcript.done",
        response_id=response,
        item_id=item,
        transcript=text,
    )


def done(conv, response: str, *items: str, status: str = "completed") -> None:
    output = [{"id": item, "type": "message", "role": "assistant"} for item in items]
    usage = {"input_tokens": 100, "output_tokens": 50, "output_token_details": {"audio_tokens": 40}}
    server(
        conv,
        type="response.done",
        response={"id": response, "status": status, "output": output, "usage": usage},
    )


def phased_reply(conv, response="resp_1", preamble_ms=1000, answer_ms=2000, finished=True) -> None:
    """A two-item reply: "Let me check that." (1 s) and the answer (2 s)."""
    server(conv, type="response.created", response={"id": response})
    item_added(conv, response, "item_pre", "commentary")
    audio(conv, response, "item_pre", preamble_ms)
    transcript_done(conv, response, "item_pre", "Let me check that.")
    item_added(conv, response, "item_ans", "final_answer")
    audio(conv, response, "item_ans", answer_ms)
    if finished:
        transcript_done(conv, response, "item_ans", "Your order ships on Monday morning.")
        done(conv, response, "item_pre", "item_ans")


def play(conv: Conversation, ms: int) -> None:
    """The media loop sends `ms` of the downlink ring to the caller."""
    assert conv.playback.ring.read(8 * ms) == b"\x55" * (8 * ms)


def barge_in(conv: Conversation) -> None:
    server(conv, type="input_audio_buffer.speech_started", audio_start_ms=0, item_id="item_caller")


def agent_entries(conv: Conversation) -> list[dict]:
    return [e for e in conv.transcript.entries if e["role"] == "agent"]


def test_the_adapter_reads_each_message_items_phase_and_leaves_function_calls_to_their_own_events():
    adapter = RealtimeAdapter(_settings())

    def added(item: dict):
        return adapter.events(
            json.dumps({"type": "response.output_item.added", "response_id": "r", "item": item})
        )

    assert [e.phase for e in added({"id": "a", "type": "message", "phase": "commentary"})] == ["preamble"]
    assert [e.phase for e in added({"id": "b", "type": "message", "phase": "final_answer"})] == ["answer"]
    assert [e.phase for e in added({"id": "c", "type": "message"})] == [""]  # earlier models
    assert [e.phase for e in added({"id": "d", "type": "message", "phase": "something_new"})] == [""]
    assert added({"id": "e", "type": "function_call", "call_id": "x"}) == []
    done_event = {
        "type": "response.done",
        "response": {
            "id": "r",
            "output": [{"id": "a", "type": "message"}, {"id": "f", "type": "function_call"}, {"id": "b"}],
        },
    }
    assert adapter.events(json.dumps(done_event))[0].item_ids == ("a", "b")


def test_a_two_item_reply_lies_back_to_back_in_the_ring_and_each_turn_keeps_its_phase(conv):
    phased_reply(conv)
    pre, ans = conv.playback.audio_of("item_pre"), conv.playback.audio_of("item_ans")
    assert (pre.start, pre.end, ans.start, ans.end) == (0, 8000, 8000, 24000)  # no gap, no overlap
    play(conv, 3000)
    entries = agent_entries(conv)
    assert [(e["phase"], e["heard"]) for e in entries] == [
        ("preamble", "Let me check that."),
        ("answer", "Your order ships on Monday morning."),
    ]
    assert conv.usage["output_tokens"] == 50  # one response.done: usage counted once for both items
    assert "conversation.item.delete" not in conv.link.types()


def test_a_barge_in_in_the_preamble_truncates_it_and_takes_the_answer_out(conv):
    phased_reply(conv)
    play(conv, 600)
    barge_in(conv)
    truncates = [e for e in conv.link.sent if e["type"] == "conversation.item.truncate"]
    assert [(t["item_id"], t["audio_end_ms"]) for t in truncates] == [("item_pre", 600)]
    deletes = [e["item_id"] for e in conv.link.sent if e["type"] == "conversation.item.delete"]
    assert deletes == ["item_ans"]
    assert "response.cancel" not in conv.link.types()  # it was done: nothing to cancel
    pre, ans = agent_entries(conv)
    assert pre["interrupted"] and pre["heard"] == "Let me"  # 600 of 1000 ms: the words that fit
    assert ans["interrupted"] and ans["heard"] == "" and ans["text"].startswith("Your order")
    assert conv.playback.ring.fill() == 0  # the next frame is silence


def test_a_barge_in_in_the_answer_truncates_it_and_keeps_the_preamble_whole(conv):
    phased_reply(conv)
    play(conv, 1500)
    barge_in(conv)
    truncates = [e for e in conv.link.sent if e["type"] == "conversation.item.truncate"]
    assert [(t["item_id"], t["audio_end_ms"]) for t in truncates] == [("item_ans", 500)]
    assert "conversation.item.delete" not in conv.link.types()
    pre, ans = agent_entries(conv)
    assert not pre["interrupted"] and pre["heard"] == "Let me check that."
    assert ans["interrupted"] and ans["heard"] == "Your"  # 500 of 2000 ms: "Your ord", to a word


def test_a_reply_cut_while_still_arriving_drops_its_later_items_at_its_done(conv):
    server(conv, type="response.created", response={"id": "resp_1"})
    item_added(conv, "resp_1", "item_pre", "commentary")
    audio(conv, "resp_1", "item_pre", 1000)
    play(conv, 400)
    barge_in(conv)
    assert conv.link.types()[-2:] == ["response.cancel", "conversation.item.truncate"]
    # The answer began before the cancel reached the service: its audio is never played.
    item_added(conv, "resp_1", "item_ans", "final_answer")
    audio(conv, "resp_1", "item_ans", 500)
    assert conv.playback.ring.fill() == 0
    assert "conversation.item.delete" not in conv.link.types()  # not while the reply is open
    done(conv, "resp_1", "item_pre", "item_ans", status="cancelled")
    assert [e["item_id"] for e in conv.link.sent if e["type"] == "conversation.item.delete"] == ["item_ans"]
    transcript_done(conv, "resp_1", "item_ans", "Your order ships on Monday.")
    entries = {e["item_id"]: e for e in agent_entries(conv)}
    assert entries["item_ans"]["heard"] == "" and entries["item_ans"]["phase"] == "answer"


def test_parallel_tool_calls_each_get_their_output_and_one_reply_after_the_response(conv):
    server(conv, type="response.created", response={"id": "resp_1"})
    item_added(conv, "resp_1", "item_pre", "commentary")
    audio(conv, "resp_1", "item_pre", 800)
    for call_id in ("call_a", "call_b"):
        server(
            conv,
            type="response.function_call_arguments.done",
            response_id="resp_1",
            call_id=call_id,
            name="transfer_call",
            arguments=json.dumps({"destination": "nowhere"}),
        )
    assert "conversation.item.create" not in conv.link.types()  # the reply is still open
    done(conv, "resp_1", "item_pre")
    sent = [e for e in conv.link.sent if e["type"] in ("conversation.item.create", "response.create")]
    assert [(e["type"], e.get("item", {}).get("call_id")) for e in sent] == [
        ("conversation.item.create", "call_a"),
        ("conversation.item.create", "call_b"),
        ("response.create", None),
    ]
    server(conv, type="response.created", response={"id": "resp_2"})
    done(conv, "resp_2")
    assert conv.link.types().count("response.create") == 1


def test_a_tool_call_after_its_reply_is_done_gets_its_reply_at_once(conv):
    server(
        conv,
        type="response.function_call_arguments.done",
        response_id="resp_gone",
        call_id="call_a",
        name="transfer_call",
        arguments="{}",
    )
    assert conv.link.types() == ["conversation.item.create", "response.create"]


def test_an_error_naming_the_opening_update_fails_the_call_with_its_reason(conv):
    error = {
        "type": "invalid_request_error",
        "code": "unsupported_parameter",
        "message": "The 'reasoning' parameter is not supported with the model 'gpt-realtime'.",
        "event_id": "cb_open_1",
    }
    server(conv, type="error", error=error)
    assert len(conv.fatal) == 1
    assert "refused the session settings" in conv.fatal[0] and "'reasoning'" in conv.fatal[0]
    assert conv.link is None


def test_an_error_naming_another_event_leaves_the_session_alone(conv):
    server(conv, type="error", error={"code": "invalid_value", "message": "no", "event_id": "evt_other"})
    assert conv.fatal == [] and conv.link is not None


def tool_call(conv, response: str, call_id: str, destination: str = "nowhere") -> None:
    server(
        conv,
        type="response.function_call_arguments.done",
        response_id=response,
        call_id=call_id,
        name="transfer_call",
        arguments=json.dumps({"destination": destination}),
    )


def test_a_barge_in_in_a_preamble_also_takes_out_a_later_reply_already_queued(conv):
    # Reply 1: a preamble and a tool call; the tool's reply (2) arrives whole, faster than
    # real time, while the preamble still plays. The caller speaks during the preamble.
    server(conv, type="response.created", response={"id": "resp_1"})
    item_added(conv, "resp_1", "item_pre", "commentary")
    audio(conv, "resp_1", "item_pre", 1000)
    transcript_done(conv, "resp_1", "item_pre", "Let me check that.")
    tool_call(conv, "resp_1", "call_a")
    done(conv, "resp_1", "item_pre")
    assert conv.link.types()[-1] == "response.create"
    server(conv, type="response.created", response={"id": "resp_2"})
    item_added(conv, "resp_2", "item_ans", "final_answer")
    audio(conv, "resp_2", "item_ans", 2000)
    transcript_done(conv, "resp_2", "item_ans", "That line is up since Monday.")
    done(conv, "resp_2", "item_ans")
    play(conv, 500)
    barge_in(conv)
    assert [
        (e["item_id"], e["audio_end_ms"]) for e in conv.link.sent if e["type"] == "conversation.item.truncate"
    ] == [("item_pre", 500)]
    assert [e["item_id"] for e in conv.link.sent if e["type"] == "conversation.item.delete"] == ["item_ans"]
    pre, ans = agent_entries(conv)
    assert pre["heard"] == "Let me" and ans["heard"] == "" and ans["interrupted"]


def test_a_cut_reply_that_called_a_tool_asks_for_no_reply_the_caller_has_the_turn(conv):
    server(conv, type="response.created", response={"id": "resp_1"})
    item_added(conv, "resp_1", "item_pre", "commentary")
    audio(conv, "resp_1", "item_pre", 1000)
    tool_call(conv, "resp_1", "call_a")
    play(conv, 300)
    barge_in(conv)
    done(conv, "resp_1", "item_pre", status="cancelled")
    types = conv.link.types()
    assert "conversation.item.create" in types  # the output still goes: the next reply sees it
    assert "response.create" not in types  # the service answers the caller's turn itself


def test_a_goodbye_during_a_reply_with_a_tool_call_is_not_taken_over_by_the_tools_reply(conv):
    server(conv, type="response.created", response={"id": "resp_1"})
    item_added(conv, "resp_1", "item_pre", "commentary")
    audio(conv, "resp_1", "item_pre", 1000)
    tool_call(conv, "resp_1", "call_a")
    conv.say_goodbye("Say goodbye.")
    conv._start_goodbye()
    done(conv, "resp_1", "item_pre", status="cancelled")
    asks = [e for e in conv.link.sent if e["type"] == "response.create"]
    assert asks == []  # the goodbye asks once its quiet update is acknowledged, and only it
    server(conv, type="session.updated", session={})  # the opening update's acknowledgement
    server(conv, type="session.updated", session={})  # the goodbye's quiet update's
    asks = [e for e in conv.link.sent if e["type"] == "response.create"]
    assert len(asks) == 1 and asks[0]["response"]["metadata"]["purpose"] == "goodbye"


def test_an_answer_cut_before_its_audio_stays_unheard_when_the_session_is_lost_before_its_done(conv):
    server(conv, type="response.created", response={"id": "resp_1"})
    item_added(conv, "resp_1", "item_pre", "commentary")
    audio(conv, "resp_1", "item_pre", 1000)
    item_added(conv, "resp_1", "item_ans", "final_answer")
    server(
        conv,
        type="response.output_audio_transcript.delta",
        response_id="resp_1",
        item_id="item_ans",
        delta="Your order ",
    )
    play(conv, 400)
    barge_in(conv)
    conv.transcript.session_lost()  # what _lost() does first, before the history is re-sent
    history = conv.transcript.history()
    assert ("agent", "Your order") not in history
    entries = {e["item_id"]: e for e in agent_entries(conv)}
    assert entries["item_ans"]["heard"] == "" and entries["item_ans"]["interrupted"]
