"""A real MCP server on loopback (the official SDK's MCPServer over streamable HTTP), for the
MCP tools' tests: a business's ticket system. Run as `python tests/mcp_server.py PORT TOKEN LOG`:
every request must carry `Authorization: Bearer TOKEN` (else 401), and each tool call is
appended to LOG as a JSON line, so that a test sees what reached the server."""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

PORT, TOKEN, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = MCPServer("tickets")


def called(name: str, **arguments) -> None:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": name, "arguments": arguments}) + "\n")


@server.tool(description="Open a support ticket for a customer's line")
def open_ticket(customer_id: str, summary: str) -> dict:
    called("open_ticket", customer_id=customer_id, summary=summary)
    return {"ticket": "T-1042", "customer_id": customer_id}


@server.tool(description="Look something up slowly (never answers in time)")
async def slow_lookup(what: str = "") -> str:
    called("slow_lookup", what=what)
    await asyncio.sleep(120)
    return "too late"


@server.tool(description="A report far longer than a phone call needs")
def long_report() -> str:
    called("long_report")
    return "x" * 200_000


@server.tool(description="Fails")
def broken() -> str:
    called("broken")
    raise RuntimeError("the ticket database is down")


@server.tool(description="Deletes every ticket: the agent must never be offered it")
def delete_all_tickets() -> str:
    called("delete_all_tickets")
    return "deleted"


def with_token(app):
    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization", b"").decode() != f"Bearer {TOKEN}":
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]}
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await app(scope, receive, send)

    return guarded


uvicorn.run(with_token(server.streamable_http_app()), host="127.0.0.1", port=PORT, log_level="warning")
