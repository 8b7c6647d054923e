"""A transfer to one of the agent's destinations, as the worker's main thread drives it.

Attended (the default): callbridge dials the destination itself (ARI originate of
`Local/<extension>@<context>/n`, into our own app) while the caller stays with the agent.
What Asterisk says of that channel reaches the supervisor's events link, which relays it
into the call's header (Slot.TRANSFER_NEWS*, supervisor/transfers.py) and wakes us:

    IDLE --dial--> DIALING --news ANSWERED--> ANSWERED --announcement played--> BRIDGED
    DIALING --news FAILED (busy, no answer, ...) or our deadline--> IDLE, the agent is told
    ANSWERED --the agent still speaking after ANNOUNCE_LIMIT--> BRIDGED anyway

BRIDGED: the destination joined the call's bridge and our externalMedia channel left it;
the worker then ends (EndReason.TRANSFERRED) without touching the caller, the bridge or
the destination, which the supervisor watches from then on. `/n` keeps the Local channel
from optimising itself away, so the destination's channel stays the one in our bridge and
its hang-up is seen.

Blind (`mode = "blind"`): after the announcement the caller is sent to the destination
with ARI `continue` and leaves Stasis; Asterisk cannot tell us whether anyone answers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from callbridge.agents import Destination
from callbridge.ari_rest import AriError, AriRest
from callbridge.ids import InstanceIds
from shm_ring import CallHeader, Slot, TransferNews, TransferState

log = logging.getLogger(__name__)

ANNOUNCE_LIMIT = 8.0  # seconds an answered destination waits for the agent to finish speaking
DEADLINE_MARGIN = 5.0  # beyond the destination's timeout, in case Asterisk's own never comes

# Asterisk hang-up causes (Q.850) a failed dial reports, in words the agent can repeat.
CAUSES = {
    1: "that number does not exist",
    3: "that number cannot be reached",
    16: "the line hung up",
    17: "the line is busy",
    18: "nobody answered",
    19: "nobody answered",
    21: "the call was rejected",
    27: "the line is out of order",
    34: "the line is congested",
    38: "the network is out of order",
}


@dataclass(frozen=True)
class Failed:
    destination: Destination
    why: str  # said to the agent, and kept in the record
    cause: int


class Transfer:
    def __init__(self, ids: InstanceIds, ari: AriRest, header: CallHeader, call_id: str, app: str) -> None:
        self.ids = ids
        self.ari = ari
        self.header = header
        self.call_id = call_id
        self.app = app
        self.state = TransferState.IDLE
        self.destination: Destination | None = None
        self.attempt = 0
        self.channel_id = ""
        self.deadline = 0.0
        self.dialled_at = 0.0
        self.answered_at = 0.0
        self._orphan = ""  # an attempt given up whose channel could not be hung up

    @property
    def active(self) -> bool:
        return self.state.ringing

    def _set(self, state: TransferState) -> None:
        self.state = state
        self.header.set(Slot.TRANSFER_STATE, state)

    def dial(self, destination: Destination, place: int, caller_id: str, now: float) -> Failed | None:
        """Start an attempt (attended). None: dialling; else why it could not start."""
        self.attempt += 1
        self.destination = destination
        self.channel_id = self.ids.transfer_channel(self.call_id, self.attempt)
        self.header.set(Slot.TRANSFER_ATTEMPT, self.attempt)
        self.header.set(Slot.TRANSFER_DESTINATION, place + 1)
        self.header.add(Slot.TRANSFERS)
        target = destination.target
        endpoint = f"Local/{target.extension}@{target.context}/n"
        self.dialled_at = now
        self.deadline = now + destination.timeout + DEADLINE_MARGIN
        self._set(TransferState.DIALING)
        try:
            self.ari.originate(
                endpoint, self.app, self.channel_id, "transfer", destination.timeout, caller_id, self.call_id
            )
        except AriError as exc:
            log.warning("transfer to %s: Asterisk refused to dial %s: %s", destination.name, endpoint, exc)
            self._set(TransferState.IDLE)
            return Failed(destination, "the line could not be dialled", 0)
        log.info("transfer to %s: dialling %s (%s)", destination.name, endpoint, self.channel_id)
        return None

    def check(self, now: float) -> Failed | None:
        """(after a wake-up) Read the supervisor's news of the current attempt."""
        if not self.active:
            return None
        header = self.header
        news = TransferNews.NONE
        if header.get(Slot.TRANSFER_NEWS_ATTEMPT) == self.attempt:
            news = TransferNews(header.get(Slot.TRANSFER_NEWS))
        if news is TransferNews.ANSWERED and self.state is TransferState.DIALING:
            self.answered_at = now
            self.deadline = now + ANNOUNCE_LIMIT
            self._set(TransferState.ANSWERED)
            log.info("transfer to %s: answered after %.1f s", self.destination.name, now - self.dialled_at)
            return None
        if news is TransferNews.FAILED:
            cause = header.get(Slot.TRANSFER_CAUSE)
            return self._fail(CAUSES.get(cause, f"the call failed (cause {cause})"), cause)
        if self.state is TransferState.DIALING and now >= self.deadline:
            self.cancel()  # Asterisk's own timeout never came
            return self._fail("nobody answered", 19)
        return None

    def ready_to_bridge(self, now: float, agent_speaking: bool) -> bool:
        """Answered, and the announcement has played (or it had its time)."""
        return self.state is TransferState.ANSWERED and (not agent_speaking or now >= self.deadline)

    def bridge(self, bridge_id: str, external_channel: str) -> bool:
        """The destination joins the caller; our media channel leaves. False: it failed
        (the destination is hung up; the caller stays with the agent)."""
        try:
            self.ari.add_channels(bridge_id, [self.channel_id])
        except AriError as exc:
            log.warning("transfer to %s: cannot bridge the destination: %s", self.destination.name, exc)
            self.cancel()
            self._fail("the line was lost while connecting", 0)
            return False
        self._set(TransferState.BRIDGED)
        try:
            self.ari.hangup(external_channel)  # the caller now hears the destination alone
        except AriError as exc:  # the worker's teardown tries again; the call is transferred
            log.warning("transfer: our media channel is still in the bridge: %s", exc)
        log.info("transferred to %s (%s)", self.destination.name, self.channel_id)
        return True

    def blind(self, destination: Destination, place: int) -> bool:
        """Send the caller to the destination (ARI continue). False: Asterisk refused."""
        self.destination = destination
        self.header.set(Slot.TRANSFER_DESTINATION, place + 1)
        self.header.add(Slot.TRANSFERS)
        target = destination.target
        try:
            self.ari.continue_in_dialplan(self.call_id, target.context, target.extension, target.priority)
        except AriError as exc:
            log.warning("blind transfer to %s refused: %s", destination.name, exc)
            return False
        self._set(TransferState.SENT)
        log.info("sent the caller to %s (%s, blind)", destination.name, target)
        return True

    def cancel(self) -> None:
        """Give up the attempt (its deadline, or end_call while it rings): hang up its
        channel. One that cannot be hung up now is the teardown's (`leftover`)."""
        if not self.active:
            return
        try:
            self.ari.hangup(self.channel_id)
        except AriError as exc:
            log.warning("transfer: cannot hang up %s now (%s); the teardown will", self.channel_id, exc)
            self._orphan = self.channel_id
        self._set(TransferState.IDLE)

    def leftover(self) -> str:
        """The attempt's channel, when the call ends with it still ringing or answered, or
        when giving it up failed."""
        return self.channel_id if self.active else self._orphan

    def _fail(self, why: str, cause: int) -> Failed:
        destination = self.destination
        log.info("transfer to %s failed: %s", destination.name, why)
        self._set(TransferState.IDLE)
        return Failed(destination, why, cause)

    def elapsed_ms(self, now: float | None = None) -> int:
        return int(((now or time.monotonic()) - self.dialled_at) * 1000) if self.dialled_at else 0
