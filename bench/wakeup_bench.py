"""What one thread wake-up costs on this machine, in CPU time of the woken process.

    python bench/wakeup_bench.py [--seconds 2]

A call worker is mostly asleep: per second of call it wakes about 170 times (rtp-in 50
and rtp-out 50 for the packets, the realtime sender 50 for the uplink, the Realtime
receive and control loops 10 each), and does little work per wake-up (a few system
calls, a ring copy, base64 and JSON of 160 bytes). So the CPU a call costs is mostly
the price of a wake-up, which depends on the machine far more than on our code: on a
virtual machine a timer wake-up can cost tens of microseconds of the woken process's
CPU. This prints that price for the three kinds of wake-up a worker uses, and the
per-call CPU it implies, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time

WAKEUPS_PER_CALL_SECOND = {"sleep": 50, "udp": 50, "event": 50, "poll": 20}


def sleep_cost(seconds: float, interval: float = 0.020) -> float:
    """CPU per `time.sleep(interval)` (the paced sender's wait), in microseconds."""
    count = max(1, int(seconds / interval))
    start = time.process_time()
    for _ in range(count):
        time.sleep(interval)
    return (time.process_time() - start) / count * 1e6


def udp_cost(seconds: float, interval: float = 0.020) -> float:
    """CPU per datagram received by a thread blocked in recvfrom (rtp-in), the sender
    being another process, as Asterisk is."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)  # a lost datagram fails the run instead of hanging it
    address = receiver.getsockname()
    count = max(1, int(seconds / interval))
    pid = os.fork()
    if pid == 0:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(count + 1):
            sender.sendto(bytes(172), address)
            time.sleep(interval)
        os._exit(0)
    buffer = bytearray(2048)
    receiver.recvfrom_into(buffer)  # the first one starts the clock
    start = time.process_time()
    for _ in range(count):
        receiver.recvfrom_into(buffer)
    cost = (time.process_time() - start) / count * 1e6
    os.waitpid(pid, 0)
    receiver.close()
    return cost


def event_cost(seconds: float, interval: float = 0.020) -> float:
    """CPU per hand-off through a threading.Event (rtp-in waking the realtime sender),
    net of the setter's own sleep."""
    count = max(1, int(seconds / interval))
    wake = threading.Event()

    def waiter() -> None:
        for _ in range(count):
            wake.wait()
            wake.clear()

    thread = threading.Thread(target=waiter)
    thread.start()
    start = time.process_time()
    for _ in range(count):
        time.sleep(interval)
        wake.set()
    thread.join()
    total = (time.process_time() - start) / count * 1e6
    return max(0.0, total - sleep_cost(min(seconds, 1.0), interval))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per kind")
    args = parser.parse_args()
    costs = {
        "sleep": sleep_cost(args.seconds),
        "udp": udp_cost(args.seconds),
        "event": event_cost(args.seconds),
    }
    costs["poll"] = costs["sleep"]  # a wait with a timeout that expires: a timer wake-up
    per_call_ms = sum(costs[kind] * n for kind, n in WAKEUPS_PER_CALL_SECOND.items()) / 1000
    print(
        json.dumps(
            {
                "cpu_us_per_wakeup": {kind: round(value, 1) for kind, value in costs.items()},
                "wakeups_per_call_second": WAKEUPS_PER_CALL_SECOND,
                "implied_cpu_ms_per_call_second": round(per_call_ms, 2),
                "implied_percent_of_a_core_per_call": round(per_call_ms / 10, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
