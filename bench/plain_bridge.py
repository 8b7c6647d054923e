"""A plain Asterisk-to-Realtime bridge, the baseline callbridge's media path is measured against.

    python bench/plain_bridge.py --ari-port P --ari-user U --ari-password W --app A
        --realtime-url ws://.../v1/realtime --api-key K --rtp-ports LOW-HIGH --summary FILE

What a first version of such a service looks like: one process, and per call one receiving
thread (RTP from Asterisk to the model) and one sending thread (the model's audio to
Asterisk every 20 ms, reading the Realtime socket between frames); no rings, no
supervisor, no records. It speaks the same ARI, RTP and Realtime protocol as callbridge
and applies the same two rules to the frames it sends (an absolute 20 ms schedule, and
after a stall of more than 10 ms the schedule restarts instead of catching up in a
burst). With --priority its sending threads take the SCHED_FIFO priority callbridge's media
threads take (MEDIA_REALTIME_PRIORITY), so that what differs is the structure alone. It imports nothing of callbridge
(bench/compare.py --baseline plain runs it beside callbridge). At SIGTERM it writes its
kernel counters (getrusage, every thread) and the seconds of call it carried to --summary.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import requests
import websocket

FRAME = 0.020
SILENCE = b"\xff" * 160  # u-law silence
SESSION = {
    "type": "realtime",
    "instructions": "You answer the phone.",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
    },
}


class Call:
    def __init__(self, bridge: PlainBridge, channel_id: str, port: int) -> None:
        self.bridge, self.channel_id, self.port = bridge, channel_id, port
        self.stop = threading.Event()
        self.audio = bytearray()  # the model's audio not yet sent
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.asterisk: tuple[str, int] | None = None
        self.ws: websocket.WebSocket | None = None
        self.session = requests.Session()  # its own connection to ARI, as each worker has
        self.session.auth = bridge.auth
        self.bridged_at: float | None = None  # the call's seconds count from here, as callbridge's do

    def rest(self, method: str, path: str, **params: str) -> requests.Response:
        return self.session.request(method, f"{self.bridge.base}/{path}", params=params, timeout=10)

    def run(self) -> None:
        """Set the call up, then be its sending thread until the caller hangs up."""
        rest, name = self.rest, self.channel_id
        try:
            self.sock.bind(("127.0.0.1", self.port))
            self.ws = websocket.create_connection(
                self.bridge.realtime_url, header={"Authorization": f"Bearer {self.bridge.api_key}"}
            )
            self.ws.send(json.dumps({"type": "session.update", "session": SESSION}))
            rest("POST", f"channels/{name}/answer")
            rest("POST", "bridges", type="mixing", bridgeId=f"plain-br-{name}")
            media = rest(
                "POST",
                "channels/externalMedia",
                app=self.bridge.app,
                external_host=f"127.0.0.1:{self.port}",
                format="ulaw",
                channelId=f"cb-em-{name}",  # the bench's observer finds the media port by this id
            ).json()
            variables = media["channelvars"]
            self.asterisk = (variables["UNICASTRTP_LOCAL_ADDRESS"], int(variables["UNICASTRTP_LOCAL_PORT"]))
            for _ in range(100):  # 422 until the externalMedia channel has entered the app
                if rest("POST", f"bridges/plain-br-{name}/addChannel", channel=f"{name},cb-em-{name}").ok:
                    break
                time.sleep(0.01)
            self.bridged_at = time.monotonic()
            threading.Thread(target=self.receive, daemon=True).start()
            self.send()
        except Exception as exc:  # noqa: BLE001 - a baseline: say it, hang up, go on
            print(f"plain bridge: call {name} failed: {exc!r}", flush=True)
        finally:
            self.stop.set()
            for path in (f"bridges/plain-br-{name}", f"channels/cb-em-{name}", f"channels/{name}"):
                try:
                    rest("DELETE", path)
                except requests.RequestException as exc:
                    print(f"plain bridge: DELETE {path} failed: {exc!r}", flush=True)
            if self.ws is not None:
                self.ws.close()
            self.sock.close()
            self.session.close()
            self.bridge.ended(self)

    def receive(self) -> None:
        """The receiving thread: each RTP packet from Asterisk, at once, to the model."""
        self.sock.settimeout(0.5)
        while not self.stop.is_set():
            try:
                packet, source = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            if source != self.asterisk or len(packet) < 12 or packet[0] >> 6 != 2:
                continue
            payload = packet[12 + 4 * (packet[0] & 0x0F) :]
            event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(payload).decode()}
            try:
                self.ws.send(json.dumps(event))
            except (websocket.WebSocketException, OSError):
                return

    def send(self) -> None:
        """The sending thread: a frame every 20 ms; between frames, the model's events."""
        if self.bridge.priority > 0:  # as callbridge's media thread, when the bench asks for it
            os.sched_setscheduler(
                0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(self.bridge.priority)
            )
        sequence, timestamp, ssrc = 0, 0, 0x5EED
        deadline = time.monotonic()
        marker = True
        while not self.stop.is_set():
            wait = deadline - time.monotonic()
            if wait > 0:
                if select.select([self.ws.sock], [], [], wait)[0]:
                    self.event(json.loads(self.ws.recv()))
                continue
            with self.lock:
                frame = bytes(self.audio[:160])
                del self.audio[:160]
            if frame:
                frame = frame.ljust(160, SILENCE[:1])
            header = struct.pack("!BBHII", 0x80, (0x80 if marker and frame else 0), sequence, timestamp, ssrc)
            marker = not frame
            self.sock.sendto(header + (frame or SILENCE), self.asterisk)
            sequence, timestamp = (sequence + 1) & 0xFFFF, (timestamp + 160) & 0xFFFFFFFF
            late = time.monotonic() - deadline
            deadline += FRAME + (late if late > 0.010 else 0.0)  # no catch-up burst

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            with self.lock:
                self.audio += base64.b64decode(event["delta"])
        elif kind == "input_audio_buffer.speech_started":  # the caller barges in
            with self.lock:
                self.audio.clear()


class PlainBridge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.base = f"http://127.0.0.1:{args.ari_port}/ari"
        self.auth = (args.ari_user, args.ari_password)
        self.app, self.realtime_url, self.api_key = args.app, args.realtime_url, args.api_key
        self.priority = int(args.priority)
        low, high = (int(p) for p in args.rtp_ports.split("-"))
        self.free_ports = list(range(low + low % 2, high, 2))
        self.calls: dict[str, Call] = {}
        self.lock = threading.Lock()
        self.call_seconds = 0.0
        self.calls_ended = 0
        self.ready_usage = resource.getrusage(resource.RUSAGE_SELF)

    def ended(self, call: Call) -> None:
        with self.lock:
            self.calls.pop(call.channel_id, None)
            self.free_ports.append(call.port)
            if call.bridged_at is not None:
                self.call_seconds += time.monotonic() - call.bridged_at
            self.calls_ended += 1

    def run(self) -> None:
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        events = websocket.create_connection(
            f"ws://{self.base.split('//')[1]}/events?app={self.app}",
            header={"Authorization": f"Basic {token}"},
        )
        self.ready_usage = resource.getrusage(resource.RUSAGE_SELF)  # the interpreter's start is no call's
        print(READY, flush=True)
        while True:
            event = json.loads(events.recv())
            channel = (event.get("channel") or {}).get("id", "")
            if event["type"] == "StasisStart" and not channel.startswith("cb-em-"):
                with self.lock:
                    if not self.free_ports:
                        print(f"plain bridge: no RTP port left for {channel}", flush=True)
                        continue
                    call = self.calls[channel] = Call(self, channel, self.free_ports.pop(0))
                threading.Thread(target=call.run, daemon=True).start()
            elif event["type"] in ("StasisEnd", "ChannelDestroyed"):
                with self.lock:
                    call = self.calls.get(channel)
                if call is not None:
                    call.stop.set()

    def summary(self) -> dict:
        """Its counters since it was ready, and the seconds of call it carried."""
        usage, ready = resource.getrusage(resource.RUSAGE_SELF), self.ready_usage
        fields = ("ru_utime", "ru_stime", "ru_nvcsw", "ru_nivcsw", "ru_minflt")
        return {"calls": self.calls_ended, "call_seconds": self.call_seconds} | {
            name: getattr(usage, name) - getattr(ready, name) for name in fields
        }


# --- for the benchmarks that run it (bench/asterisk_bench.py, bench/calls_bench.py)

READY = "plain bridge: ready"


PRIORITY_VARIABLE = "PLAIN_BRIDGE_PRIORITY"  # bench/compare.py --plain-priority sets it


def command(env: dict[str, str], api_key: str, rtp_ports: tuple[int, int], summary: Path) -> list[str]:
    """How a benchmark starts it, from the variables it would give callbridge (env), with
    its sending threads' SCHED_FIFO priority from PLAIN_BRIDGE_PRIORITY (0: none)."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--ari-port={env['ASTERISK_PORT']}",
        f"--ari-user={env['ASTERISK_USERNAME']}",
        f"--ari-password={env['ASTERISK_PASSWORD']}",
        f"--app={env.get('ARI_APP_NAME', 'openai-app')}",
        f"--realtime-url={env['OPENAI_REALTIME_URL']}?model=gpt-realtime",
        f"--api-key={api_key}",
        f"--rtp-ports={rtp_ports[0]}-{rtp_ports[1]}",
        f"--summary={summary}",
        f"--priority={int(env.get(PRIORITY_VARIABLE) or 0)}",
    ]


def cost(summary: Path) -> dict:
    """The figures bench/cost.py gives for callbridge, from what the bridge wrote at SIGTERM:
    one process, its own counters over the seconds of call it carried."""
    written = json.loads(summary.read_text())
    seconds = written["call_seconds"] or 1e-9
    return {
        "call_seconds": seconds,
        "cost_source": "plain bridge's getrusage",
        "calls_counted": written["calls"],
        "cpu_percent_per_call_kernel": round((written["ru_utime"] + written["ru_stime"]) / seconds * 100, 2),
        "wakeups_per_call_second": round(written["ru_nvcsw"] / seconds, 1),
        "involuntary_switches_per_call_second": round(written["ru_nivcsw"] / seconds, 1),
        "minor_faults_per_call": round(written["ru_minflt"] / max(1, written["calls"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in (
        "ari-port",
        "ari-user",
        "ari-password",
        "app",
        "realtime-url",
        "api-key",
        "rtp-ports",
        "summary",
    ):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--priority", default="0", help="SCHED_FIFO priority of the sending threads; 0: none")
    args = parser.parse_args()
    bridge = PlainBridge(args)

    def stop(*_) -> None:
        with open(args.summary, "w") as out:
            json.dump(bridge.summary(), out)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    bridge.run()


if __name__ == "__main__":
    main()
