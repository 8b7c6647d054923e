"""The shared header of one call: counters, heartbeats and states as 64-bit slots.

Every slot has exactly one writer: the thread doing the work it counts (the worker's main
thread its state and transfers, its one media thread frames in and out and what the
Realtime server said; the supervisor END_REQUEST and the transfer news). The supervisor and
`callbridge status` read the rest, so a call's live state and its last state after a crash
are known without messages. The enums below are the values those slots hold: part of the
contract between processes (docs/architecture.md, "The contract"), used by name everywhere.
Heartbeats are `time.monotonic_ns()`, which on Linux is one clock for all processes.
"""

from __future__ import annotations

import signal
from enum import IntEnum

from shm_ring.errors import LayoutError

END_SIGNAL = signal.SIGUSR1  # "look at the supervisor's slots" (call_worker/process.py)
HEADER_BYTES = 4096
MAGIC = 0x31304745534243  # "CBSEG01" little-endian: marks a callbridge segment
LAYOUT_VERSION = 1


class Slot(IntEnum):
    # layout, written once by the creator before the fork
    MAGIC = 0
    LAYOUT_VERSION = 1
    UPLINK_CAPACITY = 2
    DOWNLINK_CAPACITY = 3
    CREATED_NS = 4
    # worker main thread
    WORKER_PID = 8
    CALL_STATE = 9
    END_REASON = 10
    RESERVED_11 = 11  # was the main thread's heartbeat (it now sleeps until needed)
    STARTED_NS = 12
    ANSWERED_NS = 13
    MEDIA_READY_NS = 14
    # the media thread: what it receives from Asterisk
    RESERVED_16 = 16  # was rtp-in's heartbeat (one media thread now)
    FRAMES_IN = 17
    REJECTED_SOURCE = 18
    REJECTED_MALFORMED = 19
    REJECTED_PAYLOAD_TYPE = 20
    REJECTED_SIZE = 21
    UPLINK_OVERRUNS = 22
    RESERVED_23 = 23  # was the last frame's time (nobody read it; a clock read per packet)
    FIRST_FRAME_IN_NS = 24
    # the media thread: what it sends to Asterisk
    HEARTBEAT_MEDIA = 32  # the media loop, at every frame it sends
    FRAMES_OUT = 33
    SILENCE_FRAMES_OUT = 34
    UNDERRUNS = 35
    LATE_TICKS = 36
    MAX_LATENESS_US = 37
    # the media thread: the Realtime link (it was three threads; their old slots are reserved)
    RESERVED_48 = 48  # was realtime-send's heartbeat
    REALTIME_STATE = 49
    FRAMES_TO_REALTIME = 50
    RESPONSES = 51
    BARGE_INS = 52
    INPUT_TOKENS = 53
    OUTPUT_TOKENS = 54
    REALTIME_ERRORS = 55
    RECONNECTS = 56
    DOWNLINK_OVERRUNS = 57
    MALFORMED_EVENTS = 58
    LAST_SPEECH_NS = 59
    FIRST_AUDIO_OUT_NS = 60
    RESERVED_61 = 61  # was realtime-recv's heartbeat
    # the media loop, for the metrics (supervisor/totals.py adds them up at the reap): usage
    # by kind beside INPUT_TOKENS/OUTPUT_TOKENS, and Realtime errors counted by code
    INPUT_AUDIO_TOKENS = 72
    OUTPUT_AUDIO_TOKENS = 73
    INPUT_CACHED_TOKENS = 74
    SESSION_SECONDS = 75  # GPT-Live's billed session time so far (whole seconds)
    VOICE_API = 76  # VoiceApi below: the protocol the call runs (the worker, at start)
    FRAMES_FILLED = 77  # silence frames the media loop sent while the caller's phone sent none
    ERRORS_INVALID_API_KEY = 80
    ERRORS_INSUFFICIENT_QUOTA = 81
    ERRORS_MODEL_NOT_FOUND = 82
    ERRORS_BETA_API_SHAPE_DISABLED = 83
    ERRORS_SESSION_EXPIRED = 84
    ERRORS_RATE_LIMIT_EXCEEDED = 85
    ERRORS_SERVER_ERROR = 86
    # worker main thread: tools and transfers (call_worker/transfer.py)
    TOOL_CALLS = 88  # written by the media loop, which receives them
    TRANSFER_STATE = 89  # TransferState below
    TRANSFER_ATTEMPT = 90  # the current attempt's number (its channel id carries it)
    TRANSFER_DESTINATION = 91  # 1 + the destination's place in the agent's list
    TRANSFERS = 92  # attempts made
    # worker main thread, at the end: 1 when its record could not be written to the spool
    # (a full or broken file system): counted lost by the supervisor (supervisor/totals.py)
    RECORD_LOST = 93
    # the call's recording (call_worker/recording.py), RecordingState below: the main thread
    # sets RECORDING at set-up and the last state at the end, once the media and writer
    # threads have stopped; while they run, either may write FAILED (and nothing else)
    RECORDING_STATE = 94
    # the supervisor (the only slots a worker reads but does not write); after writing one
    # the supervisor sends END_SIGNAL, so that the worker's main thread need not poll them
    END_REQUEST = 64
    # what Asterisk said of a transfer's channel (supervisor/transfers.py relays it):
    # the attempt it is about, then TransferNews and Asterisk's cause (written before NEWS)
    TRANSFER_NEWS_ATTEMPT = 65
    TRANSFER_NEWS = 66
    TRANSFER_CAUSE = 67


class RecordingState(IntEnum):
    OFF = 0  # not recorded (RECORD_CALLS, the agent's `record`)
    RECORDING = 1
    DONE = 2  # finished and renamed into RECORDINGS_DIR
    FAILED = 3  # stopped during the call (a full disk, a stalled writer): counted, alerted


class VoiceApi(IntEnum):
    UNKNOWN = 0
    REALTIME = 1
    LIVE = 2


# The Realtime error codes counted one by one, each in its own slot: the codes an operator
# acts on (the key, the quota, the model, the API shape) and the common transient ones. An
# error with any other code is counted in REALTIME_ERRORS alone. A string cannot live in a
# 64-bit slot, so the table of codes is the contract between the worker that counts and the
# supervisor that exports (docs/architecture.md, "Metrics").
ERROR_CODE_SLOTS = {  # code -> the slot counting it
    "invalid_api_key": Slot.ERRORS_INVALID_API_KEY,
    "insufficient_quota": Slot.ERRORS_INSUFFICIENT_QUOTA,
    "model_not_found": Slot.ERRORS_MODEL_NOT_FOUND,
    "beta_api_shape_disabled": Slot.ERRORS_BETA_API_SHAPE_DISABLED,
    "session_expired": Slot.ERRORS_SESSION_EXPIRED,
    "rate_limit_exceeded": Slot.ERRORS_RATE_LIMIT_EXCEEDED,
    "server_error": Slot.ERRORS_SERVER_ERROR,
}


def error_slot(code: str) -> Slot | None:
    """The slot that counts Realtime errors with this code; None: count it in REALTIME_ERRORS."""
    return ERROR_CODE_SLOTS.get(code)


class CallState(IntEnum):
    NEW = 0
    STARTING = 1
    ACTIVE = 2
    ENDING = 3
    ENDED = 4


class RealtimeState(IntEnum):
    NONE = 0
    CONNECTING = 1
    CONNECTED = 2
    RECONNECTING = 3
    FAILED = 4
    CLOSED = 5


class EndReason(IntEnum):
    NONE = 0
    CALLER_HANGUP = 1
    MAX_CALL_SECONDS = 2
    IDLE_TIMEOUT = 3
    OPERATOR_HANGUP = 4
    REALTIME_FAILED = 5
    SETUP_FAILED = 6
    SHUTDOWN = 7
    WORKER_CRASHED = 8
    SUPERVISOR_GONE = 9
    AGENT_HANGUP = 10  # the agent's end_call tool, after its goodbye played
    TRANSFERRED = 11  # the caller was bridged with a transfer destination, or sent to it


class TransferNews(IntEnum):
    """What the supervisor saw of a transfer's channel (Slot.TRANSFER_NEWS)."""

    NONE = 0
    RINGING = 1
    ANSWERED = 2  # it entered Stasis, answered: it can be bridged
    FAILED = 3  # gone before it answered; TRANSFER_CAUSE says why (Asterisk's cause code)


class CallHeader:
    """Named access to the header slots inside a writable memoryview."""

    __slots__ = ("_slots", "_view")

    def __init__(self, region: memoryview) -> None:
        if len(region) != HEADER_BYTES:
            raise LayoutError(f"header region is {len(region)} bytes, expected {HEADER_BYTES}")
        self._view = region
        self._slots = region.cast("Q")

    @property
    def slots(self) -> memoryview:
        """The slots as a memoryview of 64-bit integers, indexed by `int(Slot.X)`: for the
        media loop, where a method call per counter per packet is a measurable cost."""
        return self._slots

    def get(self, slot: Slot) -> int:
        return self._slots[slot]

    def set(self, slot: Slot, value: int) -> None:
        self._slots[slot] = value

    def add(self, slot: Slot, amount: int = 1) -> None:
        """Increment; only the slot's single writer may call this (it is not atomic)."""
        self._slots[slot] += amount

    def raise_to(self, slot: Slot, value: int) -> None:
        """Keep the maximum; single writer only."""
        if value > self._slots[slot]:
            self._slots[slot] = value

    def snapshot(self) -> dict[str, int]:
        """Every named slot's value, for status and summaries."""
        return {slot.name.lower(): self._slots[slot] for slot in Slot}

    def release(self) -> None:
        self._slots.release()
        self._view.release()


class TransferState(IntEnum):
    """Slot.TRANSFER_STATE: where the call's transfer stands (call_worker/transfer.py writes it;
    the supervisor reads it at the reap and for status)."""

    IDLE = 0
    DIALING = 1  # the destination's channel is ringing
    ANSWERED = 2  # it answered; the caller is not yet bridged with it
    BRIDGED = 3  # attended: the caller and the destination share our bridge (the pair stays)
    SENT = 4  # blind: the caller was sent to the destination and left Stasis

    @property
    def transferred(self) -> bool:
        """The caller is not ours to end any more."""
        return self in (TransferState.BRIDGED, TransferState.SENT)

    @property
    def ringing(self) -> bool:
        """A destination's channel exists that the call still owns."""
        return self in (TransferState.DIALING, TransferState.ANSWERED)

    @classmethod
    def of(cls, value: int) -> TransferState:
        """A slot's value; one this code does not know (a newer worker, a scribbled header) is IDLE."""
        try:
            return cls(value)
        except ValueError:
            return cls.IDLE


class WorkerExit(IntEnum):
    """A worker's exit code (call_worker/process.py exits with one; supervisor/exits.py reads it)."""

    OK = 0
    SETUP_FAILED = 3
    TEARDOWN_LEFT = 4  # the call ended, but something of it is still in Asterisk: the supervisor's
    CRASHED = 70  # EX_SOFTWARE: an exception escaped the worker

    @property
    def token(self) -> str:
        """How a call record and the summary line name it: `exit:4`."""
        return f"exit:{int(self)}"


CLEAN_EXITS = (WorkerExit.OK, WorkerExit.SETUP_FAILED, WorkerExit.TEARDOWN_LEFT)  # it ended its call itself
