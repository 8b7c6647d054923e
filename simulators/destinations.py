"""What a transfer destination does when the simulated Asterisk dials it, as the test
scripted it, and the destination's side of the media once it answers.

A test scripts an endpoint through the /sim controls (no auth; asterisk_controls.py routes
these paths here):

    POST   /sim/destination?endpoint=Local/100@from-internal&behaviour=answer&after=1.0
               &hz=600&hangup_after=5[&ring=1][&cause=17][&count=N]
    GET    /sim/destinations          the scripts, by endpoint
    DELETE /sim/destinations          forget every script
    GET    /sim/originations          every channel originated (POST /ari/channels): endpoint,
                                      behaviour, outcome, the events emitted, media counters
    GET    /sim/originations/{id}     one, with its media leg's packets once answered

Behaviours (what the dialplan at the endpoint does; originate.py emits what Asterisk 22 emits):

    answer       rings (unless ring=0), answers after `after` s, then sends a tone of `hz`
                 once bridged with a caller; hangs up by itself after `hangup_after` s if set
    busy         Busy() after `after` s
    hangup       Hangup(cause) after `after` s (cause 17 by default)
    congestion   Congestion() after `after` s
    noanswer     rings until the originate's `timeout`
    unavailable  the extension or context does not exist (see originate.py: a guess)

An endpoint no script names answers after 0.5 s. The endpoint's dial options ("/n") do not
count when matching. A script holds for every dial of its endpoint, or for `count` dials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from simulators import g711
from simulators.caller_media import CallerLeg

BEHAVIOURS = ("answer", "busy", "hangup", "congestion", "noanswer", "unavailable")
CONTROL_PATHS = ("destination", "destinations", "originations")
DEFAULT_AFTER = {
    "answer": 0.5,
    "busy": 0.2,
    "hangup": 0.2,
    "congestion": 0.2,
    "noanswer": 0.0,
    "unavailable": 0.0,
}
DEFAULT_HZ = 700.0  # apart from the callers' 440 Hz and the Realtime simulator's 300/350 Hz


@dataclass
class DestinationScript:
    behaviour: str = "answer"
    after: float = 0.5  # seconds from the originate to the dialplan's answer, Busy(), ...
    hz: float = DEFAULT_HZ
    hangup_after: float | None = None  # seconds from the answer to its own hang-up
    ring: bool = True  # the dialplan rings before its outcome (Ringing, Dial RINGING)
    cause: int = 17  # for Hangup(cause)
    count: int | None = None  # dials still to follow this script; None: every dial


def endpoint_key(endpoint: str) -> str:
    """`Local/100@from-internal/n` -> `Local/100@from-internal`: dial options do not count."""
    tech, _, device = endpoint.partition("/")
    device = device.split("/", 1)[0]
    return f"{tech.capitalize()}/{device}"


def script_from_query(q: dict) -> tuple[str, DestinationScript]:
    behaviour = q.get("behaviour", "answer")
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    script = DestinationScript(
        behaviour,
        float(q.get("after", DEFAULT_AFTER[behaviour])),
        float(q.get("hz", DEFAULT_HZ)),
        float(q["hangup_after"]) if q.get("hangup_after") else None,
        q.get("ring", "0" if behaviour in ("busy", "hangup", "congestion", "unavailable") else "1") == "1",
        int(q.get("cause", 17)),
        int(q["count"]) if q.get("count") else None,
    )
    return endpoint_key(q["endpoint"]), script


class Scripts:
    """The scripted endpoints (held under the simulator's lock)."""

    def __init__(self) -> None:
        self.by_endpoint: dict[str, DestinationScript] = {}

    def set(self, key: str, script: DestinationScript) -> None:
        self.by_endpoint[key] = script

    def take(self, endpoint: str) -> DestinationScript:
        key = endpoint_key(endpoint)
        script = self.by_endpoint.get(key)
        if script is None:
            return DestinationScript()
        if script.count is not None:
            script.count -= 1
            if script.count <= 0:
                del self.by_endpoint[key]
        return DestinationScript(**{**asdict(script), "count": None})

    def clear(self) -> None:
        self.by_endpoint.clear()

    def to_json(self) -> dict:
        return {key: asdict(script) for key, script in self.by_endpoint.items()}


def destination_leg(channel_id: str, law: str, payload_type: int, hz: float) -> CallerLeg:
    """The answered destination's media: its own socket (Asterisk's side of the Local
    channel's far end), sending a tone of `hz` in 20 ms frames, looped for as long as it is
    bridged with a caller, and recording what reaches it (the caller's voice)."""
    # One second of a whole number of cycles loops without a click.
    audio = g711.tone(1000, round(hz), 9000, law)
    return CallerLeg(channel_id, law, payload_type, audio, None, [], loop=True)


def control(handler, method: str, parts: list[str], q: dict) -> None:
    """The /sim requests above."""
    sim = handler.sim
    if parts == ["destination"] and method == "POST":
        try:
            key, script = script_from_query(q)
        except KeyError:
            return handler._error(400, "endpoint is required")
        except ValueError as exc:
            return handler._error(400, str(exc))
        with sim.lock:
            sim.destination_scripts.set(key, script)
        return handler._reply(200, {"endpoint": key, "script": asdict(script)})
    if parts == ["destinations"] and method == "GET":
        with sim.lock:
            return handler._reply(200, sim.destination_scripts.to_json())
    if parts == ["destinations"] and method == "DELETE":
        with sim.lock:
            sim.destination_scripts.clear()
        return handler._reply(200, {})
    if parts == ["originations"] and method == "GET":
        with sim.lock:
            return handler._reply(200, [dial.to_json(False) for dial in sim.originations])
    if len(parts) == 2 and parts[0] == "originations" and method == "GET":
        with sim.lock:
            for dial in sim.originations:
                if dial.id == parts[1]:
                    return handler._reply(200, dial.to_json(q.get("packets", "1") == "1"))
        return handler._error(404, "no such origination")
    return handler._error(404, "unknown /sim request")
