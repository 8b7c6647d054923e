"""OpenAI Realtime behind the adapter seam (call_worker/adapter.py): the GA shape, and the
legacy beta shape for servers that still speak it (OPENAI_API_SHAPE=beta).

What to send is built by call_worker/realtime_protocol.py; this module opens the session
and reads server events into the seam's events. A failure to open is either fatal for this
configuration (bad key, unknown model, beta refused: retrying would only hammer the
service) or worth a retry (network, 5xx, slow accept). The key goes in the Authorization
header only; the URL we log holds no secret.
"""

from __future__ import annotations

import base64
import binascii
import json

from websockets.exceptions import InvalidHandshake, InvalidStatus

from call_worker import adapter as seam
from call_worker import realtime_protocol as proto
from call_worker.ws_link import WsLink, open_link
from callbridge.config import Settings

_APPEND_HEAD = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_TAIL = b'"}'
REFUSED_CLOSE = 4000  # the service closes with it when it will not take the configuration


class RealtimeAdapter(seam.Adapter):
    def __init__(self, settings: Settings, tools=()) -> None:
        self.settings = settings
        self.tools = tuple(tools)  # call_worker/tools.py ToolSpecs, offered in every session
        self.beta = settings.openai_api_shape == "beta"
        self.name = f"realtime-{settings.openai_api_shape}"
        self._parsers = {
            "response.output_audio.delta": _audio,
            "response.output_item.added": _item_added,
            "input_audio_buffer.speech_started": lambda e: seam.CallerSpeechStarted(),
            "input_audio_buffer.speech_stopped": lambda e: seam.CallerSpeechStopped(),
            "response.created": lambda e: seam.ReplyStarted(str(e["response"]["id"])),
            "response.done": _reply_done,
            "session.updated": lambda e: seam.SettingsApplied(),
            "response.output_audio_transcript.delta": lambda e: seam.AgentTextDelta(
                str(e["item_id"]), str(e.get("delta") or "")
            ),
            "response.output_audio_transcript.done": lambda e: seam.AgentText(
                str(e["item_id"]), str(e.get("response_id") or ""), str(e.get("transcript") or "").strip()
            ),
            "conversation.item.input_audio_transcription.completed": _caller_text,
            "response.function_call_arguments.done": _tool_call,
            "error": _error,
        }

    # --- opening

    def connect(self, timeout: float, opening_id: str) -> WsLink:
        settings = self.settings
        try:
            opening = proto.session_update(settings, self.tools)
        except OSError as exc:  # OPENAI_INSTRUCTIONS_FILE became unreadable
            raise seam.ConnectError(f"cannot read the instructions: {exc}", fatal=True) from None
        opening["event_id"] = opening_id
        headers = {"Authorization": f"Bearer {settings.openai_api_key.reveal()}", "User-Agent": "callbridge"}
        if self.beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        url = settings.realtime_url
        try:
            link = open_link(url, headers, timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            what = {
                401: "the API key was refused (OPENAI_API_KEY)",
                403: "access denied for this key",
                404: f"unknown model or URL ({url})",
            }.get(status, f"HTTP {status}")
            code = {401: "invalid_api_key", 404: "model_not_found"}.get(status, "")
            raise seam.ConnectError(
                f"Realtime handshake failed: {what}", status in (401, 403, 404), code
            ) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise seam.ConnectError(f"cannot reach {url}: {type(exc).__name__}: {exc}", False) from None
        # Sent by the opener, so that a session is never handed over unconfigured. A
        # refusal comes as an error event and a close, which the media loop reads.
        link.send_text(json.dumps(opening))
        return link

    def refused_by_close(self, code: int | None) -> bool:
        return code == REFUSED_CLOSE

    # --- commands

    def append(self, audio: bytes | memoryview) -> bytes:
        return _APPEND_HEAD + binascii.b2a_base64(audio, newline=False) + _APPEND_TAIL

    def respond(self, instructions: str, purpose: str = "", event_id: str = "") -> list[str]:
        event = proto.response_create(instructions, purpose)
        if event_id:
            event["event_id"] = event_id
        return [json.dumps(event)]

    def tools_update(self, event_id: str) -> list[str]:
        event = proto.tools_update(self.tools, self.beta)
        event["event_id"] = event_id
        return [json.dumps(event)]

    def quiet(self, event_id: str) -> list[str]:
        event = proto.session_update_no_responses(self.settings)
        event["event_id"] = event_id
        return [json.dumps(event)]

    def cancel(self, response_id: str) -> list[str]:
        return [json.dumps({"type": "response.cancel", "response_id": response_id})]

    def truncate(self, item_id: str, audio_end_ms: int) -> list[str]:
        event = {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        }
        return [json.dumps(event)]

    def inject(self, turns: list[tuple[str, str]]) -> list[str]:
        return [json.dumps(event) for event in proto.context_items(turns, self.beta)]

    def note(self, text: str) -> list[str]:
        return [
            json.dumps(event) for event in proto.context_items([("caller", text)], self.beta)
        ] + self.reply()

    def delete(self, item_id: str) -> list[str]:
        return [json.dumps({"type": "conversation.item.delete", "item_id": item_id})]

    def tool_result(self, call_id: str, output: str) -> list[str]:
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return [json.dumps({"type": "conversation.item.create", "item": item})]

    def reply(self) -> list[str]:
        return [json.dumps({"type": "response.create"})]

    # --- events

    def events(self, message: bytes) -> list[seam.Event]:
        try:
            event = json.loads(message)
            kind = event["type"]
            if self.beta:
                kind = proto.BETA_TO_GA.get(kind, kind)
            parser = self._parsers.get(kind)
            parsed = None if parser is None else parser(event)
            return [] if parsed is None else [parsed]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise seam.MalformedEvent(f"{type(exc).__name__}: {exc}") from None


def _audio(event: dict) -> seam.AgentAudio:
    audio = base64.b64decode(event["delta"], validate=True)
    return seam.AgentAudio(str(event["response_id"]), str(event["item_id"]), audio)


def _item_added(event: dict) -> seam.AgentItem | None:
    """A message item's phase (gpt-realtime-2.x); function calls come as their own events."""
    item = event["item"]
    if item.get("type") != "message":
        return None
    phase = proto.PHASES.get(str(item.get("phase") or ""), "")
    return seam.AgentItem(str(event.get("response_id") or ""), str(item["id"]), phase)


def _reply_done(event: dict) -> seam.ReplyDone:
    response = event["response"]
    items = tuple(
        str(item["id"])
        for item in response.get("output") or []
        if isinstance(item, dict) and "id" in item and item.get("type", "message") == "message"
    )
    return seam.ReplyDone(str(response["id"]), proto.usage_of(response.get("usage") or {}), items)


def _caller_text(event: dict) -> seam.CallerText:
    seconds = (event.get("usage") or {}).get("seconds") or 0
    return seam.CallerText(str(event.get("transcript") or "").strip(), float(seconds))


def _tool_call(event: dict) -> seam.ToolCall:
    return seam.ToolCall(
        str(event["call_id"]),
        str(event.get("name") or ""),
        str(event.get("arguments") or "{}"),
        str(event.get("response_id") or ""),
    )


def _error(event: dict) -> seam.ServiceError:
    error = event.get("error") or {}
    code = str(error.get("code") or "")
    cause = error.get("event_id")
    return seam.ServiceError(
        code=code,
        message=str(error.get("message") or "")[:300],
        cause=cause if isinstance(cause, str) else None,
        action=proto.classify_error(error),
        fix=proto.FIXES.get(code, ""),
    )
