"""Which assistant audio item occupies which bytes of the downlink ring, so that a
barge-in can say exactly how much of the item the caller heard.

The media loop is both the ring's producer (it appends each audio delta and records, per
item, the ring's write totals before and after) and its consumer (its read total is what
was sent to the caller, byte for byte). On barge-in it discards everything unread, and the
ring's `discarded_at` then tells where playback stood: truncate at `discarded_at -
item.start` bytes, 8 bytes a millisecond.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shm_ring import ByteRing

BYTES_PER_MS = 8  # G.711 at 8 kHz


@dataclass
class AudioItem:
    item_id: str
    response_id: str
    start: int
    end: int


@dataclass(frozen=True)
class Truncation:
    item_id: str
    audio_end_ms: int  # what the caller heard of the item
    item_audio_ms: int  # what had been received of it


class Playback:
    def __init__(self, ring: ByteRing) -> None:
        self.ring = ring
        self.items: deque[AudioItem] = deque(maxlen=16)
        self.ignored_responses: set[str] = set()
        self.open_response: str | None = None  # a response whose audio may still arrive
        self.late_deltas = 0
        self.overrun_bytes = 0
        self.cut_at = 0  # the ring position where the last barge-in stopped playback

    def response_started(self, response_id: str) -> None:
        self.open_response = response_id

    def response_finished(self, response_id: str) -> None:
        if self.open_response == response_id:
            self.open_response = None

    @property
    def more_audio_expected(self) -> bool:
        return self.open_response is not None

    def add_audio(self, response_id: str, item_id: str, audio: bytes) -> int:
        """Queue a delta for playback; return the bytes that did not fit (0 normally)."""
        if response_id in self.ignored_responses:
            self.late_deltas += 1
            return 0
        current = self.items[-1] if self.items else None
        if current is None or current.item_id != item_id:
            position = self.ring.write_total
            current = AudioItem(item_id, response_id, position, position)
            self.items.append(current)
        written = self.ring.write(audio)
        current.end += written
        self.overrun_bytes += len(audio) - written
        return len(audio) - written

    def audio_of(self, item_id: str) -> AudioItem | None:
        for item in self.items:
            if item.item_id == item_id:
                return item
        return None

    def unplayed(self) -> list[AudioItem]:
        """Items whose audio the caller has not all heard yet (still in the ring)."""
        played = self.ring.read_total
        return [item for item in self.items if item.end > played and item.end > item.start]

    @staticmethod
    def heard(item: AudioItem, played: int) -> Truncation:
        """How much of `item` the caller heard once playback stood at `played`."""
        heard = min(max(played, item.start), item.end) - item.start
        return Truncation(item.item_id, heard // BYTES_PER_MS, (item.end - item.start) // BYTES_PER_MS)

    def is_playing(self) -> bool:
        """Audio is queued or still arriving for the caller."""
        return self.ring.fill() > 0 or self.more_audio_expected

    def barge_in(self) -> Truncation | None:
        """Drop all queued audio; return the truncation for the item that was playing.

        Called by the ring's consumer (the media loop, between two frames), so the discard
        is performed at once and the position is exact: the next frame is silence."""
        if self.open_response is not None:
            self.ignored_responses.add(self.open_response)
            self.open_response = None
        ring = self.ring
        discarded_before = ring.discarded_total
        ring.request_discard()
        ring.readable()  # performs the discard
        played = ring.discarded_at if ring.discarded_total > discarded_before else ring.read_total
        self.cut_at = played
        for item in reversed(self.items):
            if item.start <= played and item.end > item.start:
                if played >= item.end and item.response_id not in self.ignored_responses:
                    return None  # that item had finished playing: nothing to truncate
                return self.heard(item, played)
        return None
