"""The simulated callers' audio, as Asterisk's side of an externalMedia channel sees it.

Each `CallerLeg` owns the UDP socket Asterisk would own (its UNICASTRTP_LOCAL_ADDRESS/PORT).
Once the call is bridged, the leg sends the caller's voice from a script (speech as tones,
silences) one 20 ms frame at a time, like a phone whose frames Asterisk forwards without
retiming, and records every packet it receives with its arrival time. Inbound packets are
accepted only from the address and port given as external_host (Asterisk's strict RTP).

One `MediaEngine` thread paces every leg's sending and one thread receives for all legs,
so hundreds of simulated callers stay cheap. Each leg sends at its own phase of the 20 ms
period (in PHASE_STEP steps), as phones do: their clocks are not in step, so Asterisk hands
a service their frames spread over the period. Sending every leg's frame at the same
instant (`in_step`, the simulator's `--callers-in-step`) makes every worker wake at once,
a herd no real PBX produces; it is kept to compare with figures measured that way.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from simulators import g711

_RTP = struct.Struct("!BBHII")
# Linux's SO_TIMESTAMPNS (not exported by the socket module): the kernel stamps each
# datagram on arrival, so measured gaps do not include this process's scheduling delay.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
TICK = 0.020
FRAME = 160
PHASE_STEP = 0.001  # the legs' phases are whole ms of the period: at most 20 wake-ups per tick


@dataclass
class Step:
    kind: str  # "say" | "silence" | "mute" | "hangup"
    ms: int = 0
    frequency: float = 440.0


def parse_script(raw: list[dict]) -> list[Step]:
    """[{"say": 1500}, {"silence": 800}, {"say": 1000, "hz": 600}, {"mute": 2000}, {"hangup": true}]

    `mute`: no packets at all for that long, as from a muted or silence-suppressing phone
    (Asterisk then relays nothing either). `{"echo_db": -20}` anywhere: the phone sends back
    what it receives, that much quieter, mixed into its own audio (`echo_gain`)."""
    steps = []
    for entry in raw:
        if "say" in entry:
            steps.append(Step("say", int(entry["say"]), float(entry.get("hz", 440.0))))
        elif "silence" in entry:
            steps.append(Step("silence", int(entry["silence"])))
        elif "mute" in entry:
            steps.append(Step("mute", int(entry["mute"])))
        elif entry.get("hangup"):
            steps.append(Step("hangup"))
        elif "echo_db" in entry:
            continue  # the leg's, not a step (echo_gain)
        else:
            raise ValueError(f"unknown script step {entry!r}")
    return steps


def render(steps: list[Step], law: str) -> tuple[bytes, int | None, list[tuple[int, int]], list[range]]:
    """(audio, frame index at which to hang up or None, [(first frame, frames) of each
    utterance], the frames not sent)."""
    audio = bytearray()
    hangup_frame = None
    utterances = []
    mutes = []
    for step in steps:
        if step.kind == "say":
            utterances.append((len(audio) // FRAME, step.ms // 20))
            audio += g711.tone(step.ms, step.frequency, law=law)
        elif step.kind in ("silence", "mute"):
            if step.kind == "mute":
                mutes.append(range(len(audio) // FRAME, len(audio) // FRAME + step.ms // 20))
            audio += g711.silence(step.ms, law)
        elif step.kind == "hangup":
            hangup_frame = len(audio) // FRAME
            break
    audio += b"" if len(audio) % FRAME == 0 else g711.silence(1, law)[: FRAME - len(audio) % FRAME]
    return bytes(audio), hangup_frame, utterances, mutes


@dataclass
class Received:
    arrival: float
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload_type: int
    length: int
    level: float


@dataclass
class CallerLeg:
    call_id: str
    law: str
    payload_type: int
    audio: bytes
    hangup_frame: int | None
    utterances: list[tuple[int, int]]
    sock: socket.socket = field(default=None)  # type: ignore[assignment]
    remote: tuple[str, int] | None = None
    frames_sent: int = 0
    send_times: list[float] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    received_audio: bytearray = field(default_factory=bytearray)
    foreign_packets: int = 0
    media_started: float | None = None
    on_hangup: object = None  # callable set by the ARI simulator
    active: bool = True
    tag: bytes = b""  # written over the start of the first frame: lets benchmarks match streams
    loop: bool = False  # a transfer destination: its audio repeats for as long as it sends
    phase: float = 0.0  # when in each 20 ms period its frame leaves (MediaEngine sets it)
    mutes: list = field(default_factory=list)  # ranges of script frames not sent ("mute")
    frames_muted: int = 0
    echo: float = 0.0  # > 0: the received audio is sent back at this gain (a phone's echo)

    @property
    def position(self) -> int:
        """The script's frame due now: those sent and those muted."""
        return self.frames_sent + self.frames_muted

    def muted(self) -> bool:
        position = self.position
        return any(position in frames for frames in self.mutes)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass
        rng = random.Random()
        self._seq = rng.getrandbits(16)
        self._ts = rng.getrandbits(32)
        self._ssrc = rng.getrandbits(32)
        self._silence = g711.silence(20, self.law)

    @property
    def local(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def next_packet(self) -> bytes:
        start = self.position * FRAME
        if self.loop:
            start %= len(self.audio)
        payload = self.audio[start : start + FRAME] if start < len(self.audio) else self._silence
        if self.echo and len(self.received_audio) >= FRAME:
            payload = self._with_echo(payload)
        if self.frames_sent == 0 and self.tag:
            payload = self.tag[:FRAME] + payload[len(self.tag) :]
        first = 0x80 | self.payload_type if self.frames_sent == 0 else self.payload_type
        packet = _RTP.pack(0x80, first, self._seq, self._ts, self._ssrc) + payload
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME) & 0xFFFFFFFF
        return packet

    def _with_echo(self, payload: bytes) -> bytes:
        """The last frame received, at `echo` gain, over the caller's own audio."""
        heard = g711.decode(bytes(self.received_audio[-FRAME:]), self.law)
        own = g711.decode(payload, self.law)
        return g711.encode([a + int(b * self.echo) for a, b in zip(own, heard, strict=True)], self.law)

    def summary(self, include_packets: bool = True) -> dict:
        result = {
            "call_id": self.call_id,
            "ssrc": self._ssrc,
            "local": list(self.local) if self.sock.fileno() >= 0 else None,
            "remote": list(self.remote) if self.remote else None,
            "media_started": self.media_started,
            "frames_sent": self.frames_sent,
            "packets_received": len(self.received),
            "bytes_received": len(self.received_audio),
            "foreign_packets": self.foreign_packets,
            "utterances": self.utterances,
            "active": self.active,
        }
        if include_packets:
            result["sources"] = received_sources(self)
            result["send_times"] = self.send_times
            result["received"] = [
                [r.arrival, r.sequence, r.timestamp, r.ssrc, r.marker, r.payload_type, r.length, r.level]
                for r in self.received
            ]
        return result


# 1 for a code byte whose sample is negative: G.711 keeps the sign in the top bit.
_NEGATIVE = {
    "ulaw": bytes(1 if v < 0 else 0 for v in g711.ULAW_DECODE),
    "alaw": bytes(1 if v < 0 else 0 for v in g711.ALAW_DECODE),
}


def received_sources(leg: CallerLeg, loud: float = 1000.0) -> dict[str, dict]:
    """What reached the leg, per sender (SSRC): packets, loud packets, the first and last
    loud arrival, and the loud audio's frequency from its zero crossings, so that a test can
    tell a transfer destination's tone from our reply audio."""
    sources: dict[str, dict] = {}
    audio: dict[str, bytearray] = {}
    offset = 0
    for packet in leg.received:
        source = sources.setdefault(
            str(packet.ssrc), {"packets": 0, "loud_packets": 0, "first_loud": None, "last_loud": None}
        )
        source["packets"] += 1
        if packet.level >= loud:
            source["loud_packets"] += 1
            source["first_loud"] = source["first_loud"] or packet.arrival
            source["last_loud"] = packet.arrival
            audio.setdefault(str(packet.ssrc), bytearray()).extend(
                leg.received_audio[offset : offset + packet.length]
            )
        offset += packet.length
    for ssrc, source in sources.items():
        signs = bytes(audio.get(ssrc, b"")).translate(_NEGATIVE[leg.law])
        crossings = signs.count(b"\x00\x01") + signs.count(b"\x01\x00")  # neither overlaps itself
        source["hz"] = round(crossings / 2 / (len(signs) / 8000)) if signs else None
    return sources


class MediaEngine:
    """Paces and receives the RTP of every simulated caller leg."""

    def __init__(self, in_step: bool = False) -> None:
        self._in_step = in_step
        self._phases = random.Random(20)  # reproducible from run to run
        self._legs: dict[int, CallerLeg] = {}
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_loop, name="sim-media-send", daemon=True),
            threading.Thread(target=self._receive_loop, name="sim-media-recv", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def add(self, leg: CallerLeg) -> None:
        if not self._in_step:
            leg.phase = self._phases.randrange(round(TICK / PHASE_STEP)) * PHASE_STEP
        with self._lock:
            self._legs[leg.sock.fileno()] = leg
            self._selector.register(leg.sock, selectors.EVENT_READ, leg)
        self._wake_w.send(b"x")

    def remove(self, leg: CallerLeg) -> None:
        with self._lock:
            leg.active = False
            if self._legs.pop(leg.sock.fileno(), None) is not None:
                self._selector.unregister(leg.sock)
                leg.sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        for thread in self._threads:
            thread.join(2)

    def _send_loop(self) -> None:
        period = time.monotonic()
        while not self._stop.is_set():
            period += TICK
            if period - time.monotonic() < -0.1:
                period = time.monotonic()  # badly late: resynchronise, never burst
            hangups = []
            # Every active leg, bridged or not: one bridged while this period runs sends at
            # its phase in it (its remote is read at that moment), not a period later.
            with self._lock:
                legs = [leg for leg in self._legs.values() if leg.active]
            legs.sort(key=lambda leg: leg.phase)
            if not legs:
                time.sleep(max(0.0, period - time.monotonic()))
            due = None
            for leg in legs:
                if leg.phase != due:  # the next phase with legs: sleep until it
                    due = leg.phase
                    delay = period + due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                remote = leg.remote  # read once: a bridge change may unset it meanwhile
                if remote is None:
                    continue
                if leg.hangup_frame is not None and leg.position >= leg.hangup_frame:
                    hangups.append(leg)
                    continue
                if leg.mutes and leg.muted():
                    leg.frames_muted += 1
                    continue
                packet = leg.next_packet()
                now = time.monotonic()
                try:
                    leg.sock.sendto(packet, remote)
                except OSError:
                    continue
                if leg.media_started is None:
                    leg.media_started = now
                leg.send_times.append(now)
                leg.frames_sent += 1
            for leg in hangups:
                leg.hangup_frame = None
                if callable(leg.on_hangup):
                    leg.on_hangup()

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                if key.data is None:
                    self._wake_r.recv(4096)
                    continue
                leg: CallerLeg = key.data
                while True:
                    try:
                        packet, ancillary, _flags, source = leg.sock.recvmsg(2048, 64)
                    except (BlockingIOError, OSError):
                        break
                    now = _arrival_time(ancillary)
                    if source != leg.remote or len(packet) < 12:
                        leg.foreign_packets += 1  # strict RTP: only external_host may send
                        continue
                    first, second, seq, ts, ssrc = _RTP.unpack_from(packet)
                    payload = packet[12:]
                    leg.received.append(
                        Received(
                            now,
                            seq,
                            ts,
                            ssrc,
                            bool(second & 0x80),
                            second & 0x7F,
                            len(payload),
                            round(g711.level(payload, leg.law)),
                        )
                    )
                    leg.received_audio += payload


def _arrival_time(ancillary: list) -> float:
    """The kernel's arrival stamp on the monotonic clock (else the time of reading)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9 + (time.monotonic() - time.time())
    return time.monotonic()


def inject_garbage(leg: CallerLeg, count: int, seed: int) -> int:
    """Send `count` malformed or wrong packets from Asterisk's own address (so they pass the
    source check and test the parser): random bytes, bad versions, bad padding, wrong
    payload types, oversized extensions, empty datagrams."""
    rng = random.Random(seed)
    sent = 0
    for index in range(count):
        kind = index % 6
        if kind == 0:
            packet = rng.randbytes(rng.randint(0, 300))
        elif kind == 1:
            packet = bytes([0x40 | rng.randint(0, 15), 0]) + rng.randbytes(170)  # version 1
        elif kind == 2:
            packet = bytes([0xA0, 0]) + rng.randbytes(10) + bytes(160) + bytes([250])  # padding > size
        elif kind == 3:
            packet = bytes([0x80, rng.choice([8, 9, 18, 101, 127])]) + rng.randbytes(170)  # wrong PT
        elif kind == 4:
            packet = bytes([0x90, 0]) + rng.randbytes(10) + b"\xbe\xde\xff\xff" + bytes(8)  # huge extension
        else:
            packet = bytes([0x8F, 0]) + rng.randbytes(20)  # 15 CSRCs announced, none present
        try:
            leg.sock.sendto(packet, leg.remote)
            sent += 1
        except OSError:
            pass
        if index % 50 == 49:
            time.sleep(0.001)  # a flood, but one the kernel's socket buffer can hold
    return sent
