"""ELF firmware images: check them, find the resource table, copy the segments into memory.

:class:`ElfImage` reads an image through an :class:`~openamp.remoteproc.store.ImageStore`
(so a :class:`~openamp.remoteproc.store.StreamingImageStore` is read only where needed):
the ELF header is parsed by pyelftools (``ELFFile``, over a small file-like adapter on
the store), program and section headers with pyelftools' structs, and every header
range is bounds-checked against the image before it is read.  :func:`load_segments`
then copies each ``PT_LOAD`` segment to the memory a callback maps for it, in chunks of
at most 1 MiB, and zero-fills the rest of the segment (``.bss``).

Behaviour we share with the C library (``lib/remoteproc/elf_loader.c`` and
``remoteproc_load``) and Linux (``remoteproc_elf_loader.c``):

* a segment is placed at its **physical address** ``p_paddr``, not ``p_vaddr`` -- the C
  loader returns ``da = p_paddr`` and Linux calls ``rproc_da_to_va(p_paddr, memsz)``;
* ``p_filesz`` bytes are copied and ``p_memsz - p_filesz`` bytes are set to 0;
* ``PT_LOAD`` segments with ``p_memsz == 0`` are skipped (Linux from v5.19);
* the resource table is the first section named ``.resource_table``: its address is
  ``sh_addr``, its bytes ``[sh_offset, +sh_size)`` in the file (C
  ``elf_locate_rsc_table``);
* the boot address is ``e_entry``.

Where we are stricter (the C library checks only the magic; Linux checks a little more):
images that are not little-endian are refused, as are a segment whose file bytes run
past the end of the image, ``p_filesz > p_memsz``, ``PT_LOAD`` segments whose physical
ranges overlap (the later one would silently overwrite the earlier), header tables that
run past the end of the image or whose entry size is too small, and a
``.resource_table`` section that runs past the end of the image or has no bytes in it.
An image without ``PT_LOAD`` segments is accepted (Linux refuses ``e_phnum == 0``); it
simply loads nothing.

What this module must not do: trust the image (every malformed image raises
:class:`~openamp.errors.FirmwareImageError` naming the image and the segment or section
-- never a pyelftools ``ELFError``, a ``struct.error`` or an ``IndexError``), write
anywhere but into the regions the ``mmap`` callback returns, or handle the resource
table beyond finding and parsing it (allocating carveouts, assigning notify ids and
writing the table back into the remote's memory is the remoteproc's job).  It does not
relocate anything and ignores ``e_type`` and ``e_machine`` (reported, not checked).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, cast

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile

from ..errors import FirmwareImageError, OpenAMPError
from ..metal.io import IoRegion
from .rsc_table import ResourceTable
from .store import ImageStore, StreamingImageStore, open_image

__all__ = [
    "COPY_CHUNK",
    "ELF_MAGIC",
    "RSC_TABLE_SECTION",
    "ElfImage",
    "MapCallback",
    "RscTableLocation",
    "Segment",
    "is_elf",
    "load_segments",
]

ELF_MAGIC = b"\x7fELF"
RSC_TABLE_SECTION = ".resource_table"
COPY_CHUNK = 1 << 20
"""Largest piece :func:`load_segments` reads from the store and writes in one go."""

MapCallback = Callable[[int, int], tuple[IoRegion, int]]
"""``mmap(pa, size) -> (region, offset)``: where ``size`` bytes at physical address ``pa``
live.  Raises an :class:`~openamp.errors.OpenAMPError` (for example
:class:`~openamp.errors.RegionBoundsError`) when no memory is mapped there.
``AddressSpace.translate`` has exactly this shape."""

_EI_CLASS = 4
_EI_DATA = 5
_ELFCLASS32 = 1
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_ELFDATA2MSB = 2
_EHDR_SIZE = {_ELFCLASS32: 52, _ELFCLASS64: 64}
_SHN_UNDEF = 0

# What pyelftools and its vendored construct raise on malformed or truncated input.
_PARSER_ERRORS = (
    ELFError,
    ConstructError,
    struct.error,
    IndexError,
    KeyError,
    ValueError,
    EOFError,
    OverflowError,
)


@dataclass(frozen=True)
class Segment:
    """One ``PT_LOAD`` program header.

    ``index`` is its position in the program header table (as in ``readelf -l``), so
    error messages and tools agree on "segment N".
    """

    index: int
    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


@dataclass(frozen=True)
class RscTableLocation:
    """Where the ``.resource_table`` section is: device address ``da`` (``sh_addr``),
    file ``offset`` (``sh_offset``) and ``size`` (``sh_size``) in bytes."""

    da: int
    offset: int
    size: int


@contextmanager
def _pyelftools_errors(name: str, what: str) -> Iterator[None]:
    """Turn whatever pyelftools raises on bad input into a :class:`FirmwareImageError`."""
    try:
        yield
    except OpenAMPError:
        raise
    except _PARSER_ERRORS as exc:
        raise FirmwareImageError(f"{name}: malformed {what}: {exc or type(exc).__name__}") from exc


class _StoreReader:
    """The file-like object pyelftools reads from: ``seek``/``tell``/``read`` on a store.

    The first bytes of the image (the ELF header) are served from ``head``, so that
    pyelftools' many small reads of the header fields cost one store request.
    """

    def __init__(self, store: ImageStore, size: int, head: bytes) -> None:
        self._store = store
        self._size = size
        self._head = head
        self._pos = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        available = max(0, self._size - self._pos)
        count = available if n is None or n < 0 else min(n, available)
        start = self._pos
        self._pos += count
        if start + count <= len(self._head):
            return self._head[start : start + count]
        return self._store.read(start, count)


class ElfImage:
    """A checked ELF firmware image: its segments, entry point and resource table.

    ``firmware`` is an :class:`ImageStore`, or a path or bytes (opened with
    :func:`~openamp.remoteproc.store.open_image`).  Everything is checked here, in the
    constructor; a malformed image raises :class:`FirmwareImageError`.  Only the headers
    and the section-name table are read now; segment and table bytes are read on demand.

    A store passed in stays the caller's to close; a store opened from a path or bytes is
    closed by :meth:`close` (or at the end of a ``with`` block).
    """

    def __init__(self, firmware: ImageStore | str | os.PathLike[str] | bytes | bytearray) -> None:
        owns = not isinstance(firmware, ImageStore)
        self.store: ImageStore = open_image(firmware)
        self._owns_store = owns
        self._elf_class = 32
        self._machine = ""
        self._entry = 0
        self._segments: list[Segment] = []
        self._rsc_table: RscTableLocation | None = None
        self._sections: dict[str, tuple[int, Any]] = {}
        try:
            self._parse()
        except BaseException:
            if owns:
                self.store.close()
            raise

    # -- parsing --------------------------------------------------------------------------

    def _parse(self) -> None:
        store = self.store
        name = store.name
        size = store.size
        head = store.read(0, min(size, _EHDR_SIZE[_ELFCLASS64]))
        if head[:4] != ELF_MAGIC:
            raise FirmwareImageError(
                f"not an ELF image: {name} does not start with \\x7fELF (bad magic)"
            )
        if size <= _EI_DATA:
            raise FirmwareImageError(
                f"{name}: truncated ELF header: the image has {size} bytes, too few for e_ident"
            )
        ei_class = head[_EI_CLASS]
        if ei_class not in _EHDR_SIZE:
            raise FirmwareImageError(
                f"{name}: unsupported ELF class {ei_class} (EI_CLASS must be "
                f"{_ELFCLASS32} for ELF32 or {_ELFCLASS64} for ELF64)"
            )
        ei_data = head[_EI_DATA]
        if ei_data == _ELFDATA2MSB:
            raise FirmwareImageError(
                f"{name}: big-endian images are not supported (EI_DATA = {ei_data})"
            )
        if ei_data != _ELFDATA2LSB:
            raise FirmwareImageError(
                f"{name}: invalid EI_DATA {ei_data}; only {_ELFDATA2LSB} (little-endian) "
                "is supported"
            )
        self._elf_class = 32 if ei_class == _ELFCLASS32 else 64
        ehdr_size = _EHDR_SIZE[ei_class]
        if size < ehdr_size:
            raise FirmwareImageError(
                f"{name}: truncated ELF header: the image has {size} bytes, an "
                f"ELF{self._elf_class} header needs {ehdr_size}"
            )
        with _pyelftools_errors(name, "ELF header"):
            elf = ELFFile(cast(IO[bytes], _StoreReader(store, size, head)))
            header = elf.header
            machine = header["e_machine"]
            self._machine = machine if isinstance(machine, str) else f"EM_UNKNOWN_{machine}"
            self._entry = int(header["e_entry"])
            phnum = int(elf.num_segments())
        self._segments = self._parse_segments(elf, header, phnum, size)
        if isinstance(store, StreamingImageStore):
            # A forward-only stream must keep the segment bytes while it reads on to the
            # section headers at the end of the file.
            for seg in self._segments:
                store.retain(seg.offset, seg.filesz)
        self._rsc_table = self._find_rsc_table(elf, header, size)

    def _table_bytes(
        self, what: str, offset: int, count: int, entsize: int, minimum: int, size: int
    ) -> bytes:
        """The ``count`` entries of a header table, after checking that it fits."""
        name = self.store.name
        if entsize < minimum:
            raise FirmwareImageError(
                f"{name}: {what} entry size {entsize} is smaller than an "
                f"ELF{self._elf_class} {what[:-1]} ({minimum} bytes)"
            )
        end = offset + count * entsize
        if end > size:
            raise FirmwareImageError(
                f"{name}: truncated {what}: [{offset:#x}, {end:#x}) runs past the end of "
                f"the image ({size} bytes)"
            )
        return self.store.read(offset, count * entsize)

    def _parse_segments(self, elf: Any, header: Any, phnum: int, size: int) -> list[Segment]:
        if phnum == 0:
            return []
        name = self.store.name
        phdr = elf.structs.Elf_Phdr
        phdr_size = int(phdr.sizeof())
        entsize = int(header["e_phentsize"])
        table = self._table_bytes(
            "program headers", int(header["e_phoff"]), phnum, entsize, phdr_size, size
        )
        segments: list[Segment] = []
        for index in range(phnum):
            raw = table[index * entsize : index * entsize + phdr_size]
            with _pyelftools_errors(name, f"program header {index}"):
                ph = phdr.parse(raw)
            if ph["p_type"] != "PT_LOAD":
                continue
            seg = Segment(
                index=index,
                paddr=int(ph["p_paddr"]),
                vaddr=int(ph["p_vaddr"]),
                offset=int(ph["p_offset"]),
                filesz=int(ph["p_filesz"]),
                memsz=int(ph["p_memsz"]),
                flags=int(ph["p_flags"]),
            )
            if seg.filesz > seg.memsz:
                raise FirmwareImageError(
                    f"{name}: segment {index} has p_filesz {seg.filesz:#x} > p_memsz {seg.memsz:#x}"
                )
            if seg.offset + seg.filesz > size:
                raise FirmwareImageError(
                    f"{name}: segment {index} runs past the end of the image: p_offset "
                    f"{seg.offset:#x} + p_filesz {seg.filesz:#x} > file size {size:#x}"
                )
            segments.append(seg)
        _check_overlaps(name, segments)
        return segments

    def _find_rsc_table(self, elf: Any, header: Any, size: int) -> RscTableLocation | None:
        name = self.store.name
        with _pyelftools_errors(name, "section header table"):
            shnum = int(elf.num_sections())
        if shnum == 0:
            return None
        shdr = elf.structs.Elf_Shdr
        shdr_size = int(shdr.sizeof())
        entsize = int(header["e_shentsize"])
        table = self._table_bytes(
            "section headers", int(header["e_shoff"]), shnum, entsize, shdr_size, size
        )
        with _pyelftools_errors(name, "section header table"):
            shstrndx = int(elf.get_shstrndx())
        if shstrndx == _SHN_UNDEF:
            return None  # no section names, so no .resource_table
        if shstrndx >= shnum:
            raise FirmwareImageError(
                f"{name}: e_shstrndx {shstrndx} is not a section (the image has {shnum})"
            )
        headers = []
        for index in range(shnum):
            raw = table[index * entsize : index * entsize + shdr_size]
            with _pyelftools_errors(name, f"section header {index}"):
                headers.append(shdr.parse(raw))
        strtab = self._section_bytes(headers[shstrndx], f"section name table (section {shstrndx})")
        wanted = RSC_TABLE_SECTION.encode()
        found: tuple[int, Any] | None = None
        self._sections = {}
        for index, sh in enumerate(headers):
            offset = int(sh["sh_name"])
            if offset == 0:
                continue
            if offset >= len(strtab):
                raise FirmwareImageError(
                    f"{name}: section {index}: sh_name {offset:#x} lies outside the section "
                    f"name table ({len(strtab)} bytes)"
                )
            end = strtab.find(b"\0", offset)
            section = strtab[offset : end if end >= 0 else None]
            self._sections.setdefault(section.decode("utf-8", "replace"), (index, sh))
            if found is None and section == wanted:
                found = (index, sh)
        if found is None:
            return None
        index, sh = found
        self._section_bytes(sh, f"section {RSC_TABLE_SECTION} (section {index})", read=False)
        return RscTableLocation(
            da=int(sh["sh_addr"]), offset=int(sh["sh_offset"]), size=int(sh["sh_size"])
        )

    def _section_bytes(self, sh: Any, what: str, *, read: bool = True) -> bytes:
        """Check that a section's bytes are in the image, and read them if ``read``."""
        name = self.store.name
        size = self.store.size
        offset, length = int(sh["sh_offset"]), int(sh["sh_size"])
        if sh["sh_type"] == "SHT_NOBITS":
            raise FirmwareImageError(f"{name}: {what} is SHT_NOBITS: it has no bytes in the image")
        if offset + length > size:
            raise FirmwareImageError(
                f"{name}: {what} [{offset:#x}, {offset + length:#x}) runs past the end of the "
                f"image ({size} bytes)"
            )
        return self.store.read(offset, length) if read else b""

    # -- queries --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The image's name (its store's), as used in error messages."""
        return self.store.name

    @property
    def elf_class(self) -> int:
        """32 or 64."""
        return self._elf_class

    @property
    def machine(self) -> str:
        """``e_machine`` as pyelftools names it (``EM_ARM``, ``EM_X86_64``, ...);
        ``EM_UNKNOWN_<n>`` for a value pyelftools does not know."""
        return self._machine

    @property
    def entry(self) -> int:
        """The entry point ``e_entry``: where the remote starts (its boot address)."""
        return self._entry

    @property
    def segments(self) -> list[Segment]:
        """The ``PT_LOAD`` segments, in program-header order (a new list each time)."""
        return list(self._segments)

    @property
    def rsc_table(self) -> RscTableLocation | None:
        """Where the ``.resource_table`` section is, or ``None`` if there is none."""
        return self._rsc_table

    def read_segment(self, seg: Segment) -> bytes:
        """The ``filesz`` bytes of ``seg`` from the image."""
        return self.store.read(seg.offset, seg.filesz)

    def read_rsc_table(self) -> bytes:
        """The bytes of the ``.resource_table`` section.

        Raises :class:`FirmwareImageError` (``no .resource_table section``) if there is none.
        """
        loc = self._rsc_table
        if loc is None:
            raise FirmwareImageError(f"{self.name}: no {RSC_TABLE_SECTION} section")
        return self.store.read(loc.offset, loc.size)

    def resource_table(self) -> ResourceTable:
        """The parsed resource table; a malformed one raises ``ResourceTableError``."""
        return ResourceTable.parse(self.read_rsc_table())

    def read_section(self, name: str) -> bytes | None:
        """The bytes of the first section called ``name``, or ``None`` if there is none.

        Raises :class:`FirmwareImageError` if the section's bytes are not in the image.
        """
        found = self._sections.get(name)
        if found is None:
            return None
        index, sh = found
        return self._section_bytes(sh, f"section {name} (section {index})")

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this image opened it (from a path or bytes)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> ElfImage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ElfImage({self.name!r}, ELF{self._elf_class} {self._machine}, "
            f"entry={self._entry:#x}, {len(self._segments)} PT_LOAD segments)"
        )


def _check_overlaps(name: str, segments: list[Segment]) -> None:
    """Refuse ``PT_LOAD`` segments whose physical ranges ``[paddr, +memsz)`` intersect."""
    spans = sorted((s.paddr, s.paddr + s.memsz, s.index) for s in segments if s.memsz)
    reach: tuple[int, int, int] | None = None
    for start, end, index in spans:
        if reach is not None and start < reach[1]:
            first, second = sorted((reach[2], index))
            raise FirmwareImageError(
                f"{name}: segments {first} and {second} overlap in physical address range: "
                f"segment {reach[2]} [{reach[0]:#x}, {reach[1]:#x}) and segment {index} "
                f"[{start:#x}, {end:#x})"
            )
        if reach is None or end > reach[1]:
            reach = (start, end, index)


def is_elf(data_or_store: bytes | bytearray | memoryview | ImageStore) -> bool:
    """Whether the image starts with the ELF magic ``\\x7fELF`` (C ``elf_identify``)."""
    if isinstance(data_or_store, (bytes, bytearray, memoryview)):
        return bytes(data_or_store[:4]) == ELF_MAGIC
    try:
        return data_or_store.size >= 4 and data_or_store.read(0, 4) == ELF_MAGIC
    except FirmwareImageError:
        return False


def load_segments(image: ElfImage, mmap: MapCallback) -> list[Segment]:
    """Copy every ``PT_LOAD`` segment of ``image`` into the memory ``mmap`` maps for it.

    For each segment in program-header order: ``mmap(seg.paddr, seg.memsz)`` says where
    the memory is; ``filesz`` bytes are copied from the image in pieces of at most
    :data:`COPY_CHUNK` bytes, and the remaining ``memsz - filesz`` bytes are set to 0.
    Segments with ``memsz == 0`` are skipped.  Returns the segments loaded.

    Raises :class:`FirmwareImageError` (``segment N at <paddr> (+<memsz>) is outside every
    mapped memory: <reason>``) when ``mmap`` raises an :class:`OpenAMPError` or returns a
    region too small for the segment.  Segments loaded before the failure stay loaded.
    """
    loaded: list[Segment] = []
    for seg in image.segments:
        if seg.memsz == 0:
            continue
        try:
            region, base = mmap(seg.paddr, seg.memsz)
            region.check(base, seg.memsz)
        except OpenAMPError as exc:
            raise FirmwareImageError(
                f"{image.name}: segment {seg.index} at {seg.paddr:#x} (+{seg.memsz:#x}) is "
                f"outside every mapped memory: {exc}"
            ) from exc
        for done in range(0, seg.filesz, COPY_CHUNK):
            piece = image.store.read(seg.offset + done, min(COPY_CHUNK, seg.filesz - done))
            region.write_block(base + done, piece)
        for done in range(seg.filesz, seg.memsz, COPY_CHUNK):
            region.fill(base + done, min(COPY_CHUNK, seg.memsz - done), 0)
        loaded.append(seg)
    return loaded
