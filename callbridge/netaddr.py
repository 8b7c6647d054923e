"""Which local address faces Asterisk.

`LOCAL_IP_ADDRESS` may be left empty; then RTP binds to the address the kernel would use
as the source towards `ASTERISK_HOST`. Connecting a UDP socket chooses that route without
sending a packet, so this works offline and behind any number of interfaces.
"""

from __future__ import annotations

import socket


def local_address_towards(host: str, port: int = 9) -> str:
    """The local IP the routing table picks for `host`; raises OSError when there is no route."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(sockaddr)
        return probe.getsockname()[0]


def rtp_bind_address(configured: str, asterisk_host: str) -> str:
    return configured or local_address_towards(asterisk_host)
