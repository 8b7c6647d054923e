"""ARI originate in the simulated Asterisk: `POST /ari/channels` into a Local channel, and
the events Asterisk 22 emits while the destination rings, answers, is busy or never answers.

    POST /ari/channels?endpoint=Local/EXT@CTX/n&app=APP&appArgs=transfer&channelId=ID
         &timeout=T&callerId=...

answers 200 with the channel (state "Down", name `Local/EXT@CTX-00000001;1`), or 409 when
`channelId` (or its `;2` half) exists. The app then receives, for the ;1 half (ID) and the
;2 half (`ID;2`, which runs the dialplan), what the real Asterisk 22 sent (measured):

    answer       Dial(ID, "") [ChannelStateChange ID Ringing, Dial RINGING] ... at the answer:
                 ChannelStateChange ID;2 Up, ChannelStateChange ID Up, Dial ANSWER,
                 ChannelVarset ID, StasisStart ID (args from appArgs, state Up)
    busy         Dial "", ChannelStateChange ID;2 Busy, Dial BUSY, ChannelHangupRequest ID;2
                 cause 0, ChannelDestroyed ID cause 0 "Unknown", ChannelHangupRequest ID;2
                 cause 16, ChannelDestroyed ID;2 cause 17 "User busy"
    hangup       Dial "", ChannelHangupRequest ID cause C, ChannelDestroyed ID;2 cause C,
                 Dial (BUSY for 17, CONGESTION for 34, CHANUNAVAIL for 3/20/27, else
                 NOANSWER), ChannelDestroyed ID cause C
    congestion   Dial "", Dial CONGESTION, ChannelDestroyed ID cause 0, ChannelDestroyed ID;2
                 cause 34 "Circuit/channel congestion"
    noanswer     Dial "", ChannelStateChange ID Ringing, Dial RINGING, then at `timeout`:
                 ChannelHangupRequest ID;2 cause 19, ChannelDestroyed ID cause 19 "User
                 alerting, no answer", ChannelDestroyed ID;2 cause 19 (no Dial NOANSWER)

An answer due after `timeout` is a no-answer. `unavailable` (no such extension or context)
is not measured; from Asterisk's source (core_local.c's local_request does not look the
extension up, so the POST succeeds; local_call then fails, and dial.c publishes no Dial
event for a call that failed) the guess is: ChannelDestroyed ID cause 0 "Unknown", then
ChannelDestroyed ID;2 cause 0, and nothing else.

DELETE of either half while dialling or ringing ends the pair: ChannelHangupRequest ID
cause 16, ChannelDestroyed ID cause 16, ChannelDestroyed ID;2 cause 16 (no StasisStart).
Once answered, ID is an ordinary Stasis channel of kind "destination" (it can join a
bridge); its hang-up (DELETE, or the script's `hangup_after`) emits what a caller's does
(ChannelHangupRequest, ChannelLeftBridge when bridged, StasisEnd, ChannelDestroyed) and then
ChannelDestroyed ID;2. Both halves are listed by GET /ari/channels while they exist, as in
Asterisk.
"""

from __future__ import annotations

import itertools
import re
import threading
import time

from simulators.ari_model import PAYLOAD_TYPES, Channel
from simulators.destinations import DestinationScript, destination_leg

CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    27: "Destination out of order",
    34: "Circuit/channel congestion",
}
# The variable of the ChannelVarset event Asterisk sends between Dial ANSWER and StasisStart:
# the measurement recorded the event, not its variable, so this name is a stand-in.
ANSWER_VARIABLE = ("STASISSTATUS", "")
_local_numbers = itertools.count(1)
_unique_ids = itertools.count(1)


def dial_status(cause: int) -> str:
    """What Asterisk reports in a Dial event for a callee that hung up with `cause`
    (dial.c's ast_hangup_cause_to_dial_status, with 17 and 34 as the dialplan sees them)."""
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (3, 20, 27):
        return "CHANUNAVAIL"
    return "NOANSWER"


def _caller_number(caller_id: str) -> str:
    """`"Front desk" <100>` -> 100; a bare number stays as it is."""
    match = re.search(r"<([^>]*)>", caller_id)
    return (match.group(1) if match else caller_id).strip()


class Dial:
    """One originated Local channel pair, from the POST to its end.

    States: dialling -> ringing -> up -> gone, or dialling/ringing -> gone (busy, congestion,
    no answer, unavailable, cancelled by DELETE). Every transition happens under the
    simulator's lock, and the events of a transition are emitted under it too, so that a
    DELETE racing the answer sees either the ringing pair or the answered channel, never half
    of each, and the app receives each sequence whole."""

    def __init__(self, sim, q: dict, script: DestinationScript) -> None:
        self.sim = sim
        self.script = script
        self.endpoint = q["endpoint"]
        self.app = q["app"]
        self.args = [a for a in q.get("appArgs", "").split(",") if a]
        self.timeout = int(q.get("timeout", 30))  # seconds; -1: no timeout, as in ARI
        device = self.endpoint.partition("/")[2]
        self.dialstring = device
        extension, _, context = device.split("/", 1)[0].partition("@")
        self.id = q.get("channelId") or f"{int(time.time())}.{next(_unique_ids)}"
        other_id = q.get("otherChannelId") or f"{self.id};2"
        name = f"Local/{extension}@{context or 'default'}-{next(_local_numbers):08x}"
        number = _caller_number(q.get("callerId", ""))
        self.one = Channel(self.id, f"{name};1", "destination", number, extension, state="Down", dial=self)
        self.two = Channel(
            other_id, f"{name};2", "destination-peer", number, extension, state="Ring", dial=self
        )
        for chan in (self.one, self.two):
            chan.context = context or "default"
            chan.priority = 1
        self.state = "dialling"
        self.outcome = ""  # answered | busy | hangup | congestion | noanswer | unavailable | cancelled
        self.cause: int | None = None
        self.requested = time.monotonic()
        self.answered: float | None = None
        self.ended: float | None = None
        self.ended_by = ""
        self.bridged_with: list[str] = []
        self.events: list[list] = []  # [time, type, channel id, detail] of every event emitted
        self._cancelled = threading.Event()

    # --- from the REST side (under the lock)

    def start(self) -> None:
        sim = self.sim
        sim.channels[self.one.id] = self.one
        sim.channels[self.two.id] = self.two
        sim.originations.append(self)
        for record in sim.calls.values():  # callbridge names its ARI objects after the call
            if record.channel_id in self.id:
                record.originations.append(self)
        # The first events wait for the lock, which the POST holds until its reply is out.
        threading.Thread(target=self._run, name=f"sim-dial-{self.id}", daemon=True).start()

    def hang_up(self, by: str, cause: int = 16) -> bool:
        """DELETE of either half, or the destination's own hang-up."""
        with self.sim.lock:
            if self.state in ("dialling", "ringing"):
                # -> gone: the app gave up on the dial; the dialplan's outcome never comes.
                self._cancelled.set()
                self._gone("cancelled", cause)
                self.ended_by = by
                self._hangup_request(self.one, cause)
                self._destroy(self.one, cause)
                self._destroy(self.two, cause)
                return True
            if self.state != "up":
                return False
            # up -> gone: the answered destination hangs up, or is hung up, like any channel.
            self.state, self.ended, self.ended_by = "gone", time.monotonic(), by
            self._end_answered(cause)
            return True

    # --- the dialplan's side (its own thread)

    def _run(self) -> None:
        script = self.script
        with self.sim.lock:
            if self.state != "dialling":
                return
            if script.behaviour == "unavailable":
                # -> gone: Local's call fails at once, before anything rings.
                self._gone("unavailable", 0)
                self._destroy(self.one, 0)
                self._destroy(self.two, 0)
                return
            self._emit("Dial", self.one, peer=self.one.to_json(), dialstatus="", dialstring=self.dialstring)
            if script.ring or script.behaviour == "noanswer":
                self.state = "ringing"  # the dialplan rang first
                self.one.state = "Ringing"
                self._emit("ChannelStateChange", self.one, channel=self.one.to_json())
                self._dial_status("RINGING")
        outcome_at = None if script.behaviour == "noanswer" else script.after
        timeout_at = self.timeout if self.timeout > 0 else None
        waits = [t for t in (outcome_at, timeout_at) if t is not None]
        if self._cancelled.wait(
            max(0.0, min(waits) - (time.monotonic() - self.requested)) if waits else None
        ):
            return
        with self.sim.lock:
            if self.state not in ("dialling", "ringing"):
                return
            if timeout_at is not None and (outcome_at is None or timeout_at <= outcome_at):
                return self._no_answer()
            {
                "answer": self._answer,
                "busy": self._busy,
                "hangup": self._hangup,
                "congestion": self._congestion,
            }[script.behaviour]()
        if self.state == "up" and script.hangup_after is not None:
            timer = threading.Timer(script.hangup_after, self.hang_up, ("destination",))
            timer.daemon = True
            timer.start()

    def _answer(self) -> None:
        # The ;2 half answers in the dialplan, then the ;1 half, then the Stasis app gets ;1.
        self.two.state = "Up"
        self._emit("ChannelStateChange", self.two, channel=self.two.to_json())
        self.one.state = "Up"
        self._emit("ChannelStateChange", self.one, channel=self.one.to_json())
        self._dial_status("ANSWER")
        variable, value = ANSWER_VARIABLE
        self._emit("ChannelVarset", self.one, variable=variable, value=value, channel=self.one.to_json())
        # ringing -> up: the dialplan answered; ID enters the app like any Stasis channel.
        self.state, self.outcome, self.answered = "up", "answered", time.monotonic()
        self.one.app, self.one.args = self.app, self.args
        law = self.sim.law
        self.one.leg = destination_leg(self.id, law, PAYLOAD_TYPES[law], self.script.hz)
        self.sim.media.add(self.one.leg)  # silent until bridged with a caller (ari_model._link_media)
        self._emit("StasisStart", self.one, args=self.args, channel=self.one.to_json())

    def _busy(self) -> None:
        self._gone("busy", 17)
        self.two.state = "Busy"
        self._emit("ChannelStateChange", self.two, channel=self.two.to_json())
        self._dial_status("BUSY")
        self._hangup_request(self.two, 0)
        self._destroy(self.one, 0)
        self._hangup_request(self.two, 16)
        self._destroy(self.two, 17)

    def _hangup(self) -> None:
        cause = self.script.cause
        self._gone("hangup", cause)
        self._hangup_request(self.one, cause)
        self._destroy(self.two, cause)
        self._dial_status(dial_status(cause))
        self._destroy(self.one, cause)

    def _congestion(self) -> None:
        self._gone("congestion", 34)
        self._dial_status("CONGESTION")
        self._destroy(self.one, 0)
        self._destroy(self.two, 34)

    def _no_answer(self) -> None:
        self._gone("noanswer", 19)
        self._hangup_request(self.two, 19)
        self._destroy(self.one, 19)
        self._destroy(self.two, 19)

    def _gone(self, outcome: str, cause: int) -> None:
        """-> gone: dialling ends without an answer (the events follow)."""
        self.state, self.ended = "gone", time.monotonic()
        self.outcome, self.cause, self.ended_by = outcome, cause, "destination"

    def _end_answered(self, cause: int) -> None:
        """The answered ;1 half hangs up like any Stasis channel; the ;2 half goes with it."""
        sim = self.sim
        bridge = sim.bridges.get(self.one.bridge) if self.one.bridge else None
        self._hangup_request(self.one, cause)
        if bridge is not None and self.one.id in bridge.channels:
            bridge.channels.remove(self.one.id)
            self._emit("ChannelLeftBridge", self.one, bridge=bridge.to_json(), channel=self.one.to_json())
        self._emit("StasisEnd", self.one, channel=self.one.to_json())
        self._destroy(self.one, cause)
        self._destroy(self.two, cause)
        if self.one.leg is not None:
            sim.media.remove(self.one.leg)
        if bridge is not None:
            sim._link_media(bridge)

    # --- events

    def _emit(self, kind: str, chan: Channel, **body) -> None:
        detail = body.get("dialstatus", body.get("cause", chan.state))
        self.events.append([time.monotonic(), kind, chan.id, detail])
        self.sim.emit(self.app, kind, **body)

    def _dial_status(self, status: str) -> None:
        self._emit("Dial", self.one, peer=self.one.to_json(), dialstatus=status, dialstring=self.dialstring)

    def _hangup_request(self, chan: Channel, cause: int) -> None:
        self._emit("ChannelHangupRequest", chan, cause=cause, channel=chan.to_json())

    def _destroy(self, chan: Channel, cause: int) -> None:
        chan.hung_up = True
        self.sim.channels.pop(chan.id, None)
        self._emit(
            "ChannelDestroyed",
            chan,
            cause=cause,
            cause_txt=CAUSE_TEXT.get(cause, "Unknown"),
            channel=chan.to_json(),
        )

    def to_json(self, packets: bool) -> dict:
        media = self.one.leg.summary(include_packets=packets) if self.one.leg is not None else None
        return {
            "channel_id": self.id,
            "endpoint": self.endpoint,
            "app": self.app,
            "args": self.args,
            "timeout": self.timeout,
            "script": self.script.__dict__,
            "state": self.state,
            "outcome": self.outcome,
            "cause": self.cause,
            "requested": self.requested,
            "answered": self.answered,
            "ended": self.ended,
            "ended_by": self.ended_by,
            "bridged_with": self.bridged_with,
            "events": self.events,
            "media": media,
        }


def originate(handler, q: dict) -> None:
    """POST /ari/channels (called with the simulator's lock held)."""
    sim = handler.sim
    endpoint = q.get("endpoint", "")
    if not endpoint:
        return handler._error(400, "Endpoint must be specified")
    if not q.get("app"):
        # Originating into the dialplan (extension/context) is not simulated.
        return handler._error(400, "Application or extension must be specified")
    if endpoint.partition("/")[0].lower() != "local":
        return handler._error(400, "sim: only Local/ endpoints are simulated")
    channel_id = q.get("channelId", "")
    if channel_id and (channel_id in sim.channels or f"{channel_id};2" in sim.channels):
        return handler._error(409, "Channel with given unique ID already exists")
    dial = Dial(sim, q, sim.destination_scripts.take(endpoint))
    dial.one.variables.update((handler._body() or {}).get("variables") or {})
    dial.start()
    return handler._reply(200, dial.one.to_json())
