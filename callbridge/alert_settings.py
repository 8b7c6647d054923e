"""The alerts' settings, as values: when a condition is an alert (ALERT_*), and where a
notice goes (ALERT_WEBHOOKS, ALERT_SMTP_URL and the ALERT_EMAIL_* addresses).

They are settings, parsed and checked when the configuration loads (callbridge/config.py),
so they live in the base; sending is the alerts' own (alerts/email.py, alerts/webhook.py,
alerts/send.py), which take these values.

ALERT_SMTP_URL names the server and the account: `smtp://USER:PASSWORD@HOST:587` speaks
STARTTLS (required: a server that does not offer it gets nothing, the password never goes
out in clear), `smtps://...:465` TLS from the first byte; `smtp+insecure://HOST:25` sends
without TLS or login, for a relay on the same host only. The URL holds a password: it is a
Secret, and the channel is named "e-mail (HOST)" in logs.

ALERT_WEBHOOKS has two forms: `slack:URL` posts Slack's incoming-webhook shape, `json:URL`
(or a bare URL) the notice's fields. A Slack webhook URL is itself the credential, so a URL
is never logged or shown: a channel is named by its form and position ("webhook 2 (slack)").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from callbridge.secret import Secret, register

SMTP_SCHEMES = {"smtp": 587, "smtps": 465, "smtp+insecure": 25}
WEBHOOK_FORMS = ("slack", "json")


@dataclass(frozen=True)
class Thresholds:
    """When a condition is an alert; the defaults are the ALERT_* settings' defaults."""

    ari_down_seconds: float = 30.0  # the ARI link may be down this long before it is an alert
    crashes: int = 3  # worker crashes ...
    crash_window_seconds: float = 600.0  # ... within this many seconds
    failed_ratio: float = 0.2  # failed calls over all calls above this fraction ...
    failed_min_calls: int = 5  # ... of at least this many calls ...
    failed_window_seconds: float = 900.0  # ... within this window (also: a refusal's lifetime)
    busy_window_seconds: float = 300.0  # callers turned away within this window
    shutdown_days: int = 30  # a configured model shuts down within this many days
    repeat_seconds: float = 900.0  # between two "firing" notices of one condition


@dataclass(frozen=True)
class Email:
    DEADLINE = 30.0  # seconds for one notice, STARTTLS and login included (alerts/send.py bounds it)

    url: Secret
    sender: str
    recipients: tuple[str, ...]
    ca_file: str = ""

    @staticmethod
    def check_url(text: str) -> Secret:
        """ALERT_SMTP_URL's parser: raises ValueError without quoting the URL (it has a password)."""
        value = text.strip()
        if not value:
            return Secret("")
        parts = urlsplit(value)
        if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
            raise ValueError(
                "must be smtp://USER:PASSWORD@HOST:587, smtps://...:465 or smtp+insecure://HOST:25"
            )
        if parts.scheme != "smtp+insecure" and not parts.username:
            raise ValueError("needs USER:PASSWORD@ (smtp+insecure:// for a local relay without login)")
        try:
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            raise ValueError("has a bad port") from None
        if parts.password:
            register(unquote(parts.password))  # redacted from every log line, alone too
        return Secret(value)

    @property
    def parts(self):
        return urlsplit(self.url.reveal())

    @property
    def name(self) -> str:
        return f"e-mail ({self.parts.hostname})"

    def __str__(self) -> str:
        return self.name


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
            if sep and form in WEBHOOK_FORMS and not rest.startswith("//"):
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

    def __str__(self) -> str:
        return f"{self.form}:{self.url}"  # masked: callbridge config shows the form only
