"""The model's calls of tools outside the worker: an agent's HTTP tools (sent by
call_worker/http_calls.py) and its MCP servers' (call_worker/mcp_calls.py), while they run.

The media loop hands each call over (`submit`) and goes on pacing audio; the threads that
send them post outcomes back, and at each tick the conversation takes what is settled
(`settle`): each call answered at its outcome, or at its deadline whatever the server is
still doing (a late outcome is then dropped: the model has had its answer). The MCP
servers' tool lists arrive the same way (`take_listed`), once per server, soon after the
call starts. One place for both kinds, so that timeouts, fillers and the reply after a
reply's parallel calls (call_worker/conversation.py) do not care which kind ran.

Media loop only, but for `_done` and `_listed`, which the sending threads call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from call_worker.adapter import ToolCall
from call_worker.http_calls import HttpCalls, Outcome
from call_worker.mcp_calls import McpCalls, McpTool
from call_worker.tools import Pending
from callbridge.http_tools import HttpTool


class ExternalCalls:
    def __init__(self, wake: Callable[[], None], mcp_servers=()) -> None:
        self.wake = wake
        # call_id -> (the call, the tool, the deadline by which the model is answered)
        self.pending: dict[str, tuple[ToolCall, HttpTool | McpTool, float]] = {}
        self._outcomes: deque[Outcome] = deque()  # posted by the sending threads
        self._listed: deque[list[McpTool]] = deque()
        self.http = HttpCalls(self._done)
        self.mcp = McpCalls(tuple(mcp_servers), self._list, self._done) if mcp_servers else None

    def start(self) -> None:
        """Connect to the MCP servers, if any (their tools come through `take_listed`)."""
        if self.mcp is not None:
            self.mcp.start()

    @property
    def busy(self) -> bool:
        return bool(self._outcomes or self.pending or self._listed)

    def submit(self, call: ToolCall, pending: Pending) -> None:
        tool = pending.tool
        self.pending[call.call_id] = (call, tool, time.monotonic() + tool.timeout_seconds)
        if isinstance(tool, McpTool):
            self.mcp.submit(call.call_id, tool, pending.request)
        else:
            self.http.submit(call.call_id, tool, pending.request)

    def waiting_for(self, response_id: str) -> bool:
        """Whether a call of this reply is still out."""
        return any(call.response_id == response_id for call, _, _ in self.pending.values())

    def settle(self, now: float) -> list[tuple[ToolCall, dict, dict]]:
        """(call, what the model is told, the event's detail) for each call that is over."""
        answered: dict[str, tuple[dict, dict]] = {}
        while self._outcomes:
            outcome = self._outcomes.popleft()
            if outcome.call_id in self.pending and outcome.call_id not in answered:
                answered[outcome.call_id] = (outcome.output, outcome.detail)
        for call_id, (call, tool, deadline) in self.pending.items():
            if now >= deadline and call_id not in answered:
                error = {"error": f"{call.name} did not answer within {tool.timeout_seconds:g} s"}
                answered[call_id] = (error, {"outcome": "timeout", "ms": round(tool.timeout_seconds * 1000)})
        settled = []
        for call_id, (output, detail) in answered.items():
            call, _tool, _deadline = self.pending.pop(call_id)
            settled.append((call, output, detail))
        return settled

    def take_listed(self) -> list[McpTool]:
        tools: list[McpTool] = []
        while self._listed:
            tools += self._listed.popleft()
        return tools

    def clear(self) -> None:
        """The session was lost: outputs would name its calls."""
        self.pending.clear()

    def close(self) -> None:
        self.http.close()
        if self.mcp is not None:
            self.mcp.close()

    def _done(self, outcome: Outcome) -> None:
        """(a sending thread) A call's outcome: the loop answers the model."""
        self._outcomes.append(outcome)
        self.wake()

    def _list(self, tools: list[McpTool]) -> None:
        """(the MCP thread) A server's allowed tools."""
        self._listed.append(tools)
        self.wake()
