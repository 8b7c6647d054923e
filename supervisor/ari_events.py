"""The ARI events WebSocket, read from the supervisor's selector loop.

websocket-client does the handshake and framing (Basic auth in a header, never
`api_key=` in the URL, which would put the password into every logged URL). The socket is
registered in the selector; each readiness reads one frame. websocket-client reads a
frame's bytes exactly, never ahead, so level-triggered readiness never hides a buffered
event; a TLS socket's decrypted-but-unread bytes are checked with `pending()`.

After a loss the supervisor reconnects with capped exponential backoff; the connect
itself is bounded by a short timeout because it runs inside the loop.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from enum import Enum

import websocket

from callbridge.config import Settings

log = logging.getLogger(__name__)

BACKOFF_START, BACKOFF_CAP = 0.5, 10.0
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 1.0  # bounds a read that found only part of a frame


class LinkState(Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"


class AriEvents:
    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.ari_events_url}?app={settings.ari_app_name}&subscribeAll=false"
        token = base64.b64encode(
            f"{settings.asterisk_username}:{settings.asterisk_password.reveal()}".encode()
        ).decode()
        self._auth_header = f"Authorization: Basic {token}"
        self.ws: websocket.WebSocket | None = None
        self.state = LinkState.DISCONNECTED
        self.next_attempt = 0.0
        self.backoff = BACKOFF_START
        self.connects = 0
        self.last_error = ""

    def fileno(self) -> int:
        return self.ws.sock.fileno() if self.ws is not None and self.ws.sock is not None else -1

    def due(self, now: float) -> bool:
        return self.state is LinkState.DISCONNECTED and now >= self.next_attempt

    def connect(self) -> bool:
        try:
            ws = websocket.create_connection(
                self.url,
                timeout=CONNECT_TIMEOUT,
                header=[self._auth_header],
                enable_multithread=False,
                skip_utf8_validation=True,
            )
        except (OSError, websocket.WebSocketException) as exc:
            self._failed(describe_connect_error(exc))
            return False
        ws.settimeout(READ_TIMEOUT)
        self.ws = ws
        self.state = LinkState.CONNECTED
        self.backoff = BACKOFF_START
        self.connects += 1
        self.last_error = ""
        log.info("ARI events connected to %s", self.url)
        return True

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("ARI events: %s; retrying with backoff (at most %.0f s)", reason, BACKOFF_CAP)
        self.last_error = reason
        self.state = LinkState.DISCONNECTED
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_CAP)

    def read(self) -> list[dict]:
        """Events now readable (called when the selector says so); [] after a loss."""
        events = []
        while self.ws is not None:
            try:
                opcode, frame = self.ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                break
            except (OSError, websocket.WebSocketException) as exc:
                self.lost(f"connection lost ({type(exc).__name__}: {exc})")
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.lost("Asterisk closed the events connection")
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                try:
                    event = json.loads(frame.data)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    log.warning("ARI events: ignoring a frame that is not JSON")
                else:
                    if isinstance(event, dict) and isinstance(event.get("type"), str):
                        events.append(event)
                    else:
                        log.warning("ARI events: ignoring a JSON frame without a type")
            sock = self.ws.sock if self.ws is not None else None
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        return events

    def lost(self, reason: str) -> None:
        self.close()
        self._failed(reason)

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close(timeout=0.2)
            except (OSError, websocket.WebSocketException):
                pass
            self.ws = None
        self.state = LinkState.DISCONNECTED


def describe_connect_error(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if status == 401:
        return "ARI refused the credentials (check ASTERISK_USERNAME and ASTERISK_PASSWORD)"
    if status:
        return f"ARI answered HTTP {status} to the events upgrade (is ARI enabled in ari.conf/http.conf?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is Asterisk running, and ASTERISK_HOST/ASTERISK_PORT right?)"
    return f"{type(exc).__name__}: {exc}"
