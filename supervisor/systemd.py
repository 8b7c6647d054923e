"""sd_notify without a dependency: one datagram to $NOTIFY_SOCKET, nothing when unset.

READY=1 once ARI is connected, WATCHDOG=1 from the main loop while it is healthy,
STOPPING=1 when a drain begins, STATUS=... with the live call count.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send `message` to systemd; False when not under systemd or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        # Non-blocking: a systemd too busy to read its queue must not stall the loop; a lost
        # WATCHDOG=1 is sent again at the next tick.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.connect(address)
            sock.send(message.encode())
        return True
    except OSError:
        return False
