"""The conversation's side of the model's tool calls (call_worker/conversation.py's
`Conversation` is made of it): a call's output back to the model, once per reply the reply
after its calls, the HTTP and MCP calls in flight (call_worker/external_tools.py) with their
filler or hold sound, and the MCP tools offered once a server lists them. Media loop only;
its state is the conversation's."""

from __future__ import annotations

import json
import logging

from call_worker import adapter as seam
from call_worker import realtime_protocol as proto
from call_worker.mcp_calls import McpTool
from call_worker.tools import Action, Pending, ToolSpec
from shm_ring import Slot

log = logging.getLogger("call_worker.conversation")

SCHEMA_MAX = 16384  # characters of one MCP tool's argument schema offered to the model


class ToolsSide:
    def _on_tool_call(self, event: seam.ToolCall) -> None:
        self.header.add(Slot.TOOL_CALLS)
        if self.toolbox is None:
            output, respond = {"error": "no tools are offered"}, True
        else:
            output, respond = self.toolbox.handle(event)
        if isinstance(output, Pending):
            self._send_external(event, output, respond)
            return
        # Whether the model said a preamble ("let me check") before the call: the log shows
        # what the caller heard while the tool ran (callbridge asks for nothing meanwhile).
        spoken = " after its preamble" if event.response_id in self._preambles else ""
        if self.utterances is None:  # arguments are what the caller said, in other words
            log.info("tool call %s%s -> %s", event.name[:64], spoken, "error" if "error" in output else "ok")
        else:
            log.log(
                self.utterances,
                "tool call %s(%s)%s -> %s",
                event.name[:64],
                event.arguments[:200],
                spoken,
                output,
            )
        # Usually the reply carrying the call is still open: its response.done sends this,
        # and asks for the one reply that answers all of its calls.
        self._after_reply.append(("tool", self.adapter.tool_result(event.call_id, json.dumps(output)), False))
        if not respond or self.goodbye.requested:  # a goodbye has the last word
            pass
        elif event.response_id and event.response_id == self.active_response:
            self._tool_replies.add(event.response_id)
        else:
            self._after_reply.append(("reply", self.adapter.reply(), True))
        self._send_after_reply()

    def _reply_after_tools(self, response_id: str) -> None:
        """Ask once for the reply to a finished reply's tool calls, when the last of their
        outputs is queued (an HTTP tool's may come after the reply's response.done)."""
        if response_id not in self._tool_replies or response_id == self.active_response:
            return
        if self.external.waiting_for(response_id):
            return
        self._tool_replies.discard(response_id)
        self._after_reply.append(("reply", self.adapter.reply(), True))

    def _send_external(self, event: seam.ToolCall, pending: Pending, respond: bool) -> None:
        """An HTTP or MCP tool call: sent from a thread of its own, answered at its outcome
        or deadline. While it runs the caller hears the agent: its preamble, else a filler
        it is asked for once its reply is done."""
        tool = pending.tool
        self.external.submit(event, pending)
        if not respond or self.goodbye.requested:
            return
        if event.response_id:
            # Asked for once its last call is answered: at the end of its reply (Realtime's
            # calls come inside one), or at once (GPT-Live's come from its backend, outside
            # any reply we play).
            self._tool_replies.add(event.response_id)
        if event.response_id not in self._preambles and event.response_id not in self._fillers:
            self._fillers.add(event.response_id)  # one filler (or hold sound) for a reply's parallel calls
            if tool.hold_sound:
                self._hold(event.response_id, tool.hold_sound)
            else:
                self._after_reply.append(
                    ("filler", self.adapter.respond(proto.tool_filler(tool.filler), "filler"), True)
                )
        self._send_after_reply()

    def _settle_external(self, now: float) -> None:
        """Answer the model for each HTTP or MCP tool call whose outcome came or whose
        deadline passed; offer the tools an MCP server listed."""
        tools = self.external.take_listed()
        if tools:
            self._offer(tools)
        for call, output, detail in self.external.settle(now):
            self.toolbox.settled_external(call, output, detail)
            self._after_reply.append(
                ("tool", self.adapter.tool_result(call.call_id, json.dumps(output)), False)
            )
            self._reply_after_tools(call.response_id)
        for response_id in [r for r in self._holds if not self.external.waiting_for(r)]:
            self._unhold(response_id)

    def _hold(self, response_id: str, media: str) -> None:
        """A tool's hold sound instead of a filler: played on the bridge by the main thread
        (call_worker/agent_actions.py) once the reply with the call is done, until the
        reply's last call is answered."""
        if response_id and response_id == self.active_response:
            self._hold_after[response_id] = media  # at its response.done, if still waiting
            return
        self._holds.add(response_id)
        self.toolbox.on_action(Action("hold", response_id, media=media))

    def _unhold(self, response_id: str) -> None:
        self._holds.discard(response_id)
        self.toolbox.on_action(Action("unhold", response_id))

    def _offer(self, tools: list[McpTool]) -> None:
        """An MCP server's tools, listed after the call began: the model gets them in a
        session.update of the tools (and every later session opens with them). A tool whose
        schema is larger than SCHEMA_MAX is not offered: the service could refuse the update."""
        kept = []
        for tool in tools:
            if len(json.dumps(tool.parameters)) > SCHEMA_MAX:
                log.warning(
                    "MCP tool %s.%s: its argument schema is too large to offer", tool.server.name, tool.name
                )
            else:
                kept.append(tool)
        if not kept:
            return
        self.toolbox.offer(kept)
        self.adapter.tools = (
            *self.adapter.tools,
            *(ToolSpec(t.name, t.description, t.parameters) for t in kept),
        )
        self._send_tools(kept)

    def _send_tools(self, added: list[McpTool] = ()) -> None:
        if self.link is None:
            return  # the next session opens with them
        event_id = f"cb_tools_{next(self._opening_ids)}"
        if self._send_texts(self.adapter.tools_update(event_id)):
            self.updates.sent(event_id)
            self._tool_updates[event_id] = list(added) or list(self.toolbox.mcp_tools.values())

    def _withdraw(self, tools: list[McpTool]) -> None:
        """The service refused the update offering these tools: they are taken back, or every
        later session would open with them and be refused too (a refused opening ends the call)."""
        names = {tool.name for tool in tools}
        log.warning(
            "Realtime refused the MCP tools %s; they are not offered in this call", ", ".join(sorted(names))
        )
        for name in names:
            self.toolbox.mcp_tools.pop(name, None)
        self.adapter.tools = tuple(spec for spec in self.adapter.tools if spec.name not in names)
