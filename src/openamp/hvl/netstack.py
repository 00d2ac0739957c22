"""The smallest IPv4 host that can be pinged and can ping: ARP and ICMP echo on Ethernet.

The remote of the seed's demo4 is Zephyr with a full IP stack; ours needs only what
the demo exercises: answer ARP for its address, answer ICMP echo requests, and send its
own echo requests (resolving the target with ARP first) and recognise the replies.  The
Linux side's real IP stack, behind the TAP interface, does the rest.  The same class
also plays the Linux side over a socket pair when no TAP can be made.

Every frame from the wire is untrusted: anything short, malformed, not for us or with a
bad checksum is ignored (and counted), never an exception.  The wire formats are the
network's, big-endian (``!``), one ``struct`` each.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..errors import UsageError

ETH = struct.Struct("!6s6sH")
"""Ethernet header: destination, source, EtherType (14 bytes)."""
ARP = struct.Struct("!HHBBH6s4s6s4s")
"""ARP for IPv4 over Ethernet: htype, ptype, hlen, plen, oper, sha, spa, tha, tpa (28 bytes)."""
IPV4 = struct.Struct("!BBHHHBBH4s4s")
"""IPv4 header without options: version/IHL, TOS, total length, id, flags/fragment,
TTL, protocol, checksum, source, destination (20 bytes)."""
ICMP_ECHO = struct.Struct("!BBHHH")
"""ICMP echo: type, code, checksum, identifier, sequence (8 bytes)."""

ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ARP_REQUEST: Final = 1
ARP_REPLY: Final = 2
IPPROTO_ICMP: Final = 1
ICMP_ECHO_REPLY: Final = 0
ICMP_ECHO_REQUEST: Final = 8
BROADCAST: Final = b"\xff" * 6
TTL: Final = 64


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def format_mac(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


@dataclass
class EchoReply:
    """An ICMP echo reply that came back: who, which sequence, how big, when."""

    source: str
    sequence: int
    size: int
    ttl: int
    received_at: float


class NetStack:
    """One IPv4 address on one Ethernet link; frames go out through ``send``.

    Feed every received frame to :meth:`handle`.  ``ip`` is the address with or
    without a prefix length (``192.168.200.2/24``).
    """

    def __init__(self, mac: bytes, ip: str, send: Callable[[bytes], None]) -> None:
        if len(mac) != 6:
            raise UsageError(f"a MAC address has 6 bytes, got {len(mac)}")
        iface = ipaddress.IPv4Interface(ip)
        self.mac = bytes(mac)
        self.ip = iface.ip
        self.network = iface.network
        self.send = send
        self.arp_cache: dict[bytes, bytes] = {}
        self.replies: list[EchoReply] = []
        self.ident = 0x4F41  # 'OA'
        self.sent_at: dict[int, float] = {}
        self.counters = {"arp_replies": 0, "echo_replies": 0, "ignored": 0, "bad": 0}

    # -- receiving ------------------------------------------------------------------------

    def handle(self, frame: bytes) -> None:
        """Process one frame from the wire: answer what needs an answer, learn what is learnt."""
        if len(frame) < ETH.size:
            self.counters["bad"] += 1
            return
        dst, src, ethertype = ETH.unpack_from(frame)
        if dst not in (self.mac, BROADCAST):
            self.counters["ignored"] += 1
            return
        payload = frame[ETH.size :]
        if ethertype == ETH_P_ARP:
            self._arp(payload)
        elif ethertype == ETH_P_IP:
            self._ipv4(src, payload)
        else:
            self.counters["ignored"] += 1

    def _arp(self, data: bytes) -> None:
        if len(data) < ARP.size:
            self.counters["bad"] += 1
            return
        htype, ptype, hlen, plen, oper, sha, spa, _tha, tpa = ARP.unpack_from(data)
        if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
            self.counters["ignored"] += 1
            return
        self.arp_cache[spa] = sha
        if oper == ARP_REQUEST and tpa == self.ip.packed:
            reply = ARP.pack(1, ETH_P_IP, 6, 4, ARP_REPLY, self.mac, self.ip.packed, sha, spa)
            self.send(ETH.pack(sha, self.mac, ETH_P_ARP) + reply)
            self.counters["arp_replies"] += 1

    def _ipv4(self, src_mac: bytes, data: bytes) -> None:
        if len(data) < IPV4.size:
            self.counters["bad"] += 1
            return
        vihl, _tos, total, _ident, frag, ttl, proto, _csum, src, dst = IPV4.unpack_from(data)
        ihl = (vihl & 0xF) * 4
        if vihl >> 4 != 4 or ihl < IPV4.size or total < ihl or total > len(data):
            self.counters["bad"] += 1
            return
        if dst != self.ip.packed or proto != IPPROTO_ICMP or frag & 0x3FFF:
            self.counters["ignored"] += 1
            return
        if checksum(data[:ihl]) != 0:
            self.counters["bad"] += 1
            return
        icmp = data[ihl:total]
        if len(icmp) < ICMP_ECHO.size or checksum(icmp) != 0:
            self.counters["bad"] += 1
            return
        kind, code, _c, ident, seq = ICMP_ECHO.unpack_from(icmp)
        self.arp_cache.setdefault(src, src_mac)
        if kind == ICMP_ECHO_REQUEST and code == 0:
            body = icmp[ICMP_ECHO.size :]
            header = ICMP_ECHO.pack(ICMP_ECHO_REPLY, 0, 0, ident, seq)
            reply = header[:2] + struct.pack("!H", checksum(header + body)) + header[4:] + body
            self._send_ip(src_mac, src, reply)
            self.counters["echo_replies"] += 1
        elif kind == ICMP_ECHO_REPLY and ident == self.ident:
            self.replies.append(
                EchoReply(
                    str(ipaddress.IPv4Address(src)),
                    seq,
                    len(icmp),
                    ttl,
                    time.perf_counter(),
                )
            )

    # -- sending --------------------------------------------------------------------------

    def _send_ip(self, dst_mac: bytes, dst_ip: bytes, payload: bytes, ident: int = 0) -> None:
        total = IPV4.size + len(payload)
        header = IPV4.pack(
            0x45, 0, total, ident, 0x4000, TTL, IPPROTO_ICMP, 0, self.ip.packed, dst_ip
        )
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        self.send(ETH.pack(dst_mac, self.mac, ETH_P_IP) + header + payload)

    def arp_request(self, target: str) -> None:
        """Broadcast "who has ``target``"."""
        tpa = ipaddress.IPv4Address(target).packed
        request = ARP.pack(1, ETH_P_IP, 6, 4, ARP_REQUEST, self.mac, self.ip.packed, b"\0" * 6, tpa)
        self.send(ETH.pack(BROADCAST, self.mac, ETH_P_ARP) + request)

    def resolved(self, target: str) -> bytes | None:
        """The MAC of ``target`` if an ARP reply (or a packet from it) taught us."""
        return self.arp_cache.get(ipaddress.IPv4Address(target).packed)

    def echo_request(self, target: str, sequence: int, payload: bytes = b"") -> None:
        """Send one ICMP echo request to ``target`` (whose MAC must be :meth:`resolved`)."""
        mac = self.resolved(target)
        if mac is None:
            raise UsageError(f"{target} is not resolved yet; send an ARP request first")
        header = ICMP_ECHO.pack(ICMP_ECHO_REQUEST, 0, 0, self.ident, sequence & 0xFFFF)
        icmp = header[:2] + struct.pack("!H", checksum(header + payload)) + header[4:] + payload
        self.sent_at[sequence & 0xFFFF] = time.perf_counter()
        self._send_ip(mac, ipaddress.IPv4Address(target).packed, icmp, ident=sequence & 0xFFFF)

    def take_reply(self, sequence: int) -> EchoReply | None:
        """The reply to ``sequence`` if it came."""
        for i, reply in enumerate(self.replies):
            if reply.sequence == sequence & 0xFFFF:
                return self.replies.pop(i)
        return None
