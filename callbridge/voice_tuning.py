"""How the agent's voice is tuned, and which tunings the chosen model and API shape take.

Turn detection (when the caller's turn ends), input noise reduction, reasoning effort,
output speed and the caller's transcription hints are `Settings` fields (the OPENAI_*
variables are their defaults; an agent overrides them, callbridge/agents.py). What the
Realtime session is sent is built from them in call_worker/realtime_protocol.py. This
module says which combinations cannot work, with the reason, once for both places that
check them: the environment (callbridge/config.py `_relations`) and each agent of the
agents file (callbridge/agent_file.py `tuning_problems`), at start and in `check`.

Problems name a tuning by its agents-file key (`reasoning_effort`, `turns.detection`);
`ENV_NAMES` gives the variable that sets its default.
"""

from __future__ import annotations

import re

DETECTIONS = ("server_vad", "semantic_vad", "none")
EAGERNESS = ("low", "medium", "high", "auto")
NOISE_REDUCTIONS = ("near_field", "far_field", "off")
EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
SPEED_MIN, SPEED_MAX = 0.25, 1.5  # what audio.output.speed accepts
KEYWORDS_MAX, KEYWORD_CHARS = 50, 64
PROMPT_CHARS = 1000

# The reasoning voice models: gpt-realtime-2, -2.1 and their minis. Earlier ones
# (gpt-realtime, gpt-realtime-1.5, the previews) take no reasoning settings.
_REASONING = re.compile(r"gpt-realtime-2(\.\d+)?(-mini)?(-\d{4}-\d{2}-\d{2})?")
# Transcription models that take a prompt: free text for the GPT ones (keywords are folded
# into it), a list of keywords for whisper-1 (OpenAI's speech-to-text guide).
PROMPT_TEXT_MODELS = ("gpt-transcribe", "gpt-live-transcribe", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
PROMPT_KEYWORD_MODELS = ("whisper-1",)

ENV_NAMES = {
    "turns.detection": "OPENAI_TURN_DETECTION",
    "turns.eagerness": "OPENAI_VAD_EAGERNESS",
    "noise_reduction": "OPENAI_NOISE_REDUCTION",
    "reasoning_effort": "OPENAI_REASONING_EFFORT",
    "speed": "OPENAI_SPEED",
    "transcription_prompt": "OPENAI_TRANSCRIPTION_PROMPT",
    "transcription_keywords": "OPENAI_TRANSCRIPTION_KEYWORDS",
}


def reasons(model: str) -> bool:
    """Does the Realtime model reason (take `reasoning.effort`, answer in phases)?"""
    return _REASONING.fullmatch(model.strip().lower()) is not None


def problems(settings) -> list[tuple[str, str]]:
    """(tuning key, problem) for each tuning of `settings` that its model or API shape lacks."""
    found = []
    if settings.openai_turn_detection == "none":
        found.append(
            (
                "turns.detection",
                "none would leave every caller's turn open: callbridge does not end turns itself "
                "(it relies on the service's turn detection); use server_vad or semantic_vad",
            )
        )
    effort, model = settings.openai_reasoning_effort, settings.openai_realtime_model
    if effort and settings.openai_api_shape == "beta":
        found.append(
            ("reasoning_effort", "the beta API shape has no reasoning settings (OPENAI_API_SHAPE=beta)")
        )
    elif effort and not reasons(model):
        found.append(
            (
                "reasoning_effort",
                f"{model} does not reason: only gpt-realtime-2 models do (gpt-realtime-2, "
                "gpt-realtime-2.1, gpt-realtime-2.1-mini); leave it empty for this model",
            )
        )
    transcriber = settings.openai_transcription_model
    for key, value in (
        ("transcription_prompt", settings.openai_transcription_prompt),
        ("transcription_keywords", settings.openai_transcription_keywords),
    ):
        if not value:
            continue
        if not transcriber:
            found.append((key, "the caller is not transcribed (OPENAI_TRANSCRIPTION_MODEL is empty)"))
        elif key == "transcription_prompt" and transcriber in PROMPT_KEYWORD_MODELS:
            found.append((key, f"{transcriber} takes keywords, not a prompt: give the keywords instead"))
        elif transcriber not in PROMPT_TEXT_MODELS + PROMPT_KEYWORD_MODELS:
            takes = ", ".join(PROMPT_TEXT_MODELS + PROMPT_KEYWORD_MODELS)
            found.append(
                (key, f"the transcription model {transcriber} is not known to take one (these do: {takes})")
            )
    return found


def transcription_prompt(settings) -> str:
    """The prompt the transcription is given: the operator's text, and the keywords in the
    form the model reads (whisper-1: the list itself; the GPT models: a sentence)."""
    keywords = ", ".join(settings.openai_transcription_keywords)
    if settings.openai_transcription_model in PROMPT_KEYWORD_MODELS:
        return keywords
    prompt = settings.openai_transcription_prompt
    if keywords:
        prompt = f"{prompt} Words the caller may use: {keywords}.".strip()
    return prompt


def keywords(raw: str) -> tuple[str, ...]:
    """OPENAI_TRANSCRIPTION_KEYWORDS: comma-separated words or names, as the caller says them."""
    words = tuple(dict.fromkeys(word.strip() for word in raw.split(",") if word.strip()))
    if len(words) > KEYWORDS_MAX:
        raise ValueError(f"at most {KEYWORDS_MAX} keywords (got {len(words)})")
    long = [word for word in words if len(word) > KEYWORD_CHARS]
    if long:
        raise ValueError(f"a keyword is at most {KEYWORD_CHARS} characters (got {long[0][:80]!r}...)")
    return words


def prompt(raw: str) -> str:
    value = raw.strip()
    if len(value) > PROMPT_CHARS:
        raise ValueError(f"at most {PROMPT_CHARS} characters (got {len(value)})")
    return value
