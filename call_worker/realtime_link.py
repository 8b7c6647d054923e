"""Opening the WebSocket to the Realtime service, and telling why it failed.

A failure is either fatal for this configuration (bad key, unknown model, beta shape
refused: retrying would only hammer the service) or worth a retry (network, 5xx, slow
accept). The key goes in the Authorization header only; the URL we log holds no secret.
"""

from __future__ import annotations

import logging

from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from callbridge.config import Settings

log = logging.getLogger(__name__)


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
        return connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            close_timeout=2,
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
