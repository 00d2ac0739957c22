"""Resource tables: parse, build and check the table a remote firmware publishes.

A resource table tells the host which resources the remote needs (carveouts, device
memory, trace buffers, virtio devices with their vrings, vendor-specific entries).  It
comes out of a firmware image's ``.resource_table`` section or lives in shared memory,
where both sides read and write it (notify ids, ``gfeatures`` and the virtio ``status``
byte).  The layout is the one of the OpenAMP C library (``lib/include/openamp/remoteproc.h``)
and of Linux (``include/linux/remoteproc.h``): a 16-byte header, ``num`` u32 offsets, then
packed little-endian entries, each starting with a u32 ``type``.

This module holds the one definition of every entry layout (``struct.Struct`` objects
below), a model of a table (:class:`ResourceTable` and one dataclass per entry kind), a
strict parser, a builder and a linter (:meth:`ResourceTable.check`).  Other layers use the
``VDEV_*_OFFSET`` constants to read and write a live table in shared memory.

What it must not do:

* no I/O of any kind: it works on bytes handed in and returns bytes;
* never trust its input: tables come from firmware files or from memory a peer writes.
  Every malformed table raises :class:`~openamp.errors.ResourceTableError` naming the
  entry and the reason -- never an ``IndexError``, a ``struct.error`` or a
  ``UnicodeDecodeError``.

Where we are stricter than the C library: it checks only the header, the carveout
``reserved`` word and (with an io region) that each offset lies inside the region.  We
also reject entries that run past the end of the table, non-zero reserved fields in
every entry kind (as Linux does for carveout, devmem, trace and vdev) and vendor entries
whose ``len`` cannot be right.  Things that are legal but suspicious are reported by
:meth:`ResourceTable.check` instead.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from ..errors import ResourceTableError
from ..virtio.ring import vring_size

__all__ = [
    "CARVEOUT",
    "CARVEOUT_DA_OFFSET",
    "CARVEOUT_PA_OFFSET",
    "DEVMEM",
    "FW_RSC_ADDR_ANY",
    "NAME_SIZE",
    "RSC_CARVEOUT",
    "RSC_DEVMEM",
    "RSC_LAST",
    "RSC_NOTIFY_ID_ANY",
    "RSC_TRACE",
    "RSC_VDEV",
    "RSC_VENDOR_END",
    "RSC_VENDOR_START",
    "TABLE_HDR",
    "TABLE_OFFSET",
    "TABLE_VERSION",
    "TRACE",
    "VDEV",
    "VDEV_CONFIG_LEN_OFFSET",
    "VDEV_DFEATURES_OFFSET",
    "VDEV_GFEATURES_OFFSET",
    "VDEV_NOTIFYID_OFFSET",
    "VDEV_NUM_VRINGS_OFFSET",
    "VDEV_STATUS_OFFSET",
    "VDEV_VRING",
    "VDEV_VRINGS_OFFSET",
    "VENDOR",
    "VIRTIO_ID_RPMSG",
    "VRING_DA_OFFSET",
    "VRING_NOTIFYID_OFFSET",
    "Carveout",
    "Devmem",
    "Entry",
    "ResourceTable",
    "Trace",
    "UnknownEntry",
    "Vdev",
    "VdevVring",
    "Vendor",
    "entry_type_name",
]

# -- constants ---------------------------------------------------------------------------

RSC_CARVEOUT = 0
RSC_DEVMEM = 1
RSC_TRACE = 2
RSC_VDEV = 3
RSC_LAST = 4
RSC_VENDOR_START = 128
RSC_VENDOR_END = 512
"""Vendor types are ``RSC_VENDOR_START..RSC_VENDOR_END``, both ends included."""

FW_RSC_ADDR_ANY = 0xFFFFFFFF
"""A ``da``/``pa`` of all ones asks the host to allocate the address."""
RSC_NOTIFY_ID_ANY = 0xFFFFFFFF
"""A notify id of all ones asks the host to allocate the id."""
VIRTIO_ID_RPMSG = 7

TABLE_VERSION = 1
NAME_SIZE = 32
"""Size of the ``name`` field of carveout, devmem and trace entries (NUL-padded)."""

_U8_MAX = 0xFF
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF

# The OpenAMP C library keeps notify ids in one 64-bit bitmap; larger ids make it fail.
_C_NOTIFY_ID_LIMIT = 64
# Linux's rproc_handle_vdev() refuses more vrings than this.
_LINUX_MAX_VRINGS = 2

# -- wire formats (one definition each, all packed little-endian) ------------------------

TABLE_HDR = struct.Struct("<IIII")
"""``struct resource_table``: ver, num, reserved[0], reserved[1]; then ``num`` offsets."""
TABLE_OFFSET = struct.Struct("<I")
"""One element of the offset array, and the ``type`` word every entry starts with."""
CARVEOUT = struct.Struct("<IIIIII32s")
"""``fw_rsc_carveout``: type, da, pa, len, flags, reserved, name[32] (56 bytes)."""
DEVMEM = CARVEOUT
"""``fw_rsc_devmem`` has exactly the carveout layout."""
TRACE = struct.Struct("<IIII32s")
"""``fw_rsc_trace``: type, da, len, reserved, name[32] (48 bytes)."""
VDEV = struct.Struct("<IIIIIIBBH")
"""``fw_rsc_vdev``: type, id, notifyid, dfeatures, gfeatures, config_len, status (u8),
num_of_vrings (u8), reserved (u8[2] read as one u16) -- 28 bytes, then the vrings, then
``config_len`` bytes of virtio config space."""
VDEV_VRING = struct.Struct("<IIIII")
"""``fw_rsc_vdev_vring``: da, align, num, notifyid, reserved (20 bytes).  Newer Linux
headers call the last word ``pa``; we treat it as reserved, as the C library's header does."""
VENDOR = struct.Struct("<II")
"""``fw_rsc_vendor`` header: type, len; the vendor data follows.

What ``len`` counts is not written down anywhere authoritative.  Findings:

* OpenAMP C (``remoteproc.h``): ``struct fw_rsc_vendor {u32 type; u32 len;}`` documented
  only as "Length of the resource"; ``handle_vendor_rsc()`` in ``rsc_table_parser.c``
  passes ``len`` unchecked to ``ops->handle_rsc(rproc, rsc, len)`` and never uses it to
  bound or skip the entry (entries are reached through the offset array only).
* Linux has no ``len`` in its generic entry header: ``rproc_handle_resources()`` hands
  the vendor handler ``avail`` (bytes from after the type word to the end of the table)
  and leaves every check to the driver.
* The one published user that defines it, NXP's ``struct fw_rsc_imx_dsp`` (Zephyr
  ``nxp_resource_table.h``, Linux ``imx_dsp_rproc.c``), says "length of the resource
  entry, without @type, but including @len field", i.e. the entry is ``4 + len`` bytes.
* Some firmware (Huawei MICA's ``fw_rsc_ept``, type 128) puts a count, not a length, in
  that word.  Such an entry is rejected here as having an inconsistent len (count 0) or,
  when the count happens to fit, parsed with too little ``data``.

We follow the NXP reading: ``len = 4 + len(data)``; ``len < 4`` or ``4 + len`` running
past the table end is an error."""

_VDEV_FIELDS = (
    "type",
    "id",
    "notifyid",
    "dfeatures",
    "gfeatures",
    "config_len",
    "status",
    "num_of_vrings",
    "reserved",
)


def _field_offsets(layout: struct.Struct, names: Sequence[str]) -> dict[str, int]:
    """Byte offset of each field of a packed ``<`` layout, by name, in format order."""
    codes = re.findall(r"(\d*)([a-zA-Z?])", layout.format.lstrip("<"))
    offsets: dict[str, int] = {}
    position = 0
    for name, (count, code) in zip(names, codes, strict=True):
        offsets[name] = position
        position += struct.calcsize("<" + count + code)
    if position != layout.size:
        raise AssertionError(f"field walk of {layout.format!r} gives {position} bytes")
    return offsets


_VDEV_OFFSETS = _field_offsets(VDEV, _VDEV_FIELDS)

# Byte offsets inside a vdev entry, for code that reads or writes a live table in shared
# memory (the driver writes gfeatures and status; both sides rewrite notify ids).
VDEV_NOTIFYID_OFFSET = _VDEV_OFFSETS["notifyid"]
VDEV_DFEATURES_OFFSET = _VDEV_OFFSETS["dfeatures"]
VDEV_GFEATURES_OFFSET = _VDEV_OFFSETS["gfeatures"]
VDEV_CONFIG_LEN_OFFSET = _VDEV_OFFSETS["config_len"]
VDEV_STATUS_OFFSET = _VDEV_OFFSETS["status"]
VDEV_NUM_VRINGS_OFFSET = _VDEV_OFFSETS["num_of_vrings"]
VDEV_VRINGS_OFFSET = VDEV.size

_CARVEOUT_OFFSETS = _field_offsets(
    CARVEOUT, ("type", "da", "pa", "len", "flags", "reserved", "name")
)
CARVEOUT_DA_OFFSET = _CARVEOUT_OFFSETS["da"]
"""Offset of ``da`` in a carveout entry (the host writes the address it chose)."""
CARVEOUT_PA_OFFSET = _CARVEOUT_OFFSETS["pa"]
_VRING_OFFSETS = _field_offsets(VDEV_VRING, ("da", "align", "num", "notifyid", "reserved"))
VRING_DA_OFFSET = _VRING_OFFSETS["da"]
"""Offsets inside one ``fw_rsc_vdev_vring`` (the host fills in da and notify id)."""
VRING_NOTIFYID_OFFSET = _VRING_OFFSETS["notifyid"]

assert (CARVEOUT_DA_OFFSET, CARVEOUT_PA_OFFSET, VRING_DA_OFFSET, VRING_NOTIFYID_OFFSET) == (
    4,
    8,
    0,
    12,
), "carveout/vring layout drifted from the C/Linux fw_rsc_carveout/fw_rsc_vdev_vring"
assert (
    VDEV_NOTIFYID_OFFSET,
    VDEV_DFEATURES_OFFSET,
    VDEV_GFEATURES_OFFSET,
    VDEV_CONFIG_LEN_OFFSET,
    VDEV_STATUS_OFFSET,
    VDEV_NUM_VRINGS_OFFSET,
    VDEV_VRINGS_OFFSET,
) == (8, 12, 16, 20, 24, 25, 28), "vdev layout drifted from the C/Linux fw_rsc_vdev"
assert (CARVEOUT.size, TRACE.size, VDEV_VRING.size, VENDOR.size) == (56, 48, 20, 8)


def entry_type_name(t: int) -> str:
    """Symbolic name of an entry type: ``RSC_VDEV``, ``RSC_VENDOR_130``, ``RSC_UNKNOWN_9``."""
    names = {
        RSC_CARVEOUT: "RSC_CARVEOUT",
        RSC_DEVMEM: "RSC_DEVMEM",
        RSC_TRACE: "RSC_TRACE",
        RSC_VDEV: "RSC_VDEV",
        RSC_LAST: "RSC_LAST",
    }
    if t in names:
        return names[t]
    if RSC_VENDOR_START <= t <= RSC_VENDOR_END:
        return f"RSC_VENDOR_{t}"
    return f"RSC_UNKNOWN_{t}"


# -- encoding helpers --------------------------------------------------------------------


def _check_uint(value: object, limit: int, what: str, index: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        bits = limit.bit_length()
        raise ResourceTableError(f"{what} = {value!r} does not fit in a u{bits}", entry=index)
    return value


def _encode_name(name: object, what: str, index: int) -> bytes:
    if not isinstance(name, str):
        raise ResourceTableError(f"{what} name {name!r} is not a str", entry=index)
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise ResourceTableError(f"{what} name {name!r} is not ASCII", entry=index) from None
    if b"\0" in raw:
        raise ResourceTableError(f"{what} name {name!r} contains a NUL byte", entry=index)
    if len(raw) > NAME_SIZE - 1:
        raise ResourceTableError(
            f"{what} name {name!r} is {len(raw)} bytes; at most {NAME_SIZE - 1} fit "
            "with the terminating NUL (name too long)",
            entry=index,
        )
    return raw  # struct's "32s" pads with NULs


def _decode_name(raw: bytes) -> str:
    # C peers leave garbage after the NUL; it is not part of the name and is not kept.
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _check_bytes(value: object, what: str, index: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ResourceTableError(f"{what} must be bytes, not {type(value).__name__}", entry=index)
    return bytes(value)


def _as_bytes(value: object) -> object:
    # bytes(n) of an int would silently make n zero bytes; only buffers are converted,
    # anything else is left for to_bytes() to reject.
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


# -- entries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _MemoryEntry:
    """Fields shared by carveout and devmem entries (identical layout)."""

    type: ClassVar[int]
    da: int
    pa: int
    len: int
    flags: int = 0
    name: str = ""
    reserved: int = 0

    @property
    def size(self) -> int:
        """Bytes this entry takes in a table."""
        return CARVEOUT.size

    def _pack(self, index: int) -> bytes:
        what = entry_type_name(self.type)
        return CARVEOUT.pack(
            self.type,
            _check_uint(self.da, _U32_MAX, f"{what} da", index),
            _check_uint(self.pa, _U32_MAX, f"{what} pa", index),
            _check_uint(self.len, _U32_MAX, f"{what} len", index),
            _check_uint(self.flags, _U32_MAX, f"{what} flags", index),
            _check_uint(self.reserved, _U32_MAX, f"{what} reserved", index),
            _encode_name(self.name, what, index),
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "da": self.da,
            "pa": self.pa,
            "len": self.len,
            "flags": self.flags,
            "reserved": self.reserved,
            "name": self.name,
        }


@dataclass(frozen=True)
class Carveout(_MemoryEntry):
    """``RSC_CARVEOUT``: physically contiguous memory the remote needs (da, pa, len)."""

    type: ClassVar[int] = RSC_CARVEOUT


@dataclass(frozen=True)
class Devmem(_MemoryEntry):
    """``RSC_DEVMEM``: a device memory range to map for the remote (IOMMU)."""

    type: ClassVar[int] = RSC_DEVMEM


@dataclass(frozen=True)
class Trace:
    """``RSC_TRACE``: a trace (log) buffer the remote writes at ``da``."""

    type: ClassVar[int] = RSC_TRACE
    da: int
    len: int
    name: str = ""
    reserved: int = 0

    @property
    def size(self) -> int:
        """Bytes this entry takes in a table."""
        return TRACE.size

    def _pack(self, index: int) -> bytes:
        what = "RSC_TRACE"
        return TRACE.pack(
            self.type,
            _check_uint(self.da, _U32_MAX, f"{what} da", index),
            _check_uint(self.len, _U32_MAX, f"{what} len", index),
            _check_uint(self.reserved, _U32_MAX, f"{what} reserved", index),
            _encode_name(self.name, what, index),
        )

    def _fields(self) -> dict[str, Any]:
        return {"da": self.da, "len": self.len, "reserved": self.reserved, "name": self.name}


@dataclass(frozen=True)
class VdevVring:
    """One ``fw_rsc_vdev_vring`` of a vdev entry."""

    da: int
    align: int
    num: int
    notifyid: int
    reserved: int = 0

    def _pack(self, index: int, k: int) -> bytes:
        what = f"RSC_VDEV vring {k}"
        return VDEV_VRING.pack(
            _check_uint(self.da, _U32_MAX, f"{what} da", index),
            _check_uint(self.align, _U32_MAX, f"{what} align", index),
            _check_uint(self.num, _U32_MAX, f"{what} num", index),
            _check_uint(self.notifyid, _U32_MAX, f"{what} notifyid", index),
            _check_uint(self.reserved, _U32_MAX, f"{what} reserved", index),
        )


@dataclass(frozen=True)
class Vdev:
    """``RSC_VDEV``: a virtio device, its vrings and its config space.

    ``vrings`` may be given as any sequence and is stored as a tuple; ``config`` is the
    raw config space, so ``config_len`` is ``len(config)`` and ``num_of_vrings`` is
    ``len(vrings)``.
    """

    type: ClassVar[int] = RSC_VDEV
    id: int
    notifyid: int
    dfeatures: int
    gfeatures: int = 0
    status: int = 0
    vrings: Sequence[VdevVring] = ()
    config: bytes = b""
    reserved: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "vrings", tuple(self.vrings))
        object.__setattr__(self, "config", _as_bytes(self.config))

    @property
    def config_len(self) -> int:
        """Length of the config space in bytes."""
        return len(self.config)

    @property
    def size(self) -> int:
        """Bytes this entry takes in a table (header, vrings, config space)."""
        return VDEV.size + VDEV_VRING.size * len(self.vrings) + len(self.config)

    def _pack(self, index: int) -> bytes:
        what = "RSC_VDEV"
        if len(self.vrings) > _U8_MAX:
            raise ResourceTableError(
                f"{what} has {len(self.vrings)} vrings; num_of_vrings is a u8 (at most 255)",
                entry=index,
            )
        config = _check_bytes(self.config, f"{what} config", index)
        parts = [
            VDEV.pack(
                self.type,
                _check_uint(self.id, _U32_MAX, f"{what} id", index),
                _check_uint(self.notifyid, _U32_MAX, f"{what} notifyid", index),
                _check_uint(self.dfeatures, _U32_MAX, f"{what} dfeatures", index),
                _check_uint(self.gfeatures, _U32_MAX, f"{what} gfeatures", index),
                _check_uint(len(config), _U32_MAX, f"{what} config_len", index),
                _check_uint(self.status, _U8_MAX, f"{what} status", index),
                len(self.vrings),
                _check_uint(self.reserved, _U16_MAX, f"{what} reserved", index),
            )
        ]
        for k, vring in enumerate(self.vrings):
            if not isinstance(vring, VdevVring):
                raise ResourceTableError(f"{what} vring {k} is not a VdevVring", entry=index)
            parts.append(vring._pack(index, k))
        parts.append(config)
        return b"".join(parts)

    def _fields(self, offset: int) -> dict[str, Any]:
        vrings_at = offset + VDEV_VRINGS_OFFSET
        return {
            "id": self.id,
            "notifyid": self.notifyid,
            "dfeatures": self.dfeatures,
            "gfeatures": self.gfeatures,
            "config_len": self.config_len,
            "status": self.status,
            "status_offset": offset + VDEV_STATUS_OFFSET,
            "num_of_vrings": len(self.vrings),
            "reserved": [self.reserved & 0xFF, self.reserved >> 8],
            "vrings": [
                {
                    "index": k,
                    "offset": vrings_at + k * VDEV_VRING.size,
                    "da": v.da,
                    "align": v.align,
                    "num": v.num,
                    "notifyid": v.notifyid,
                    "reserved": v.reserved,
                }
                for k, v in enumerate(self.vrings)
            ],
            "config": self.config.hex(),
        }


@dataclass(frozen=True)
class Vendor:
    """A vendor entry (type ``RSC_VENDOR_START..RSC_VENDOR_END``) with opaque ``data``.

    ``data`` is what follows the 8-byte ``{type, len}`` header; on the wire
    ``len = 4 + len(data)`` (see :data:`VENDOR` for why).
    """

    type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _as_bytes(self.data))

    @property
    def len(self) -> int:
        """The ``len`` word as written to the table."""
        return TABLE_OFFSET.size + len(self.data)

    @property
    def size(self) -> int:
        """Bytes this entry takes in a table."""
        return VENDOR.size + len(self.data)

    def _pack(self, index: int) -> bytes:
        if (
            isinstance(self.type, bool)
            or not isinstance(self.type, int)
            or not RSC_VENDOR_START <= self.type <= RSC_VENDOR_END
        ):
            raise ResourceTableError(
                f"vendor type {self.type!r} is outside RSC_VENDOR_START..RSC_VENDOR_END "
                f"({RSC_VENDOR_START}..{RSC_VENDOR_END})",
                entry=index,
            )
        data = _check_bytes(self.data, "vendor data", index)
        length = _check_uint(TABLE_OFFSET.size + len(data), _U32_MAX, "vendor len", index)
        return VENDOR.pack(self.type, length) + data


@dataclass(frozen=True)
class UnknownEntry:
    """An entry of a type nobody defines (``RSC_LAST..127`` or above ``RSC_VENDOR_END``).

    The C library and Linux skip such entries.  Their length is not recorded anywhere,
    so when parsing, ``data`` is everything after the type word up to the next entry (in
    address order) or the end of the table; kept so that a table round-trips.
    """

    type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _as_bytes(self.data))

    @property
    def size(self) -> int:
        """Bytes this entry takes in a table."""
        return TABLE_OFFSET.size + len(self.data)

    def _pack(self, index: int) -> bytes:
        entry_type = _check_uint(self.type, _U32_MAX, "unknown entry type", index)
        if entry_type < RSC_LAST or RSC_VENDOR_START <= entry_type <= RSC_VENDOR_END:
            raise ResourceTableError(
                f"UnknownEntry type {entry_type} ({entry_type_name(entry_type)}) is a defined "
                "type; use the matching entry class",
                entry=index,
            )
        return TABLE_OFFSET.pack(entry_type) + _check_bytes(self.data, "unknown data", index)


Entry: TypeAlias = Carveout | Devmem | Trace | Vdev | Vendor | UnknownEntry
"""Any resource-table entry."""


# -- parsing -----------------------------------------------------------------------------


class _Parser:
    """Decodes one entry at a time from an immutable copy of the table bytes."""

    def __init__(self, buf: bytes, starts: list[int]) -> None:
        self.buf = buf
        self.n = len(buf)
        self.starts = sorted(set(starts))  # where each entry begins, for unknown ones' ends

    def entry(self, index: int, offset: int) -> Entry:
        (entry_type,) = TABLE_OFFSET.unpack_from(self.buf, offset)
        if entry_type in (RSC_CARVEOUT, RSC_DEVMEM):
            return self._memory(index, offset, entry_type)
        if entry_type == RSC_TRACE:
            return self._trace(index, offset)
        if entry_type == RSC_VDEV:
            return self._vdev(index, offset)
        if RSC_VENDOR_START <= entry_type <= RSC_VENDOR_END:
            return self._vendor(index, offset, entry_type)
        return self._unknown(offset, entry_type)

    def _need(self, index: int, offset: int, size: int, what: str) -> None:
        remaining = self.n - offset
        if size > remaining:
            raise ResourceTableError(
                f"truncated {what} entry: needs {size} bytes, only {remaining} remain "
                "before the end of the table",
                entry=index,
                offset=offset,
            )

    @staticmethod
    def _reserved(index: int, offset: int, what: str, value: int) -> None:
        if value:
            raise ResourceTableError(
                f"{what} reserved field is {value:#x}; must be zero", entry=index, offset=offset
            )

    def _memory(self, index: int, offset: int, entry_type: int) -> Entry:
        what = entry_type_name(entry_type)
        self._need(index, offset, CARVEOUT.size, what)
        _, da, pa, length, flags, reserved, name = CARVEOUT.unpack_from(self.buf, offset)
        self._reserved(index, offset, what, reserved)
        cls = Carveout if entry_type == RSC_CARVEOUT else Devmem
        return cls(da=da, pa=pa, len=length, flags=flags, name=_decode_name(name))

    def _trace(self, index: int, offset: int) -> Entry:
        self._need(index, offset, TRACE.size, "RSC_TRACE")
        _, da, length, reserved, name = TRACE.unpack_from(self.buf, offset)
        self._reserved(index, offset, "RSC_TRACE", reserved)
        return Trace(da=da, len=length, name=_decode_name(name))

    def _vdev(self, index: int, offset: int) -> Entry:
        self._need(index, offset, VDEV.size, "RSC_VDEV")
        (_, dev_id, notifyid, dfeatures, gfeatures, config_len, status, nvrings, reserved) = (
            VDEV.unpack_from(self.buf, offset)
        )
        self._reserved(index, offset, "RSC_VDEV", reserved)
        vrings_at = offset + VDEV.size
        after_header = self.n - vrings_at
        if VDEV_VRING.size * nvrings > after_header:
            raise ResourceTableError(
                f"truncated RSC_VDEV entry: its {nvrings} vrings need "
                f"{VDEV_VRING.size * nvrings} bytes after the {VDEV.size}-byte vdev header, "
                f"only {after_header} remain",
                entry=index,
                offset=offset,
            )
        vrings = []
        for k in range(nvrings):
            da, align, num, vring_notifyid, vring_reserved = VDEV_VRING.unpack_from(
                self.buf, vrings_at + k * VDEV_VRING.size
            )
            # Not checked: newer Linux headers name this word ``pa`` and may fill it.
            vrings.append(VdevVring(da, align, num, vring_notifyid, vring_reserved))
        config_at = vrings_at + VDEV_VRING.size * nvrings
        after_vrings = self.n - config_at
        if config_len > after_vrings:
            raise ResourceTableError(
                f"truncated RSC_VDEV entry: config_len {config_len} runs past the end of the "
                f"table, only {after_vrings} bytes remain after the vrings",
                entry=index,
                offset=offset,
            )
        return Vdev(
            id=dev_id,
            notifyid=notifyid,
            dfeatures=dfeatures,
            gfeatures=gfeatures,
            status=status,
            vrings=vrings,
            config=self.buf[config_at : config_at + config_len],
        )

    def _vendor(self, index: int, offset: int, entry_type: int) -> Entry:
        what = f"vendor ({entry_type_name(entry_type)})"
        self._need(index, offset, VENDOR.size, what)
        _, length = VENDOR.unpack_from(self.buf, offset)
        if length < TABLE_OFFSET.size:
            raise ResourceTableError(
                f"{what} len {length} is inconsistent: it counts the 4-byte len word itself "
                "plus the vendor data, so it is at least 4",
                entry=index,
                offset=offset,
            )
        remaining = self.n - offset
        if TABLE_OFFSET.size + length > remaining:
            raise ResourceTableError(
                f"{what} len {length} is inconsistent: the entry would take "
                f"{TABLE_OFFSET.size + length} bytes, only {remaining} remain before the end "
                "of the table",
                entry=index,
                offset=offset,
            )
        end = offset + TABLE_OFFSET.size + length
        return Vendor(entry_type, self.buf[offset + VENDOR.size : end])

    def _unknown(self, offset: int, entry_type: int) -> Entry:
        following = bisect.bisect_right(self.starts, offset)
        end = self.starts[following] if following < len(self.starts) else self.n
        return UnknownEntry(entry_type, self.buf[offset + TABLE_OFFSET.size : end])


# -- the table ---------------------------------------------------------------------------


@dataclass
class ResourceTable:
    """A resource table: its entries in offset-array order.

    Build one in code (``ResourceTable([Vdev(...)])``) and call :meth:`to_bytes`, or get
    one from :meth:`parse`.  Equality compares ``version`` and ``entries`` only.
    """

    entries: list[Entry] = field(default_factory=list)
    version: int = TABLE_VERSION
    _source_offsets: tuple[int, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _source_entries: tuple[Entry, ...] = field(default=(), init=False, repr=False, compare=False)

    # -- parse / build -------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> ResourceTable:
        """Decode a table, strictly.

        ``data`` starts with the table header; bytes past the last entry are ignored
        (except that an :class:`UnknownEntry` at the highest offset extends to the end of
        ``data``, so pass the table's own size when you know it).  The bytes are copied
        first, so a peer writing to shared memory meanwhile cannot make the checks lie.

        Raises :class:`ResourceTableError` for: a table shorter than its header, a version
        other than 1, non-zero header reserved words, an offset array running past the
        end, an entry offset pointing into the header/offset array or leaving no room
        for the type word, an entry (fixed part, vrings or config space) running past the
        end, a non-zero reserved field in a carveout, devmem, trace, vdev or vring, and a
        vendor entry whose ``len`` is below 4 or runs past the end.
        """
        buf = bytes(data)
        n = len(buf)
        if n < TABLE_HDR.size:
            raise ResourceTableError(
                f"table is {n} bytes, shorter than its {TABLE_HDR.size}-byte header (truncated)",
                offset=0,
            )
        version, num, reserved0, reserved1 = TABLE_HDR.unpack_from(buf, 0)
        if version != TABLE_VERSION:
            raise ResourceTableError(
                f"unsupported version {version} (only version {TABLE_VERSION} is defined)",
                offset=0,
            )
        header_end = TABLE_HDR.size + TABLE_OFFSET.size * num
        if header_end > n:
            raise ResourceTableError(
                f"offset array of {num} entries ends at {header_end:#x}, past the end of the "
                f"{n}-byte table (truncated)",
                offset=TABLE_HDR.size,
            )
        if reserved0 or reserved1:
            raise ResourceTableError(
                f"reserved header words are {reserved0:#x} and {reserved1:#x}; both must be zero",
                offset=8,
            )
        offsets = [o for (o,) in TABLE_OFFSET.iter_unpack(buf[TABLE_HDR.size : header_end])]
        parser = _Parser(buf, offsets)
        entries: list[Entry] = []
        # Several offsets may name one entry; parse it once, or a hostile table with
        # thousands of duplicate offsets would copy a large entry thousands of times.
        seen: dict[int, Entry] = {}
        for index, offset in enumerate(offsets):
            if offset in seen:
                entries.append(seen[offset])
                continue
            if offset < header_end:
                raise ResourceTableError(
                    f"entry offset {offset:#x} points inside the table header and offset "
                    f"array, which end at {header_end:#x}",
                    entry=index,
                    offset=offset,
                )
            if offset + TABLE_OFFSET.size > n:
                raise ResourceTableError(
                    f"entry offset {offset:#x} is out of range: no room for the 4-byte type "
                    f"word in the {n}-byte table",
                    entry=index,
                    offset=offset,
                )
            seen[offset] = parser.entry(index, offset)
            entries.append(seen[offset])
        table = cls(entries, version)
        table._source_offsets = tuple(offsets)
        table._source_entries = tuple(entries)
        return table

    def to_bytes(self) -> bytes:
        """Encode the table: header, offset array, then the entries back to back.

        Raises :class:`ResourceTableError` when an entry cannot be encoded (a field out
        of range, a name of more than 31 bytes or not ASCII, a vendor type outside
        128..512, an :class:`UnknownEntry` with a defined type).  Reserved fields and the
        version are written as given, so malformed tables can be built on purpose.
        """
        _check_uint(self.version, _U32_MAX, "version", None)
        bodies = [self._pack_entry(index, entry) for index, entry in enumerate(self.entries)]
        offsets = self._layout()
        parts = [TABLE_HDR.pack(self.version, len(self.entries), 0, 0)]
        parts.extend(TABLE_OFFSET.pack(offset) for offset in offsets)
        parts.extend(bodies)
        return b"".join(parts)

    @staticmethod
    def _pack_entry(index: int, entry: object) -> bytes:
        if not isinstance(entry, (Carveout, Devmem, Trace, Vdev, Vendor, UnknownEntry)):
            raise ResourceTableError(
                f"{type(entry).__name__} object is not a resource-table entry", entry=index
            )
        return entry._pack(index)

    def _layout(self) -> list[int]:
        position = TABLE_HDR.size + TABLE_OFFSET.size * len(self.entries)
        offsets = []
        for entry in self.entries:
            offsets.append(position)
            position += entry.size
        return offsets

    # -- queries -------------------------------------------------------------------------

    @property
    def offsets(self) -> list[int]:
        """Byte offset of each entry from the start of the table.

        For a parsed table whose entries have not been replaced since, these are the
        offsets found in the source bytes (which may contain gaps); otherwise they are
        where :meth:`to_bytes` puts the entries.
        """
        src = self._source_entries
        if (
            self._source_offsets is not None
            and len(src) == len(self.entries)
            and all(a is b for a, b in zip(src, self.entries, strict=True))
        ):
            return list(self._source_offsets)
        return self._layout()

    @property
    def size(self) -> int:
        """Number of bytes :meth:`to_bytes` produces."""
        header = TABLE_HDR.size + TABLE_OFFSET.size * len(self.entries)
        return header + sum(entry.size for entry in self.entries)

    def find(self, entry_type: int, index: int = 0) -> tuple[int, Entry] | None:
        """The ``index``-th entry of ``entry_type`` and its byte offset (C ``find_rsc``).

        Returns ``(offset, entry)``, or ``None`` when there is no such entry (where the C
        function returns 0).
        """
        seen = 0
        for offset, entry in zip(self.offsets, self.entries, strict=True):
            if entry.type == entry_type:
                if seen == index:
                    return offset, entry
                seen += 1
        return None

    def vdevs(self) -> list[Vdev]:
        """The vdev entries, in table order."""
        return [e for e in self.entries if isinstance(e, Vdev)]

    def carveouts(self) -> list[Carveout]:
        """The carveout entries, in table order."""
        return [e for e in self.entries if isinstance(e, Carveout)]

    def traces(self) -> list[Trace]:
        """The trace entries, in table order."""
        return [e for e in self.entries if isinstance(e, Trace)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, shaped like ``resource_table`` in the conformance JSON.

        Every entry gets ``index``, ``offset``, ``type``, ``type_name`` and its fields;
        a vdev adds ``status_offset`` and per-vring ``offset``s (absolute, from the table
        start) and its config space as hex; vendor and unknown entries give ``data`` as
        hex.
        """
        offsets = self.offsets
        entries: list[dict[str, Any]] = []
        for index, (offset, entry) in enumerate(zip(offsets, self.entries, strict=True)):
            item: dict[str, Any] = {
                "index": index,
                "offset": offset,
                "type": entry.type,
                "type_name": entry_type_name(entry.type),
            }
            if isinstance(entry, Vdev):
                item.update(entry._fields(offset))
            elif isinstance(entry, (Carveout, Devmem, Trace)):
                item.update(entry._fields())
            elif isinstance(entry, Vendor):
                item.update({"len": entry.len, "data": entry.data.hex()})
            else:
                item["data"] = entry.data.hex()
            entries.append(item)
        return {
            "version": self.version,
            "num": len(self.entries),
            "reserved": [0, 0],
            "offsets": offsets,
            "size": self.size,
            "entries": entries,
        }

    def check(self) -> list[str]:
        """Findings a careful integrator wants to see; none of them stops a parse.

        Reports: vring ``num`` or ``align`` not a power of two, vrings that overlap,
        carveouts overlapping in ``da`` or ``pa``, notify ids used twice (the C library
        silently remaps them) or too large for the C library's 64-bit bitmap, vdevs with no
        vrings or more than Linux accepts, trace buffers of length 0, names that are
        not NUL-terminated or not ASCII, entry types nobody defines, and (for parsed
        tables) entry offsets that are not 4-byte aligned or entries that overlap.
        """
        findings: list[str] = []
        offsets = self.offsets
        vring_spans: list[tuple[int, int, str]] = []
        notify_ids: dict[int, list[str]] = {}
        carve_da: list[tuple[int, int, str]] = []
        carve_pa: list[tuple[int, int, str]] = []

        for index, (offset, entry) in enumerate(zip(offsets, self.entries, strict=True)):
            where = f"entry {index} ({entry_type_name(entry.type)})"
            if offset % 4:
                findings.append(f"{where}: offset {offset:#x} is not 4-byte aligned")
            if isinstance(entry, (Carveout, Devmem, Trace)):
                findings.extend(_name_findings(where, entry.name))
            if isinstance(entry, Carveout) and entry.len:
                if entry.da != FW_RSC_ADDR_ANY:
                    carve_da.append((entry.da, entry.da + entry.len, where))
                if entry.pa != FW_RSC_ADDR_ANY:
                    carve_pa.append((entry.pa, entry.pa + entry.len, where))
            elif isinstance(entry, Trace) and entry.len == 0:
                findings.append(f"{where}: trace buffer has len 0; the C library ignores it")
            elif isinstance(entry, Vdev):
                self._check_vdev(entry, where, findings, vring_spans, notify_ids)
            elif isinstance(entry, UnknownEntry):
                findings.append(
                    f"{where}: type {entry.type} is not a defined resource type; the C "
                    "library and Linux skip it"
                )

        findings.extend(_overlaps(vring_spans, "vring memory"))
        findings.extend(_overlaps(carve_da, "carveout device addresses (da)"))
        findings.extend(_overlaps(carve_pa, "carveout physical addresses (pa)"))
        for notify_id, users in notify_ids.items():
            if len(users) > 1:
                findings.append(
                    f"notify id {notify_id} is used by {', '.join(users)}; the C library "
                    "silently remaps duplicates"
                )
        spans = [
            (offset, offset + entry.size, f"entry {index}")
            for index, (offset, entry) in enumerate(zip(offsets, self.entries, strict=True))
        ]
        findings.extend(_overlaps(spans, "table bytes"))
        return findings

    @staticmethod
    def _check_vdev(
        vdev: Vdev,
        where: str,
        findings: list[str],
        vring_spans: list[tuple[int, int, str]],
        notify_ids: dict[int, list[str]],
    ) -> None:
        if not vdev.vrings:
            findings.append(f"{where}: vdev has no vrings")
        elif len(vdev.vrings) > _LINUX_MAX_VRINGS:
            findings.append(
                f"{where}: {len(vdev.vrings)} vrings; Linux accepts at most {_LINUX_MAX_VRINGS}"
            )
        _note_notify_id(notify_ids, findings, vdev.notifyid, f"{where} vdev")
        for k, vring in enumerate(vdev.vrings):
            label = f"{where} vring {k}"
            num_ok = _is_power_of_two(vring.num)
            align_ok = _is_power_of_two(vring.align)
            if not num_ok:
                findings.append(f"{label}: num {vring.num} is not a power of two")
            if not align_ok:
                findings.append(f"{label}: align {vring.align:#x} is not a power of two")
            _note_notify_id(notify_ids, findings, vring.notifyid, label)
            if vring.da == FW_RSC_ADDR_ANY:
                findings.append(
                    f"{label}: da is FW_RSC_ADDR_ANY (allocate dynamically), which the C "
                    "library does not support"
                )
            elif num_ok and align_ok:
                vring_spans.append((vring.da, vring.da + vring_size(vring.num, vring.align), label))


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _name_findings(where: str, name: str) -> list[str]:
    findings = []
    if len(name) > NAME_SIZE - 1:
        findings.append(
            f"{where}: name {name!r} leaves no room for the NUL terminator in {NAME_SIZE} bytes"
        )
    if not name.isascii():  # undecodable bytes were parsed as U+FFFD
        findings.append(f"{where}: name {name!r} has non-ASCII bytes")
    return findings


def _note_notify_id(
    notify_ids: dict[int, list[str]], findings: list[str], notify_id: int, label: str
) -> None:
    if notify_id == RSC_NOTIFY_ID_ANY:
        return
    notify_ids.setdefault(notify_id, []).append(label)
    if notify_id >= _C_NOTIFY_ID_LIMIT:
        findings.append(
            f"{label}: notify id {notify_id} is >= {_C_NOTIFY_ID_LIMIT}; the C library "
            "cannot allocate it and rejects the table"
        )


def _overlaps(spans: list[tuple[int, int, str]], what: str) -> list[str]:
    """Findings for half-open ranges ``[start, end)`` that intersect.

    A sweep in address order: each range is compared with the one reaching furthest so
    far, so a hostile table with thousands of coinciding entries gives one finding per
    entry, not one per pair.
    """
    findings = []
    reach: tuple[int, int, str] | None = None
    for start, end, label in sorted(spans):
        if reach is not None and start < reach[1]:
            findings.append(
                f"{reach[2]} [{reach[0]:#x}, {reach[1]:#x}) and {label} [{start:#x}, "
                f"{end:#x}) overlap ({what})"
            )
        if reach is None or end > reach[1]:
            reach = (start, end, label)
    return findings
