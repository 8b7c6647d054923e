"""The e-mail channel: one message per notice, over SMTP with STARTTLS and a login.

ALERT_SMTP_URL names the server and the account: `smtp://USER:PASSWORD@HOST:587` speaks
STARTTLS (required: a server that does not offer it gets nothing, the password never goes
out in clear), `smtps://...:465` TLS from the first byte; `smtp+insecure://HOST:25` sends
without TLS or login, for a relay on the same host only. ALERT_EMAIL_TO is a comma-separated
list of recipients, ALERT_EMAIL_FROM the sender. Certificates are checked against the
system's CAs, or ALERT_SMTP_CA_FILE for a private CA.

The URL holds a password: it is a Secret, and the channel is named "e-mail (HOST)" in logs.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from alerts.conditions import Notice
from callbridge.secret import Secret, register

TIMEOUT = 15.0  # seconds per SMTP step; a slower server costs the alert helper, never a call
SCHEMES = {"smtp": 587, "smtps": 465, "smtp+insecure": 25}


@dataclass(frozen=True)
class Email:
    DEADLINE = 30.0  # seconds for one notice, STARTTLS and login included (alerts/send.py)

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
        if parts.scheme not in SCHEMES or not parts.hostname:
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
    def _parts(self):
        return urlsplit(self.url.reveal())

    @property
    def name(self) -> str:
        return f"e-mail ({self._parts.hostname})"

    def message(self, notice: Notice, instance: str) -> EmailMessage:
        message = EmailMessage()
        tag = {"firing": "ALERT", "resolved": "RESOLVED", "event": "INFO"}.get(notice.kind, notice.kind)
        message["Subject"] = f"[callbridge {instance}] {tag}: {notice.text[:120]}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid("callbridge")
        message.set_content(
            f"{notice.text}\n\ninstance: {instance}\ncondition: {notice.key}\nkind: {notice.kind}\n"
            f"severity: {notice.severity}\n"
        )
        return message

    def send(self, notice: Notice, instance: str) -> tuple[bool, str]:
        """(delivered, what happened in a few words; never the URL or the password)."""
        parts = self._parts
        port = parts.port or SCHEMES[parts.scheme]
        context = ssl.create_default_context(cafile=self.ca_file or None)
        try:
            if parts.scheme == "smtps":
                client = smtplib.SMTP_SSL(parts.hostname, port, timeout=TIMEOUT, context=context)
            else:
                client = smtplib.SMTP(parts.hostname, port, timeout=TIMEOUT)
            with client:
                client.ehlo()
                if parts.scheme == "smtp":
                    if not client.has_extn("starttls"):
                        return False, "the server offers no STARTTLS: not sending the password in clear"
                    client.starttls(context=context)
                    client.ehlo()
                if parts.username:
                    client.login(unquote(parts.username), unquote(parts.password or ""))
                refused = client.send_message(self.message(notice, instance))
        except smtplib.SMTPAuthenticationError as exc:
            return False, f"login refused ({exc.smtp_code})"
        except smtplib.SMTPResponseException as exc:
            return False, f"SMTP {exc.smtp_code}"
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return False, type(exc).__name__
        if refused:
            return False, f"{len(refused)} recipients refused"
        return True, f"sent to {len(self.recipients)} recipients"

    def __str__(self) -> str:
        return self.name
