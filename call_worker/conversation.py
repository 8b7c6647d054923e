"""The call's conversation with the voice service, run by the media loop's thread.

The media loop (call_worker/media.py) owns everything here: it reads the session's link at
each 20 ms tick (`tick`), and sends the caller's audio the moment it arrives (`send_uplink`).
Audio deltas go to the downlink ring through `Playback`; the caller speaking over a reply is
a barge-in; transcripts and usage are kept. A reply may hold several items (gpt-realtime-2.x:
a spoken preamble, then the answer): they play back to back, and a barge-in truncates the one
playing and takes the later ones, never heard, out of the conversation. Only three things cross threads, each posted and
followed by a wake-up of the loop: a link an opener thread has opened (`begin`, and the
reconnect below), the main thread's goodbye request (`say_goodbye`), and the end (`close`,
once the loop has stopped).

Under GPT-Live (call_worker/live_adapter.py) the same holds with the adapter's own replies:
the caller's voice, as we detect it (call_worker/conversation_uplink.py), is the barge-in,
and the ends of replies come from the adapter's `poll` at each tick.

When the connection drops or the session expires, an opener thread opens a new session
while the uplink ring keeps the caller's audio (its backlog, replayed in order once the new
session has the conversation so far: the agent's turns as the caller heard them). When the
configuration cannot work (bad key, unknown model, beta refused) or no new session opens
within RECONNECT_BUDGET, the call is told to end.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from call_worker import adapter as seam
from call_worker import rtp
from call_worker.conversation_keys import KeysSide
from call_worker.conversation_tools import ToolsSide
from call_worker.conversation_uplink import FILL_GRACE, UplinkSide
from call_worker.external_tools import ExternalCalls
from call_worker.goodbye import Goodbye
from call_worker.keypad import Keypad
from call_worker.mcp_calls import McpTool
from call_worker.playback import AudioItem, Playback, Truncation
from call_worker.session_updates import SessionUpdates
from call_worker.tools import ToolBox
from call_worker.transcript import Transcript
from call_worker.voice_activity import CallerVoice
from call_worker.wake import Waker
from call_worker.ws_link import Closed, WsLink
from callbridge import logs
from callbridge.config import Settings
from shm_ring import ByteRing, CallHeader, RealtimeState, Slot
from shm_ring.header import error_slot

log = logging.getLogger(__name__)

RECONNECT_DELAYS = (0.2, 1.0, 2.0)
# From the loss of a session to giving up. With a frozen service noticed within 4.5 s
# (call_worker/ws_link.py) and the failure prompt, the caller is told within 15 s.
RECONNECT_BUDGET = 5.0
RECONNECT_OPEN_TIMEOUT = 3.0  # one handshake; a real one takes well under a second
ASK_WAIT = 3.0  # seconds a queued reply request waits for the one before it to begin
MIN_ATTEMPT = 0.5  # a handshake given less than this is not worth starting
BACKLOG_CHUNK = 3200  # bytes per append when replaying the backlog (200 ms)


class Conversation(KeysSide, ToolsSide, UplinkSide):
    def __init__(
        self,
        settings: Settings,
        header: CallHeader,
        uplink: ByteRing,
        playback: Playback,
        adapter: seam.Adapter,
        loop_wake: Waker,
        stop: threading.Event,
        on_fatal: Callable[[str], None],
        on_turn: Callable[[], None] = lambda: None,
        on_goodbye_done: Callable[[], None] = lambda: None,
        toolbox: ToolBox | None = None,
    ) -> None:
        self.settings = settings
        self.utterances = logs.utterance_level(settings)  # None: what is said is never logged
        self.header = header
        self.uplink = uplink
        self.playback = playback
        self.adapter = adapter
        self.loop_wake = loop_wake
        self.stop = stop
        self.on_fatal = on_fatal
        self.on_turn = on_turn  # a turn finished (the main thread journals it)
        self.link: WsLink | None = None
        self.transcript = Transcript()
        self.usage = {
            "input_tokens": 0,
            "output_tokens": 0,
            "input_audio_tokens": 0,
            "input_cached_tokens": 0,
            "output_audio_tokens": 0,
            "transcription_seconds": 0.0,
            "session_seconds": 0.0,  # GPT-Live bills session time
        }
        self.active_response: str | None = None
        # Replies a barge-in cut while they were still arriving -> (where playback stopped,
        # the item truncated there): their unheard items are deleted at their response.done,
        # which lists them all (the service is not asked to delete from a reply in progress).
        self._cut_replies: dict[str, tuple[int, str | None]] = {}
        self._active_items: list[str] = []  # the active reply's message items, in order
        self.last_error_code = ""
        self.goodbye = Goodbye(self._send_quiet, self._send_ask, on_goodbye_done)
        self.goodbye_done = self.goodbye.done
        self.updates = SessionUpdates()
        self._opening_ids = itertools.count(1)
        self._malformed_logged = False
        self.toolbox = toolbox  # call_worker/tools.py; None: no tools offered
        # Sent once no reply is active (the service refuses a response.create during one):
        # tool results, whose call arrives before its reply's response.done, and what the
        # main thread asks the agent to say (`tell`).
        # (tool: an output | reply: the ask after tool outputs | tell, texts, asks)
        self._after_reply: deque[tuple[str, list[str], bool]] = deque()
        self._tell_requests: deque[str] = deque()
        # Replies whose tool calls want a reply after them: asked once, at that reply's
        # response.done, when every parallel call's output has been queued.
        self._tool_replies: set[str] = set()
        self._preambles: set[str] = set()  # replies that began with a preamble (for the log)
        self._fillers: set[str] = set()  # replies whose HTTP or MCP tool calls got a filler asked
        self._opening_id = ""  # the current session's opening update: refused, the call fails
        # HTTP and MCP tool calls while they run (call_worker/external_tools.py).
        servers = tuple(toolbox.agent.mcp.values()) if toolbox is not None else ()
        self.external = ExternalCalls(loop_wake.wake, servers)
        self._holds: set[str] = set()  # replies whose tools' hold sound plays
        self._hold_after: dict[str, str] = {}  # replies still arriving -> the hold sound due at their end
        self._tool_updates: dict[str, list[McpTool]] = {}  # tools update event_id -> the tools it added
        self.keypad = Keypad(toolbox.agent.keypad) if toolbox is not None else None
        self._presses = 0
        self._bad_event_logged = False
        self._asked_until = 0.0
        self._fatal_codes: dict[str, str] = {}  # codes the service called fatal, with their fixes
        self._had_session = False
        # Posted by other threads, taken by the loop: (link, opening id, greet) from an
        # opener, or an error message when no session could be opened.
        self._arrivals: deque[tuple[WsLink, str, bool] | seam.ConnectError] = deque()
        self._goodbye_request: str | None = None
        # While a new session opens the uplink ring is the backlog: nothing is sent.
        self._uplink_held = True
        self._append_view = memoryview(bytearray(BACKLOG_CHUNK))
        # Replies of a lost session still playing from the downlink ring: how much the caller
        # will hear of them is not known yet, so the new session gets them only when they
        # have finished playing or been cut.
        self._held: list[AudioItem] = []
        self._left_out: list[str] = []  # (history_in_opening) the held replies the opening lacks
        # When the model owns the turns (GPT-Live, call_worker/adapter.py): the caller's voice
        # as we detect it, and the audio sent on the session's clock, silence filling gaps.
        self._model_turns = adapter.model_turns
        self.voice = CallerVoice(settings.audio_format) if adapter.model_turns else None
        self._silence = bytes([rtp.SILENCE_BYTE[settings.audio_format]]) * 160
        self._input_origin = 0.0  # monotonic time the session's input timeline began
        self._input_bytes = 0  # audio sent on it (the caller's and silence)
        self._last_audio_at = 0.0  # monotonic time the caller's audio was last sent
        self._handlers = {
            seam.AgentAudio: self._on_audio,
            seam.AgentItem: self._on_agent_item,
            seam.CallerSpeechStarted: self._on_speech_started,
            seam.CallerSpeechStopped: self._on_speech_stopped,
            seam.ReplyStarted: self._on_reply_started,
            seam.ReplyDone: self._on_reply_done,
            seam.SettingsApplied: self._on_settings_applied,
            seam.Quieted: self._on_quieted,
            seam.AgentTextDelta: self._on_agent_text_delta,
            seam.AgentText: self._on_agent_text,
            seam.CallerText: self._on_caller_text,
            seam.ToolCall: self._on_tool_call,
            seam.SessionSeconds: self._on_session_seconds,
            seam.ServiceError: self._on_error,
        }

    # --- opening (any thread but the loop's; blocking, bounded)

    def connect(self, timeout: float) -> tuple[WsLink, str]:
        """Open and configure a session; raises adapter.ConnectError."""
        self.header.set(Slot.REALTIME_STATE, RealtimeState.CONNECTING)
        opening_id = f"cb_open_{next(self._opening_ids)}"
        return self.adapter.connect(timeout, opening_id), opening_id

    def begin(self, link: WsLink, opening_id: str, greet: bool) -> None:
        """Hand an open session to the loop."""
        self._arrivals.append((link, opening_id, greet))
        self.loop_wake.wake()

    def tell(self, instructions: str) -> None:
        """(main thread) Have the agent say something now (a transfer failed), once no
        reply is active."""
        self._tell_requests.append(instructions)
        self.loop_wake.wake()

    def agent_busy(self) -> bool:
        """(any thread) A reply is active or asked for: the agent is about to speak or speaking."""
        return (
            self.active_response is not None
            or bool(self._after_reply or self._tell_requests)
            or time.monotonic() < self._asked_until
        )

    def say_goodbye(self, instructions: str) -> None:
        """(main thread) Ask for a goodbye: the loop cuts any reply short and has the agent
        say it; `goodbye_done` is set once that reply has been fully received."""
        self._goodbye_request = instructions
        self.loop_wake.wake()

    # --- the loop's side

    def tick(self, now: float) -> None:
        """(each 20 ms tick, before the frame is sent) Everything the link brought, and
        what other threads posted."""
        while self._arrivals:
            arrival = self._arrivals.popleft()
            if isinstance(arrival, seam.ConnectError):
                self.count_error(arrival.code)
                self._fatal(str(arrival))
            else:
                self._install(*arrival)
        if self._goodbye_request is not None:
            self._start_goodbye()
        while self._tell_requests and not self.goodbye.requested:
            texts = self.adapter.respond(self._tell_requests.popleft(), "notice")
            self._after_reply.append(("tell", texts, True))
        if self.goodbye.requested:
            self._tell_requests.clear()  # a goodbye began: it has the last word
        if self.external.busy:
            self._settle_external(now)
        if self.keypad is not None and self.keypad.collecting:
            self._keys(self.keypad.tick(now))
        if self._after_reply:
            self._send_after_reply()
        if self._held:
            self._release_held(self.playback.ring.read_total)
        link = self.link
        if link is None:
            return
        if link.readable():
            for _is_text, payload in link.receive():
                self._dispatch(payload)
                if self.link is not link:
                    return  # the session ended while its messages were handled
        if self._model_turns and self.link is link:
            for event in self.adapter.poll(now):
                self._handlers[type(event)](event)
        if self.link is link:
            self._fill_silence(now)
        link.check_time(now)
        if link.closed is not None and self.link is link:
            self._lost(link.closed)

    def start_tools(self) -> None:
        """(set-up) Connect to the agent's MCP servers, whose tools come during the call."""
        self.external.start()

    def flush(self) -> None:
        if self.link is not None:
            self.link.flush()

    def close(self) -> None:
        """(main thread, the loop stopped) End the session."""
        self._finish_turns()
        self._send_texts(self.adapter.closing())
        self.header.set(Slot.REALTIME_STATE, RealtimeState.CLOSED)
        self._drop_link()
        self.external.close()
        while self._arrivals:  # an opener finished after the loop stopped
            arrival = self._arrivals.popleft()
            if not isinstance(arrival, seam.ConnectError):
                arrival[0].close()
        # The call is over: a reply still in the ring was heard up to where playback stopped.
        for item in self.playback.unplayed():
            if self.transcript.has_agent(item.item_id):
                self.transcript.truncated(self.playback.heard(item, self.playback.ring.read_total))

    def _install(self, link: WsLink, opening_id: str, greet: bool) -> None:
        if self.stop.is_set():
            link.close()
            return
        resumed, self._had_session = self._had_session, True
        self._drop_link()
        self.link = link
        self._opening_id = opening_id
        self.updates.opened(opening_id)
        self.header.set(Slot.REALTIME_STATE, RealtimeState.CONNECTED)
        self._input_origin, self._input_bytes = time.monotonic() + FILL_GRACE, 0
        self._last_audio_at = time.monotonic()
        if resumed:
            self.last_error_code = ""
            self._held = [i for i in self.playback.unplayed() if self.transcript.has_agent(i.item_id)]
            if self.adapter.history_in_opening:  # the session opened with them (`_lost`)
                turns = self.adapter.history
                # What still played at the loss was left out of the opening: a reply that
                # finished playing meanwhile goes now, the rest once heard (`_release_held`).
                playing = {i.item_id for i in self._held}
                self._held = [i for i in self._held if i.item_id in self._left_out]
                for item_id in [i for i in self._left_out if i not in playing]:  # in playing order
                    self._send_texts(self.adapter.inject([("agent", self.transcript.heard(item_id))]))
            else:
                turns = self.transcript.history(held=frozenset(i.item_id for i in self._held))
                self._send_texts(self.adapter.inject(turns))
            log.info("%s session resumed with %d earlier turns", self.adapter.name, len(turns))
            self.goodbye.session_opened()
        else:
            log.info("%s session open (model %s)", self.adapter.name, self.settings.openai_realtime_model)
        if self.toolbox is not None and self.toolbox.mcp_tools:
            self._send_tools()  # the opening may have been built before they were listed
        if greet and self.settings.openai_greeting:
            self._send_texts(self.adapter.respond(self.settings.openai_greeting))
        self._uplink_held = False  # the backlog follows the history it answers
        self.send_uplink()

    def _send_after_reply(self) -> None:
        """Queued texts in order, while no reply is active; one that asks for a reply is the
        last until that reply begins (or ASK_WAIT passed: an ask the service refused)."""
        while self._after_reply and self.link is not None and self.active_response is None:
            if time.monotonic() < self._asked_until:
                return
            _kind, texts, asks = self._after_reply.popleft()
            self._send_texts(texts)
            if asks:
                self._asked_until = time.monotonic() + ASK_WAIT

    def _send_texts(self, texts: list[str]) -> bool:
        link = self.link
        if link is None:
            return False
        return all([link.send_text(text) for text in texts])

    def _send_quiet(self, event_id: str) -> bool:
        sent = self._send_texts(self.adapter.quiet(event_id))
        if sent and not self._model_turns:  # (GPT-Live acknowledges by id: `Quieted`)
            self.updates.sent(event_id)
        return sent

    def _send_ask(self, instructions: str, event_id: str) -> bool:
        return self._send_texts(self.adapter.respond(instructions, "goodbye", event_id))

    def _start_goodbye(self) -> None:
        instructions, self._goodbye_request = self._goodbye_request, None
        if instructions is None or self.goodbye.requested:
            return
        if self.playback.is_playing():  # the main thread gave the reply its time already
            self._interrupt()
        self._drop_tool_replies()  # the goodbye has the last word: no reply may take its place
        self.goodbye.begin(instructions)

    # --- losing a session, and opening the next

    def _lost(self, closed: Closed | None) -> None:
        """After the connection ended: reconnect when that can save the call."""
        code = closed.code if closed is not None else None
        self._drop_link()
        self._finish_turns()  # after the link is gone: nothing queued may go into it
        fatal = self.adapter.refused_by_close(code) or self.last_error_code in self._fatal_codes
        if fatal:
            fix = self._fatal_codes.get(self.last_error_code, "check the OpenAI settings")
            self._fatal(f"Realtime refused this configuration ({self.last_error_code or code}): {fix}")
            return
        if self.last_error_code == "session_expired":
            why = "session expired"
        else:
            why = f"closed (code {code}: {closed.reason})" if closed is not None else "closed"
        self.active_response = None
        self.transcript.session_lost()  # a reply in flight keeps what it had
        self.playback.response_finished(self.playback.open_response or "")
        if not self.goodbye.session_lost():  # a goodbye being quieted for is asked again later
            log.warning("Realtime connection %s during the goodbye; ending with what was received", why)
            self.header.set(Slot.REALTIME_STATE, RealtimeState.CLOSED)
            return
        log.warning("Realtime connection %s; opening a new session", why)
        self.header.set(Slot.REALTIME_STATE, RealtimeState.RECONNECTING)
        self._uplink_held = True
        if self.adapter.history_in_opening:  # as heard so far: what still plays is sent once heard
            held = frozenset(
                i.item_id for i in self.playback.unplayed() if self.transcript.has_agent(i.item_id)
            )
            self.adapter.history = self.transcript.history(held=held)
            self._left_out = [i.item_id for i in self.playback.unplayed() if i.item_id in held]
        opener = threading.Thread(
            target=self._reconnect,
            args=(time.monotonic() + RECONNECT_BUDGET,),
            name="realtime-open",
            daemon=True,
        )
        opener.start()

    def _reconnect(self, deadline: float) -> None:
        """(an opener thread) Try for a new session until `deadline`; post the outcome."""
        attempts = 0
        try:
            for delay in RECONNECT_DELAYS:
                if deadline - time.monotonic() - delay < MIN_ATTEMPT:
                    break
                if self.stop.wait(delay):
                    return
                self.header.add(Slot.RECONNECTS)
                attempts += 1
                try:
                    link, opening_id = self.connect(min(RECONNECT_OPEN_TIMEOUT, deadline - time.monotonic()))
                except Exception as exc:  # a bug in an adapter must not leave the call reconnecting for ever
                    if not isinstance(exc, seam.ConnectError):
                        log.exception("opening a new session failed unexpectedly")
                        exc = seam.ConnectError(f"{type(exc).__name__}: {exc}", fatal=False)
                    if exc.fatal:
                        self._arrivals.append(exc)
                        return
                    log.warning("Realtime reconnect failed: %s", exc)
                    continue
                self._arrivals.append((link, opening_id, False))
                return
            self._arrivals.append(
                seam.ConnectError(
                    f"Realtime service unreachable: no new session within {RECONNECT_BUDGET:.0f} s "
                    f"({attempts} attempts)",
                    fatal=True,
                )
            )
        finally:
            self.loop_wake.wake()

    def _finish_turns(self) -> None:
        """The session ended: turns the adapter still had open end with what they had."""
        for event in self.adapter.finish():
            self._handlers[type(event)](event)

    def _drop_link(self) -> None:
        old, self.link = self.link, None
        # Tool results name the lost session's calls; what the main thread asked for stays.
        self._after_reply = deque(item for item in self._after_reply if item[0] == "tell")
        self._tool_replies.clear()
        self.external.clear()  # their outputs would name the lost session's calls
        for response_id in list(self._holds):
            self._unhold(response_id)
        self._hold_after.clear()
        self._cut_replies.clear()
        self._preambles.clear()
        self._fillers.clear()
        self._active_items = []
        if old is not None:
            old.close()

    def _release_held(self, played: int, cut: bool = False) -> None:
        """Give the new session each held reply the caller has finished hearing (all of it
        played, or playback `cut` at `played`), as heard."""
        keep = []
        for item in self._held:
            if item.end > played and not cut:
                keep.append(item)
                continue
            if item.end > played:
                self.transcript.truncated(self.playback.heard(item, played))
            self._send_texts(self.adapter.inject([("agent", self.transcript.heard(item.item_id))]))
        self._held = keep

    def count_error(self, code: str) -> None:
        """One more error for the metrics: in its code's slot, or among the others. The
        media loop's (or, before it has a session, set-up's), so each slot has one writer."""
        slot = error_slot(code)
        self.header.add(slot if slot is not None else Slot.REALTIME_ERRORS)

    def _fatal(self, message: str) -> None:
        self.header.set(Slot.REALTIME_STATE, RealtimeState.FAILED)
        self._drop_link()
        log.error("%s", message)
        self.on_fatal(message)

    # --- events

    def _dispatch(self, message: bytes | str) -> None:
        try:
            events = self.adapter.events(message)
        except seam.MalformedEvent as exc:
            self.header.add(Slot.MALFORMED_EVENTS)
            if not self._malformed_logged:
                self._malformed_logged = True
                log.warning("ignoring a malformed Realtime event (%s); further ones are only counted", exc)
            return
        for event in events:
            self._handlers[type(event)](event)

    def _on_audio(self, event: seam.AgentAudio) -> None:
        if self.playback.add_audio(event.response_id, event.item_id, event.audio):
            self.header.add(Slot.DOWNLINK_OVERRUNS)

    def _on_speech_started(self, event: seam.CallerSpeechStarted) -> None:
        self.header.set(Slot.LAST_SPEECH_NS, time.monotonic_ns())
        if self.playback.is_playing() and not self.goodbye.uninterruptible:
            self._interrupt()

    def _interrupt(self) -> None:
        """Barge-in: silence the reply from the next frame, cancel it, tell the model what
        was heard."""
        truncation = self.playback.barge_in()
        self.header.add(Slot.BARGE_INS)
        if self.active_response is not None:
            self._send_texts(self.adapter.cancel(self.active_response))
        held = {i.item_id for i in self._held}  # a lost session's items: not this session's to edit
        if self._held:
            if truncation is not None and truncation.item_id in held:
                truncation = None
            self._release_held(self.playback.cut_at, cut=True)
        if truncation is not None:
            self.transcript.truncated(truncation)
            self._send_texts(self.adapter.truncate(truncation.item_id, truncation.audio_end_ms))
        self._drop_unheard(truncation, held)
        if not self._model_turns:
            # The caller has the turn: Realtime's turn detection answers it. GPT-Live's
            # backend still waits for its response.create, or the tool's answer is never said.
            self._drop_tool_replies()
        log.info(
            "barge-in: reply stopped after %d ms of item %s",
            truncation.audio_end_ms if truncation else -1,
            truncation.item_id if truncation else "-",
        )

    def _drop_unheard(self, truncation: Truncation | None, held: set[str]) -> None:
        """After a barge-in, the items the caller will hear none of: all audio queued after
        the cut (a reply's later items, or a whole later reply that had arrived), and the cut
        reply's items still without audio. The record keeps them with nothing heard, at once;
        the model is told it never said them: now for a reply that is done, at its
        response.done for one still arriving. Items heard whole before the cut stay."""
        cut_at, cut_item = self.playback.cut_at, truncation.item_id if truncation else None
        active = self.active_response
        unheard = [
            (i.item_id, i.response_id)
            for i in self.playback.items
            if i.start >= cut_at and i.end > i.start and i.item_id != cut_item and i.item_id not in held
        ]
        unheard += [(item, active) for item in self._active_items if self.playback.audio_of(item) is None]
        for item_id, response_id in dict(unheard).items():
            self._unheard(item_id)
            if response_id != active:
                self._send_texts(self.adapter.delete(item_id))
        if active is not None:
            self._cut_replies[active] = (cut_at, cut_item)

    def _unheard(self, item_id: str) -> None:
        audio = self.playback.audio_of(item_id)
        self.transcript.truncated(Truncation(item_id, 0, (audio.end - audio.start) // 8 if audio else 0))

    def _drop_tool_replies(self) -> None:
        """No reply is asked for after tool calls any more (the caller spoke, or the goodbye
        began); their outputs are still sent, for the reply that comes."""
        self._tool_replies.clear()
        self._after_reply = deque(item for item in self._after_reply if item[0] != "reply")

    def _on_speech_stopped(self, event: seam.CallerSpeechStopped) -> None:
        self.header.set(Slot.LAST_SPEECH_NS, time.monotonic_ns())

    def _on_reply_started(self, event: seam.ReplyStarted) -> None:
        self.active_response = event.response_id
        self._active_items = []
        self._asked_until = 0.0
        self.playback.response_started(event.response_id)
        self.header.add(Slot.RESPONSES)
        self.goodbye.on_response_created(event.response_id)

    def _on_reply_done(self, event: seam.ReplyDone) -> None:
        self.playback.response_finished(event.response_id)
        cut = self._cut_replies.pop(event.response_id, None)
        if cut is not None:  # cut while it was still arriving: now every item of it is known
            cut_at, cut_item = cut
            for item_id in event.item_ids:
                audio = self.playback.audio_of(item_id)
                if item_id != cut_item and (audio is None or audio.start >= cut_at):
                    self._unheard(item_id)
                    self._send_texts(self.adapter.delete(item_id))
        self._preambles.discard(event.response_id)
        self._fillers.discard(event.response_id)
        if self.active_response == event.response_id:
            self.active_response = None
        media = self._hold_after.pop(event.response_id, None)
        if media and self.external.waiting_for(event.response_id):
            self._hold(event.response_id, media)
        for kind, amount in event.usage.items():
            self.usage[kind] = self.usage.get(kind, 0) + amount
        usage, header = self.usage, self.header
        header.set(Slot.INPUT_TOKENS, usage["input_tokens"])
        header.set(Slot.OUTPUT_TOKENS, usage["output_tokens"])
        header.set(Slot.INPUT_AUDIO_TOKENS, usage["input_audio_tokens"])
        header.set(Slot.OUTPUT_AUDIO_TOKENS, usage["output_audio_tokens"])
        header.set(Slot.INPUT_CACHED_TOKENS, usage["input_cached_tokens"])
        self.transcript.response_ended(list(event.item_ids))
        self.goodbye.on_response_done(event.response_id, self.active_response is not None)
        if not self.external.waiting_for(event.response_id):
            # its HTTP or MCP tools answered already (a fast server): no filler needed before the answer
            self._after_reply = deque(item for item in self._after_reply if item[0] != "filler")
        self._reply_after_tools(event.response_id)
        if self._after_reply:
            self._send_after_reply()

    def _on_session_seconds(self, event: seam.SessionSeconds) -> None:
        self.usage["session_seconds"] = event.seconds  # a snapshot of the total so far
        self.header.set(Slot.SESSION_SECONDS, round(event.seconds))  # the supervisor's budgets and metrics

    def _on_quieted(self, event: seam.Quieted) -> None:
        self.goodbye.on_session_updated(self.active_response is not None, event.event_id)

    def _on_settings_applied(self, event: seam.SettingsApplied) -> None:
        # After a reconnect the opening update (automatic responses on) is acknowledged
        # first: only the acknowledgement of the goodbye's own update lets it ask.
        self.goodbye.on_session_updated(self.active_response is not None, self.updates.acknowledged())

    def _on_agent_item(self, event: seam.AgentItem) -> None:
        self.transcript.agent_item(event.item_id, event.phase)
        if event.response_id == self.active_response:
            self._active_items.append(event.item_id)
        if event.response_id in self.playback.ignored_responses:
            self._unheard(event.item_id)  # begun after a barge-in cut its reply: never played
        if event.phase == "preamble":
            self._preambles.add(event.response_id)

    def _on_agent_text_delta(self, event: seam.AgentTextDelta) -> None:
        self.transcript.agent_delta(event.item_id, event.text)

    def _on_agent_text(self, event: seam.AgentText) -> None:
        interrupted = event.response_id in self.playback.ignored_responses
        entry = self.transcript.agent_done(event.item_id, event.text, interrupted)
        if self.utterances is None:
            log.debug(
                "agent turn (%d characters%s)",
                len(event.text),
                ", interrupted" if entry["interrupted"] else "",
            )
        elif entry["interrupted"]:
            log.log(self.utterances, "agent: %s [interrupted; heard: %s]", event.text, entry["heard"])
        else:
            log.log(self.utterances, "agent: %s", event.text)
        self.on_turn()

    def _on_caller_text(self, event: seam.CallerText) -> None:
        self.transcript.caller(event.text)
        self.usage["transcription_seconds"] += event.seconds
        if self.utterances is None:
            log.debug("caller turn (%d characters)", len(event.text))
        else:
            log.log(self.utterances, "caller: %s", event.text)
        self.on_turn()

    def _on_error(self, event: seam.ServiceError) -> None:
        self.last_error_code = event.code
        action = event.action
        if action is seam.ErrorAction.BENIGN:
            log.debug("Realtime (benign) %s: %s", event.code, event.message)
        elif action is seam.ErrorAction.FATAL_CONFIG:
            self._fatal_codes[event.code] = event.fix or "check the OpenAI settings"
            log.error("Realtime error %s: %s -- %s", event.code, event.message, event.fix)
        elif action is seam.ErrorAction.RECONNECT:
            log.warning("Realtime error %s: %s", event.code, event.message)
        else:
            log.warning("Realtime error %s: %s", event.code or "(no code)", event.message)
        if action is not seam.ErrorAction.BENIGN:
            self.count_error(event.code)
        if action is not seam.ErrorAction.BENIGN and event.cause and event.cause == self._opening_id:
            # The session runs on the service's defaults (no instructions, another audio
            # format): nothing the caller should hear. The tuning is checked at start
            # (callbridge/voice_tuning.py); this is what it could not know.
            self._fatal(
                f"Realtime refused the session settings ({event.code or 'no code'}: {event.message}): "
                f"{event.fix or 'check the OPENAI_* settings and the agent tuning'}"
            )
            return
        if event.cause is not None:
            self.updates.refused(event.cause)  # a refused update is never acknowledged
            self.goodbye.on_error(self.active_response is not None, event.cause)
            if event.cause in self._tool_updates:
                self._withdraw(self._tool_updates.pop(event.cause))
