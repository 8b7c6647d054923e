"""The call's media loop: one thread that owns the RTP socket and the voice session.

It sleeps in select() until the next 20 ms send deadline, a packet from Asterisk, or a
wake-up from another thread, so a call costs at most two wake-ups per 20 ms (one packet
in, one frame out) whatever the protocol does; every thread hand-off it replaced cost one
more. While the caller's stream is steady it costs one: the send schedule follows the
caller's (`_follow`), and the frame leaves with the packet's wake-up.

- In: accept only Asterisk's address and port, validate, write the payload to the uplink
  ring and send it on to the voice service at once (the ring is the backlog only while a
  new session opens, and its totals are what the supervisor reads). Every rejected
  datagram is counted by reason in the call header and costs nothing else.
- Tick: first whatever the session's link brought (read here, not when it arrives: a
  frame cannot leave before its tick anyway, so this costs no latency and no wake-up),
  then one 160-byte frame: reply audio from the downlink ring, else silence (a steady
  stream keeps phones' jitter buffers and NAT bindings happy).
- A late tick never causes a catch-up burst, because a burst would overflow the phone's
  jitter buffer (Asterisk forwards our frames without retiming): after a stall of more
  than RESCHEDULE_AFTER, the frame goes out late and the schedule restarts from then.

The socket stays unconnected: a connected UDP socket would save the kernel a source
lookup per packet but drop foreign packets silently, and the rejected-source counter is
how an operator finds a misrouted stream (docs/performance.md has the measurement).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable

from call_worker import media_priority, rtp
from call_worker.conversation import Conversation
from call_worker.frame_trace import FrameTrace
from call_worker.playback import Playback
from call_worker.recording import Recording
from call_worker.wake import Waker
from shm_ring import ByteRing, CallHeader, Slot

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.020
RESCHEDULE_AFTER = 0.010  # lateness beyond which the schedule restarts (no gap < 10 ms)
# Following the caller's stream (MediaLoop._follow): a frame due within FOLLOW_JOIN of a
# caller packet's arrival leaves with it; the schedule is steered, by at most FOLLOW_SLEW
# per frame, toward deadlines FOLLOW_TARGET after the packets.
FOLLOW_JOIN = 0.0005
FOLLOW_TARGET = 0.00025
FOLLOW_SLEW = 0.0001
LEAD_BUCKETS = 64  # the playout lead's histogram: 20 ms buckets, the last one "more"
_REJECT_SLOTS = {
    rtp.Reject.MALFORMED: int(Slot.REJECTED_MALFORMED),
    rtp.Reject.PAYLOAD_TYPE: int(Slot.REJECTED_PAYLOAD_TYPE),
    rtp.Reject.SIZE: int(Slot.REJECTED_SIZE),
}
# Slot numbers as plain ints: the loop indexes CallHeader.slots directly (shm_ring/header.py).
_FRAMES_IN, _FIRST_FRAME_IN_NS, _UPLINK_OVERRUNS, _REJECTED_SOURCE = (
    int(Slot.FRAMES_IN),
    int(Slot.FIRST_FRAME_IN_NS),
    int(Slot.UPLINK_OVERRUNS),
    int(Slot.REJECTED_SOURCE),
)
_HEARTBEAT_MEDIA, _FRAMES_OUT, _SILENCE_FRAMES_OUT, _UNDERRUNS = (
    int(Slot.HEARTBEAT_MEDIA),
    int(Slot.FRAMES_OUT),
    int(Slot.SILENCE_FRAMES_OUT),
    int(Slot.UNDERRUNS),
)
_FIRST_AUDIO_OUT_NS, _LATE_TICKS, _MAX_LATENESS_US = (
    int(Slot.FIRST_AUDIO_OUT_NS),
    int(Slot.LATE_TICKS),
    int(Slot.MAX_LATENESS_US),
)


class MediaLoop:
    def __init__(
        self,
        sock: socket.socket,
        header: CallHeader,
        uplink: ByteRing,
        playback: Playback,
        conversation: Conversation,
        payload_type: int,
        silence_byte: int,
        stop: threading.Event,
        wake: Waker,
        on_quiet: Callable[[], None] = lambda: None,
        events: socket.socket | None = None,
        priority: int = 0,
        recording: Recording | None = None,
    ) -> None:
        self.sock = sock
        self.recording = recording  # handed each caller packet and each frame sent (call_worker/recording.py)
        self.priority = priority  # MEDIA_REALTIME_PRIORITY (call_worker/media_priority.py)
        self.events = events  # the supervisor's messages (key presses): read here, between frames
        self.header = header
        self.uplink = uplink
        self.playback = playback
        self.downlink = playback.ring
        self.conversation = conversation
        self.voice = conversation.voice  # our caller-voice detection (GPT-Live), told what the agent says
        self.payload_type = payload_type
        self.packetizer = rtp.RtpPacketizer(payload_type)
        self.silence = bytes([silence_byte]) * rtp.FRAME_BYTES
        self.stop = stop
        self.wake = wake
        self.on_quiet = on_quiet  # a reply finished playing (the main thread may be waiting)
        self.asterisk: tuple[str, int] | None = None  # set once externalMedia answers
        self.sending = False  # from the bridge on
        self.last_reply_frame = 0.0  # monotonic time of the last reply frame sent
        self._logged_reasons: set[str] = set()
        self._talking = False
        self._heard = False  # the first caller frame arrived
        self._send_errors = 0
        self._sent_at = 0.0  # monotonic time the last frame left
        self._steered = False  # the schedule moved for a packet since that frame
        self._woke = 0.0  # monotonic time the last select() returned
        self.trace = FrameTrace.from_env()  # None unless a benchmark asks (call_worker/frame_trace.py)
        self._slots = header.slots
        self._view = memoryview(bytearray(2048))
        self._payload = self.packetizer.payload_area()
        # The reply's audio queued behind each reply frame sent: how far playback runs behind
        # the service (GPT-Live keeps talking until it decides to stop: a long queue is heard
        # after the caller has cut in, unless flushed). One increment per reply frame.
        self.lead = [0] * LEAD_BUCKETS
        self.lead_max = 0  # bytes

    def start_sending(self) -> None:
        self.sending = True
        self.wake.wake()

    def run(self) -> None:
        problem = media_priority.raise_to(self.priority)  # this thread only
        if problem is not None:  # the supervisor said so once, at start
            log.debug("media thread at normal priority: %s", problem)
        try:
            self._run()
        finally:
            if self.trace is not None:
                self.trace.close()

    def _run(self) -> None:
        self.sock.setblocking(False)
        rtp_fd, wake_fd = self.sock.fileno(), self.wake.fileno()
        events_fd = self.events.fileno() if self.events is not None else -1
        watched = [rtp_fd, wake_fd] if events_fd < 0 else [rtp_fd, wake_fd, events_fd]
        conversation, stop, wake = self.conversation, self.stop, self.wake
        monotonic, wait = time.monotonic, select.select
        deadline: float | None = None
        while not stop.is_set():
            if deadline is None and self.sending:
                deadline = monotonic()
            now = monotonic()
            if deadline is not None and now >= deadline:
                conversation.tick(now)
                deadline = self._send_frame(deadline, now)
                continue
            link = conversation.link
            writes = (
                [link]
                if link is not None and link.out and link.closed is None and not link.wants_read
                else []
            )
            readable, writable, _ = wait(watched, writes, [], None if deadline is None else deadline - now)
            self._woke = monotonic()
            if readable:
                if readable[0] == rtp_fd and self._receive() and deadline is not None:
                    deadline = self._follow(deadline)
                if wake_fd in readable:
                    wake.drain()
                if events_fd in readable and not conversation.call_events(self.events, monotonic()):
                    watched = [rtp_fd, wake_fd]  # the supervisor's end closed: it would read ready for ever
            if writable:
                conversation.flush()

    # --- in

    def _receive(self) -> bool:
        """One datagram (select() said one is there; more make it return again at once).
        True when it was the caller's audio."""
        slots, view = self._slots, self._view
        try:
            size, source = self.sock.recvfrom_into(view)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            if self.stop.is_set():
                return False
            raise
        if source[:2] != self.asterisk:  # IPv6 sources carry flow info and scope id
            slots[_REJECTED_SOURCE] += 1
            self._note(
                "source",
                f"dropping RTP from {source[0]}:{source[1]} (only Asterisk's {self.asterisk} is accepted)",
            )
            return False
        parsed = rtp.parse(view[:size], self.payload_type)
        if parsed.__class__ is rtp.Reject:
            slots[_REJECT_SLOTS[parsed]] += 1
            self._note(parsed.value, f"dropping RTP packet: {parsed.value}")
            return False
        offset, length, _sequence = parsed
        recording = self.recording
        if recording is not None and recording.on:  # what the caller said, even if the ring is full
            recording.caller(view[offset : offset + length])
        if self.uplink.write_all(view[offset : offset + length]):
            slots[_FRAMES_IN] += 1
            if not self._heard:
                self._heard = True
                slots[_FIRST_FRAME_IN_NS] = time.monotonic_ns()
            self.conversation.send_uplink()
        else:
            slots[_UPLINK_OVERRUNS] += 1
        return True

    def _follow(self, deadline: float) -> float:
        """(a caller packet just arrived) Steer the send schedule toward the caller's, and
        send the next frame now if it is due within FOLLOW_JOIN: one wake-up for both.

        Asterisk relays the caller's frames every 20 ms, so once our schedule sits just after
        theirs, each packet's wake-up also sends our frame, and a call costs one wake-up per
        20 ms instead of two. The schedule moves by at most FOLLOW_SLEW per frame, so gaps
        stay within that of 20 ms however the caller's stream jitters or drifts; a frame sent
        with the packet leaves at most FOLLOW_JOIN early. Returns the next deadline."""
        now = time.monotonic()
        # How far before the deadline the packet came, against where we want it, wrapped
        # into one frame either way (a packet just after a tick is late, not 20 ms early).
        error = (deadline - now - FOLLOW_TARGET + FRAME_SECONDS / 2) % FRAME_SECONDS - FRAME_SECONDS / 2
        if not self._steered:  # once per frame: packets that come in a bunch steer once
            self._steered = True
            deadline -= max(-FOLLOW_SLEW, min(FOLLOW_SLEW, error))
        # Never closer than FOLLOW_JOIN short of 20 ms to the frame before (which may have
        # left late): a joined frame bends one gap by at most that, and never makes a burst.
        if deadline - now <= FOLLOW_JOIN and now - self._sent_at >= FRAME_SECONDS - FOLLOW_JOIN:
            self.conversation.tick(now)
            return self._send_frame(deadline, now, followed=True)
        return deadline

    def playout_lead(self) -> dict:
        """The lead's p50, p99 (upper bucket edges) and max, in ms, over the reply frames sent."""
        frames = sum(self.lead)
        if not frames:
            return {"frames": 0}

        def upper(share: float) -> int:
            seen = 0
            for bucket, count in enumerate(self.lead):
                seen += count
                if seen >= share * frames:
                    return (bucket + 1) * 20
            return LEAD_BUCKETS * 20

        return {"frames": frames, "p50_ms": upper(0.5), "p99_ms": upper(0.99), "max_ms": self.lead_max // 8}

    def _note(self, reason: str, message: str) -> None:
        """Log the first rejection of each kind; the counters carry the rest."""
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning("%s (further ones are only counted)", message)

    # --- out

    def _send_frame(self, deadline: float, ticked: float, followed: bool = False) -> float:
        """Send the frame due at `deadline` (its tick began at `ticked`; `followed`: with a
        caller packet's wake-up); return the next deadline."""
        trace = self.trace
        entered = time.monotonic() if trace is not None else 0.0
        slots, downlink, playback, packetizer = self._slots, self.downlink, self.playback, self.packetizer
        payload = self._payload
        frame = rtp.FRAME_BYTES
        slots[_HEARTBEAT_MEDIA] = int(deadline * 1e9)  # time.monotonic's clock, without another read
        ready = downlink.readable()
        if ready >= frame or (ready > 0 and playback.open_response is None):
            got = downlink.read_into(payload, frame)
            queued = ready - got
            self.lead[min(LEAD_BUCKETS - 1, queued // frame)] += 1
            if queued > self.lead_max:
                self.lead_max = queued
            if got < frame:  # the reply's last partial frame: pad with silence
                payload[got:frame] = self.silence[: frame - got]
            if self.voice is not None:
                self.voice.agent_frame(payload[:frame])
            if not self._talking:
                packetizer.start_talkspurt()
                self._talking = True
                if slots[_FIRST_AUDIO_OUT_NS] == 0:
                    slots[_FIRST_AUDIO_OUT_NS] = time.monotonic_ns()
            self.last_reply_frame = deadline
            slots[_FRAMES_OUT] += 1
        else:
            if self._talking:
                if playback.open_response is not None:
                    slots[_UNDERRUNS] += 1  # the reply is late: the caller hears a gap
                else:
                    self._talking = False
                    self.on_quiet()
            payload[:frame] = self.silence
            slots[_SILENCE_FRAMES_OUT] += 1
            if self.voice is not None:
                self.voice.agent_frame(b"")
        self._sent_at = time.monotonic()
        self._steered = False
        try:
            self.sock.sendto(packetizer.finish(), self.asterisk)
        except OSError as exc:
            self._send_errors += 1
            errors = self._send_errors
            if errors in (1, 10, 100) or errors % 1000 == 0:  # not 50 lines a second
                log.warning("RTP send to %s failed (%d times so far): %s", self.asterisk, errors, exc)
        # Lateness is measured once the packet is out, so a delay anywhere before it
        # (a late wake-up, the GIL, a stalled vCPU inside the syscall) counts.
        sent = time.monotonic()
        lateness = sent - deadline
        if trace is not None:
            trace.frame(deadline, self._woke, ticked, entered, self._sent_at, sent, followed)
        recording = self.recording
        if recording is not None and recording.on:  # once the frame is out: it delays nothing
            recording.agent(payload[:frame])
        if lateness > RESCHEDULE_AFTER:
            # Keeping the old schedule would send the next frame less than 10 ms after
            # this one (a burst); restarting the schedule here costs a little drift, once.
            slots[_LATE_TICKS] += 1
            if lateness * 1e6 > slots[_MAX_LATENESS_US]:
                slots[_MAX_LATENESS_US] = int(lateness * 1e6)
            deadline += lateness
        return deadline + FRAME_SECONDS
