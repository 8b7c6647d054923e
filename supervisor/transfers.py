"""Transfers, the supervisor's side (the worker's is call_worker/transfer.py).

While the call's worker lives, what Asterisk says of the transfer's channel
(`cb.<instance>.tr<N>.<call>`, and its Local `;2` half) arrives on the events link here
and is relayed into the call's header: TRANSFER_CAUSE, TRANSFER_NEWS, then
TRANSFER_NEWS_ATTEMPT last (a worker that reads between the writes sees another attempt's
number and ignores them), then END_SIGNAL wakes the worker. News only moves forward:
NONE -> RINGING -> ANSWERED, or to FAILED once.

After an attended transfer the worker has exited and the call's bridge holds the caller
and the destination, both still in our app. Each such pair is watched here:

    TALKING --either one leaves Stasis or is destroyed--> ENDING (a teardown helper hangs
                                                          up the other and removes the bridge)

so no channel or bridge outlives the conversation. A stop of the service leaves pairs
talking (they are not ours to cut); the next start's reconciliation adopts them again
(supervisor/reconcile.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from callbridge.ids import InstanceIds
from callbridge.teardown import Target
from shm_ring import Slot, TransferNews, TransferState
from supervisor.calls import signal_end

log = logging.getLogger(__name__)

# A Dial event's dialstatus, as the hang-up cause the worker explains (call_worker/transfer.py).
DIALSTATUS_CAUSES = {"BUSY": 17, "NOANSWER": 19, "CONGESTION": 34, "CHANUNAVAIL": 27, "CANCEL": 16}


@dataclass
class Pair:
    """A transferred caller and the destination it talks to, in the call's bridge."""

    call_id: str
    destination_id: str
    bridge_id: str
    since: float = field(default_factory=time.monotonic)
    since_wall: float = field(default_factory=time.time)
    ending: bool = False

    def targets(self) -> list[Target]:
        return [
            Target("bridge", self.bridge_id),
            Target("channel", self.destination_id),
            Target("channel", self.call_id),
        ]


class Transfers:
    def __init__(self, ids: InstanceIds, start_teardown) -> None:
        self.ids = ids
        self.start_teardown = start_teardown  # (call_id, targets): the supervisor's helper
        self.pairs: dict[str, Pair] = {}  # by call id
        self.news: dict[str, tuple[int, TransferNews]] = {}  # call id -> (attempt, last news)
        self.left: dict[str, set[str]] = {}  # call id -> transfer channels already gone
        self.completed = 0

    # --- events

    def on_event(self, kind: str, event: dict, calls: dict) -> bool:
        """Handle an event about a transfer's channel or a watched pair; True if it was one."""
        channel = event.get("channel") if isinstance(event.get("channel"), dict) else {}
        channel_id = str(channel.get("id", ""))
        if kind == "Dial":
            peer = event.get("peer") if isinstance(event.get("peer"), dict) else {}
            channel_id = str(peer.get("id", ""))
        if channel_id in self.pairs and kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            self._pair_over(self.pairs[channel_id], "the caller hung up")
            return True
        found = self.ids.transfer_of(channel_id)
        if found is None:
            return False
        call_id, attempt = found
        half = channel_id.endswith(";2")
        pair = self.pairs.get(call_id)
        if pair is not None:
            if not half and channel_id == pair.destination_id and kind in ("StasisEnd", "ChannelDestroyed"):
                self._pair_over(pair, "the destination hung up")
            return True
        if half:
            return True  # the Local channel's dialplan side: its ;1 half says all we need
        entry = calls.get(call_id)
        if entry is None:
            return True  # an attempt of a call already reaped (and not transferred): nothing to do
        if kind == "ChannelDestroyed":  # seen by the reap, for a hand-over that raced it
            self.left.setdefault(call_id, set()).add(channel_id)
        if kind == "Dial":
            status = str(event.get("dialstatus") or "")
            if status == "RINGING":
                self._relay(entry, attempt, TransferNews.RINGING, 0)
            elif status in DIALSTATUS_CAUSES:
                self._relay(entry, attempt, TransferNews.FAILED, DIALSTATUS_CAUSES[status])
        elif kind == "StasisStart":
            self._relay(entry, attempt, TransferNews.ANSWERED, 0)
        elif kind == "ChannelDestroyed":
            cause = event.get("cause")
            self._relay(
                entry, attempt, TransferNews.FAILED, cause if isinstance(cause, int) and cause else 16
            )
        return True

    def _relay(self, entry, attempt: int, news: TransferNews, cause: int) -> None:
        last_attempt, last = self.news.get(entry.call_id, (0, TransferNews.NONE))
        if attempt < last_attempt or (
            attempt == last_attempt and (last is TransferNews.FAILED or news <= last)
        ):
            return  # old news, or no progress
        self.news[entry.call_id] = (attempt, news)
        header = entry.header
        header.set(Slot.TRANSFER_CAUSE, cause)
        header.set(Slot.TRANSFER_NEWS, news)
        header.set(Slot.TRANSFER_NEWS_ATTEMPT, attempt)
        signal_end(entry.pid)

    # --- after the worker

    def call_reaped(self, entry, counters: dict) -> None:
        """The worker is gone: watch the pair it left, if it transferred the caller."""
        self.news.pop(entry.call_id, None)
        gone = self.left.pop(entry.call_id, set())
        if TransferState.of(counters.get("transfer_state", 0)) is not TransferState.BRIDGED:
            # (attended, even when the worker died after the hand-over; SENT left nothing to watch)
            return
        destination = self.ids.transfer_channel(entry.call_id, counters.get("transfer_attempt", 0))
        pair = Pair(entry.call_id, destination, self.ids.bridge(entry.call_id))
        self.pairs[entry.call_id] = pair
        log.info(
            "call transferred; watching the caller and %s", destination, extra={"call_id": entry.call_id}
        )
        if entry.caller_gone or destination in gone:
            self._pair_over(pair, "one side left during the hand-over")

    def adopt(self, call_id: str, destination_id: str) -> None:
        """Reconciliation found a pair a previous run left talking."""
        if call_id not in self.pairs:
            self.pairs[call_id] = Pair(call_id, destination_id, self.ids.bridge(call_id))
            log.info("adopting a transferred call", extra={"call_id": call_id})

    def gone(self, call_id: str) -> None:
        """Reconciliation found a side of a watched pair missing (it left unseen)."""
        pair = self.pairs.get(call_id)
        if pair is not None:
            self._pair_over(pair, "one side left while the events link was down")

    def _pair_over(self, pair: Pair, why: str) -> None:
        if pair.ending:
            return
        pair.ending = True
        self.pairs.pop(pair.call_id, None)
        self.completed += 1
        log.info(
            "transferred call over after %.0f s (%s)",
            time.monotonic() - pair.since,
            why,
            extra={"call_id": pair.call_id},
        )
        self.start_teardown(pair.call_id, pair.targets())

    def status_rows(self) -> list[dict]:
        return [
            {
                "call_id": p.call_id,
                "destination_channel": p.destination_id,
                "transferred_s": round(time.monotonic() - p.since, 1),
            }
            for p in self.pairs.values()
        ]
