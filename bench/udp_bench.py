"""What the media loop's socket calls cost, per packet, in CPU time: the choices behind
call_worker/media.py's socket.

    python bench/udp_bench.py [--packets 200000]

- send: `sendto` on a socket with a timeout (what rtp-out did: Python polls the socket
  for writability before every send), `sendto` on a non-blocking socket (today), and
  `send` on a connected socket (no destination tuple to convert, no route lookup);
- receive: `recvfrom_into` (today; the source is checked against Asterisk's) against
  `recv_into` on a connected socket (the kernel drops foreign packets itself, silently);
- the append: base64 and the JSON text of one 20 ms frame (call_worker/realtime_adapter.py).

Prints JSON, microseconds per call. Sends go to a loopback socket nobody reads (the
kernel drops them once its buffer is full, which costs the sender the same), so the
figures are the sender's cost alone.
"""

from __future__ import annotations

import argparse
import json
import socket
import time


def _cost(call, count: int) -> float:
    start = time.thread_time()
    for _ in range(count):
        call()
    return (time.thread_time() - start) / count * 1e6


def send_costs(count: int) -> dict[str, float]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    destination = sink.getsockname()
    packet = bytes(172)
    results = {}
    timed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    timed.settimeout(0.2)
    results["sendto_with_timeout"] = _cost(lambda: timed.sendto(packet, destination), count)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.setblocking(False)

    def sendto() -> None:
        try:
            plain.sendto(packet, destination)
        except BlockingIOError:
            pass

    results["sendto_nonblocking"] = _cost(sendto, count)
    connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    connected.setblocking(False)
    connected.connect(destination)

    def send() -> None:
        try:
            connected.send(packet)
        except BlockingIOError:
            pass

    results["send_connected"] = _cost(send, count)
    for sock in (sink, timed, plain, connected):
        sock.close()
    return results


def receive_costs(count: int) -> dict[str, float]:
    """Each receive finds a packet waiting (sent just before, outside the timing)."""
    results = {}
    for name, connect in (("recvfrom_into", False), ("recv_into_connected", True)):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        if connect:
            receiver.connect(sender.getsockname())
        buffer = bytearray(2048)
        packet = bytes(172)
        spent = 0.0
        for _ in range(count):
            sender.sendto(packet, receiver.getsockname())
            start = time.thread_time_ns()
            if connect:
                receiver.recv_into(buffer)
            else:
                receiver.recvfrom_into(buffer)
            spent += time.thread_time_ns() - start
        results[name] = spent / count / 1e3
        receiver.close()
        sender.close()
    return results


def append_cost(count: int) -> float:
    from call_worker.realtime_adapter import RealtimeAdapter

    append = RealtimeAdapter.append
    frame = memoryview(bytes(160))
    return _cost(lambda: append(None, frame), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    results = {"send_us": send_costs(args.packets), "receive_us": receive_costs(args.packets // 4)}
    results["append_text_us"] = append_cost(args.packets)
    print(json.dumps({name: _rounded(value) for name, value in results.items()}, indent=1))


def _rounded(value):
    return {k: round(v, 2) for k, v in value.items()} if isinstance(value, dict) else round(value, 2)


if __name__ == "__main__":
    main()
