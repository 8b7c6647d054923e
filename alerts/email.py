"""The e-mail channel: one message per notice, sent by callbridge/smtp.py (STARTTLS and a
login, certificates checked).

The channel's settings (ALERT_SMTP_URL and its schemes, ALERT_EMAIL_TO, a comma-separated
list of recipients, ALERT_EMAIL_FROM the sender) are a value of the base,
callbridge/alert_settings.py::Email. Never the URL or the password in what it returns.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from alerts.conditions import Notice
from callbridge import smtp
from callbridge.alert_settings import Email


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
    return smtp.send(email, message(email, notice, instance))
