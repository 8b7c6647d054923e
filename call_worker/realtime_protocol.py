"""The Realtime protocol as callbridge speaks it: what to send, how to read what comes.

Pure functions and tables, no I/O: the GA and beta shapes of `session.update`, the
responses callbridge asks for (greeting, goodbye), beta-to-GA event names, and what
each error code means for the call.
"""

from __future__ import annotations

from enum import Enum

from callbridge import voice_tuning
from callbridge.config import Settings

GA_FORMATS = {"ulaw": {"type": "audio/pcmu"}, "alaw": {"type": "audio/pcma"}}
BETA_FORMATS = {"ulaw": "g711_ulaw", "alaw": "g711_alaw"}

# Beta event names -> the GA names the worker handles.
BETA_TO_GA = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
}

# A message item's `phase` (gpt-realtime-2.x) -> the name callbridge records it under.
PHASES = {"commentary": "preamble", "final_answer": "answer"}

GOODBYE_TIME_LIMIT = (
    "The call has reached its time limit. Tell the caller, in one short sentence and in their "
    "language, that you have to end the call now, and say goodbye."
)
GOODBYE_IDLE = (
    "Nobody has spoken for a while. Say, in one short sentence and in the caller's language, "
    "that you are ending the call, and say goodbye."
)

GOODBYE_AGENT = (
    "The call ends now, as you asked. In one short sentence and in the caller's language, say "
    "goodbye (if you have just said goodbye, a single 'Goodbye' is enough)."
)


def tool_filler(filler: str) -> str:
    """What the agent is told to say while an HTTP tool runs, when its reply said no
    preamble (call_worker/conversation.py): the agent's own words, else a short 'checking'."""
    if filler:
        what = f"say, in the caller's language and in your own voice: {filler!r}"
    else:
        what = "tell the caller in a few words, in their language, that you are checking that now"
    return (
        f"A lookup is running. Only {what}. Do not answer the question yet and do not call a "
        "tool: the result comes next."
    )


def transfer_failed(destination: str, why: str) -> str:
    """What the agent is told when a transfer did not go through (call_worker/transfer.py)."""
    return (
        f"The transfer to {destination} did not go through: {why}. The caller is still with you. "
        "Tell them briefly and in their language, and offer to help another way, to take a "
        "message, or to try again later."
    )


class ErrorAction(Enum):
    BENIGN = "benign"  # log at debug, carry on
    FATAL_CONFIG = "fatal"  # the configuration cannot work: end the call, say how to fix it
    RECONNECT = "reconnect"  # the session ended: open a new one
    LOG = "log"  # unexpected but not fatal: log a warning, carry on


ERROR_ACTIONS = {
    "conversation_already_has_active_response": ErrorAction.BENIGN,
    "response_cancel_not_active": ErrorAction.BENIGN,
    "input_audio_buffer_commit_empty": ErrorAction.BENIGN,
    "invalid_api_key": ErrorAction.FATAL_CONFIG,
    "model_not_found": ErrorAction.FATAL_CONFIG,
    "beta_api_shape_disabled": ErrorAction.FATAL_CONFIG,
    "insufficient_quota": ErrorAction.FATAL_CONFIG,
    "session_expired": ErrorAction.RECONNECT,
}

FIXES = {
    "invalid_api_key": "OPENAI_API_KEY is wrong or revoked: set a valid key",
    "model_not_found": "OPENAI_REALTIME_MODEL is not available to this key: use gpt-realtime-2.1",
    "beta_api_shape_disabled": "OpenAI turned the beta shape off: set OPENAI_API_SHAPE=ga and a GA model "
    "(OPENAI_REALTIME_MODEL=gpt-realtime-2.1)",
    "insufficient_quota": "the OpenAI account has no quota left: check billing",
}


def classify_error(error: dict) -> ErrorAction:
    code = error.get("code") or ""
    if ERROR_ACTIONS.get(code):
        return ERROR_ACTIONS[code]
    if "already shorter than" in (error.get("message") or ""):
        return ErrorAction.BENIGN  # a truncate raced the end of the item's audio
    return ErrorAction.LOG


def _turn_detection(settings: Settings, respond: bool) -> dict | None:
    """server_vad ends a turn after a silence; semantic_vad when what was said sounds
    finished (callbridge/voice_tuning.py). "none" is refused at start: nothing would end a
    turn (callbridge commits none itself)."""
    if settings.openai_turn_detection == "none":
        return None
    if settings.openai_turn_detection == "semantic_vad":
        detection: dict = {"type": "semantic_vad", "eagerness": settings.openai_vad_eagerness}
    else:
        detection = {
            "type": "server_vad",
            "threshold": settings.openai_vad_threshold,
            "prefix_padding_ms": settings.openai_vad_prefix_ms,
            "silence_duration_ms": settings.openai_vad_silence_ms,
        }
    # Explicit: their defaults are not documented. Off only for the goodbye
    # (call_worker/goodbye.py), so that the next response is ours.
    detection.update(create_response=respond, interrupt_response=respond)
    return detection


def _transcription(settings: Settings) -> dict | None:
    """The caller's transcription, told the language when the agent (or OPENAI_LANGUAGE) has
    one, and what to expect (a prompt, keywords) when the agent says."""
    if not settings.openai_transcription_model:
        return None
    transcription = {"model": settings.openai_transcription_model}
    if settings.openai_language:
        transcription["language"] = settings.transcription_language
    prompt = voice_tuning.transcription_prompt(settings)
    if prompt:
        transcription["prompt"] = prompt
    return transcription


def _noise_reduction(settings: Settings) -> dict | None:
    """None when off: the field is then left out, as sessions had it before it was offered."""
    if settings.openai_noise_reduction == "off":
        return None
    return {"type": settings.openai_noise_reduction}


def _audio_input(settings: Settings, respond: bool) -> dict:
    audio_input: dict = {
        "format": GA_FORMATS[settings.audio_format],
        "turn_detection": _turn_detection(settings, respond),
    }
    noise = _noise_reduction(settings)
    if noise:
        audio_input["noise_reduction"] = noise
    transcription = _transcription(settings)
    if transcription:
        audio_input["transcription"] = transcription
    return audio_input


def _audio_output(settings: Settings) -> dict:
    output = {"format": GA_FORMATS[settings.audio_format], "voice": settings.openai_voice}
    if settings.openai_speed != 1.0:
        output["speed"] = settings.openai_speed
    return output


def tool_definitions(tools) -> list[dict]:
    """call_worker/tools.py's ToolSpecs as Realtime function tools (GA and beta alike)."""
    return [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
        for t in tools
    ]


def session_update(settings: Settings, tools=()) -> dict:
    vad = _turn_detection(settings, respond=True)
    transcription = _transcription(settings)
    if settings.openai_api_shape == "beta":
        session = {
            "modalities": ["audio", "text"],
            "instructions": settings.instructions(),
            "voice": settings.openai_voice,
            "input_audio_format": BETA_FORMATS[settings.audio_format],
            "output_audio_format": BETA_FORMATS[settings.audio_format],
            "turn_detection": vad,
        }
        if transcription:
            session["input_audio_transcription"] = transcription
        noise = _noise_reduction(settings)
        if noise:
            session["input_audio_noise_reduction"] = noise
        if settings.openai_speed != 1.0:
            session["speed"] = settings.openai_speed
        if tools:
            session.update(tools=tool_definitions(tools), tool_choice="auto")
        return {"type": "session.update", "session": session}
    session = {
        "type": "realtime",
        "instructions": settings.instructions(),
        "output_modalities": ["audio"],
        "audio": {"input": _audio_input(settings, respond=True), "output": _audio_output(settings)},
    }
    if settings.openai_reasoning_effort:  # refused at start for a model that does not reason
        session["reasoning"] = {"effort": settings.openai_reasoning_effort}
    if tools:
        session.update(tools=tool_definitions(tools), tool_choice="auto")
    return {"type": "session.update", "session": session}


def tools_update(tools, beta: bool) -> dict:
    """A session.update of the tools alone (the rest of the session stays as it is)."""
    session = {"tools": tool_definitions(tools), "tool_choice": "auto"}
    if not beta:
        session["type"] = "realtime"
    return {"type": "session.update", "session": session}


def session_update_no_responses(settings: Settings) -> dict:
    """Turn detection stays on (speech is still heard and transcribed) but creates and
    interrupts no response. Only the input side is sent: the voice may not change once
    audio has been output, and the instructions need not be sent again."""
    if settings.openai_api_shape == "beta":
        session = {
            "input_audio_format": BETA_FORMATS[settings.audio_format],
            "turn_detection": _turn_detection(settings, False),
        }
        return {"type": "session.update", "session": session}
    return {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"input": _audio_input(settings, respond=False)}},
    }


def response_create(instructions: str, purpose: str = "") -> dict:
    """A response with its own instructions. `purpose` goes in its metadata, for logs and
    traces only: servers need not echo it, so nothing relies on it (call_worker/goodbye.py)."""
    response: dict = {"instructions": instructions}
    if purpose:
        response["metadata"] = {"purpose": purpose}
    return {"type": "response.create", "response": response}


def usage_of(usage: dict) -> dict:
    """One response.done's `usage` as the call's token totals count it (records/spool.py
    splits them by kind: text is total less audio and cached)."""
    inputs = usage.get("input_token_details") or {}
    outputs = usage.get("output_token_details") or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "input_audio_tokens": int(inputs.get("audio_tokens") or 0),
        "input_cached_tokens": int(inputs.get("cached_tokens") or 0),
        "output_audio_tokens": int(outputs.get("audio_tokens") or 0),
    }


def context_items(turns: list[tuple[str, str]], beta: bool) -> list[dict]:
    """conversation.item.create events that carry an earlier session's transcript into a new one."""
    events = []
    for role, text in turns[-20:]:
        if not text:
            continue
        if role == "caller":
            content = [{"type": "input_text", "text": text}]
            item = {"type": "message", "role": "user", "content": content}
        else:
            content = [{"type": "text" if beta else "output_text", "text": text}]
            item = {"type": "message", "role": "assistant", "content": content}
        events.append({"type": "conversation.item.create", "item": item})
    return events
