"""The call's media loop: one thread that owns the RTP socket and the voice session.

It sleeps in select() until the next 20 ms send deadline, a packet from Asterisk, or a
wake-up from another thread, so a call costs about two wake-ups per 20 ms (one packet in,
one frame out) whatever the protocol does; every thread hand-off it replaced cost one more.

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

from call_worker import rtp
from call_worker.conversation import Conversation
from call_worker.playback import Playback
from call_worker.wake import Waker
from shm_ring import ByteRing, CallHeader, Slot

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.020
RESCHEDULE_AFTER = 0.010  # lateness beyond which the schedule restarts (no gap < 10 ms)
_REJECT_SLOTS = {
    rtp.Reject.MALFORMED: Slot.REJECTED_MALFORMED,
    rtp.Reject.PAYLOAD_TYPE: Slot.REJECTED_PAYLOAD_TYPE,
    rtp.Reject.SIZE: Slot.REJECTED_SIZE,
}


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
    ) -> None:
        self.sock = sock
        self.header = header
        self.uplink = uplink
        self.playback = playback
        self.downlink = playback.ring
        self.conversation = conversation
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
        self._send_errors = 0

    def start_sending(self) -> None:
        self.sending = True
        self.wake.wake()

    def run(self) -> None:
        self.sock.setblocking(False)
        rtp_fd, wake_fd = self.sock.fileno(), self.wake.fileno()
        conversation, stop = self.conversation, self.stop
        monotonic = time.monotonic
        deadline: float | None = None
        while not stop.is_set():
            if deadline is None and self.sending:
                deadline = monotonic()
            now = monotonic()
            if deadline is not None and now >= deadline:
                conversation.tick(now)
                deadline = self._send_frame(deadline)
                continue
            reads = [rtp_fd, wake_fd]
            writes = [conversation.link_fd] if conversation.wants_write else []
            readable, writable, _ = select.select(
                reads, writes, [], None if deadline is None else deadline - now
            )
            if rtp_fd in readable:
                self._receive()
            if wake_fd in readable:
                self.wake.drain()
            if writable:
                conversation.flush()

    # --- in

    def _receive(self) -> None:
        header, uplink = self.header, self.uplink
        buffer = bytearray(2048)
        view = memoryview(buffer)
        got = False
        while True:
            try:
                size, source = self.sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if self.stop.is_set():
                    return
                raise
            if source[:2] != self.asterisk:  # IPv6 sources carry flow info and scope id
                header.add(Slot.REJECTED_SOURCE)
                self._note(
                    "source",
                    f"dropping RTP from {source[0]}:{source[1]} (only Asterisk's "
                    f"{self.asterisk} is accepted)",
                )
                continue
            parsed = rtp.parse(view[:size], self.payload_type)
            if isinstance(parsed, rtp.Reject):
                header.add(_REJECT_SLOTS[parsed])
                self._note(parsed.value, f"dropping RTP packet: {parsed.value}")
                continue
            offset, length, _sequence = parsed
            if uplink.write_all(view[offset : offset + length]):
                header.add(Slot.FRAMES_IN)
                now = time.monotonic_ns()
                header.set(Slot.LAST_FRAME_IN_NS, now)
                if header.get(Slot.FIRST_FRAME_IN_NS) == 0:
                    header.set(Slot.FIRST_FRAME_IN_NS, now)
                got = True
            else:
                header.add(Slot.UPLINK_OVERRUNS)
        if got:
            self.conversation.send_uplink()

    def _note(self, reason: str, message: str) -> None:
        """Log the first rejection of each kind; the counters carry the rest."""
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning("%s (further ones are only counted)", message)

    # --- out

    def _send_frame(self, deadline: float) -> float:
        """Send the frame due at `deadline`; return the next deadline."""
        header, downlink, playback, packetizer = self.header, self.downlink, self.playback, self.packetizer
        payload = packetizer.payload_area()
        frame = rtp.FRAME_BYTES
        header.set(Slot.HEARTBEAT_MEDIA, time.monotonic_ns())
        ready = downlink.readable()
        if ready >= frame or (ready > 0 and not playback.more_audio_expected):
            got = downlink.read_into(payload, frame)
            if got < frame:  # the reply's last partial frame: pad with silence
                payload[got:frame] = self.silence[: frame - got]
            if not self._talking:
                packetizer.start_talkspurt()
                self._talking = True
                if header.get(Slot.FIRST_AUDIO_OUT_NS) == 0:
                    header.set(Slot.FIRST_AUDIO_OUT_NS, time.monotonic_ns())
            self.last_reply_frame = time.monotonic()
            header.add(Slot.FRAMES_OUT)
        else:
            if self._talking and playback.more_audio_expected:
                header.add(Slot.UNDERRUNS)  # the reply is late: the caller hears a gap
            elif self._talking:
                self._talking = False
                self.on_quiet()
            payload[:frame] = self.silence
            header.add(Slot.SILENCE_FRAMES_OUT)
        try:
            self.sock.sendto(packetizer.finish(), self.asterisk)
        except OSError as exc:
            self._send_errors += 1
            errors = self._send_errors
            if errors in (1, 10, 100) or errors % 1000 == 0:  # not 50 lines a second
                log.warning("RTP send to %s failed (%d times so far): %s", self.asterisk, errors, exc)
        # Lateness is measured once the packet is out, so a delay anywhere before it
        # (a late wake-up, the GIL, a stalled vCPU inside the syscall) counts.
        lateness = time.monotonic() - deadline
        if lateness > RESCHEDULE_AFTER:
            # Keeping the old schedule would send the next frame less than 10 ms after
            # this one (a burst); restarting the schedule here costs a little drift, once.
            header.add(Slot.LATE_TICKS)
            header.raise_to(Slot.MAX_LATENESS_US, int(lateness * 1e6))
            deadline += lateness
        return deadline + FRAME_SECONDS
