"""An HTTP listener that a hostile or careless client cannot grow: uvicorn, bounded.

Used by the web helper (web/helper.py) for both of callbridge's listeners, /metrics and
the dashboard. Why not prometheus_client's own `start_http_server`: it starts a thread per
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

`serve` binds each `Listener`'s address (an address in use is one log line and a quiet
retry) and serves them all on one loop until `should_stop()` is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
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
        """uvicorn's h11 protocol with a connection cap and a deadline on each request's
        head (its line and headers, and the idle time between requests). A body that trickles
        is the app's to bound: the dashboard's forms are (web/dashboard.py::Dashboard.form);
        /metrics takes none."""

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


@dataclass(frozen=True)
class Listener:
    """One address to serve `app` on. `name` and `variable` are for the log lines
    ("metrics: cannot listen on 127.0.0.1:9464 (METRICS_LISTEN): ..."); `address` has
    `host` and `port`."""

    name: str
    variable: str
    address: object
    app: Callable
    limits: Limits


BIND_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def serve(
    listeners: list[Listener], should_stop: Callable[[], bool], poll: float = 1.0, bind_retry: float = 5.0
) -> None:
    """Serve every listener on one asyncio loop until `should_stop()`, checked every `poll`
    seconds. An address that is taken (an operator's other exporter on the port) is one log
    line and a quiet retry every `bind_retry` seconds, and does not hold up the others."""
    # "Invalid HTTP request received" and its like, once per bad request: a client's to cause.
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
    servers: list[_Server] = []

    async def keep(listener: Listener) -> None:
        told = False
        while not should_stop():
            try:
                sock = listen_socket(listener.address.host, listener.address.port)
                break
            except OSError as exc:
                if exc.errno not in BIND_ERRORS:
                    raise
                if not told:
                    log.error(
                        "%s: cannot listen on %s (%s): %s; trying again every %.0f s",
                        listener.name,
                        listener.address,
                        listener.variable,
                        exc.strerror,
                        bind_retry,
                    )
                    told = True
            await asyncio.sleep(bind_retry)
        else:
            return
        if told:
            log.info("%s: %s is free again", listener.name, listener.address)
        server = _Server(_config(listener.app, listener.limits))
        servers.append(server)
        log.info("%s: serving http://%s/", listener.name, listener.address)
        await server.serve(sockets=[sock])

    async def main() -> None:
        tasks = [asyncio.ensure_future(keep(listener)) for listener in listeners]
        try:
            while not should_stop() and not all(t.done() for t in tasks):
                await asyncio.sleep(poll)
        finally:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # a listener that failed for another reason is the helper's failure
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()

    asyncio.run(main())


def _config(app, limits: Limits) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=_protocol(limits),
        ws="none",
        lifespan="off",
        log_config=None,  # ours (callbridge/logs.py), not uvicorn's
        access_log=False,
        # uvicorn would otherwise take X-Forwarded-For from any peer on 127.0.0.1 as the
        # client's address; whose header to believe is the app's (web/security.py).
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive_seconds,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=1,
    )
