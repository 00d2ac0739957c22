"""Resource-table tools: show a firmware's table, check it, build one from a YAML spec.

The library side of ``openamp rsc``.  Three jobs, each a small function on top of
:mod:`openamp.remoteproc.rsc_table` (which stays the one definition of the wire format):

* :func:`load_table` reads a file: an ELF image's ``.resource_table`` section, or any
  other file taken as a raw table (a ``.bin`` built by ``openamp rsc build``, or a dump
  of the shared memory the table lives in);
* :func:`format_table` / :func:`table_json` decode it field by field, with a hex dump in
  the exact layout of ``readelf -x .resource_table`` so the two can be compared line by
  line; :func:`check_table` lists what is wrong or suspicious;
* :func:`table_from_spec` turns a YAML description into a :class:`ResourceTable`, and
  :func:`c_source` turns a table into a C file a firmware compiles into the same bytes.

What it must not do: decode or encode table bytes itself (that is ``rsc_table``'s job),
depend on the firmware loader (``remoteproc.elf``), or let a malformed input escape as
anything but an :class:`~openamp.errors.OpenAMPError` with a message naming the file,
the entry and the problem.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from .. import __version__
from .._files import read_regular_file
from ..errors import FirmwareImageError, ResourceTableError, UsageError
from ..remoteproc.rsc_table import (
    FW_RSC_ADDR_ANY,
    RSC_NOTIFY_ID_ANY,
    RSC_VENDOR_END,
    RSC_VENDOR_START,
    TABLE_HDR,
    TABLE_OFFSET,
    TABLE_VERSION,
    VDEV_STATUS_OFFSET,
    VDEV_VRING,
    VDEV_VRINGS_OFFSET,
    VIRTIO_ID_RPMSG,
    Carveout,
    Devmem,
    Entry,
    ResourceTable,
    Trace,
    Vdev,
    VdevVring,
    Vendor,
    entry_type_name,
)
from ..rpmsg.wire import VIRTIO_RPMSG_F_NS
from ..virtio.ring import (
    VIRTIO_CONFIG_STATUS_ACK,
    VIRTIO_CONFIG_STATUS_DRIVER,
    VIRTIO_CONFIG_STATUS_DRIVER_OK,
    VIRTIO_CONFIG_STATUS_FAILED,
    VIRTIO_CONFIG_STATUS_FEATURES_OK,
    VIRTIO_CONFIG_STATUS_NEEDS_RESET,
    VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
)
from .output import fields

__all__ = [
    "SECTION",
    "LoadedTable",
    "c_source",
    "check_table",
    "describe_features",
    "describe_status",
    "format_table",
    "hexdump",
    "load_spec",
    "load_table",
    "table_from_spec",
    "table_json",
]

SECTION = ".resource_table"
"""The ELF section Linux and the OpenAMP C library take the table from."""

_ELF_MAGIC = b"\x7fELF"
_ELFDATA2MSB = "ELFDATA2MSB"
_U8_MAX = 0xFF
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF

# include/uapi/linux/virtio_ids.h, the ones a remote processor plausibly offers.
_VIRTIO_IDS = {
    1: "net",
    2: "block",
    3: "console",
    4: "entropy",
    5: "balloon",
    7: "rpmsg",
    8: "scsi",
    9: "9p",
    11: "rproc-serial",
    19: "vsock",
}
_STATUS_BITS = (
    (VIRTIO_CONFIG_STATUS_ACK, "ACK"),
    (VIRTIO_CONFIG_STATUS_DRIVER, "DRIVER"),
    (VIRTIO_CONFIG_STATUS_DRIVER_OK, "DRIVER_OK"),
    (VIRTIO_CONFIG_STATUS_FEATURES_OK, "FEATURES_OK"),
    (VIRTIO_CONFIG_STATUS_NEEDS_RESET, "NEEDS_RESET"),
    (VIRTIO_CONFIG_STATUS_FAILED, "FAILED"),
)
_TRANSPORT_FEATURES = {
    VIRTIO_RING_F_INDIRECT_DESC: "VIRTIO_RING_F_INDIRECT_DESC",
    VIRTIO_RING_F_EVENT_IDX: "VIRTIO_RING_F_EVENT_IDX",
}
_DEVICE_FEATURES = {VIRTIO_ID_RPMSG: {VIRTIO_RPMSG_F_NS: "VIRTIO_RPMSG_F_NS"}}


# -- loading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedTable:
    """The table bytes of one file, where they came from, and what they decode to.

    Exactly one of ``table`` and ``error`` is set: a table that does not parse is kept
    (with its bytes) so that :func:`check_table` can report why.
    """

    path: str
    data: bytes
    """The section contents (ELF) or the whole file (raw)."""
    is_elf: bool
    address: int
    """The section's address (``sh_addr``, the remote's view) for an ELF file, else 0."""
    file_offset: int
    """Where the table starts in the file (``sh_offset`` for an ELF file, else 0)."""
    table: ResourceTable | None
    error: ResourceTableError | None

    @property
    def source(self) -> str:
        """One line saying where the table bytes came from."""
        if self.is_elf:
            return (
                f"{self.path}: ELF section {SECTION} at address {self.address:#010x}, file "
                f"offset {self.file_offset:#x}, {len(self.data):#x} bytes ({len(self.data)})"
            )
        return f"{self.path}: raw table, {len(self.data)} bytes"

    @property
    def extent(self) -> int:
        """Bytes from the table start to the end of its furthest entry (or its header)."""
        if self.table is None:
            return len(self.data)
        end = TABLE_HDR.size + TABLE_OFFSET.size * len(self.table.entries)
        for offset, entry in zip(self.table.offsets, self.table.entries, strict=True):
            end = max(end, offset + entry.size)
        return min(end, len(self.data))

    @property
    def problem(self) -> str | None:
        """Why the table does not parse, naming the file; ``None`` when it does."""
        if self.error is None:
            return None
        if self.is_elf:
            return f"{self.path}: section {SECTION} is not a valid resource table: {self.error}"
        return f"{self.path}: not an ELF file, and not a valid resource table: {self.error}"

    def require_table(self) -> ResourceTable:
        """The parsed table; :class:`FirmwareImageError` naming the file if it does not parse."""
        if self.table is None:
            raise FirmwareImageError(self.problem)
        return self.table


def load_table(path: str | Path) -> LoadedTable:
    """Read ``path``: the ``.resource_table`` section of an ELF file, else the whole file.

    A file starting with the ELF magic is read as ELF; anything else is taken as a raw
    table.  Raises :class:`UsageError` when the file cannot be read and
    :class:`FirmwareImageError` for a malformed ELF file or one without the section.
    A table that does not parse is not an error here: see :attr:`LoadedTable.error`.
    """
    name = str(path)
    raw = read_regular_file(path, what="firmware image or resource table")
    if raw.startswith(_ELF_MAGIC):
        data, address, offset = _read_elf_section(name, raw)
        is_elf = True
    else:
        data, address, offset, is_elf = raw, 0, 0, False
    try:
        table: ResourceTable | None = ResourceTable.parse(data)
        error = None
    except ResourceTableError as exc:
        table, error = None, exc
    return LoadedTable(name, data, is_elf, address, offset, table, error)


def _read_elf_section(name: str, raw: bytes) -> tuple[bytes, int, int]:
    """``(contents, sh_addr, sh_offset)`` of the ``.resource_table`` section."""
    try:
        elf = ELFFile(io.BytesIO(raw))
        big_endian = elf["e_ident"]["EI_DATA"] == _ELFDATA2MSB
        section = elf.get_section_by_name(SECTION)
        if section is not None:
            nobits = section["sh_type"] == "SHT_NOBITS"
            compressed = bool(section["sh_flags"] & SH_FLAGS.SHF_COMPRESSED)
            size = int(section["sh_size"])
            offset = int(section["sh_offset"])
            address = int(section["sh_addr"])
            # Read the stored bytes, never decompressed ones: that is what Linux copies.
            data = b"" if nobits or compressed else bytes(section.data())
    # pyelftools documents ELFError, but on hostile input it also lets struct, seek,
    # lookup and zlib errors through (a section offset past 2**63 is an OverflowError).
    except (
        ELFError,
        struct.error,
        zlib.error,
        ValueError,
        ArithmeticError,
        LookupError,
        TypeError,
    ) as exc:
        raise FirmwareImageError(f"{name}: not a valid ELF file: {exc}") from None
    if big_endian:
        raise FirmwareImageError(
            f"{name}: big-endian ELF file; resource tables are read as little-endian "
            "(as on every target the C library and Linux support)"
        )
    if section is None:
        raise FirmwareImageError(f"{name}: ELF file has no {SECTION} section")
    if nobits:
        raise FirmwareImageError(f"{name}: section {SECTION} has no contents (SHT_NOBITS)")
    if compressed:
        raise FirmwareImageError(
            f"{name}: section {SECTION} is compressed (SHF_COMPRESSED); Linux and the C "
            "library read the table as it is stored"
        )
    if len(data) != size:
        raise FirmwareImageError(
            f"{name}: section {SECTION} ({size:#x} bytes at file offset {offset:#x}) runs "
            f"past the end of the {len(raw)}-byte file (truncated)"
        )
    return data, address, offset


# -- showing -----------------------------------------------------------------------------


def hexdump(data: bytes, address: int = 0) -> list[str]:
    """Rows in the layout of ``readelf -x``: address, four groups of 4 bytes, ASCII."""
    rows = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        groups = "".join(
            (chunk[g : g + 4].hex() if g < len(chunk) else "").ljust(8) + " "
            for g in range(0, 16, 4)
        )
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        rows.append(f"  0x{address + start:08x} {groups}{text}")
    return rows


def _size(value: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0:
            return f"{value >> shift} {unit}"
    return f"{value} bytes"


def _addr(value: int) -> str:
    if value == FW_RSC_ADDR_ANY:
        return f"{value:#010x} (FW_RSC_ADDR_ANY: the host allocates it)"
    return f"{value:#010x}"


def _notify_id(value: int) -> str:
    if value == RSC_NOTIFY_ID_ANY:
        return f"{value:#x} (RSC_NOTIFY_ID_ANY: the host allocates it)"
    return str(value)


def _name(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bit_names(value: int, names: Mapping[int, str]) -> str:
    parts = []
    for bit in range(32):
        if value & (1 << bit):
            parts.append(names.get(bit, f"bit {bit}"))
    return "|".join(parts) if parts else "none"


def describe_features(device_id: int, features: int) -> str:
    """``0x00000001 (VIRTIO_RPMSG_F_NS)``: a feature word with its bits named."""
    names = {**_TRANSPORT_FEATURES, **_DEVICE_FEATURES.get(device_id, {})}
    return f"{features:#010x} ({_bit_names(features, names)})"


def describe_status(status: int) -> str:
    """``0x07 (ACK|DRIVER|DRIVER_OK)``: the virtio status byte with its bits named."""
    if status == 0:
        return "0x00 (reset: no driver yet)"
    parts = [name for bit, name in _STATUS_BITS if status & bit]
    known = 0
    for bit, _ in _STATUS_BITS:
        known |= bit
    parts.extend(f"bit {b}" for b in range(8) if status & ~known & (1 << b))
    return f"{status:#04x} ({'|'.join(parts)})"


def _data_rows(key: str, data: bytes) -> list[tuple[str, str]]:
    """``data`` in hex, 16 bytes a row; the key on the first row only."""
    if not data:
        return [(key, "(empty)")]
    chunks = [data[i : i + 16].hex(" ") for i in range(0, len(data), 16)]
    return [(key if i == 0 else "", chunk) for i, chunk in enumerate(chunks)]


def _entry_lines(index: int, offset: int, entry: Entry, loaded: LoadedTable) -> list[str]:
    where = f"offset {offset:#x}"
    if loaded.is_elf:
        where += f" (address {loaded.address + offset:#010x})"
    title = (
        f"entry {index} at {where}: {entry_type_name(entry.type)} (type {entry.type}), "
        f"{entry.size} bytes"
    )
    lines = [title]
    if isinstance(entry, (Carveout, Devmem)):
        lines += fields(
            [
                ("da", _addr(entry.da)),
                ("pa", _addr(entry.pa)),
                ("len", f"{entry.len:#010x} ({_size(entry.len)})"),
                ("flags", f"{entry.flags:#010x}"),
                ("reserved", str(entry.reserved)),
                ("name", _name(entry.name)),
            ]
        )
    elif isinstance(entry, Trace):
        lines += fields(
            [
                ("da", _addr(entry.da)),
                ("len", f"{entry.len:#010x} ({_size(entry.len)})"),
                ("reserved", str(entry.reserved)),
                ("name", _name(entry.name)),
            ]
        )
    elif isinstance(entry, Vdev):
        lines += _vdev_lines(offset, entry)
    elif isinstance(entry, Vendor):
        length = f"{entry.len} (the len word and {len(entry.data)} data bytes)"
        lines += fields([("len", length), *_data_rows("data", entry.data)])
    else:
        lines.append("  (not a defined resource type; the C library and Linux skip it)")
        lines += fields(_data_rows("data", entry.data))
    return lines


def _vdev_lines(offset: int, vdev: Vdev) -> list[str]:
    kind = _VIRTIO_IDS.get(vdev.id, "unknown virtio device")
    width = len("num_of_vrings")
    lines = fields(
        [
            ("id", f"{vdev.id} ({kind})"),
            ("notifyid", _notify_id(vdev.notifyid)),
            ("dfeatures", describe_features(vdev.id, vdev.dfeatures)),
            ("gfeatures", describe_features(vdev.id, vdev.gfeatures)),
            ("config_len", str(vdev.config_len)),
            (
                "status",
                f"{describe_status(vdev.status)} at offset {offset + VDEV_STATUS_OFFSET:#x}",
            ),
            ("num_of_vrings", str(len(vdev.vrings))),
            ("reserved", f"{vdev.reserved & _U8_MAX} {vdev.reserved >> 8}"),
        ],
        width=width,
    )
    for k, vring in enumerate(vdev.vrings):
        at = offset + VDEV_VRINGS_OFFSET + k * VDEV_VRING.size
        lines.append(f"  vring {k} at offset {at:#x}")
        lines += fields(
            [
                ("da", _addr(vring.da)),
                ("align", f"{vring.align:#x}"),
                ("num", str(vring.num)),
                ("notifyid", _notify_id(vring.notifyid)),
                ("reserved", str(vring.reserved)),
            ],
            indent="    ",
        )
    lines += fields(_data_rows("config", vdev.config), width=width)
    return lines


def format_table(loaded: LoadedTable) -> str:
    """A report of the table: source, header, every entry field by field, a hex dump.

    The hex dump covers the whole section of an ELF file (so it matches
    ``readelf -x .resource_table`` row for row, address column included) and, for a raw
    file, the bytes up to the end of the last entry.  Raises
    :class:`FirmwareImageError` when the table does not parse.
    """
    table = loaded.require_table()
    offsets = table.offsets
    lines = [loaded.source, ""]
    header = [
        ("version", str(table.version)),
        ("num", f"{len(table.entries)} entries"),
        ("reserved", "0 0"),
    ]
    header += [(f"offset[{i}]", f"{offset:#x}") for i, offset in enumerate(offsets)]
    lines.append(f"header at offset 0x0, {TABLE_HDR.size + TABLE_OFFSET.size * len(offsets)} bytes")
    lines += fields(header)
    for index, (offset, entry) in enumerate(zip(offsets, table.entries, strict=True)):
        lines.append("")
        lines += _entry_lines(index, offset, entry, loaded)
    lines.append("")
    if loaded.is_elf:
        dumped = loaded.data
        lines.append(f"hex dump of section '{SECTION}' (as readelf -x {SECTION} shows it):")
    else:
        dumped = loaded.data[: loaded.extent]
        lines.append(f"hex dump of the table's {len(dumped)} bytes:")
    lines += hexdump(dumped, loaded.address)
    rest = len(loaded.data) - len(dumped)
    if rest:
        lines.append(f"  ({rest} more bytes after the last entry are not part of the table)")
    return "\n".join(lines) + "\n"


def _source_json(loaded: LoadedTable) -> dict[str, Any]:
    source: dict[str, Any] = {
        "file": loaded.path,
        "kind": "elf" if loaded.is_elf else "raw",
        "size": len(loaded.data),
    }
    if loaded.is_elf:
        source.update(section=SECTION, address=loaded.address, file_offset=loaded.file_offset)
    return source


def table_json(loaded: LoadedTable) -> dict[str, Any]:
    """:meth:`ResourceTable.to_dict` plus ``source`` (file, kind, section address) and
    ``findings`` (:meth:`ResourceTable.check`).  Raises like :func:`format_table`."""
    table = loaded.require_table()
    result = table.to_dict()
    result["source"] = _source_json(loaded)
    result["findings"] = table.check()
    return result


def check_table(loaded: LoadedTable) -> list[str]:
    """What is wrong with the table: its parse error alone, or :meth:`ResourceTable.check`.

    A table that does not parse gives exactly one finding (``loaded.error`` is then set:
    that is how to tell a fatal finding from warnings).
    """
    if loaded.table is None:
        return [str(loaded.problem)]
    return loaded.table.check()


# -- building from a spec ----------------------------------------------------------------

_ANY_WORDS = {"any", "fw_rsc_addr_any", "rsc_notify_id_any"}


class _SpecReader:
    """Reads one mapping of a spec, remembering where it is for error messages."""

    def __init__(self, where: str, value: object, allowed: tuple[str, ...]) -> None:
        self.where = where
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected a mapping of keys, not {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise UsageError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
        self.value = value

    def raw(self, key: str) -> object:
        if key not in self.value:
            raise UsageError(f"{self.where}: missing key {key!r}")
        return self.value[key]

    def number(
        self, key: str, default: int | None = None, *, limit: int = _U32_MAX, any_ok: bool = False
    ) -> int:
        if key not in self.value and default is not None:
            return default
        value = self.raw(key)
        if isinstance(value, str) and any_ok and value.strip().lower() in _ANY_WORDS:
            return _U32_MAX
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip(), 0)
            except ValueError:
                number = None
        if number is None:
            hint = " or 'any'" if any_ok else ""
            raise UsageError(
                f"{self.where}: {key} must be a number (like 4096 or '0x1000'{hint}), not {value!r}"
            )
        if not 0 <= number <= limit:
            raise UsageError(f"{self.where}: {key} = {value!r} is out of range 0..{limit:#x}")
        return number

    def text(self, key: str, default: str = "") -> str:
        if key not in self.value:
            return default
        value = self.value[key]
        if not isinstance(value, str):
            raise UsageError(f"{self.where}: {key} must be a string, not {_kind(value)}")
        return value

    def hex_bytes(self, key: str) -> bytes:
        text = self.text(key)
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise UsageError(
                f"{self.where}: {key} must be a hex string like '0011aabb', not {text!r}"
            ) from None


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    return repr(value)


_MEMORY_KEYS = ("da", "pa", "len", "flags", "name", "reserved")
_TRACE_KEYS = ("da", "len", "name", "reserved")
_VDEV_KEYS = (
    "id",
    "notifyid",
    "dfeatures",
    "gfeatures",
    "status",
    "vrings",
    "config",
    "reserved",
)
_VRING_KEYS = ("da", "align", "num", "notifyid", "reserved")
_VENDOR_KEYS = ("type", "data")
_KINDS = ("carveout", "devmem", "trace", "vdev", "rpmsg", "vendor")


def _memory_entry(r: _SpecReader, kind: str) -> Entry:
    cls = Carveout if kind == "carveout" else Devmem
    # A carveout's pa is written back by the host, so it may be left out; a devmem
    # entry maps da to pa, so both are required.
    pa_default = FW_RSC_ADDR_ANY if kind == "carveout" else None
    return cls(
        da=r.number("da", any_ok=True),
        pa=r.number("pa", pa_default, any_ok=True),
        len=r.number("len"),
        flags=r.number("flags", 0),
        name=r.text("name"),
        reserved=r.number("reserved", 0),
    )


def _vdev_entry(r: _SpecReader, rpmsg: bool) -> Vdev:
    vrings_spec = r.raw("vrings")
    if not isinstance(vrings_spec, list):
        raise UsageError(f"{r.where}: vrings must be a list, not {_kind(vrings_spec)}")
    vrings = []
    for k, item in enumerate(vrings_spec):
        v = _SpecReader(f"{r.where} vring {k}", item, _VRING_KEYS)
        vrings.append(
            VdevVring(
                da=v.number("da", any_ok=True),
                align=v.number("align"),
                num=v.number("num"),
                notifyid=v.number("notifyid", any_ok=True),
                reserved=v.number("reserved", 0),
            )
        )
    return Vdev(
        id=r.number("id", VIRTIO_ID_RPMSG if rpmsg else None),
        notifyid=r.number("notifyid", 0, any_ok=True),
        dfeatures=r.number("dfeatures", 1 << VIRTIO_RPMSG_F_NS if rpmsg else 0),
        gfeatures=r.number("gfeatures", 0),
        status=r.number("status", 0, limit=_U8_MAX),
        vrings=vrings,
        config=r.hex_bytes("config"),
        reserved=r.number("reserved", 0, limit=_U16_MAX),
    )


def _entry_from_spec(index: int, item: object) -> Entry:
    if not isinstance(item, Mapping) or len(item) != 1:
        raise UsageError(
            f"entry {index}: expected a mapping with one key, the entry kind "
            f"({', '.join(_KINDS)}), not {item!r}"
        )
    ((kind, body),) = item.items()
    if kind not in _KINDS:
        raise UsageError(
            f"entry {index}: unknown entry kind {kind!r} (expected one of {', '.join(_KINDS)})"
        )
    where = f"entry {index} ({kind})"
    if kind in ("carveout", "devmem"):
        return _memory_entry(_SpecReader(where, body, _MEMORY_KEYS), kind)
    if kind == "trace":
        r = _SpecReader(where, body, _TRACE_KEYS)
        return Trace(
            da=r.number("da", any_ok=True),
            len=r.number("len"),
            name=r.text("name"),
            reserved=r.number("reserved", 0),
        )
    if kind in ("vdev", "rpmsg"):
        return _vdev_entry(_SpecReader(where, body, _VDEV_KEYS), rpmsg=kind == "rpmsg")
    r = _SpecReader(where, body, _VENDOR_KEYS)
    vendor_type = r.number("type")
    if not RSC_VENDOR_START <= vendor_type <= RSC_VENDOR_END:
        raise UsageError(
            f"{where}: type {vendor_type} is outside the vendor range "
            f"{RSC_VENDOR_START}..{RSC_VENDOR_END}"
        )
    return Vendor(vendor_type, r.hex_bytes("data"))


def table_from_spec(spec: object) -> ResourceTable:
    """A :class:`ResourceTable` from a parsed YAML (or JSON) description.

    The schema (numbers are ints or strings like ``'0x4000'``; addresses and notify ids
    may be ``any`` for ``0xffffffff``; keys in brackets are optional)::

        version: 1                   # [optional, default 1]
        entries:
          - carveout: {da, [pa: any], len, [flags: 0], [name: ""]}
          - devmem:   {da, pa, len, [flags: 0], [name: ""]}
          - trace:    {da, len, [name: ""]}
          - vdev:     {id, [notifyid: 0], [dfeatures: 0], [gfeatures: 0], [status: 0],
                       vrings: [{da, align, num, notifyid}, ...], [config: "hex"]}
          - rpmsg:    {...}          # a vdev with id 7 and dfeatures 1 by default
          - vendor:   {type: 128..512, [data: "hex"]}

    Every entry also takes ``reserved`` (default 0), to build malformed tables on
    purpose.  Raises :class:`UsageError` naming the entry and the unknown, missing or
    bad key.
    """
    top = _SpecReader("spec", spec, ("version", "entries"))
    version = top.number("version", TABLE_VERSION)
    items = top.raw("entries")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise UsageError(f"spec: entries must be a list, not {_kind(items)}")
    table = ResourceTable([_entry_from_spec(i, item) for i, item in enumerate(items)], version)
    try:
        table.to_bytes()
    except ResourceTableError as exc:
        raise UsageError(str(exc)) from None
    return table


def load_spec(path: str | Path) -> ResourceTable:
    """Read a YAML spec file and build its table (:func:`table_from_spec`).

    Needs PyYAML (``pip install 'pyopenamp[yaml]'``).  Every error is a
    :class:`UsageError` whose message starts with the file name.
    """
    try:
        import yaml
    except ImportError:
        raise UsageError(
            "reading a YAML spec needs PyYAML: pip install 'pyopenamp[yaml]'"
        ) from None
    raw = read_regular_file(path, limit=1024 * 1024, what="YAML spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    try:
        spec = yaml.safe_load(text)
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a resource-table spec") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        if mark is None or problem is None:
            raise UsageError(f"{path}: not valid YAML: {exc}") from None
        context = getattr(exc, "context", None)
        reason = f"{context}, {problem}" if context else problem
        raise UsageError(
            f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {reason}"
        ) from None
    try:
        return table_from_spec(spec)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a resource-table spec") from None


# -- C output ----------------------------------------------------------------------------

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_C_TYPES = """\
struct fw_rsc_carveout {
\tuint32_t type;
\tuint32_t da;
\tuint32_t pa;
\tuint32_t len;
\tuint32_t flags;
\tuint32_t reserved;
\tchar name[32];
} __attribute__((packed));

struct fw_rsc_devmem {
\tuint32_t type;
\tuint32_t da;
\tuint32_t pa;
\tuint32_t len;
\tuint32_t flags;
\tuint32_t reserved;
\tchar name[32];
} __attribute__((packed));

struct fw_rsc_trace {
\tuint32_t type;
\tuint32_t da;
\tuint32_t len;
\tuint32_t reserved;
\tchar name[32];
} __attribute__((packed));

struct fw_rsc_vdev_vring {
\tuint32_t da;
\tuint32_t align;
\tuint32_t num;
\tuint32_t notifyid;
\tuint32_t reserved;
} __attribute__((packed));

/* The vrings and then config_len bytes of config space follow a vdev entry. */
struct fw_rsc_vdev {
\tuint32_t type;
\tuint32_t id;
\tuint32_t notifyid;
\tuint32_t dfeatures;
\tuint32_t gfeatures;
\tuint32_t config_len;
\tuint8_t status;
\tuint8_t num_of_vrings;
\tuint8_t reserved[2];
} __attribute__((packed));

/* The vendor data follows; len counts the len word and the data. */
struct fw_rsc_vendor {
\tuint32_t type;
\tuint32_t len;
} __attribute__((packed));
"""


def _c_string(name: str) -> str:
    out = []
    for ch in name:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F and ch != "?":  # "?" could start a trigraph
            out.append(ch)
        else:
            out.append(f"\\{code:03o}")
    return '"' + "".join(out) + '"'


def _c_bytes(data: bytes, indent: str) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    return "{\n" + ",\n".join(indent + "\t" + row for row in rows) + ",\n" + indent + "}"


def _c_init(member: str, fields: list[tuple[str, str]], comment: str) -> list[str]:
    lines = [f"\t.{member} = {{ /* {comment} */"]
    lines += [f"\t\t.{key} = {value}," for key, value in fields]
    lines.append("\t},")
    return lines


def _c_entry(index: int, offset: int, entry: Entry) -> tuple[list[str], list[str]]:
    """(members of the table struct, their initialisers) for one entry."""
    label = f"entry {index} at {offset:#x}: {entry_type_name(entry.type)}"
    if isinstance(entry, (Carveout, Devmem)):
        kind = "carveout" if isinstance(entry, Carveout) else "devmem"
        member = f"{kind}{index}"
        init = _c_init(
            member,
            [
                ("type", f"{entry.type}"),
                ("da", f"{entry.da:#x}"),
                ("pa", f"{entry.pa:#x}"),
                ("len", f"{entry.len:#x}"),
                ("flags", f"{entry.flags:#x}"),
                ("reserved", f"{entry.reserved:#x}"),
                ("name", _c_string(entry.name)),
            ],
            label,
        )
        return [f"\tstruct fw_rsc_{kind} {member}; /* {label} */"], init
    if isinstance(entry, Trace):
        member = f"trace{index}"
        init = _c_init(
            member,
            [
                ("type", f"{entry.type}"),
                ("da", f"{entry.da:#x}"),
                ("len", f"{entry.len:#x}"),
                ("reserved", f"{entry.reserved:#x}"),
                ("name", _c_string(entry.name)),
            ],
            label,
        )
        return [f"\tstruct fw_rsc_trace {member}; /* {label} */"], init
    if isinstance(entry, Vdev):
        return _c_vdev(index, label, entry)
    if isinstance(entry, Vendor):
        member = f"vendor{index}"
        members = [f"\tstruct fw_rsc_vendor {member}; /* {label} */"]
        init = _c_init(member, [("type", f"{entry.type}"), ("len", f"{entry.len}")], label)
        if entry.data:
            members.append(f"\tuint8_t {member}_data[{len(entry.data)}];")
            init.append(f"\t.{member}_data = {_c_bytes(entry.data, chr(9))},")
        return members, init
    member = f"unknown{index}"
    members = [f"\tuint32_t {member}_type; /* {label} */"]
    init = [f"\t.{member}_type = {entry.type},"]
    if entry.data:
        members.append(f"\tuint8_t {member}_data[{len(entry.data)}];")
        init.append(f"\t.{member}_data = {_c_bytes(entry.data, chr(9))},")
    return members, init


def _c_vdev(index: int, label: str, vdev: Vdev) -> tuple[list[str], list[str]]:
    member = f"vdev{index}"
    members = [f"\tstruct fw_rsc_vdev {member}; /* {label} */"]
    init = _c_init(
        member,
        [
            ("type", f"{vdev.type}"),
            ("id", f"{vdev.id}"),
            ("notifyid", f"{vdev.notifyid:#x}"),
            ("dfeatures", f"{vdev.dfeatures:#x}"),
            ("gfeatures", f"{vdev.gfeatures:#x}"),
            ("config_len", f"{vdev.config_len}"),
            ("status", f"{vdev.status:#x}"),
            ("num_of_vrings", f"{len(vdev.vrings)}"),
            ("reserved", f"{{{vdev.reserved & _U8_MAX:#x}, {vdev.reserved >> 8:#x}}}"),
        ],
        label,
    )
    for k, vring in enumerate(vdev.vrings):
        name = f"{member}_vring{k}"
        members.append(f"\tstruct fw_rsc_vdev_vring {name};")
        init += _c_init(
            name,
            [
                ("da", f"{vring.da:#x}"),
                ("align", f"{vring.align:#x}"),
                ("num", f"{vring.num}"),
                ("notifyid", f"{vring.notifyid:#x}"),
                ("reserved", f"{vring.reserved:#x}"),
            ],
            f"entry {index} vring {k}",
        )
    if vdev.config:
        members.append(f"\tuint8_t {member}_config[{len(vdev.config)}];")
        init.append(f"\t.{member}_config = {_c_bytes(vdev.config, chr(9))},")
    return members, init


def c_source(table: ResourceTable, symbol: str = "resource_table") -> str:
    """A self-contained C file defining ``symbol``, the table, in ``.resource_table``.

    It includes only ``<stdint.h>``, declares packed structs mirroring the table (one
    member per entry, vring and data block, as the OpenAMP demos' ``rsc_table.c`` does)
    and initialises one non-``const`` instance (the host writes into it) with
    ``__attribute__((section(".resource_table"), used, aligned(8)))``.  Compiled with
    GCC or Clang for a little-endian target, the section holds exactly
    ``table.to_bytes()``.  Raises :class:`UsageError` for a symbol that is not a C
    identifier and :class:`ResourceTableError` for a table that cannot be encoded.
    """
    if not _C_IDENTIFIER.match(symbol):
        raise UsageError(f"symbol {symbol!r} is not a C identifier")
    data = table.to_bytes()
    num = len(table.entries)
    # The offsets to_bytes() wrote, read back rather than recomputed.
    offsets = [
        o
        for (o,) in TABLE_OFFSET.iter_unpack(
            data[TABLE_HDR.size : TABLE_HDR.size + TABLE_OFFSET.size * num]
        )
    ]
    struct_name = f"remote_{symbol}"
    members = [
        "\tuint32_t ver;",
        "\tuint32_t num;",
        "\tuint32_t reserved[2];",
    ]
    inits = [
        f"\t.ver = {table.version},",
        f"\t.num = {num},",
        "\t.reserved = {0, 0},",
    ]
    if num:
        members.append(f"\tuint32_t offset[{num}];")
        inits.append(f"\t.offset = {{{', '.join(f'{o:#x}' for o in offsets)}}},")
    for index, (offset, entry) in enumerate(zip(offsets, table.entries, strict=True)):
        entry_members, entry_inits = _c_entry(index, offset, entry)
        members += entry_members
        inits += entry_inits
    summary = ", ".join(
        f"{index}: {entry_type_name(entry.type)}" for index, entry in enumerate(table.entries)
    )
    lines = [
        f"/* Resource table generated by `openamp rsc build` (pyopenamp {__version__}).",
        f" * {num} entries ({summary or 'none'}), {len(data)} bytes.",
        " *",
        f" * Compile it into the remote firmware. The linker script must keep the {SECTION}",
        f" * section (KEEP(*({SECTION}))) in memory the host can reach. The host writes into",
        " * the table (vdev status and gfeatures, notify ids, vring and carveout addresses),",
        " * so it is deliberately not const.",
        " */",
        "#include <stdint.h>",
        "",
        "#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__",
        '#error "this resource table is little-endian; regenerate it for this target"',
        "#endif",
        "",
        _C_TYPES,
        f"struct {struct_name} {{",
        *members,
        "} __attribute__((packed));",
        "",
        f"_Static_assert(sizeof(struct {struct_name}) == {len(data)},",
        f'\t"struct {struct_name} must be packed to {len(data)} bytes");',
        "",
        f"struct {struct_name} {symbol}",
        f'\t__attribute__((section("{SECTION}"), used, aligned(8))) = {{',
        *inits,
        "};",
        "",
    ]
    return "\n".join(lines)
