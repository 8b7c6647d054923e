"""What callbridge sends to GPT-Live, and what its errors mean for the call: the messages
of call_worker/live_adapter.py, built from the settings.

GPT-Live's session is fixed at `session.start` (model, instructions, the one audio format
of both directions, the voice, the delegation) and strict: a field it does not know is
refused (`unknown_parameter`), so nothing Realtime-shaped may slip in. It has no turn
detection to configure: the model decides when to speak and when to stop. Tools run on a
Responses model behind it (`delegation.responses`). Protocol facts: docs/voice-apis.md.
"""

from __future__ import annotations

from call_worker.realtime_protocol import ErrorAction, tool_definitions
from callbridge.config import Settings

# One format for both directions, passed through untouched (G.711 at 8 kHz).
FORMATS = {"ulaw": {"type": "audio/pcmu", "rate": 8000}, "alaw": {"type": "audio/pcma", "rate": 8000}}
# A new session's history (`input`): the service takes at most this many messages and
# tokens; the newest are kept.
HISTORY_MESSAGES = 128
HISTORY_TOKENS = 8192
CHARS_PER_TOKEN = 4  # a cautious estimate: no tokenizer in the worker
TEXT_TOKENS = 500  # an injected text's limit (instructions/thinking/commentary.append)

ERROR_ACTIONS = {
    "invalid_api_key": ErrorAction.FATAL_CONFIG,
    "model_not_found": ErrorAction.FATAL_CONFIG,
    "insufficient_quota": ErrorAction.FATAL_CONFIG,
    "account_deactivated": ErrorAction.FATAL_CONFIG,
    "billing_hard_limit_reached": ErrorAction.FATAL_CONFIG,
    "unknown_parameter": ErrorAction.FATAL_CONFIG,
    "session_expired": ErrorAction.RECONNECT,
    "session_ended_for_content": ErrorAction.FATAL_CONFIG,
}
FIXES = {
    "invalid_api_key": "OPENAI_API_KEY is wrong or revoked: set a valid key",
    "model_not_found": "OPENAI_REALTIME_MODEL is not a GPT-Live model this key may use: gpt-live-1.1",
    "insufficient_quota": "the OpenAI account has no quota left: check billing",
    "account_deactivated": "the OpenAI account is deactivated",
    "billing_hard_limit_reached": "the OpenAI account reached its billing limit",
    "unknown_parameter": "GPT-Live refused a session field: report it (callbridge sends only documented ones)",
    "session_ended_for_content": "GPT-Live ended the session for its content",
}


def classify_error(error: dict) -> ErrorAction:
    return ERROR_ACTIONS.get(str(error.get("code") or ""), ErrorAction.LOG)


def delegation(settings: Settings, tools) -> dict | None:
    """The agent's tools on the Responses backend, one call at a time (a reply waits for
    each result); None when the agent has none (client delegation: nothing runs)."""
    if not tools:
        return None
    return {
        "type": "responses",
        "responses": {
            "model": settings.openai_live_backend_model,
            "instructions": "Call the tools the conversation needs, with the arguments the caller gave.",
            "tools": tool_definitions(tools),
            "tool_choice": "auto",
            "parallel_tool_calls": False,
        },
    }


def session_start(settings: Settings, tools=(), history: list[dict] | None = None) -> dict:
    """The opening message; raises OSError when the instructions file cannot be read."""
    session: dict = {
        "model": settings.openai_realtime_model,
        "instructions": settings.instructions(),
        "audio": {"format": FORMATS[settings.audio_format], "output": {"voice": settings.openai_voice}},
    }
    backend = delegation(settings, tools)
    if backend is not None:
        session["delegation"] = backend
    if history:
        session["input"] = history
    return {"type": "session.start", "session": session}


def history(turns: list[tuple[str, str]]) -> list[dict]:
    """Earlier turns ("caller" or "agent", text) as a new session's `input`, within the
    service's limits: the newest kept, older ones dropped whole."""
    kept: list[dict] = []
    budget = HISTORY_TOKENS * CHARS_PER_TOKEN
    for speaker, text in reversed(turns):
        text = text.strip()
        if not text:
            continue
        if len(kept) == HISTORY_MESSAGES or len(text) > budget:
            break
        budget -= len(text)
        role = "user" if speaker == "caller" else "assistant"
        kept.append(
            {
                "role": role,
                "content": [{"type": "input_text" if role == "user" else "output_text", "text": text}],
            }
        )
    kept.reverse()
    return kept


def text_append(kind: str, text: str, event_id: str = "") -> dict:
    """`session.instructions.append` (guidance the model acts on: the greeting, a goodbye),
    `session.thinking.append` (silent context: a key press) or `.commentary.append`, within
    an append's limit."""
    event = {
        "type": f"session.{kind}.append",
        "content": text[: TEXT_TOKENS * CHARS_PER_TOKEN],
        "delegation_id": None,
    }
    if event_id:
        event["event_id"] = event_id
    return event
