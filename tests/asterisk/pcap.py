"""Reading RTP out of a tcpdump capture of the loopback interface, independently of
callbridge's own counters: classic pcap, Ethernet (DLT_EN10MB) or Linux cooked (SLL)
link layers, IPv4, UDP."""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from simulators import g711

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_LINK_OFFSETS = {1: 14, 113: 16, 276: 20}  # Ethernet, Linux SLL, Linux SLL2


@dataclass
class RtpPacket:
    time: float  # CLOCK_REALTIME seconds, from the kernel
    src: tuple[str, int]
    dst: tuple[str, int]
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @property
    def level(self) -> float:
        return g711.level(self.payload, "ulaw")


def read_rtp(path: Path) -> list[RtpPacket]:
    data = path.read_bytes()
    if len(data) < _GLOBAL.size:
        return []
    magic, _, _, _, _, _, linktype = _GLOBAL.unpack_from(data)
    nanos = magic == 0xA1B23C4D
    link = _LINK_OFFSETS.get(linktype)
    if link is None:
        raise ValueError(f"unsupported pcap link type {linktype}")
    packets = []
    offset = _GLOBAL.size
    while offset + _RECORD.size <= len(data):
        seconds, fraction, captured, _ = _RECORD.unpack_from(data, offset)
        offset += _RECORD.size
        frame = data[offset : offset + captured]
        offset += captured
        stamp = seconds + fraction / (1e9 if nanos else 1e6)
        ip = frame[link:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        header = (ip[0] & 0x0F) * 4
        udp = ip[header:]
        src_port, dst_port = struct.unpack_from("!HH", udp)
        rtp = udp[8:]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        _, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", rtp)
        packets.append(
            RtpPacket(
                stamp,
                (".".join(map(str, ip[12:16])), src_port),
                (".".join(map(str, ip[16:20])), dst_port),
                second & 0x7F,
                bool(second & 0x80),
                sequence,
                timestamp,
                ssrc,
                bytes(rtp[12:]),
            )
        )
    return packets


def streams(packets: list[RtpPacket]) -> dict[tuple, list[RtpPacket]]:
    """Packets grouped by (source, destination)."""
    grouped: dict[tuple, list[RtpPacket]] = defaultdict(list)
    for packet in packets:
        grouped[(packet.src, packet.dst)].append(packet)
    return dict(grouped)


def in_range(port: int, span: tuple[int, int]) -> bool:
    return span[0] <= port <= span[1]
