"""The pcapng file format (the part a capture needs), written and read without a library.

pcapng (IETF draft ``draft-ietf-opsawg-pcapng``) is a sequence of blocks, each
``u32 type, u32 total length, body, u32 total length``, bodies padded to 4 bytes:

* a **Section Header Block** (``0x0A0D0D0A``) with the byte-order magic ``0x1A2B3C4D``;
* one **Interface Description Block** (type 1) per interface: link-layer type, snap
  length and options (``if_name``, ``if_description``, ``if_tsresol``);
* one **Enhanced Packet Block** (type 6) per packet: interface, 64-bit timestamp in
  the interface's units, captured and original lengths, the data, options
  (``epb_flags``: bit 0 inbound, bit 1 outbound).

Why not a library: the three blocks above are all a capture needs, about a hundred
lines with one :class:`struct.Struct` each, and writing them ourselves keeps pyopenamp's
install at one dependency (a board pays for every package).  The PyPI options were
``python-pcapng`` (reads and writes, but its last release is from 2022) and ``dpkt``
(maintained, but a whole packet library for three blocks); ``tshark`` reading our files
in the tests is the proof that the format is right.

What this module must not do: interpret packet data (that is ``openamp.tools.capture``)
or trust a file it reads -- a short or inconsistent block raises :class:`PcapngError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import OpenAMPError

__all__ = [
    "LINKTYPE_USER0",
    "Interface",
    "Packet",
    "PcapngError",
    "PcapngReader",
    "PcapngWriter",
]

LINKTYPE_USER0 = 147
"""``LINKTYPE_USER0``: the first of the 16 link-layer types (147..162) left for private use."""

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

BLOCK_HEAD = struct.Struct("<II")
"""Every block: type, total length."""
BLOCK_TAIL = struct.Struct("<I")
SHB_BODY = struct.Struct("<IHHq")
"""Section header: byte-order magic, major, minor, section length (-1: unknown)."""
IDB_BODY = struct.Struct("<HHI")
"""Interface description: link type, reserved, snap length."""
EPB_BODY = struct.Struct("<IIIII")
"""Enhanced packet: interface id, timestamp high, timestamp low, captured, original length."""
EPB_HEAD = struct.Struct("<II" + EPB_BODY.format[1:])
"""A packet block's head and fixed body in one: type, total length, then :data:`EPB_BODY`."""
OPTION = struct.Struct("<HH")
"""An option: code, length (the value follows, padded to 4)."""
U32 = struct.Struct("<I")

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
EPB_FLAGS = 2

FLAG_INBOUND = 1
FLAG_OUTBOUND = 2


_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")
"""Padding after ``n`` bytes of data, by ``n % 4``."""


class PcapngError(OpenAMPError):
    """A pcapng file we cannot read: not pcapng, cut short, or inconsistent."""


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    out = bytearray()
    for code, value in options:
        out += OPTION.pack(code, len(value)) + value + b"\0" * _pad(len(value))
    out += OPTION.pack(OPT_ENDOFOPT, 0)
    return bytes(out)


def _block(block_type: int, body: bytes) -> bytes:
    total = BLOCK_HEAD.size + len(body) + BLOCK_TAIL.size
    return BLOCK_HEAD.pack(block_type, total) + body + BLOCK_TAIL.pack(total)


_FLAG_OPTIONS = {
    f: OPTION.pack(EPB_FLAGS, 4) + U32.pack(f) + OPTION.pack(OPT_ENDOFOPT, 0)
    for f in (FLAG_INBOUND, FLAG_OUTBOUND)
}
"""The ``epb_flags`` option block of an inbound or outbound packet, made once."""


@dataclass
class Interface:
    """One interface of a capture (a link, for us)."""

    linktype: int
    name: str = ""
    description: str = ""
    tsresol: int = 9
    """Timestamps are in units of 10**-tsresol seconds (9: nanoseconds)."""
    snaplen: int = 0


@dataclass
class Packet:
    """One packet as read back: interface index, timestamp in nanoseconds, data, flags."""

    interface: int
    timestamp_ns: int
    data: bytes
    flags: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def direction(self) -> str | None:
        """``"in"``, ``"out"`` or None, from ``epb_flags``."""
        if self.flags is None:
            return None
        return {FLAG_INBOUND: "in", FLAG_OUTBOUND: "out"}.get(self.flags & 3)


class PcapngWriter:
    """Write one pcapng section to the binary file ``f`` (which the caller closes).

    ``application`` goes into the section header.  Add interfaces with
    :meth:`add_interface` before their packets; timestamps are nanoseconds since the
    epoch (every interface says ``if_tsresol = 9``).
    """

    def __init__(self, f: BinaryIO, *, application: str = "") -> None:
        self._f = f
        self.interfaces: list[Interface] = []
        opts = [(SHB_USERAPPL, application.encode())] if application else []
        body = SHB_BODY.pack(BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
        f.write(_block(SHB_TYPE, body))

    def add_interface(self, linktype: int, *, name: str = "", description: str = "") -> int:
        """Describe an interface; return its index (for :meth:`write_packet`)."""
        opts = [(IF_TSRESOL, bytes([9]))]
        if name:
            opts.insert(0, (IF_NAME, name.encode()))
        if description:
            opts.insert(1 if name else 0, (IF_DESCRIPTION, description.encode()))
        self._f.write(_block(IDB_TYPE, IDB_BODY.pack(linktype, 0, 0) + _options(opts)))
        self.interfaces.append(Interface(linktype, name, description))
        return len(self.interfaces) - 1

    def packet_block(
        self, interface: int, timestamp_ns: int, data: bytes, flags: int | None = None
    ) -> bytes:
        """The bytes of one Enhanced Packet Block (for writers that batch their writes)."""
        n = len(data)
        pad = _PADDING[n & 3]
        opts = _FLAG_OPTIONS.get(flags) if flags is not None else b""
        if opts is None:
            opts = _options([(EPB_FLAGS, U32.pack(flags or 0))])
        total = EPB_HEAD.size + n + len(pad) + len(opts) + BLOCK_TAIL.size
        return b"".join(
            (
                EPB_HEAD.pack(
                    EPB_TYPE, total, interface, timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF, n, n
                ),
                data,
                pad,
                opts,
                BLOCK_TAIL.pack(total),
            )
        )

    def write_packet(
        self, interface: int, timestamp_ns: int, data: bytes, flags: int | None = None
    ) -> None:
        """Write one packet; ``flags`` is ``epb_flags`` (1 inbound, 2 outbound)."""
        if not 0 <= interface < len(self.interfaces):
            raise PcapngError(f"interface {interface} was not added")
        self._f.write(self.packet_block(interface, timestamp_ns, data, flags))

    def write_blocks(self, blocks: bytes) -> None:
        """Write blocks made by :meth:`packet_block`."""
        self._f.write(blocks)


class PcapngReader:
    """Read the packets of a pcapng file (every section; either byte order).

    Iterating gives :class:`Packet` s in file order; :attr:`interfaces` fills as
    interface blocks are read (indices restart with each section, as the format says).
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.interfaces: list[Interface] = []
        self.application = ""

    @classmethod
    def open(cls, path: str) -> PcapngReader:
        """A reader over the file at ``path`` (read whole)."""
        with open(path, "rb") as f:
            return cls(f.read())

    def __iter__(self) -> Iterator[Packet]:
        data = self._data
        pos = 0
        order = "<"
        if len(data) < 12 or data[:4] != b"\x0a\x0d\x0d\x0a":
            raise PcapngError("not a pcapng file (no section header block at its start)")
        while pos < len(data):
            if len(data) - pos < 12:
                raise PcapngError(f"a block at {pos} is cut short")
            btype = struct.unpack_from(order + "I", data, pos)[0]
            if btype == SHB_TYPE:
                magic = data[pos + 8 : pos + 12]
                if magic == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif magic == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise PcapngError(f"section header at {pos} has no byte-order magic")
                self.interfaces = []
            total = struct.unpack_from(order + "I", data, pos + 4)[0]
            if total < 12 or total % 4 or pos + total > len(data):
                raise PcapngError(f"block at {pos} claims {total} bytes")
            body = data[pos + 8 : pos + total - 4]
            if btype == SHB_TYPE:
                opts = self._options(body, 16, order)
                self.application = opts.get(SHB_USERAPPL, [b""])[0].decode(errors="replace")
            elif btype == IDB_TYPE:
                self.interfaces.append(self._interface(body, order))
            elif btype == EPB_TYPE:
                yield self._packet(body, order, pos)
            pos += total

    def _options(self, body: bytes, start: int, order: str) -> dict[int, list[bytes]]:
        out: dict[int, list[bytes]] = {}
        pos = start
        while pos + 4 <= len(body):
            code, length = struct.unpack_from(order + "HH", body, pos)
            if code == OPT_ENDOFOPT:
                break
            value = body[pos + 4 : pos + 4 + length]
            if len(value) != length:
                raise PcapngError(f"option {code} runs past its block")
            out.setdefault(code, []).append(value)
            pos += 4 + length + _pad(length)
        return out

    def _interface(self, body: bytes, order: str) -> Interface:
        if len(body) < 8:
            raise PcapngError("interface description block is cut short")
        linktype, _r, snaplen = struct.unpack_from(order + "HHI", body, 0)
        opts = self._options(body, 8, order)
        tsresol = opts.get(IF_TSRESOL, [bytes([6])])[0][0]
        if tsresol & 0x80:
            raise PcapngError("binary timestamp resolutions are not supported")
        return Interface(
            linktype,
            opts.get(IF_NAME, [b""])[0].decode(errors="replace"),
            opts.get(IF_DESCRIPTION, [b""])[0].decode(errors="replace"),
            tsresol,
            snaplen,
        )

    def _packet(self, body: bytes, order: str, pos: int) -> Packet:
        if len(body) < 20:
            raise PcapngError(f"packet block at {pos} is cut short")
        iface, hi, lo, caplen, _orig = struct.unpack_from(order + "IIIII", body, 0)
        if iface >= len(self.interfaces):
            raise PcapngError(f"packet at {pos} names interface {iface}, which is not described")
        if 20 + caplen > len(body):
            raise PcapngError(f"packet at {pos} claims {caplen} bytes")
        data = body[20 : 20 + caplen]
        opts = self._options(body, 20 + caplen + _pad(caplen), order)
        flags = None
        if EPB_FLAGS in opts and len(opts[EPB_FLAGS][0]) == 4:
            flags = struct.unpack(order + "I", opts[EPB_FLAGS][0])[0]
        ts = (hi << 32) | lo
        resol = self.interfaces[iface].tsresol
        ts_ns = ts * 10 ** (9 - resol) if resol <= 9 else ts // 10 ** (resol - 9)
        comments = [c.decode(errors="replace") for c in opts.get(OPT_COMMENT, [])]
        return Packet(iface, ts_ns, data, flags, comments)
