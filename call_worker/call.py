"""One call, from the worker's side: set-up and the control loop. What follows the decision
to end (the fallback or the failure prompt, the teardown, the record) is call_worker/ending.py.

State machine (written to the call header for the supervisor and `status`):

    STARTING --media and Realtime ready--> ACTIVE --an end condition--> ENDING --> ENDED
    STARTING --set-up failed----------------------------------------> ENDING --> ENDED

Two threads for the whole call (docs/architecture.md, "Threads of a worker and who writes what"): the media loop
(call_worker/media.py) carries the audio and the voice session; the main thread sleeps until
something can end the call, and then ends it. It wakes only when told (the supervisor's end
request comes with a signal, a fatal failure, a reply or the goodbye finished playing, a
turn to journal) or at the next deadline of a limit (call and idle limits: a reply in
progress finishes first, up to REPLY_GRACE, then the goodbye). Audio never passes through it.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from call_worker import realtime_protocol as proto
from call_worker import rtp
from call_worker.adapter import ConnectError, adapter_for
from call_worker.agent_actions import AgentActions
from call_worker.conversation import RECONNECT_OPEN_TIMEOUT, Conversation
from call_worker.ending import Ending
from call_worker.live_adapter import LiveAdapter  # noqa: F401 -- as below
from call_worker.media import MediaLoop
from call_worker.playback import Playback
from call_worker.realtime_adapter import RealtimeAdapter  # noqa: F401 -- imported before the fork (shared pages, not each worker's)
from call_worker.recording import Recording
from call_worker.setup_timeline import SetupTimeline
from call_worker.side_requests import SideRequest, finish_all, wait_all
from call_worker.tools import Action, ToolBox, tools_for
from call_worker.transfer import Transfer
from call_worker.wake import Waker
from callbridge.agents import Agent
from callbridge.ari_rest import AriError, AriRest
from callbridge.config import Settings
from callbridge.netaddr import rtp_bind_address
from records.spool import CallSpool
from shm_ring import CallSegment, CallState, EndReason, RealtimeState, RecordingState, Slot, VoiceApi

log = logging.getLogger(__name__)

GOODBYE_LIMIT = 20.0  # seconds a goodbye may take before the call is ended anyway
MAX_EVENTS = 500  # events of one call's record (set-up marks, tools, keys, transfers)
REPLY_GRACE = 10.0  # seconds a reply in progress at a limit may go on before the goodbye cuts it
# The first handshake, then one more try of RECONNECT_OPEN_TIMEOUT: a service that accepts
# TCP and never answers leaves the caller at most ~8 s before the failure prompt.
SETUP_OPEN_TIMEOUT = 5.0
ADD_TO_BRIDGE_ATTEMPTS = 50  # 10 ms apart


@dataclass(frozen=True)
class CallInfo:
    call_id: str  # the caller channel's id
    caller: str = ""
    dialled: str = ""
    channel_name: str = ""
    admitted_ns: int = 0  # time.monotonic_ns() when the supervisor took the StasisStart
    caller_hash: str = ""  # records/privacy.py; `caller` is masked when RECORDS_MASK_CALLERS
    # Who answers (callbridge/agents.py), picked at admission; a reload never changes it.
    agent: Agent = field(default_factory=lambda: Agent(name="default"))


def host_port(address: str, port: int) -> str:
    """`external_host` as ARI wants it: IPv6 addresses in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class SetupError(Exception):
    def __init__(self, message: str, reason: EndReason) -> None:
        super().__init__(message)
        self.reason = reason


def bind_rtp_socket(address: str, port_range: tuple[int, int], attempts: int = 64) -> socket.socket:
    """A UDP socket on a free port of the range (random start: parallel calls rarely collide)."""
    low, high = port_range
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    last_error: OSError | None = None
    for _ in range(attempts):
        port = random.randint(low, high)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise SetupError(
        f"no free UDP port in RTP_PORT_RANGE {low}-{high} on {address}: {last_error}", EndReason.SETUP_FAILED
    )


class Call:
    def __init__(
        self,
        settings: Settings,
        info: CallInfo,
        segment: CallSegment,
        supervisor_pid: int | None = None,
        main_wake: Waker | None = None,
        forked_ns: int = 0,
        events: socket.socket | None = None,
    ) -> None:
        self.agent = info.agent
        self.events_channel = events  # from the supervisor (shm_ring/call_events.py): key presses
        settings = self.agent.apply(settings)  # the agent's instructions, voice, greeting, limits
        self.settings = settings
        self.ids = settings.ids
        self.info = info
        self.header = segment.header
        self.segment = segment
        self.supervisor_pid = supervisor_pid
        self.stop = threading.Event()
        self.fatal = threading.Event()
        self.fatal_message = ""
        # The main thread's wake-up; process.py points signals at it too (set_wakeup_fd).
        self.main_wake = main_wake or Waker()
        self.loop_wake = Waker()  # the media loop's
        self.playback = Playback(segment.downlink)
        self.ari = AriRest.for_settings(settings)
        # Events of the call's record besides its turns (tool calls, transfers): appended by
        # either thread, journaled by the main thread when it wakes.
        self.events: list[dict] = []
        self._events_journaled = 0
        self._dropped: dict | None = None  # the events_dropped event's detail, past MAX_EVENTS
        self.toolbox = ToolBox(self.agent, self._tool_action, self.event, settings.records_transcripts)
        self.transfer = Transfer(self.ids, self.ari, self.header, info.call_id, settings.ari_app_name)
        self.conversation = Conversation(
            settings,
            self.header,
            segment.uplink,
            self.playback,
            adapter_for(settings, tools_for(self.agent)),
            self.loop_wake,
            self.stop,
            self._on_fatal,
            on_turn=self._turn_finished,
            on_goodbye_done=self.main_wake.wake,
            toolbox=self.toolbox,
        )
        self.actions = AgentActions(
            self.agent,
            self.toolbox,
            self.transfer,
            self.ari,
            info.call_id,
            self.ids.bridge(info.call_id),
            self.ids.external_channel(info.call_id),
            self.conversation,
            self.event,
        )
        self.sock: socket.socket | None = None
        self.media: MediaLoop | None = None
        self.recording: Recording | None = None  # RECORD_CALLS or the agent's `record`
        self.recording_kept: dict | None = None  # what the ending finished of it, for the record
        self.threads: list[threading.Thread] = []
        self._journal_due = False
        self.opened: list = []  # set-up's session until the media loop has it
        self.rusage_bridged = None  # getrusage() once media is ready
        self.end_reason = EndReason.NONE
        self.started = time.monotonic()
        self.media_ready = False
        self.teardown_left = False
        self.timeline = SetupTimeline(info.admitted_ns, forked_ns)
        self.spool = CallSpool.for_call(settings, info, self.started)  # records/spool.py

    # --- the whole call

    def run(self) -> EndReason:
        header = self.header
        header.set(Slot.WORKER_PID, os.getpid())
        header.set(Slot.STARTED_NS, self.timeline.mark("worker_started"))
        header.set(Slot.CALL_STATE, CallState.STARTING)
        header.set(Slot.VOICE_API, VoiceApi.LIVE if self.settings.openai_api == "live" else VoiceApi.REALTIME)
        try:
            self._setup()
            self.spool.setup(self.timeline)  # journaled: a record rebuilt after a crash keeps it
            self.spool.announce(self.timeline.as_ms().get("answered"))  # call.started, to webhooks
            header.set(Slot.CALL_STATE, CallState.ACTIVE)  # media flows both ways
            self.end_reason = self._control_loop()
        except SetupError as exc:
            log.error("call set-up failed: %s", exc)
            self.end_reason = exc.reason
        except Exception:  # a bug must still end the call cleanly: teardown, record
            log.exception("call failed unexpectedly")
            self.end_reason = EndReason.WORKER_CRASHED
        header.set(Slot.CALL_STATE, CallState.ENDING)
        header.set(Slot.END_REASON, self.end_reason)
        try:
            Ending(self).run()  # call_worker/ending.py: fallback or prompt, teardown, record
        finally:
            header.set(Slot.CALL_STATE, CallState.ENDED)
        return self.end_reason

    def _on_fatal(self, message: str) -> None:
        self.fatal_message = message
        self.fatal.set()
        self.main_wake.wake()

    def _turn_finished(self) -> None:
        self._journal_due = True
        self.main_wake.wake()

    def _tool_action(self, action: Action) -> None:
        """(media loop) A tool call the main thread must carry out."""
        self.actions.actions.append(action)
        self.main_wake.wake()

    def event(self, kind: str, detail: dict) -> None:
        """An event of the call's record, from either thread (list.append is atomic). At
        most MAX_EVENTS: a caller who presses keys for an hour must not grow the record,
        the journal and the database without end; past it one `events_dropped` event
        counts the rest."""
        offset_ms = int((time.monotonic_ns() - (self.info.admitted_ns or int(self.started * 1e9))) / 1e6)
        if len(self.events) >= MAX_EVENTS:
            if self._dropped is None:
                log.warning("the call has %d events; the rest are only counted", MAX_EVENTS)
                self._dropped = {"count": 0, "first_kind": kind}
                self.events.append(
                    {"offset_ms": offset_ms, "kind": "events_dropped", "detail": self._dropped}
                )
            self._dropped["count"] += 1
            return
        self.events.append({"offset_ms": offset_ms, "kind": kind, "detail": detail})
        self._journal_due = True
        self.main_wake.wake()

    # --- set-up (docs/architecture.md, "One call, end to end", step 2)

    def _setup(self) -> None:
        settings, info = self.settings, self.info
        try:
            address = rtp_bind_address(settings.local_ip_address, settings.asterisk_host)
        except OSError as exc:
            raise SetupError(
                f"no route to ASTERISK_HOST for RTP ({exc}); set LOCAL_IP_ADDRESS", EndReason.SETUP_FAILED
            ) from None
        self.sock = bind_rtp_socket(address, settings.rtp_port_range)
        local = self.sock.getsockname()
        opened: list = self.opened  # (link, opening id), or the ConnectError

        def open_realtime() -> None:
            try:
                opened.append(self.conversation.connect(timeout=SETUP_OPEN_TIMEOUT))
            except ConnectError as exc:
                opened.append(exc)
            else:
                self.timeline.mark("realtime_open")

        opener = threading.Thread(target=open_realtime, name="realtime-open", daemon=True)
        opener.start()
        self.conversation.start_tools()  # the agent's MCP servers, if any: listed meanwhile
        self.recording = self._start_recording()
        media = self.media = MediaLoop(
            self.sock,
            self.header,
            self.segment.uplink,
            self.playback,
            self.conversation,
            rtp.PAYLOAD_TYPES[settings.audio_format],
            rtp.SILENCE_BYTE[settings.audio_format],
            self.stop,
            self.loop_wake,
            on_quiet=self.main_wake.wake,
            events=self.events_channel,
            priority=settings.media_realtime_priority,
            recording=self.recording,
        )

        def answer(ari: AriRest) -> None:
            ari.answer(info.call_id)
            self.header.set(Slot.ANSWERED_NS, self.timeline.mark("answered"))

        def create_bridge(ari: AriRest) -> None:
            ari.create_bridge(self.ids.bridge(info.call_id), f"callbridge {info.call_id}")
            self.timeline.mark("bridge_created")

        # Answer, externalMedia and the bridge do not depend on each other: set-up waits for
        # the slowest of the three and then addChannel, instead of for four round trips.
        side_requests = [
            self._side_request("ari-answer", answer),
            self._side_request("ari-bridge", create_bridge),
        ]
        try:
            reply = self.ari.external_media(
                settings.ari_app_name,
                self.ids.external_channel(info.call_id),
                host_port(local[0], local[1]),
                settings.audio_format,
                info.call_id,
            )
            variables = (reply or {}).get("channelvars") or {}
            asterisk = (variables["UNICASTRTP_LOCAL_ADDRESS"], int(variables["UNICASTRTP_LOCAL_PORT"]))
            media.asterisk = asterisk
            self.timeline.mark("external_media")
            self._start_thread("media", media.run)  # receives from now on; sends once bridged
            finish_all(side_requests)
            self._add_to_bridge()
        except AriError as exc:
            wait_all(side_requests)  # before teardown: nothing may be created after it
            reason = EndReason.CALLER_HANGUP if exc.status == 404 else EndReason.SETUP_FAILED
            opener.join(timeout=SETUP_OPEN_TIMEOUT + 2)
            raise SetupError(f"Asterisk refused the call set-up: {exc}", reason) from None
        except (KeyError, ValueError, TypeError) as exc:
            wait_all(side_requests)
            opener.join(timeout=SETUP_OPEN_TIMEOUT + 2)
            raise SetupError(
                f"externalMedia reply without a usable address: {exc!r}", EndReason.SETUP_FAILED
            ) from None
        except BaseException:  # a bug: teardown follows, and must not race a request in flight
            wait_all(side_requests)
            raise
        media.start_sending()
        self.rusage_bridged = resource.getrusage(resource.RUSAGE_SELF)  # set-up's share (benchmarks)
        self.media_ready = True
        self.header.set(Slot.MEDIA_READY_NS, self.timeline.mark("bridged"))
        log.info(
            "media ready %.1f ms after admission: RTP %s:%d <-> Asterisk %s:%d",
            self.timeline.as_ms()["bridged"],
            local[0],
            local[1],
            *asterisk,
        )
        opener.join(timeout=SETUP_OPEN_TIMEOUT + 2)
        outcome = opened[0] if opened else ConnectError("open timed out", False)
        if isinstance(outcome, ConnectError) and not outcome.fatal:
            try:
                outcome = self.conversation.connect(timeout=RECONNECT_OPEN_TIMEOUT)  # one more try
            except ConnectError as again:
                outcome = again
        if isinstance(outcome, ConnectError):
            self.conversation.count_error(outcome.code)  # (no session yet: no other writer)
            self.header.set(Slot.REALTIME_STATE, RealtimeState.FAILED)
            self._on_fatal(str(outcome))
            raise SetupError(str(outcome), EndReason.REALTIME_FAILED)
        self.opened = []
        self.conversation.begin(*outcome, greet=True)

    def _start_recording(self) -> Recording | None:
        """The call's recording, when it is to be recorded; a file that cannot be opened
        (a full disk, permissions) is said, counted (RECORDING_STATE), and the call goes on."""
        if not self.settings.record_calls:
            return None
        recording = Recording(
            self.settings.recordings_path,
            self.info.call_id,
            self.spool.started_at,
            self.settings.audio_format,
            self.header,
        )
        try:
            recording.start()
        except OSError as exc:
            log.warning("cannot record the call (it goes on unrecorded): %s", exc)
            self.header.set(Slot.RECORDING_STATE, RecordingState.FAILED)
            return None
        return recording

    def _side_request(self, name: str, request) -> SideRequest:
        settings = self.settings
        ari = AriRest.for_settings(settings)
        return SideRequest(name, ari, request)

    def _add_to_bridge(self) -> None:
        members = [self.info.call_id, self.ids.external_channel(self.info.call_id)]
        for attempt in range(ADD_TO_BRIDGE_ATTEMPTS):
            try:
                self.ari.add_channels(self.ids.bridge(self.info.call_id), members)
                return
            except AriError as exc:
                # 422: the externalMedia channel is not in Stasis yet (its StasisStart lags,
                # by a few ms on a real Asterisk): a short retry keeps set-up short.
                if exc.status != 422 or attempt == ADD_TO_BRIDGE_ATTEMPTS - 1:
                    raise
                self.timeline.bridge_retries += 1
                time.sleep(0.01)

    def _start_thread(self, name: str, target) -> None:
        thread = threading.Thread(target=self._guard(target, name), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _guard(self, target, name: str):
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("%s thread crashed; ending the call", name)
                self._on_fatal(f"{name} thread crashed")

        return run

    # --- the control loop

    def _control_loop(self) -> EndReason:
        header, settings = self.header, self.settings
        goodbye_deadline = 0.0
        goodbye_reason = EndReason.NONE
        # A limit reached while the agent speaks: the goodbye waits for the end of the reply
        # (a caller cut off mid-sentence hears a fault, not a polite end), up to REPLY_GRACE.
        limit: tuple[EndReason, str, float] | None = None
        call_deadline = self.started + settings.max_call_seconds if settings.max_call_seconds else None
        while True:
            now = time.monotonic()
            if self._journal_due:
                self._journal_due = False
                self.spool.journal(self.conversation.transcript, self.conversation.usage)
                self._journal_events()
            # The supervisor's death comes as SIGTERM (process.py): tell it from a shutdown.
            if self.supervisor_pid is not None and os.getppid() != self.supervisor_pid:
                log.error("supervisor is gone; ending the call")
                return EndReason.SUPERVISOR_GONE
            requested = header.get(Slot.END_REQUEST)
            if requested:
                return EndReason(requested)
            if self.fatal.is_set():
                return EndReason.REALTIME_FAILED
            playing = self.playback.is_playing()
            wake_at: list[float] = []
            # The agent's tool calls (call_worker/agent_actions.py) come before the limits.
            speaking = self.conversation.agent_busy() or playing
            step = self.actions.step(now, bool(goodbye_reason) or limit is not None, speaking)
            if step.transferred:
                return EndReason.TRANSFERRED
            if step.end:  # like a limit: the reply playing finishes, then the goodbye
                limit = (EndReason.AGENT_HANGUP, proto.GOODBYE_AGENT, now + REPLY_GRACE)
            if step.wake_at is not None:
                wake_at.append(step.wake_at)
            if goodbye_reason:
                said = self.conversation.goodbye_done.is_set() and not playing
                if said or now >= goodbye_deadline:
                    return goodbye_reason
                wake_at.append(goodbye_deadline)
            elif limit is None:
                idle_deadline = self._idle_deadline(now, playing)
                if call_deadline is not None and now >= call_deadline and not self.actions.busy:
                    # (a transfer in progress is let finish: bounded by its own deadlines)
                    log.info("call reached MAX_CALL_SECONDS=%d", settings.max_call_seconds)
                    limit = (EndReason.MAX_CALL_SECONDS, proto.GOODBYE_TIME_LIMIT, now + REPLY_GRACE)
                elif idle_deadline is not None and now >= idle_deadline:
                    log.info("nobody spoke for IDLE_TIMEOUT_SECONDS=%d", settings.idle_timeout_seconds)
                    limit = (EndReason.IDLE_TIMEOUT, proto.GOODBYE_IDLE, now + REPLY_GRACE)
                else:
                    wake_at += [t for t in (call_deadline, idle_deadline) if t is not None]
                if limit is not None and playing:
                    log.info("letting the reply finish (at most %.0f s) before the goodbye", REPLY_GRACE)
            if limit is not None and not goodbye_reason:
                reason, instructions, reply_deadline = limit
                if not playing or now >= reply_deadline:
                    log.info("saying goodbye (%s)", reason.name.lower())
                    goodbye_reason, goodbye_deadline = reason, now + GOODBYE_LIMIT
                    self.conversation.say_goodbye(instructions)
                    wake_at.append(goodbye_deadline)
                else:
                    wake_at.append(reply_deadline)
            self._sleep(min(wake_at) - time.monotonic() if wake_at else None)

    def _journal_events(self) -> None:
        new = self.events[self._events_journaled :]
        if new:
            self._events_journaled += len(new)
            self.spool.events(new)

    def _idle_deadline(self, now: float, playing: bool) -> float | None:
        """When the call becomes idle if nobody speaks and nothing plays until then (never
        while a transfer rings: a caller waiting in silence is not idle)."""
        idle = self.settings.idle_timeout_seconds
        if not idle or self.actions.busy:
            return None
        if playing:
            return now + idle  # re-checked when the reply ends (the media loop wakes us)
        speech = self.header.get(Slot.LAST_SPEECH_NS) / 1e9
        last_reply = self.media.last_reply_frame if self.media is not None else 0.0
        return max(self.started, speech, last_reply) + idle

    def _sleep(self, timeout: float | None) -> None:
        """Until a wake-up (a signal, another thread) or `timeout`."""
        if timeout is not None and timeout <= 0:
            return
        try:
            select.select([self.main_wake], [], [], timeout)
        except InterruptedError:
            pass
        self.main_wake.drain()
