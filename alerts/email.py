"""The e-mail channel: one message per notice, over SMTP with STARTTLS and a login.

The channel's settings (ALERT_SMTP_URL and its schemes, ALERT_EMAIL_TO, a comma-separated
list of recipients, ALERT_EMAIL_FROM the sender) are a value of the base,
callbridge/alert_settings.py::Email. Certificates are checked against the system's CAs, or
ALERT_SMTP_CA_FILE for a private CA. Never the URL or the password in what it returns.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote

from alerts.conditions import Notice
from callbridge.alert_settings import SMTP_SCHEMES, Email

TIMEOUT = 15.0  # seconds per SMTP step; a slower server costs the alert helper, never a call


def message(email: Email, notice: Notice, instance: str) -> EmailMessage:
    message = EmailMessage()
    tag = {"firing": "ALERT", "resolved": "RESOLVED", "event": "INFO"}.get(notice.kind, notice.kind)
    message["Subject"] = f"[callbridge {instance}] {tag}: {notice.text[:120]}"
    message["From"] = email.sender
    message["To"] = ", ".join(email.recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("callbridge")
    message.set_content(
        f"{notice.text}\n\ninstance: {instance}\ncondition: {notice.key}\nkind: {notice.kind}\n"
        f"severity: {notice.severity}\n"
    )
    return message


def send(email: Email, notice: Notice, instance: str) -> tuple[bool, str]:
    """(delivered, what happened in a few words; never the URL or the password)."""
    parts = email.parts
    port = parts.port or SMTP_SCHEMES[parts.scheme]
    context = ssl.create_default_context(cafile=email.ca_file or None)
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
            refused = client.send_message(message(email, notice, instance))
    except smtplib.SMTPAuthenticationError as exc:
        return False, f"login refused ({exc.smtp_code})"
    except smtplib.SMTPResponseException as exc:
        return False, f"SMTP {exc.smtp_code}"
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return False, type(exc).__name__
    if refused:
        return False, f"{len(refused)} recipients refused"
    return True, f"sent to {len(email.recipients)} recipients"
