"""Virtqueues: one split ring seen from either side.

Theory of operation
-------------------
A split vring has two owners.  The *driver* owns the descriptor table and the available
ring: it fills a descriptor with a buffer's address and length, writes the descriptor's
index into ``avail.ring[avail.idx % num]`` and then publishes it by incrementing
``avail.idx``.  The *device* owns the used ring: it takes the next available head,
uses the buffer, writes ``{id: head, len}`` into ``used.ring[used.idx % num]`` and
publishes it by incrementing ``used.idx``.  Both indices are free-running u16 counters.
Each side keeps a private shadow of how far it has consumed the other side's ring
(``last_used`` for the driver, ``last_avail`` for the device).

Two rules keep this file honest:

1. **Everything that changes a ring's state lives here**, for both roles.  A
   :class:`Virtqueue` is parameterised by ``role``; the role decides which half of the
   API is legal (``add_buffer``/``get_used`` for the driver,
   ``get_avail``/``add_used`` for the device), not which copy of the code runs.
2. **Everything read from the ring is untrusted.**  An index that jumps by more than
   ``num``, a head outside the table, a used id that was never handed out, a buffer
   address outside the shared-memory region: each raises :class:`RingError` and marks
   the queue broken.  The driver keeps its own shadow of the free list and of every
   descriptor it handed out, so nothing the device writes can redirect it.

Byte compatibility with the C library (OpenAMP ``virtqueue.c``) matters where the peer
or a memory image can see it: the driver chains ``desc[i].next = i + 1`` at init with
``0x8000`` at the end, frees a descriptor by pointing its ``next`` at the old free head,
writes ``addr/len/flags`` (never ``next``) when it posts a buffer, and publishes an
index only after the entry it covers.

Atomicity: ring indices and flags are read concurrently by the peer, so each is
written with one 16-bit store through a ``memoryview.cast("H")`` of the ring.
(``struct.pack_into`` is not safe for them: CPython zeroes the target before packing,
and a peer reading in between sees a transient 0.)  Descriptors and used elements may be
written with ``struct``: the peer does not read them before the index that covers them
is published.  The native 16-bit view assumes a little-endian host, like every target
the C library and Linux pair with here.

Notifications: without ``VIRTIO_RING_F_EVENT_IDX`` a driver kicks unless the device set
``VRING_USED_F_NO_NOTIFY`` and a device interrupts unless the driver set
``VRING_AVAIL_F_NO_INTERRUPT``; with it, both use ``vring_need_event``.  This module
never sleeps, opens anything or knows what a kick is: ``notify`` is a callable handed in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import IntEnum
from typing import NoReturn

from ..errors import RingError, UsageError
from ..metal.io import IoRegion
from .ring import (
    DESC,
    USED_ELEM,
    VQ_RING_DESC_CHAIN_END,
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_DESC_F_WRITE,
    VRING_USED_F_NO_NOTIFY,
    VringLayout,
    vring_need_event,
)

Buf = tuple[int, int, int]
"""A buffer in the batch operations: ``(offset in buf_io, length, index)``.  The index is
the used-ring slot on the driver (:meth:`Virtqueue.take_used`) and the descriptor head on
the device (:meth:`Virtqueue.take_avail`)."""


class Role(IntEnum):
    """Which side of the virtio device we play (values as in the C library)."""

    DRIVER = 0
    """The host side (``VIRTIO_DEV_DRIVER``, ``RPMSG_HOST``): owns descriptors and avail."""
    DEVICE = 1
    """The remote side (``VIRTIO_DEV_DEVICE``, ``RPMSG_REMOTE``): owns the used ring."""


class Virtqueue:
    """One vring in ``ring_io`` at ``layout``, buffers addressed through ``buf_io``.

    ``notify`` is called by :meth:`kick` when the peer wants to be told.  Buffer offsets
    in this API are offsets inside ``buf_io``; the ring stores ``buf_io``'s physical
    addresses.
    """

    def __init__(
        self,
        ring_io: IoRegion,
        layout: VringLayout,
        *,
        role: Role,
        buf_io: IoRegion,
        notify: Callable[[], None],
        index: int = 0,
        name: str = "",
        event_idx: bool = False,
        buffers: tuple[int, int] | None = None,
    ) -> None:
        if sys.byteorder != "little":
            raise UsageError("virtqueues in shared memory need a little-endian host")
        ring_io.check(layout.start, layout.size)
        self.role = role
        self.index = index
        self.name = name or f"vq{index}"
        self.layout = layout
        self.num = layout.num
        self.event_idx = event_idx
        self.notify = notify
        self.ring_io = ring_io
        self.buf_io = buf_io
        self.broken: RingError | None = None
        self.kicks = 0
        """How many times :meth:`kick` actually notified the peer."""

        base = layout.start
        if base % 2 != layout.base % 2:
            raise UsageError(f"{self.name}: ring parts are not 2-byte aligned to each other")
        self._mem = ring_io.mem
        # u16 view of the ring: index i is the u16 at byte offset base + 2*i
        self._m16 = ring_io.mem[base : base + layout.size].cast("H")
        self._buf_base = buf_io.phys_base
        self._buf_size = buf_io.size
        # where the peer's buffers may lie, as offsets in buf_io (device: the pool)
        if buffers is None:
            buffers = (0, buf_io.size)
        lo, size = buffers
        if lo < 0 or size < 0 or lo + size > buf_io.size:
            raise UsageError(
                f"{self.name}: buffer window [{lo:#x}, +{size:#x}) is outside buf_io "
                f"({buf_io.size:#x} bytes)"
            )
        self._win_lo, self._win_hi = lo, lo + size
        self._mask = layout.num - 1
        self._desc = layout.desc
        self._i_desc = (layout.desc - base) // 2
        self._i_avail_flags = (layout.avail_flags - base) // 2
        self._i_avail_idx = (layout.avail_idx - base) // 2
        self._i_avail_ring = (layout.avail_ring - base) // 2
        self._i_used_event = (layout.used_event - base) // 2
        self._i_used_flags = (layout.used_flags - base) // 2
        self._i_used_idx = (layout.used_idx - base) // 2
        self._i_avail_event = (layout.avail_event - base) // 2
        self._used_ring = layout.used_ring
        self._queued = 0

        # driver state
        self._next = [*range(1, layout.num), VQ_RING_DESC_CHAIN_END]
        self._free_head = 0
        self._free_count = layout.num
        self._offset: list[int | None] = [None] * layout.num
        self._kept: list[int] = []  # heads taken with take_used(keep=True), in order
        self._is_kept = bytearray(layout.num)
        """Driver: the buffer offset each outstanding descriptor carries (None: free)."""
        self._avail_idx = 0
        self._last_used = 0
        # device state
        self._last_avail = 0
        self._used_idx = 0
        self._desc_len: list[int] = [0] * layout.num

    def __repr__(self) -> str:
        return f"Virtqueue({self.name!r}, role={self.role.name}, num={self.num})"

    # -- set-up -------------------------------------------------------------------------

    def init_driver_ring(self) -> None:
        """Driver: zero the whole ring and chain the descriptors into one free list.

        This is what the C driver does before it posts anything (``virtqueue_create``
        after ``virtio_create_virtqueues`` zeroed ``vring_size`` bytes).
        """
        self._require(Role.DRIVER, "init_driver_ring")
        lay = self.layout
        if lay.avail_at is None and lay.used_at is None:
            self.ring_io.fill(lay.start, lay.size)  # vring_size bytes, as C zeroes them
        else:  # parts placed apart: zero each, not whatever lies between them
            self.ring_io.fill(lay.desc, 16 * lay.num)
            self.ring_io.fill(lay.avail, lay.used_event + 2 - lay.avail)
            self.ring_io.fill(lay.used, lay.avail_event + 2 - lay.used)
        m16 = self._m16
        d = (self._desc - self.layout.start) // 2
        for i, nxt in enumerate(self._next):
            m16[d + 8 * i + 7] = nxt  # desc[i].next: byte 14 of a 16-byte descriptor
        self._avail_idx = 0
        self._last_used = 0
        self._free_head = 0
        self._free_count = self.num
        self._drop_kept()

    def attach_device(self, last_avail: int = 0) -> None:
        """Device: start taking buffers at avail index ``last_avail``.

        0 for a fresh ring (C: ``vq_available_idx = 0``); a vhost-user frontend that
        resumes a ring says where (``SET_VRING_BASE``).  The used index is read from
        the ring.
        """
        self._require(Role.DEVICE, "attach_device")
        self._last_avail = last_avail & 0xFFFF
        self._used_idx = self._m16[self._i_used_idx]

    # -- driver side --------------------------------------------------------------------

    @property
    def free_count(self) -> int:
        """Driver: descriptors not currently handed to the device."""
        return self._free_count

    def add_buffer(self, offset: int, length: int, writable: bool) -> int:
        """Driver: post the buffer at ``offset`` in ``buf_io``; return the descriptor head.

        ``writable`` buffers are for the device to fill (rx), others for it to read (tx).
        The offset comes back from :meth:`get_used` when the device returns it.  The new
        entry is published at once; call :meth:`kick` to tell the peer.
        """
        if self.role is not Role.DRIVER:
            self._require(Role.DRIVER, "add_buffer")
        if self.broken is not None:
            raise self.broken
        if self._free_count == 0:
            raise UsageError(f"{self.name}: no free descriptor (all {self.num} posted)")
        if offset < 0 or length < 0 or offset + length > self._buf_size:
            raise UsageError(f"{self.name}: buffer [{offset:#x}, +{length:#x}) outside buf_io")
        head = self._free_head
        nxt = self._next[head]
        DESC.pack_into(
            self._mem,
            self._desc + 16 * head,
            self._buf_base + offset,
            length,
            VRING_DESC_F_WRITE if writable else 0,
            nxt,
        )
        self._free_head = nxt
        self._free_count -= 1
        self._offset[head] = offset
        idx = self._avail_idx
        m16 = self._m16
        m16[self._i_avail_ring + (idx & self._mask)] = head
        # fence: the entry is stored before the index that publishes it (see metal.io)
        idx = (idx + 1) & 0xFFFF
        self._avail_idx = idx
        m16[self._i_avail_idx] = idx
        self._queued += 1
        return head

    def get_used(self) -> tuple[int, int, int] | None:
        """Driver: take the next buffer the device returned, or ``None``.

        Returns ``(offset, used_len, slot)`` where ``slot`` is the used-ring slot (what
        the C library reports as the buffer index).  The descriptor goes back on the
        free list.
        """
        if self.role is not Role.DRIVER:
            self._require(Role.DRIVER, "get_used")
        if not self._used_count():
            return None
        m16, last = self._m16, self._last_used
        slot = last & self._mask
        head, length = USED_ELEM.unpack_from(self._mem, self._used_ring + 8 * slot)
        if head >= self.num:
            self._fail(f"used.ring[{slot}].id = {head} is outside the table of {self.num}")
        offset = self._offset[head]
        if offset is None:
            self._fail(f"used.ring[{slot}].id = {head} names a descriptor that is not in use")
        self._last_used = (last + 1) & 0xFFFF
        # free the descriptor: it becomes the new free-list head (C vq_ring_free_chain)
        self._offset[head] = None
        self._next[head] = self._free_head
        m16[self._i_desc + 8 * head + 7] = self._free_head
        self._free_head = head
        self._free_count += 1
        return offset, length, slot

    def take_used(self, *, keep: bool = False) -> list[Buf]:
        """Driver: every buffer the device has returned, as :meth:`get_used` gives them.

        One call instead of one per buffer (the fast path of a busy receiver), with the
        same checks and the same free-list order.  With ``keep`` the descriptors stay in
        use until :meth:`recycle` gives the buffers back (a receive ring's way).
        """
        if keep:
            return self._take_used_kept()
        count = self._used_count()
        if not count:
            return []
        m16, last = self._m16, self._last_used
        mem, unpack, ring, mask, num = (
            self._mem,
            USED_ELEM.unpack_from,
            self._used_ring,
            self._mask,
            self.num,
        )
        offsets, nxt_of, i_desc = self._offset, self._next, self._i_desc
        free_head = self._free_head
        out: list[Buf] = []
        for _ in range(count):
            slot = last & mask
            head, length = unpack(mem, ring + 8 * slot)
            if head >= num:
                self._fail(f"used.ring[{slot}].id = {head} is outside the table of {num}")
            offset = offsets[head]
            if offset is None:
                self._fail(f"used.ring[{slot}].id = {head} names a descriptor that is not in use")
            offsets[head] = None
            nxt_of[head] = free_head
            m16[i_desc + 8 * head + 7] = free_head
            free_head = head
            out.append((offset, length, slot))
            last = (last + 1) & 0xFFFF
        self._last_used = last
        self._free_head = free_head
        self._free_count += count
        return out

    def _used_count(self) -> int:
        """How many entries the device has added to the used ring since we last looked
        (checked against what we have outstanding)."""
        if self.broken is not None:
            raise self.broken
        last = self._last_used
        count = (self._m16[self._i_used_idx] - last) & 0xFFFF
        if count > self.num - self._free_count:
            self._fail(
                f"used.idx jumped {count} entries past last_used {last} with only "
                f"{self.num - self._free_count} buffers outstanding"
            )
        return count

    def _take_used_kept(self) -> list[Buf]:
        if self._kept:
            raise UsageError(f"{self.name}: recycle() the buffers of the last take first")
        count = self._used_count()
        if not count:
            return []
        last = self._last_used
        mem, unpack, ring, mask, num = (
            self._mem,
            USED_ELEM.unpack_from,
            self._used_ring,
            self._mask,
            self.num,
        )
        offsets, kept, is_kept = self._offset, self._kept, self._is_kept
        out: list[Buf] = []
        for _ in range(count):
            slot = last & mask
            head, length = unpack(mem, ring + 8 * slot)
            if head >= num:
                self._drop_kept()
                self._fail(f"used.ring[{slot}].id = {head} is outside the table of {num}")
            offset = offsets[head]
            if offset is None or is_kept[head]:
                self._drop_kept()
                self._fail(f"used.ring[{slot}].id = {head} names a descriptor that is not in use")
            is_kept[head] = 1
            kept.append(head)
            out.append((offset, length, slot))
            last = (last + 1) & 0xFFFF
        self._last_used = last
        return out

    def recycle(self, returned: list[bool] | None, length: int, writable: bool) -> None:
        """Driver: end a ``take_used(keep=True)``: free its descriptors and re-post the
        buffers that are done (``returned[i]`` for the i-th, None = all), as
        ``length``-byte buffers; publish with one ``avail.idx`` write.

        The ring ends up exactly as after the C library's receive loop, which frees each
        descriptor and re-adds its buffer before it takes the next: a returned buffer goes
        back into its own descriptor, whose ``next`` is the free-list head, and the
        avail ring lists them in the order they came.  Buffers not returned (held) free
        their descriptor, as C's take does.
        """
        if self.role is not Role.DRIVER:
            self._require(Role.DRIVER, "recycle")
        kept, is_kept = self._kept, self._is_kept
        if self.broken is not None:
            self._drop_kept()
            raise self.broken
        mem, m16, nxt_of, offsets = self._mem, self._m16, self._next, self._offset
        pack, desc, base, mask = DESC.pack_into, self._desc, self._buf_base, self._mask
        ring, i_desc = self._i_avail_ring, self._i_desc
        flags = VRING_DESC_F_WRITE if writable else 0
        free_head, idx, freed = self._free_head, self._avail_idx, 0
        for i, head in enumerate(kept):
            is_kept[head] = 0
            if returned is None or returned[i]:
                offset = offsets[head]
                assert offset is not None
                nxt_of[head] = free_head
                pack(mem, desc + 16 * head, base + offset, length, flags, free_head)
                m16[ring + (idx & mask)] = head
                idx = (idx + 1) & 0xFFFF
            else:
                offsets[head] = None
                nxt_of[head] = free_head
                m16[i_desc + 8 * head + 7] = free_head
                free_head = head
                freed += 1
        posted = len(kept) - freed
        kept.clear()
        self._free_head = free_head
        self._free_count += freed
        # fence: every entry is stored before the index that publishes them (see metal.io)
        self._avail_idx = idx
        m16[self._i_avail_idx] = idx
        self._queued += posted

    def _drop_kept(self) -> None:
        for head in self._kept:
            self._is_kept[head] = 0
        self._kept.clear()

    def post(self, bufs: list[Buf], length: int, writable: bool) -> None:
        """Driver: post several buffers of ``length`` bytes and publish them at once.

        ``bufs`` are ``(offset, length, index)`` triples as the batch operations give
        them; only the offsets are used.  Same descriptors, flags and free-list order as
        that many :meth:`add_buffer` calls; ``avail.idx`` is written once, after every
        entry.
        """
        if self.role is not Role.DRIVER:
            self._require(Role.DRIVER, "post")
        if self.broken is not None:
            raise self.broken
        count = len(bufs)
        if count > self._free_count:
            raise UsageError(
                f"{self.name}: {count} buffers but {self._free_count} free descriptors"
            )
        mem, m16, nxt_of, outstanding = self._mem, self._m16, self._next, self._offset
        pack, desc, base, mask = DESC.pack_into, self._desc, self._buf_base, self._mask
        ring, size, flags = (
            self._i_avail_ring,
            self._buf_size,
            VRING_DESC_F_WRITE if writable else 0,
        )
        head, idx = self._free_head, self._avail_idx
        for offset, _len, _index in bufs:
            if offset < 0 or offset + length > size:
                raise UsageError(f"{self.name}: buffer [{offset:#x}, +{length:#x}) outside buf_io")
            nxt = nxt_of[head]
            pack(mem, desc + 16 * head, base + offset, length, flags, nxt)
            outstanding[head] = offset
            m16[ring + (idx & mask)] = head
            idx = (idx + 1) & 0xFFFF
            head = nxt
        self._free_head = head
        self._free_count -= count
        # fence: every entry is stored before the index that publishes them (see metal.io)
        self._avail_idx = idx
        m16[self._i_avail_idx] = idx
        self._queued += count

    # -- device side --------------------------------------------------------------------

    def get_avail(self) -> tuple[int, int, int] | None:
        """Device: take the next available buffer, or ``None``.

        Returns ``(head, offset, length)`` with ``offset`` inside ``buf_io``, after
        checking the head and that the whole buffer lies inside ``buf_io``.
        """
        if self.role is not Role.DEVICE:
            self._require(Role.DEVICE, "get_avail")
        if self.broken is not None:
            raise self.broken
        m16 = self._m16
        avail_idx = m16[self._i_avail_idx]
        last = self._last_avail
        if avail_idx == last:
            return None
        if ((avail_idx - last) & 0xFFFF) > self.num:
            self._fail(f"avail.idx jumped to {avail_idx} with last_avail {last}")
        slot = last & self._mask
        head = m16[self._i_avail_ring + slot]
        if head >= self.num:
            self._fail(f"avail.ring[{slot}] = {head} is outside the table of {self.num}")
        addr, length, _flags, _next = DESC.unpack_from(self._mem, self._desc + 16 * head)
        offset = addr - self._buf_base
        if offset < self._win_lo or offset + length > self._win_hi:
            self._outside(head, addr, length)
        self._last_avail = (last + 1) & 0xFFFF
        self._desc_len[head] = length
        return head, offset, length

    def peek_avail_len(self) -> int:
        """Device: ``desc.len`` of the next available buffer without taking it (0 if none).

        The C device reports its buffer sizes this way (``virtqueue_get_desc_size``).
        """
        m16 = self._m16
        if m16[self._i_avail_idx] == self._last_avail:
            return 0
        head = m16[self._i_avail_ring + (self._last_avail & self._mask)]
        if head >= self.num:
            return 0
        return int(DESC.unpack_from(self._mem, self._desc + 16 * head)[1])

    def add_used(self, head: int, length: int) -> None:
        """Device: return buffer ``head`` with ``length`` bytes written (C: ``desc.len``)."""
        if self.role is not Role.DEVICE:
            self._require(Role.DEVICE, "add_used")
        if self.broken is not None:
            raise self.broken
        if not 0 <= head < self.num:
            raise UsageError(f"{self.name}: descriptor head {head} out of range")
        idx = self._used_idx
        USED_ELEM.pack_into(self._mem, self._used_ring + 8 * (idx & self._mask), head, length)
        # fence: the element is stored before the index that publishes it (see metal.io)
        idx = (idx + 1) & 0xFFFF
        self._used_idx = idx
        self._m16[self._i_used_idx] = idx
        self._queued += 1

    def take_avail(self) -> list[Buf]:
        """Device: every available buffer in one call, with :meth:`get_avail`'s checks.

        Unlike :meth:`get_avail` it gives ``(offset, length, head)`` triples, the shape
        of every batch operation (:meth:`take_used`, :meth:`put_used`, :meth:`post`), so
        a batch goes back to the peer without being rebuilt.
        """
        if self.broken is not None:
            raise self.broken
        m16 = self._m16
        last = self._last_avail
        count = (m16[self._i_avail_idx] - last) & 0xFFFF
        if not count:
            return []
        if count > self.num:
            self._fail(f"avail.idx jumped {count} entries past last_avail {last}")
        mem, unpack, desc, mask, num = self._mem, DESC.unpack_from, self._desc, self._mask, self.num
        ring, base, lens = self._i_avail_ring, self._buf_base, self._desc_len
        lo, hi = self._win_lo, self._win_hi
        out: list[Buf] = []
        for _ in range(count):
            slot = last & mask
            head = m16[ring + slot]
            if head >= num:
                self._fail(f"avail.ring[{slot}] = {head} is outside the table of {num}")
            addr, length, _flags, _next = unpack(mem, desc + 16 * head)
            offset = addr - base
            if offset < lo or offset + length > hi:
                self._outside(head, addr, length)
            lens[head] = length
            out.append((offset, length, head))
            last = (last + 1) & 0xFFFF
        self._last_avail = last
        return out

    def _outside(self, head: int, addr: int, length: int) -> NoReturn:
        lo = self._buf_base + self._win_lo
        self._fail(
            f"desc[{head}] = [{addr:#x}, +{length:#x}) lies outside the shared buffers "
            f"[{lo:#x}, +{self._win_hi - self._win_lo:#x})"
        )

    def put_used(self, bufs: list[Buf]) -> None:
        """Device: return several buffers and publish them at once.

        ``bufs`` are ``(offset, length, head)`` triples as :meth:`take_avail` gives
        them; ``length`` is what the used ring reports for ``head``.
        """
        if self.role is not Role.DEVICE:
            self._require(Role.DEVICE, "put_used")
        if self.broken is not None:
            raise self.broken
        mem, pack, ring, mask, num = (
            self._mem,
            USED_ELEM.pack_into,
            self._used_ring,
            self._mask,
            self.num,
        )
        idx = self._used_idx
        for _offset, length, head in bufs:
            if not 0 <= head < num:
                raise UsageError(f"{self.name}: descriptor head {head} out of range")
            pack(mem, ring + 8 * (idx & mask), head, length)
            idx = (idx + 1) & 0xFFFF
        # fence: every element is stored before the index that publishes them
        self._used_idx = idx
        self._m16[self._i_used_idx] = idx
        self._queued += len(bufs)

    def desc_len(self, head: int) -> int:
        """Device: the length of descriptor ``head`` as read when it was taken."""
        return self._desc_len[head]

    # -- both sides ---------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether the peer has published work we have not consumed yet.

        A broken queue reports True, so that a waiter wakes up and learns why.
        """
        if self.broken is not None:
            return True
        pending: bool
        if self.role is Role.DRIVER:
            pending = self._m16[self._i_used_idx] != self._last_used
        else:
            pending = self._m16[self._i_avail_idx] != self._last_avail
        return pending

    def disable_cb(self) -> None:
        """Ask the peer not to notify us about this queue (C ``virtqueue_disable_cb``)."""
        m16 = self._m16
        if self.event_idx:
            if self.role is Role.DRIVER:
                m16[self._i_used_event] = (self._last_used - self.num - 1) & 0xFFFF
            else:
                m16[self._i_avail_event] = (self._last_avail - self.num - 1) & 0xFFFF
        elif self.role is Role.DRIVER:
            m16[self._i_avail_flags] |= VRING_AVAIL_F_NO_INTERRUPT
        else:
            m16[self._i_used_flags] |= VRING_USED_F_NO_NOTIFY

    def enable_cb(self) -> bool:
        """Ask the peer to notify us again; return whether work is already pending.

        The caller must re-check after enabling: work published before the flag
        became visible to the peer raised no notification.
        """
        m16 = self._m16
        if self.event_idx:
            if self.role is Role.DRIVER:
                m16[self._i_used_event] = self._last_used
            else:
                m16[self._i_avail_event] = self._last_avail
        elif self.role is Role.DRIVER:
            m16[self._i_avail_flags] &= ~VRING_AVAIL_F_NO_INTERRUPT & 0xFFFF
        else:
            m16[self._i_used_flags] &= ~VRING_USED_F_NO_NOTIFY & 0xFFFF
        # fence: the flag is visible before we look at the ring again
        if self.broken is not None:
            return True
        pending: bool
        if self.role is Role.DRIVER:
            pending = m16[self._i_used_idx] != self._last_used
        else:
            pending = m16[self._i_avail_idx] != self._last_avail
        return pending

    def must_notify(self) -> bool:
        """Whether the peer wants a notification for the entries queued since the last kick."""
        m16 = self._m16
        if self.event_idx:
            if self.role is Role.DRIVER:
                new = self._avail_idx
                event = m16[self._i_avail_event]
            else:
                new = self._used_idx
                event = m16[self._i_used_event]
            return vring_need_event(event, new, (new - self._queued) & 0xFFFF)
        notify: bool
        if self.role is Role.DRIVER:
            notify = not m16[self._i_used_flags] & VRING_USED_F_NO_NOTIFY
        else:
            notify = not m16[self._i_avail_flags] & VRING_AVAIL_F_NO_INTERRUPT
        return notify

    def kick(self) -> bool:
        """Notify the peer if it asked to be (C ``virtqueue_kick``); return whether we did."""
        # fence: everything published is visible before the peer is told (see metal.io)
        if self.event_idx:
            notified = self.must_notify()
        elif self.role is Role.DRIVER:
            notified = not self._m16[self._i_used_flags] & VRING_USED_F_NO_NOTIFY
        else:
            notified = not self._m16[self._i_avail_flags] & VRING_AVAIL_F_NO_INTERRUPT
        if notified:
            self.notify()
            self.kicks += 1
        self._queued = 0
        return notified

    def release(self) -> None:
        """Drop this queue's views of shared memory (so the mapping can be closed)."""
        self._m16.release()

    # -- internals ----------------------------------------------------------------------

    def _require(self, role: Role, what: str) -> None:
        if self.role is not role:
            raise UsageError(f"{self.name}: {what}() is a {role.name.lower()}-side operation")

    def _fail(self, reason: str) -> NoReturn:
        err = RingError(f"{self.name} ({self.role.name.lower()} side): {reason}")
        self.broken = err
        raise err
