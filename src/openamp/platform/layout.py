"""Where things live in a machine's shared memory (the C ``platform_info.c`` numbers).

One :class:`MachineLayout` describes the memory of a shared-memory machine: its size,
the resource table's offset, the two vrings and the buffer pool.  The default is the
C reference's Linux "generic" machine, byte for byte, where a byte's physical address is
its offset in the shared memory.  A layout with a ``phys_base`` places that memory at a
physical address (a board's carveouts, as ``openamp sdt generate`` describes them): vring
and pool addresses are then physical, as in the device tree, and only ``rsc_offset`` is
an offset.  :func:`layout_to_dict` / :func:`layout_from_dict` (and the ``.json`` machine
files of :func:`save_layout` / :func:`load_layout`) carry a layout between programs.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..remoteproc.rsc_table import Carveout, Entry, ResourceTable, Vdev, VdevVring
from ..rpmsg.wire import (
    RPMSG_BUFFER_SIZE,
    RPMSG_HDR_SIZE,
    VIRTIO_RPMSG_F_BUFSZ,
    VIRTIO_RPMSG_F_NS,
    RpmsgConfigSpace,
)
from ..virtio.ring import VIRTIO_ID_RPMSG, align_up, vring_size


@dataclass(frozen=True)
class MachineLayout:
    """Memory map of a two-vring rpmsg machine.

    ``vring0_da``, ``vring1_da`` and ``pool_base`` are physical addresses; the shared
    memory's first byte is at ``phys_base`` (0 by default, so that address = offset).
    """

    shm_size: int = 0x80000
    rsc_offset: int = 0x0
    """Offset of the resource table in the shared memory (not an address)."""
    vring0_da: int = 0x4000
    """Device -> driver ring (the driver's receive ring)."""
    vring1_da: int = 0x8000
    """Driver -> device ring."""
    vring_num: int = 256
    vring_align: int = 0x1000
    pool_base: int = 0x10000
    pool_size: int = 0x40000
    dfeatures: int = 1 << VIRTIO_RPMSG_F_NS
    """Features the device offers in its vdev entry.  Add ``1 << VIRTIO_RING_F_EVENT_IDX``
    only when both sides are pyopenamp: a C driver writes ``gfeatures = dfeatures``
    without using event indices, so the two sides would disagree."""
    buffer_sizes: tuple[int, int] | None = None
    """``(remote -> host, host -> remote)`` buffer sizes, header included, that the
    device offers with ``VIRTIO_RPMSG_F_BUFSZ`` in its config space (the remote decides
    the sizes, as with Linux); None offers nothing and the driver uses its own."""
    phys_base: int = 0
    """Physical address of the shared memory's first byte."""
    carveouts: tuple[Carveout, ...] = ()
    """Carveout entries the table lists before its vdev (the firmware's own memory)."""

    def __post_init__(self) -> None:
        if self.buffer_sizes is not None:
            r2h, h2r = self.buffer_sizes
            if r2h <= RPMSG_HDR_SIZE or h2r <= RPMSG_HDR_SIZE:
                raise UsageError(f"layout: buffer sizes {self.buffer_sizes} cannot hold a header")
            if self.vring_num * r2h + h2r > self.pool_size:
                raise UsageError(
                    f"layout: {self.vring_num} receive buffers of {r2h} bytes and a transmit "
                    f"buffer of {h2r} do not fit the {self.pool_size:#x}-byte pool"
                )
        size = vring_size(self.vring_num, self.vring_align)
        table_end = self.rsc_offset + self.resource_table().size
        base = self.phys_base
        for what, da in (
            ("vring0", self.vring0_da),
            ("vring1", self.vring1_da),
            ("buffer pool", self.pool_base),
        ):
            if da < base:
                raise UsageError(f"layout: {what} at {da:#x} is below the shm at {base:#x}")
        spans = sorted(
            [
                ("resource table", self.rsc_offset, table_end),
                ("vring0", self.vring0_da - base, self.vring0_da - base + size),
                ("vring1", self.vring1_da - base, self.vring1_da - base + size),
                ("buffer pool", self.pool_offset, self.pool_offset + self.pool_size),
            ],
            key=lambda s: s[1],
        )
        for (n1, _s1, e1), (n2, s2, _e2) in itertools.pairwise(spans):
            if s2 < e1:
                raise UsageError(f"layout: {n1} overlaps {n2}")
        if spans[-1][2] > self.shm_size:
            raise UsageError(f"layout: {spans[-1][0]} ends past the {self.shm_size:#x}-byte shm")

    @classmethod
    def for_buffers(cls, buffer_size: int, num: int = 256) -> MachineLayout:
        """A layout with room for ``num`` rx and ``num`` tx buffers of ``buffer_size`` bytes.

        The device offers that size to the driver (``buffer_sizes``).
        """
        ring = align_up(vring_size(num, 0x1000), 0x1000)
        vring0 = 0x4000
        vring1 = align_up(vring0 + ring, 0x1000)
        pool_base = align_up(vring1 + ring, 0x10000)
        pool_size = 2 * num * buffer_size
        return cls(
            shm_size=align_up(pool_base + pool_size, 0x10000),
            vring0_da=vring0,
            vring1_da=vring1,
            vring_num=num,
            pool_base=pool_base,
            pool_size=pool_size,
            buffer_sizes=(buffer_size, buffer_size),
        )

    @property
    def pool_offset(self) -> int:
        """Offset of the buffer pool in the shared memory."""
        return self.pool_base - self.phys_base

    def resource_table(self) -> ResourceTable:
        """The table the socket server writes at ``rsc_offset`` (status and gfeatures 0)."""
        dfeatures, config = self.dfeatures, b""
        if self.buffer_sizes is not None:
            dfeatures |= 1 << VIRTIO_RPMSG_F_BUFSZ
            config = RpmsgConfigSpace(*self.buffer_sizes).to_bytes()
        entries: list[Entry] = list(self.carveouts)
        return ResourceTable(
            [
                *entries,
                Vdev(
                    id=VIRTIO_ID_RPMSG,
                    notifyid=0,
                    dfeatures=dfeatures,
                    vrings=[
                        VdevVring(self.vring0_da, self.vring_align, self.vring_num, 1),
                        VdevVring(self.vring1_da, self.vring_align, self.vring_num, 2),
                    ],
                    config=config,
                ),
            ]
        )

    def max_buffer_size(self) -> int:
        """Largest per-direction buffer size whose rx set and some tx buffers fit the pool."""
        return self.pool_size // (self.vring_num + 1)


def layout_to_dict(layout: MachineLayout) -> dict[str, Any]:
    """A layout as plain JSON-ready values (carveouts as name/da/pa/len/flags maps)."""
    out: dict[str, Any] = {}
    for f in fields(layout):
        value = getattr(layout, f.name)
        if f.name == "carveouts":
            value = [
                {"name": c.name, "da": c.da, "pa": c.pa, "len": c.len, "flags": c.flags}
                for c in value
            ]
        elif f.name == "buffer_sizes" and value is not None:
            value = list(value)
        out[f.name] = value
    return out


def layout_from_dict(data: object, source: str = "layout") -> MachineLayout:
    """The layout :func:`layout_to_dict` wrote; :class:`UsageError` naming ``source`` and
    the key for anything else."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a machine layout is a map of field -> value")
    known = {f.name for f in fields(MachineLayout)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{source}: unknown layout keys {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    for key, value in data.items():
        if key == "carveouts":
            try:
                kw[key] = tuple(
                    Carveout(
                        da=c["da"],
                        pa=c["pa"],
                        len=c["len"],
                        flags=c.get("flags", 0),
                        name=c["name"],
                    )
                    for c in value
                )
            except (TypeError, KeyError) as exc:
                raise UsageError(
                    f"{source}: carveouts: each needs name, da, pa, len ({exc})"
                ) from None
        elif key == "buffer_sizes":
            kw[key] = None if value is None else tuple(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{source}: {key} must be an integer, got {value!r}")
        else:
            kw[key] = value
    try:
        return MachineLayout(**kw)
    except TypeError as exc:
        raise UsageError(f"{source}: {exc}") from None


MACHINE_FORMAT = "pyopenamp-machine"
"""The ``format`` value of a machine file."""


def save_layout(path: str | Path, layout: MachineLayout, **info: Any) -> None:
    """Write a machine file: JSON with ``format``, ``layout`` and any ``info`` keys."""
    doc = {"format": MACHINE_FORMAT, "version": 1, **info, "layout": layout_to_dict(layout)}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def load_layout(path: str | Path) -> MachineLayout:
    """Read the layout of a machine file written by :func:`save_layout`."""
    name = str(path)
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{name}: not a machine file (JSON): {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != MACHINE_FORMAT:
        raise UsageError(f'{name}: not a machine file (no "format": "{MACHINE_FORMAT}")')
    return layout_from_dict(doc.get("layout"), f"{name}: layout")


LINUX_GENERIC = MachineLayout()
"""The C reference's Linux generic machine: 512 KiB, table at 0, rings at 0x4000/0x8000."""

DEFAULT_BUFFER_SIZE = RPMSG_BUFFER_SIZE
