"""The webhook channel: one POST of JSON per notice.

Two forms (ALERT_WEBHOOKS, parsed into callbridge/alert_settings.py::Webhook): `slack:URL`
posts Slack's incoming-webhook shape (`{"text": ...}`, also understood by Mattermost,
Rocket.Chat and Teams' Slack-compatible hooks); `json:URL` (or a bare URL) posts the
notice's fields for programs of your own. A URL is never logged or returned.
"""

from __future__ import annotations

import time

import requests

from alerts.conditions import Notice
from callbridge.alert_settings import Webhook

TIMEOUT = (5.0, 10.0)  # connect, read: a receiver slower than this loses nothing but time
_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "event": ":information_source:"}


def body(hook: Webhook, notice: Notice, instance: str) -> dict:
    if hook.form == "slack":
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


def send(hook: Webhook, notice: Notice, instance: str) -> tuple[bool, str]:
    """(delivered, what happened in a few words; never the URL)."""
    try:
        # stream=True: the status is all we need; the body is never read (a receiver could
        # send gigabytes, or a byte a second: alerts/send.py bounds the whole delivery).
        reply = requests.post(
            hook.url.reveal(),
            json=body(hook, notice, instance),
            timeout=TIMEOUT,
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        return False, type(exc).__name__  # its message repeats the URL
    status = reply.status_code
    reply.close()
    return 200 <= status < 300, f"HTTP {status}"
