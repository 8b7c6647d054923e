"""The server side of RFC 6455, just enough for the simulated ARI events socket.

The simulated Asterisk serves REST and the events WebSocket on one port, as Asterisk
does; `http.server` handles the REST, and this module finishes the upgrade and frames
text messages. Server frames are unmasked; client frames are masked and are only read
for close and ping.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def accept_key(client_key: str) -> str:
    return base64.b64encode(hashlib.sha1((client_key + _GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


class ServerSocket:
    """A WebSocket whose handshake is done; `send_text` is thread-safe."""

    def __init__(self, sock: socket.socket, rfile) -> None:
        self.sock = sock
        self.rfile = rfile
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def send_text(self, text: str) -> bool:
        return self._send(OP_TEXT, text.encode())

    def _send(self, opcode: int, payload: bytes) -> bool:
        if self.closed.is_set():
            return False
        try:
            with self._lock:
                self.sock.sendall(frame(opcode, payload))
            return True
        except OSError:
            self.closed.set()
            return False

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._send(OP_CLOSE, struct.pack("!H", code) + reason.encode())
        self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed or restarted Asterisk)."""
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_exact(self, count: int) -> bytes:
        data = self.rfile.read(count)
        if len(data) < count:
            raise ConnectionError("peer closed")
        return data

    def serve_until_closed(self) -> None:
        """Read client frames (answer pings, stop at close) until the connection ends."""
        try:
            while not self.closed.is_set():
                first, second = self._read_exact(2)
                opcode, size = first & 0x0F, second & 0x7F
                if size == 126:
                    size = struct.unpack("!H", self._read_exact(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", self._read_exact(8))[0]
                mask = self._read_exact(4) if second & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read_exact(size)))
                if opcode == OP_CLOSE:
                    self._send(OP_CLOSE, payload[:2])
                    break
                if opcode == OP_PING:
                    self._send(OP_PONG, payload)
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self.closed.set()
