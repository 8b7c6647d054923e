"""Secrets never reach logs, reprs, exceptions or CLI output; log lines carry call ids;
the log file survives logrotate's rename."""

from __future__ import annotations

import json
import logging
import os

import pytest
from testenv import no_configuration
from typer.testing import CliRunner

from callbridge import config as cfg
from callbridge import logs
from callbridge.cli import app
from callbridge.secret import MASK, Secret

PASSWORD = "ari-SeCrEt-pw-991"
API_KEY = "sk-proj-very-secret-key-0042"
ENV = {"ASTERISK_USERNAME": "asterisk", "ASTERISK_PASSWORD": PASSWORD, "OPENAI_API_KEY": API_KEY}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    from callbridge import secret

    no_configuration(monkeypatch, tmp_path)
    registered = set(secret._registered)
    yield
    secret._registered.intersection_update(registered)  # "1234" must not mask later tests' text
    logs.set_process_call_id("-")
    logging.getLogger().handlers.clear()


def test_secret_is_masked_everywhere_but_reveal():
    secret = Secret(PASSWORD)
    settings = cfg.load(environ=ENV).settings
    for text in (repr(secret), str(secret), f"{secret}", f"{secret:>20}", repr(settings), str(settings)):
        assert PASSWORD not in text and API_KEY not in text
    assert MASK in repr(settings)
    assert secret.reveal() == PASSWORD
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_log_line_contains_a_secret(tmp_path, capsys, fmt):
    settings = cfg.load(environ=ENV).settings
    log_file = tmp_path / "callbridge.log"
    logs.setup("debug", fmt, str(log_file))
    log = logging.getLogger("callbridge.test")
    log.info("settings: %r", settings)
    log.info("connecting to %s with password %s", settings.ari_events_url, settings.asterisk_password)
    # Even code that reveals a secret by mistake is caught by the formatter's redaction.
    log.warning("oops %s", settings.openai_api_key.reveal())
    try:
        raise RuntimeError(f"auth failed for {settings.asterisk_password.reveal()}")
    except RuntimeError:
        log.exception("failure")
    written = log_file.read_text() + capsys.readouterr().err
    assert written.count("\n") >= 8  # both sinks got every line (tracebacks are longer)
    assert PASSWORD not in written and API_KEY not in written
    assert MASK in written


QUOTED = "pa\"ss\\wd-991-'x"  # a quote, a backslash and an apostrophe: escaped in JSON and reprs


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_with_quotes_and_backslashes_is_redacted_however_it_is_quoted(tmp_path, fmt):
    """Redaction ran on the finished line: JSON escaped the quote and the backslash, a %r
    doubled the backslash, and the secret went out (issue 22, item 9)."""
    Secret(QUOTED)
    log_file = tmp_path / "callbridge.log"
    logs.setup("info", fmt, str(log_file))
    log = logging.getLogger("callbridge.test")
    log.info("auth failed for %s", QUOTED)
    log.info("auth failed for %r", QUOTED)
    log.info("in a URL: http://u:%s@host/", __import__("urllib.parse").parse.quote(QUOTED, safe=""))
    written = log_file.read_text()
    lines = written.splitlines()
    assert len(lines) == 3
    messages = [json.loads(line)["msg"] for line in lines] if fmt == "json" else lines
    for message in messages:
        assert "pa" + '"' not in message and "ss\\wd" not in message and "991" not in message, message
        assert MASK in message


def test_a_short_secret_cannot_corrupt_a_control_reply(tmp_path):
    """A four-character password used to be replaced inside the finished JSON: numbers and
    keys with "1234" in them broke, `status` could not be parsed and metrics showed the
    supervisor down (issue 22, item 9)."""
    import selectors
    import socket

    from shm_ring import wire
    from supervisor import control

    Secret("1234")
    reply = {
        "ok": True,
        "started_at": 1712341234.5,
        "k1234": 12345,
        "note": "pin 1234",
        "calls": [{"n": 1234}],
    }
    selector = selectors.DefaultSelector()
    server = control.ControlServer(str(tmp_path / "c.sock"), selector, lambda request, uid: reply)
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(server.path)
        client.sendall(wire.encode({"cmd": "status"}))
        server.accept()
        for key, mask in selector.select(1):
            if key.data[0] == "client":
                server.on_event(key.data[1], mask)
        client.settimeout(2)
        got = wire.decode(client.recv(65536)[4:])
        client.close()
    finally:
        server.close()
        selector.close()
    assert got["started_at"] == 1712341234.5 and got["calls"] == [{"n": 1234}]
    assert got["note"] == f"pin {MASK}" and f"k{MASK}" in got  # strings are still redacted


def test_check_warns_on_a_short_password():
    from callbridge.cli.check import check_secrets

    settings = cfg.load(environ={**ENV, "ASTERISK_PASSWORD": "short-pw"}).settings
    result = check_secrets(settings)
    assert result.ok and result.warning and "ASTERISK_PASSWORD" in result.detail
    assert "short-pw" not in result.detail
    assert not check_secrets(cfg.load(environ=ENV).settings).warning


def test_config_output_and_errors_hold_no_secret():
    env = {**ENV, "ASTERISK_PORT": "not-a-port"}
    result = CliRunner().invoke(app, ["config"], env=env)
    assert result.exit_code == 78
    assert PASSWORD not in result.output and API_KEY not in result.output
    good = CliRunner().invoke(app, ["config"], env=ENV)
    assert good.exit_code == 0
    assert PASSWORD not in good.output and API_KEY not in good.output


def test_lines_carry_the_call_id(capsys):
    logs.setup("info", "text")
    log = logging.getLogger("callbridge.test")
    log.info("supervisor line")
    log.info("about a call", extra={"call_id": "c-17"})
    logs.set_process_call_id("c-42")
    log.info("worker line")
    lines = capsys.readouterr().err.splitlines()
    assert "[-]" in lines[0]
    assert "[c-17]" in lines[1]
    assert "[c-42]" in lines[2]


def test_json_lines_are_json_with_call_id(capsys):
    logs.setup("info", "json")
    logs.set_process_call_id("c-9")
    logging.getLogger("callbridge.test").info("hello %s", "world")
    entry = json.loads(capsys.readouterr().err.strip())
    assert entry["msg"] == "hello world" and entry["call_id"] == "c-9" and entry["level"] == "info"
    assert entry["pid"] == os.getpid()


def test_log_file_is_reopened_after_logrotate_moves_it(tmp_path):
    log_file = tmp_path / "callbridge.log"
    logs.setup("info", "text", str(log_file))
    log = logging.getLogger("callbridge.test")
    log.info("before rotation")
    log_file.rename(tmp_path / "callbridge.log.1")
    log.info("after rotation")
    assert "before rotation" in (tmp_path / "callbridge.log.1").read_text()
    assert "after rotation" in log_file.read_text()
    assert "before rotation" not in log_file.read_text()


# --- what people say stays out of the log unless asked for (issue 22, item 14)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "logged"),
    [
        ({}, False),  # the default: INFO, and no utterances
        ({"LOG_UTTERANCES": "true"}, True),
        ({"LOG_LEVEL": "debug"}, True),
        ({"LOG_UTTERANCES": "true", "LOG_LEVEL": "debug", "RECORDS_TRANSCRIPTS": "false"}, False),
    ],
)
def test_utterances_reach_the_log_only_when_asked_and_never_without_transcripts(
    service, asterisk, tmp_path, settings, logged
):
    from testenv import ended

    records_dir = tmp_path / "records"
    svc = service(CALL_RECORDS_DIR=str(records_dir), **settings)
    call_id = asterisk.place_call([{"say": 800}, {"silence": 3500}, {"hangup": True}])
    svc.wait(lambda: ended(asterisk, call_id), timeout=20)
    svc.wait(lambda: "call summary:" in svc.log(), timeout=10)
    text = svc.log()
    assert ("caller speech of" in text) is logged, text[-2000:]
    assert (" agent: " in text) is logged
    svc.wait(lambda: list(records_dir.glob("*.json")), timeout=10)
    record = json.loads(next(records_dir.glob("*.json")).read_text())
    said = [t for t in record["transcript"] if t.get("text")]
    if settings.get("RECORDS_TRANSCRIPTS") == "false":
        assert said == [] and record["transcript"]  # who spoke when, never what
    else:
        assert said
