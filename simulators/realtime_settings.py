"""What the simulated Realtime server accepts in a session.update, and how its settings
change what it does: the checks the real service makes on the tuning callbridge sends
(reasoning, speed, noise reduction, turn detection), answered with the same kind of
error, and the end-of-turn timing of each turn detection mode.

A refused update changes nothing: the session keeps what it had (for the opening update,
the service's defaults), as the real service does.
"""

from __future__ import annotations

import re

EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
EAGERNESS = ("low", "medium", "high", "auto")
NOISE_TYPES = ("near_field", "far_field")
DETECTIONS = ("server_vad", "semantic_vad")
SPEED_RANGE = (0.25, 1.5)
# gpt-realtime-2 and its point releases (and -mini, and dated snapshots) reason and answer
# in phases. The simulator imports nothing of callbridge: tests/test_voice_tuning.py keeps
# these tables equal to callbridge/voice_tuning.py's.
_REASONING = re.compile(r"gpt-realtime-2(\.\d+)?(-mini)?(-\d{4}-\d{2}-\d{2})?")

# How long semantic_vad waits after speech before it ends the turn, per eagerness: it ends
# a turn that sounds finished sooner than one that trails off, and "low" lets the caller
# pause. The real service decides from the words; the simulator has only a tone, so it
# stands for that with a fixed silence per eagerness (auto is medium).
SEMANTIC_SILENCE_MS = {"high": 250, "medium": 500, "auto": 500, "low": 1000}


def reasons(model: str) -> bool:
    return _REASONING.fullmatch(model.strip().lower()) is not None


def refusal(session: dict, model: str, beta: bool) -> tuple[str, str, str] | None:
    """(code, message, param) for a setting the service would refuse; None when it takes
    the update."""
    if beta:
        speed = session.get("speed")
        noise = session.get("input_audio_noise_reduction")
        detection = session.get("turn_detection")
        if "reasoning" in session:
            return ("unknown_parameter", "Unknown parameter: 'session.reasoning'.", "session.reasoning")
        prefix = "session"
        noise_param, detection_param = "session.input_audio_noise_reduction", "session.turn_detection"
    else:
        audio = session.get("audio") or {}
        audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
        speed, noise, detection = (
            audio_out.get("speed"),
            audio_in.get("noise_reduction"),
            audio_in.get("turn_detection"),
        )
        prefix = "session.audio.output"
        noise_param, detection_param = (
            "session.audio.input.noise_reduction",
            "session.audio.input.turn_detection",
        )
        reasoning = session.get("reasoning")
        if reasoning is not None:
            if not reasons(model):
                return (
                    "unsupported_parameter",
                    f"The 'reasoning' parameter is not supported with the model '{model}'.",
                    "session.reasoning",
                )
            effort = (reasoning or {}).get("effort") if isinstance(reasoning, dict) else None
            if effort not in EFFORTS:
                return _invalid_value("session.reasoning.effort", effort, EFFORTS)
    if speed is not None:
        if not isinstance(speed, int | float) or isinstance(speed, bool):
            return (
                "invalid_type",
                f"Invalid type for '{prefix}.speed': expected a decimal.",
                f"{prefix}.speed",
            )
        if speed < SPEED_RANGE[0]:
            return (
                "decimal_below_min_value",
                _bound(prefix, speed, "greater", SPEED_RANGE[0]),
                f"{prefix}.speed",
            )
        if speed > SPEED_RANGE[1]:
            return (
                "decimal_above_max_value",
                _bound(prefix, speed, "less", SPEED_RANGE[1]),
                f"{prefix}.speed",
            )
    if noise is not None and (not isinstance(noise, dict) or noise.get("type") not in NOISE_TYPES):
        kind = noise.get("type") if isinstance(noise, dict) else noise
        return _invalid_value(f"{noise_param}.type", kind, NOISE_TYPES)
    if detection is not None:
        if not isinstance(detection, dict) or detection.get("type") not in DETECTIONS:
            kind = detection.get("type") if isinstance(detection, dict) else detection
            return _invalid_value(f"{detection_param}.type", kind, DETECTIONS)
        if detection["type"] == "semantic_vad" and detection.get("eagerness", "auto") not in EAGERNESS:
            return _invalid_value(f"{detection_param}.eagerness", detection.get("eagerness"), EAGERNESS)
    return None


def end_of_turn_silence_ms(detection: dict | None) -> int:
    """The silence after which the session ends the caller's turn."""
    detection = detection or {}
    if detection.get("type") == "semantic_vad":
        return SEMANTIC_SILENCE_MS[detection.get("eagerness", "auto")]
    return int(detection.get("silence_duration_ms", 500))


def _invalid_value(param: str, value, allowed) -> tuple[str, str, str]:
    choices = ", ".join(f"'{a}'" for a in allowed)
    return ("invalid_value", f"Invalid value: '{value}'. Supported values are: {choices}.", param)


def _bound(prefix: str, value, side: str, limit: float) -> str:
    return f"Invalid '{prefix}.speed': decimal {side} than or equal to {limit} expected, got {value}."
