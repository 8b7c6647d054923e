"""The simulated Asterisk's /sim controls (no auth), for tests, the demo and the
benchmarks: place calls, read what each caller heard, hang up, send DTMF, inject garbage
RTP, emit raw events, drop the events connections, fail or delay chosen REST requests, and read
the state and the event log. Transfer destinations and originations: destinations.py."""

from __future__ import annotations

from simulators import destinations
from simulators.ari_model import CallRecord
from simulators.caller_media import inject_garbage


def handle(handler, method: str, parts: list[str], q: dict) -> None:
    """One /sim request (no auth): the test and benchmark side of the simulator."""
    sim = handler.sim
    if parts and parts[0] in destinations.CONTROL_PATHS:  # transfer destinations, originations
        return destinations.control(handler, method, parts, q)
    if parts == ["calls"] and method == "POST":
        body = handler._body()
        try:
            placed = sim.place_call(
                body.get("app", "openai-app"),
                body.get("script", [{"say": 1000}]),
                body.get("caller", ""),
                body.get("exten", "100"),
                body.get("tag", ""),
                body.get("name", ""),
                str(body.get("channel_id", "")),
            )
        except LookupError as exc:
            return handler._error(409, str(exc))
        return handler._reply(201, placed)
    if parts == ["calls"] and method == "GET":
        with sim.lock:
            return handler._reply(200, [call_json(r, False) for r in sim.calls.values()])
    if len(parts) == 2 and parts[0] == "calls" and method == "GET":
        with sim.lock:
            record = sim.calls.get(parts[1])
            if record is None:
                return handler._error(404, "no such call")
            return handler._reply(200, call_json(record, q.get("packets", "1") == "1"))
    if len(parts) == 3 and parts[0] == "calls" and parts[2] == "hangup" and method == "POST":
        return handler._reply(200, {"hung_up": sim.hangup(parts[1], by="caller")})
    if len(parts) == 3 and parts[0] == "calls" and parts[2] == "dtmf" and method == "POST":
        chan = sim.channels.get(parts[1])
        if chan is None:
            return handler._error(404, "no such channel")
        sim.emit(
            chan.app,
            "ChannelDtmfReceived",
            digit=q.get("digit", "1"),
            duration_ms=100,
            channel=chan.to_json(),
        )
        return handler._reply(200, {})
    if len(parts) == 3 and parts[0] == "calls" and parts[2] == "inject" and method == "POST":
        record = sim.calls.get(parts[1])
        if record is None or record.leg.remote is None:
            return handler._error(404, "no such call with media")
        sent = inject_garbage(record.leg, int(q.get("count", "100")), int(q.get("seed", "1")))
        return handler._reply(200, {"sent": sent})
    if parts == ["emit"] and method == "POST":  # raw text to the app's events socket
        size = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(size).decode("utf-8", "replace")
        with sim.lock:
            sock = sim.sockets.get(q.get("app", "openai-app"))
        return handler._reply(200, {"sent": bool(sock and sock.send_text(raw))})
    if parts == ["fail-rest"] and method == "POST":  # ?request=GET /bridges&count=N
        with sim.lock:
            sim.rest_failures[q.get("request", "")] = int(q.get("count", "1"))
        return handler._reply(200, {"failing": q.get("request", "")})
    if parts == ["rest-delay"] and method == "POST":  # ?seconds=3: every ARI REST reply late
        sim.rest_delay = float(q.get("seconds", "0"))
        return handler._reply(200, {"rest_delay": sim.rest_delay})
    if parts == ["drop-events"] and method == "POST":
        with sim.lock:
            sockets = list(sim.sockets.values())
        for sock in sockets:
            sock.abort()
        return handler._reply(200, {"dropped": len(sockets)})
    if parts == ["state"] and method == "GET":
        with sim.lock:
            return handler._reply(
                200,
                {
                    "channels": [c.to_json() | {"kind": c.kind} for c in sim.channels.values()],
                    "bridges": [b.to_json() for b in sim.bridges.values()],
                    "apps": [app for app, s in sim.sockets.items() if not s.closed.is_set()],
                    "connections": sim.connections,
                    "bridge_playbacks": list(sim.bridge_playbacks),
                },
            )
    if parts == ["events"] and method == "GET":
        with sim.lock:
            return handler._reply(200, sim.event_log)
    return handler._error(404, "unknown /sim request")


def call_json(record: CallRecord, packets: bool) -> dict:
    return {
        "channel_id": record.channel_id,
        "placed": record.placed,
        "answered": record.answered,
        "hangup": record.hangup,
        "hangup_by": record.hangup_by,
        "hangup_cause": record.hangup_cause,
        "playbacks": record.playbacks,
        "continued_to": record.continued_to,
        "originations": [dial.to_json(False) for dial in record.originations],
        **record.leg.summary(include_packets=packets),
    }
