"""The one seam between a call and a voice service: what the worker asks of it and what
it hears back, independent of any protocol's event names.

An Adapter is sans-I/O apart from `connect` (blocking, run by an opener thread, bounded
by its timeout): it turns commands into the text messages its protocol sends and the
messages received into the events below. The conversation (call_worker/conversation.py)
and the media loop (call_worker/media.py) see only these. Realtime GA and its legacy beta
shape live behind it in call_worker/realtime_adapter.py, GPT-Live in
call_worker/live_adapter.py.

The seam's words are the conversation's, not a protocol's: a *reply* is one turn of the
agent, made of *items* (the parts the caller hears one after the other), each with an id
the adapter gives. Realtime names them itself (responses and items); GPT-Live names
nothing, so its adapter makes them from the streams (call_worker/live_turns.py) and
reports the ends it infers through `poll`. Two flags say what the protocol leaves to us:
`model_turns` (the model decides when to speak and stop: the worker flushes playback on
its own detection of the caller's voice, call_worker/voice_activity.py) and
`history_in_opening` (a new session gets the conversation so far in its opening, not as
items after it). Both protocols hear silence where the caller's phone sends none
(`fill_slack`).

The media loop calls `append` for every caller frame, so it returns the message itself,
as UTF-8 bytes (no dict, no json.dumps, no str to encode): it is the hottest call of the
seam.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from call_worker.realtime_protocol import ErrorAction
from call_worker.ws_link import WsLink

__all__ = ["ErrorAction"]  # re-exported: what a ServiceError means for the call


class ConnectError(Exception):
    """Opening a session failed; `fatal` when retrying cannot help (key, model, shape)."""

    def __init__(self, message: str, fatal: bool, code: str = "") -> None:
        super().__init__(message)
        self.fatal = fatal
        self.code = code  # the service's error code it amounts to (the metrics count it), if any


# --- what the service says (one class per kind; the conversation dispatches on the class)


@dataclass(frozen=True, slots=True)
class AgentAudio:
    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class AgentItem:
    """A message item of a reply begins. gpt-realtime-2.x replies in phases, each its own
    item of one response: a spoken `preamble` ("let me check that") and the `answer`;
    "" when the model does not say (earlier models: one item, the answer)."""

    response_id: str
    item_id: str
    phase: str


@dataclass(frozen=True, slots=True)
class CallerSpeechStarted:
    pass


@dataclass(frozen=True, slots=True)
class CallerSpeechStopped:
    pass


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    response_id: str


@dataclass(frozen=True, slots=True)
class ReplyDone:
    response_id: str
    usage: dict
    item_ids: tuple[str, ...]  # its message items, in order (function calls are not among them)


@dataclass(frozen=True, slots=True)
class SettingsApplied:
    """The service acknowledged a settings change (the goodbye waits for its own)."""


@dataclass(frozen=True, slots=True)
class Quieted:
    """The service makes no reply of its own from now on: the `quiet` request `event_id`
    took effect (GPT-Live: at once, with the agent's turn in progress ended)."""

    event_id: str


@dataclass(frozen=True, slots=True)
class AgentTextDelta:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class AgentText:
    item_id: str
    response_id: str
    text: str


@dataclass(frozen=True, slots=True)
class CallerText:
    text: str
    seconds: float  # of audio transcribed, when the service says


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it
    response_id: str = ""  # the reply that made it: its parallel calls get one reply after them


@dataclass(frozen=True, slots=True)
class SessionSeconds:
    """Session time billed so far (GPT-Live: a cumulative snapshot, never summed)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ServiceError:
    code: str
    message: str
    cause: str | None  # the event_id of our message that caused it, when the service says
    action: ErrorAction
    fix: str = ""  # for FATAL: what the operator should change


Event = (
    AgentAudio
    | AgentItem
    | CallerSpeechStarted
    | CallerSpeechStopped
    | ReplyStarted
    | ReplyDone
    | SettingsApplied
    | Quieted
    | AgentTextDelta
    | AgentText
    | CallerText
    | ToolCall
    | SessionSeconds
    | ServiceError
)


class MalformedEvent(ValueError):
    """A message the protocol cannot read (counted and logged once by the conversation)."""


class Adapter(ABC):
    """One voice protocol. Commands return the message texts to send, in order."""

    name: str
    tools: tuple = ()  # call_worker/tools.py ToolSpecs: every session opens with them
    model_turns = False  # see the module's docstring
    # 20 ms frames without a caller packet before silence fills in
    # (call_worker/conversation_uplink.py `_fill_silence`): for Realtime, only a phone that
    # stopped sending (200 ms).
    fill_slack = 10
    history_in_opening = False
    history: tuple = ()  # (history_in_opening) the next opening's turns

    @abstractmethod
    def connect(self, timeout: float, opening_id: str) -> WsLink:
        """Open and configure a session (the opening message carries `opening_id`);
        raises ConnectError."""

    @abstractmethod
    def append(self, audio: bytes | memoryview) -> bytes:
        """Caller audio, as it arrives: the message, as UTF-8 text."""

    @abstractmethod
    def respond(self, instructions: str, purpose: str = "", event_id: str = "") -> list[str]:
        """Ask for a reply now, with its own instructions (greeting, goodbye)."""

    @abstractmethod
    def tools_update(self, event_id: str) -> list[str]:
        """Offer `tools` as they are now (tools listed after the session opened: MCP's)."""

    @abstractmethod
    def quiet(self, event_id: str) -> list[str]:
        """Stop replying on its own (turn detection still hears and transcribes)."""

    @abstractmethod
    def cancel(self, response_id: str) -> list[str]:
        """Stop generating the reply (barge-in)."""

    @abstractmethod
    def truncate(self, item_id: str, audio_end_ms: int) -> list[str]:
        """The caller heard only `audio_end_ms` of the item."""

    @abstractmethod
    def inject(self, turns: list[tuple[str, str]]) -> list[str]:
        """Earlier turns ("caller" or "agent", text) for a new session's context."""

    @abstractmethod
    def note(self, text: str) -> list[str]:
        """Something the caller did besides speaking (a key press), as their turn, with a
        request for the reply to it."""

    @abstractmethod
    def delete(self, item_id: str) -> list[str]:
        """Take an item the caller never heard out of the conversation (a barge-in dropped it)."""

    @abstractmethod
    def tool_result(self, call_id: str, output: str) -> list[str]:
        """A tool's result (the reply that uses it is asked for by `reply`)."""

    @abstractmethod
    def reply(self) -> list[str]:
        """Ask for the reply that answers what was just added (one after parallel tool calls)."""

    @abstractmethod
    def events(self, message: bytes) -> list[Event]:
        """The events of one received message (unknown kinds: none); raises
        MalformedEvent for one that cannot be read."""

    def refused_by_close(self, code: int | None) -> bool:
        """A close code that means the service refuses this configuration."""
        return False

    def closing(self) -> list[str]:
        """What to send before the link closes at the end of the call."""
        return []

    def poll(self, now: float) -> list[Event]:
        """(each tick, while a session is open) Events the clock brings: ends the adapter
        infers, for a protocol that does not say them."""
        return []

    def finish(self) -> list[Event]:
        """(the session ended) Turns still open, ended with what they had."""
        return []


def adapter_for(settings, tools=()) -> Adapter:
    """The protocol's adapter; `tools` (call_worker/tools.py ToolSpecs) are offered to the model."""
    if settings.openai_api == "live":
        from call_worker.live_adapter import LiveAdapter

        return LiveAdapter(settings, tools)
    from call_worker.realtime_adapter import RealtimeAdapter

    return RealtimeAdapter(settings, tools)
