"""One call's recording, while the call runs: what the media thread hands it, and the
writer thread that turns that into the WAV file (records/recordings.py has the file).

The rings have one reader each (the media thread), so the recording does not read them:
the media thread hands it each caller packet it accepted (`caller`) and each frame it sent
(`agent`, silence included, so a barged-in reply stops in the file exactly where the caller
stopped hearing it). Each is one `bytearray` append. Once a second of frames has piled up,
the media thread itself lines the caller's audio up with the frames sent and decodes both
to 16-bit (about 90 us: a short loop, two `translate`s and four slice assignments), right
after a frame left, in the slack before the next one; the bytes go to the writer thread,
which only writes them (the syscall releases the GIL). Why not on the writer: a
normal-priority thread holding the GIL for those 90 us can be preempted, holding it, by
other calls' real-time media threads, and the media thread then waits for it. (The first
design did it there; what the move gained is not settled by the figures, which a test-order
bias clouded: docs/performance.md, "Issue 29".) Nothing here blocks the media thread on
the disk.

Lining up: the agent channel is one frame per frame sent, so it is the clock. The caller's
audio goes into the frame during which it arrived; a packet that arrived early (jitter)
waits for the next frame, and no caller audio in a frame is silence (a muted phone, a
lost packet). So the caller channel runs at most MAX_LAG behind the agent's: past it (the
packets that queued up while the media thread stalled, a time for which no frame was sent
either), all but the newest frame's worth is dropped, and the channels are in step again.

A write that fails (a full disk) stops the recording for this call: the call goes on, the
file keeps what was written (finished as `stopped`), and the header's RECORDING_STATE
says FAILED, which the supervisor counts and alerts on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from array import array
from pathlib import Path

from call_worker.g711 import decode_tables
from call_worker.rtp import FRAME_BYTES
from records import recordings
from shm_ring import CallHeader, RecordingState, Slot

log = logging.getLogger(__name__)

FRAME = FRAME_BYTES  # a 20 ms G.711 frame: one byte per sample
CHUNK_FRAMES = 50  # frames handed to the writer at once: a second
MAX_LAG = 4 * FRAME  # caller audio waiting beyond this is dropped, oldest first
# Seconds waiting for the writer (a disk that stalls): past them the recording stops, as
# on a full disk, rather than grow the worker's memory for the rest of the call.
MAX_WAITING_CHUNKS = 60


class Recording:
    def __init__(
        self, directory: Path, call_id: str, started_at: float, law: str, header: CallHeader
    ) -> None:
        self.directory = Path(directory)
        self.call_id = call_id
        self.started_at = started_at  # wall clock: the day's directory
        self.header = header
        self.path = recordings.partial_path(self.directory, call_id)
        self.on = False  # False: the media thread hands nothing over (stopped, or not started)
        # The media thread's, alone (then the ending's, once it stopped): no lock.
        self._caller = bytearray()  # the caller's accepted audio not yet placed in a frame
        self._agent = bytearray()  # the frames sent since the last hand-over
        self._marks = array("Q")  # per frame sent: the caller bytes received by then (in all)
        self._received = 0  # the caller bytes handed over, in all
        self._placed = 0  # caller bytes placed in a frame or dropped, in all
        self._short = 0  # frames in a row without a whole frame of caller audio
        self._low, self._high = decode_tables(law)
        self._silence = bytes([0xFF if law == "ulaw" else 0xD5]) * FRAME
        # Between the media thread and the writer: chunks of the file, None to finish.
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._file = None
        self._written = 0  # (writer) bytes of samples in the file
        self._failed = ""  # why recording stopped
        self._thread: threading.Thread | None = None

    # --- the media thread

    def caller(self, audio) -> None:
        """A caller packet's payload, as accepted (memoryview or bytes)."""
        self._caller += audio
        self._received += len(audio)

    def agent(self, frame) -> None:
        """The 160-byte frame just sent to the caller (after it left: this may take the
        hand-over's 90 us once a second)."""
        self._agent += frame
        self._marks.append(self._received)
        if len(self._marks) >= CHUNK_FRAMES:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._chunks.qsize() >= MAX_WAITING_CHUNKS:  # the writer fell a minute behind
            self._fail("the writer fell behind the call (a disk that stalls?)")
            return
        agent, marks = self._agent, self._marks
        self._agent, self._marks = bytearray(), array("Q")
        self._chunks.put(self._stereo(self._line_up(marks), agent))

    def _line_up(self, marks: array) -> bytes:
        """The caller's channel for the frames whose marks these are (see the module's doc)."""
        waiting, placed, start = self._caller, self._placed, 0
        out = bytearray()
        for mark in marks:
            available = mark - placed
            if available > MAX_LAG:
                skip = available - FRAME
                start += skip
                placed += skip
                available = FRAME
            if available >= FRAME:
                take, self._short = FRAME, 0
            elif available > 0 and self._short:  # the tail of the caller's stream
                take, self._short = available, 0
            else:
                take = 0
                self._short += 1
            out += waiting[start : start + take]
            if take < FRAME:
                out += self._silence[: FRAME - take]
            start += take
            placed += take
        del waiting[:start]
        self._placed = placed
        return bytes(out)

    def _stereo(self, caller: bytes, agent: bytearray) -> bytes:
        low, high = self._low, self._high
        out = bytearray(len(agent) * 4)
        out[0::4] = caller.translate(low)
        out[1::4] = caller.translate(high)
        out[2::4] = agent.translate(low)
        out[3::4] = agent.translate(high)
        return bytes(out)

    def _fail(self, why: str) -> None:
        if not self._failed:
            self._failed = why
            log.warning("recording stopped, the call goes on: %s", why)
        self.on = False
        self.header.set(Slot.RECORDING_STATE, RecordingState.FAILED)

    # --- the writer thread

    def start(self) -> None:
        """Open the partial file (set-up: its directory is made here) and start the writer."""
        self._file = recordings.create(self.path)  # finish() closes it
        self._file.write(recordings.wav_header(0))
        self.on = True
        self.header.set(Slot.RECORDING_STATE, RecordingState.RECORDING)
        self._thread = threading.Thread(target=self._run, name="recording", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._failed:
                continue  # stopped: what is still queued is dropped
            try:
                self._file.write(chunk)
            except OSError as exc:  # a full disk: the file keeps what it holds
                self._fail(str(exc))
                continue
            self._written += len(chunk)

    # --- the ending

    def finish(self) -> dict | None:
        """(the ending, after the media thread stopped) The last audio, then the file
        finished into RECORDINGS_DIR: what the record says of it. None when nothing is kept."""
        if self._thread is None:
            return None
        if self.on and self._marks:
            self._hand_over()
        self.on = False  # a media thread that outlived its join hands nothing more over
        self._chunks.put(None)
        self._thread.join(timeout=10)
        if self._thread.is_alive():  # a disk that hangs: the sweep removes the file in time
            self._fail("the writer did not finish within 10 s; the file stays in partial/")
            return None
        file, self._file = self._file, None
        try:
            file.close()  # flushes Python's buffer; finish() fsyncs
        except OSError as exc:
            self._fail(str(exc))
        if not self._written and not self._failed:  # set-up failed before a frame was sent
            _remove(self.path)
            self.header.set(Slot.RECORDING_STATE, RecordingState.OFF)
            return None
        state = recordings.STOPPED if self._failed else recordings.COMPLETE
        try:
            info = recordings.finish(self.path, self.directory, self.call_id, self.started_at, state)
        except OSError as exc:  # kept in partial/ (RECORDINGS_RETENTION_DAYS removes it)
            self._fail(f"cannot finish the recording {self.path}: {exc}")
            return None
        if self._failed:
            info["stopped_because"] = self._failed[:200]
        else:
            self.header.set(Slot.RECORDING_STATE, RecordingState.DONE)
        log.info("recording kept: %s, %.1f s", info["path"], info["seconds"])
        return info


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
