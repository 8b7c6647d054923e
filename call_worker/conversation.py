"""The call's Realtime conversation: two threads around one WebSocket.

realtime-send drains the uplink ring into `input_audio_buffer.append` events the moment
rtp-in signals a frame (no re-chunking delay), except while a new session opens: the ring
is then the backlog, sent once the new session has the history. realtime-recv reads server events: audio
deltas go to the downlink ring through `Playback`, speech_started while a reply plays is
a barge-in, transcripts and usage are kept. When the connection drops or the session
expires, a new session is opened and the conversation so far is re-injected (the agent's
turns as the caller heard them); when the configuration cannot work (bad key, unknown model,
beta refused) or no new session opens within RECONNECT_BUDGET, the call is told to end.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from call_worker import realtime_protocol as proto
from call_worker.goodbye import Goodbye
from call_worker.playback import AudioItem, Playback
from call_worker.realtime_link import RealtimeConnectError, connect_realtime
from call_worker.session_updates import SessionUpdates
from call_worker.transcript import Transcript
from callbridge.config import Settings
from shm_ring import ByteRing, CallHeader, RealtimeState, Slot

log = logging.getLogger(__name__)

RECONNECT_DELAYS = (0.2, 1.0, 2.0)
# From the loss of a session to giving up. With a frozen service noticed within 6 s
# (call_worker/realtime_link.py) and the failure prompt, the caller is told within 15 s.
RECONNECT_BUDGET = 5.0
RECONNECT_OPEN_TIMEOUT = 3.0  # one handshake; a real one takes well under a second
MIN_ATTEMPT = 0.5  # a handshake given less than this is not worth starting
_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'


class Conversation:
    def __init__(
        self,
        settings: Settings,
        header: CallHeader,
        uplink: ByteRing,
        playback: Playback,
        uplink_wake: threading.Event,
        stop: threading.Event,
        on_fatal: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.header = header
        self.uplink = uplink
        self.playback = playback
        self.uplink_wake = uplink_wake
        self.stop = stop
        self.on_fatal = on_fatal
        self.beta = settings.openai_api_shape == "beta"
        self.ws: ClientConnection | None = None
        self.transcript = Transcript()
        self.usage = {
            "input_tokens": 0,
            "output_tokens": 0,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "transcription_seconds": 0.0,
        }
        self.active_response: str | None = None
        self.last_error_code = ""
        # Goodbye: the main thread only posts the request (one attribute assignment);
        # realtime-recv carries it out, so Playback and the response state keep one writer.
        self._goodbye_request: str | None = None
        self.goodbye = Goodbye(settings, self._send)
        self.updates = SessionUpdates()
        self._opening_ids = itertools.count(1)
        self.goodbye_done = self.goodbye.done
        self._malformed_logged = False
        # Set by realtime-recv while a new session opens: realtime-send leaves the uplink
        # ring unread meanwhile, so the caller's words (up to its ~8 s) reach the new session.
        self._uplink_held = False
        # Replies of a lost session still playing from the downlink ring: how much the caller
        # will hear of them is not known yet, so the new session gets them only when they
        # have finished playing or been cut (realtime-recv's only).
        self._held: list[AudioItem] = []
        self._threads: list[threading.Thread] = []

    # --- connection

    def open(self, timeout: float = 10.0) -> None:
        """Connect and configure a session, the handshake bounded by `timeout`; raises
        RealtimeConnectError for any failure."""
        self.header.set(Slot.REALTIME_STATE, RealtimeState.CONNECTING)
        try:
            event = proto.session_update(self.settings)
        except OSError as exc:  # OPENAI_INSTRUCTIONS_FILE became unreadable
            raise RealtimeConnectError(f"cannot read the instructions: {exc}", fatal=True) from None
        event["event_id"] = f"cb_open_{next(self._opening_ids)}"
        ws = connect_realtime(self.settings, timeout)
        try:
            ws.send(json.dumps(event))
        except ConnectionClosed:
            pass  # refused at once: recv reports why (the error event came before the close)
        except OSError as exc:
            ws.close()
            raise RealtimeConnectError(f"Realtime connection failed at once: {exc}", fatal=False) from None
        self.updates.opened(event["event_id"])
        # Published only now: realtime-send must never append audio to an unconfigured session.
        self.ws = ws
        if self.stop.is_set():  # the call ended while this was connecting
            self.ws = None
            ws.close()
            return
        self.header.set(Slot.REALTIME_STATE, RealtimeState.CONNECTED)
        log.info(
            "Realtime session open (model %s, %s shape)",
            self.settings.openai_realtime_model,
            self.settings.openai_api_shape.upper(),
        )

    def start(self, greet: bool) -> None:
        for name, target in (("realtime-recv", self._recv_loop), ("realtime-send", self._send_loop)):
            thread = threading.Thread(target=self._guard(target, name), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if greet and self.settings.openai_greeting:
            self._send(proto.response_create(self.settings.openai_greeting))

    def _guard(self, target, name: str):
        def run() -> None:
            try:
                target()
            except Exception:
                if self.stop.is_set():
                    return
                log.exception("%s thread crashed", name)
                self._fatal(f"{name} thread crashed")

        return run

    def close(self) -> None:
        self.header.set(Slot.REALTIME_STATE, RealtimeState.CLOSED)
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # closing a broken connection may fail in many ways; none matter
                pass
        self.uplink_wake.set()
        for thread in self._threads:
            thread.join(timeout=3)
        # The call is over: a reply still in the ring was heard up to where playback stopped.
        for item in self.playback.unplayed():
            if self.transcript.has_agent(item.item_id):
                self.transcript.truncated(self.playback.heard(item, self.playback.ring.read_total))

    def _send(self, event: dict) -> bool:
        sent = self._send_text(json.dumps(event))
        if sent and event["type"] == "session.update":  # (realtime-recv: the goodbye's)
            self.updates.sent(event["event_id"])
        return sent

    def _send_text(self, text: str) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            ws.send(text)
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False  # the recv thread notices the closed connection and reconnects

    # --- goodbye (time limit, idle)

    def say_goodbye(self, instructions: str) -> None:
        """(main thread) Ask for a goodbye: realtime-recv cuts any reply short and has the
        agent say it; `goodbye_done` is set once that reply has been fully received."""
        self._goodbye_request = instructions

    def _start_goodbye(self) -> None:
        """(realtime-recv) Carry out a posted goodbye request."""
        instructions, self._goodbye_request = self._goodbye_request, None
        if instructions is None or self.goodbye.requested:
            return
        if self.playback.is_playing():  # the main thread gave the reply its time already
            self._interrupt()
        self.goodbye.begin(instructions)

    # --- threads

    def _send_loop(self) -> None:
        buffer = bytearray(3200)
        view = memoryview(buffer)
        header, uplink, wake = self.header, self.uplink, self.uplink_wake
        while not self.stop.is_set():
            wake.wait(0.2)
            wake.clear()
            header.set(Slot.HEARTBEAT_REALTIME, time.monotonic_ns())
            while True:
                if self._uplink_held:
                    break  # reconnecting: the ring keeps the caller's audio for the new session
                n = uplink.read_into(buffer)
                if n == 0:
                    break
                if self.ws is None:
                    continue  # no session and none coming: nobody can hear it
                text = _APPEND_HEAD + base64.b64encode(view[:n]).decode("ascii") + '"}'
                if self._send_text(text):
                    header.add(Slot.FRAMES_TO_REALTIME, n // 160)

    def _recv_loop(self) -> None:
        while not self.stop.is_set():
            ws = self.ws
            if ws is None:
                return
            self.header.set(Slot.HEARTBEAT_REALTIME_RECV, time.monotonic_ns())
            if self._goodbye_request is not None:
                self._start_goodbye()
            if self._held:
                self._release_held(self.playback.ring.read_total)
            try:
                # A short timeout so that a posted goodbye is acted on within 100 ms.
                message = ws.recv(timeout=0.1)
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                if self.stop.is_set():
                    return
                if not self._recover(closed):
                    return
                continue
            except (OSError, RuntimeError) as exc:
                if self.stop.is_set():
                    return
                log.warning("Realtime connection failed: %s", exc)
                if not self._recover(None):
                    return
                continue
            self._dispatch(message)

    def _recover(self, closed: ConnectionClosed | None) -> bool:
        """After the connection ended: reconnect when that can save the call."""
        code = closed.rcvd.code if closed is not None and closed.rcvd is not None else None
        if code == 4000 or proto.ERROR_ACTIONS.get(self.last_error_code) is proto.ErrorAction.FATAL_CONFIG:
            fix = proto.FIXES.get(self.last_error_code, "check the OpenAI settings")
            self._fatal(f"Realtime refused this configuration ({self.last_error_code or code}): {fix}")
            return False
        why = "session expired" if self.last_error_code == "session_expired" else f"closed (code {code})"
        self.active_response = None
        self.transcript.session_lost()  # a reply in flight keeps what it had
        self.playback.response_finished(self.playback.open_response or "")
        if not self.goodbye.session_lost():  # a goodbye being quieted for is asked again below
            log.warning("Realtime connection %s during the goodbye; ending with what was received", why)
            self._drop_connection()
            self.header.set(Slot.REALTIME_STATE, RealtimeState.CLOSED)
            return False
        log.warning("Realtime connection %s; opening a new session", why)
        self.header.set(Slot.REALTIME_STATE, RealtimeState.RECONNECTING)
        self._uplink_held = True
        # Counted from the loss: closing a frozen connection takes its close timeout.
        deadline = time.monotonic() + RECONNECT_BUDGET
        self._drop_connection()
        attempts = 0
        for delay in RECONNECT_DELAYS:
            if deadline - time.monotonic() - delay < MIN_ATTEMPT:
                break
            if self.stop.wait(delay):
                return False
            self.header.add(Slot.RECONNECTS)
            attempts += 1
            try:
                self.open(timeout=min(RECONNECT_OPEN_TIMEOUT, deadline - time.monotonic()))
            except RealtimeConnectError as exc:
                if exc.fatal:
                    self._fatal(str(exc))
                    return False
                log.warning("Realtime reconnect failed: %s", exc)
                continue
            if self.ws is None:
                return False  # the call ended while this was connecting
            self.last_error_code = ""
            self._held = [i for i in self.playback.unplayed() if self.transcript.has_agent(i.item_id)]
            turns = self.transcript.history(held=frozenset(i.item_id for i in self._held))
            for event in proto.context_items(turns, self.beta):
                self._send(event)
            log.info("Realtime session resumed with %d earlier turns", len(turns))
            self._uplink_held = False  # the backlog follows the history it answers
            self.uplink_wake.set()
            self.goodbye.session_opened()
            return True
        self._fatal(
            f"Realtime service unreachable: no new session within {RECONNECT_BUDGET:.0f} s ({attempts} attempts)"
        )
        return False

    def _drop_connection(self) -> None:
        old, self.ws = self.ws, None
        if old is not None:
            try:
                old.close()  # bounded by the close timeout even when the peer is frozen
            except Exception:  # closing a broken connection may fail in many ways; none matter
                pass

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
            for event in proto.context_items([("agent", self.transcript.heard(item.item_id))], self.beta):
                self._send(event)
        self._held = keep

    def _fatal(self, message: str) -> None:
        self.header.set(Slot.REALTIME_STATE, RealtimeState.FAILED)
        log.error("%s", message)
        self.on_fatal(message)

    # --- events

    def _dispatch(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
            kind = event["type"]
            kind = proto.BETA_TO_GA.get(kind, kind) if self.beta else kind
            handler = self._handlers.get(kind)
            if handler is not None:
                handler(self, event)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            self.header.add(Slot.MALFORMED_EVENTS)
            if not self._malformed_logged:
                self._malformed_logged = True
                log.warning(
                    "ignoring a malformed Realtime event (%s: %s); further ones are only counted",
                    type(exc).__name__,
                    exc,
                )

    def _on_audio_delta(self, event: dict) -> None:
        audio = base64.b64decode(event["delta"], validate=True)
        if self.playback.add_audio(event["response_id"], event["item_id"], audio):
            self.header.add(Slot.DOWNLINK_OVERRUNS)

    def _on_speech_started(self, event: dict) -> None:
        self.header.set(Slot.LAST_SPEECH_NS, time.monotonic_ns())
        if self.playback.is_playing() and not self.goodbye.uninterruptible:
            self._interrupt()

    def _interrupt(self) -> None:
        """Barge-in: silence the reply now, cancel it, tell the model what was heard."""
        started = time.monotonic()
        truncation = self.playback.barge_in()
        self.header.add(Slot.BARGE_INS)
        if self.active_response is not None:
            self._send({"type": "response.cancel", "response_id": self.active_response})
        if self._held:  # a lost session's reply: this session has no such item to truncate
            if truncation is not None and any(i.item_id == truncation.item_id for i in self._held):
                truncation = None
            self._release_held(self.playback.cut_at, cut=True)
        if truncation is not None:
            self.transcript.truncated(truncation)
            self._send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": truncation.item_id,
                    "content_index": 0,
                    "audio_end_ms": truncation.audio_end_ms,
                }
            )
        log.info(
            "barge-in: reply stopped after %d ms of item %s (%.1f ms to stop)",
            truncation.audio_end_ms if truncation else -1,
            truncation.item_id if truncation else "-",
            (time.monotonic() - started) * 1000,
        )

    def _on_speech_stopped(self, event: dict) -> None:
        self.header.set(Slot.LAST_SPEECH_NS, time.monotonic_ns())

    def _on_response_created(self, event: dict) -> None:
        response_id = event["response"]["id"]
        self.active_response = response_id
        self.playback.response_started(response_id)
        self.header.add(Slot.RESPONSES)
        self.goodbye.on_response_created(response_id)

    def _on_response_done(self, event: dict) -> None:
        response = event["response"]
        response_id = response["id"]
        self.playback.response_finished(response_id)
        if self.active_response == response_id:
            self.active_response = None
        proto.add_usage(self.usage, response.get("usage") or {})
        self.header.set(Slot.INPUT_TOKENS, self.usage["input_tokens"])
        self.header.set(Slot.OUTPUT_TOKENS, self.usage["output_tokens"])
        items = [
            str(item["id"])
            for item in response.get("output") or []
            if isinstance(item, dict) and "id" in item
        ]
        self.transcript.response_ended(items)
        self.goodbye.on_response_done(response_id, self.active_response is not None)

    def _on_session_updated(self, event: dict) -> None:
        # After a reconnect the opening update (automatic responses on) is acknowledged
        # first: only the acknowledgement of the goodbye's own update lets it ask.
        self.goodbye.on_session_updated(self.active_response is not None, self.updates.acknowledged())

    def _on_agent_transcript_delta(self, event: dict) -> None:
        self.transcript.agent_delta(str(event["item_id"]), str(event.get("delta") or ""))

    def _on_agent_transcript(self, event: dict) -> None:
        text = str(event.get("transcript") or "").strip()
        interrupted = event.get("response_id") in self.playback.ignored_responses
        entry = self.transcript.agent_done(str(event["item_id"]), text, interrupted)
        if entry["interrupted"]:
            log.info("agent: %s [interrupted; heard: %s]", text, entry["heard"])
        else:
            log.info("agent: %s", text)

    def _on_caller_transcript(self, event: dict) -> None:
        text = str(event.get("transcript") or "").strip()
        self.transcript.caller(text)
        seconds = ((event.get("usage") or {}).get("seconds")) or 0
        self.usage["transcription_seconds"] += float(seconds)
        log.info("caller: %s", text)

    def _on_error(self, event: dict) -> None:
        error = event.get("error") or {}
        code = str(error.get("code") or "")
        self.last_error_code = code
        action = proto.classify_error(error)
        message = str(error.get("message") or "")[:300]
        if action is proto.ErrorAction.BENIGN:
            log.debug("Realtime (benign) %s: %s", code, message)
        elif action is proto.ErrorAction.FATAL_CONFIG:
            log.error("Realtime error %s: %s -- %s", code, message, proto.FIXES.get(code, ""))
        elif action is proto.ErrorAction.RECONNECT:
            log.warning("Realtime error %s: %s", code, message)
        else:
            self.header.add(Slot.REALTIME_ERRORS)
            log.warning("Realtime error %s: %s", code or "(no code)", message)
        cause = error.get("event_id")  # the client event that caused it, when one did
        if isinstance(cause, str):
            self.updates.refused(cause)  # a refused update is never acknowledged
            self.goodbye.on_error(self.active_response is not None, cause)

    _handlers: dict[str, Callable[[Conversation, dict], None]] = {
        "response.output_audio.delta": _on_audio_delta,
        "input_audio_buffer.speech_started": _on_speech_started,
        "input_audio_buffer.speech_stopped": _on_speech_stopped,
        "response.created": _on_response_created,
        "response.done": _on_response_done,
        "session.updated": _on_session_updated,
        "response.output_audio_transcript.delta": _on_agent_transcript_delta,
        "response.output_audio_transcript.done": _on_agent_transcript,
        "conversation.item.input_audio_transcription.completed": _on_caller_transcript,
        "error": _on_error,
    }
