"""Which local address faces Asterisk.

`LOCAL_IP_ADDRESS` may be left empty; then RTP binds to the address the kernel would use
as the source towards `ASTERISK_HOST`. Connecting a UDP socket chooses that route without
sending a packet, so this works offline and behind any number of interfaces.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


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


@dataclass(frozen=True)
class ListenAddress:
    """Where a server of ours listens (METRICS_LISTEN): shown as `callbridge config` takes it."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """HOST:PORT, [IPv6]:PORT; raises ValueError."""
        host, sep, port_text = text.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        if not sep or not host or not 1 <= port <= 65535 or any(c in host for c in "/ []"):
            raise ValueError(f"must be HOST:PORT like 127.0.0.1:9464 (got {text.strip()[:60]!r})")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
