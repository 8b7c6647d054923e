"""Work that waits on the network, run in helper processes (supervisor/helpers.py) so that
the supervisor's loop never does: looking up ASTERISK_HOST, and tearing down what a call
left in Asterisk when its worker could not (callbridge/teardown.py holds the teardown)."""

from __future__ import annotations

import socket
import time

from callbridge.ari_rest import AriRest
from callbridge.config import Settings
from callbridge.teardown import Target, call_targets, remove_all

__all__ = ["address_from_json", "call_targets", "resolve", "teardown"]

# Per request, far above any healthy Asterisk's answer time: a slow one must still be done.
REQUEST_TIMEOUT = 15.0
TEARDOWN_LIMIT = 120.0  # seconds of retries before a helper gives up (reconciliation then)


def resolve(host: str, port: int) -> list:
    """getaddrinfo's entries, as JSON (lists) for the result pipe."""
    return [
        [family, kind, proto, canonical, list(sockaddr)]
        for family, kind, proto, canonical, sockaddr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )
    ]


def address_from_json(entry: list) -> tuple:
    family, kind, proto, canonical, sockaddr = entry
    return (socket.AddressFamily(family), socket.SocketKind(kind), proto, canonical, tuple(sockaddr))


def teardown(settings: Settings, targets: list[Target], call_id: str = "") -> dict:
    ari = AriRest.for_settings(settings, timeout=REQUEST_TIMEOUT)
    try:
        left = remove_all(ari, targets, time.monotonic() + TEARDOWN_LIMIT, call_id)
    finally:
        ari.close()
    return {"left": [target.object_id for target in left]}
