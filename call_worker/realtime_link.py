"""Opening the WebSocket to the Realtime service, and telling why it failed.

A failure is either fatal for this configuration (bad key, unknown model, beta shape
refused: retrying would only hammer the service) or worth a retry (network, 5xx, slow
accept). The key goes in the Authorization header only; the URL we log holds no secret.

Every wait on the connection is bounded, because a frozen service (TCP accepted, nothing
moving) must cost a call seconds, not the rest of the call: the handshake (`timeout`),
the close (CLOSE_TIMEOUT), a send the peer does not read (SEND_TIMEOUT), and silence
itself (a ping every PING_INTERVAL that must be answered within PING_TIMEOUT; websockets'
default of 20 s + 20 s is far too long for a caller listening to dead air).
"""

from __future__ import annotations

import logging

from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from callbridge.config import Settings

log = logging.getLogger(__name__)

PING_INTERVAL = 2.0
PING_TIMEOUT = 2.5
CLOSE_TIMEOUT = 1.5
# A frozen service is noticed within PING_INTERVAL + PING_TIMEOUT + CLOSE_TIMEOUT = 6 s.
SEND_TIMEOUT = 3.0  # a send blocks only when the peer stopped reading: the peer is gone


class RealtimeConnectError(Exception):
    def __init__(self, message: str, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


def connect_realtime(settings: Settings, timeout: float = 10.0) -> ClientConnection:
    headers = {"Authorization": f"Bearer {settings.openai_api_key.reveal()}"}
    if settings.openai_api_shape == "beta":
        headers["OpenAI-Beta"] = "realtime=v1"
    url = settings.realtime_url
    try:
        ws = connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            max_size=16 * 1024 * 1024,
            compression=None,  # audio is base64: deflate costs CPU and saves little
            user_agent_header="callbridge",
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        fatal = status in (401, 403, 404)
        what = {
            401: "the API key was refused (OPENAI_API_KEY)",
            403: "access denied for this key",
            404: f"unknown model or URL ({url})",
        }.get(status, f"HTTP {status}")
        raise RealtimeConnectError(f"Realtime handshake failed: {what}", fatal) from None
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise RealtimeConnectError(f"cannot reach {url}: {type(exc).__name__}: {exc}", False) from None
    # websockets writes with sendall() while holding the connection's lock, so one send
    # that never completes would also stop the keepalive pings that detect the freeze. Its
    # reader waits in select() before each recv(), so the timeout does not touch reads.
    try:
        ws.socket.settimeout(SEND_TIMEOUT)
    except OSError:
        pass  # already closed by the peer (a refusal comes at once): recv() reports why
    return ws
