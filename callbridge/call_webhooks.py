"""Call webhooks as values: where the call's events go (CALL_WEBHOOKS, an agent's own
`webhooks`), how a delivery is signed (CALL_WEBHOOK_SECRET), and how a receiver checks it.

A target is a URL, and a URL may be a credential (a token in its path or query), so it is a
`Secret`: never logged, shown or spooled. What the spool and the logs carry instead is the
target's key, the first 16 hex digits of the URL's SHA-256: the spool's per-target queue
is named by it (records/outbox.py), and the sender finds the URL again by it
(webhooks/sender.py). A target removed from the configuration leaves its queue without a
URL: its events wait, and go to `bad/` when their retry time is over.

The signature is Stripe's shape: `X-Callbridge-Signature: t=UNIX,v1=HEX`, where HEX is the
HMAC-SHA256, keyed with CALL_WEBHOOK_SECRET, of `t` (ASCII), a dot, and the body's exact
bytes. `t` is the time of that attempt, so a receiver that refuses old signatures (five
minutes, say) still takes a retry; the event's `id` is the same on every attempt, so a
receiver can drop one it has already seen.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from callbridge.agent_file_reader import Reader, dotted
from callbridge.http_tools import expand
from callbridge.secret import Secret, register

SIGNATURE_HEADER = "X-Callbridge-Signature"
EVENTS = ("call.started", "call.ended", "call.summary")
TOLERANCE = 300  # seconds: what `verify` accepts between a signature's t and now, by default


@dataclass(frozen=True)
class Target:
    url: Secret

    @property
    def key(self) -> str:
        return target_key(self.url.reveal())

    def __str__(self) -> str:
        return f"webhook {self.key}"  # the URL is never shown


def target_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def url_problem(url: str) -> str:
    """What is wrong with a webhook URL, or "" (never quoting it: it may hold a token)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return "must be an http:// or https:// URL with a host"
    if parts.fragment:
        return "must not have a #fragment"
    return ""


def parse_list(text: str) -> tuple[Target, ...]:
    """CALL_WEBHOOKS' parser: comma-separated URLs; raises ValueError naming the position only."""
    targets = []
    for position, url in enumerate((part.strip() for part in text.split(",") if part.strip()), 1):
        problem = url_problem(url)
        if problem:
            raise ValueError(f"webhook {position} {problem}")
        register(url)  # a token in it is redacted should the whole URL reach a log line
        targets.append(Target(Secret(url)))
    return tuple(dict.fromkeys(targets))  # the same URL twice is one target


def signature(secret: bytes, t: int, body: bytes) -> str:
    """The header's value for a body sent at `t`."""
    digest = hmac.new(secret, str(int(t)).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={int(t)},v1={digest}"


def verify(
    secret: bytes, header: str, body: bytes, tolerance: float = TOLERANCE, now: float | None = None
) -> bool:
    """A receiver's check (docs/operations.md has the same in a few lines): the signature is
    ours and no older than `tolerance` seconds."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = signature(secret, t, body).partition(",v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def read_agent_webhooks(r: Reader, where: tuple[str, ...], value: object, environ=None) -> tuple[Target, ...]:
    """An agent's `webhooks = ["https://...", ...]` (callbridge/agent_file.py): URLs that may
    name environment variables (`${HOOK_TOKEN}`) for their secret parts."""
    environ = os.environ if environ is None else environ
    key = dotted(*where, "webhooks")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        r.problem(key, 'must be a list of URLs: ["https://hooks.example.net/calls"]')
        return ()
    targets = []
    for position, url in enumerate(value, 1):
        expanded = expand(r, key, url.strip(), environ)
        if expanded is None:
            continue
        problem = url_problem(expanded.reveal())
        if problem:
            r.problem(key, f"webhook {position} {problem}")
            continue
        register(expanded.reveal())
        targets.append(Target(expanded))
    return tuple(dict.fromkeys(targets))
