"""I/O regions: bounds-checked windows on shared memory (libmetal's ``metal_io_region``).

An :class:`IoRegion` wraps a writable buffer (an ``mmap``, a ``bytearray`` or a
``memoryview``) and gives:

* translation between *offsets* inside the region and *physical/device addresses*
  (``phys = phys_base + offset``: one contiguous range, as in the C Linux machine where
  the physical address of a byte of ``openamp.shm`` is its file offset);
* little-endian 8/16/32/64-bit accessors and block read/write/fill, each of which
  checks its bounds and raises :class:`~openamp.errors.RegionBoundsError` rather than
  touching memory outside the window.

:class:`AddressSpace` joins several regions (for example the memory table a vhost-user
frontend hands over) and translates a physical address to ``(region, offset)``.

Atomicity: ``write16/32/64`` store the value with one native store through a typed
``memoryview`` (on the little-endian hosts we support), never with ``struct.pack_into``,
which zeroes its target before writing and so lets a concurrent reader see a transient
0.  Reads use ``struct``, which loads with one ``memcpy``.

Memory ordering: CPython performs each accessor as one plain C store/load inside a
function call, and every platform we run on with shared memory between processes
(x86-64, AArch64 Linux) keeps stores visible in program order to another process after
the syscall/atomic boundaries the doorbells provide.  The rings publish an index only
after the entries it covers, exactly as the C library does; :func:`fence` documents the
points where the C code places ``atomic_thread_fence`` and is a no-op here.

This module does no I/O of its own and never blocks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Protocol, Union

from ..errors import RegionBoundsError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

Buffer = Union[bytearray, memoryview, "WritableBuffer"]


class WritableBuffer(Protocol):
    """Anything that exposes a writable buffer (``mmap.mmap``, ``bytearray``)."""

    def __len__(self) -> int: ...


def fence() -> None:
    """Full memory barrier point (C: ``atomic_thread_fence(memory_order_seq_cst)``).

    A no-op in CPython: each shared-memory access is already a separate, ordered C call.
    It marks, in our code, the places where the C library orders its stores.
    """


class IoRegion:
    """A bounds-checked window of ``size`` bytes on shared memory.

    ``mem`` is the backing buffer (kept alive by the region), ``offset`` where the window
    starts in it, ``phys_base`` the physical (device) address of the window's first byte.
    All accessors take offsets relative to the window.
    """

    __slots__ = ("_backing", "mem", "name", "phys_base", "size")

    def __init__(
        self,
        mem: Buffer,
        *,
        offset: int = 0,
        size: int | None = None,
        phys_base: int = 0,
        name: str = "",
    ) -> None:
        view = mem if isinstance(mem, memoryview) else memoryview(mem)  # type: ignore[arg-type]
        if view.readonly:
            raise RegionBoundsError(f"region {name!r}: backing memory is read-only")
        view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        total = len(view)
        if size is None:
            size = total - offset
        if offset < 0 or size < 0 or offset + size > total:
            raise RegionBoundsError(
                f"region {name!r}: window [{offset:#x}, +{size:#x}) "
                f"outside a {total:#x}-byte buffer"
            )
        if phys_base < 0:
            raise RegionBoundsError(f"region {name!r}: negative physical base {phys_base:#x}")
        self._backing = mem
        self.mem: memoryview = view[offset : offset + size]
        self.size = size
        self.phys_base = phys_base
        self.name = name

    def __repr__(self) -> str:
        return f"IoRegion({self.name!r}, phys={self.phys_base:#x}, size={self.size:#x})"

    def __len__(self) -> int:
        return self.size

    # -- bounds and translation ---------------------------------------------------------

    def check(self, offset: int, length: int) -> None:
        """Raise :class:`RegionBoundsError` unless ``[offset, offset+length)`` is inside."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise RegionBoundsError(
                f"access [{offset:#x}, +{length:#x}) outside region {self.name!r} "
                f"of {self.size:#x} bytes"
            )

    def contains_phys(self, pa: int, length: int = 1) -> bool:
        """Whether the physical range ``[pa, pa+length)`` lies inside this region."""
        off = pa - self.phys_base
        return off >= 0 and length >= 0 and off + length <= self.size

    def phys_to_offset(self, pa: int, length: int = 0) -> int:
        """Offset of physical address ``pa`` (and ``length`` bytes after it) in the region."""
        off = pa - self.phys_base
        if off < 0 or length < 0 or off + length > self.size:
            raise RegionBoundsError(
                f"physical range [{pa:#x}, +{length:#x}) outside region {self.name!r} "
                f"[{self.phys_base:#x}, +{self.size:#x})"
            )
        return off

    def offset_to_phys(self, offset: int) -> int:
        """Physical address of ``offset`` (which must lie inside the region)."""
        self.check(offset, 0)
        return self.phys_base + offset

    def subregion(self, offset: int, size: int, name: str = "") -> IoRegion:
        """A window on part of this region, with the matching physical base."""
        self.check(offset, size)
        return IoRegion(
            self.mem,
            offset=offset,
            size=size,
            phys_base=self.phys_base + offset,
            name=name or f"{self.name}[{offset:#x}]",
        )

    def view(self, offset: int, length: int) -> memoryview:
        """A zero-copy ``memoryview`` of ``length`` bytes at ``offset``."""
        self.check(offset, length)
        return self.mem[offset : offset + length]

    # -- typed accessors -----------------------------------------------------------------

    def read8(self, offset: int) -> int:
        """Unsigned byte at ``offset``."""
        self.check(offset, 1)
        return self.mem[offset]

    def read16(self, offset: int) -> int:
        """Little-endian u16 at ``offset``."""
        self.check(offset, 2)
        return int(_U16.unpack_from(self.mem, offset)[0])

    def read32(self, offset: int) -> int:
        """Little-endian u32 at ``offset``."""
        self.check(offset, 4)
        return int(_U32.unpack_from(self.mem, offset)[0])

    def read64(self, offset: int) -> int:
        """Little-endian u64 at ``offset``."""
        self.check(offset, 8)
        return int(_U64.unpack_from(self.mem, offset)[0])

    def write8(self, offset: int, value: int) -> None:
        """Store the byte ``value`` at ``offset``."""
        self.check(offset, 1)
        self.mem[offset] = value & 0xFF

    def write16(self, offset: int, value: int) -> None:
        """Store ``value`` as little-endian u16 at ``offset``."""
        self.check(offset, 2)
        self.mem[offset : offset + 2].cast("H")[0] = value & 0xFFFF

    def write32(self, offset: int, value: int) -> None:
        """Store ``value`` as little-endian u32 at ``offset``."""
        self.check(offset, 4)
        self.mem[offset : offset + 4].cast("I")[0] = value & 0xFFFFFFFF

    def write64(self, offset: int, value: int) -> None:
        """Store ``value`` as little-endian u64 at ``offset``."""
        self.check(offset, 8)
        self.mem[offset : offset + 8].cast("Q")[0] = value & 0xFFFFFFFFFFFFFFFF

    def read_block(self, offset: int, length: int) -> bytes:
        """Copy ``length`` bytes out of the region."""
        self.check(offset, length)
        return bytes(self.mem[offset : offset + length])

    def write_block(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into the region at ``offset``."""
        n = len(data)
        self.check(offset, n)
        self.mem[offset : offset + n] = data

    def fill(self, offset: int, length: int, value: int = 0) -> None:
        """Set ``length`` bytes at ``offset`` to ``value`` (C: ``metal_io_block_set``)."""
        self.check(offset, length)
        if length:
            self.mem[offset : offset + length] = bytes([value & 0xFF]) * length

    def release(self) -> None:
        """Drop this region's view so the backing mmap can be closed."""
        self.mem.release()


class AddressSpace:
    """Several :class:`IoRegion` s addressed by physical address.

    Used where buffers may live in more than one region (a vhost-user memory table, a
    remoteproc with carveouts).  Lookups try the last region that matched first, so a
    ring whose buffers all live in one pool costs one comparison.
    """

    __slots__ = ("_last", "regions")

    def __init__(self, regions: list[IoRegion] | None = None) -> None:
        self.regions: list[IoRegion] = list(regions or [])
        self._last: IoRegion | None = self.regions[0] if self.regions else None

    def add(self, region: IoRegion) -> None:
        """Register another region; overlapping physical ranges are refused."""
        for r in self.regions:
            if (
                region.phys_base < r.phys_base + r.size
                and r.phys_base < region.phys_base + region.size
            ):
                raise RegionBoundsError(f"{region!r} overlaps {r!r}")
        self.regions.append(region)
        if self._last is None:
            self._last = region

    def __iter__(self) -> Iterator[IoRegion]:
        return iter(self.regions)

    def translate(self, pa: int, length: int) -> tuple[IoRegion, int]:
        """``(region, offset)`` holding the physical range ``[pa, pa+length)``."""
        last = self._last
        if last is not None and last.contains_phys(pa, length):
            return last, pa - last.phys_base
        for r in self.regions:
            if r.contains_phys(pa, length):
                self._last = r
                return r, pa - r.phys_base
        raise RegionBoundsError(f"physical range [{pa:#x}, +{length:#x}) is in no mapped region")
