"""The voice's tuning (callbridge/voice_tuning.py): each setting, from the environment or an
agent, in the session.update callbridge sends (call_worker/realtime_protocol.py), in both
API shapes; and each combination the model or shape lacks refused before a call, by
`check` and by `run`, with its reason. What the simulated service does with them is
tests/test_voice_service.py's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from call_worker import realtime_protocol as proto
from callbridge import agents
from callbridge import config as cfg

BASE = {
    "ASTERISK_HOST": "127.0.0.1",
    "ASTERISK_USERNAME": "u",
    "ASTERISK_PASSWORD": "p",
    "OPENAI_API_KEY": "sk-unit",
}


def settings(**env: str) -> cfg.Settings:
    return cfg.load(env_file=None, environ=BASE | env).settings


def audio_in(update: dict) -> dict:
    return update["session"]["audio"]["input"]


def test_the_defaults_send_what_sessions_had_before_the_tuning():
    update = proto.session_update(settings())
    session = update["session"]
    assert audio_in(update)["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    assert "noise_reduction" not in audio_in(update) and "reasoning" not in session
    assert "speed" not in session["audio"]["output"]
    assert "prompt" not in audio_in(update)["transcription"]


def test_each_environment_setting_reaches_the_ga_session_update():
    update = proto.session_update(
        settings(
            OPENAI_TURN_DETECTION="semantic_vad",
            OPENAI_VAD_EAGERNESS="low",
            OPENAI_NOISE_REDUCTION="near_field",
            OPENAI_REASONING_EFFORT="minimal",
            OPENAI_SPEED="1.25",
            OPENAI_TRANSCRIPTION_PROMPT="Calls to a dental clinic in Madrid.",
            OPENAI_TRANSCRIPTION_KEYWORDS="ortodoncia, Dra. Ruiz, ortodoncia",
            OPENAI_LANGUAGE="es",
        )
    )
    session = update["session"]
    assert audio_in(update)["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert audio_in(update)["noise_reduction"] == {"type": "near_field"}
    assert session["reasoning"] == {"effort": "minimal"}
    assert session["audio"]["output"]["speed"] == 1.25
    assert audio_in(update)["transcription"] == {
        "model": "gpt-transcribe",
        "language": "es",
        "prompt": "Calls to a dental clinic in Madrid. Words the caller may use: ortodoncia, Dra. Ruiz.",
    }


def test_the_quiet_update_of_the_goodbye_keeps_the_tuning_and_turns_responses_off():
    quiet = proto.session_update_no_responses(
        settings(
            OPENAI_TURN_DETECTION="semantic_vad",
            OPENAI_VAD_EAGERNESS="high",
            OPENAI_NOISE_REDUCTION="far_field",
        )
    )
    detection = audio_in(quiet)["turn_detection"]
    assert detection["type"] == "semantic_vad" and detection["eagerness"] == "high"
    assert detection["create_response"] is False and detection["interrupt_response"] is False
    assert audio_in(quiet)["noise_reduction"] == {"type": "far_field"}


def test_whisper_gets_the_keywords_themselves_as_its_prompt():
    update = proto.session_update(
        settings(OPENAI_TRANSCRIPTION_MODEL="whisper-1", OPENAI_TRANSCRIPTION_KEYWORDS="Movistar, fibra")
    )
    assert audio_in(update)["transcription"]["prompt"] == "Movistar, fibra"


def test_the_beta_shape_carries_noise_reduction_and_speed_in_its_own_fields():
    update = proto.session_update(
        settings(
            OPENAI_API_SHAPE="beta",
            OPENAI_REALTIME_MODEL="gpt-4o-realtime-preview",
            OPENAI_NOISE_REDUCTION="far_field",
            OPENAI_SPEED="0.8",
            OPENAI_TURN_DETECTION="semantic_vad",
        )
    )
    session = update["session"]
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert session["speed"] == 0.8 and session["turn_detection"]["type"] == "semantic_vad"
    assert "reasoning" not in session


AGENTS = """
    [agents.clinic]
    numbers = ["100"]
    reasoning_effort = "low"
    noise_reduction = "near_field"
    speed = 0.9
    transcription_keywords = ["ortodoncia", "implante"]
    [agents.clinic.turns]
    detection = "semantic_vad"
    eagerness = "low"

    [agents.night]
    numbers = ["200"]
    [agents.night.turns]
    threshold = 0.7
    silence_ms = 900
"""


def test_each_agent_gets_its_own_tuning_over_the_environments(tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(AGENTS))
    base = settings(AGENTS_FILE=str(path), OPENAI_SPEED="1.1", OPENAI_NOISE_REDUCTION="far_field")
    book = agents.load_book(base)
    clinic = proto.session_update(book.agents["clinic"].apply(base))
    night = proto.session_update(book.agents["night"].apply(base))
    assert audio_in(clinic)["turn_detection"]["eagerness"] == "low"
    assert audio_in(clinic)["noise_reduction"] == {"type": "near_field"}
    assert clinic["session"]["reasoning"] == {"effort": "low"}
    assert clinic["session"]["audio"]["output"]["speed"] == 0.9
    assert audio_in(clinic)["transcription"]["prompt"] == "Words the caller may use: ortodoncia, implante."
    # the night line sets only its VAD numbers: the rest is the environment's
    detection = audio_in(night)["turn_detection"]
    assert (detection["type"], detection["threshold"], detection["silence_duration_ms"]) == (
        "server_vad",
        0.7,
        900,
    )
    assert audio_in(night)["noise_reduction"] == {"type": "far_field"}
    assert night["session"]["audio"]["output"]["speed"] == 1.1 and "reasoning" not in night["session"]


@pytest.mark.parametrize(
    ("env", "variable", "reason"),
    [
        (
            {"OPENAI_REALTIME_MODEL": "gpt-realtime", "OPENAI_REASONING_EFFORT": "low"},
            "OPENAI_REASONING_EFFORT",
            "does not reason",
        ),
        (
            {
                "OPENAI_API_SHAPE": "beta",
                "OPENAI_REALTIME_MODEL": "gpt-4o-realtime-preview",
                "OPENAI_REASONING_EFFORT": "low",
            },
            "OPENAI_REASONING_EFFORT",
            "beta API shape",
        ),
        ({"OPENAI_TURN_DETECTION": "none"}, "OPENAI_TURN_DETECTION", "does not end turns itself"),
        (
            {"OPENAI_TRANSCRIPTION_MODEL": "", "OPENAI_TRANSCRIPTION_PROMPT": "a clinic"},
            "OPENAI_TRANSCRIPTION_PROMPT",
            "not transcribed",
        ),
        (
            {"OPENAI_TRANSCRIPTION_MODEL": "whisper-1", "OPENAI_TRANSCRIPTION_PROMPT": "a clinic"},
            "OPENAI_TRANSCRIPTION_PROMPT",
            "takes keywords",
        ),
        ({"OPENAI_SPEED": "2"}, "OPENAI_SPEED", "1.5"),
        ({"OPENAI_NOISE_REDUCTION": "studio"}, "OPENAI_NOISE_REDUCTION", "near_field"),
        ({"OPENAI_VAD_EAGERNESS": "eager"}, "OPENAI_VAD_EAGERNESS", "auto"),
        ({"OPENAI_REASONING_EFFORT": "max"}, "OPENAI_REASONING_EFFORT", "xhigh"),
    ],
    ids=[
        "non-reasoning-model",
        "beta-shape",
        "no-detection",
        "not-transcribed",
        "whisper-prompt",
        "speed",
        "noise",
        "eagerness",
        "effort",
    ],
)
def test_a_refused_tuning_is_a_configuration_error_with_its_reason(env, variable, reason):
    errors = "\n".join(str(e) for e in cfg.check(env_file=None, environ=BASE | env).errors())
    assert variable in errors and reason in errors


def _cli(command: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    environ = {
        "PATH": os.environ["PATH"],
        "CONTROL_SOCKET_PATH": str(tmp_path / "control.sock"),
        "LOG_FILE_PATH": str(tmp_path / "callbridge.log"),
        "STATE_DIR": str(tmp_path / "state"),
        **BASE,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "callbridge.cli", command],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_refuse_reasoning_for_a_model_that_does_not_reason(command, tmp_path):
    result = _cli(
        command, {"OPENAI_REALTIME_MODEL": "gpt-realtime", "OPENAI_REASONING_EFFORT": "low"}, tmp_path
    )
    assert result.returncode == 78, result.stdout + result.stderr
    assert "OPENAI_REASONING_EFFORT" in result.stderr and "gpt-realtime does not reason" in result.stderr


def test_check_names_the_agent_whose_tuning_its_model_lacks(tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text('[agents.clinic]\nnumbers = ["*"]\nreasoning_effort = "high"\n')
    result = _cli("check", {"AGENTS_FILE": str(path), "OPENAI_REALTIME_MODEL": "gpt-realtime"}, tmp_path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert "agents.clinic.reasoning_effort" in result.stderr and "does not reason" in result.stderr


def test_callbridge_agents_shows_what_each_agent_tunes_itself(tmp_path):
    from callbridge.agent_descriptions import describe_book

    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(AGENTS))
    text = describe_book(agents.load_book(settings(AGENTS_FILE=str(path))))
    clinic, night = text.split("  night\n")
    assert (
        "    tuning:    turns.detection semantic_vad, turns.eagerness low, noise_reduction near_field, "
        "reasoning_effort low, speed 0.9, transcription_keywords [ortodoncia, implante]"
    ) in clinic
    assert "    tuning:    turns.threshold 0.7, turns.silence_ms 900" in night


def test_the_simulated_service_checks_the_same_choices_as_callbridge():
    from callbridge import voice_tuning
    from simulators import realtime_settings

    assert realtime_settings.EFFORTS == voice_tuning.EFFORTS
    assert realtime_settings.EAGERNESS == voice_tuning.EAGERNESS
    assert tuple(n for n in voice_tuning.NOISE_REDUCTIONS if n != "off") == realtime_settings.NOISE_TYPES
    assert tuple(d for d in voice_tuning.DETECTIONS if d != "none") == realtime_settings.DETECTIONS
    assert (realtime_settings.SPEED_RANGE) == (voice_tuning.SPEED_MIN, voice_tuning.SPEED_MAX)
    for model in (
        "gpt-realtime-2",
        "gpt-realtime-2.1",
        "gpt-realtime-2.1-mini",
        "GPT-Realtime-2.1-2026-05-07 ",
        "gpt-realtime",
        "gpt-realtime-mini",
        "gpt-4o-realtime-preview",
    ):
        assert realtime_settings.reasons(model) == voice_tuning.reasons(model), model


@pytest.mark.parametrize(
    ("env", "turns", "problem"),
    [
        (
            {},
            'eagerness = "low"',
            "agents.a.turns.eagerness: is for semantic_vad (this agent's detection is server_vad, from OPENAI_TURN_DETECTION)",
        ),
        (
            {},
            'detection = "server_vad"\neagerness = "low"',
            "agents.a.turns.eagerness: is for semantic_vad (this agent's detection is server_vad)",
        ),
        (
            {"OPENAI_TURN_DETECTION": "semantic_vad"},
            "silence_ms = 800",
            "agents.a.turns.silence_ms: is for server_vad",
        ),
        ({"OPENAI_TURN_DETECTION": "semantic_vad"}, 'eagerness = "low"', None),
        ({}, 'detection = "semantic_vad"\neagerness = "high"', None),
    ],
    ids=[
        "eagerness-inherited-server",
        "eagerness-own-server",
        "silence-inherited-semantic",
        "eagerness-inherited-semantic",
        "own-semantic",
    ],
)
def test_turn_numbers_of_the_other_detection_are_named_as_unused(env, turns, problem, tmp_path):
    from callbridge.agent_file import AgentFileError

    path = tmp_path / "agents.toml"
    path.write_text(f'[agents.a]\nnumbers = ["*"]\n[agents.a.turns]\n{turns}\n')
    base = settings(AGENTS_FILE=str(path), **env)
    if problem is None:
        agents.load_book(base)
    else:
        with pytest.raises(AgentFileError) as refused:
            agents.load_book(base)
        assert problem in str(refused.value)
