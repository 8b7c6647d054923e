"""The agent's built-in tools: what the model is offered, and what a call of one means.

Protocol-neutral: a `ToolSpec` is a name, a description and a JSON schema of its
arguments; the adapter puts it in its protocol's shape (call_worker/realtime_protocol.py).
`ToolBox.handle` runs on the media loop when the model calls a tool: it decides at once
(pure, no I/O) what to answer the model and which action the call must take, and hands the
action to the main thread (`on_action`), which carries it out, because ending a call and
dialling a destination wait on Asterisk.

    end_call          the model gets {"ok": true}; the main thread asks for the goodbye and
                      ends the call after its last frame (EndReason.AGENT_HANGUP)
    transfer_call     a known destination: the model is told the line is being called and
                      announces it; the main thread dials (call_worker/transfer.py).
                      Unknown, or one already in progress: the model is told why.
    an HTTP tool      the agent's own (callbridge/http_tools.py): arguments that cannot make
                      a request are told to the model at once; else the call is `Pending`,
                      the conversation has it sent (call_worker/external_tools.py) and
                      answers the model with the outcome (`settled_external`).
    an MCP tool       one an agent's MCP server listed and the agent allows (`offer`, soon
                      after the call starts; call_worker/mcp_calls.py): arguments that are
                      not a JSON object are told to the model at once; else `Pending` too.

Each call's tool use is bounded (the agent's `limits`, callbridge/agents.py::ToolLimits):
transfer attempts, tool errors and tool calls of any kind. Past a limit the model is told
once, with a reply, that the tool is gone; later calls get the same error and no reply, so
a model talked into a loop can no longer spend tokens or ring a line again and again.
end_call is never limited: it is how a runaway call should end.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from call_worker.adapter import ToolCall
from call_worker.mcp_calls import McpTool
from callbridge.agents import Agent, Destination
from callbridge.http_tools import ArgumentError, HttpTool, Request, request_for, spec_parameters

log = logging.getLogger(__name__)

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
MAX_ARGUMENTS = 2000  # characters of a call's arguments we read (the model writes a few dozen)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict


@dataclass(frozen=True)
class Pending:
    """An HTTP or MCP tool call to send: its output comes later (ToolBox.settled_external)."""

    tool: HttpTool | McpTool
    request: Request | dict  # an HTTP request, or an MCP tool's arguments


@dataclass(frozen=True)
class Action:
    """What the main thread must do about a tool call."""

    kind: str  # "end" | "transfer" | "hold" | "unhold" (a tool's hold sound, by reply)
    call_id: str  # the tool call's; a hold's: the reply whose tool calls it covers
    destination: Destination | None = None
    media: str = ""  # a hold's sound


def tools_for(agent: Agent) -> tuple[ToolSpec, ...]:
    """end_call always; transfer_call when the agent has somewhere to send a caller."""
    tools = [
        ToolSpec(
            END_CALL,
            "End the phone call. Use it when the caller's business is done or they say goodbye. "
            "Callbridge then asks you for a short goodbye and hangs up after it has played.",
            {"type": "object", "properties": {}, "additionalProperties": False},
        )
    ]
    if agent.transfers:
        lines = [
            f"- {name}: {dest.description}" if dest.description else f"- {name}"
            for name, dest in agent.transfers.items()
        ]
        tools.append(
            ToolSpec(
                TRANSFER_CALL,
                "Transfer the caller to a person. Tell the caller you are putting them through, "
                "then call this. The line is dialled while you stay with the caller; if it is "
                "busy or nobody answers you are told, and the caller stays with you. "
                "Destinations:\n" + "\n".join(lines),
                {
                    "type": "object",
                    "properties": {
                        "destination": {
                            "type": "string",
                            "enum": list(agent.transfers),
                            "description": "the destination's name",
                        }
                    },
                    "required": ["destination"],
                    "additionalProperties": False,
                },
            )
        )
    tools += [ToolSpec(t.name, t.description, spec_parameters(t)) for t in agent.http_tools.values()]
    return tuple(tools)


class ToolBox:
    """One call's tools (media loop: `handle`; the main thread: `settled`)."""

    def __init__(
        self,
        agent: Agent,
        on_action: Callable[[Action], None],
        on_event: Callable[[str, dict], None],
        keep_arguments: bool = True,
    ):
        self.agent = agent
        self.keep_arguments = keep_arguments  # RECORDS_TRANSCRIPTS: arguments are what was said
        self.on_action = on_action  # wakes the main thread
        self.on_event = on_event  # (kind, detail): an event of the call's record
        self.busy = ""  # "ending" | "transferring": what the main thread is still doing
        self._lock = threading.Lock()  # `busy` is set by the media loop, cleared by the main thread
        self.calls = self.errors = self.transfers = 0  # for the limits
        self._told: set[str] = set()  # limits the model was told about
        self.mcp_tools: dict[str, McpTool] = {}  # listed by the agent's MCP servers (media loop)

    def offer(self, tools: list[McpTool]) -> None:
        """(media loop) An MCP server's tools, as it listed them, that the agent allows."""
        for tool in tools:
            self.mcp_tools[tool.name] = tool

    def handle(self, call: ToolCall) -> tuple[dict | Pending, bool]:
        """The output to send back for `call` (or, for an HTTP tool, the request to send
        first), and whether the model should reply to it."""
        with self._lock:
            limit = self._limit_reached(call)
            if limit:
                output, respond, action = self._refuse(call, limit)
            else:
                output, respond, action = self._decide(call)
                self.calls += 1
                self.errors += isinstance(output, dict) and "error" in output
                self.transfers += action is not None and action.kind == "transfer"
            if action is not None:
                self.busy = "ending" if action.kind == "end" else "transferring"
        if limit and respond:
            log.warning("the model reached its %s limit; it is told the tool is gone", limit)
            self.on_event("tool_limit", {"name": call.name[:64], "limit": limit})
        if isinstance(output, Pending):  # its event comes with its outcome
            return output, respond
        self._record(call, output)
        if action is not None:
            self.on_action(action)
        return output, respond

    def settled_external(self, call: ToolCall, output: dict, detail: dict) -> None:
        """(media loop) An HTTP or MCP tool call's outcome, as the model is told it."""
        with self._lock:
            self.errors += "error" in output
        self._record(call, output, detail or {})

    def _record(self, call: ToolCall, output: dict, detail: dict | None = None) -> None:
        """The call's event. Arguments are what the caller said, and an HTTP tool's answer
        is the business's data about them: both kept only with RECORDS_TRANSCRIPTS."""
        event = {"name": call.name[:64], **(detail or {})}
        if self.keep_arguments:
            event.update(arguments=call.arguments[:200], result=_cut(output))
        elif detail is None:  # a built-in tool's own answer: no caller data in it
            event["result"] = output
        else:
            event["result"] = "error" if "error" in output else "ok"
        self.on_event("tool_call", event)

    def keypad_action(self, kind: str, destination: str) -> bool:
        """(media loop) A key mapped to an action (callbridge/agent_keypad.py): taken as the
        model's own end_call or transfer_call would be, unless one is under way."""
        with self._lock:
            if self.busy:
                return False
            self.busy = "ending" if kind == "end" else "transferring"
        target = self.agent.transfers.get(destination) if kind == "transfer" else None
        self.on_action(Action(kind, "keypad", target))
        return True

    def settled(self) -> None:
        """(main thread) A transfer attempt is over without a transfer: tools are free again
        (unless the call is ending meanwhile: that stays)."""
        with self._lock:
            if self.busy == "transferring":
                self.busy = ""

    def _limit_reached(self, call: ToolCall) -> str:
        """The limit this call is past, or ""."""
        limits = self.agent.limits
        if call.name == END_CALL:
            return ""
        if self.calls >= limits.tool_calls:
            return "tool_calls"
        if self.errors >= limits.tool_errors:
            return "tool_errors"
        if call.name == TRANSFER_CALL and self.transfers >= limits.transfer_attempts:
            return "transfer_attempts"
        return ""

    def _refuse(self, call: ToolCall, limit: str) -> tuple[dict, bool, None]:
        what = "transfer_call" if limit == "transfer_attempts" else "every tool but end_call"
        output = {
            "error": f"{what} is no longer available in this call ({limit} reached); carry on without it"
        }
        first = limit not in self._told
        self._told.add(limit)
        return output, first, None

    def _decide(self, call: ToolCall) -> tuple[dict, bool, Action | None]:
        if self.busy == "ending":
            return {"error": "the call is already ending"}, False, None
        if call.name == END_CALL:
            return {"ok": True, "next": "say a short goodbye"}, False, Action("end", call.call_id)
        tool = self.agent.http_tools.get(call.name)
        if tool is not None:
            try:
                return Pending(tool, request_for(tool, call.arguments, MAX_ARGUMENTS)), True, None
            except ArgumentError as exc:
                return {"error": f"{tool.name}: {exc}"}, True, None
        listed = self.mcp_tools.get(call.name)
        if listed is not None:
            try:
                arguments = json.loads(call.arguments[:MAX_ARGUMENTS] or "{}")
            except (ValueError, RecursionError):
                arguments = None
            if not isinstance(arguments, dict):
                return {"error": f"{listed.name}: the arguments must be a JSON object"}, True, None
            return Pending(listed, arguments), True, None
        if call.name != TRANSFER_CALL or not self.agent.transfers:
            log.warning("the model called an unknown tool %r; telling it so", call.name[:64])
            return {"error": f"no tool named {call.name[:64]!r}"}, True, None
        try:
            arguments = json.loads(call.arguments[:MAX_ARGUMENTS])
            name = arguments.get("destination") if isinstance(arguments, dict) else None
        except (ValueError, RecursionError):  # the model's text: anything, nested without end
            name = None
        destination = self.agent.transfers.get(name) if isinstance(name, str) else None
        if destination is None:
            known = ", ".join(self.agent.transfers)
            return {"error": f"unknown destination {str(name)[:64]!r}; known: {known}"}, True, None
        if self.busy == "transferring":
            return {"error": "a transfer is already being dialled; wait for its outcome"}, True, None
        note = (
            f"calling {destination.name} now; stay with the caller until it answers"
            if not destination.blind
            else f"putting the caller through to {destination.name} after your announcement"
        )
        return {"status": "dialling", "note": note}, True, Action("transfer", call.call_id, destination)


def _cut(output: dict, limit: int = 500) -> dict | str:
    """A tool's output as its event keeps it: whole when short, else its JSON cut."""
    text = json.dumps(output, ensure_ascii=False)
    return output if len(text) <= limit else text[:limit] + "..."
