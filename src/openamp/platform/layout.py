"""Where things live in a machine's shared memory (the C ``platform_info.c`` numbers).

One :class:`MachineLayout` describes the memory of a shared-memory machine: its size,
the resource table's offset, the two vrings and the buffer pool.  The default is the
C reference's Linux "generic" machine, byte for byte.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..errors import UsageError
from ..remoteproc.rsc_table import ResourceTable, Vdev, VdevVring
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
    """Memory map of a two-vring rpmsg machine (physical address = offset in the shm)."""

    shm_size: int = 0x80000
    rsc_offset: int = 0x0
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
        spans = sorted(
            [
                ("resource table", self.rsc_offset, table_end),
                ("vring0", self.vring0_da, self.vring0_da + size),
                ("vring1", self.vring1_da, self.vring1_da + size),
                ("buffer pool", self.pool_base, self.pool_base + self.pool_size),
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

    def resource_table(self) -> ResourceTable:
        """The table the socket server writes at ``rsc_offset`` (status and gfeatures 0)."""
        dfeatures, config = self.dfeatures, b""
        if self.buffer_sizes is not None:
            dfeatures |= 1 << VIRTIO_RPMSG_F_BUFSZ
            config = RpmsgConfigSpace(*self.buffer_sizes).to_bytes()
        return ResourceTable(
            [
                Vdev(
                    id=VIRTIO_ID_RPMSG,
                    notifyid=0,
                    dfeatures=dfeatures,
                    vrings=[
                        VdevVring(self.vring0_da, self.vring_align, self.vring_num, 1),
                        VdevVring(self.vring1_da, self.vring_align, self.vring_num, 2),
                    ],
                    config=config,
                )
            ]
        )

    def max_buffer_size(self) -> int:
        """Largest per-direction buffer size whose rx set and some tx buffers fit the pool."""
        return self.pool_size // (self.vring_num + 1)


LINUX_GENERIC = MachineLayout()
"""The C reference's Linux generic machine: 512 KiB, table at 0, rings at 0x4000/0x8000."""

DEFAULT_BUFFER_SIZE = RPMSG_BUFFER_SIZE
