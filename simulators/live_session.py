"""One simulated GPT-Live session: the protocol behind `/v1/live/sessions` (simulators/realtime.py
serves it beside Realtime), as strict as the real one where callbridge could go wrong.

- `session.start` first, and only documented fields: anything else is `unknown_parameter`
  naming the field, and the session never starts (a startup error, then a close).
- The model owns the turns: the caller's turn ends after a silence (simulators/vad.py), its
  transcript comes as timed `session.input_transcript.delta`s, then the agent speaks.
  Audio goes out on an output clock, one `chunk_ms` delta per tick at real time, after a
  burst of `lead_ms` when a reply begins; between replies the clock sends silence, as the
  real service streams "every frame, silence included". No ids, no done events.
- Barge-in is the model's: caller speech while it talks stops it `stop_ms` later (its
  reaction); nothing the client sends can cancel it.
- `session.instructions.append` makes it speak (a greeting before any caller turn, else a
  reply); `thinking.append` is silent context. Each append is acknowledged.
- Tools run by delegation: a planned call (realtime_tools.py's scripts) comes after the
  caller's turn as a `response.event` with the finished function_call item; the answer
  follows the `response.item.create` output and `response.create`.
- `session.usage.updated` every `usage_every` seconds; `session.close` ends with
  `session.closed`.
- Input is checked as a microphone: a gap of more than GAP_MS between appends is recorded
  (`<input gap>`), so tests see whether the client streams continuously.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass

from simulators import g711
from simulators.realtime_session import ReplyOptions, new_id, reply_transcript
from simulators.realtime_tools import FunctionCall, SessionTools
from simulators.vad import Vad

LIVE_MODELS = ("gpt-live-1", "gpt-live-1.1")
SESSION_FIELDS = {"model", "instructions", "input", "audio", "delegation", "store", "client"}
AUDIO_FIELDS = {"format", "output"}
OUTPUT_FIELDS = {"voice"}
FORMATS = {
    ("audio/pcm", 24000): None,
    ("audio/pcm", 16000): None,
    ("audio/pcmu", 8000): "ulaw",
    ("audio/pcma", 8000): "alaw",
}
RESPONSES_FIELDS = {
    "model",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "max_output_tokens",
    "service_tier",
}
INPUT_MESSAGES, INPUT_TOKENS = 128, 8192
GAP_MS = 100  # input appends further apart than this: the client did not stream continuously
WORD_MS = 250  # one transcript word per 250 ms of reply audio


@dataclass
class LiveOptions:
    lead_ms: int = 200  # audio sent at once when a reply begins (the playout lead it allows)
    stop_ms: int = 250  # the model's reaction to a caller talking over it
    usage_every: float = 5.0  # seconds between session.usage.updated
    expires_in: int = 3600  # seconds from the start to `expires_at`


class StartRefused(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


@dataclass
class Speech:
    audio: bytes
    words: list[str]
    sent: int = 0  # bytes
    said: int = 0  # words sent

    def piece(self, size: int) -> bytes:
        chunk = self.audio[self.sent : self.sent + size]
        self.sent += len(chunk)
        return chunk

    @property
    def done(self) -> bool:
        return self.sent >= len(self.audio)


def check_start(session: object, models=LIVE_MODELS) -> str:
    """The session's audio law; raises StartRefused as the service refuses a session."""
    if not isinstance(session, dict):
        raise StartRefused("invalid_type", "Invalid type for 'session': expected an object.", "session")
    for name in session:
        if name not in SESSION_FIELDS:
            raise StartRefused(
                "unknown_parameter", f"Unknown parameter: 'session.{name}'.", f"session.{name}"
            )
    if "model" not in session:
        raise StartRefused(
            "missing_required_parameter", "Missing required parameter: 'session.model'.", "session.model"
        )
    if session["model"] not in models:
        raise StartRefused(
            "model_not_found", f"The model '{session['model']}' does not exist or you do not have access."
        )
    audio = session.get("audio") or {}
    for name in audio:
        if name not in AUDIO_FIELDS:
            raise StartRefused(
                "unknown_parameter", f"Unknown parameter: 'session.audio.{name}'.", f"session.audio.{name}"
            )
    for name in audio.get("output") or {}:
        if name not in OUTPUT_FIELDS:
            raise StartRefused(
                "unknown_parameter",
                f"Unknown parameter: 'session.audio.output.{name}'.",
                f"session.audio.output.{name}",
            )
    form = audio.get("format") or {"type": "audio/pcm", "rate": 24000}
    key = (form.get("type"), form.get("rate"))
    if key not in FORMATS or set(form) - {"type", "rate"}:
        raise StartRefused("invalid_value", f"Invalid audio format {form}.", "session.audio.format")
    delegation = session.get("delegation")
    if delegation is not None:
        if delegation.get("type") not in ("client", "responses"):
            raise StartRefused(
                "invalid_value", "Invalid 'session.delegation.type'.", "session.delegation.type"
            )
        if delegation.get("type") == "responses":
            check_responses(delegation.get("responses"), "session.delegation.responses", required=True)
    messages = session.get("input") or []
    if len(messages) > INPUT_MESSAGES:
        raise StartRefused(
            "invalid_value", f"'session.input' has more than {INPUT_MESSAGES} messages.", "session.input"
        )
    chars = 0
    for message in messages:
        parts = message.get("content")
        if (
            message.get("role") not in ("developer", "user", "assistant")
            or not isinstance(parts, list)
            or len(parts) != 1
        ):
            raise StartRefused(
                "invalid_value",
                "Each 'session.input' message needs a role and one text part.",
                "session.input",
            )
        chars += len(str(parts[0].get("text") or ""))
    if chars > INPUT_TOKENS * 4:
        raise StartRefused(
            "invalid_value", f"'session.input' exceeds {INPUT_TOKENS} tokens.", "session.input"
        )
    return FORMATS[key] or "pcm"


def check_responses(responses: object, where: str, required: bool) -> None:
    if not isinstance(responses, dict):
        raise StartRefused("invalid_type", f"Invalid type for '{where}'.", where)
    for name in responses:
        if name not in RESPONSES_FIELDS:
            raise StartRefused(
                "unknown_parameter", f"Unknown parameter: '{where}.{name}'.", f"{where}.{name}"
            )
    if required and not responses.get("model"):
        raise StartRefused(
            "missing_required_parameter", f"Missing required parameter: '{where}.model'.", f"{where}.model"
        )


class LiveSession:
    def __init__(self, send, record, reply: ReplyOptions, live: LiveOptions, tools: SessionTools) -> None:
        self._send_raw = send
        self.record = record
        self.reply = reply
        self.live = live
        self.tools = tools
        self.law = "ulaw"
        self.vad: Vad | None = None
        self.config: dict = {}
        self.started_at = 0.0
        self.speech: Speech | None = None
        self.turns = 0  # caller turns ended so far
        self.spoken = 0  # replies begun
        self.input_bytes = 0
        self._last_append: float | None = None
        self._stopping: asyncio.Task | None = None
        self._clock: asyncio.Task | None = None
        self._delegations = 0

    # --- output

    def send(self, event: dict) -> None:
        event.setdefault("event_id", new_id("event"))
        self.record("out", event)
        self._send_raw(json.dumps(event))

    def error(self, code: str, message: str, param: str | None = None, client_event_id=None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        if client_event_id is not None:
            error["client_event_id"] = client_event_id
        self.send({"type": "error", "error": error})

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)

    # --- start

    def start(self, text: str, session_id: str, models=LIVE_MODELS) -> bool:
        """The first message; True once session.started went out."""
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            self.error("invalid_json", "We could not parse the JSON body of your request.")
            return False
        self.record("in", event if isinstance(event, dict) else {"type": "<malformed>"})
        if not isinstance(event, dict) or event.get("type") != "session.start":
            self.error("invalid_request_error", "The first event must be 'session.start'.")
            return False
        try:
            self.law = check_start(event.get("session"), models)
        except StartRefused as refused:
            self.record(
                "sim", {"type": "<session.start refused>", "code": refused.code, "param": refused.param}
            )
            self.error(refused.code, str(refused), refused.param, event.get("event_id"))
            return False
        self.config = dict(event["session"])
        backend = (self.config.get("delegation") or {}).get("responses") or {}
        self.tools.configure(
            {"tools": backend.get("tools") or [], "tool_choice": backend.get("tool_choice", "auto")}
        )
        self.vad = Vad(self.law if self.law in ("ulaw", "alaw") else "ulaw")
        self.started_at = time.monotonic()
        session = {
            "id": session_id,
            "object": "live.session",
            "status": "active",
            "expires_at": int(time.time()) + self.live.expires_in,
            **{k: self.config.get(k) for k in ("model", "instructions", "input", "audio", "delegation")},
        }
        self.send({"type": "session.started", "session": session})
        self._clock = asyncio.get_running_loop().create_task(self._output_clock())
        return True

    # --- input

    def handle(self, text: str) -> bool:
        """One client message after the start; False when the session is to close."""
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            self.record("in", {"type": "<malformed>"})
            self.error("invalid_json", "We could not parse the JSON body of your request.")
            return True
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.record("in", {"type": "<malformed>"})
            self.error("invalid_request_error", "The 'type' field is missing.")
            return True
        kind = event["type"]
        if kind != "session.input_audio.append":
            self.record("in", event)
        if kind == "session.close":
            self.closed("close_requested")
            return False
        handler = {
            "session.input_audio.append": self._append,
            "session.instructions.append": self._instructions,
            "session.thinking.append": self._thinking,
            "session.commentary.append": self._commentary,
            "session.update": self._update,
            "response.item.create": self._item_create,
            "response.create": self._response_create,
            "session.start": lambda e: self.error(
                "invalid_request_error", "The session has already started."
            ),
        }.get(kind)
        if handler is None:
            self.error("invalid_value", f"Invalid value: '{kind}'.", "type", event.get("event_id"))
        else:
            handler(event)
        return True

    def _append(self, event: dict) -> None:
        try:
            audio = base64.b64decode(event.get("audio", ""), validate=True)
        except (ValueError, TypeError):
            return self.error(
                "invalid_audio", "Invalid 'audio': expected base64.", "audio", event.get("event_id")
            )
        now = time.monotonic()
        if self._last_append is not None and (now - self._last_append) * 1000 > GAP_MS:
            self.record("sim", {"type": "<input gap>", "ms": int((now - self._last_append) * 1000)})
        self._last_append = now
        if self.input_bytes == 0:  # benchmarks match sessions to callers by a tag in the first frame
            self.record("in", {"type": "first_audio", "head": audio[:32].hex()})
        self.input_bytes += len(audio)
        self.record(
            "in", {"type": "session.input_audio.append", "bytes": len(audio), "total": self.input_bytes}
        )
        for vad_event in self.vad.feed(audio):
            if vad_event.kind == "started":
                self.record("sim", {"type": "<caller speech started>", "audio_ms": vad_event.audio_ms})
                if self.speech is not None and self._stopping is None:
                    self._stopping = asyncio.get_running_loop().create_task(self._stop_for_caller())
            else:
                self.record("sim", {"type": "<caller speech stopped>", "audio_ms": vad_event.audio_ms})
                self._caller_turn(vad_event.audio_ms)

    async def _stop_for_caller(self) -> None:
        """The model hears the caller over itself and stops, after its reaction time."""
        try:
            await asyncio.sleep(self.live.stop_ms / 1000)
            if self.speech is not None and self.vad.speaking:
                self.record("sim", {"type": "<stopped for the caller>", "sent_ms": self.speech.sent // 8})
                self.speech = None
        finally:
            self._stopping = None

    def _caller_turn(self, end_ms: int) -> None:
        self.turns += 1
        turn_ms = len(self.vad.turn_audio) // 8
        start_ms = max(0, end_ms - turn_ms)
        words = f"caller speech of {turn_ms} ms".split()
        step = max(1, turn_ms // len(words))
        for index, word in enumerate(words):
            at = start_ms + index * step
            self.send(
                {
                    "type": "session.input_transcript.delta",
                    "delta": word + " ",
                    "start_ms": at,
                    "end_ms": at + step,
                }
            )
        calls = self.tools.calls_for(self.turns, self.record, new_id)
        if calls:
            self._call_tools(calls)
            return
        self._speak(
            g711.tone(self.reply.reply_ms, 300.0, 9000, self.law),
            reply_transcript(turn_ms, self.reply.reply_ms),
        )

    def _instructions(self, event: dict) -> None:
        self._appended(event, "instructions")
        content = str(event.get("content") or "")
        if self.turns == 0 and self.spoken == 0:
            calls = self.tools.calls_for(0, self.record, new_id)
            if calls:
                return self._call_tools(calls)
        # What the client asks for (a greeting, a goodbye, a notice) lasts greeting_ms, as
        # an asked-for response of the Realtime simulator does. Its words are not the
        # instructions' (a model does not read out a secret code it was given).
        words = " ".join(f"w{n}" for n in range(1, self.reply.greeting_ms // WORD_MS + 1))
        audio = g711.tone(self.reply.greeting_ms, 350.0, 9000, self.law)
        self._speak(audio, f"as asked ({len(content)} characters): {words}")

    def _thinking(self, event: dict) -> None:
        self._appended(event, "thinking")

    def _commentary(self, event: dict) -> None:
        self._appended(event, "commentary")
        self._speak(
            g711.tone(self.reply.reply_ms, 350.0, 9000, self.law), str(event.get("content") or "")[:60]
        )

    def _appended(self, event: dict, kind: str) -> None:
        if "delegation_id" not in event:
            return self.error("missing_required_parameter", "Missing required parameter: 'delegation_id'.")
        now = self.elapsed_ms()
        self.send(
            {
                "type": f"session.{kind}.appended",
                "client_event_id": event.get("event_id"),
                "start_ms": now,
                "end_ms": now + 200,
            }
        )

    def _update(self, event: dict) -> None:
        session = event.get("session") or {}
        for name in session:
            if name != "delegation":
                return self.error(
                    "immutable_field_update",
                    f"'session.{name}' cannot change after session.start.",
                    f"session.{name}",
                    event.get("event_id"),
                )
        delegation = session.get("delegation") or {}
        current = (self.config.get("delegation") or {}).get("type")
        if set(delegation) - {"responses"} or current != "responses":
            return self.error(
                "immutable_field_update",
                "Only 'session.delegation.responses' can change.",
                "session.delegation",
                event.get("event_id"),
            )
        try:
            check_responses(delegation.get("responses"), "session.delegation.responses", required=False)
        except StartRefused as refused:
            return self.error(refused.code, str(refused), refused.param, event.get("event_id"))
        responses = delegation["responses"]
        self.config["delegation"]["responses"].update(responses)
        if "tools" in responses:
            self.tools.configure({"tools": responses["tools"]})
        self.send({"type": "session.updated", "session": {"delegation": self.config["delegation"]}})

    # --- tools

    def _call_tools(self, calls: list[FunctionCall]) -> None:
        self._delegations += 1
        delegation_id = f"dlg_sim{self._delegations}"
        for call in calls:
            self.tools.issued[call.call_id] = call
            self.tools.state["calls"].append(
                {"name": call.name, "arguments": call.arguments, "call_id": call.call_id}
            )
            item = {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            }
            self.send(
                {
                    "type": "response.event",
                    "delegation_id": delegation_id,
                    "event": {
                        "type": "response.output_item.done",
                        "output_index": 0,
                        "item": {"id": call.item_id, **item},
                    },
                }
            )

    def _item_create(self, event: dict) -> None:
        item = event.get("item") or {}
        if item.get("type") != "function_call_output":
            return self.error("invalid_value", "Only function_call_output items can be created.", "item.type")
        refused = self.tools.accept_output(item)
        if refused:
            self.error("invalid_tool_call_id", refused, "item.call_id", event.get("event_id"))

    def _response_create(self, event: dict) -> None:
        prefix = self.tools.answer_prefix()
        if not prefix:
            return self.error(
                "invalid_request_error", "No delegated work to continue.", None, event.get("event_id")
            )
        self._speak(g711.tone(self.reply.reply_ms, 300.0, 9000, self.law), prefix + "the answer")

    # --- speaking

    def _speak(self, audio: bytes, transcript: str) -> None:
        """A new reply replaces what is being said; it begins with a burst of lead_ms."""
        self.spoken += 1
        self.record("sim", {"type": "<speaking>", "ms": len(audio) // 8, "transcript": transcript})
        self.speech = Speech(audio, transcript.split())
        chunk = self.reply.chunk_ms * 8
        for _ in range(max(0, self.live.lead_ms // self.reply.chunk_ms)):
            self._emit(chunk)

    def _emit(self, chunk: int) -> None:
        speech = self.speech
        if speech is None:
            piece = (b"\xff" if self.law == "ulaw" else b"\xd5") * chunk
        else:
            start_ms = speech.sent // 8
            piece = speech.piece(chunk)
            end_ms, total_ms = speech.sent // 8, len(speech.audio) // 8
            # The words spread evenly over the audio, each sent as its audio goes out.
            while speech.said < len(speech.words) and speech.said * total_ms // len(speech.words) < end_ms:
                word = speech.words[speech.said]
                speech.said += 1
                delta = {"delta": word + " ", "start_ms": start_ms, "end_ms": end_ms}
                self.send({"type": "session.output_transcript.delta", **delta})
            if speech.done:
                self.speech = None
        self.send({"type": "session.output_audio.delta", "delta": base64.b64encode(piece).decode()})

    async def _output_clock(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.reply.chunk_ms / 1000
        next_at, usage_at = loop.time(), loop.time() + self.live.usage_every
        while True:
            self._emit(self.reply.chunk_ms * 8)
            if loop.time() >= usage_at:
                usage_at += self.live.usage_every
                self.send({"type": "session.usage.updated", "usage": {"seconds": self.elapsed_ms() / 1000}})
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    # --- end

    def closed(self, reason: str) -> None:
        self.send(
            {"type": "session.closed", "reason": reason, "usage": {"seconds": self.elapsed_ms() / 1000}}
        )
        self.close()

    def close(self) -> None:
        for task in (self._clock, self._stopping):
            if task is not None:
                task.cancel()
        self._clock = self._stopping = None
