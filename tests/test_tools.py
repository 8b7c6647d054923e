"""The agent's tools (call_worker/tools.py): what the model is offered, what each call is
answered and which action it hands to the main thread, and the session's tool definitions."""

from __future__ import annotations

import json

from harness import settings_for

from call_worker import realtime_protocol as proto
from call_worker.adapter import ToolCall
from call_worker.tools import END_CALL, TRANSFER_CALL, ToolBox, tools_for
from callbridge.agents import Agent, Destination, DialplanTarget


def desk() -> Agent:
    reception = Destination("reception", DialplanTarget("from-internal", "200"), "the front desk")
    return Agent(name="desk", transfers={"reception": reception})


def box(agent: Agent):
    actions, events = [], []
    return ToolBox(agent, actions.append, lambda kind, detail: events.append((kind, detail))), actions, events


def call(name: str, **arguments) -> ToolCall:
    return ToolCall("call_1", name, json.dumps(arguments))


def test_every_agent_may_end_the_call_and_only_one_with_destinations_may_transfer():
    assert [t.name for t in tools_for(Agent(name="plain"))] == [END_CALL]
    offered = tools_for(desk())
    assert [t.name for t in offered] == [END_CALL, TRANSFER_CALL]
    transfer = offered[1]
    assert transfer.parameters["properties"]["destination"]["enum"] == ["reception"]
    assert "reception: the front desk" in transfer.description


def test_the_session_offers_the_tools_in_both_api_shapes(asterisk, realtime):
    for shape in ("ga", "beta"):
        settings = settings_for(asterisk, realtime, OPENAI_API_SHAPE=shape)
        session = proto.session_update(settings, tools_for(desk()))["session"]
        assert [t["name"] for t in session["tools"]] == [END_CALL, TRANSFER_CALL]
        assert session["tool_choice"] == "auto"
        assert all(t["type"] == "function" for t in session["tools"])
        assert "tools" not in proto.session_update(settings)["session"]


def test_end_call_is_answered_without_a_reply_and_handed_to_the_main_thread():
    toolbox, actions, events = box(desk())
    output, respond = toolbox.handle(call(END_CALL))
    assert output["ok"] is True and respond is False
    assert [a.kind for a in actions] == ["end"]
    assert events[0][0] == "tool_call" and events[0][1]["name"] == END_CALL
    # Once ending, nothing else is done, and the main thread cannot free the tools again.
    toolbox.settled()
    again, _ = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert "ending" in again["error"] and len(actions) == 1


def test_a_transfer_to_a_known_destination_is_dialled_once_and_others_are_explained():
    toolbox, actions, _ = box(desk())
    unknown, respond = toolbox.handle(call(TRANSFER_CALL, destination="billing"))
    assert "unknown destination" in unknown["error"] and "reception" in unknown["error"] and respond
    broken, _ = toolbox.handle(ToolCall("call_2", TRANSFER_CALL, "{not json"))
    assert "unknown destination" in broken["error"]
    output, respond = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert output["status"] == "dialling" and respond
    assert [(a.kind, a.destination.name) for a in actions] == [("transfer", "reception")]
    twice, _ = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert "already" in twice["error"] and len(actions) == 1
    toolbox.settled()  # the attempt failed: the agent may try again
    toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert len(actions) == 2


def test_an_unknown_tool_and_a_transfer_without_destinations_are_told_apart_from_errors():
    toolbox, actions, _ = box(Agent(name="plain"))
    output, respond = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert "no tool" in output["error"] and respond and actions == []
    output, _ = toolbox.handle(call("launch_rockets"))
    assert "no tool" in output["error"]


# --- the limits (issue 22, item 7): a caller who talks the model into a loop


def test_transfer_attempts_are_capped_and_the_model_is_told_once():
    toolbox, actions, events = box(desk())
    for _ in range(3):
        output, respond = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
        assert output["status"] == "dialling"
        toolbox.settled()  # busy, no answer...
    told, respond = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert "no longer available" in told["error"] and "transfer_attempts" in told["error"] and respond
    again, respond = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert "no longer available" in again["error"] and not respond  # no more replies asked for
    assert len(actions) == 3  # three lines rung, never a fourth
    assert [d for k, d in events if k == "tool_limit"] == [
        {"name": TRANSFER_CALL, "limit": "transfer_attempts"}
    ]
    # Ending the call is never limited.
    output, _ = toolbox.handle(call(END_CALL))
    assert output["ok"] and actions[-1].kind == "end"


def test_tool_errors_are_capped():
    toolbox, _, _ = box(Agent(name="plain"))
    responds = [toolbox.handle(call("launch_rockets"))[1] for _ in range(13)]
    assert responds == [True] * 10 + [True, False, False]  # ten errors answered, told once, then silent
    assert "tool_errors" in toolbox.handle(call("launch_rockets"))[0]["error"]


def test_tool_calls_of_any_kind_are_capped_per_agent():
    from callbridge.agents import ToolLimits

    agent = Agent(
        name="desk", transfers=desk().transfers, limits=ToolLimits(tool_calls=4, transfer_attempts=9)
    )
    toolbox, actions, _ = box(agent)
    for _ in range(4):
        toolbox.handle(call(TRANSFER_CALL, destination="reception"))
        toolbox.settled()
    output, respond = toolbox.handle(call(TRANSFER_CALL, destination="reception"))
    assert "tool_calls" in output["error"] and respond and len(actions) == 4
    output, _ = toolbox.handle(call(END_CALL))
    assert output["ok"] and actions[-1].kind == "end"
