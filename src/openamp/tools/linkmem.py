"""What a link's shared memory says: table, vdevs, vrings, descriptors, buffers.

:func:`read_link_memory` decodes a copy of a shared-memory machine's memory (a live
``/dev/shm`` file read with :func:`snapshot`, or a dump file): the resource table, each
rpmsg vdev's status, features and config, each vring's indices, flags and event
fields, every descriptor with the state of its buffer, the rpmsg header in each buffer
and the name-service announcements found there.  ``openamp inspect`` prints it,
``openamp doctor`` reasons about it.

Descriptor states.  Which buffers the driver has processed is private to the driver,
so states are read from the rings alone (both the C library and pyopenamp re-post a
receive buffer as soon as they have read it, and reclaim a sent one only when they need
a buffer):

* vring 0 (device -> driver, the driver's receive buffers): ``posted`` -- in the avail
  ring and not returned, an empty buffer the device may fill; ``in flight`` -- returned
  in the used ring and not re-posted, a message the driver has not taken (or holds);
* vring 1 (driver -> device, the driver's transmit buffers): ``in flight`` -- in the
  avail ring and not returned, a message the device has not taken; ``done`` -- returned
  in the used ring, waiting to be reused;
* ``free`` -- in neither ring's recent window (never used, or long since).

Everything here reads untrusted bytes: an index, address or length that does not fit
becomes a *problem* in the result, never an exception; this module writes nothing.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import ResourceTableError
from ..metal.shm import map_readonly
from ..remoteproc.rsc_table import RSC_VDEV, ResourceTable, Vdev, entry_type_name
from ..rpmsg.events import describe_features, describe_status
from ..rpmsg.wire import (
    RPMSG_HDR,
    RPMSG_HDR_SIZE,
    RPMSG_NS_EPT_ADDR,
    RPMSG_NS_MSG_SIZE,
    decode_ns,
)
from ..virtio.ring import DESC, USED_ELEM, VIRTIO_ID_RPMSG, VringLayout

__all__ = [
    "Announcement",
    "BufferHeader",
    "DescriptorView",
    "LinkMemory",
    "VdevView",
    "VringView",
    "find_table",
    "read_link_memory",
    "render_link_memory",
    "snapshot",
]

U16 = struct.Struct("<H")


def snapshot(path: str | os.PathLike[str]) -> bytes:
    """A copy of the file at ``path``, read through a read-only mapping (never written)."""
    m = map_readonly(path)
    try:
        return bytes(m)
    finally:
        m.close()


@dataclass
class BufferHeader:
    """The rpmsg header found at the start of a buffer."""

    src: int
    dst: int
    reserved: int
    length: int
    flags: int

    @property
    def empty(self) -> bool:
        """All zero: a buffer nothing was written to (or a zero-length message to 0)."""
        return not (self.src or self.dst or self.length or self.flags or self.reserved)


@dataclass
class Announcement:
    """A name-service record found in a buffer."""

    vring: int
    desc: int
    name: str
    addr: int
    destroy: bool
    src: int

    @property
    def from_remote(self) -> bool:
        """Sent by the remote (it lies in a buffer of vring 0)."""
        return self.vring == 0


@dataclass
class DescriptorView:
    """One descriptor of a vring and the buffer it points to."""

    index: int
    addr: int
    length: int
    flags: int
    next: int
    state: str
    header: BufferHeader | None = None
    note: str = ""


@dataclass
class VringView:
    """One vring: where it is, its indices, flags and event fields, its descriptors."""

    index: int
    da: int
    num: int
    align: int
    notifyid: int
    avail_flags: int = 0
    avail_idx: int = 0
    used_event: int = 0
    used_flags: int = 0
    used_idx: int = 0
    avail_event: int = 0
    descriptors: list[DescriptorView] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def outstanding(self) -> int:
        """Entries made available and not yet returned (``avail.idx - used.idx``)."""
        return (self.avail_idx - self.used_idx) & 0xFFFF

    def count(self, state: str) -> int:
        """How many descriptors are in ``state``."""
        return sum(d.state == state for d in self.descriptors)


@dataclass
class VdevView:
    """An rpmsg vdev entry of the table and its vrings."""

    entry: int
    offset: int
    """Offset of the entry in the memory."""
    id: int
    notifyid: int
    dfeatures: int
    gfeatures: int
    status: int
    config: bytes
    vrings: list[VringView] = field(default_factory=list)


@dataclass
class LinkMemory:
    """Everything :func:`read_link_memory` found (see the module docstring)."""

    source: str
    size: int
    rsc_offset: int
    phys_base: int = 0
    table: ResourceTable | None = None
    table_error: str | None = None
    vdevs: list[VdevView] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    """What the table check (:meth:`ResourceTable.check`) says."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of everything."""

        def ring(v: VringView) -> dict[str, Any]:
            return {
                "index": v.index,
                "da": v.da,
                "num": v.num,
                "align": v.align,
                "notifyid": v.notifyid,
                "avail": {"flags": v.avail_flags, "idx": v.avail_idx, "used_event": v.used_event},
                "used": {"flags": v.used_flags, "idx": v.used_idx, "avail_event": v.avail_event},
                "outstanding": v.outstanding,
                "states": {s: v.count(s) for s in sorted({d.state for d in v.descriptors})},
                "descriptors": [
                    {
                        "index": d.index,
                        "addr": d.addr,
                        "len": d.length,
                        "flags": d.flags,
                        "next": d.next,
                        "state": d.state,
                        "header": None if d.header is None else vars(d.header),
                        "note": d.note,
                    }
                    for d in v.descriptors
                ],
                "problems": v.problems,
            }

        return {
            "source": self.source,
            "size": self.size,
            "rsc_offset": self.rsc_offset,
            "table": None if self.table is None else self.table.to_dict(),
            "table_error": self.table_error,
            "findings": self.findings,
            "vdevs": [
                {
                    "entry": v.entry,
                    "offset": v.offset,
                    "id": v.id,
                    "notifyid": v.notifyid,
                    "dfeatures": v.dfeatures,
                    "gfeatures": v.gfeatures,
                    "status": v.status,
                    "config": v.config.hex(),
                    "vrings": [ring(r) for r in v.vrings],
                }
                for v in self.vdevs
            ],
            "announcements": [vars(a) for a in self.announcements],
        }


def find_table(mem: bytes) -> int | None:
    """Where a resource table with a vdev entry starts: offset 0 if one is there, else the
    first page boundary (4 KiB) that holds one; None if there is none."""
    for off in range(0, max(len(mem) - 16, 1), 0x1000):
        try:
            table = ResourceTable.parse(mem[off : off + 0x1000])
        except ResourceTableError:
            continue
        if table.find(RSC_VDEV, 0) is not None:
            return off
    return None


def read_link_memory(
    mem: bytes, *, source: str = "", rsc_offset: int | None = None, phys_base: int = 0
) -> LinkMemory:
    """Decode a machine's memory (see the module docstring).

    ``rsc_offset``: where the resource table is (None: :func:`find_table`).
    ``phys_base``: the physical address of the first byte (0 on the machines here).
    """
    found = find_table(mem) if rsc_offset is None else rsc_offset
    out = LinkMemory(source, len(mem), found if found is not None else 0, phys_base)
    if found is None:
        out.table_error = "no resource table with a vdev entry at offset 0 or a page boundary"
        return out
    try:
        table = ResourceTable.parse(mem[found:])
    except ResourceTableError as exc:
        out.table_error = str(exc)
        return out
    out.table = table
    out.findings = table.check()
    for index, (offset, entry) in enumerate(zip(table.offsets, table.entries, strict=True)):
        if isinstance(entry, Vdev):
            out.vdevs.append(_vdev(mem, out, index, found + offset, entry))
    return out


def _vdev(mem: bytes, out: LinkMemory, index: int, offset: int, entry: Vdev) -> VdevView:
    view = VdevView(
        index,
        offset,
        entry.id,
        entry.notifyid,
        entry.dfeatures,
        entry.gfeatures,
        entry.status,
        bytes(entry.config),
    )
    for i, vr in enumerate(entry.vrings):
        ring = VringView(i, vr.da, vr.num, vr.align, vr.notifyid)
        view.vrings.append(ring)
        if entry.id == VIRTIO_ID_RPMSG:
            _read_ring(mem, out, ring)
    return view


def _u16(mem: bytes, off: int) -> int:
    return int(U16.unpack_from(mem, off)[0])


def _read_ring(mem: bytes, out: LinkMemory, ring: VringView) -> None:
    base = ring.da - out.phys_base
    try:
        lay = VringLayout(ring.num, ring.align, base=base, pa=ring.da)
    except Exception as exc:  # a geometry the table check already reports
        ring.problems.append(f"vring {ring.index}: {exc}")
        return
    if base < 0 or lay.start + lay.size > len(mem):
        ring.problems.append(
            f"vring {ring.index} at {ring.da:#x} ({lay.size:#x} bytes) lies outside the "
            f"{len(mem):#x}-byte memory"
        )
        return
    ring.avail_flags = _u16(mem, lay.avail_flags)
    ring.avail_idx = _u16(mem, lay.avail_idx)
    ring.used_event = _u16(mem, lay.used_event)
    ring.used_flags = _u16(mem, lay.used_flags)
    ring.used_idx = _u16(mem, lay.used_idx)
    ring.avail_event = _u16(mem, lay.avail_event)
    num, mask = ring.num, ring.num - 1
    outstanding = ring.outstanding
    posted: set[int] = set()
    if outstanding > num:
        ring.problems.append(
            f"vring {ring.index}: avail.idx {ring.avail_idx} is {outstanding} entries ahead of "
            f"used.idx {ring.used_idx}, more than the ring's {num}"
        )
    else:
        for k in range(outstanding):
            pos = (ring.used_idx + k) & mask
            posted.add(_u16(mem, lay.avail_ring + 2 * pos))
    returned: set[int] = set()
    for k in range(min(num, ring.used_idx)):
        pos = (ring.used_idx - 1 - k) & mask
        head, _length = USED_ELEM.unpack_from(mem, lay.used_ring + 8 * pos)
        returned.add(head)
    rx = ring.index == 0
    for d in range(num):
        addr, length, flags, nxt = DESC.unpack_from(mem, lay.desc + 16 * d)
        if d in posted:
            state = "posted" if rx else "in flight"
        elif d in returned and addr:
            state = "in flight" if rx else "done"
        else:
            state = "free"
        desc = DescriptorView(d, addr, length, flags, nxt, state)
        ring.descriptors.append(desc)
        if not addr and not length:
            continue
        off = addr - out.phys_base
        if off < 0 or off + length > len(mem):
            desc.note = "buffer outside the memory"
            ring.problems.append(
                f"vring {ring.index} desc {d}: buffer [{addr:#x}, +{length:#x}) lies outside "
                f"the {len(mem):#x}-byte memory"
            )
            continue
        if length < RPMSG_HDR_SIZE:
            desc.note = f"a {length}-byte buffer cannot hold an rpmsg header"
            ring.problems.append(f"vring {ring.index} desc {d}: {desc.note}")
            continue
        hdr = BufferHeader(*RPMSG_HDR.unpack_from(mem, off))
        desc.header = hdr
        if hdr.empty:
            continue
        if hdr.length > length - RPMSG_HDR_SIZE:
            desc.note = f"header claims {hdr.length} bytes in a {length}-byte buffer"
            continue
        if hdr.dst == RPMSG_NS_EPT_ADDR and hdr.length == RPMSG_NS_MSG_SIZE:
            start = off + RPMSG_HDR_SIZE
            ns = decode_ns(mem[start : start + RPMSG_NS_MSG_SIZE])
            desc.note = f"NS {'destroy' if ns.destroy else 'create'} {ns.name!r} at {ns.addr:#x}"
            a = Announcement(ring.index, d, ns.name, ns.addr, ns.destroy, hdr.src)
            if not any(
                (x.vring, x.name, x.addr, x.destroy) == (a.vring, a.name, a.addr, a.destroy)
                for x in out.announcements
            ):
                out.announcements.append(a)


def _state_line(ring: VringView) -> str:
    states = {d.state for d in ring.descriptors}
    order = ["posted", "in flight", "done", "free"]
    return ", ".join(f"{ring.count(s)} {s}" for s in order if s in states)


def render_link_memory(lm: LinkMemory, *, descriptors: str = "used") -> str:
    """A report for people.  ``descriptors``: ``"all"``, ``"used"`` (not free; the
    default) or ``"none"``."""
    lines = [f"{lm.source}: {lm.size:#x} bytes ({lm.size // 1024} KiB)"]
    if lm.table is None:
        lines.append(f"resource table: NOT FOUND OR INVALID: {lm.table_error}")
        return "\n".join(lines) + "\n"
    lines.append(
        f"resource table at {lm.rsc_offset:#x}: version {lm.table.version}, "
        f"{len(lm.table.entries)} entries"
    )
    for i, (off, entry) in enumerate(zip(lm.table.offsets, lm.table.entries, strict=True)):
        name = getattr(entry, "name", "")
        da = getattr(entry, "da", None)
        extra = f" {name!r}" if name else ""
        extra += f" at {da:#x}" if isinstance(da, int) else ""
        length = getattr(entry, "len", None)
        extra += f", {length:#x} bytes" if isinstance(length, int) else ""
        lines.append(f"  [{i}] at {lm.rsc_offset + off:#x}: {entry_type_name(entry.type)}{extra}")
    lines += [f"  check: {f}" for f in lm.findings]
    for v in lm.vdevs:
        lines.append("")
        lines.append(
            f"vdev (entry {v.entry}) at {v.offset:#x}: virtio id {v.id}, notify id {v.notifyid}"
        )
        lines.append(f"  status     {describe_status(v.status)}")
        lines.append(f"  dfeatures  {describe_features(v.dfeatures)}  (offered by the device)")
        lines.append(f"  gfeatures  {describe_features(v.gfeatures)}  (accepted by the driver)")
        if v.config:
            lines.append(f"  config     {v.config.hex()}")
        for r in v.vrings:
            role = "device -> driver" if r.index == 0 else "driver -> device"
            lines.append(
                f"  vring{r.index} ({role}) at {r.da:#x}: num {r.num}, align {r.align:#x}, "
                f"notify id {r.notifyid}"
            )
            lines.append(
                f"    avail: flags {r.avail_flags:#x}, idx {r.avail_idx}, used_event {r.used_event}"
            )
            lines.append(
                f"    used:  flags {r.used_flags:#x}, idx {r.used_idx}, avail_event {r.avail_event}"
            )
            lines.append(f"    {r.outstanding} outstanding; descriptors: {_state_line(r)}")
            lines += [f"    PROBLEM: {p}" for p in r.problems]
            if descriptors == "none":
                continue
            for d in r.descriptors:
                if descriptors == "used" and d.state == "free" and not d.addr:
                    continue
                h = d.header
                what = ""
                if h is not None and not h.empty:
                    what = (
                        f"  rpmsg {h.src:#x} -> {h.dst:#x} len {h.length}"
                        f" reserved {h.reserved} flags {h.flags:#x}"
                    )
                elif h is not None:
                    what = "  (empty)"
                note = f"  {d.note}" if d.note else ""
                lines.append(
                    f"    desc {d.index:3d} {d.state:9s} {d.addr:#010x} len {d.length:5d} "
                    f"flags {d.flags:#x} next {d.next:#x}{what}{note}"
                )
    if lm.announcements:
        lines.append("")
        lines.append("name-service records found in the buffers:")
        for a in lm.announcements:
            who = "remote" if a.from_remote else "host"
            what = "destroy" if a.destroy else "create"
            lines.append(
                f"  {who}: {what} {a.name!r} at {a.addr:#x} (vring{a.vring} desc {a.desc})"
            )
    return "\n".join(lines) + "\n"
