"""ARI REST calls that callbridge makes, over one keep-alive HTTP connection.

Credentials travel in the Authorization header (never in a URL), and errors name the
method, the path and the status without any secret. DELETEs treat 404 as success,
because teardown is idempotent by design.

The client is the standard library's `http.client`, not `requests`: a call's set-up makes
four requests and its teardown three, and `requests` spends about 1 ms of CPU on each
against 0.3 ms here (measured in docs/performance.md, "Set-up"). One `AriRest` holds one
connection and is used by one thread at a time. A connection the server closed while it
was idle (Asterisk's session_keep_alive, 15 s by default) is noticed before the next
request goes out and replaced, as urllib3 does; a request that fails once sent is never
sent again (an originate must not dial twice).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import socket
import ssl
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from callbridge.secret import Secret

log = logging.getLogger(__name__)


class AriError(Exception):
    """An ARI request failed; `status` is the HTTP status or None for a network failure."""

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        super().__init__(f"ARI {method} {path} failed: {detail}")
        self.method = method
        self.path = path
        self.status = status


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class AriRest:
    def __init__(self, base_url: str, username: str, password: Secret, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path
        self.timeout = timeout
        token = base64.b64encode(f"{username}:{password.reveal()}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}", "User-Agent": "callbridge"}
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Readable while idle means the server closed it (or sent what nobody asked
            # for): either way it cannot carry the next request.
            try:
                if not select.select([connection.sock], [], [], 0)[0]:
                    return connection
            except (OSError, ValueError):
                pass
            connection.close()
        if self._tls:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._connection = connection
        return connection

    def request(self, method: str, path: str, params: dict | None = None, missing_ok: bool = False) -> Any:
        target = self._prefix + quote(path, safe="/,@:;=+")
        if params:
            target += "?" + urlencode({key: _query_value(value) for key, value in params.items()})
        try:
            connection = self._connect()
            connection.request(method, target, headers=self._headers)
            reply = connection.getresponse()
            status, content = reply.status, reply.read()
            if reply.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            # The exception's text can hold the host but never the password (header auth).
            self.close()
            detail = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else str(exc)
            raise AriError(method, path, None, f"{type(exc).__name__}: {detail}") from None
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            message = ""
            try:
                body = json.loads(content)
                message = (body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""
            except ValueError:
                message = content[:200].decode("utf-8", "replace")
            hint = " (check ASTERISK_USERNAME and ASTERISK_PASSWORD)" if status == 401 else ""
            raise AriError(method, path, status, f"HTTP {status} {message}{hint}".strip())
        if status == 204 or not content:
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise AriError(method, path, status, "reply is not JSON") from None

    # --- the calls used by callbridge

    def info(self) -> dict:
        return self.request("GET", "/asterisk/info")

    def application(self, name: str) -> dict | None:
        """The Stasis app while some client holds its events connection, else None."""
        return self.request("GET", f"/applications/{name}", missing_ok=True)

    def channels(self) -> list[dict]:
        return self.request("GET", "/channels")

    def bridges(self) -> list[dict]:
        return self.request("GET", "/bridges")

    def answer(self, channel_id: str) -> None:
        self.request("POST", f"/channels/{channel_id}/answer")

    def external_media(self, app: str, channel_id: str, external_host: str, fmt: str, data: str) -> dict:
        return self.request(
            "POST",
            "/channels/externalMedia",
            {
                "app": app,
                "channelId": channel_id,
                "external_host": external_host,
                "format": fmt,
                "encapsulation": "rtp",
                "transport": "udp",
                "connection_type": "client",
                "direction": "both",
                "data": data,
            },
        )

    def create_bridge(self, bridge_id: str, name: str) -> dict:
        return self.request("POST", "/bridges", {"type": "mixing", "bridgeId": bridge_id, "name": name})

    def add_channels(self, bridge_id: str, channel_ids: list[str]) -> None:
        self.request("POST", f"/bridges/{bridge_id}/addChannel", {"channel": ",".join(channel_ids)})

    def play(self, channel_id: str, media: str, playback_id: str) -> dict:
        return self.request(
            "POST", f"/channels/{channel_id}/play", {"media": media, "playbackId": playback_id}
        )

    def playback(self, playback_id: str) -> dict | None:
        return self.request("GET", f"/playbacks/{playback_id}", missing_ok=True)

    def set_variable(self, channel_id: str, name: str, value: str) -> None:
        self.request("POST", f"/channels/{channel_id}/variable", {"variable": name, "value": value})

    def variable(self, channel_id: str, name: str) -> str | None:
        """A channel variable's value; None when it is not set (Asterisk answers 404)."""
        reply = self.request("GET", f"/channels/{channel_id}/variable", {"variable": name}, missing_ok=True)
        return None if reply is None else str(reply.get("value", ""))

    def channel(self, channel_id: str) -> dict | None:
        return self.request("GET", f"/channels/{channel_id}", missing_ok=True)

    def originate(
        self,
        endpoint: str,
        app: str,
        channel_id: str,
        app_args: str,
        timeout: float,
        caller_id: str = "",
        originator: str = "",
    ) -> dict:
        """Dial `endpoint` (e.g. `Local/100@from-internal/n`); once answered the channel
        enters `app` with `app_args`. Asterisk gives up after `timeout` seconds of ringing."""
        params = {
            "endpoint": endpoint,
            "app": app,
            "appArgs": app_args,
            "channelId": channel_id,
            "timeout": max(1, round(timeout)),
        }
        if caller_id:
            params["callerId"] = caller_id
        if originator:  # the caller's channel: Asterisk links the two (CDRs, linkedid)
            params["originator"] = originator
        return self.request("POST", "/channels", params)

    def continue_in_dialplan(self, channel_id: str, context: str, extension: str, priority: int = 1) -> None:
        """The channel leaves Stasis for this place in the dialplan (a fallback, a blind
        transfer): Asterisk answers at once and cannot say what happens there."""
        self.request(
            "POST",
            f"/channels/{channel_id}/continue",
            {"context": context, "extension": extension, "priority": priority},
        )

    def hangup(self, channel_id: str) -> None:
        self.request("DELETE", f"/channels/{channel_id}", missing_ok=True)

    def delete_bridge(self, bridge_id: str) -> None:
        self.request("DELETE", f"/bridges/{bridge_id}", missing_ok=True)
