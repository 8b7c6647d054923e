"""Calling an agent's MCP servers (callbridge/mcp_servers.py) on a thread of their own.

Only a call whose agent names a server makes an `McpCalls`. The MCP SDK (the `callbridge[mcp]`
extra) is imported by the supervisor once an agent names a server (`preload`), so that no
call pays its half second of import while its audio plays; without such an agent nothing
imports it, and a call without MCP keeps today's memory and start-up.
The thread runs one asyncio loop with one task per server, which connects (streamable
HTTP, the agent's headers), lists the server's tools and keeps those the agent allows
(`on_listed`, per server as each answers: a slow server does not hold up another), then
stays connected for the call and sends each tool call it is handed (`submit`), several
at once when the model calls in parallel. Connecting and listing are bounded by the
server's `timeout_seconds`, and so is each call; a server that cannot be reached is one
warning and its tools are not offered in this call.

What the model is told is the tool's text (or structured) answer, cut at the server's
`max_response_bytes` characters, or `{"error": ...}` for a failure the server reports, a
timeout or a lost connection. What is logged is the server's and the tool's names and the
outcome: never a header, never an exception's text (the SDK's may carry the URL).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from call_worker.http_calls import Outcome
from callbridge.mcp_servers import McpServer

log = logging.getLogger(__name__)

SSE_EVENT_MAX = 1024 * 1024  # bytes one streamed answer may buffer in the SDK
LIST_PAGES = 20  # pages of a server's tool list read at most


@dataclass(frozen=True)
class McpTool:
    """A tool a server offered and the agent allows: what the model is shown of it."""

    name: str
    description: str
    parameters: dict  # the server's JSON schema of the arguments
    server: McpServer

    @property
    def timeout_seconds(self) -> float:
        return self.server.timeout_seconds

    @property
    def filler(self) -> str:
        return self.server.filler

    @property
    def hold_sound(self) -> str:
        return self.server.hold_sound


def preload() -> float | None:
    """Import the SDK now (the supervisor does, when an agent names an MCP server): workers
    forked afterwards find it loaded and share its pages. Imported in a call instead, it held
    the interpreter long enough to delay that call's audio frames by up to 56 ms, and the
    first HTTP client by 10 ms more (bench/tools_bench.py). Seconds it took, or None when
    the extra is not installed."""
    began = time.monotonic()
    try:
        import httpx2  # noqa: F401
        from mcp import Client  # noqa: F401
        from mcp.client.streamable_http import streamable_http_client  # noqa: F401
        from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: F401
    except ImportError:
        return None
    # The first HTTP client loads the CA certificates into an SSL context that later clients
    # reuse: another 10 ms with the interpreter held, better spent here than in a call.
    httpx2.AsyncClient()
    return time.monotonic() - began


class McpCalls:
    def __init__(
        self,
        servers: tuple[McpServer, ...],
        on_listed: Callable[[list[McpTool]], None],
        on_done: Callable[[Outcome], None],
    ) -> None:
        self.servers = servers
        self.on_listed = on_listed  # (this thread) a server's allowed tools, once
        self.on_done = on_done  # (this thread) a call's outcome
        self._loop = None
        self._stop = None  # the loop's asyncio.Event
        self._queues: dict[str, object] = {}  # server name -> its asyncio.Queue of calls
        self._connecting: set = set()  # the servers' tasks until they have listed their tools
        self._thread = threading.Thread(target=self._run, name="mcp", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, call_id: str, tool: McpTool, arguments: dict) -> None:
        """(media loop) Send it; the outcome comes through `on_done`."""
        queue = self._queues.get(tool.server.name)
        if self._loop is None or queue is None:  # not connected (yet, or ever): the model is told
            self.on_done(
                Outcome(call_id, {"error": f"{tool.name} is not available now"}, {"outcome": "unavailable"})
            )
            return
        try:
            self._loop.call_soon_threadsafe(queue.put_nowait, (call_id, tool, arguments))
        except RuntimeError:  # the loop ended meanwhile (its last server failed): told at once
            self.on_done(
                Outcome(call_id, {"error": f"{tool.name} is not available now"}, {"outcome": "unavailable"})
            )

    def close(self) -> None:
        """The call is over: each session is asked to end, without waiting for it (the
        caller's teardown comes next and must not wait on a server; the thread is a daemon,
        and ends with the worker)."""
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._shut)
            except RuntimeError:  # the loop has already ended
                return

    def _shut(self) -> None:
        """(the loop) Each server's task ends at its queue's None; one still connecting is
        cancelled."""
        self._stop.set()
        for queue in self._queues.values():
            queue.put_nowait(None)
        for task in self._connecting:
            task.cancel()

    # --- the thread

    def _run(self) -> None:
        try:
            import asyncio

            import mcp  # noqa: F401 (the extra: its absence is the one problem worth a clear line)
        except ImportError:
            log.error(
                "agent names MCP servers, but the MCP SDK is not installed (pip install 'callbridge[mcp]'); "
                "their tools are not offered"
            )
            return
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        import asyncio

        self._stop = asyncio.Event()
        for server in self.servers:
            self._queues[server.name] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(self._serve(server)) for server in self.servers]
        self._connecting = set(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, server: McpServer) -> None:
        """One server for the call's life: connect and list within its timeout, then send
        the calls it is handed until the call ends."""
        import asyncio

        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        started = time.monotonic()
        headers = {name: value.reveal() for name, value in server.headers}
        # No read timeout: the SDK keeps a stream open to hear the server, idle for minutes;
        # connecting and listing are bounded below, and each call by its own timeout.
        http = create_mcp_http_client(
            headers=headers, timeout=httpx2.Timeout(server.timeout_seconds, read=None)
        )
        calls: set = set()
        try:
            async with asyncio.timeout(server.timeout_seconds) as limit:
                async with http:
                    transport = streamable_http_client(
                        server.url.reveal(), http_client=http, max_sse_event_size=SSE_EVENT_MAX
                    )
                    async with Client(transport) as client:
                        offered, cursor = [], None
                        for _page in range(LIST_PAGES):  # a server may list its tools in pages
                            listing = await client.list_tools(cursor=cursor)
                            offered += listing.tools
                            cursor = listing.next_cursor
                            if not cursor:
                                break
                        limit.reschedule(None)  # connected: from now on each call has its own
                        self._connecting.discard(asyncio.current_task())
                        self._listed(server, offered, time.monotonic() - started)
                        queue = self._queues[server.name]
                        while (item := await queue.get()) is not None:  # None: the call is over
                            task = asyncio.ensure_future(self._call(client, *item))
                            calls.add(task)
                            task.add_done_callback(calls.discard)
                        for task in list(calls):
                            task.cancel()
                        await asyncio.gather(*calls, return_exceptions=True)
        except Exception as exc:  # noqa: BLE001 -- every failure of a server is the same for the call
            if not self._stop.is_set():
                log.warning(
                    "MCP server %s: %s (%s); its tools are not offered in this call",
                    server.name,
                    "no answer in time" if isinstance(exc, TimeoutError) else "cannot use it",
                    type(exc).__name__,
                )
            self._queues.pop(server.name, None)

    def _listed(self, server: McpServer, offered, seconds: float) -> None:
        by_name = {tool.name: tool for tool in offered}
        tools = []
        for name in server.tools:
            tool = by_name.get(name)
            if tool is None:
                log.warning("MCP server %s does not offer the tool %s the agent lists", server.name, name)
                continue
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {"type": "object"}
            tools.append(McpTool(name, (tool.description or name)[:1024], schema, server))
        log.info(
            "MCP server %s: %d of its %d tools offered (%.0f ms)",
            server.name,
            len(tools),
            len(offered),
            seconds * 1000,
        )
        self.on_listed(tools)

    async def _call(self, client, call_id: str, tool: McpTool, arguments: dict) -> None:
        import asyncio

        began = time.monotonic()
        try:
            result = await asyncio.wait_for(client.call_tool(tool.name, arguments), tool.timeout_seconds)
        except TimeoutError:
            output = {"error": f"{tool.name} did not answer within {tool.timeout_seconds:g} s"}
            how = "timeout"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a lost connection, a protocol error: the model is told
            output, how = {"error": f"{tool.name} failed ({type(exc).__name__})"}, "failed"
        else:
            output, how = answer_of(result, tool.server.max_response_bytes)
        ms = round((time.monotonic() - began) * 1000)
        log.info("MCP tool %s.%s: %s in %d ms", tool.server.name, tool.name, how, ms)
        self.on_done(Outcome(call_id, output, {"outcome": how, "ms": ms, "server": tool.server.name}))


def answer_of(result, limit: int) -> tuple[dict, str]:
    """What the model is told of a CallToolResult, and the outcome's word."""
    text = "".join(getattr(part, "text", "") or "" for part in (result.content or []))
    if result.is_error:
        return {"error": text[:limit] or "the tool reported an error"}, "error"
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        shown = json.dumps(structured, ensure_ascii=False)
        if len(shown) <= limit:
            return {"result": structured}, "ok"
        text = shown
    if len(text) > limit:
        return {"result": text[:limit], "truncated": True}, "ok"
    try:
        return {"result": json.loads(text)}, "ok"
    except ValueError:
        return {"result": text}, "ok"
