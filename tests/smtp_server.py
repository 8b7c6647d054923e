"""A real SMTP server (aiosmtpd) on loopback for the tests: STARTTLS with a certificate of
our own CA, a login, and an inbox to read what arrived; it has no mailbox `nobody@`. Used by the alerts' e-mail channel
(tests/test_alert_email.py) and the summaries' e-mail (tests/test_summaries.py)."""

from __future__ import annotations

from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from testenv import free_port

from callbridge.alert_settings import Email

USER, PASSWORD = "alerts@example.org", "smtp-Pa55word!"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):  # a mailbox the server does not have
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def smtp_server(certificate, starttls: bool = True):
    import ssl

    inbox = Inbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context if starttls else None,
        require_starttls=starttls,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=starttls,
    )
    controller.start()
    return controller, inbox


def smtp_channel(port: int, ca: Path, password: str = PASSWORD) -> Email:
    from urllib.parse import quote

    url = Email.check_url(f"smtp://{quote(USER)}:{quote(password)}@127.0.0.1:{port}")
    return Email(url, "callbridge@example.org", ("ops@example.org", "oncall@example.org"), str(ca))
