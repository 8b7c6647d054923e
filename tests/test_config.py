"""Configuration: precedence, sources, validation (every problem at once, one line each naming
its variable, exit 78)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from testenv import no_configuration
from typer.testing import CliRunner

from callbridge import config as cfg
from callbridge.cli import app

BASE = {
    "ASTERISK_USERNAME": "ariuser",
    "ASTERISK_PASSWORD": "ari-pass-1234",
    "OPENAI_API_KEY": "sk-test-key-5678",
}


@pytest.fixture(autouse=True)
def no_stray_env_file(tmp_path, monkeypatch):
    """Run each test in an empty directory so a developer's ./.env is never read."""
    no_configuration(monkeypatch, tmp_path)


def test_defaults_and_seed_names():
    loaded = cfg.load(environ=BASE)
    s = loaded.settings
    assert s.asterisk_host == "localhost" and s.asterisk_port == 8088
    assert s.openai_realtime_model == "gpt-realtime-2.1"
    assert s.openai_transcription_model == "gpt-transcribe"
    assert s.openai_api_shape == "ga"
    assert s.ari_app_name == "openai-app"
    assert s.rtp_port_range == (10000, 20000)
    assert s.asterisk_password.reveal() == "ari-pass-1234"
    assert loaded.sources["ASTERISK_HOST"] == "default"
    assert loaded.sources["ASTERISK_USERNAME"] == "environment"
    assert s.realtime_url == "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1"
    assert s.ari_events_url == "ws://localhost:8088/ari/events"


def test_environment_wins_over_file_which_wins_over_default(tmp_path):
    env_file = tmp_path / "x.env"
    env_file.write_text(
        "ASTERISK_HOST=pbx.example\nASTERISK_TLS=true\nASTERISK_PORT=8089\nOPENAI_VOICE=cedar\n"
    )
    loaded = cfg.load(env_file, environ={**BASE, "ASTERISK_PORT": "9000"})
    assert loaded.settings.asterisk_host == "pbx.example"
    assert loaded.settings.asterisk_port == 9000
    assert loaded.sources["ASTERISK_HOST"] == f"file {env_file}"
    assert loaded.sources["ASTERISK_PORT"] == "environment"
    assert loaded.sources["MAX_CALL_SECONDS"] == "default"


def test_dot_env_in_the_working_directory_is_found(tmp_path):
    (tmp_path / ".env").write_text("\n".join(f"{k}={v}" for k, v in BASE.items()))
    loaded = cfg.load(environ={})
    assert loaded.env_file.name == ".env"
    assert loaded.settings.asterisk_username == "ariuser"


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ASTERISK_PORT", "http", "whole number"),
        ("ASTERISK_PORT", "70000", "between 1 and 65535"),
        ("ASTERISK_HOST", "http://pbx/ari", "without scheme"),
        ("OPENAI_API_SHAPE", "v2", "one of ga, beta"),
        ("RTP_PORT_RANGE", "20000-10000", "LOW-HIGH"),
        ("RTP_PORT_RANGE", "lots", "10000-20000"),
        ("LOCAL_IP_ADDRESS", "my-laptop", "IP address"),
        ("ASTERISK_TLS", "maybe", "true or false"),
        ("OPENAI_VAD_THRESHOLD", "2", "between 0.0 and 1.0"),
        ("MAX_CONCURRENT_CALLS", "0", "between 1 and 2000"),
        ("OPENAI_INSTRUCTIONS_FILE", "/nonexistent/prompt.txt", "cannot read"),
        ("LOG_FORMAT", "xml", "text, json"),
        ("ASTERISK_PASSWORD", "", "is empty"),
        ("ALERT_FAILED_RATIO", "20", "between 0.0 and 1.0"),
        ("ALERT_CRASHES", "0", "between 1 and"),
        ("ALERT_ARI_DOWN_SECONDS", "soon", "whole number"),
        ("ALERT_SHUTDOWN_DAYS", "-1", "between 0 and"),
        ("ARI_APP_NAME", "sales/east", "letters, digits"),
        ("ARI_APP_NAME", "open ai", "letters, digits"),
        ("ARI_APP_NAME", "a?b", "letters, digits"),
        ("ARI_APP_NAME", "x" * 65, "1 to 64"),
        ("ARI_APP_NAME", "..", "not starting with"),
        ("ARI_APP_NAME", "-app", "not starting with"),
    ],
)
def test_each_bad_value_names_its_variable(variable, value, fragment):
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(environ={**BASE, variable: value})
    assert info.value.variable == variable
    message = str(info.value)
    assert message.startswith(f"{variable}: ") and fragment in message and "\n" not in message


def test_the_alert_thresholds_are_one_object_from_their_settings():
    settings = cfg.load(environ={**BASE, "ALERT_CRASHES": "7", "ALERT_FAILED_RATIO": "0.5"}).settings
    limits = settings.alert_thresholds
    assert (limits.crashes, limits.failed_ratio, limits.ari_down_seconds, limits.repeat_seconds) == (
        7,
        0.5,
        30.0,
        900.0,
    )
    with pytest.raises(AttributeError):
        limits.crashes = 1  # frozen: read once at start, never changed behind the tracker's back


@pytest.mark.parametrize("missing", ["ASTERISK_USERNAME", "ASTERISK_PASSWORD", "OPENAI_API_KEY"])
def test_missing_required_variable(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(cfg.ConfigError, match=f"^{missing}: is not set"):
        cfg.load(environ=env)


def test_instructions_file_replaces_instructions(tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Eres el asistente de la clínica.\n", encoding="utf-8")
    s = cfg.load(environ={**BASE, "OPENAI_INSTRUCTIONS_FILE": str(prompt)}).settings
    assert s.instructions() == "Eres el asistente de la clínica."


def test_missing_explicit_env_file_is_a_config_error():
    with pytest.raises(cfg.ConfigError, match="--env-file: no such file"):
        cfg.load("/nonexistent/callbridge.env", environ=BASE)


def test_config_command_masks_secrets_and_shows_sources(monkeypatch):
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["ASTERISK_PASSWORD"] == {"value": "********", "source": "environment"}
    assert shown["OPENAI_REALTIME_MODEL"] == {"value": "gpt-realtime-2.1", "source": "default"}
    assert "ari-pass-1234" not in result.output and "sk-test-key-5678" not in result.output


def test_config_without_password_exits_78_showing_the_table(tmp_path):
    """The real console script, in a clean environment: the whole table on stdout with the
    missing variable marked, one line on stderr naming it, EX_CONFIG."""
    env = {"PATH": os.environ["PATH"], "ASTERISK_USERNAME": "u", "OPENAI_API_KEY": "sk-x-123"}
    result = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    rows = result.stdout.splitlines()[1:]
    assert [row[2:].split()[0] for row in rows] == [var.name for var in cfg.VARIABLES]
    marked = [row for row in rows if row.startswith("✗")]
    assert len(marked) == 1 and marked[0][2:].split()[0] == "ASTERISK_PASSWORD" and "is not set" in marked[0]
    assert "sk-x-123" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ASTERISK_PASSWORD" in lines[0]


BAD = {
    "ASTERISK_PORT": "http",
    "RTP_PORT_RANGE": "lots",
    "LOG_FORMAT": "xml",
    "ASTERISK_PASSWORD": "",
}  # and OPENAI_API_KEY missing: five problems


def _bad_environ() -> dict[str, str]:
    return {**{k: v for k, v in BASE.items() if k != "OPENAI_API_KEY"}, **BAD}


def test_load_reports_every_problem_at_once():
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(environ=_bad_environ())
    errors = info.value.errors
    expected = [v.name for v in cfg.VARIABLES if v.name in BAD or v.name == "OPENAI_API_KEY"]
    assert [e.variable for e in errors] == expected and len(expected) == 5
    lines = str(info.value).splitlines()
    assert len(lines) == 5 and all(
        line.startswith(f"{e.variable}: ") for line, e in zip(lines, errors, strict=True)
    )
    assert isinstance(info.value, cfg.ConfigErrors)
    assert info.value.variable == errors[0].variable  # what a caller of the single error reads


def test_config_command_marks_every_bad_value_and_exits_78(monkeypatch):
    for key, value in _bad_environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPENAI_VOICE", "cedar")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 78
    rows = {row[2:].split()[0]: row for row in result.stdout.splitlines()[1:]}
    assert list(rows) == [var.name for var in cfg.VARIABLES]
    marked = {name for name, row in rows.items() if row.startswith("✗")}
    assert marked == {*BAD, "OPENAI_API_KEY"}
    assert "must be a whole number (got 'http')" in rows["ASTERISK_PORT"]
    assert "is not set" in rows["OPENAI_API_KEY"] and "(required)" in rows["OPENAI_API_KEY"]
    assert "cedar" in rows["OPENAI_VOICE"] and "(environment)" in rows["OPENAI_VOICE"]
    assert rows["ASTERISK_USERNAME"].startswith("  ")
    assert "5 configuration problem(s)" in result.stderr

    as_json = CliRunner().invoke(app, ["config", "--json"])
    assert as_json.exit_code == 78
    shown = json.loads(as_json.stdout)
    assert shown["ASTERISK_PORT"] == {
        "value": "http",
        "source": "environment",
        "problem": "must be a whole number (got 'http')",
    }
    assert "problem" not in shown["OPENAI_VOICE"]


def test_a_bad_secret_stays_masked(monkeypatch):
    """A secret's parser that quotes its input: neither the value nor the problem shows it."""

    def picky(raw: str):
        raise ValueError(f"must start with sk- (got {raw!r})")

    key = next(v for v in cfg.VARIABLES if v.name == "OPENAI_API_KEY")
    variables = tuple(
        cfg.Variable(v.name, picky, v.default, v.help, v.group, secret=True) if v is key else v
        for v in cfg.VARIABLES
    )
    monkeypatch.setattr(cfg, "VARIABLES", variables)
    for k, value in {**BASE, "OPENAI_API_KEY": "leaky-key-9876"}.items():
        monkeypatch.setenv(k, value)
    for argv in (["config"], ["config", "--json"], ["run"], ["check", "--offline"]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 78, (argv, result.output)
        assert "OPENAI_API_KEY" in result.output
        assert "leaky-key-9876" not in result.output and "ari-pass-1234" not in result.output
    table = CliRunner().invoke(app, ["config"]).stdout
    row = next(line for line in table.splitlines() if "OPENAI_API_KEY" in line)
    assert row.startswith("✗") and "********" in row and "must start with sk- (got '********')" in row


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_print_every_problem_and_exit_78(tmp_path, command):
    """The real console script: one stderr line per problem, each naming its variable."""
    env = {"PATH": os.environ["PATH"], **_bad_environ()}
    result = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    named = [line.split("configuration error: ", 1)[1].split(":", 1)[0] for line in lines]
    assert named == [v.name for v in cfg.VARIABLES if v.name in BAD or v.name == "OPENAI_API_KEY"]


def test_version_and_help():
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("callbridge ")
    helped = runner.invoke(app, ["--help"])
    assert helped.exit_code == 0 and "config" in helped.stdout


def test_env_example_documents_every_variable_and_parses():
    from pathlib import Path

    from dotenv import dotenv_values

    example = Path(__file__).resolve().parents[1] / ".env.example"
    text = example.read_text()
    for var in cfg.VARIABLES:
        assert f"{var.name}=" in text, f"{var.name} is not documented in .env.example"
    # With its placeholders filled in as they are, the template is a valid configuration.
    values = {k: v for k, v in dotenv_values(example).items() if v is not None}
    assert set(values) == {"ASTERISK_USERNAME", "ASTERISK_PASSWORD", "OPENAI_API_KEY"}
    cfg.load(example, environ={})


def test_masking_callers_needs_a_hash_key_and_the_key_never_shows(monkeypatch):
    no_key = cfg.check(environ={**BASE, "RECORDS_MASK_CALLERS": "true"})
    assert [str(e) for e in no_key.errors()] == [
        "RECORDS_HASH_KEY: is empty, but RECORDS_MASK_CALLERS=true needs it (the full number finds masked calls)"
    ]
    short = cfg.check(environ={**BASE, "RECORDS_MASK_CALLERS": "true", "RECORDS_HASH_KEY": "short"})
    assert [e.variable for e in short.errors()] == ["RECORDS_HASH_KEY"]
    assert "short" not in str(short.errors()[0])
    key = "clinic-hash-key-0123456789"
    loaded = cfg.load(environ={**BASE, "RECORDS_MASK_CALLERS": "true", "RECORDS_HASH_KEY": key})
    assert loaded.settings.records_mask_callers and loaded.settings.records_hash_key.reveal() == key
    assert key not in repr(loaded.settings)
    for k, value in {**BASE, "RECORDS_MASK_CALLERS": "true", "RECORDS_HASH_KEY": key}.items():
        monkeypatch.setenv(k, value)
    for argv in (["config"], ["config", "--json"]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0 and "RECORDS_HASH_KEY" in result.output and key not in result.output


def test_default_prices_per_model_with_the_operators_prices_winning_kind_by_kind():
    usage = {"input_audio_tokens": 1_000_000, "input_text_tokens": 0, "output_audio_tokens": 1_000_000}
    plain = cfg.load(environ=BASE).settings
    assert plain.prices.estimate("gpt-realtime-2.1", usage) == 32 + 64  # USD, cited in docs/operations.md
    assert plain.prices.estimate("gpt-realtime-2.1-mini", usage) == 10 + 20
    minute = {"transcription_seconds": 60.0}  # gpt-transcribe is priced per minute of audio
    assert plain.prices.transcription("gpt-transcribe", minute) == 0.0045
    assert plain.prices.estimate("some-other-model", usage) is None
    override = '{"gpt-realtime-2.1": {"output_audio": 50}, "mine": {"input_audio": 1}}'
    mine = cfg.load(environ={**BASE, "RECORDS_PRICES": override}).settings
    assert mine.prices.estimate("gpt-realtime-2.1", usage) == 32 + 50
    assert mine.prices.estimate("mine", usage) == 1
    euros = cfg.load(environ={**BASE, "RECORDS_PRICES": override, "RECORDS_CURRENCY": "EUR"}).settings
    assert euros.prices.estimate("gpt-realtime-2.1-mini", usage) is None  # no dollar defaults in euros
    assert euros.prices.estimate("gpt-realtime-2.1", usage) == 50


# --- the env file, read one way, nothing dropped (issue 22, items 10 and 17)


def test_the_env_file_is_read_literally_dollars_quotes_and_backslashes_included(tmp_path):
    """python-dotenv's default expanded ${...}: `check` and `run` could see other values."""
    path = tmp_path / "callbridge.env"
    path.write_text(
        "ASTERISK_USERNAME=ariuser\n"
        "ASTERISK_PASSWORD=pa${HOME}ss$1\n"
        "OPENAI_API_KEY=sk-back\\slash\n"
        'OPENAI_INSTRUCTIONS="Say \\"hello\\" and it costs $5"\n'
    )
    settings = cfg.load(path, environ={}).settings
    assert settings.asterisk_password.reveal() == "pa${HOME}ss$1"
    assert settings.openai_api_key.reveal() == "sk-back\\slash"
    assert settings.openai_instructions == 'Say "hello" and it costs $5'


def test_lines_that_are_not_settings_are_errors_with_file_and_line(tmp_path):
    path = tmp_path / "callbridge.env"
    path.write_text(
        "ASTERISK_USERNAME=ariuser\nASTERISK_PASSWORD=ari-pass-1234\nHELLO\nOPENAI_API_KEY=sk-test-key-5678\n"
        "FOO BAR=1\n"
    )
    checked = cfg.check(path, environ={})
    problems = [str(e) for e in checked.errors()]
    assert f"env file: {path}:3: HELLO has no '=' (write HELLO=value)" in problems
    assert any(p.startswith(f"env file: {path}:5: not NAME=value") for p in problems), problems
    result = CliRunner().invoke(app, ["config", "--env-file", str(path)])
    assert result.exit_code == cfg.EX_CONFIG
    assert f"{path}:3: HELLO has no '='" in result.stderr and "FOO" not in result.stderr.replace(
        "FOO BAR", ""
    )
    assert "python-dotenv" not in result.stderr


def test_unknown_names_are_named_with_what_they_probably_meant(tmp_path):
    path = tmp_path / "callbridge.env"
    path.write_text(
        "ASTERISK_USERNAME=ariuser\nASTERISK_PASWORD=typo\nASTERISK_PASSWORD=ari-pass-1234\n"
        "OPENAI_API_KEY=sk-test-key-5678\nSECRET_CRM_TOKEN=tok-very-secret-991\n"
    )
    checked = cfg.check(path, environ={})
    assert checked.errors() == []
    assert checked.notes() == [
        f"{path}:2: ASTERISK_PASWORD is not a callbridge setting (did you mean ASTERISK_PASSWORD?); it is ignored"
    ]
    result = CliRunner().invoke(app, ["config", "--env-file", str(path)])
    assert result.exit_code == 0
    assert "did you mean ASTERISK_PASSWORD?" in result.stderr
    # SECRET_ names are the agents file's: accepted, and redacted wherever they would show.
    from callbridge.secret import redact

    assert "SECRET_CRM_TOKEN" not in result.stderr
    assert "tok-very-secret-991" not in redact("a token tok-very-secret-991 in a line")


def test_the_example_s_placeholders_are_flagged(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / ".env.example"
    notes = cfg.check(example, environ={}).notes()
    flagged = {note.split(": ", 1)[1].split(" ", 1)[0] for note in notes}
    assert flagged == {"ASTERISK_PASSWORD", "OPENAI_API_KEY"}, notes


# --- credentials never in the clear to another host (issue 22, item 8)


@pytest.mark.parametrize(
    ("extra", "variable", "fragment"),
    [
        (
            {"ASTERISK_HOST": "pbx.example"},
            "ASTERISK_TLS",
            "ARI password would cross the network in the clear",
        ),
        ({"ASTERISK_HOST": "10.1.2.3"}, "ASTERISK_TLS", "in the clear"),
        ({"OPENAI_REALTIME_URL": "ws://rt.example/v1/realtime"}, "OPENAI_REALTIME_URL", "API key"),
        (
            {"ALERT_WEBHOOKS": "json:https://ok.example/a,json:http://hooks.example/T0KEN"},
            "ALERT_WEBHOOKS",
            "webhook 2",
        ),
        (
            {"ALERT_SMTP_URL": "smtp+insecure://u:pw-secret-77@mail.example:25", "ALERT_EMAIL_TO": "a@b"},
            "ALERT_SMTP_URL",
            "password goes in the clear",
        ),
    ],
)
def test_credentials_in_the_clear_to_another_host_are_refused(extra, variable, fragment):
    checked = cfg.check(environ={**BASE, **extra})
    problems = {e.variable: e.problem for e in checked.errors()}
    assert fragment in problems[variable], problems
    assert "T0KEN" not in str(problems) and "pw-secret-77" not in str(problems)
    # An operator who means it says so; then it loads (and `check` still warns).
    loaded = cfg.load(environ={**BASE, **extra, "ALLOW_PLAINTEXT_CREDENTIALS": "true"})
    from callbridge.cli.check import check_plaintext

    result = check_plaintext(loaded.settings)
    assert result.ok and result.warning and variable in result.detail


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.9.9.9", "::1"])
def test_loopback_may_go_in_the_clear(host):
    environ = {
        **BASE,
        "ASTERISK_HOST": host,
        "OPENAI_REALTIME_URL": f"ws://{'[::1]' if host == '::1' else host}:9000/v1/realtime",
        "ALERT_WEBHOOKS": f"json:http://{'[::1]' if host == '::1' else host}:8000/x",
    }
    assert cfg.check(environ=environ).errors() == []


def test_a_private_ca_for_ari_over_tls_is_a_readable_file(tmp_path):
    checked = cfg.check(
        environ={**BASE, "ASTERISK_TLS": "true", "ASTERISK_CA_FILE": str(tmp_path / "missing.pem")}
    )
    assert any(e.variable == "ASTERISK_CA_FILE" for e in checked.errors())
