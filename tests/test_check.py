"""`callbridge check` against the simulators: all pass, then each failure on its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from harness import API_KEY, ARI_PASSWORD, ARI_USER, RealtimeSim, started
from testenv import days_to

from simulators.clients import ResponsesSim, simulated_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def realtime():
    yield from started(RealtimeSim())


@pytest.fixture
def env(asterisk, realtime, tmp_path):
    return simulated_env(
        asterisk,
        realtime,
        PATH=os.environ["PATH"],
        RTP_PORT_RANGE="31000-31999",
        CONTROL_SOCKET_PATH=str(tmp_path / "run" / "control.sock"),
        LOG_FILE_PATH=str(tmp_path / "callbridge.log"),
    )


def check(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "check", *args],
        env=env,
        cwd=env["PATH"] and None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_everything_passes(env):
    result = check(env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("✓") for line in lines) and len(lines) == 14
    assert "✓ recordings: off (RECORD_CALLS, agents' record)" in lines
    assert "✓ summaries: off (SUMMARY_MODEL)" in lines
    assert any(line.startswith("✓ capacity: MAX_CONCURRENT_CALLS=") for line in lines)
    assert "✓ credentials on the wire: encrypted, or to this machine only" in lines
    assert "✓ agents: 1 from the environment (no AGENTS_FILE): default" in lines
    assert "accepted the key and model gpt-realtime-2.1" in result.stdout
    assert "✓ Realtime model: gpt-realtime-2.1: no shutdown date announced" in lines
    assert "✓ transcription model: gpt-transcribe: no shutdown date announced" in lines
    assert ARI_PASSWORD not in result.stdout + result.stderr and API_KEY not in result.stdout + result.stderr


def test_a_gpt_live_handshake_passes_and_names_its_models(env):
    result = check({**env, "OPENAI_API": "live"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("✓ GPT-Live: ")
        and "/v1/live/sessions accepted the key and model gpt-live-1.1" in line
        for line in lines
    ), lines
    assert "✓ GPT-Live model: gpt-live-1.1: no shutdown date announced" in lines
    assert "✓ GPT-Live backend model: gpt-5.6-luna: no shutdown date announced" in lines
    assert not any("transcription model" in line for line in lines)  # built into GPT-Live
    assert API_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"OPENAI_API_KEY": "sk-not-the-key"}, "GPT-Live refused the session (invalid_api_key"),
        ({"OPENAI_REALTIME_MODEL": "gpt-live-0"}, "model_not_found"),
        ({"OPENAI_LIVE_URL": "ws://127.0.0.1:9/v1/live/sessions"}, "cannot reach ws://127.0.0.1:9"),
    ],
    ids=["bad-key", "unknown-model", "unreachable"],
)
def test_a_gpt_live_handshake_fails_clearly(env, change, expected):
    result = check({**env, "OPENAI_API": "live", **change})
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.startswith("✗ GPT-Live: ")]
    assert expected in line, line
    assert "sk-not-the-key" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ASTERISK_PASSWORD": "wrong-password"}, "do not match a user in ari.conf"),
        ({"ASTERISK_PORT": "9"}, "cannot reach"),
        ({"OPENAI_API_KEY": "sk-not-the-key"}, "invalid_api_key"),
        ({"OPENAI_REALTIME_MODEL": "gpt-4o-realtime-preview-2024-12-17"}, "model_not_found"),
        ({"OPENAI_API_SHAPE": "beta"}, "OPENAI_API_SHAPE=ga"),
        ({"OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime"}, "cannot reach ws://127.0.0.1:9"),
        ({"LOCAL_IP_ADDRESS": "192.0.2.77"}, "is not an address of this host"),
        (
            {"LOG_FILE_PATH": "/proc/callbridge/nope.log"},
            "LOG_FILE_PATH /proc/callbridge/nope.log is not writable",
        ),
        ({"OPENAI_API_KEY": "sk-your-key-here"}, "still hold the .env.example placeholder"),
    ],
    ids=[
        "ari-password",
        "ari-unreachable",
        "openai-key",
        "model",
        "beta",
        "realtime-unreachable",
        "rtp-address",
        "log-path",
        "placeholder",
    ],
)
def test_each_failure_says_what_to_fix(env, change, expected):
    result = check({**env, **change})
    assert result.returncode == 1
    assert expected in result.stderr, result.stdout + result.stderr
    assert "check(s) failed" in result.stderr


def test_busy_rtp_ports(env):
    held = []
    for port in (31500, 31501):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        held.append(sock)
    try:
        result = check({**env, "RTP_PORT_RANGE": "31500-31501"})
    finally:
        for sock in held:
            sock.close()
    assert result.returncode == 1 and "no free UDP port" in result.stderr


def test_app_name_held_by_another_program(env, asterisk):
    import base64

    import websocket

    token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
    other = websocket.create_connection(
        f"ws://127.0.0.1:{asterisk.port}/ari/events?app=openai-app",
        header=[f"Authorization: Basic {token}"],
        timeout=5,
    )
    try:
        result = check(env, "--offline")
    finally:
        other.close()
    assert result.returncode == 1 and "another program is connected as app openai-app" in result.stderr
    assert "skipped (--offline)" in result.stdout


def test_invalid_configuration_exits_78(env):
    result = check({**env, "ASTERISK_PORT": "eighty"})
    assert result.returncode == 78 and "ASTERISK_PORT" in result.stderr


# --- model shutdown dates (callbridge/model_lifecycle.py), from the simulator's /v1/models

TODAY = datetime.now(UTC).date()
PAST, SOON, LATER = (TODAY + timedelta(days=n) for n in (-1, 30, 61))


@pytest.fixture(scope="module")
def dated_realtime():
    yield from started(
        RealtimeSim(
            "--model-shutdown",
            f"gpt-realtime={PAST}",
            "--model-shutdown",
            f"gpt-realtime-mini={SOON}",
            "--model-shutdown",
            f"gpt-realtime-2.1-mini={LATER}",
            "--model-shutdown",
            f"gpt-4o-mini-transcribe={SOON}",
        )
    )


@pytest.fixture
def dated_env(env, dated_realtime):
    return {**env, "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{dated_realtime.port}/v1/realtime"}


def test_model_past_its_shutdown_fails_naming_model_and_date(dated_env):
    result = check({**dated_env, "OPENAI_REALTIME_MODEL": "gpt-realtime"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"✗ Realtime model: gpt-realtime was shut down on {PAST}: set OPENAI_REALTIME_MODEL" in result.stderr
    )
    assert "1 check(s) failed" in result.stderr


def test_model_shutting_down_within_60_days_warns_and_passes(dated_env):
    result = check({**dated_env, "OPENAI_REALTIME_MODEL": "gpt-realtime-mini"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"! Realtime model: gpt-realtime-mini shuts down on {SOON}, in {days_to(SOON)} days" in result.stderr
    )
    assert "check(s) failed" not in result.stderr


def test_model_shutting_down_later_passes_with_its_date(dated_env):
    result = check({**dated_env, "OPENAI_REALTIME_MODEL": "gpt-realtime-2.1-mini"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"✓ Realtime model: gpt-realtime-2.1-mini shuts down on {LATER} ({days_to(LATER)} days from now)"
        in result.stdout
    )


def test_transcription_model_is_checked_when_set(dated_env):
    result = check({**dated_env, "OPENAI_TRANSCRIPTION_MODEL": "gpt-4o-mini-transcribe"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"! transcription model: gpt-4o-mini-transcribe shuts down on {SOON}" in result.stderr
    off = check({**dated_env, "OPENAI_TRANSCRIPTION_MODEL": ""})
    assert off.returncode == 0 and "transcription model" not in off.stdout + off.stderr


def test_unknown_model_fails(dated_env):
    result = check({**dated_env, "OPENAI_TRANSCRIPTION_MODEL": "gpt-no-such-transcribe"})
    assert result.returncode == 1
    assert "✗ transcription model: gpt-no-such-transcribe is not a model OpenAI knows" in result.stderr


def test_recorded_calls_without_a_notice_warn_and_with_one_pass(env, tmp_path):
    """Issue 29: recording is the operator's to announce, in the agent's notice."""
    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[agents.sales]\nnumbers = ["100"]\nrecord = true\n'
        '[agents.clinic]\nnumbers = ["200"]\nrecord = true\nnotice = "This call is recorded."\n'
        '[agents.shop]\nnumbers = ["300"]\n'
    )
    recordings = tmp_path / "recordings"
    result = check({**env, "AGENTS_FILE": str(agents), "RECORDINGS_DIR": str(recordings)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "! recordings: calls of sales are recorded but their notice is empty: callers are not told"
        in result.stderr
    )
    agents.write_text('[agents.clinic]\nnumbers = ["*"]\nrecord = true\nnotice = "This call is recorded."\n')
    result = check({**env, "AGENTS_FILE": str(agents), "RECORDINGS_DIR": str(recordings)})
    assert (
        f"✓ recordings: 1 agents recorded, each says so in its notice; {recordings}, kept until erased"
        in (result.stdout)
    )
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    wrong = check({**env, "AGENTS_FILE": str(agents), "RECORDINGS_DIR": str(blocked / "recordings")})
    assert (
        wrong.returncode != 0 and f"RECORDINGS_DIR {blocked / 'recordings'} is not writable" in wrong.stderr
    )


def test_summaries_name_their_model_fields_and_mail_and_what_they_lack(env, tmp_path):
    """Issue 29: the summary model is looked up like the others (its shutdown date), where
    the summaries go (OPENAI_RESPONSES_URL); an agent that mails needs ALERT_SMTP_URL."""
    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[agents.support]\nnumbers = ["*"]\n[agents.support.summary]\nemail = ["desk@example.org"]\n'
        '[agents.support.summary.fields]\nreason = {type = "string"}\n'
    )
    off = check({**env, "AGENTS_FILE": str(agents)})
    assert off.returncode != 0
    assert "agents.support.summary.email: needs ALERT_SMTP_URL, the server it is sent through" in off.stderr
    agents.write_text(
        '[agents.support]\nnumbers = ["*"]\n[agents.support.summary.fields]\nreason = {type = "string"}\n'
    )
    result = check({**env, "AGENTS_FILE": str(agents)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "! summaries: off, but support declare [agents.NAME.summary]: set SUMMARY_MODEL" in result.stderr
    sim = ResponsesSim(api_key=API_KEY)
    try:
        on = {
            **env,
            "AGENTS_FILE": str(agents),
            "SUMMARY_MODEL": "gpt-5.4-mini",
            "OPENAI_RESPONSES_URL": sim.url,
        }
        result = check(on)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"✓ summaries: gpt-5.4-mini through {sim.url}; fields: support" in result.stdout
        assert "✓ summary model: gpt-5.4-mini: no shutdown date announced" in result.stdout
        unknown = check({**on, "SUMMARY_MODEL": "gpt-no-such-text"})
        assert (
            unknown.returncode == 1
            and "✗ summary model: gpt-no-such-text is not a model OpenAI knows" in unknown.stderr
        )
        assert "has no price (RECORDS_PRICES)" in unknown.stderr
    finally:
        sim.stop()


def test_restricted_key_403_only_warns(env):
    sim = RealtimeSim("--models-status", "403")
    try:
        result = check({**env, "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{sim.port}/v1/realtime"})
    finally:
        sim.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "! Realtime model: this key may not read models, so gpt-realtime-2.1's shutdown date" in result.stderr
    )
    assert "! transcription model: this key may not read models" in result.stderr
    assert API_KEY not in result.stdout + result.stderr


def test_an_unreachable_ari_is_one_short_line(env):
    """Issue 22, item 19: it was two lines, the second with requests' whole text (the pool,
    the URL and every wrapped exception)."""
    result = check({**env, "ASTERISK_PORT": "9"}, "--offline")
    failures = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("✗")]
    assert len(failures) == 1 and "cannot reach" in failures[0], failures
    assert "HTTPConnectionPool" not in result.stderr and "Max retries" not in result.stderr
    assert len(failures[0]) < 200
