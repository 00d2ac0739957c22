"""The legacy split-ring layout (``include/uapi/linux/virtio_ring.h``), defined once.

A vring of ``num`` entries at physical address ``pa`` with alignment ``align``::

    desc   pa                        num x {u64 addr, u32 len, u16 flags, u16 next}
    avail  pa + 16*num               u16 flags, u16 idx, u16 ring[num], u16 used_event
    used   align_up(avail end, A)    u16 flags, u16 idx, {u32 id, u32 len}[num], u16 avail_event

All fields are little-endian (the C library and Linux with VIRTIO_F_VERSION_1 agree on
this for every target we support).  This module only computes offsets and holds the
``struct`` definitions; it never touches memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import UsageError

# -- wire formats (one definition each) --------------------------------------------------

DESC = struct.Struct("<QIHH")
"""``vring_desc``: addr, len, flags, next (16 bytes)."""
USED_ELEM = struct.Struct("<II")
"""``vring_used_elem``: id, len (8 bytes)."""
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")

DESC_SIZE = DESC.size
USED_ELEM_SIZE = USED_ELEM.size

# descriptor flags
VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4

# ring flags
VRING_USED_F_NO_NOTIFY = 1
VRING_AVAIL_F_NO_INTERRUPT = 1

VQ_RING_DESC_CHAIN_END = 0x8000
"""The C library's free-list terminator written into the last ``desc.next``."""

# transport/ring feature bits (bit numbers)
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32

# virtio status byte
VIRTIO_CONFIG_STATUS_RESET = 0x00
VIRTIO_CONFIG_STATUS_ACK = 0x01
VIRTIO_CONFIG_STATUS_DRIVER = 0x02
VIRTIO_CONFIG_STATUS_DRIVER_OK = 0x04
VIRTIO_CONFIG_STATUS_FEATURES_OK = 0x08
VIRTIO_CONFIG_STATUS_NEEDS_RESET = 0x40
VIRTIO_CONFIG_STATUS_FAILED = 0x80

VIRTIO_ID_RPMSG = 7


def align_up(value: int, align: int) -> int:
    """Round ``value`` up to a multiple of ``align`` (a power of two)."""
    return (value + align - 1) & ~(align - 1)


def vring_size(num: int, align: int) -> int:
    """Bytes a vring of ``num`` entries occupies (C ``vring_size``); (256, 4096) -> 10246."""
    return align_up(DESC_SIZE * num + 4 + 2 * num + 2, align) + 4 + USED_ELEM_SIZE * num + 2


def vring_need_event(event: int, new: int, old: int) -> bool:
    """Event-index test: did the index move past ``event`` when going from old to new?"""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


@dataclass(frozen=True)
class VringLayout:
    """Byte offsets of every part of one vring, relative to the region holding it.

    ``base`` is the offset of the descriptor table in that region and ``pa`` its physical
    address (the used ring is aligned on the physical address, as ``vring_init`` aligns
    the mapped address).
    """

    num: int
    align: int
    base: int
    pa: int
    avail_at: int | None = None
    """Offset of the avail ring when the driver placed it on its own (vhost-user, virtio
    1.0 split rings give three addresses); None = right after the descriptors."""
    used_at: int | None = None
    """Offset of the used ring when placed on its own; None = aligned after avail."""

    def __post_init__(self) -> None:
        if self.num <= 0 or self.num & (self.num - 1) or self.num > 32768:
            raise UsageError(f"vring num must be a power of two in 1..32768, got {self.num}")
        if self.align <= 0 or self.align & (self.align - 1):
            raise UsageError(f"vring align must be a power of two, got {self.align}")
        if self.pa % 16 or self.base % 2:
            raise UsageError(f"vring address {self.pa:#x} is not 16-byte aligned")
        if self.avail_at is not None and (self.avail_at - self.base) % 2:
            raise UsageError("the avail ring must be 2-byte aligned relative to the descriptors")
        if self.used_at is not None and (self.used_at - self.base) % 4:
            raise UsageError("the used ring must be 4-byte aligned relative to the descriptors")

    @property
    def desc(self) -> int:
        """Offset of the descriptor table."""
        return self.base

    @property
    def avail(self) -> int:
        """Offset of the available ring header (flags)."""
        if self.avail_at is not None:
            return self.avail_at
        return self.base + DESC_SIZE * self.num

    @property
    def avail_flags(self) -> int:
        """Offset of ``avail.flags``."""
        return self.avail

    @property
    def avail_idx(self) -> int:
        """Offset of ``avail.idx``."""
        return self.avail + 2

    @property
    def avail_ring(self) -> int:
        """Offset of ``avail.ring[0]``."""
        return self.avail + 4

    @property
    def used_event(self) -> int:
        """Offset of ``used_event`` (after the avail ring)."""
        return self.avail + 4 + 2 * self.num

    @property
    def used(self) -> int:
        """Offset of the used ring header, aligned on the physical address."""
        if self.used_at is not None:
            return self.used_at
        end_pa = self.pa + DESC_SIZE * self.num + 4 + 2 * self.num + 2
        return self.base + align_up(end_pa, self.align) - self.pa

    @property
    def used_flags(self) -> int:
        """Offset of ``used.flags``."""
        return self.used

    @property
    def used_idx(self) -> int:
        """Offset of ``used.idx``."""
        return self.used + 2

    @property
    def used_ring(self) -> int:
        """Offset of ``used.ring[0]``."""
        return self.used + 4

    @property
    def avail_event(self) -> int:
        """Offset of ``avail_event`` (after the used ring)."""
        return self.used + 4 + USED_ELEM_SIZE * self.num

    @property
    def start(self) -> int:
        """Offset of the lowest byte of the ring (parts may be placed apart)."""
        return min(self.base, self.avail, self.used)

    @property
    def end(self) -> int:
        """Offset one past the last byte of the ring."""
        return max(self.base + DESC_SIZE * self.num, self.used_event + 2, self.avail_event + 2)

    @property
    def size(self) -> int:
        """Bytes from :attr:`start` to :attr:`end`; :func:`vring_size` for a packed ring."""
        return self.end - self.start
