"""ARI REST calls that callbridge makes, over one `requests.Session`.

Credentials travel in the Authorization header (never in a URL), and errors name the
method, the path and the status without any secret. DELETEs treat 404 as success,
because teardown is idempotent by design.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import requests

from callbridge.secret import Secret

log = logging.getLogger(__name__)


class AriError(Exception):
    """An ARI request failed; `status` is the HTTP status or None for a network failure."""

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        super().__init__(f"ARI {method} {path} failed: {detail}")
        self.method = method
        self.path = path
        self.status = status


def describe(exc: requests.RequestException) -> str:
    """A request's failure in a few words: requests' own text repeats the pool, the URL and
    every wrapped exception ("HTTPConnectionPool(host=...): Max retries exceeded ... (Caused
    by NewConnectionError(...))"), which says one thing in 300 characters."""
    text = str(exc)
    kind = type(exc).__name__
    for pattern in (
        r"certificate verify failed: ([^(')\]]+)",
        r"\[Errno -?\d+\] ([^'\")\]]+)",
        r"(Read timed out)",
    ):
        found = re.search(pattern, text)
        if found:
            return f"{kind}: {found.group(1).strip().rstrip('.')}"
    return kind


class AriRest:
    def __init__(
        self, base_url: str, username: str, password: Secret, timeout: float = 5.0, ca_file: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = (username, password.reveal())
        self.session.headers["User-Agent"] = "callbridge"
        # ASTERISK_CA_FILE: a private CA's certificates, instead of the bundle's. Passed with
        # each request: a session's own `verify` loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = ca_file or True

    @classmethod
    def for_settings(cls, settings, timeout: float = 5.0) -> AriRest:
        return cls(
            settings.ari_base_url,
            settings.asterisk_username,
            settings.asterisk_password,
            timeout=timeout,
            ca_file=settings.asterisk_ca_file,
        )

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, params: dict | None = None, missing_ok: bool = False) -> Any:
        try:
            # The path is quoted: an id with "?" or "#" must stay in its segment of the path,
            # and "+" is sent as %2B because ARI decodes a bare "+" in a path as a space.
            target = self.base_url + quote(path, safe="/,@:;=")
            reply = self.session.request(
                method, target, params=params, timeout=self.timeout, verify=self.verify
            )
        except requests.RequestException as exc:
            raise AriError(method, path, None, describe(exc)) from None
        if reply.status_code == 404 and missing_ok:
            return None
        if reply.status_code >= 400:
            message = ""
            try:
                message = reply.json().get("message") or reply.json().get("error") or ""
            except ValueError:
                message = reply.text[:200]
            hint = " (check ASTERISK_USERNAME and ASTERISK_PASSWORD)" if reply.status_code == 401 else ""
            raise AriError(
                method, path, reply.status_code, f"HTTP {reply.status_code} {message}{hint}".strip()
            )
        if reply.status_code == 204 or not reply.content:
            return None
        try:
            return reply.json()
        except ValueError:
            raise AriError(method, path, reply.status_code, "reply is not JSON") from None

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
        # dtmf_events: the caller's key presses still come as ChannelDtmfReceived once bridged
        # (a bridge without it may swallow them); the supervisor passes them to the worker.
        return self.request(
            "POST", "/bridges", {"type": "mixing,dtmf_events", "bridgeId": bridge_id, "name": name}
        )

    def add_channels(self, bridge_id: str, channel_ids: list[str]) -> None:
        self.request("POST", f"/bridges/{bridge_id}/addChannel", {"channel": ",".join(channel_ids)})

    def play(self, channel_id: str, media: str, playback_id: str) -> dict:
        return self.request(
            "POST", f"/channels/{channel_id}/play", {"media": media, "playbackId": playback_id}
        )

    def play_on_bridge(self, bridge_id: str, media: str, playback_id: str) -> dict:
        """A sound everyone in the bridge hears (a tool's hold sound), until `stop_playback`."""
        return self.request("POST", f"/bridges/{bridge_id}/play", {"media": media, "playbackId": playback_id})

    def stop_playback(self, playback_id: str) -> None:
        self.request("DELETE", f"/playbacks/{playback_id}", missing_ok=True)

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

    def hangup(self, channel_id: str, reason: str = "") -> None:
        """`reason`: ARI's hang-up reason (normal, busy, congestion...); Asterisk's default
        (normal clearing) when empty."""
        params = {"reason": reason} if reason else None
        self.request("DELETE", f"/channels/{channel_id}", params=params, missing_ok=True)

    def delete_bridge(self, bridge_id: str) -> None:
        self.request("DELETE", f"/bridges/{bridge_id}", missing_ok=True)
