"""OpenAI GPT-Live behind the adapter seam (call_worker/adapter.py), beside Realtime
(call_worker/realtime_adapter.py); chosen by OPENAI_API=live.

The session is started, not configured: the opener sends `session.start` (built by
call_worker/live_protocol.py) and waits for `session.started` before the session is handed
over, since nothing may be sent before it. After that the model owns the turns: it decides
when to speak and when a caller's speech stops it, and it is never told what was played.
What the seam needs besides is made here:

- replies and items from the streams (call_worker/live_turns.py); `cancel` marks a
  barge-in there (the flush itself is the conversation's, on our own voice detection),
  `truncate` and `delete` send nothing (nothing can be taken back);
- the greeting, a goodbye, a notice and a key press are text the model acts on
  (`session.instructions.append`); there are no automatic replies to turn off, so `quiet`
  is acknowledged at once;
- tools run on the delegation backend: a call comes as a `response.event`, its result goes
  back as `response.item.create` and one `response.create`;
- a new session after a lost one carries the conversation so far in its `input`
  (`history_in_opening`), within the service's limits.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import select
import time

from websockets.exceptions import InvalidHandshake, InvalidStatus

from call_worker import adapter as seam
from call_worker import live_protocol as proto
from call_worker.live_turns import LiveTurns
from call_worker.ws_link import WsLink, open_link
from callbridge.config import Settings

log = logging.getLogger(__name__)

_APPEND_HEAD = b'{"type":"session.input_audio.append","audio":"'
_APPEND_TAIL = b'"}'
# session.closed reasons: what they mean for the call (close_requested is our own close).
_CLOSED = {
    "expired": ("session_expired", seam.ErrorAction.RECONNECT),
    "content": ("session_ended_for_content", seam.ErrorAction.FATAL_CONFIG),
    "connection_lost": ("connection_lost", seam.ErrorAction.LOG),
    "remote_hangup": ("remote_hangup", seam.ErrorAction.LOG),
}


class LiveAdapter(seam.Adapter):
    model_turns = True  # the worker detects barge-in itself
    fill_slack = 2  # the session wants a microphone: at most 60 ms without audio
    history_in_opening = True

    def __init__(self, settings: Settings, tools=()) -> None:
        self.settings = settings
        self.tools = tuple(tools)
        self.name = "live"
        self.turns = LiveTurns(settings.audio_format)
        self.history: list[tuple[str, str]] = []  # the next session's `input` (set at a loss)
        self.expires_at = 0.0  # unix time the session ends (session.started)
        self.session_id = ""
        # Session time, billed by the second: the service's snapshot (`session.usage.updated`,
        # about once a minute) and our own count from each session.started, since the final
        # snapshot (in session.closed) comes after the call has hung up. The record keeps
        # the larger.
        self._earlier_sessions = 0.0  # seconds of the sessions before this one
        self._started = 0.0  # monotonic time this one started
        self._reported = 0.0
        self._acknowledge = 0  # openings to acknowledge (session.started was the opener's)
        self._quiets: list[str] = []  # quiet requests to acknowledge
        self._parsers = {
            "session.output_audio.delta": self._audio,
            "session.output_transcript.delta": self._agent_text,
            "session.input_transcript.delta": self._caller_text,
            "session.usage.updated": self._usage,
            "session.updated": lambda e: [seam.SettingsApplied()],
            "response.event": _response_event,
            "error": _error,
            "session.closed": self._closed,
        }

    # --- opening

    def connect(self, timeout: float, opening_id: str) -> WsLink:
        settings = self.settings
        deadline = time.monotonic() + timeout
        try:
            start = proto.session_start(settings, self.tools, proto.history(self.history))
        except OSError as exc:
            raise seam.ConnectError(f"cannot read the instructions: {exc}", fatal=True) from None
        start["event_id"] = opening_id
        headers = {"Authorization": f"Bearer {settings.openai_api_key.reveal()}", "User-Agent": "callbridge"}
        url = settings.openai_live_url
        try:
            link = open_link(url, headers, timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            what = {401: "the API key was refused (OPENAI_API_KEY)", 403: "access denied for this key"}
            code = {401: "invalid_api_key"}.get(status, "")
            raise seam.ConnectError(
                f"GPT-Live handshake failed: {what.get(status, f'HTTP {status}')}", status in (401, 403), code
            ) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise seam.ConnectError(f"cannot reach {url}: {type(exc).__name__}: {exc}", False) from None
        link.send_text(json.dumps(start))
        try:
            self._await_start(link, deadline)
        except seam.ConnectError:
            link.close()
            raise
        return link

    def _await_start(self, link: WsLink, deadline: float) -> None:
        """Read until session.started (the messages after it stay for the loop) or the
        error that refuses the session."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise seam.ConnectError("GPT-Live did not start the session in time", False)
            link.flush()
            if not link.readable():  # (frames that came with the upgrade are read already)
                select.select([link], [link] if link.wants_write else [], [], left)
            messages = link.receive()
            for index, (_text, payload) in enumerate(messages):
                try:
                    event = json.loads(payload)
                    kind = event["type"]
                except (ValueError, KeyError, TypeError):
                    continue
                if kind == "session.started":
                    self._started = time.monotonic()
                    self._acknowledge += 1  # the opening's acknowledgement, as the conversation counts them
                    session = event.get("session")
                    session = session if isinstance(session, dict) else {}
                    self.session_id = str(session.get("id") or "")
                    expires = session.get("expires_at")
                    self.expires_at = float(expires) if isinstance(expires, int | float) else 0.0
                    link.keep(messages[index + 1 :])
                    return
                if kind == "error":
                    error = event.get("error")
                    error = error if isinstance(error, dict) else {}
                    code = str(error.get("code") or "")
                    fatal = proto.classify_error(error) is seam.ErrorAction.FATAL_CONFIG
                    fix = proto.FIXES.get(code, "")
                    message = str(error.get("message") or "")[:300]
                    raise seam.ConnectError(
                        f"GPT-Live refused the session ({code or 'no code'}: {message})"
                        + (f": {fix}" if fix else ""),
                        fatal,
                        code,
                    )
            if link.closed is not None:
                raise seam.ConnectError(
                    f"GPT-Live closed before the session started ({link.closed.reason})", False
                )

    # --- commands

    def append(self, audio: bytes | memoryview) -> bytes:
        return _APPEND_HEAD + binascii.b2a_base64(audio, newline=False) + _APPEND_TAIL

    def respond(self, instructions: str, purpose: str = "", event_id: str = "") -> list[str]:
        return [json.dumps(proto.text_append("instructions", instructions, event_id))]

    def tools_update(self, event_id: str) -> list[str]:
        backend = proto.delegation(self.settings, self.tools)
        if backend is None:
            return []
        update = {"delegation": {"responses": {"tools": backend["responses"]["tools"]}}}
        return [json.dumps({"type": "session.update", "event_id": event_id, "session": update})]

    def quiet(self, event_id: str) -> list[str]:
        # Nothing to turn off: the model speaks when it decides. The turn in progress ends
        # here, so that the next one is the reply asked for (the goodbye); acknowledged by
        # its id at the next poll.
        self._quiets.append(event_id)
        return []

    def cancel(self, response_id: str) -> list[str]:
        self.turns.cut(time.monotonic())  # the model stops by itself; its rest is not played
        return []

    def truncate(self, item_id: str, audio_end_ms: int) -> list[str]:
        return []  # GPT-Live is never told what was played

    def inject(self, turns: list[tuple[str, str]]) -> list[str]:
        """A reply the caller finished hearing after a new session began: silent context."""
        return [
            json.dumps(proto.text_append("thinking", f"You had told the caller: {text}"))
            for speaker, text in turns
            if speaker == "agent" and text.strip()
        ]

    def note(self, text: str) -> list[str]:
        return [json.dumps(proto.text_append("instructions", text))]

    def delete(self, item_id: str) -> list[str]:
        return []

    def tool_result(self, call_id: str, output: str) -> list[str]:
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return [json.dumps({"type": "response.item.create", "item": item})]

    def reply(self) -> list[str]:
        return [json.dumps({"type": "response.create"})]

    def closing(self) -> list[str]:
        # The final usage would come in session.closed; the call does not wait for it (the
        # last session.usage.updated stands).
        return [json.dumps({"type": "session.close"})]

    # --- events

    def events(self, message: bytes) -> list[seam.Event]:
        try:
            event = json.loads(message)
            parser = self._parsers.get(event["type"])
            return [] if parser is None else parser(event)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise seam.MalformedEvent(f"{type(exc).__name__}: {exc}") from None

    def poll(self, now: float) -> list[seam.Event]:
        events = self.turns.poll(now)
        while self._acknowledge:
            self._acknowledge -= 1
            events.append(seam.SettingsApplied())
        if self._quiets:
            events += self.turns.close(now)
            events += [seam.Quieted(event_id) for event_id in self._quiets]
            self._quiets.clear()
        return events

    def finish(self) -> list[seam.Event]:
        """The session ended (lost, or the call's end): its time is counted."""
        if self._started:
            self._earlier_sessions = max(
                self._reported, self._earlier_sessions + time.monotonic() - self._started
            )
            self._started = 0.0
        return [*self.turns.finish(), self._seconds()]

    def _seconds(self) -> seam.SessionSeconds:
        counted = self._earlier_sessions + (time.monotonic() - self._started if self._started else 0.0)
        return seam.SessionSeconds(round(max(counted, self._reported), 3))

    def _usage(self, event: dict) -> list:
        usage = event.get("usage")
        if not isinstance(usage, dict) or "seconds" not in usage:
            return []
        self._reported = self._earlier_sessions + float(usage["seconds"])
        return [self._seconds()]

    def _audio(self, event: dict) -> list:
        audio = base64.b64decode(event["delta"], validate=True)
        return self.turns.agent_audio(time.monotonic(), audio)

    def _agent_text(self, event: dict) -> list:
        return self.turns.agent_text(time.monotonic(), _text(event))

    def _caller_text(self, event: dict) -> list:
        return self.turns.caller_text(time.monotonic(), _text(event))

    def _closed(self, event: dict) -> list:
        usage = self._usage(event)
        code, action = _CLOSED.get(str(event.get("reason") or ""), ("", None))
        if action is None:
            return usage
        error = seam.ServiceError(
            code,
            f"GPT-Live closed the session ({event.get('reason')})",
            None,
            action,
            proto.FIXES.get(code, ""),
        )
        return [*usage, error]


def _text(event: dict) -> str:
    delta = event["delta"]
    if not isinstance(delta, str):
        raise TypeError(f"a transcript delta of {type(delta).__name__}")
    return delta


def _response_event(event: dict) -> list:
    """The backend's events: only a finished function call concerns us."""
    inner = event["event"]
    if inner.get("type") != "response.output_item.done":
        return []
    item = inner["item"]
    if item.get("type") != "function_call":
        return []
    return [
        seam.ToolCall(
            str(item["call_id"]),
            str(item.get("name") or ""),
            str(item.get("arguments") or "{}"),
            str(event.get("delegation_id") or item["call_id"]),  # its reply is asked for after it
        )
    ]


def _error(event: dict) -> list:
    error = event.get("error") or {}
    code = str(error.get("code") or "")
    cause = error.get("client_event_id")
    return [
        seam.ServiceError(
            code=code,
            message=str(error.get("message") or "")[:300],
            cause=cause if isinstance(cause, str) else None,
            action=proto.classify_error(error),
            fix=proto.FIXES.get(code, ""),
        )
    ]
