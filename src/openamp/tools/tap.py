"""The passive tap: follow two other processes' link in their shared memory, read-only.

Theory of operation
-------------------
The tap maps the machine's shared-memory file read-only (``O_RDONLY``, ``PROT_READ``:
it cannot write, kick or otherwise change anything either side sees), waits for the
resource table and the driver's DRIVER_OK, and then follows two indices:

* vring 1's ``avail.idx``: each new entry names a descriptor whose buffer holds a
  message from the host (driver) to the remote (device);
* vring 0's ``used.idx``: each new entry names a receive buffer the remote filled with
  a message for the host.

For every new entry it copies the message (rpmsg header and payload) out of the buffer
and hands a :class:`~openamp.rpmsg.events.MessageEvent` to its hook, as if it were the
host: ``"tx"`` for host -> remote, ``"rx"`` for remote -> host.  It is a poller, so it
can fall behind; it never pretends it did not:

* an index that moved more than the ring size ahead overwrote ring entries the tap had
  not read: those messages are *missed*;
* a buffer that a later published entry already uses again, or whose content changed
  while the tap copied it, was overwritten: that message is *missed* too.

Each loss is reported as a :class:`~openamp.rpmsg.events.MissedEvent` (with how many and
why) and counted in :attr:`TapStats.missed`.  What the tap cannot see: kicks (they are
socket writes between the two processes) and anything before it attached.

Rules: this module never writes to the memory it watches and never talks to either
process; everything it reads is untrusted and checked (a bad index or address is a
missed message, never an exception or a read outside the mapping).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import OpenAMPError, OpenAMPTimeoutError, UsageError
from ..metal.shm import SHM_DIR, map_readonly
from ..remoteproc.rsc_table import RSC_VDEV, ResourceTable, Vdev
from ..rpmsg.events import (
    EventHook,
    FeaturesEvent,
    LinkEvent,
    MessageEvent,
    MissedEvent,
    StatusEvent,
    VringLocation,
)
from ..rpmsg.wire import RPMSG_HDR, RPMSG_HDR_SIZE
from ..virtio.ring import DESC, USED_ELEM, VIRTIO_CONFIG_STATUS_DRIVER_OK, VringLayout
from .linkmem import find_table
from .procscan import processes_mapping

__all__ = ["Tap", "TapStats", "shm_path_for"]

U16 = struct.Struct("<H")


def shm_path_for(machine: str, name: str | None) -> str:
    """The shared-memory file of ``--machine`` (``linux-generic`` or ``virtual``)."""
    if machine == "linux-generic":
        if name:
            raise UsageError("--name only applies to --machine virtual")
        return os.path.join(SHM_DIR, "openamp.shm")
    if machine == "virtual":
        if not name:
            raise UsageError("--machine virtual needs --name NAME")
        from ..platform.virtual import virtual_paths

        return os.path.join(SHM_DIR, virtual_paths(name)[0])
    raise UsageError(f"unknown machine {machine!r} (linux-generic, virtual)")


@dataclass
class TapStats:
    """What a tap saw."""

    messages: int = 0
    h2r: int = 0
    """Messages host -> remote (vring 1)."""
    r2h: int = 0
    """Messages remote -> host (vring 0)."""
    missed: int = 0
    """Messages that may have been missed (see the module docstring)."""
    stop_reason: str = ""


class _Follower:
    """One ring followed from its publishing index (see the module docstring)."""

    def __init__(
        self, mem: mmap.mmap, layout: VringLayout, index: int, phys_base: int, fresh: bool
    ) -> None:
        self.mem = mem
        self.lay = layout
        self.index = index
        self.num = layout.num
        self.mask = layout.num - 1
        self.phys_base = phys_base
        self.size = len(mem)
        # vring 1: the driver publishes in avail; vring 0: the device publishes in used
        self.idx_off = layout.avail_idx if index == 1 else layout.used_idx
        # on a link that came up while we watched, every entry is new (from 0)
        self.last = 0 if fresh else self.published()

    def published(self) -> int:
        return int(U16.unpack_from(self.mem, self.idx_off)[0])

    def entry(self, k: int) -> tuple[int, int] | None:
        """``(descriptor head, buffer address)`` of ring entry ``k``, or None if bad."""
        slot = k & self.mask
        if self.index == 1:
            head = int(U16.unpack_from(self.mem, self.lay.avail_ring + 2 * slot)[0])
        else:
            head = int(USED_ELEM.unpack_from(self.mem, self.lay.used_ring + 8 * slot)[0])
        if head >= self.num:
            return None
        addr = int(DESC.unpack_from(self.mem, self.lay.desc + 16 * head)[0])
        return head, addr

    def desc_len(self, head: int) -> int:
        """The length descriptor ``head`` gives (0 until the driver filled it in)."""
        return int(DESC.unpack_from(self.mem, self.lay.desc + 16 * head)[1])

    def read(self, head: int) -> tuple[int, int, bytes] | None:
        """``(address, buffer length, header + payload)`` of descriptor ``head``."""
        addr, length, _flags, _next = DESC.unpack_from(self.mem, self.lay.desc + 16 * head)
        off = addr - self.phys_base
        if length < RPMSG_HDR_SIZE or off < 0 or off + length > self.size:
            return None
        _src, _dst, _res, n, _fl = RPMSG_HDR.unpack_from(self.mem, off)
        if n > length - RPMSG_HDR_SIZE:
            return None
        return addr, length, self.mem[off : off + RPMSG_HDR_SIZE + n]


class Tap:
    """Follow the link in the shared-memory file ``path`` and hand its events to ``hook``.

    ``phys_base`` is the physical address of the file's first byte (0 on the machines
    here); ``rsc_offset`` where the resource table is (None: found as ``inspect``
    finds it).  ``from_start``: read the rings from index 0 (True) or from where they
    are (False); None decides by itself -- from 0 if the link came up while the tap
    watched.  Use :meth:`run`.
    """

    def __init__(
        self,
        path: str,
        hook: EventHook,
        *,
        phys_base: int = 0,
        rsc_offset: int | None = None,
        from_start: bool | None = None,
    ) -> None:
        self.path = path
        self.from_start = from_start
        self.hook = hook
        self.phys_base = phys_base
        self.rsc_offset = rsc_offset
        self.stats = TapStats()
        self.fresh = False
        """Whether the link came up while the tap watched (else it attached mid-run)."""
        self._rings: list[_Follower] = []
        self._tick: Callable[[Tap], bool] | None = None
        self._tick_interval = 0.5

    def run(
        self,
        *,
        wait: float | None = 10.0,
        duration: float | None = None,
        count: int = 0,
        stop_when_unused: bool = True,
        tick: Callable[[Tap], bool] | None = None,
        tick_interval: float = 0.5,
    ) -> TapStats:
        """Watch until ``duration`` seconds passed, ``count`` messages were seen (0: no
        limit), the file was removed, or (``stop_when_unused``) no process maps it any
        more.  ``wait``: seconds to wait for the file, the table and DRIVER_OK (None:
        forever); :class:`OpenAMPTimeoutError` if they do not come.  ``tick(tap)`` is
        called about every ``tick_interval`` seconds (a live view refreshes there); it
        returns False to stop."""
        mem, table_off, vdev = self._attach(wait)
        self._tick, self._tick_interval = tick, tick_interval
        try:
            return self._follow(mem, table_off, vdev, duration, count, stop_when_unused)
        finally:
            self._rings = []
            mem.close()

    def ring_levels(self) -> list[tuple[int, int, int, int]]:
        """``(vring, avail.idx, used.idx, num)`` of each ring, read now (while running)."""
        out = []
        for r in self._rings:
            m = r.mem
            avail = int(U16.unpack_from(m, r.lay.avail_idx)[0])
            used = int(U16.unpack_from(m, r.lay.used_idx)[0])
            out.append((r.index, avail, used, r.num))
        return out

    # -- attaching ------------------------------------------------------------------------

    def _attach(self, wait: float | None) -> tuple[mmap.mmap, int, int]:
        deadline = None if wait is None else time.monotonic() + wait
        mem: mmap.mmap | None = None
        self.fresh = False
        what = f"{self.path} to appear"
        while True:
            if mem is None:
                with contextlib.suppress(FileNotFoundError):
                    if not stat.S_ISREG(os.stat(self.path).st_mode):
                        raise UsageError(
                            f"{self.path} is not a regular file: not a shared-memory segment"
                        )
            try:
                if mem is None and os.path.exists(self.path):
                    with contextlib.suppress(UsageError):  # still empty: not sized yet
                        mem = map_readonly(self.path)
                if mem is not None:
                    what = f"a resource table with a vdev in {self.path}"
                    off = self.rsc_offset
                    if off is None:
                        off = find_table(bytes(mem[: min(len(mem), 0x80000)]))
                    if off is not None:
                        table = ResourceTable.parse(bytes(mem[off : off + 0x1000]))
                        found = table.find(RSC_VDEV, 0)
                        if found is not None:
                            vdev_off = off + found[0]
                            what = f"DRIVER_OK in the vdev at {vdev_off:#x} of {self.path}"
                            if self._vdev(mem, vdev_off).status & VIRTIO_CONFIG_STATUS_DRIVER_OK:
                                return mem, off, vdev_off
            except (OpenAMPError, struct.error, ValueError):  # half-written: look again
                pass
            self.fresh = True  # the link came up while we watched
            if deadline is not None and time.monotonic() > deadline:
                if mem is not None:
                    mem.close()
                raise OpenAMPTimeoutError(f"the tap waited {wait} s for {what}")
            time.sleep(0.002)

    @staticmethod
    def _vdev(mem: mmap.mmap, vdev_off: int) -> Vdev:
        from ..remoteproc.rsc_table import VDEV, VDEV_VRING, VdevVring

        fields = VDEV.unpack_from(mem, vdev_off)
        _t, dev_id, notifyid, dfeatures, gfeatures, _cfg, status, nrings, _r = fields
        vrings = [
            VdevVring(*VDEV_VRING.unpack_from(mem, vdev_off + VDEV.size + VDEV_VRING.size * i)[:4])
            for i in range(min(nrings, 2))
        ]
        return Vdev(dev_id, notifyid, dfeatures, gfeatures, status, vrings)

    # -- following ------------------------------------------------------------------------

    def _follow(
        self,
        mem: mmap.mmap,
        table_off: int,
        vdev_off: int,
        duration: float | None,
        count: int,
        stop_when_unused: bool,
    ) -> TapStats:
        vdev = self._vdev(mem, vdev_off)
        hook, stats = self.hook, self.stats
        hook(StatusEvent(vdev.status, "seen"))
        hook(FeaturesEvent(vdev.dfeatures, vdev.gfeatures, "seen"))
        if len(vdev.vrings) < 2:
            stats.stop_reason = "the vdev has fewer than 2 vrings"
            return stats
        if self.from_start is not None:
            self.fresh = self.from_start
        rings = []
        for i, vr in enumerate(vdev.vrings[:2]):
            base = vr.da - self.phys_base
            lay = VringLayout(vr.num, vr.align, base=base, pa=vr.da)
            if base < 0 or lay.start + lay.size > len(mem):
                stats.stop_reason = f"vring {i} lies outside the memory"
                return stats
            rings.append(_Follower(mem, lay, i, self.phys_base, self.fresh))
        if not self.fresh:
            hook(
                MissedEvent(
                    -1, 0, "the tap attached to a running link: earlier messages are not seen"
                )
            )
        r0, r1 = rings
        self._rings = rings
        sizes = [r.desc_len(0) for r in rings]
        hook(
            LinkEvent(
                "tap",
                vdev.gfeatures,
                sizes[0],
                sizes[1],
                tuple(
                    VringLocation(i, v.da, v.num, v.align, v.notifyid)
                    for i, v in enumerate(vdev.vrings[:2])
                ),
            )
        )
        end = None if duration is None else time.monotonic() + duration
        next_check = time.monotonic() + 0.2
        tick = self._tick
        next_tick = time.monotonic() + self._tick_interval
        idle = 0
        while True:
            got = self._drain(r1) + self._drain(r0)
            if count and stats.messages >= count:
                stats.stop_reason = f"{count} messages seen"
                break
            now = time.monotonic()
            if tick is not None and now >= next_tick:
                next_tick = now + self._tick_interval
                if not tick(self):
                    stats.stop_reason = "stopped by the viewer"
                    break
            if end is not None and now >= end:
                stats.stop_reason = f"time limit of {duration} s"
                break
            if got:
                idle = 0
                continue
            idle += 1
            if now >= next_check:
                next_check = now + 0.2
                reason = self._link_gone(stop_when_unused)
                if reason:
                    self._drain(r1)
                    self._drain(r0)
                    stats.stop_reason = reason
                    break
            if idle > 20000:  # quiet for a while: poll every 0.2 ms, not flat out
                time.sleep(0.0002)
        if tick is not None:
            tick(self)  # the last view, with the final counts
        return stats

    def _link_gone(self, stop_when_unused: bool) -> str:
        if not os.path.exists(self.path):
            return f"{self.path} was removed"
        if stop_when_unused and not processes_mapping(self.path):
            return "no process maps the memory any more (both sides ended)"
        return ""

    def _drain(self, ring: _Follower) -> int:
        """Read every entry published on ``ring`` since the last look; how many."""
        now = ring.published()
        delta = (now - ring.last) & 0xFFFF
        if not delta:
            return 0
        stats, hook = self.stats, self.hook
        if delta > ring.num:
            lost = delta - ring.num
            self._missed(ring.index, lost, f"the ring index moved {delta} entries at once")
            ring.last = (now - ring.num) & 0xFFFF
            delta = ring.num
        rx = ring.index == 0
        for _ in range(delta):
            k = ring.last
            ring.last = (k + 1) & 0xFFFF
            entry = ring.entry(k)
            first = None if entry is None else ring.read(entry[0])
            if entry is None or first is None:
                self._missed(ring.index, 1, f"entry {k}: a descriptor or buffer out of bounds")
                continue
            head, _addr = entry
            addr, buflen, data = first
            again = ring.read(head)
            reused = again is None or again[2][:8] + again[2][12:] != data[:8] + data[12:]
            if not reused:
                # a later published entry that names the same buffer reused it already
                later = (ring.published() - ring.last) & 0xFFFF
                for j in range(min(later, ring.num)):
                    e = ring.entry((ring.last + j) & 0xFFFF)
                    if e is not None and e[1] == addr:
                        reused = True
                        break
            if reused:
                self._missed(ring.index, 1, f"entry {k}: the buffer was reused before it was read")
                continue
            src, dst, _res, n, flags = RPMSG_HDR.unpack_from(data)
            slot = (k & ring.mask) if rx else head
            hook(
                MessageEvent(
                    "rx" if rx else "tx",
                    ring.index,
                    addr,
                    slot,
                    buflen,
                    src,
                    dst,
                    n,
                    flags,
                    bytes(data[RPMSG_HDR_SIZE:]),
                )
            )
            stats.messages += 1
            if rx:
                stats.r2h += 1
            else:
                stats.h2r += 1
        return delta

    def _missed(self, vring: int, n: int, reason: str) -> None:
        self.stats.missed += n
        self.hook(MissedEvent(vring, n, reason))
