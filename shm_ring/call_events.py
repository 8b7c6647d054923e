"""The per-call event channel from the supervisor to its worker: what Asterisk says about the
call that the worker must hear (today a key press; later events join it). Part of the
cross-process contract, like the segment's header (shm_ring/header.py).

A `socketpair(AF_UNIX, SOCK_SEQPACKET)` made before the fork: the supervisor keeps one end,
the worker the other. One message is one datagram of UTF-8 JSON, an object with a `type`:

    {"type": "dtmf", "digit": "5"}       a key press on the caller's channel (0-9 * # A-D)

The supervisor's end is non-blocking: a worker that does not read cannot stall the
supervisor's loop (a full channel drops the message, counted and logged there). A message
the worker cannot read, or of a type it does not know, is logged and skipped.
"""

from __future__ import annotations

import json
import socket

MAX_MESSAGE = 512
DIGITS = frozenset("0123456789*#ABCD")
KINDS = {"dtmf": ("digit",)}


class EventError(ValueError):
    """A datagram that is not one of the messages above."""


def pair() -> tuple[socket.socket, socket.socket]:
    """(the supervisor's end, the worker's end)."""
    supervisor, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    supervisor.setblocking(False)
    worker.setblocking(False)
    return supervisor, worker


def dtmf(digit: str) -> dict:
    if digit not in DIGITS:
        raise EventError(f"not a key: {digit[:8]!r}")
    return {"type": "dtmf", "digit": digit}


def send(sock: socket.socket, message: dict) -> bool:
    """False when the worker's end is full or gone (the message is dropped)."""
    try:
        sock.send(json.dumps(message, separators=(",", ":")).encode())
        return True
    except (BlockingIOError, BrokenPipeError, ConnectionResetError, OSError):
        return False


def receive(sock: socket.socket) -> tuple[list[dict | EventError], bool]:
    """Every message waiting (non-blocking), one that cannot be read as an EventError in its
    place; and False once the supervisor's end is closed (stop watching it: it would read as
    ready for ever)."""
    found: list[dict | EventError] = []
    while True:
        try:
            data = sock.recv(MAX_MESSAGE + 1)
        except (BlockingIOError, InterruptedError):
            return found, True
        except OSError:
            return found, False
        if not data:
            return found, False
        found.append(_decode(data))


def _decode(data: bytes) -> dict | EventError:
    if len(data) > MAX_MESSAGE:
        return EventError("a message longer than the channel's limit")
    try:
        message = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return EventError("not JSON")
    if not isinstance(message, dict) or message.get("type") not in KINDS:
        return EventError("not a known event")
    if any(not isinstance(message.get(key), str) for key in KINDS[message["type"]]):
        return EventError(f"a {message['type']} event without its fields")
    if message["type"] == "dtmf" and message["digit"] not in DIGITS:
        return EventError("not a key")
    return message
