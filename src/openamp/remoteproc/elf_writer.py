"""Write small ELF images: what a firmware file needs to go through a kernel's loader.

:func:`build_elf` makes a little-endian ELF64 executable from ``PT_LOAD`` segments and
named sections, the minimum Linux's ``remoteproc_elf_loader.c`` and our
:class:`~openamp.remoteproc.elf.ElfImage` accept: an ELF header, program headers,
the segments' bytes, a section header table with ``.shstrtab``.  The resource table is
a section (``.resource_table``) whose bytes lie inside a ``PT_LOAD`` segment, so the
loader finds it where it placed it.

:func:`python_firmware_image` is the firmware *file* of a Python firmware: the ELF a
real kernel loads for a remote processor whose program is a Python firmware (the UML
remoteproc machine, :mod:`openamp.platform.uml_rproc`).  Its one segment holds the
resource table (and, zero-filled by the loader, the trace buffer); the section
:data:`FIRMWARE_SECTION` names the program (``spec``) and its options, as
``spec\\0key=value\\0...``.  :func:`read_firmware_section` decodes it.

The formats are defined here once, as ``struct.Struct`` with ``<``.  What this module
must not do: read images (that is :mod:`.elf`, which checks everything).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import FirmwareImageError, UsageError

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
"""``Elf64_Ehdr``: ident, type, machine, version, entry, phoff, shoff, flags, ehsize,
phentsize, phnum, shentsize, shnum, shstrndx (64 bytes)."""
PHDR = struct.Struct("<IIQQQQQQ")
"""``Elf64_Phdr``: type, flags, offset, vaddr, paddr, filesz, memsz, align (56 bytes)."""
SHDR = struct.Struct("<IIQQQQIIQQ")
"""``Elf64_Shdr``: name, type, flags, addr, offset, size, link, info, addralign,
entsize (64 bytes)."""

ET_EXEC = 2
EM_NONE = 0
PT_LOAD = 1
PF_R, PF_W = 4, 2
SHT_PROGBITS, SHT_STRTAB = 1, 3
SHF_ALLOC = 2
RSC_TABLE_SECTION = ".resource_table"
FIRMWARE_SECTION = ".openamp.firmware"
"""The section of a Python firmware's ELF that names its program and options."""
_IDENT = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, LSB, version 1


@dataclass(frozen=True)
class LoadSegment:
    """A ``PT_LOAD`` segment: ``data`` at physical (device) address ``paddr``; the
    loader zero-fills it up to ``memsz`` (default: ``len(data)``)."""

    paddr: int
    data: bytes
    memsz: int = 0

    @property
    def size(self) -> int:
        """The segment's size in memory."""
        return max(self.memsz, len(self.data))


@dataclass(frozen=True)
class Section:
    """A named section: ``data`` at ``addr``.  ``alloc`` sections must lie inside a
    segment (their bytes are the segment's); the others are kept only in the file."""

    name: str
    data: bytes
    addr: int = 0
    alloc: bool = False


def build_elf(
    segments: Sequence[LoadSegment],
    sections: Sequence[Section] = (),
    *,
    entry: int = 0,
    machine: int = EM_NONE,
) -> bytes:
    """A little-endian ELF64 executable with ``segments`` and ``sections``.

    An ``alloc`` section's bytes are taken from the segment that holds its address
    range (they must equal ``data``); other sections are appended after the segments.
    """
    if not segments:
        raise UsageError("an ELF for a kernel's loader needs at least one PT_LOAD segment")
    phoff = EHDR.size
    image = bytearray(phoff + PHDR.size * len(segments))
    seg_offsets: list[int] = []
    for seg in segments:
        if seg.paddr < 0 or seg.paddr + seg.size > 0xFFFFFFFF:
            raise UsageError(f"segment at {seg.paddr:#x} does not fit a 32-bit device")
        image += bytes(-len(image) % 16)
        seg_offsets.append(len(image))
        image += seg.data
    names = bytearray(b"\0")
    shdrs = [SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for sec in sections:
        name_at = len(names)
        names += sec.name.encode() + b"\0"
        if sec.alloc:
            for seg, seg_off in zip(segments, seg_offsets, strict=True):
                rel = sec.addr - seg.paddr
                if rel >= 0 and rel + len(sec.data) <= len(seg.data):
                    if seg.data[rel : rel + len(sec.data)] != sec.data:
                        raise UsageError(f"section {sec.name}: its bytes differ from the segment's")
                    at = seg_off + rel
                    break
            else:
                raise UsageError(
                    f"section {sec.name} at {sec.addr:#x} lies in no segment's file bytes"
                )
            flags = SHF_ALLOC
        else:
            at = len(image)
            image += sec.data
            flags = 0
        shdrs.append(
            SHDR.pack(name_at, SHT_PROGBITS, flags, sec.addr, at, len(sec.data), 0, 0, 1, 0)
        )
    strtab_name = len(names)
    names += b".shstrtab\0"
    shdrs.append(SHDR.pack(strtab_name, SHT_STRTAB, 0, 0, len(image), len(names), 0, 0, 1, 0))
    image += names
    image += bytes(-len(image) % 8)
    shoff = len(image)
    image += b"".join(shdrs)
    EHDR.pack_into(
        image,
        0,
        _IDENT,
        ET_EXEC,
        machine,
        1,
        entry,
        phoff,
        shoff,
        0,
        EHDR.size,
        PHDR.size,
        len(segments),
        SHDR.size,
        len(shdrs),
        len(shdrs) - 1,
    )
    for i, (seg, off) in enumerate(zip(segments, seg_offsets, strict=True)):
        PHDR.pack_into(
            image,
            phoff + i * PHDR.size,
            PT_LOAD,
            PF_R | PF_W,
            off,
            seg.paddr,
            seg.paddr,
            len(seg.data),
            seg.size,
            16,
        )
    return bytes(image)


def encode_firmware_section(spec: str, options: Mapping[str, str] | None = None) -> bytes:
    """``spec\\0key=value\\0...``: the contents of :data:`FIRMWARE_SECTION`."""
    words = [spec] + [f"{k}={v}" for k, v in (options or {}).items()]
    for word in words:
        if not word or "\0" in word:
            raise UsageError(f"firmware name or option {word!r} is empty or holds a NUL")
    for key in options or {}:
        if "=" in key or "," in key:
            raise UsageError(f"option name {key!r} cannot contain '=' or ','")
    return b"".join(w.encode() + b"\0" for w in words)


def read_firmware_section(data: bytes) -> tuple[str, dict[str, str]]:
    """Decode :data:`FIRMWARE_SECTION`: ``(spec, options)``.

    The section comes from a firmware file, so it is checked: UTF-8 words ended by NUL,
    a non-empty spec first, then ``key=value`` options.  Raises
    :class:`~openamp.errors.FirmwareImageError`.
    """
    if len(data) > 4096 or not data.endswith(b"\0"):
        raise FirmwareImageError(
            f"{FIRMWARE_SECTION}: {len(data)} bytes, not NUL-terminated words of at most 4 KiB"
        )
    try:
        words = data[:-1].decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise FirmwareImageError(f"{FIRMWARE_SECTION} is not UTF-8") from None
    spec, rest = words[0], words[1:]
    if not spec:
        raise FirmwareImageError(f"{FIRMWARE_SECTION} names no firmware")
    options: dict[str, str] = {}
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise FirmwareImageError(f"{FIRMWARE_SECTION}: option {word!r} is not key=value")
        options[key] = value
    return spec, options


def python_firmware_image(
    spec: str,
    table: bytes,
    *,
    table_da: int,
    memsz: int = 0,
    options: Mapping[str, str] | None = None,
) -> bytes:
    """The ELF file of Python firmware ``spec`` with resource table ``table`` at
    ``table_da``.  ``memsz``: how far from ``table_da`` the loader zero-fills (to clear
    a trace buffer that follows the table)."""
    segment = LoadSegment(table_da, table, memsz)
    return build_elf(
        [segment],
        [
            Section(RSC_TABLE_SECTION, table, table_da, alloc=True),
            Section(FIRMWARE_SECTION, encode_firmware_section(spec, options)),
        ],
        entry=table_da,
    )


__all__ = [
    "EHDR",
    "FIRMWARE_SECTION",
    "PHDR",
    "RSC_TABLE_SECTION",
    "SHDR",
    "LoadSegment",
    "Section",
    "build_elf",
    "encode_firmware_section",
    "python_firmware_image",
    "read_firmware_section",
]
