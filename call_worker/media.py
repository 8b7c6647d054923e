"""The two RTP threads of a call.

rtp-in: receive, accept only Asterisk's address and port, validate, write the payload
to the uplink ring and wake the realtime sender. Every rejected datagram is counted by
reason in the call header and costs nothing else.

rtp-out: every 20 ms by a monotonic deadline, send one 160-byte frame: reply audio from
the downlink ring, else silence (a steady stream keeps phones' jitter buffers and NAT
bindings happy). A late tick never causes a catch-up burst, because a burst would overflow
the phone's jitter buffer (Asterisk forwards our frames without retiming): after a stall
of more than half a frame, the frame goes out late and the schedule restarts from then.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from call_worker import rtp
from call_worker.playback import Playback
from shm_ring import ByteRing, CallHeader, Slot

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.020
RESCHEDULE_AFTER = 0.010  # lateness beyond which the schedule restarts (no gap < 10 ms)
_REJECT_SLOTS = {
    rtp.Reject.MALFORMED: Slot.REJECTED_MALFORMED,
    rtp.Reject.PAYLOAD_TYPE: Slot.REJECTED_PAYLOAD_TYPE,
    rtp.Reject.SIZE: Slot.REJECTED_SIZE,
}


class RtpIn:
    def __init__(
        self,
        sock: socket.socket,
        header: CallHeader,
        uplink: ByteRing,
        payload_type: int,
        wake: threading.Event,
        stop: threading.Event,
    ) -> None:
        self.sock = sock
        self.header = header
        self.uplink = uplink
        self.payload_type = payload_type
        self.wake = wake
        self.stop = stop
        self.asterisk: tuple[str, int] | None = None  # set once externalMedia answers
        self._logged_reasons: set[str] = set()

    def run(self) -> None:
        header, uplink, wake = self.header, self.uplink, self.wake
        buffer = bytearray(2048)
        view = memoryview(buffer)
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            header.set(Slot.HEARTBEAT_RTP_IN, time.monotonic_ns())
            try:
                size, source = self.sock.recvfrom_into(buffer)
            except TimeoutError:
                continue
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
                wake.set()
            else:
                header.add(Slot.UPLINK_OVERRUNS)

    def _note(self, reason: str, message: str) -> None:
        """Log the first rejection of each kind; the counters carry the rest."""
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning("%s (further ones are only counted)", message)


class RtpOut:
    def __init__(
        self,
        sock: socket.socket,
        header: CallHeader,
        playback: Playback,
        payload_type: int,
        silence_byte: int,
        stop: threading.Event,
    ) -> None:
        self.sock = sock
        self.header = header
        self.playback = playback
        self.downlink = playback.ring
        self.packetizer = rtp.RtpPacketizer(payload_type)
        self.silence = bytes([silence_byte]) * rtp.FRAME_BYTES
        self.stop = stop
        self.destination: tuple[str, int] | None = None

    def run(self) -> None:
        header, downlink, playback = self.header, self.downlink, self.playback
        packetizer = self.packetizer
        payload = packetizer.payload_area()
        frame = rtp.FRAME_BYTES
        talking = False
        send_errors = 0
        deadline = time.monotonic()
        while not self.stop.is_set():
            deadline += FRAME_SECONDS
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            header.set(Slot.HEARTBEAT_RTP_OUT, time.monotonic_ns())
            ready = downlink.readable()
            if ready >= frame or (ready > 0 and not playback.more_audio_expected):
                got = downlink.read_into(payload, frame)
                if got < frame:  # the reply's last partial frame: pad with silence
                    payload[got:frame] = self.silence[: frame - got]
                if not talking:
                    packetizer.start_talkspurt()
                    talking = True
                    if header.get(Slot.FIRST_AUDIO_OUT_NS) == 0:
                        header.set(Slot.FIRST_AUDIO_OUT_NS, time.monotonic_ns())
                header.add(Slot.FRAMES_OUT)
            else:
                if talking and playback.more_audio_expected:
                    header.add(Slot.UNDERRUNS)  # the reply is late: the caller hears a gap
                else:
                    talking = False
                payload[:frame] = self.silence
                header.add(Slot.SILENCE_FRAMES_OUT)
            try:
                self.sock.sendto(packetizer.finish(), self.destination)
            except OSError as exc:
                if self.stop.is_set():
                    return
                send_errors += 1
                if send_errors in (1, 10, 100) or send_errors % 1000 == 0:  # not 50 lines a second
                    log.warning(
                        "RTP send to %s failed (%d times so far): %s", self.destination, send_errors, exc
                    )
            # Lateness is measured once the packet is out, so a delay anywhere before it
            # (a late wake-up, the GIL, a stalled vCPU inside the syscall) counts.
            lateness = time.monotonic() - deadline
            if lateness > RESCHEDULE_AFTER:
                # Keeping the old schedule would send the next frame less than 10 ms after
                # this one (a burst); restarting the schedule here costs a little drift, once.
                header.add(Slot.LATE_TICKS)
                header.raise_to(Slot.MAX_LATENESS_US, int(lateness * 1e6))
                deadline += lateness
