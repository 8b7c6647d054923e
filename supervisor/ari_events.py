"""The ARI events WebSocket, driven by the supervisor's selector loop without ever blocking.

A blocking connect (TCP, TLS and the HTTP upgrade) would stall the loop for as long as a slow
Asterisk takes to answer, so the link is a state machine over a non-blocking socket:

    DISCONNECTED --due, address known--> CONNECTING (TCP) --connected--> HANDSHAKING (TLS,
    only with ASTERISK_TLS) --done--> UPGRADING (HTTP 101) --accepted--> CONNECTED
    any state --error, close, CONNECT_TIMEOUT, silence after a ping--> DISCONNECTED

websockets' sans-I/O protocol does the upgrade and the framing (Basic auth in a header, never
`api_key=` in the URL, which would put the password into every logged URL); this module only
moves bytes when the selector says the socket is ready. After a loss the supervisor
reconnects with capped exponential backoff.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import selectors
import socket
import ssl
import time
from enum import Enum

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from callbridge.config import Settings

log = logging.getLogger(__name__)

BACKOFF_START, BACKOFF_CAP = 0.5, 10.0
CONNECT_TIMEOUT = 10.0  # TCP + TLS + upgrade; never on the loop's time, only a deadline
PING_AFTER = 15.0  # seconds of silence before we ask whether Asterisk is still there
PING_TIMEOUT = 10.0  # then this long for any byte back
STABLE_AFTER = 30.0  # a link up this long resets the backoff (one that drops at once does not)
MAX_EVENT = 16 * 1024 * 1024
READ_CHUNK = 65536


class LinkState(Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    UPGRADING = "upgrading"
    CONNECTED = "connected"


class AriEvents:
    def __init__(self, settings: Settings, on_close=None) -> None:
        """`on_close(sock)` runs just before the socket is closed, so that the loop can drop
        it from its selector while its descriptor number cannot yet be reused."""
        self.url = f"{settings.ari_events_url}?app={settings.ari_app_name}&subscribeAll=false"
        self.host = settings.asterisk_host
        self.port = settings.asterisk_port
        self.tls = settings.asterisk_tls
        token = base64.b64encode(
            f"{settings.asterisk_username}:{settings.asterisk_password.reveal()}".encode()
        ).decode()
        self._authorization = f"Basic {token}"
        self.sock: socket.socket | None = None
        self.protocol: ClientProtocol | None = None
        self.out = bytearray()
        self.state = LinkState.DISCONNECTED
        self.next_attempt = 0.0
        self.deadline = 0.0
        self.last_heard = 0.0
        self.pinged_at: float | None = None
        self.backoff = BACKOFF_START
        self.connects = 0
        self.last_error = ""
        self._fragments: list[bytes] | None = None  # a text message still arriving
        self._tls_wants_write = False
        # Made once (it reads the CA files); ASTERISK_CA_FILE for a private CA.
        self._tls_context = (
            ssl.create_default_context(cafile=settings.asterisk_ca_file or None) if self.tls else None
        )
        self._on_close = on_close
        self.connected_at: float | None = None

    # --- what the loop asks

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def due(self, now: float) -> bool:
        return self.state is LinkState.DISCONNECTED and now >= self.next_attempt

    def interest(self) -> int:
        """The selector events this link waits for now (0: none)."""
        if self.sock is None:
            return 0
        if self.state is LinkState.CONNECTING or self.out:
            return selectors.EVENT_WRITE | (
                selectors.EVENT_READ if self.state is not LinkState.CONNECTING else 0
            )
        if self.state is LinkState.HANDSHAKING and self._tls_wants_write:
            return selectors.EVENT_WRITE
        return selectors.EVENT_READ

    # --- connecting

    def connect(self, address: tuple) -> None:
        """Begin connecting to a resolved `address` (a getaddrinfo entry); returns at once."""
        family, kind, proto, _, sockaddr = address
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            return self._failed(f"cannot make a socket: {exc}")
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.out.clear()
        self._fragments = None
        self._tls_wants_write = False
        self.state = LinkState.CONNECTING
        self.deadline = time.monotonic() + CONNECT_TIMEOUT
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._lost_while_connecting(OSError(err, errno.errorcode.get(err, str(err))))

    def on_ready(self, mask: int) -> list[dict]:
        """The selector says the socket is ready; returns the events that arrived."""
        try:
            if self.state is LinkState.CONNECTING:
                self._finish_tcp()
            if self.state is LinkState.HANDSHAKING:
                self._tls_step()
            if self.sock is not None and self.out:
                self._flush()
            if (
                self.sock is not None
                and mask & selectors.EVENT_READ
                and self.state
                in (
                    LinkState.UPGRADING,
                    LinkState.CONNECTED,
                )
            ):
                return self._receive()
        except (OSError, ssl.SSLError) as exc:
            if self.state is LinkState.CONNECTED:
                self.lost(f"connection lost ({type(exc).__name__}: {exc})")
            else:
                self._lost_while_connecting(exc)
        return []

    def check_time(self, now: float) -> None:
        """On the supervisor's tick: a connect that takes too long, a link gone silent."""
        if self.state in (LinkState.CONNECTING, LinkState.HANDSHAKING, LinkState.UPGRADING):
            if now >= self.deadline and self.sock is None:
                self._failed(f"looking up ASTERISK_HOST {self.host!r} took too long")
            elif now >= self.deadline:
                self._lost_while_connecting(TimeoutError(f"no answer within {CONNECT_TIMEOUT:.0f} s"))
        elif self.state is LinkState.CONNECTED and self.protocol is not None:
            if self.connected_at is not None and now - self.connected_at >= STABLE_AFTER:
                self.backoff = BACKOFF_START
                self.connected_at = None
            if self.pinged_at is None and now - self.last_heard >= PING_AFTER:
                self.pinged_at = now
                self.protocol.send_ping(b"callbridge")
                self._queue_output()
            elif self.pinged_at is not None and now - self.pinged_at >= PING_TIMEOUT:
                self.lost(f"Asterisk did not answer a ping within {PING_TIMEOUT:.0f} s")

    def _finish_tcp(self) -> None:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, errno.errorcode.get(err, str(err)))
        if self.tls:
            self.sock = self._tls_context.wrap_socket(
                self.sock, server_hostname=self.host, do_handshake_on_connect=False
            )
            self.state = LinkState.HANDSHAKING
        else:
            self._start_upgrade()

    def _tls_step(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_wants_write = False
            return
        except ssl.SSLWantWriteError:
            self._tls_wants_write = True
            return
        self._start_upgrade()

    def _start_upgrade(self) -> None:
        self.protocol = ClientProtocol(parse_uri(self.url), max_size=MAX_EVENT)
        request = self.protocol.connect()
        request.headers["Authorization"] = self._authorization
        self.protocol.send_request(request)
        self.state = LinkState.UPGRADING
        self._queue_output()

    # --- bytes in and out

    def _queue_output(self) -> None:
        for chunk in self.protocol.data_to_send():
            self.out += chunk
        if self.sock is not None and self.out:
            try:
                self._flush()
            except (OSError, ssl.SSLError) as exc:
                self.lost(f"connection lost ({type(exc).__name__}: {exc})")

    def _flush(self) -> None:
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            del self.out[:sent]

    def _receive(self) -> list[dict]:
        events: list[dict] = []
        while self.sock is not None:
            try:
                data = self.sock.recv(READ_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            self.last_heard = time.monotonic()
            self.pinged_at = None
            if not data:
                self.protocol.receive_eof()
                self._handle(events)
                if self.state is not LinkState.DISCONNECTED:
                    self.lost("Asterisk closed the events connection")
                break
            self.protocol.receive_data(data)
            self._handle(events)
        if self.sock is not None and self.protocol is not None:
            self._queue_output()  # pongs, the close handshake
        return events

    def _handle(self, events: list[dict]) -> None:
        for item in self.protocol.events_received():
            if isinstance(item, Response):
                self._upgraded()
            elif isinstance(item, Frame):
                self._frame(item, events)
        if self.state is not LinkState.DISCONNECTED and self.protocol.close_expected():
            self._queue_output()  # our half of the close handshake, before we close
            self.lost("Asterisk closed the events connection")

    def _upgraded(self) -> None:
        exc = self.protocol.handshake_exc
        if exc is not None:
            return self._lost_while_connecting(exc)
        self.state = LinkState.CONNECTED
        self.connected_at = time.monotonic()
        self.connects += 1
        self.last_error = ""
        self.last_heard = time.monotonic()
        self.pinged_at = None
        log.info("ARI events connected to %s", self.url)

    def _frame(self, frame: Frame, events: list[dict]) -> None:
        if frame.opcode is Opcode.TEXT or (frame.opcode is Opcode.CONT and self._fragments is not None):
            if frame.opcode is Opcode.TEXT:
                self._fragments = []
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            raw, self._fragments = b"".join(self._fragments), None
            try:
                event = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("ARI events: ignoring a frame that is not JSON")
                return
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                events.append(event)
            else:
                log.warning("ARI events: ignoring a JSON frame without a type")
        elif frame.opcode is Opcode.BINARY:
            log.warning("ARI events: ignoring a binary frame")

    # --- losing it

    def _lost_while_connecting(self, exc: BaseException) -> None:
        self.close()
        self._failed(describe_connect_error(exc))

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("ARI events: %s; retrying with backoff (at most %.0f s)", reason, BACKOFF_CAP)
        self.last_error = reason
        self.state = LinkState.DISCONNECTED
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_CAP)

    def resolve_failed(self, reason: str) -> None:
        self._failed(reason)

    def replaced(self) -> None:
        """Another client subscribed with our app name and Asterisk now sends it our events:
        two instances share an ARI_APP_NAME (each must have its own). Drop the link and come
        back after the longest backoff, loudly, rather than sit connected and deaf."""
        self.backoff = BACKOFF_CAP
        self.lost("another program took the ARI app's events (two instances with one ARI_APP_NAME?)")

    def lost(self, reason: str) -> None:
        self.close()
        self._failed(reason)

    def close(self) -> None:
        if self.sock is not None:
            if self._on_close is not None:
                self._on_close(self.sock)
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.protocol = None
        self.out.clear()
        self.state = LinkState.DISCONNECTED


def describe_connect_error(exc: BaseException) -> str:
    status = exc.response.status_code if isinstance(exc, InvalidStatus) else getattr(exc, "status_code", None)
    if status == 401:
        return "ARI refused the credentials (check ASTERISK_USERNAME and ASTERISK_PASSWORD)"
    if status:
        return f"ARI answered HTTP {status} to the events upgrade (is ARI enabled in ari.conf/http.conf?)"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused (is Asterisk running, and ASTERISK_HOST/ASTERISK_PORT right?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({exc.verify_message})"
    return f"{type(exc).__name__}: {exc}"
