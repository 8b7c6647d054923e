"""The e-mail alert channel against a real SMTP server (aiosmtpd) on loopback: STARTTLS with
a certificate of our own CA, a login, several recipients; and what it does when the server
refuses the login, offers no STARTTLS, or is not there."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtp_server import PASSWORD, USER, smtp_channel, smtp_server
from testenv import free_port, self_signed_certificate

from alerts import email
from alerts.conditions import Notice
from callbridge.alert_settings import Email
from callbridge.secret import redact

NOTICE = Notice("worker_crashes", "firing", "warning", "3 call workers crashed within 10 minutes")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA, as a private CA would be)."""
    return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


def test_an_alert_arrives_by_starttls_with_a_login_to_every_recipient(certificate):
    controller, inbox = smtp_server(certificate)
    try:
        delivered, how = email.send(smtp_channel(controller.port, certificate[0]), NOTICE, "main")
    finally:
        controller.stop()
    assert (delivered, how) == (True, "sent to 2 recipients")
    [(sender, recipients, content)] = inbox.messages
    assert sender == "callbridge@example.org" and recipients == ["ops@example.org", "oncall@example.org"]
    assert "Subject: [callbridge main] ALERT: 3 call workers crashed within 10 minutes" in content
    assert "condition: worker_crashes" in content


def test_a_refused_login_an_untrusted_certificate_and_no_server_are_outcomes(certificate, tmp_path):
    controller, inbox = smtp_server(certificate)
    try:
        assert email.send(
            smtp_channel(controller.port, certificate[0], "wrong-password"), NOTICE, "main"
        ) == (
            False,
            "login refused (535)",
        )
        other_ca = tmp_path / "other.pem"
        other_ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
        delivered, how = email.send(smtp_channel(controller.port, other_ca), NOTICE, "main")
        assert not delivered and "SSL" in how  # our certificate is not from those CAs
    finally:
        controller.stop()
    assert inbox.messages == []
    delivered, how = email.send(smtp_channel(free_port(), certificate[0]), NOTICE, "main")
    assert (delivered, how) == (False, "ConnectionRefusedError")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_server_without_starttls_never_gets_the_password(certificate):
    controller, inbox = smtp_server(certificate, starttls=False)
    try:
        delivered, how = email.send(smtp_channel(controller.port, certificate[0]), NOTICE, "main")
    finally:
        controller.stop()
    assert not delivered and "no STARTTLS" in how
    assert inbox.messages == []


def test_the_smtp_url_is_a_secret_and_its_password_is_redacted():
    url = Email.check_url("smtp://u:s3cret-pass@mail.example.org:587")
    assert "s3cret-pass" not in str(url) and "s3cret-pass" not in redact("login with s3cret-pass failed")
    for bad in ("http://mail.example.org", "smtp://mail.example.org:587", "smtp://u:p@host:99999"):
        with pytest.raises(ValueError) as refused:
            Email.check_url(bad)
        assert bad not in str(refused.value)
    assert Email(url, "a@b", ("c@d",)).name == "e-mail (mail.example.org)"


def test_cli_alert_test_sends_through_each_channel(certificate, tmp_path):
    """`callbridge alert test`: a webhook and the e-mail both get the test message; with the
    webhook's receiver gone the command says which channel failed and exits 1."""
    from urllib.parse import quote

    from test_alerts import Receiver
    from typer.testing import CliRunner

    from callbridge.cli import app

    controller, inbox = smtp_server(certificate)
    receiver = Receiver()
    env_file = tmp_path / "callbridge.env"
    env_file.write_text(
        "ASTERISK_USERNAME=u\nASTERISK_PASSWORD=ari-pass\nOPENAI_API_KEY=sk-test-key\n"
        f"ALERT_WEBHOOKS=slack:{receiver.url('/hook-SECRETPATH')}\n"
        f"ALERT_SMTP_URL=smtp://{quote(USER)}:{quote(PASSWORD)}@127.0.0.1:{controller.port}\n"
        f"ALERT_EMAIL_TO=ops@example.org\nALERT_SMTP_CA_FILE={certificate[0]}\n"
    )
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["alert", "test", "--env-file", str(env_file)], env={})
        assert result.exit_code == 0, result.output
        assert "✓ webhook 1 (slack): HTTP 200" in result.output
        assert "✓ e-mail (127.0.0.1): sent to 1 recipients" in result.output
        assert "this channel works" in receiver.texts()[0] and len(inbox.messages) == 1
        receiver.stop()
        result = runner.invoke(app, ["alert", "test", "--env-file", str(env_file)], env={})
        assert result.exit_code == 1
        assert "✗ webhook 1 (slack): ConnectionError" in result.output
        assert "1 of 2 alert channels failed" in result.output
        assert "SECRETPATH" not in result.output and PASSWORD not in result.output
    finally:
        controller.stop()
