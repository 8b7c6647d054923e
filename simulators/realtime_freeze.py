"""Freezing the simulated Realtime service: the fault where everything stops moving.

A frozen service keeps its TCP port open and accepts connections, but sends nothing and
reads nothing: no events, no pong to a ping (the socket is not read, so websockets never
sees the ping), no close frame, and no answer to a new WebSocket handshake. This is what a
stalled server or a broken middlebox looks like from the client, and the one failure a
client that only waits for a close never notices.

Everything runs on the server's one event loop, like the rest of the simulator.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection


class Gate:
    """Open: traffic flows. Closed: whoever waits on it waits until it opens again."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    def open(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        await self._open.wait()


class Freezer:
    def __init__(self) -> None:
        self.handshakes = Gate()
        self.live: dict[ServerConnection, Gate] = {}

    def register(self, ws: ServerConnection) -> Gate:
        """A connection's gate; a connection opened during a freeze of new handshakes never
        gets here (its handshake waits in `hold_handshake`)."""
        gate = Gate()
        self.live[ws] = gate
        return gate

    def unregister(self, ws: ServerConnection) -> None:
        self.live.pop(ws, None)

    def freeze(self, new_handshakes: bool) -> int:
        """Freeze every open connection, and new handshakes too unless told otherwise (then
        a reconnecting client finds a working service). Returns the connections frozen."""
        for ws, gate in self.live.items():
            gate.close()
            ws.transport.pause_reading()  # unread: the kernel buffers pings, nobody answers
        if new_handshakes:
            self.handshakes.close()
        return len(self.live)

    def thaw(self) -> None:
        for ws, gate in self.live.items():
            if not gate.is_open:
                gate.open()
                ws.transport.resume_reading()
        self.handshakes.open()

    async def hold_handshake(self, connection, request, response):
        """process_response hook: a WebSocket upgrade is not answered while frozen."""
        if response.status_code == 101:
            await self.handshakes.wait()
        return None
