"""A WebSocket driven by the call's media loop, over websockets' sans-I/O protocol.

Opening is blocking and bounded (`open_link`, run by an opener thread: TCP, TLS and the
HTTP upgrade, each step given what is left of one deadline). Once open, the link never
blocks: the media loop reads it at its 20 ms ticks and writes to it whenever it has
something to send, over a non-blocking socket. websockets' own sync client would add a
background thread that wakes for every message (and a keepalive thread); in a loop that
already wakes every 20 ms, reading at the tick costs no wake-up at all.

Every wait stays bounded, because a frozen service (TCP accepted, nothing moving) must
cost a call seconds, not the rest of the call:
- silence: after PING_INTERVAL with nothing heard, a ping; nothing heard for PING_TIMEOUT
  more and the link is lost (websockets' default of 20 s + 20 s is far too long for a
  caller listening to dead air);
- a peer that stops reading: what we could not send waits in `out`; more than MAX_PENDING
  of it, or none of it moving for SEND_TIMEOUT, and the link is lost;
- closing: one close frame, sent if the socket takes it, and the socket closed at once.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode, apply_mask
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

PING_INTERVAL = 2.0
PING_TIMEOUT = 2.5  # a frozen service is noticed within PING_INTERVAL + PING_TIMEOUT = 4.5 s
SEND_TIMEOUT = 3.0
MAX_PENDING = 1 << 20  # bytes; about a minute of caller audio
MAX_MESSAGE = 16 * 1024 * 1024
READ_CHUNK = 65536
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_tls_context: ssl.SSLContext | None = None  # loading the CA bundle costs ms: once per process
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")
MASK_POOL = 4096  # bytes of os.urandom per refill: 1024 frames' masking keys, one syscall


@dataclass(frozen=True)
class Closed:
    """Why the link ended: the peer's close code (None when there was none) and a reason."""

    code: int | None
    reason: str


def open_link(url: str, headers: dict[str, str], timeout: float) -> WsLink:
    """Connect, upgrade and return an open link. Raises OSError, TimeoutError or
    websockets' InvalidHandshake (InvalidStatus carries the HTTP status)."""
    global _tls_context
    deadline = time.monotonic() + timeout
    uri = parse_uri(url)

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no WebSocket within {timeout:.1f} s")
        return remaining

    sock = socket.create_connection((uri.host, uri.port), timeout=left())
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if uri.secure:
            if _tls_context is None:
                _tls_context = ssl.create_default_context()
            sock.settimeout(left())
            sock = _tls_context.wrap_socket(sock, server_hostname=uri.host)
        protocol = ClientProtocol(uri, max_size=MAX_MESSAGE)  # no extensions: no deflate
        request = protocol.connect()
        for name, value in headers.items():
            request.headers[name] = value
        protocol.send_request(request)
        for chunk in protocol.data_to_send():
            sock.settimeout(left())
            sock.sendall(chunk)
        early: list[Frame] = []
        upgraded = False
        while not upgraded:
            sock.settimeout(left())
            data = sock.recv(READ_CHUNK)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            for event in protocol.events_received():
                if isinstance(event, Response):
                    if protocol.handshake_exc is not None:
                        raise protocol.handshake_exc
                    upgraded = True
                elif isinstance(event, Frame):
                    early.append(event)  # a message that came with the upgrade's reply
            if not data and not upgraded:
                raise InvalidHandshake("connection closed during the upgrade")
        sock.setblocking(False)
        return WsLink(sock, protocol, early)
    except BaseException:
        sock.close()
        raise


class WsLink:
    """One open WebSocket. Used by one thread at a time (the opener hands it over)."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, early: list[Frame] = ()) -> None:
        self.sock = sock
        self.protocol = protocol
        self.out = bytearray()
        self.closed: Closed | None = None
        now = time.monotonic()
        self.last_heard = now
        self.pinged_at: float | None = None
        self.stalled_since: float | None = None  # `out` not moving
        # TLS wants to read before it can write on: the socket reads writable all the while,
        # so the media loop leaves the link out of its write set until the next read (under
        # SCHED_FIFO a select() that returns at once would spin until the tick).
        self.wants_read = False
        self._fragments: list[bytes] | None = None
        self._text = False
        self._early = list(early)
        self._kept: list[tuple[bool, bytes]] = []  # read before the loop had the link (`keep`)
        self._masks = b""
        self._mask_at = 0
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._tls = isinstance(sock, ssl.SSLSocket)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        return bool(self.out) and self.closed is None

    # --- out

    def send_text(self, text: str | bytes) -> bool:
        """Queue one text message (str, or bytes already UTF-8) and send what the socket
        takes now; False once closed.

        Data frames are framed here rather than by websockets' protocol object, whose
        Python-level frame building cost more than the rest of a caller frame's path (see
        bench/media_bench.py); it needs no word of them, since we never fragment. Both
        write into `out` in call order, so pings, pongs and the close keep their place."""
        if self.closed is not None or self.protocol.state is not State.OPEN:
            return False  # (closing: the peer's close came with the upgrade; receive() says why)
        data = text if isinstance(text, bytes) else text.encode()
        size = len(data)
        at = self._mask_at
        if at + 4 > len(self._masks):
            # RFC 6455 wants each key from a strong source of entropy: one read for many.
            self._masks, at = os.urandom(MASK_POOL), 0
        mask = self._masks[at : at + 4]
        self._mask_at = at + 4
        out = self.out
        if size < 126:
            out += bytes((0x81, 0x80 | size))
        elif size < 65536:
            out += _HEAD16.pack(0x81, 0xFE, size)
        else:
            out += _HEAD64.pack(0x81, 0xFF, size)
        out += mask
        out += apply_mask(data, mask)
        self.flush()
        return self.closed is None

    def _queue(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.out += chunk
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes (the loop calls it again once it is writable)."""
        out = self.out
        self.wants_read = False
        try:
            while out:
                sent = self.sock.send(out)
                del out[:sent]
                self.stalled_since = None
        except _WOULD_BLOCK as exc:
            self.wants_read = isinstance(exc, ssl.SSLWantReadError)
            if self.stalled_since is None:
                self.stalled_since = time.monotonic()
            if len(out) > MAX_PENDING:
                self._lose(None, f"the service stopped reading ({len(out)} bytes waiting)")
        except OSError as exc:
            self._lose(None, f"send failed: {exc}")

    # --- in

    def keep(self, messages: list[tuple[bool, bytes]]) -> None:
        """Messages an opener read past the one it waited for (GPT-Live's session.started):
        `receive` returns them first, so the loop sees every message in order."""
        self._kept = list(messages) + self._kept

    def readable(self) -> bool:
        """Whether `receive` has anything to do: asked at each tick, it costs one poll(0)
        instead of a failed recv() and its exception."""
        if self._kept:
            return True
        if self._early or self.closed is not None:
            return bool(self._early)
        return bool(self._poll.poll(0)) or (self._tls and self.sock.pending() > 0)

    def receive(self) -> list[tuple[bool, bytes]]:
        """Everything that arrived, as (is_text, payload) messages; sets `closed` when the
        connection ended (the messages before the end are still returned)."""
        messages, self._kept = self._kept, []
        if self._early:
            for frame in self._early:
                self._frame(frame, messages)
            self._early = []
            if self.protocol.close_expected():
                self._queue()
                self._lose(self.protocol.close_code, self.protocol.close_reason or "closed")
        self.wants_read = False  # whatever TLS wanted to read, it gets it now
        while self.closed is None:
            try:
                data = self.sock.recv(READ_CHUNK)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                self._lose(None, f"receive failed: {exc}")
                break
            self.last_heard = time.monotonic()
            self.pinged_at = None
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    self._frame(event, messages)
            if self.protocol.close_expected() or not data:
                self._queue()  # our half of the close handshake
                code = self.protocol.close_code
                reason = self.protocol.close_reason or ("closed" if data else "connection closed")
                self._lose(code, reason)
                break
        if self.closed is None:
            self._queue()  # pongs
        return messages

    def _frame(self, frame: Frame, messages: list[tuple[bool, bytes]]) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                messages.append((opcode is Opcode.TEXT, bytes(frame.data)))
            else:
                self._fragments, self._text = [bytes(frame.data)], opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                messages.append((self._text, b"".join(self._fragments)))
                self._fragments = None

    # --- time

    def check_time(self, now: float) -> None:
        """(at each tick) Keepalive and a peer that stopped reading."""
        if self.closed is not None:
            return
        if self.stalled_since is not None and now - self.stalled_since > SEND_TIMEOUT:
            self._lose(None, f"nothing could be sent for {SEND_TIMEOUT:.0f} s")
        elif self.pinged_at is None and now - self.last_heard >= PING_INTERVAL:
            self.pinged_at = now
            self.protocol.send_ping(b"cb")
            self._queue()
        elif self.pinged_at is not None and now - self.pinged_at >= PING_TIMEOUT:
            self._lose(None, f"no answer to a ping within {PING_TIMEOUT:.1f} s")

    # --- the end

    def _lose(self, code: int | None, reason: str) -> None:
        if self.closed is None:
            self.closed = Closed(code, reason)
        self._close_socket()

    def close(self) -> None:
        """Our end of the conversation: a close frame if the socket takes it now, no wait."""
        if self.closed is None:
            self.closed = Closed(None, "closed by callbridge")
            try:
                self.protocol.send_close(1000)
                for chunk in self.protocol.data_to_send():
                    if chunk:
                        self.sock.send(chunk)
            except Exception:  # a broken or full socket: the peer sees the TCP close instead
                pass
        self._close_socket()

    def _close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
