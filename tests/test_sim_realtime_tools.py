"""The simulated Realtime server's function calling (simulators/realtime_tools.py), seen by a
raw WebSocket client: a scripted call comes in the real server's event sequence, a tool
not offered is never called, and a function_call_output gets a reply that says it answered."""

from __future__ import annotations

import base64
import json
import time
from contextlib import contextmanager

import pytest
import requests
from harness import API_KEY
from websockets.sync.client import connect

from simulators import g711

TRANSFER = {
    "type": "function",
    "name": "transfer_call",
    "description": "Hand the caller to a person.",
    "parameters": {
        "type": "object",
        "properties": {"destination": {"type": "string"}},
        "required": ["destination"],
    },
}
END_CALL = {"type": "function", "name": "end_call", "description": "End the call.", "parameters": {}}


@pytest.fixture
def sim(realtime):
    realtime.reset()
    yield realtime
    realtime.reset()


def _script(sim, name: str, arguments: dict, after_turn: int, count: int = 1) -> None:
    params = {"name": name, "arguments": json.dumps(arguments), "after_turn": after_turn, "count": count}
    reply = requests.get(f"{sim.base}/sim/tool-calls", params=params, timeout=5)
    assert reply.status_code == 200, reply.text


@contextmanager
def client_of(sim, tools: list[dict] | None):
    """A configured session; `tools` None offers none."""
    with connect(
        f"ws://127.0.0.1:{sim.port}/v1/realtime?model=gpt-realtime",
        additional_headers={"Authorization": f"Bearer {API_KEY}"},
    ) as ws:
        yield Client(ws, tools)


class Client:
    def __init__(self, ws, tools: list[dict] | None) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.until("session.created")
        session = {
            "type": "realtime",
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}},
                "output": {"format": {"type": "audio/pcmu"}},
            },
        }
        if tools is not None:
            session.update(tools=tools, tool_choice="auto")
        self.send({"type": "session.update", "session": session})
        self.until("session.updated")

    def send(self, event: dict) -> None:
        self.ws.send(json.dumps(event))

    def until(self, kind: str, timeout: float = 10.0) -> list[dict]:
        """Every event received up to and including the first of `kind`."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            event = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            self.events.append(event)
            seen.append(event)
            if event["type"] == kind:
                return seen


def _tail_types(events: list[dict]) -> list[str]:
    """The event types from the audio's end on (the deltas before it are many)."""
    types = [e["type"] for e in events]
    return types[types.index("response.output_audio.done") :]


def test_a_scripted_call_ends_the_greeting_and_its_output_gets_a_reply(sim):
    _script(sim, "transfer_call", {"destination": "reception"}, after_turn=0)
    with client_of(sim, [TRANSFER, END_CALL]) as client:
        client.send({"type": "response.create", "response": {"instructions": "Greet the caller."}})
        events = client.until("response.done")
        assert _tail_types(events) == [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.output_item.done",  # the message item's
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.done",
        ]
        by_type = {e["type"]: e for e in events}
        response_id = by_type["response.created"]["response"]["id"]
        added = [e for e in events if e["type"] == "response.output_item.added"][-1]
        assert added["item"]["type"] == "function_call" and added["item"]["status"] == "in_progress"
        assert added["item"]["arguments"] == "" and added["output_index"] == 1
        done = by_type["response.function_call_arguments.done"]
        call_id, item_id = done["call_id"], done["item_id"]
        assert done["name"] == "transfer_call" and json.loads(done["arguments"]) == {
            "destination": "reception"
        }
        assert done["response_id"] == response_id and done["output_index"] == 1
        assert added["item"]["id"] == item_id and added["item"]["call_id"] == call_id
        deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
        assert "".join(d["delta"] for d in deltas) == done["arguments"]
        assert all(d["call_id"] == call_id and d["item_id"] == item_id for d in deltas)
        item_done = [e for e in events if e["type"] == "response.output_item.done"][-1]["item"]
        assert item_done["status"] == "completed" and item_done["arguments"] == done["arguments"]
        response = by_type["response.done"]["response"]
        assert response["status"] == "completed"
        assert [o["type"] for o in response["output"]] == ["message", "function_call"]
        assert (
            response["output"][1]["call_id"] == call_id and response["output"][1]["name"] == "transfer_call"
        )

        output = {"type": "function_call_output", "call_id": call_id, "output": '{"result": "busy"}'}
        client.send({"type": "conversation.item.create", "item": output})
        added = client.until("conversation.item.added")[-1]
        assert added["item"]["type"] == "function_call_output" and added["item"]["call_id"] == call_id
        client.send({"type": "response.create"})
        events = client.until("response.done")
        transcript = [e for e in events if e["type"] == "response.output_audio_transcript.done"][0]
        assert transcript["transcript"].startswith("after tool transfer_call: ")
        assert [o["type"] for o in events[-1]["response"]["output"]] == ["message"]  # used once
    record = requests.get(f"{sim.base}/sim/sessions", timeout=5).json()[-1]
    assert record["tools"]["offered"] == ["transfer_call", "end_call"]
    assert [c["call_id"] for c in record["tools"]["calls"]] == [call_id]
    assert record["tools"]["outputs"] == [
        {"call_id": call_id, "name": "transfer_call", "output": '{"result": "busy"}'}
    ]


def test_a_tool_not_offered_is_not_called_and_the_record_says_why(sim):
    _script(sim, "end_call", {}, after_turn=0, count=2)
    for tools in ([TRANSFER], None):  # offered others; offered none at all
        with client_of(sim, tools) as client:
            client.send({"type": "response.create"})
            events = client.until("response.done")
            assert "response.function_call_arguments.done" not in [e["type"] for e in events]
            assert [o["type"] for o in events[-1]["response"]["output"]] == ["message"]
    records = requests.get(f"{sim.base}/sim/sessions", timeout=5).json()
    for record in records:
        notes = [e for _, d, e in record["events"] if d == "sim"]
        assert notes == [{"type": "<tool not offered>", "name": "end_call", "turn": 0}]


def test_an_output_for_a_call_never_made_is_refused_like_openai_does(sim):
    with client_of(sim, [TRANSFER]) as client:
        item = {"type": "function_call_output", "call_id": "call_nope", "output": "{}"}
        client.send({"type": "conversation.item.create", "item": item})
        error = client.until("error")[-1]["error"]
        assert error["code"] == "invalid_tool_call_id" and "call_nope" in error["message"]


def test_after_turn_counts_the_callers_turns_and_each_session_takes_one_use(sim):
    _script(sim, "end_call", {"reason": "done"}, after_turn=1, count=1)
    with client_of(sim, [END_CALL]) as client:
        client.send({"type": "response.create"})  # the greeting: turn 0, no call
        greeting = client.until("response.done")[-1]["response"]
        assert [o["type"] for o in greeting["output"]] == ["message"]
        speech = g711.tone(800, 440.0, law="ulaw") + g711.silence(1000, "ulaw")
        for offset in range(0, len(speech), 800):
            audio = base64.b64encode(speech[offset : offset + 800]).decode()
            client.send({"type": "input_audio_buffer.append", "audio": audio})
        events = client.until("response.done")
        assert "input_audio_buffer.speech_stopped" in [e["type"] for e in events]
        output = events[-1]["response"]["output"]
        assert [o["type"] for o in output] == ["message", "function_call"]
        assert output[1]["name"] == "end_call" and json.loads(output[1]["arguments"]) == {"reason": "done"}
    with client_of(sim, [END_CALL]) as second:  # count=1: a later session makes no call
        second.send({"type": "response.create"})
        assert second.until("response.done")[-1]["response"]["output"][-1]["type"] == "message"
        assert requests.get(f"{sim.base}/sim/sessions", timeout=5).json()[-1]["tools"]["planned"] == []


def test_a_bad_script_is_refused_at_the_control_url(sim):
    bad = {"name": "transfer_call", "arguments": "{not json", "after_turn": 0}
    assert requests.get(f"{sim.base}/sim/tool-calls", params=bad, timeout=5).status_code == 400
    assert requests.get(f"{sim.base}/sim/tool-calls", params={"after_turn": 0}, timeout=5).status_code == 400
