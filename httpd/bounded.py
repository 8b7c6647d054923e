"""An HTTP listener that a hostile or careless client cannot grow: uvicorn, bounded.

Used by the metrics helper (metrics/exporter.py) and meant for every listener callbridge
exposes. Why not prometheus_client's own `start_http_server`: it starts a thread per
connection with no timeout and no cap, so a few thousand idle connections made a few
thousand threads, and threads count against the unit's `TasksMax`, which the call workers
share: new calls could no longer fork.

Here one asyncio loop serves every connection (no thread per connection), and each
connection is bounded three ways:
- at most `Limits.connections` at once: one more makes the oldest idle connection (no
  request in progress) close, so a flood of idle connections keeps evicting itself while
  real requests are still served; when none is idle, the new one is closed instead;
- a request must arrive whole within `Limits.read_seconds` of the connection, or of the
  previous response (a client trickling its headers a byte at a time is closed, which
  uvicorn's keep-alive timer alone does not do: every byte restarts it, and a connection
  that never sends anything has no timer at all);
- an idle keep-alive connection closes after `Limits.keep_alive_seconds` (uvicorn's own).
A connection carries one request at a time, so requests in progress are bounded by the
connection cap too. (uvicorn's own `limit_concurrency` is not used: it counts open
connections, idle ones included, so a few dozen idle sockets would make every request a
503 while staying under the cap that evicts them.) No WebSocket upgrades, no signal
handlers of uvicorn's (the helper's are the supervisor's to decide), and uvicorn's per-
request warnings stay out of the service's log (a client could flood it).

The caller binds the socket (so that "address in use" is the caller's to report, once),
and `serve` runs until `should_stop()` is true, checked every `poll` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    connections: int = 64
    read_seconds: float = 10.0
    keep_alive_seconds: int = 5
    max_header_bytes: int = 16 * 1024


def _protocol(limits: Limits) -> type[asyncio.Protocol]:
    opened: dict[H11Protocol, None] = {}  # this server's connections, oldest first

    class BoundedH11(H11Protocol):
        """uvicorn's h11 protocol with a connection cap and a whole-request deadline."""

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._read_deadline = None
            opened[self] = None
            if len(opened) > limits.connections:
                victim = next((c for c in opened if c is not self and c._idle()), self)
                # Over the cap: one connection goes at once, so no client holds every descriptor.
                opened.pop(victim, None)
                victim.transport.abort()
                if victim is self:
                    return
            self._arm()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
            self._read_deadline = self.loop.call_later(limits.read_seconds, self._read_expired)

        def _read_expired(self) -> None:
            self._read_deadline = None
            if self._idle():
                # No request in progress: the next one did not arrive whole in time.
                self.transport.abort()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            opened.pop(self, None)
            if getattr(self, "_read_deadline", None) is not None:
                self._read_deadline.cancel()
                self._read_deadline = None
            super().connection_lost(exc)

    return BoundedH11


def listen_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """Bind and listen (raises OSError: the caller reports an address in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # leave the helper's signal dispositions as the supervisor set them


def serve(
    app, sock: socket.socket, limits: Limits, should_stop: Callable[[], bool], poll: float = 1.0
) -> None:
    """Serve the ASGI `app` on the bound `sock` until `should_stop()`."""
    config = uvicorn.Config(
        app,
        http=_protocol(limits),
        ws="none",
        lifespan="off",
        log_config=None,  # ours (callbridge/logs.py), not uvicorn's
        access_log=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive_seconds,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=1,
    )
    # "Invalid HTTP request received" and its like, once per bad request: a client's to cause.
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
    server = _Server(config)

    async def main() -> None:
        async def watch() -> None:
            while not should_stop():
                await asyncio.sleep(poll)
            server.should_exit = True

        watcher = asyncio.ensure_future(watch())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()

    asyncio.run(main())
