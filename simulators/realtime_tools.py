"""Function calling in the simulated Realtime server, scripted by the test.

A test queues a call through the control URL (`/sim/tool-calls`, see realtime.py); each
session opened afterwards takes one use of every queued call (first come: `count` uses in
all). The session then ends the response it makes after the caller's Nth turn (`after_turn`
N, 0 being the greeting made by response.create) with that function call, if the client
offered the tool in session.update; a tool not offered is not called, and the session
records why (`<tool not offered>`), as a model would simply not call it.

The emitted shape is the GA server's (the beta server uses the same names for these events;
only conversation.item.added/created differ, which the session already handles): after the
response's audio and transcript are done,

    response.output_item.added   {response_id, output_index, item: {id, object, type:
                                  "function_call", status: "in_progress", name, call_id,
                                  arguments: ""}}
    response.function_call_arguments.delta  {response_id, item_id, output_index, call_id, delta}
                                  (the arguments in two pieces)
    response.function_call_arguments.done   {response_id, item_id, output_index, call_id,
                                  name, arguments}
    response.output_item.done    {response_id, output_index, item: {... status: "completed",
                                  arguments}}

and response.done lists the message item and each function_call item in `output`. A
function_call_output whose call_id this session never issued is refused as OpenAI does
(`invalid_tool_call_id`); an accepted one is answered by the next response, whose
transcript starts "after tool NAME: " so that tests see what it answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class ScriptedCall:
    name: str
    arguments: str  # JSON text, as the model produces it
    after_turn: int = 0
    count: int = 1  # sessions still to take it


@dataclass
class FunctionCall:
    """One call a response makes: what the session sends and later checks outputs against."""

    name: str
    arguments: str
    item_id: str
    call_id: str
    output_index: int = 1

    def item(self, status: str) -> dict:
        return {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": status,
            "name": self.name,
            "call_id": self.call_id,
            "arguments": self.arguments if status == "completed" else "",
        }


class ToolScripts:
    """The server's queue of scripted calls, shared by the sessions it opens."""

    def __init__(self) -> None:
        self.queued: list[ScriptedCall] = []

    def add(self, query: dict) -> ScriptedCall:
        """From the control URL's query: name, arguments (JSON), after_turn, count."""
        arguments = query.get("arguments", "{}")
        json.loads(arguments)  # a test's typo fails at the control call, not inside a session
        call = ScriptedCall(
            query["name"], arguments, int(query.get("after_turn", 0)), int(query.get("count", 1))
        )
        self.queued.append(call)
        return call

    def take(self) -> list[ScriptedCall]:
        """One use of every queued call, for a session being opened."""
        taken = [ScriptedCall(c.name, c.arguments, c.after_turn, 1) for c in self.queued]
        for call in self.queued:
            call.count -= 1
        self.queued = [c for c in self.queued if c.count > 0]
        return taken

    def clear(self) -> None:
        self.queued.clear()


@dataclass
class SessionTools:
    """One session's side of function calling: what was offered, what is planned, what was
    called and what the client answered. `state` is also the session record's `tools`
    field, so /sim/sessions shows it."""

    planned: list[ScriptedCall] = field(default_factory=list)
    offered: dict[str, dict] = field(default_factory=dict)
    tool_choice: object = "auto"
    issued: dict[str, FunctionCall] = field(default_factory=dict)  # call_id -> call
    answered: list[str] = field(default_factory=list)  # names whose output the next response answers
    state: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state.update(
            planned=[c.__dict__ for c in self.planned], offered=[], tool_choice="auto", calls=[], outputs=[]
        )

    def plan(self, scripted: list[ScriptedCall]) -> None:
        """The calls this session will make (taken once the session is established, so that
        a refused handshake does not use one up)."""
        self.planned = list(scripted)
        self.state["planned"] = [c.__dict__ for c in self.planned]

    def configure(self, session: dict) -> None:
        """session.update: GA and beta both carry `tools` and `tool_choice` at session level.
        An update without `tools` keeps the tools offered before, as the server does."""
        if "tools" in session:
            tools = session.get("tools") or []
            self.offered = {
                t["name"]: t
                for t in tools
                if isinstance(t, dict) and t.get("type") == "function" and t.get("name")
            }
            self.state["offered"] = list(self.offered)
        if "tool_choice" in session:
            self.tool_choice = session["tool_choice"]
            self.state["tool_choice"] = self.tool_choice

    def calls_for(self, turn: int, record, new_id) -> list[FunctionCall]:
        """The calls the response after caller turn `turn` ends with; each scripted call is
        used once, by the first response made after its turn."""
        due = [c for c in self.planned if c.after_turn == turn]
        self.planned = [c for c in self.planned if c.after_turn != turn]
        calls = []
        for scripted in due:
            if scripted.name not in self.offered:
                record("sim", {"type": "<tool not offered>", "name": scripted.name, "turn": turn})
                continue
            if self.tool_choice == "none":
                record("sim", {"type": "<tool choice none>", "name": scripted.name, "turn": turn})
                continue
            call = FunctionCall(
                scripted.name, scripted.arguments, new_id("item"), new_id("call"), 1 + len(calls)
            )
            calls.append(call)
        return calls

    def emit(self, send, response_id: str, calls: list[FunctionCall]) -> None:
        """The events of each call, after the response's audio and transcript."""
        for call in calls:
            self.issued[call.call_id] = call
            self.state["calls"].append(
                {"name": call.name, "arguments": call.arguments, "call_id": call.call_id}
            )
            base = {"response_id": response_id, "output_index": call.output_index}
            send({"type": "response.output_item.added", **base, "item": call.item("in_progress")})
            ids = {"item_id": call.item_id, "call_id": call.call_id}
            half = len(call.arguments) // 2
            for piece in (call.arguments[:half], call.arguments[half:]):
                if piece:
                    send({"type": "response.function_call_arguments.delta", **base, **ids, "delta": piece})
            send(
                {
                    "type": "response.function_call_arguments.done",
                    **base,
                    **ids,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            send({"type": "response.output_item.done", **base, "item": call.item("completed")})

    def dropped(self, record, calls: list[FunctionCall]) -> None:
        """A response cancelled before its end never made its calls."""
        for call in calls:
            record("sim", {"type": "<tool call cancelled>", "name": call.name})

    def accept_output(self, item: dict) -> str | None:
        """A function_call_output item; None when accepted, else the error message."""
        call = self.issued.get(item.get("call_id"))
        if call is None:
            return f"Tool call ID '{item.get('call_id')}' not found in conversation."
        self.state["outputs"].append(
            {"call_id": call.call_id, "name": call.name, "output": item.get("output")}
        )
        self.answered.append(call.name)
        return None

    def answer_prefix(self) -> str:
        """What the next response's transcript starts with: the tool results it answers."""
        if not self.answered:
            return ""
        prefix = "".join(f"after tool {name}: " for name in self.answered)
        self.answered.clear()
        return prefix
