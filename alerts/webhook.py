"""The webhook channel: one POST of JSON per notice.

Two forms (ALERT_WEBHOOKS): `slack:URL` posts Slack's incoming-webhook shape
(`{"text": ...}`, also understood by Mattermost, Rocket.Chat and Teams' Slack-compatible
hooks); `json:URL` (or a bare URL) posts the notice's fields for programs of your own.
A Slack webhook URL is itself the credential, so a URL is never logged or shown: a channel
is named by its form and position ("webhook 2 (slack)").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from alerts.conditions import Notice
from callbridge.secret import Secret

TIMEOUT = (5.0, 10.0)  # connect, read: a receiver slower than this loses nothing but time
FORMS = ("slack", "json")
_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "event": ":information_source:"}


@dataclass(frozen=True)
class Webhook:
    url: Secret
    form: str = "json"
    index: int = 1

    @classmethod
    def parse_list(cls, text: str) -> tuple[Webhook, ...]:
        """Comma-separated `[slack:|json:]http(s)://...`; raises ValueError (never quoting a URL)."""
        hooks = []
        for position, item in enumerate((part.strip() for part in text.split(",") if part.strip()), 1):
            form, sep, rest = item.partition(":")
            if sep and form in FORMS and not rest.startswith("//"):
                url = rest
            else:
                form, url = "json", item
            if not (url.startswith("http://") or url.startswith("https://")) or " " in url:
                raise ValueError(f"webhook {position} must be [slack:|json:]http(s)://HOST/PATH")
            hooks.append(cls(Secret(url), form, position))
        return tuple(hooks)

    @property
    def name(self) -> str:
        return f"webhook {self.index} ({self.form})"

    def body(self, notice: Notice, instance: str) -> dict:
        if self.form == "slack":
            return {"text": f"{_EMOJI.get(notice.kind, '')} callbridge {instance}: {notice.text}".strip()}
        return {
            "source": "callbridge",
            "instance": instance,
            "key": notice.key,
            "kind": notice.kind,
            "severity": notice.severity,
            "text": notice.text,
            "at": round(time.time(), 3),
        }

    def send(self, notice: Notice, instance: str) -> tuple[bool, str]:
        """(delivered, what happened in a few words; never the URL)."""
        try:
            # stream=True: the status is all we need; the body is never read (a receiver could
            # send gigabytes, or a byte a second: alerts/send.py bounds the whole delivery).
            reply = requests.post(
                self.url.reveal(),
                json=self.body(notice, instance),
                timeout=TIMEOUT,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            return False, type(exc).__name__  # its message repeats the URL
        status = reply.status_code
        reply.close()
        return 200 <= status < 300, f"HTTP {status}"

    def __str__(self) -> str:
        return f"{self.form}:{self.url}"  # masked: callbridge config shows the form only
