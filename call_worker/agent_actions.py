"""What the agent's tool calls make the call do, on the worker's main thread.

The media loop hands over each action (call_worker/tools.py `Action`); `AgentActions.step`
runs on every wake-up of the main thread, before the limits, and says what the control loop
must do next:

    end_call            -> Step.end: the control loop treats it like a limit (the reply
                           playing finishes, then the goodbye, then the end)
    transfer, attended  -> call_worker/transfer.py dials; when it answers and the agent's
                           announcement has played -> Step.transferred
    transfer, blind     -> after the announcement (at most ANNOUNCE_LIMIT) -> continue ->
                           Step.transferred
    a failed attempt    -> the agent is told why (Conversation.tell); tools are free again

Once the call is ending (a goodbye asked, a limit or end_call pending) a new transfer is
refused and a pending blind one dropped: the goodbye has the last word. A limit does not
start while an attempt is in progress (call_worker/call.py): an answered destination is
bridged, a failed one hands the call back to the limits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from call_worker import realtime_protocol as proto
from call_worker.tools import Action, ToolBox
from call_worker.transfer import ANNOUNCE_LIMIT, Failed, Transfer
from callbridge.agents import Agent, Destination
from callbridge.ari_rest import AriError, AriRest

log = logging.getLogger(__name__)

CALLER_ID_TIMEOUT = 2.0  # seconds for the caller-id lookup before a dial (the main thread waits)


@dataclass(frozen=True)
class Step:
    end: bool = False  # end_call: the goodbye, then AGENT_HANGUP
    transferred: bool = False  # the caller is with the destination: end with TRANSFERRED
    wake_at: float | None = None  # the next deadline of an attempt or announcement


class AgentActions:
    def __init__(
        self,
        agent: Agent,
        toolbox: ToolBox,
        transfer: Transfer,
        ari: AriRest,
        call_id: str,
        bridge_id: str,
        media_channel: str,
        conversation,
        on_event,
    ) -> None:
        self.agent = agent
        self.toolbox = toolbox
        self.transfer = transfer
        self.ari = ari
        self.call_id = call_id
        self.bridge_id = bridge_id
        self.media_channel = media_channel
        self.conversation = conversation  # call_worker/conversation.py: tell, agent_busy
        self.on_event = on_event  # (kind, detail): an event of the call's record
        self.actions: list[Action] = []  # appended by the media loop (list.append is atomic)
        self.blind: tuple[Destination, int, float] | None = None  # destination, place, deadline
        self.holds: dict[str, str] = {}  # reply id -> the playback of its tools' hold sound
        self._holds_made = 0

    @property
    def busy(self) -> bool:
        """A transfer is being dialled, answered or announced: the call is not idle and no
        limit should cut it."""
        return self.transfer.active or self.blind is not None

    def step(self, now: float, ending: bool, speaking: bool) -> Step:
        """`ending`: a goodbye, limit or end_call is pending; `speaking`: the agent's reply
        is coming, being received or playing."""
        end = False
        while self.actions:
            action = self.actions.pop(0)
            if action.kind in ("hold", "unhold"):
                self._hold(action, ending)
            elif action.kind == "end" and not ending:
                log.info("the agent ends the call (end_call)")
                self.transfer.cancel()
                self.blind = None
                end = ending = True
            elif action.kind == "transfer" and not ending:
                self._start(action.destination, now)
            else:
                self.toolbox.settled()  # the call is ending: this transfer will not be made
        if ending:
            self.blind = None
            return Step(end=end)
        if self.blind is not None:
            destination, place, deadline = self.blind
            if not speaking or now >= deadline:
                self.blind = None
                if self.transfer.blind(destination, place):
                    self.on_event("transferred", {"destination": destination.name, "outcome": "blind"})
                    return Step(transferred=True)
                self._failed(Failed(destination, "the line could not be reached", 0))
                return Step()
            return Step(wake_at=deadline)
        if not self.transfer.active:
            return Step()
        failed = self.transfer.check(now)
        if failed is not None:
            self._failed(failed)
        elif self.transfer.ready_to_bridge(now, speaking):
            if self.transfer.bridge(self.bridge_id, self.media_channel):
                self.on_event("transferred", self._detail("answered", now))
                return Step(transferred=True)
            self._failed(Failed(self.transfer.destination, "the line was lost while connecting", 0))
        return Step(wake_at=self.transfer.deadline if self.transfer.active else None)

    def _hold(self, action: Action, ending: bool) -> None:
        """A tool's hold sound on the call's bridge, while the reply's tool calls run (not
        once the call is ending); stopped when they are answered. A sound Asterisk cannot
        play costs the caller the sound only: one warning."""
        if action.kind == "unhold":
            playback = self.holds.pop(action.call_id, None)
            if playback is not None:
                try:
                    self.ari.stop_playback(playback)
                except AriError as exc:
                    log.warning("cannot stop the hold sound: %s", exc)
            return
        if ending or action.call_id in self.holds:
            return
        self._holds_made += 1
        playback = f"{self.bridge_id}-hold-{self._holds_made}"
        try:
            self.ari.play_on_bridge(self.bridge_id, action.media, playback)
        except AriError as exc:
            log.warning("cannot play the hold sound %s: %s", action.media, exc)
            return
        self.holds[action.call_id] = playback
        log.info("hold sound %s while the tool runs", action.media)

    def _start(self, destination: Destination, now: float) -> None:
        place = list(self.agent.transfers).index(destination.name)
        if destination.blind:
            self.blind = (destination, place, now + ANNOUNCE_LIMIT)  # after the announcement
            return
        failed = self.transfer.dial(destination, place, self._caller_id(), now)
        self.on_event("transfer_dialled", {"destination": destination.name, "attempt": self.transfer.attempt})
        if failed is not None:
            self._failed(failed)

    def _caller_id(self) -> str:
        """The caller's own caller id, for the destination's display. Asked of Asterisk: the
        worker holds only the masked number (RECORDS_MASK_CALLERS), by design."""
        timeout, self.ari.timeout = self.ari.timeout, CALLER_ID_TIMEOUT
        try:
            channel = self.ari.channel(self.call_id) or {}
        except AriError:
            return ""
        finally:
            self.ari.timeout = timeout
        caller = channel.get("caller") or {}
        number, name = str(caller.get("number") or ""), str(caller.get("name") or "")
        return f'"{name}" <{number}>' if name and number else number

    def _failed(self, failed: Failed) -> None:
        self.on_event(
            "transfer_failed",
            {
                "destination": failed.destination.name,
                "why": failed.why,
                "cause": failed.cause,
                "after_ms": self.transfer.elapsed_ms(),
            },
        )
        self.toolbox.settled()
        self.conversation.tell(proto.transfer_failed(failed.destination.name, failed.why))

    def _detail(self, outcome: str, now: float) -> dict:
        return {
            "destination": self.transfer.destination.name,
            "outcome": outcome,
            "attempt": self.transfer.attempt,
            "after_ms": self.transfer.elapsed_ms(now),
        }
