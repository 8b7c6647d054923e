"""The simulated Asterisk's state: channels, bridges, callers' records, and the events
it emits. The HTTP side (REST and the events WebSocket) is in asterisk.py."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulators.caller_media import CallerLeg, MediaEngine, parse_script, render
from simulators.destinations import Scripts
from simulators.wsframe import ServerSocket

PAYLOAD_TYPES = {"ulaw": 0, "alaw": 8}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


@dataclass
class Channel:
    id: str
    name: str
    kind: str  # "caller" | "external" | "destination" | "destination-peer" (originate.py)
    caller_number: str = ""
    exten: str = ""
    state: str = "Ring"
    app: str = ""
    args: list[str] = field(default_factory=list)
    bridge: str | None = None
    leg: CallerLeg | None = None  # caller, destination: its media; external: the caller's leg once bridged
    external_host: tuple[str, int] | None = None
    created: str = field(default_factory=now_iso)
    hung_up: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    context: str = "from-sim"  # where in the dialplan it is (changed by `continue`)
    priority: int = 2
    dial: object = None  # originate.Dial for an originated channel: it owns the hang-up

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "caller": {"name": "", "number": self.caller_number},
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {
                "context": self.context,
                "exten": self.exten,
                "priority": self.priority,
                # Out of Stasis (after `continue`) it runs some other application.
                "app_name": "Stasis" if self.app else "",
                "app_data": self.app,
            },
            "creationtime": self.created,
            "language": "en",
        }


@dataclass
class Bridge:
    id: str
    name: str
    channels: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "technology": "simple_bridge",
            "bridge_type": "mixing",
            "bridge_class": "stasis",
            "creator": "Stasis",
            "channels": list(self.channels),
        }


@dataclass
class CallRecord:
    """What the test harness reads back about one simulated call."""

    channel_id: str
    leg: CallerLeg
    placed: float
    answered: float | None = None
    hangup: float | None = None
    hangup_by: str = ""
    hangup_cause: int = 0
    playbacks: list[dict] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    # Where `continue` sent the caller: {"context", "extension", "priority", "at"}, or None.
    continued_to: dict | None = None
    originations: list = field(default_factory=list)  # originate.Dial: named after or bridged with it


class SimulatedAsterisk:
    def __init__(
        self,
        username: str = "asterisk",
        password: str = "asterisk",
        law: str = "ulaw",
        playback_seconds: float = 1.0,
        callers_in_step: bool = False,
    ) -> None:
        self.username = username
        self.password = password
        self.law = law
        self.playback_seconds = playback_seconds
        self.lock = threading.RLock()
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.calls: dict[str, CallRecord] = {}
        self.playbacks: dict[str, dict] = {}
        self.bridge_playbacks: list[dict] = []  # sounds played on a bridge (hold sounds): when, until
        self.sockets: dict[str, ServerSocket] = {}  # app -> current events connection
        self.event_log: list[dict] = []
        self.connections = 0
        self.rest_failures: dict[str, int] = {}  # "GET /bridges" -> failures still to answer
        self.rest_delay = 0.0  # seconds every ARI REST request waits before its answer
        self.media = MediaEngine(in_step=callers_in_step)
        self.destination_scripts = Scripts()  # /sim/destination (destinations.py)
        self.originations: list = []  # every originate.Dial, in order
        self._numbers = itertools.count(1)

    # --- events

    def emit(self, app: str, event_type: str, **body) -> None:
        event = {
            "type": event_type,
            "timestamp": now_iso(),
            "application": app,
            "asterisk_id": "sim:00:00:00",
            **body,
        }
        with self.lock:
            self.event_log.append(event)
            sock = self.sockets.get(app)
        if sock is not None:
            sock.send_text(json.dumps(event))

    # --- calls (the simulated PSTN side)

    def place_call(
        self,
        app: str,
        script: list[dict],
        caller: str = "",
        exten: str = "100",
        tag: str = "",
        name: str = "",
        channel_id: str = "",
    ) -> dict:
        """`channel_id`: the id to give it (a test of ids Asterisk would not make), else one
        in Asterisk's own style."""
        with self.lock:
            if app not in self.sockets or self.sockets[app].closed.is_set():
                raise LookupError(f"Stasis app {app!r} is not registered")
            number = next(self._numbers)
            channel_id = channel_id or f"sim-{number:04d}.{uuid.uuid4().hex[:6]}"
            audio, hangup_frame, utterances, mutes = render(parse_script(script), self.law)
            leg = CallerLeg(channel_id, self.law, PAYLOAD_TYPES[self.law], audio, hangup_frame, utterances)
            leg.mutes = mutes
            echo_db = next((float(e["echo_db"]) for e in script if "echo_db" in e), None)
            leg.echo = 10 ** (echo_db / 20) if echo_db is not None else 0.0
            leg.on_hangup = lambda: self.hangup(channel_id, by="caller")
            leg.tag = tag.encode()[:32]
            chan = Channel(
                channel_id,
                name or f"PJSIP/sim-{number:08x}",  # a dial plan may name it after the caller
                "caller",
                caller or f"+1555{number:07d}",
                exten,
                app=app,
                leg=leg,
            )
            self.channels[channel_id] = chan
            self.calls[channel_id] = CallRecord(channel_id, leg, time.monotonic())
            self.media.add(leg)
        self.emit(app, "StasisStart", args=[], channel=chan.to_json())
        return {"channel_id": channel_id}

    def hangup(self, channel_id: str, by: str = "ari", cause: int = 16) -> bool:
        with self.lock:
            chan = self.channels.get(channel_id)
            if chan is None or chan.hung_up:
                return False
            if chan.dial is not None:  # an originated pair has sequences of its own
                return chan.dial.hang_up(by, cause)
            chan.hung_up = True
            record = self.calls.get(channel_id)
            if record is not None:
                record.hangup, record.hangup_by, record.hangup_cause = time.monotonic(), by, cause
            bridge = self.bridges.get(chan.bridge) if chan.bridge else None
            if bridge and channel_id in bridge.channels:
                bridge.channels.remove(channel_id)
            for other in self.channels.values():
                if other.kind == "external" and other.leg is chan.leg and chan.kind == "caller":
                    other.leg = None  # media stops flowing once the caller is gone
            del self.channels[channel_id]
        if chan.leg is not None and chan.kind == "caller":
            self.media.remove(chan.leg)
        elif chan.kind == "external" and chan.leg is not None:
            chan.leg.remote = None
        if bridge:
            with self.lock:
                self._link_media(bridge)  # our media channel gone: a destination may be heard now
        body = {"channel": chan.to_json()}
        self.emit(chan.app, "ChannelHangupRequest", cause=cause, **body)
        if bridge:
            self.emit(chan.app, "ChannelLeftBridge", bridge=bridge.to_json(), **body)
        self.emit(chan.app, "StasisEnd", **body)
        self.emit(chan.app, "ChannelDestroyed", cause=cause, cause_txt="Normal Clearing", **body)
        return True

    def continue_in_dialplan(self, channel_id: str, context: str, extension: str, priority: int) -> bool:
        """ARI `continue`: the channel leaves Stasis (StasisEnd to its app) for that place in
        the dialplan, which the simulator only records; the caller stays on the line (its
        script may hang up later, unseen by the app). False: not a channel in Stasis."""
        with self.lock:
            chan = self.channels.get(channel_id)
            if chan is None or chan.hung_up or not chan.app:
                return False
            app, chan.app = chan.app, ""
            bridge = self.bridges.get(chan.bridge) if chan.bridge else None
            if bridge and channel_id in bridge.channels:
                bridge.channels.remove(channel_id)
            chan.bridge = None
            chan.context, chan.exten, chan.priority = context, extension, priority
            record = self.calls.get(channel_id)
            if record is not None:
                record.continued_to = {
                    "context": context,
                    "extension": extension,
                    "priority": priority,
                    "at": time.monotonic(),
                }
            body = {"channel": chan.to_json()}
        if bridge:
            self.emit(app, "ChannelLeftBridge", bridge=bridge.to_json(), **body)
        self.emit(app, "StasisEnd", **body)
        return True

    def _link_media(self, bridge: Bridge) -> None:
        """Who hears whom, after the bridge's members changed. A caller and an externalMedia
        channel: media flows between the caller and callbridge. A caller and an answered
        destination, with no externalMedia channel (it left after a transfer): between the
        caller and the destination. A destination in any other bridge is silent (a bridge
        with all three is not mixed here: the externalMedia channel has the caller)."""
        members = [self.channels[c] for c in bridge.channels if c in self.channels]
        callers = [c for c in members if c.kind == "caller"]
        externals = [c for c in members if c.kind == "external"]
        destinations = [c for c in members if c.kind == "destination" and c.leg is not None]
        for destination in destinations:
            destination.leg.remote = None
        if len(callers) == 1 and len(externals) == 1 and callers[0].leg is not None:
            externals[0].leg = callers[0].leg
            callers[0].leg.remote = externals[0].external_host
        elif len(callers) == 1 and not externals and len(destinations) == 1 and callers[0].leg is not None:
            caller, destination = callers[0], destinations[0]
            caller.leg.remote, destination.leg.remote = destination.leg.local, caller.leg.local
            dial = destination.dial
            if caller.id not in dial.bridged_with:
                dial.bridged_with.append(caller.id)
            record = self.calls.get(caller.id)
            if record is not None and dial not in record.originations:
                record.originations.append(dial)

    def remove_from_bridge(self, bridge: Bridge, channel_id: str) -> bool:
        """POST /bridges/{id}/removeChannel: the channel leaves, and stays in Stasis."""
        chan = self.channels.get(channel_id)
        if chan is None or channel_id not in bridge.channels:
            return False
        bridge.channels.remove(channel_id)
        chan.bridge = None
        if chan.kind == "external" and chan.leg is not None:
            chan.leg.remote = None  # the caller stops sending to callbridge
            chan.leg = None
        elif chan.kind in ("caller", "destination") and chan.leg is not None:
            chan.leg.remote = None
        self.emit(chan.app, "ChannelLeftBridge", bridge=bridge.to_json(), channel=chan.to_json())
        self._link_media(bridge)
        return True
