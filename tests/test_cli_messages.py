"""What the CLI says when the service is not there: one sentence, the path it tried, and
how to point it at another instance."""

from __future__ import annotations

import socket

import pytest
from testenv import no_configuration
from typer.testing import CliRunner

from callbridge.cli import app

HINT = "; use --socket PATH or CONTROL_SOCKET_PATH for another instance)"


@pytest.fixture(autouse=True)
def clean_configuration(tmp_path, monkeypatch):
    no_configuration(monkeypatch, tmp_path)


@pytest.mark.parametrize("argv", [["status"], ["hangup", "--all"]])
def test_no_control_socket_names_the_path_and_the_way_out(tmp_path, argv):
    path = tmp_path / "control.sock"
    result = CliRunner().invoke(app, [*argv, "--socket", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"callbridge is not running (no control socket at {path}{HINT}"


def test_a_stale_socket_file_and_the_configured_path(tmp_path, monkeypatch):
    """No --socket: the path comes from CONTROL_SOCKET_PATH, even with the rest unset."""
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, never listening: connecting is refused
    monkeypatch.setenv("CONTROL_SOCKET_PATH", str(path))
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"callbridge is not running (nobody listens on {path}{HINT}"


def test_every_command_s_help_shows_its_flags_as_flags():
    """Issue 22, item 19: typer's boxed help printed `--json <bool>`, as if it took a value."""
    import subprocess
    import sys

    from harness import REPO

    commands = [
        [],
        ["status"],
        ["hangup"],
        ["config"],
        ["check"],
        ["calls"],
        ["calls", "export"],
        ["usage"],
        ["agents"],
        ["demo"],
        ["db", "upgrade"],
        ["alert", "test"],
    ]
    for command in commands:
        shown = subprocess.run(
            [sys.executable, "-m", "callbridge.cli", *command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"},
        )
        assert shown.returncode == 0, (command, shown.stderr)
        assert "<bool>" not in shown.stdout and "╭" not in shown.stdout, command
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80, command


def test_status_finds_the_socket_in_an_env_file_without_credentials(tmp_path, monkeypatch):
    """An operator's operators.env has CONTROL_SOCKET_PATH and no credentials: `status` used
    to ignore it (loading the whole configuration failed) and asked the default socket."""
    from testenv import no_configuration

    from callbridge.cli import _control_path

    no_configuration(monkeypatch, tmp_path)
    env_file = tmp_path / "operators.env"
    env_file.write_text(f"CONTROL_SOCKET_PATH={tmp_path / 'clinic.sock'}\n")
    assert _control_path(str(env_file), None) == str(tmp_path / "clinic.sock")
    assert _control_path(str(env_file), "/run/x.sock") == "/run/x.sock"
