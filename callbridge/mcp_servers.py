"""MCP servers as tool sources: an agent's `[agents.NAME.mcp.SERVER]` (docs/agents.md),
declared in the agents file and used by the calls of that agent alone.

What is here is pure: the declaration (`McpServer`) and reading it with every problem
named. Talking to the server is call_worker/mcp_calls.py's, through the official MCP Python
SDK (the `callbridge[mcp]` extra), imported only by a call whose agent names a server.

The server's own tool list decides the tools' descriptions and argument schemas, but which
of them an agent may use is the file's: `tools` lists them by name, and a tool the server
offers beyond that list is never shown to the model. The same limits as an HTTP tool's apply
to each call: a timeout after which the model is told the tool did not answer, the most of
an answer the model is given, the filler said while it runs. Header values may name
environment variables (`${TICKETS_TOKEN}`), kept as secrets like an HTTP tool's; so may
the URL (a hosted server's key is often in its path), which is never shown or logged:
`callbridge agents` shows its host.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from callbridge.agent_file_reader import Reader, dotted, type_name
from callbridge.http_tools import RESERVED, SIZE_MAX, TIMEOUT_MAX, expand, hold_sound, read_headers
from callbridge.secret import Secret, register

SERVER_KEYS = ("url", "headers", "tools", "timeout_seconds", "max_response_bytes", "filler", "hold_sound")
TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
TIMEOUT_DEFAULT = 8.0  # a call's, and the connection's and listing's at the start of a call
SIZE_DEFAULT = 16384  # characters of a tool's answer the model is given


@dataclass(frozen=True)
class McpServer:
    name: str
    url: Secret  # streamable HTTP endpoint; a hosted server's may hold its key: never shown
    tools: tuple[str, ...]  # the server's tools this agent may use, by name
    headers: tuple[tuple[str, Secret], ...] = ()
    timeout_seconds: float = TIMEOUT_DEFAULT
    max_response_bytes: int = SIZE_DEFAULT
    filler: str = ""
    hold_sound: str = ""  # instead of the filler: an Asterisk sound on the bridge while a tool runs

    def describe(self) -> str:
        """For `callbridge agents`: no header value, no secret."""
        headers = f", headers {', '.join(name for name, _ in self.headers)}" if self.headers else ""
        host = urlsplit(self.url.reveal()).hostname or "?"
        return f"mcp {self.name}: {host} tools {', '.join(self.tools)} ({self.timeout_seconds:g} s{headers})"


def read_servers(
    r: Reader, where: tuple[str, ...], table: object, taken: set[str], environ=None
) -> dict[str, McpServer]:
    """The agent's `mcp` table. `taken`: the tool names already in use (the built-in tools
    and the agent's HTTP tools); a listed tool must not repeat one, here or on another server."""
    environ = os.environ if environ is None else environ
    if not isinstance(table, dict):
        r.problem(dotted(*where), "must hold tables [agents.NAME.mcp.SERVER] with url and tools")
        return {}
    servers = {}
    for name, body in table.items():
        at = (*where, name)
        if not isinstance(body, dict):
            r.problem(dotted(*at), f"must be a table with url and tools (got {type_name(body)})")
            continue
        r.unknown(at, body, SERVER_KEYS)
        text = r.text(at, body, "url", required=True)
        url = expand(r, dotted(*at, "url"), text, environ) or Secret("")
        _check_url(r, at, url.reveal())
        if url:
            register(url.reveal())  # a key in its path or query is redacted should it reach a log line
        tools = body.get("tools")
        if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
            r.problem(
                dotted(*at, "tools"), 'must list the server\'s tools this agent may use: ["open_ticket"]'
            )
            tools = []
        for tool in tools:
            if not TOOL_NAME.fullmatch(tool):
                r.problem(dotted(*at, "tools"), f"{tool[:70]!r} is not a tool name")
            elif tool in RESERVED or tool in taken:
                r.problem(dotted(*at, "tools"), f"{tool!r} is already a tool of this agent")
            taken.add(tool)
        servers[name] = McpServer(
            name=name,
            url=url,
            tools=tuple(tools),
            headers=read_headers(r, at, body.get("headers", {}), environ),
            timeout_seconds=r.number(at, body, "timeout_seconds", 0.5, TIMEOUT_MAX) or TIMEOUT_DEFAULT,
            max_response_bytes=r.number(at, body, "max_response_bytes", 256, SIZE_MAX, whole=True)
            or SIZE_DEFAULT,
            filler=r.text(at, body, "filler"),
            hold_sound=hold_sound(r, at, body),
        )
    return servers


def _check_url(r: Reader, at: tuple[str, ...], url: str) -> None:
    if not url:
        return
    key = dotted(*at, "url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        r.problem(key, f"not a URL: {exc}")
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problem(key, "must be an http:// or https:// URL with a host (MCP's streamable HTTP)")
    if parts.username or parts.password:
        r.problem(key, "must not hold a user or password: put credentials in headers")
