"""One simulated Realtime session: the protocol behaviour behind one WebSocket.

GA event names by default, beta names when the connection used the beta shape. Replies
stream faster than real time from a task of their own, so audio keeps arriving (and
barge-in can happen) while a reply is being sent. With `preamble_ms` a reply to the caller
is phased as gpt-realtime-2.x's are: a "commentary" item (the spoken preamble), a pause of
`think_ms` while the model reasons, then the "final_answer" item, each with its own audio
and transcript, in one response; a response that calls tools has only the preamble before
its calls. The session's settings are checked as the real service checks them
(realtime_settings.py): a refused update is an error naming its event_id. Everything runs on the server's one
event loop: no locks, and no thread hand-off per event, which keeps the simulator light
enough to load callbridge with a hundred calls on the same machine.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass, field

from simulators import g711, realtime_settings
from simulators.realtime_tools import FunctionCall, SessionTools
from simulators.vad import Vad

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_sim{next(_ids):06d}"


@dataclass
class ReplyOptions:
    mode: str = "tone"  # "tone": a synthetic signal of reply_ms; "echo": the caller's turn
    reply_ms: int = 2000
    greeting_ms: int = 1500
    speed: float = 5.0  # times faster than real time
    chunk_ms: int = 100  # audio per delta
    first_delta_delay_ms: int = 30
    echo_metadata: bool = True  # False: like servers that drop response.metadata
    preamble_ms: int = 0  # > 0: replies to the caller are phased (a preamble, then the answer)
    think_ms: int = 0  # the pause between the preamble and the answer (wall-clock time)

    def update(self, query: dict) -> None:
        """From the control URL (/sim/reply): the named fields, as integers."""
        for name in ("reply_ms", "greeting_ms", "preamble_ms", "think_ms", "first_delta_delay_ms"):
            if name in query:
                value = int(query[name])
                if value < 0:
                    raise ValueError(f"{name} must not be negative")
                setattr(self, name, value)


def reply_transcript(turn_ms: int, reply_ms: int) -> str:
    """A reply's text: one numbered word per 250 ms of its audio, so that how much of it
    was heard shows in the words."""
    words = " ".join(f"w{n}" for n in range(1, reply_ms // 250 + 1))
    return f"reply to {turn_ms} ms of speech: {words}".strip()


@dataclass
class ReplyItem:
    """One message item of a response: its audio, its transcript and, when phased, its phase."""

    id: str
    audio: bytes
    transcript: str
    phase: str | None = None  # "commentary" | "final_answer"; None: an unphased model's item
    sent_bytes: int = 0
    started: bool = False  # its output_item.added was sent

    def message(self, status: str) -> dict:
        item = {"id": self.id, "type": "message", "role": "assistant", "status": status, "content": []}
        if self.phase is not None:
            item["phase"] = self.phase
        return item


@dataclass
class Response:
    id: str
    items: list[ReplyItem]
    cancelled: bool = False
    done: bool = False
    calls: list[FunctionCall] = field(default_factory=list)  # made once its audio is done

    @property
    def sent_bytes(self) -> int:
        return sum(item.sent_bytes for item in self.items)


class Session:
    def __init__(
        self,
        send,
        record,
        beta: bool,
        reply: ReplyOptions,
        law_hint: str = "ulaw",
        tools: SessionTools | None = None,
    ) -> None:
        self._send_raw = send  # queues one text frame; must not block
        self.record = record
        self.beta = beta
        self.reply = reply
        self.law = law_hint
        self.streams: set[asyncio.Task] = set()
        self.config: dict = {}
        self.turn_detection: dict | None = {
            "type": "server_vad",
            "create_response": True,
            "interrupt_response": True,
            "silence_duration_ms": 500,
        }
        self.vad = Vad(law_hint)
        self.active: Response | None = None
        self.item_audio_ms: dict[str, int] = {}
        self.input_bytes = 0
        self.current_input_item: str | None = None
        self.tools = tools or SessionTools()
        self.turns = 0  # caller turns ended so far: scripted function calls count them
        self.model = ""  # the session's model (the URL's), for the settings it may take
        self.deleted: list[str] = []  # items the client took out of the conversation
        self.refuse_updates = 0  # a fault: the next N session.updates are refused (realtime.py)

    # --- output

    def send(self, event: dict) -> None:
        event.setdefault("event_id", new_id("event"))
        self.record("out", event)
        self._send_raw(json.dumps(event))

    def name(self, ga: str, beta: str) -> str:
        return beta if self.beta else ga

    def error(self, code: str, message: str, etype: str = "invalid_request_error", event_id=None) -> None:
        self.send(
            {
                "type": "error",
                "error": {
                    "type": etype,
                    "code": code,
                    "message": message,
                    "param": None,
                    "event_id": event_id,
                },
            }
        )

    # --- input

    def handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            self.record("in", {"type": "<malformed>"})
            return self.error("invalid_json", "We could not parse the JSON body of your request.")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.record("in", {"type": "<malformed>"})
            return self.error("invalid_request_error", "The 'type' field is missing.")
        kind = event["type"]
        handler = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": lambda e: self.send({"type": "input_audio_buffer.cleared"}),
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._truncate,
            "conversation.item.delete": self._item_delete,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }.get(kind)
        if kind != "input_audio_buffer.append":
            self.record("in", event)
        if handler is None:
            return self.error(
                "invalid_value",
                f"Invalid value: '{kind}'. Supported values are: ...",
                event_id=event.get("event_id"),
            )
        handler(event)

    def _session_update(self, event: dict) -> None:
        session = event.get("session") or {}
        if not self.beta and session.get("type") != "realtime":
            return self.error("missing_required_parameter", "Missing required parameter: 'session.type'.")
        refused = realtime_settings.refusal(session, self.model, self.beta)
        if refused is None and self.refuse_updates > 0:
            self.refuse_updates -= 1
            refused = ("invalid_value", "This setting is not available for this session.", "session")
        if refused is not None:
            code, message, param = refused
            self.record("sim", {"type": "<session.update refused>", "code": code, "param": param})
            return self.error(code, message, event_id=event.get("event_id"))
        self.config = {**self.config, **session}  # what an update leaves out stays, as the server keeps it
        self.tools.configure(session)
        if self.beta:
            self.turn_detection = session.get("turn_detection", self.turn_detection)
            if "input_audio_format" in session:
                self.law = "alaw" if session["input_audio_format"] == "g711_alaw" else "ulaw"
        else:
            audio_in = (session.get("audio") or {}).get("input") or {}
            self.turn_detection = audio_in.get("turn_detection", self.turn_detection)
            if "format" in audio_in:
                self.law = "alaw" if (audio_in.get("format") or {}).get("type") == "audio/pcma" else "ulaw"
        silence = realtime_settings.end_of_turn_silence_ms(self.turn_detection)
        if (self.law, silence) != (self.vad.law, self.vad.silence_ms):  # keep a turn in progress
            self.vad = Vad(self.law, silence_ms=silence)
        self.send({"type": "session.updated", "session": session})

    def _append(self, event: dict) -> None:
        try:
            audio = base64.b64decode(event.get("audio", ""), validate=True)
        except (ValueError, TypeError):
            return self.error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio bytes.")
        if self.input_bytes == 0:  # benchmarks match sessions to callers by a tag in the first frame
            self.record("in", {"type": "first_audio", "head": audio[:32].hex()})
        self.input_bytes += len(audio)
        self.record(
            "in", {"type": "input_audio_buffer.append", "bytes": len(audio), "total": self.input_bytes}
        )
        if self.turn_detection is None:
            return
        for vad_event in self.vad.feed(audio):
            if vad_event.kind == "started":
                self.current_input_item = new_id("item")
                self.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": vad_event.audio_ms,
                        "item_id": self.current_input_item,
                    }
                )
                if self.active is not None and self.turn_detection.get("interrupt_response", True):
                    self._cancel_active("turn_detected")
            else:
                self._end_turn(vad_event.audio_ms)

    def _end_turn(self, audio_end_ms: int) -> None:
        self.turns += 1
        item_id = self.current_input_item or new_id("item")
        self.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_end_ms, "item_id": item_id}
        )
        self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        item = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.send({"type": self.name("conversation.item.added", "conversation.item.created"), "item": item})
        turn_ms = len(self.vad.turn_audio) // 8
        self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": f"caller speech of {turn_ms} ms",
                "usage": {"type": "duration", "seconds": round(turn_ms / 1000, 2)},
            }
        )
        if (self.turn_detection or {}).get("create_response", True):
            audio = (
                bytes(self.vad.turn_audio)
                if self.reply.mode == "echo"
                else g711.tone(self.reply.reply_ms, 300.0, 9000, self.law)
            )
            self._start_response(audio, reply_transcript(turn_ms, len(audio) // 8), phased=True)

    def _commit(self, event: dict) -> None:
        if self.vad.speaking or not self.vad.turn_audio:
            return self.error(
                "input_audio_buffer_commit_empty", "Error committing input audio buffer: buffer too small."
            )
        self._end_turn(self.vad.input_ms)

    def _item_create(self, event: dict) -> None:
        item = dict(event.get("item") or {})
        if item.get("type") == "function_call_output":
            refused = self.tools.accept_output(item)
            if refused:
                return self.error("invalid_tool_call_id", refused, event_id=event.get("event_id"))
        item.setdefault("id", new_id("item"))
        self.send({"type": self.name("conversation.item.added", "conversation.item.created"), "item": item})
        if not self.beta:
            self.send({"type": "conversation.item.done", "item": item})

    def _item_delete(self, event: dict) -> None:
        item_id = event.get("item_id")
        if item_id not in self.item_audio_ms:
            return self.error(
                "item_not_found", f"Item with item_id '{item_id}' not found.", event_id=event.get("event_id")
            )
        if self.active is not None and any(item.id == item_id for item in self.active.items):
            # Stricter than the service may be: callbridge deletes only from a finished reply.
            return self.error(
                "invalid_value",
                f"Item '{item_id}' belongs to a response in progress; cancel it and wait for response.done.",
                event_id=event.get("event_id"),
            )
        del self.item_audio_ms[item_id]
        self.deleted.append(item_id)
        self.send({"type": "conversation.item.deleted", "item_id": item_id})

    def _truncate(self, event: dict) -> None:
        item_id = event.get("item_id")
        end_ms = event.get("audio_end_ms")
        if item_id not in self.item_audio_ms:
            return self.error("item_not_found", f"Item with item_id '{item_id}' not found.")
        if not isinstance(end_ms, int) or end_ms < 0:
            return self.error("invalid_value", "Invalid 'audio_end_ms'.")
        have = self.item_audio_ms[item_id]
        if end_ms > have:
            return self.error(
                "invalid_value", f"Audio content of {have}ms is already shorter than {end_ms}ms"
            )
        self.item_audio_ms[item_id] = end_ms
        self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    def _response_create(self, event: dict) -> None:
        if self.active is not None:
            return self.error(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress.",
            )
        instructions = ((event.get("response") or {}).get("instructions")) or "reply"
        metadata = (event.get("response") or {}).get("metadata") if self.reply.echo_metadata else None
        self._start_response(
            g711.tone(self.reply.greeting_ms, 350.0, 9000, self.law), instructions[:60], metadata
        )

    def _response_cancel(self, event: dict) -> None:
        if self.active is None:
            return self.error("response_cancel_not_active", "Cancellation failed: no active response found.")
        self._cancel_active("client_cancelled")

    # --- responses

    def _items(self, audio: bytes, transcript: str, phased: bool, calls: bool) -> list[ReplyItem]:
        """A reply's message items: one, or (phased) the preamble and then the answer; a
        phased reply that calls tools says only its preamble before the calls."""
        preamble_ms = self.reply.preamble_ms
        if preamble_ms <= 0:
            return [ReplyItem(new_id("item"), audio, transcript)]
        if not phased:  # asked for (a greeting, the reply after a tool): the answer alone
            return [ReplyItem(new_id("item"), audio, transcript, "final_answer")]
        words = " ".join(f"p{n}" for n in range(1, preamble_ms // 250 + 1))
        preamble = ReplyItem(
            new_id("item"), g711.tone(preamble_ms, 450.0, 9000, self.law), f"preamble: {words}", "commentary"
        )
        if calls:
            return [preamble]
        return [preamble, ReplyItem(new_id("item"), audio, transcript, "final_answer")]

    def _start_response(
        self, audio: bytes, transcript: str, metadata: dict | None = None, phased=False
    ) -> None:
        calls = self.tools.calls_for(self.turns, self.record, new_id)
        transcript = self.tools.answer_prefix() + transcript
        response = Response(new_id("resp"), self._items(audio, transcript, phased, bool(calls)), calls=calls)
        for index, call in enumerate(calls):
            call.output_index = len(response.items) + index
        self.active = response
        self.send(
            {
                "type": "response.created",
                "response": {"id": response.id, "status": "in_progress", "output": [], "metadata": metadata},
            }
        )
        task = asyncio.get_running_loop().create_task(self._stream(response))
        self.streams.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self.streams.discard)

    def close(self) -> None:
        """The connection is gone: stop streaming."""
        if self.active is not None:
            self.active.cancelled = True
        for task in list(self.streams):
            task.cancel()

    async def _stream(self, response: Response) -> None:
        await asyncio.sleep(self.reply.first_delta_delay_ms / 1000)
        for index, item in enumerate(response.items):
            if index > 0 and self.reply.think_ms:
                await asyncio.sleep(self.reply.think_ms / 1000)  # reasoning between the phases
            if response.cancelled:
                return
            await self._stream_item(response, index, item)
            if response.cancelled:
                return
        self.tools.emit(self.send, response.id, response.calls)
        self._finish(response, "completed", None)

    async def _stream_item(self, response: Response, index: int, item: ReplyItem) -> None:
        loop = asyncio.get_running_loop()
        chunk = self.reply.chunk_ms * 8
        interval = self.reply.chunk_ms / 1000 / self.reply.speed
        base = {"response_id": response.id, "item_id": item.id, "output_index": index}
        item.started = True
        self.item_audio_ms[item.id] = 0
        self.send(
            {
                "type": "response.output_item.added",
                "response_id": response.id,
                "output_index": index,
                "item": item.message("in_progress"),
            }
        )
        next_at = loop.time()
        words = item.transcript.split()
        for offset in range(0, len(item.audio), chunk):
            if response.cancelled:
                return
            piece = item.audio[offset : offset + chunk]
            self.send(
                {
                    "type": self.name("response.output_audio.delta", "response.audio.delta"),
                    **base,
                    "content_index": 0,
                    "delta": base64.b64encode(piece).decode(),
                }
            )
            item.sent_bytes += len(piece)
            self.item_audio_ms[item.id] = item.sent_bytes // 8
            if words:
                self.send(
                    {
                        "type": self.name(
                            "response.output_audio_transcript.delta", "response.audio_transcript.delta"
                        ),
                        **base,
                        "delta": words.pop(0) + " ",
                    }
                )
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if response.cancelled:
            return
        self.send({"type": self.name("response.output_audio.done", "response.audio.done"), **base})
        self.send(
            {
                "type": self.name("response.output_audio_transcript.done", "response.audio_transcript.done"),
                **base,
                "transcript": item.transcript,
            }
        )
        self.send({"type": "response.output_item.done", **base, "item": item.message("completed")})

    def _cancel_active(self, reason: str) -> None:
        response = self.active
        if response is None:
            return
        response.cancelled = True
        self._finish(response, "cancelled", reason)

    def _finish(self, response: Response, status: str, reason: str | None) -> None:
        """response.done: the items it got to, and its usage, counted once for all of them."""
        self.active = None
        audio_tokens = response.sent_bytes // 80
        output = [
            item.message("completed" if status == "completed" else "incomplete")
            for item in response.items
            if item.started
        ]
        if status == "completed":
            output += [call.item("completed") for call in response.calls]
        else:
            self.tools.dropped(self.record, response.calls)
        self.send(
            {
                "type": "response.done",
                "response": {
                    "id": response.id,
                    "status": status,
                    "status_details": {"type": status, "reason": reason} if reason else None,
                    "output": output,
                    "usage": {
                        "total_tokens": 120 + audio_tokens,
                        "input_tokens": 120,
                        "output_tokens": audio_tokens,
                        "input_token_details": {"text_tokens": 100, "audio_tokens": 20, "cached_tokens": 0},
                        "output_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                    },
                },
            }
        )
