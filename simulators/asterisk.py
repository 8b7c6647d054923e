"""A simulated Asterisk: the ARI REST subset callbridge uses, the events WebSocket, and
a simulated caller behind each call (see caller_media.py).

REST and events share one port, under /ari, with HTTP Basic auth, as in Asterisk 22.
Behaviour copied from the real thing (Asterisk 22, as tests/asterisk shows): the externalMedia channel
gets its own StasisStart (sent before the POST returns), addChannel answers 422 for a
channel not in Stasis, DELETE answers 404 when the object is gone, a second events
connection for an app replaces the first, and a hang-up emits ChannelHangupRequest,
ChannelLeftBridge, StasisEnd and ChannelDestroyed in that order.

Originate (`POST /ari/channels` into a Local channel) and the transfer destinations it dials
are in originate.py and destinations.py.

Test control lives under /sim (no auth), in asterisk_controls.py.

    python -m simulators.asterisk --port 0   # prints {"port": N} on its first line
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from simulators import asterisk_controls, originate
from simulators.ari_model import Bridge, Channel, SimulatedAsterisk, now_iso
from simulators.wsframe import ServerSocket, accept_key


class Handler(BaseHTTPRequestHandler):
    server_version = "Asterisk/22.0.0-sim"
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms per reply with a body), which Asterisk does not do.
    disable_nagle_algorithm = True
    sim: SimulatedAsterisk

    def log_message(self, fmt, *args):  # quiet: tests read records, not access logs
        pass

    # --- plumbing

    def _reply(self, status: int, body=None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, {"message": message})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.sim.username}:{self.sim.password}".encode()).decode()
        if header == f"Basic {expected}":
            return True
        self.send_response(HTTPStatus.UNAUTHORIZED)
        self.send_header("WWW-Authenticate", 'Basic realm="Asterisk REST Interface"')
        body = b'{"error":"Authentication required"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def _body(self) -> dict:
        size = int(self.headers.get("Content-Length") or 0)
        if not size:
            return {}
        return json.loads(self.rfile.read(size))

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            if parts[0] == "sim":
                return asterisk_controls.handle(self, method, parts[1:], query)
            if parts[0] != "ari":
                return self._error(404, "not found")
            if not self._authorized():
                return None
            if parts[1:] == ["events"] and method == "GET":
                return self._events(query)
            return self._ari(method, parts[1:], query)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            return self._error(400, f"bad request: {exc}")

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")

    # --- the events WebSocket

    def _events(self, query: dict) -> None:
        app = query.get("app", "")
        key = self.headers.get("Sec-WebSocket-Key")
        if not app or not key or self.headers.get("Upgrade", "").lower() != "websocket":
            return self._error(400, "app and a WebSocket upgrade are required")
        sock = ServerSocket(self.connection, self.rfile)
        # Registered before the 101 goes out: once the client sees the upgrade, the app is.
        with self.sim.lock:
            old = self.sim.sockets.get(app)
            self.sim.sockets[app] = sock
            self.sim.connections += 1
            self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept_key(key))
            self.end_headers()
            self.wfile.flush()
        if old is not None and not old.closed.is_set():
            old.send_text(
                json.dumps({"type": "ApplicationReplaced", "application": app, "timestamp": now_iso()})
            )
            old.close()
        sock.serve_until_closed()
        with self.sim.lock:
            if self.sim.sockets.get(app) is sock:
                del self.sim.sockets[app]
        self.close_connection = True

    # --- ARI REST

    def _ari(self, method: str, parts: list[str], q: dict) -> None:
        sim = self.sim
        if sim.rest_delay:  # /sim/rest-delay: a slow Asterisk; each request waits, outside the lock
            time.sleep(sim.rest_delay)
        with sim.lock:
            request = f"{method} /{'/'.join(parts)}"
            if sim.rest_failures.get(request, 0) > 0:  # /sim/fail-rest: an Asterisk in trouble
                sim.rest_failures[request] -= 1
                return self._error(500, "Internal Server Error")
            if parts == ["asterisk", "info"] and method == "GET":
                return self._reply(
                    200,
                    {
                        "system": {"version": "22.0.0-sim", "entity_id": "sim"},
                        "status": {"startup_time": now_iso()},
                    },
                )
            if parts == ["channels"] and method == "GET":
                return self._reply(200, [c.to_json() for c in sim.channels.values()])
            if parts == ["bridges"] and method == "GET":
                return self._reply(200, [b.to_json() for b in sim.bridges.values()])
            if parts == ["channels", "externalMedia"] and method == "POST":
                return self._external_media(q)
            if parts == ["channels"] and method == "POST":
                return originate.originate(self, q)
            if parts == ["bridges"] and method == "POST":
                return self._create_bridge(q.get("bridgeId") or uuid.uuid4().hex, q.get("name", ""))
            if len(parts) >= 2 and parts[0] == "channels":
                return self._channel(method, parts[1], parts[2:], q)
            if len(parts) >= 2 and parts[0] == "bridges":
                return self._bridge(method, parts[1], parts[2:], q)
            if len(parts) == 2 and parts[0] == "applications" and method == "GET":
                sock = sim.sockets.get(parts[1])
                if sock is None or sock.closed.is_set():
                    return self._error(404, "Application not found")
                return self._reply(
                    200,
                    {
                        "name": parts[1],
                        "channel_ids": [],
                        "bridge_ids": [],
                        "endpoint_ids": [],
                        "device_names": [],
                        "events_allowed": [],
                        "events_disallowed": [],
                    },
                )
            if len(parts) == 2 and parts[0] == "playbacks" and method == "DELETE":
                playback = sim.playbacks.get(parts[1])
                if playback is None or playback["state"] == "done":
                    return self._error(404, "Playback not found")
                playback["state"] = "done"
                for played in sim.bridge_playbacks:
                    if played["id"] == parts[1] and played["stopped"] is None:
                        played["stopped"] = time.monotonic()
                return self._reply(204)
            if len(parts) == 2 and parts[0] == "playbacks" and method == "GET":
                playback = sim.playbacks.get(parts[1])
                if playback is None or playback["state"] == "done":
                    return self._error(404, "Playback not found")
                return self._reply(200, playback)
        return self._error(404, "Resource not found")

    def _external_media(self, q: dict) -> None:
        sim = self.sim
        host, _, port = q["external_host"].rpartition(":")
        if q.get("format", "") != sim.law:
            return self._error(500, "An internal error prevented this request from being handled")
        channel_id = q.get("channelId") or uuid.uuid4().hex
        if channel_id in sim.channels:
            return self._error(409, "Channel with given unique ID already exists")
        chan = Channel(
            channel_id,
            f"UnicastRTP/{host}:{port}-{uuid.uuid4().hex[:8]}",
            "external",
            state="Up",
            app=q["app"],
            args=[q.get("data", "")],
            external_host=(host, int(port)),
        )
        sim.channels[channel_id] = chan
        # Like Asterisk, the channel's StasisStart may reach the app before this reply.
        sim.emit(chan.app, "StasisStart", args=chan.args, channel=chan.to_json())
        reply = chan.to_json()
        # Asterisk's side of the media: allocated now, so a socket exists per channel.
        chan.leg = None
        chan.local_port_sock = None
        local = self._external_local(chan)
        reply["channelvars"] = {"UNICASTRTP_LOCAL_ADDRESS": local[0], "UNICASTRTP_LOCAL_PORT": str(local[1])}
        return self._reply(200, reply)

    def _external_local(self, chan: Channel) -> tuple[str, int]:
        """The address Asterisk sends from: the caller leg's socket once bridged. Each
        externalMedia channel is reserved a caller leg here: the oldest unbridged caller
        whose id the channel id names (callbridge derives it), else any unbridged one."""
        sim = self.sim
        candidates = [c for c in sim.channels.values() if c.kind == "caller" and c.bridge is None]
        named = [c for c in candidates if c.id in chan.id]
        target = (named or candidates or [None])[0]
        if target is None:
            raise ValueError("no caller for this externalMedia channel")
        chan.reserved_for = target.id
        return target.leg.local

    def _create_bridge(self, bridge_id: str, name: str) -> None:
        if bridge_id in self.sim.bridges:
            return self._reply(200, self.sim.bridges[bridge_id].to_json())
        bridge = Bridge(bridge_id, name)
        self.sim.bridges[bridge_id] = bridge
        return self._reply(200, bridge.to_json())

    def _channel(self, method: str, channel_id: str, rest: list[str], q: dict) -> None:
        sim = self.sim
        chan = sim.channels.get(channel_id)
        if chan is None:
            return self._error(404, "Channel not found")
        if not rest and method == "GET":
            return self._reply(200, chan.to_json())
        if not rest and method == "DELETE":
            # ARI's reason names a Q.850 cause (the ones callbridge sends; normal otherwise).
            sim.hangup(
                channel_id, by="ari", cause={"busy": 17, "congestion": 34}.get(q.get("reason", ""), 16)
            )
            return self._reply(204)
        if rest == ["variable"] and method == "POST":
            chan.variables[q["variable"]] = q.get("value", "")
            return self._reply(204)
        if rest == ["variable"] and method == "GET":
            if q["variable"] not in chan.variables:
                return self._error(404, "Provided variable was not found")
            return self._reply(200, {"value": chan.variables[q["variable"]]})
        if rest == ["continue"] and method == "POST":
            if not sim.continue_in_dialplan(
                channel_id, q.get("context", ""), q.get("extension", ""), int(q.get("priority", "1"))
            ):
                return self._error(409, "Channel not in Stasis application")
            return self._reply(204)
        if rest == ["answer"] and method == "POST":
            chan.state = "Up"
            record = sim.calls.get(channel_id)
            if record and record.answered is None:
                record.answered = time.monotonic()
            return self._reply(204)
        if rest == ["play"] and method == "POST":
            playback_id = q.get("playbackId") or uuid.uuid4().hex
            playback = {
                "id": playback_id,
                "media_uri": q.get("media", ""),
                "state": "playing",
                "target_uri": f"channel:{channel_id}",
                "language": "en",
            }
            sim.playbacks[playback_id] = playback
            record = sim.calls.get(channel_id)
            if record is not None:
                record.playbacks.append({"media": playback["media_uri"], "at": time.monotonic()})
            sim.emit(chan.app, "PlaybackStarted", playback=playback)
            timer = threading.Timer(sim.playback_seconds, self._finish_playback, (chan.app, playback))
            timer.daemon = True
            timer.start()
            return self._reply(201, playback)
        return self._error(404, "Resource not found")

    def _finish_playback(self, app: str, playback: dict) -> None:
        with self.sim.lock:
            playback["state"] = "done"
        self.sim.emit(app, "PlaybackFinished", playback=playback)

    def _bridge(self, method: str, bridge_id: str, rest: list[str], q: dict) -> None:
        sim = self.sim
        bridge = sim.bridges.get(bridge_id)
        if bridge is None:
            return self._error(404, "Bridge not found")
        if not rest and method == "DELETE":
            for channel_id in list(bridge.channels):
                if channel_id in sim.channels:
                    sim.channels[channel_id].bridge = None
            del sim.bridges[bridge_id]
            for chan in sim.channels.values():
                if (
                    chan.kind in ("caller", "destination")
                    and chan.leg is not None
                    and chan.leg.remote is not None
                    and chan.bridge is None
                ):
                    chan.leg.remote = None
            return self._reply(204)
        if rest == ["addChannel"] and method == "POST":
            ids = [c for c in q.get("channel", "").split(",") if c]
            for channel_id in ids:
                chan = sim.channels.get(channel_id)
                if chan is None:
                    return self._error(400, f"Channel not found: {channel_id}")
                if not chan.app:
                    return self._error(422, "Channel not in Stasis application")
            for channel_id in ids:
                chan = sim.channels[channel_id]
                chan.bridge = bridge_id
                if channel_id not in bridge.channels:
                    bridge.channels.append(channel_id)
                sim.emit(chan.app, "ChannelEnteredBridge", bridge=bridge.to_json(), channel=chan.to_json())
            sim._link_media(bridge)
            return self._reply(204)
        if rest == ["play"] and method == "POST":  # a sound for everyone in the bridge, until stopped
            playback_id = q.get("playbackId") or uuid.uuid4().hex
            playback = {
                "id": playback_id,
                "media_uri": q.get("media", ""),
                "state": "playing",
                "target_uri": f"bridge:{bridge_id}",
                "language": "en",
            }
            sim.playbacks[playback_id] = playback
            sim.bridge_playbacks.append(
                {
                    "id": playback_id,
                    "bridge": bridge_id,
                    "media": playback["media_uri"],
                    "started": time.monotonic(),
                    "stopped": None,
                }
            )
            return self._reply(201, playback)
        if rest == ["removeChannel"] and method == "POST":
            for channel_id in [c for c in q.get("channel", "").split(",") if c]:
                if not sim.remove_from_bridge(bridge, channel_id):
                    return self._error(422, "Channel not in this bridge")
            return self._reply(204)
        return self._error(404, "Resource not found")

    # --- /sim: the test harness's controls


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5; workers starting together open three
    # connections each, and a dropped SYN costs the client a 1 s retransmission (seen as
    # 1.1 s set-up outliers and the kernel's ListenOverflows counter in the benchmark).
    request_queue_size = 1024


def serve(host: str = "127.0.0.1", port: int = 0, **options) -> tuple[Server, SimulatedAsterisk]:
    sim = SimulatedAsterisk(**options)
    handler = type("BoundHandler", (Handler,), {"sim": sim})
    server = Server((host, port), handler)
    return server, sim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated Asterisk (ARI + callers)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--username", default="asterisk")
    parser.add_argument("--password", default="asterisk")
    parser.add_argument("--law", choices=["ulaw", "alaw"], default="ulaw")
    parser.add_argument("--playback-seconds", type=float, default=1.0)
    parser.add_argument(
        "--callers-in-step",
        action="store_true",
        help="every caller sends its frame at the same instant of each 20 ms (default: each at its own phase, as phones do)",
    )
    args = parser.parse_args(argv)
    # Many threads (callers, connections) share one GIL here; a short switch interval keeps
    # the timestamps this simulator records close to the real arrival times.
    sys.setswitchinterval(0.0005)
    server, _ = serve(
        args.host,
        args.port,
        username=args.username,
        password=args.password,
        law=args.law,
        playback_seconds=args.playback_seconds,
        callers_in_step=args.callers_in_step,
    )
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
