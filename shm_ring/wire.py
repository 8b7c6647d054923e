"""The control socket's framing: a 4-byte big-endian length, then that many bytes of
UTF-8 JSON (an object). Used by the supervisor's server and by the CLI's client."""

from __future__ import annotations

import json
import socket
import struct

LENGTH = struct.Struct("!I")
MAX_MESSAGE = 1024 * 1024  # a status reply with hundreds of calls stays far below this


class WireError(Exception):
    """The peer sent something that is not a framed JSON object."""


def encode(message: dict) -> bytes:
    """Frame `message` (the server redacts its values first: callbridge/secret.py)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    return LENGTH.pack(len(data)) + data


def decode(data: bytes) -> dict:
    try:
        message = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireError(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise WireError("a request must be a JSON object")
    return message


def split_frames(buffer: bytearray) -> list[bytes]:
    """Remove and return every complete frame at the start of `buffer`; raises on an
    announced length over MAX_MESSAGE (a hostile or confused client)."""
    frames = []
    while len(buffer) >= LENGTH.size:
        (size,) = LENGTH.unpack_from(buffer)
        if size > MAX_MESSAGE:
            raise WireError(f"message of {size} bytes is over the {MAX_MESSAGE} limit")
        if len(buffer) < LENGTH.size + size:
            break
        frames.append(bytes(buffer[LENGTH.size : LENGTH.size + size]))
        del buffer[: LENGTH.size + size]
    return frames


def request(path: str, message: dict, timeout: float = 5.0) -> dict:
    """Client side: send one request, wait for its reply (raises OSError, WireError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(encode(message))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused us and hung up: its reason is waiting to be read
        buffer = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise WireError("the supervisor closed the connection without a reply")
            buffer += chunk
            frames = split_frames(buffer)
            if frames:
                return decode(frames[0])
