"""Where a call's CPU goes, wake-ups aside: the media loop's work per 20 ms, timed in-process.

    python bench/media_bench.py [--frames 20000]

Runs the worker's own MediaLoop and Conversation (call_worker/media.py, conversation.py)
over real sockets, without sleeping: each step is one caller packet in (received,
validated, through the uplink ring, sent on as the Realtime append over a real WebSocket)
and one tick (the link read, one frame out to the caller). The peers are plain sockets that
only drain. So this is the CPU a frame costs besides the two wake-ups: compare it with
bench/wakeup_bench.py's price of a wake-up. Prints JSON: microseconds of this thread's CPU
per step and per part.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import threading
import time
from dataclasses import replace

from call_worker import rtp
from call_worker.conversation import Conversation
from call_worker.media import MediaLoop
from call_worker.playback import Playback
from call_worker.realtime_adapter import RealtimeAdapter
from call_worker.wake import Waker
from callbridge import config as cfg
from shm_ring import CallSegment
from shm_ring.segment import segment_name

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_sink() -> tuple[int, threading.Thread]:
    """A WebSocket server that accepts one client and then only reads: the Realtime side."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        while conn.recv(65536):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    args = parser.parse_args()
    port, _ = websocket_sink()
    env = {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_USERNAME": "u",
        "ASTERISK_PASSWORD": "p",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{port}/v1/realtime",
    }
    settings = replace(cfg.load(env_file=None, environ=env).settings, openai_greeting="")
    segment = CallSegment.create(segment_name(f"media-bench-{time.time_ns()}", "cbbench"))
    try:
        header = segment.header
        playback = Playback(segment.downlink)
        stop = threading.Event()
        conversation = Conversation(
            settings, header, segment.uplink, playback, RealtimeAdapter(settings), Waker(), stop, print
        )
        conversation.begin(*conversation.connect(5), greet=False)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        asterisk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the caller's side
        asterisk.bind(("127.0.0.1", 0))
        asterisk.setblocking(False)
        loop = MediaLoop(sock, header, segment.uplink, playback, conversation, 0, 0xFF, stop, Waker())
        loop.asterisk = asterisk.getsockname()
        conversation.tick(time.monotonic())  # installs the link
        packet = rtp.build(bytes(160), 0, 1, 160, 1234)
        destination = sock.getsockname()
        drain = bytearray(2048)
        parts = {"packet_in": 0, "tick_and_frame_out": 0}
        deadline = time.monotonic()
        for _ in range(args.frames):
            asterisk.sendto(packet, destination)  # (outside the timing, as Asterisk's)
            started = time.thread_time_ns()
            loop._receive()
            middle = time.thread_time_ns()
            ticked = time.monotonic()
            conversation.tick(ticked)
            deadline = loop._send_frame(deadline, ticked)
            ended = time.thread_time_ns()
            parts["packet_in"] += middle - started
            parts["tick_and_frame_out"] += ended - middle
            try:
                while asterisk.recv_into(drain):
                    pass
            except BlockingIOError:
                pass
        total = sum(parts.values())
        result = {
            "frames": args.frames,
            "us_per_step": round(total / args.frames / 1000, 2),
            "us_per_part": {name: round(ns / args.frames / 1000, 2) for name, ns in parts.items()},
            "frames_to_realtime": segment.uplink.read_total // 160,
        }
        print(json.dumps(result, indent=1))
        conversation.close()
        stop.set()
    finally:
        segment.close()
        segment.unlink()


if __name__ == "__main__":
    main()
