"""Sending one e-mail through the operator's SMTP server: the one place callbridge speaks
SMTP, for the alerts (alerts/email.py) and the post-call summaries (summaries/mail.py).

The server and account are ALERT_SMTP_URL's (callbridge/alert_settings.py::Email): smtp://
speaks STARTTLS (refused when the server does not offer it: a password never goes in the
clear), smtps:// TLS from the start. Certificates are checked against the system's CAs, or
ALERT_SMTP_CA_FILE for a private CA. What it returns never holds the URL or the password.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote

from callbridge.alert_settings import SMTP_SCHEMES, Email
from callbridge.deadline import DeadlineExceeded

TIMEOUT = 15.0  # seconds per SMTP step; a slower server costs the sending helper, never a call


def send(email: Email, message: EmailMessage) -> tuple[bool, str]:
    """(delivered, what happened in a few words; never the URL or the password)."""
    parts = email.parts
    port = parts.port or SMTP_SCHEMES[parts.scheme]
    try:
        context = ssl.create_default_context(cafile=email.ca_file or None)  # a CA file gone: OSError
        if parts.scheme == "smtps":
            client = smtplib.SMTP_SSL(parts.hostname, port, timeout=TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(parts.hostname, port, timeout=TIMEOUT)
        try:
            client.ehlo()
            if parts.scheme == "smtp":
                if not client.has_extn("starttls"):
                    return False, "the server offers no STARTTLS: not sending the password in clear"
                client.starttls(context=context)
                client.ehlo()
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            refused = client.send_message(message)
        except BaseException:
            client.close()
            raise
        # Taken: whatever QUIT answers (or a deadline cutting it short) must not make the
        # caller send it again.
        try:
            client.quit()
        except (smtplib.SMTPException, OSError, ssl.SSLError, DeadlineExceeded):
            client.close()
    except smtplib.SMTPAuthenticationError as exc:
        return False, f"login refused ({exc.smtp_code})"
    except smtplib.SMTPResponseException as exc:
        return False, f"SMTP {exc.smtp_code}"
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return False, type(exc).__name__
    if refused:  # taken for the others (all refused raises above): sending again would repeat it
        taken = len(email.recipients) - len(refused)
        return True, f"sent to {taken} recipients; {len(refused)} refused by the server"
    return True, f"sent to {len(email.recipients)} recipients"
